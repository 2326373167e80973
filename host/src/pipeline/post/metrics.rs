//! Prometheus counters derived from flows: per policy (what carries traffic, what denies), end-of-tier denials
//! per destination, and traffic between namespaces. Computed on the flows the transform chain hands on, so a
//! redacted field is redacted in the labels too.
//!
//! Cardinality is bounded per group (policy, end-of-tier, traffic): the first `max_series` label sets get their
//! own series; later ones are folded into one series whose high-cardinality labels read `__overflow__`, and the
//! folding is itself counted. An optional namespace allow-list maps every other namespace to `__other__` first.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use prometheus_client::metrics::counter::Counter;

use crate::config::FlowMetricsConfig;
use crate::proto::{Action, EndpointType, Flow, PolicyKind, Reporter};
use crate::telemetry::flow::GroupLabel;
pub use crate::telemetry::flow::{DirectionLabels, EndOfTierLabels, FlowFamilies, PolicyLabels, TrafficLabels};

/// Label value of a folded series.
pub const OVERFLOW: &str = "__overflow__";
/// Label value of a namespace outside the allow-list.
pub const OTHER: &str = "__other__";
/// Distinct folded label sets remembered per group to count them; past it the count is a lower bound.
const FOLDED_TRACKED: usize = 65_536;

/// Label sets as OTLP attributes (the same keys and values as the Prometheus labels).
pub trait Attributes {
    fn attributes(&self) -> Vec<(&'static str, String)>;
}

impl Attributes for PolicyLabels {
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("kind", self.kind.clone()),
            ("tier", self.tier.clone()),
            ("namespace", self.namespace.clone()),
            ("name", self.name.clone()),
            ("action", self.action.clone()),
        ]
    }
}

impl Attributes for EndOfTierLabels {
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("tier", self.tier.clone()),
            ("dest_namespace", self.dest_namespace.clone()),
            ("dest_name", self.dest_name.clone()),
        ]
    }
}

impl Attributes for TrafficLabels {
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("source_namespace", self.source_namespace.clone()),
            ("source_type", self.source_type.clone()),
            ("dest_namespace", self.dest_namespace.clone()),
            ("dest_type", self.dest_type.clone()),
            ("proto", self.proto.clone()),
            ("reporter", self.reporter.clone()),
            ("action", self.action.clone()),
        ]
    }
}

/// One OTLP metric: the Prometheus family `flowgate_<prometheus>_total` as the OTLP sum `<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub name: &'static str,
    /// The Prometheus family name, without the `flowgate_` prefix and `_total` suffix.
    pub prometheus: &'static str,
    pub unit: &'static str,
}

const fn d(name: &'static str, prometheus: &'static str, unit: &'static str) -> Descriptor {
    Descriptor { name, prometheus, unit }
}

pub const POLICY_FLOWS: Descriptor = d("flowgate.policy.flows", "policy_flows", "{flow}");
pub const POLICY_PACKETS: Descriptor = d("flowgate.policy.packets", "policy_packets", "{packet}");
pub const POLICY_BYTES: Descriptor = d("flowgate.policy.bytes", "policy_bytes", "By");
pub const END_OF_TIER_FLOWS: Descriptor =
    d("flowgate.policy.end_of_tier_denied.flows", "policy_end_of_tier_denied_flows", "{flow}");
pub const END_OF_TIER_PACKETS: Descriptor =
    d("flowgate.policy.end_of_tier_denied.packets", "policy_end_of_tier_denied_packets", "{packet}");
pub const END_OF_TIER_BYTES: Descriptor =
    d("flowgate.policy.end_of_tier_denied.bytes", "policy_end_of_tier_denied_bytes", "By");
pub const TRAFFIC_FLOWS: Descriptor = d("flowgate.traffic.flows", "traffic_flows", "{flow}");
pub const TRAFFIC_PACKETS: Descriptor = d("flowgate.traffic.packets", "traffic_packets", "{packet}");
pub const TRAFFIC_BYTES: Descriptor = d("flowgate.traffic.bytes", "traffic_bytes", "By");
pub const TRAFFIC_STARTED: Descriptor =
    d("flowgate.traffic.connections_started", "traffic_connections_started", "{connection}");
pub const TRAFFIC_COMPLETED: Descriptor =
    d("flowgate.traffic.connections_completed", "traffic_connections_completed", "{connection}");

/// One series' current value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub metric: Descriptor,
    pub attributes: Vec<(&'static str, String)>,
    pub value: u64,
}

/// Admits label sets up to a bound, folding the rest, and caches each series' counters so a flow costs one
/// lookup per group rather than one per family.
struct Group<L, H> {
    name: &'static str,
    admitted: HashMap<L, H>,
    overflow: HashMap<L, H>,
    folded: HashSet<u64>,
}

impl<L: Hash + Eq + Clone, H> Group<L, H> {
    fn new(name: &'static str) -> Self {
        Group { name, admitted: HashMap::new(), overflow: HashMap::new(), folded: HashSet::new() }
    }

    /// The counters of `labels`' series, or of its folded series past `max`.
    fn series(
        &mut self,
        labels: L,
        max: usize,
        families: &FlowFamilies,
        fold: impl FnOnce(L) -> L,
        make: impl FnOnce(&L) -> H,
    ) -> &H {
        let known = self.admitted.contains_key(&labels);
        if known || self.admitted.len() < max {
            if !known {
                families.series.get_or_create(&GroupLabel { group: self.name }).set(self.admitted.len() as i64 + 1);
            }
            return self.admitted.entry(labels).or_insert_with_key(|l| make(l));
        }
        let g = GroupLabel { group: self.name };
        families.folded_flows.get_or_create(&g).inc();
        if self.folded.len() < FOLDED_TRACKED {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            labels.hash(&mut h);
            if self.folded.insert(h.finish()) {
                families.folded_series.get_or_create(&g).set(self.folded.len() as i64);
            }
        }
        self.overflow.entry(fold(labels)).or_insert_with_key(|l| make(l))
    }
}

/// Counters of one policy or end-of-tier series.
struct Triple {
    flows: Counter,
    packets: Counter,
    bytes: Counter,
}

/// Counters of one traffic series.
struct Traffic {
    flows: Counter,
    started: Counter,
    completed: Counter,
    /// in, out.
    packets: [Counter; 2],
    bytes: [Counter; 2],
}

impl<L, H> Group<L, H> {
    /// Every series, admitted then folded.
    fn all(&self) -> impl Iterator<Item = (&L, &H)> {
        self.admitted.iter().chain(self.overflow.iter())
    }
}

/// The label-set bookkeeping of every group.
pub struct FlowStats {
    /// When counting began: the start of every cumulative OTLP sum.
    pub started: std::time::SystemTime,
    cfg: FlowMetricsConfig,
    policy: Group<PolicyLabels, Triple>,
    end_of_tier: Group<EndOfTierLabels, Triple>,
    traffic: Group<TrafficLabels, Traffic>,
}

impl FlowStats {
    pub fn new(cfg: FlowMetricsConfig) -> Self {
        FlowStats {
            started: std::time::SystemTime::now(),
            cfg,
            policy: Group::new("policy"),
            end_of_tier: Group::new("end_of_tier"),
            traffic: Group::new("traffic"),
        }
    }

    fn namespace(&self, ns: &str) -> String {
        match &self.cfg.namespaces {
            Some(allowed) if !ns.is_empty() && !allowed.contains(ns) => OTHER.to_string(),
            _ => ns.to_string(),
        }
    }

    /// Counts one flow into every family.
    pub fn observe(&mut self, flow: &Flow, f: &FlowFamilies) {
        let Some(key) = &flow.key else { return };
        let max = self.cfg.max_series;
        let packets = nonneg(flow.packets_in).saturating_add(nonneg(flow.packets_out));
        let bytes = nonneg(flow.bytes_in).saturating_add(nonneg(flow.bytes_out));

        for hit in key.policies.iter().flat_map(|p| &p.enforced_policies) {
            let t = if hit.kind == PolicyKind::EndOfTier as i32 {
                if hit.action != Action::Deny as i32 {
                    continue;
                }
                let labels = EndOfTierLabels {
                    tier: hit.tier.clone(),
                    dest_namespace: self.namespace(&key.dest_namespace),
                    dest_name: key.dest_name.clone(),
                };
                let fold = |l: EndOfTierLabels| EndOfTierLabels {
                    tier: l.tier,
                    dest_namespace: OVERFLOW.into(),
                    dest_name: OVERFLOW.into(),
                };
                self.end_of_tier.series(labels, max, f, fold, |l| Triple {
                    flows: f.end_of_tier_flows.get_or_create_owned(l),
                    packets: f.end_of_tier_packets.get_or_create_owned(l),
                    bytes: f.end_of_tier_bytes.get_or_create_owned(l),
                })
            } else {
                let labels = PolicyLabels {
                    kind: enum_name(hit.kind, |v| PolicyKind::try_from(v).ok().map(|k| k.as_str_name())),
                    tier: hit.tier.clone(),
                    namespace: self.namespace(&hit.namespace),
                    name: hit.name.clone(),
                    action: action_name(hit.action),
                };
                let fold = |l: PolicyLabels| PolicyLabels {
                    kind: l.kind,
                    tier: OVERFLOW.into(),
                    namespace: OVERFLOW.into(),
                    name: OVERFLOW.into(),
                    action: l.action,
                };
                self.policy.series(labels, max, f, fold, |l| Triple {
                    flows: f.policy_flows.get_or_create_owned(l),
                    packets: f.policy_packets.get_or_create_owned(l),
                    bytes: f.policy_bytes.get_or_create_owned(l),
                })
            };
            t.flows.inc();
            t.packets.inc_by(packets);
            t.bytes.inc_by(bytes);
        }

        let labels = TrafficLabels {
            source_namespace: self.namespace(&key.source_namespace),
            source_type: endpoint_name(key.source_type),
            dest_namespace: self.namespace(&key.dest_namespace),
            dest_type: endpoint_name(key.dest_type),
            proto: key.proto.clone(),
            reporter: enum_name(key.reporter, |v| Reporter::try_from(v).ok().map(|r| r.as_str_name())),
            action: action_name(key.action),
        };
        let fold = |l: TrafficLabels| TrafficLabels {
            source_namespace: OVERFLOW.into(),
            dest_namespace: OVERFLOW.into(),
            proto: OVERFLOW.into(),
            ..l
        };
        let t = self.traffic.series(labels, max, f, fold, |l| {
            let dir = |direction| DirectionLabels { traffic: l.clone(), direction };
            Traffic {
                flows: f.traffic_flows.get_or_create_owned(l),
                started: f.traffic_connections_started.get_or_create_owned(l),
                completed: f.traffic_connections_completed.get_or_create_owned(l),
                packets: [
                    f.traffic_packets.get_or_create_owned(&dir("in")),
                    f.traffic_packets.get_or_create_owned(&dir("out")),
                ],
                bytes: [
                    f.traffic_bytes.get_or_create_owned(&dir("in")),
                    f.traffic_bytes.get_or_create_owned(&dir("out")),
                ],
            }
        });
        t.flows.inc();
        t.started.inc_by(nonneg(flow.num_connections_started));
        t.completed.inc_by(nonneg(flow.num_connections_completed));
        t.packets[0].inc_by(nonneg(flow.packets_in));
        t.packets[1].inc_by(nonneg(flow.packets_out));
        t.bytes[0].inc_by(nonneg(flow.bytes_in));
        t.bytes[1].inc_by(nonneg(flow.bytes_out));
    }
}

impl FlowStats {
    /// Every series' current value, for the OTLP push (the same series and values `/metrics` shows).
    pub fn points(&self) -> Vec<Point> {
        let mut out = Vec::new();
        let mut push = |metric, attributes, counter: &Counter| {
            out.push(Point { metric, attributes, value: counter.get() });
        };
        for (l, t) in self.policy.all() {
            push(POLICY_FLOWS, l.attributes(), &t.flows);
            push(POLICY_PACKETS, l.attributes(), &t.packets);
            push(POLICY_BYTES, l.attributes(), &t.bytes);
        }
        for (l, t) in self.end_of_tier.all() {
            push(END_OF_TIER_FLOWS, l.attributes(), &t.flows);
            push(END_OF_TIER_PACKETS, l.attributes(), &t.packets);
            push(END_OF_TIER_BYTES, l.attributes(), &t.bytes);
        }
        for (l, t) in self.traffic.all() {
            push(TRAFFIC_FLOWS, l.attributes(), &t.flows);
            push(TRAFFIC_STARTED, l.attributes(), &t.started);
            push(TRAFFIC_COMPLETED, l.attributes(), &t.completed);
            for (i, direction) in ["in", "out"].into_iter().enumerate() {
                let mut attrs = l.attributes();
                attrs.push(("direction", direction.to_string()));
                push(TRAFFIC_PACKETS, attrs.clone(), &t.packets[i]);
                push(TRAFFIC_BYTES, attrs, &t.bytes[i]);
            }
        }
        out
    }
}

fn nonneg(v: i64) -> u64 {
    v.max(0) as u64
}

/// An enum's name, or its number when this build does not know it (proto3 enums are open).
fn enum_name(v: i32, name: impl FnOnce(i32) -> Option<&'static str>) -> String {
    name(v).map_or_else(|| v.to_string(), str::to_string)
}

fn action_name(v: i32) -> String {
    enum_name(v, |v| Action::try_from(v).ok().map(|a| a.as_str_name()))
}

fn endpoint_name(v: i32) -> String {
    enum_name(v, |v| EndpointType::try_from(v).ok().map(|e| e.as_str_name()))
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::proto::{FlowKey, PolicyHit, PolicyTrace};

    fn flow(ns: &str, policy: &str) -> Flow {
        Flow {
            key: Some(FlowKey {
                source_namespace: ns.into(),
                dest_namespace: ns.into(),
                proto: "tcp".into(),
                action: Action::Allow as i32,
                policies: Some(PolicyTrace {
                    enforced_policies: vec![PolicyHit {
                        kind: PolicyKind::NetworkPolicy as i32,
                        namespace: ns.into(),
                        name: policy.into(),
                        tier: "default".into(),
                        action: Action::Allow as i32,
                        ..PolicyHit::default()
                    }],
                    pending_policies: vec![],
                }),
                ..FlowKey::default()
            }),
            packets_in: 3,
            packets_out: 4,
            bytes_in: 100,
            bytes_out: 200,
            ..Flow::default()
        }
    }

    /// Series of one metric in the text exposition.
    fn series(f: &FlowFamilies, prefix: &str) -> usize {
        let mut r = Registry::default();
        f.register(&mut r);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        text.lines().filter(|l| l.starts_with(prefix)).count()
    }

    #[test]
    fn series_beyond_the_bound_fold_into_overflow_and_are_counted() {
        let f = FlowFamilies::default();
        let mut s = FlowStats::new(FlowMetricsConfig { max_series: 2, namespaces: None, otlp: None });
        for i in 0..5 {
            s.observe(&flow("ns", &format!("p{i}")), &f);
        }
        // p0 and p1 admitted; p2..p4 folded into one series carrying their sums.
        let folded = PolicyLabels {
            kind: "NetworkPolicy".into(),
            tier: OVERFLOW.into(),
            namespace: OVERFLOW.into(),
            name: OVERFLOW.into(),
            action: "Allow".into(),
        };
        assert_eq!(f.policy_flows.get_or_create(&folded).get(), 3);
        assert_eq!(f.policy_bytes.get_or_create(&folded).get(), 900);
        assert_eq!(f.folded_flows("policy"), 3);
        assert_eq!(f.folded_series.get_or_create(&GroupLabel { group: "policy" }).get(), 3);
        // Own series never exceed the bound: 2 admitted + 1 overflow.
        assert_eq!(series(&f, "policy_flows_total{"), 3);
        // The traffic group has one label set, well under the bound.
        assert_eq!(f.folded_flows("traffic"), 0);
    }

    #[test]
    fn namespaces_outside_the_allow_list_become_other() {
        let f = FlowFamilies::default();
        let allowed = ["prod".to_string()].into_iter().collect();
        let mut s = FlowStats::new(FlowMetricsConfig { max_series: 100, namespaces: Some(allowed), otlp: None });
        s.observe(&flow("prod", "a"), &f);
        s.observe(&flow("tenant-1", "a"), &f);
        s.observe(&flow("tenant-2", "a"), &f);
        let other = PolicyLabels {
            kind: "NetworkPolicy".into(),
            tier: "default".into(),
            namespace: OTHER.into(),
            name: "a".into(),
            action: "Allow".into(),
        };
        assert_eq!(f.policy_flows.get_or_create(&other).get(), 2);
        assert_eq!(series(&f, "policy_flows_total{"), 2);
    }
}
