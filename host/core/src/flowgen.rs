//! Deterministic, realistic flows: a fixed set of flow keys (stable per seed), each active in every bucket with
//! counters that vary by bucket. The same (seed, keys, bucket) always gives the same flows, so tests can
//! recompute exactly what the simulator sent.

use crate::proto::{Action, EndpointType, Flow, FlowKey, PolicyHit, PolicyKind, PolicyTrace, Reporter};

const NAMESPACES: &[&str] = &[
    "checkout",
    "payments",
    "catalog",
    "frontend",
    "monitoring",
    "kube-system",
    "longhorn-system",
    "ingress-nginx",
    "default",
    "data",
];
const APPS: &[&str] = &["api", "worker", "db", "cache", "web", "gateway", "exporter", "scheduler", "manager"];
const PORTS: &[(i64, &str, &str)] = &[
    (443, "tcp", "https"),
    (8080, "tcp", "http"),
    (5432, "tcp", "postgres"),
    (6379, "tcp", "redis"),
    (53, "udp", "dns"),
    (9090, "tcp", "metrics"),
    (8503, "tcp", "-"),
];

/// SplitMix64: a tiny deterministic generator, enough for test data.
struct Rng(u64);

impl Rng {
    fn new(parts: &[u64]) -> Self {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for p in parts {
            s = (s ^ p).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(31);
        }
        Rng(s)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// Generates the flows of a simulated cluster.
#[derive(Debug, Clone, Copy)]
pub struct FlowGen {
    pub seed: u64,
    /// Flow keys active in every bucket.
    pub keys: usize,
}

impl FlowGen {
    /// The flows of the bucket starting at `start` (a multiple of 15), in the order the simulator sends them.
    pub fn bucket(&self, start: i64) -> Vec<Flow> {
        (0..self.keys).map(|i| self.flow(i, start)).collect()
    }

    /// Flow key `i` in the bucket starting at `start`.
    pub fn flow(&self, i: usize, start: i64) -> Flow {
        let mut k = Rng::new(&[self.seed, i as u64]);
        let src_ns = *k.pick(NAMESPACES);
        let src_app = *k.pick(APPS);
        let daemonset = k.below(4) == 0;
        let src_hash = format!("{:x}", k.next() & 0xff_ffff_ffff);
        let source_name = if daemonset { format!("{src_ns}-{src_app}-*") } else { format!("{src_app}-{src_hash}-*") };
        let (port, proto, port_name) = *k.pick(PORTS);
        let reporter = if i.is_multiple_of(2) { Reporter::Src } else { Reporter::Dst };
        let deny = k.below(16) == 0;
        let action = if deny { Action::Deny } else { Action::Allow };

        // Destinations: mostly workloads, some networks (`pub`/`pvt`), host endpoints and network sets.
        // A daemonset's source name carries no hash, so its destination is always a workload (which does): every
        // key stays distinct, as Goldmane's are.
        let dest_kind = if daemonset { 3 + k.below(7) } else { k.below(10) };
        let (dest_type, dest_name, dest_ns, dest_labels) = match dest_kind {
            0 => {
                (EndpointType::Network, if k.below(2) == 0 { "pub" } else { "pvt" }.to_string(), String::new(), vec![])
            }
            1 => (EndpointType::HostEndpoint, format!("node-{}-eth0", k.below(8)), String::new(), vec![]),
            2 => (
                EndpointType::NetworkSet,
                "external-apis".to_string(),
                (*k.pick(NAMESPACES)).to_string(),
                vec!["role=external".to_string()],
            ),
            _ => {
                let ns = *k.pick(NAMESPACES);
                let app = *k.pick(APPS);
                let hash = format!("{:x}", k.next() & 0xffff_ffff);
                (
                    EndpointType::WorkloadEndpoint,
                    format!("{app}-{hash}-*"),
                    ns.to_string(),
                    labels(ns, app, &hash, k.below(3) == 0),
                )
            }
        };
        let has_service = dest_type == EndpointType::WorkloadEndpoint && k.below(3) > 0;
        let (svc_name, svc_ns, svc_port_name, svc_port) = if has_service {
            (format!("{}-svc", dest_name.trim_end_matches("-*")), dest_ns.clone(), port_name.to_string(), port)
        } else {
            ("-".to_string(), "-".to_string(), "-".to_string(), 0)
        };

        let tier = if k.below(4) == 0 { "security" } else { "default" };
        let policy_ns = if dest_ns.is_empty() { src_ns.to_string() } else { dest_ns.clone() };
        let enforced = if deny {
            let trigger = hit(PolicyKind::CalicoNetworkPolicy, &policy_ns, "default-deny", tier, Action::Deny, 1, -1);
            vec![PolicyHit {
                trigger: Some(Box::new(trigger)),
                ..hit(PolicyKind::EndOfTier, "", "", tier, Action::Deny, 1, -1)
            }]
        } else {
            let kind =
                *k.pick(&[PolicyKind::CalicoNetworkPolicy, PolicyKind::NetworkPolicy, PolicyKind::GlobalNetworkPolicy]);
            let ns = if kind == PolicyKind::GlobalNetworkPolicy { "" } else { policy_ns.as_str() };
            vec![hit(kind, ns, &format!("allow-{src_app}-{port}"), tier, Action::Allow, 0, (k.below(3)) as i64)]
        };
        let pending = if k.below(5) == 0 {
            vec![hit(PolicyKind::StagedNetworkPolicy, &policy_ns, "staged-lockdown", tier, Action::Deny, 0, 0)]
        } else {
            enforced.clone()
        };

        let key = FlowKey {
            source_name,
            source_namespace: src_ns.to_string(),
            source_type: EndpointType::WorkloadEndpoint as i32,
            dest_name,
            dest_namespace: dest_ns,
            dest_type: dest_type as i32,
            dest_port: port,
            dest_service_name: svc_name,
            dest_service_namespace: svc_ns,
            dest_service_port_name: svc_port_name,
            dest_service_port: svc_port,
            proto: proto.to_string(),
            reporter: reporter as i32,
            action: action as i32,
            policies: Some(PolicyTrace { enforced_policies: enforced, pending_policies: pending }),
        };
        let source_labels = labels(src_ns, src_app, &src_hash, daemonset);

        let mut c = Rng::new(&[self.seed, i as u64, start as u64]);
        let packets_in = 1 + c.below(2_000) as i64;
        let packets_out = 1 + c.below(2_000) as i64;
        let started = c.below(6) as i64;
        Flow {
            key: Some(key),
            start_time: start,
            end_time: start + 15,
            source_labels,
            dest_labels,
            packets_in,
            packets_out,
            bytes_in: packets_in * (60 + c.below(1_440) as i64),
            bytes_out: packets_out * (60 + c.below(1_440) as i64),
            num_connections_started: started,
            num_connections_completed: c.below(started as u64 + 1) as i64,
            num_connections_live: c.below(4) as i64,
        }
    }
}

fn hit(
    kind: PolicyKind,
    ns: &str,
    name: &str,
    tier: &str,
    action: Action,
    policy_index: i64,
    rule_index: i64,
) -> PolicyHit {
    PolicyHit {
        kind: kind as i32,
        namespace: ns.to_string(),
        name: name.to_string(),
        tier: tier.to_string(),
        action: action as i32,
        policy_index,
        rule_index,
        trigger: None,
    }
}

/// Labels as Goldmane reports them: `key=value`, sorted, the intersection over the aggregated pods.
fn labels(ns: &str, app: &str, hash: &str, daemonset: bool) -> Vec<String> {
    let mut l = vec![
        format!("app={app}"),
        format!("app.kubernetes.io/name={app}"),
        format!("app.kubernetes.io/part-of={ns}"),
        "app.kubernetes.io/managed-by=Helm".to_string(),
    ];
    if daemonset {
        l.push(format!("controller-revision-hash={hash}"));
        l.push("pod-template-generation=2".to_string());
    } else {
        l.push(format!("pod-template-hash={hash}"));
    }
    l.sort();
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_flows_and_keys_stable_across_buckets() {
        let g = FlowGen { seed: 7, keys: 50 };
        assert_eq!(g.bucket(1500), g.bucket(1500));
        let (a, b) = (g.flow(3, 1500), g.flow(3, 1515));
        assert_eq!(a.key, b.key);
        assert_eq!(b.start_time, 1515);
        assert_eq!(b.end_time, 1530);
    }

    #[test]
    fn keys_are_distinct_within_a_bucket_and_realistic() {
        let flows = FlowGen { seed: 1, keys: 2_000 }.bucket(0);
        let keys: std::collections::HashSet<_> =
            flows.iter().map(|f| prost::Message::encode_to_vec(f.key.as_ref().unwrap())).collect();
        // Distinct keys are what Goldmane sends; a few generator collisions would break exactly-once counts.
        assert_eq!(keys.len(), flows.len());
        assert!(flows.iter().any(|f| f.key.as_ref().unwrap().action == Action::Deny as i32));
        assert!(flows.iter().any(|f| f.key.as_ref().unwrap().dest_name == "pub"));
        assert!(flows.iter().any(|f| f.key.as_ref().unwrap().reporter == Reporter::Dst as i32));
    }
}
