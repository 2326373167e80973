//! Goldmane protobuf types <-> WIT types.
//!
//! Enum numbers the contract does not name cross as `unknown`; on the way back an `unknown` takes the original
//! number from the input flow (for a policy hit, from the hit at the same position of the same list), so an enum
//! value Flowgate does not know survives the chain unchanged.

use super::bindings::types::{
    Action as WAction, EndpointType as WEndpoint, Flow as WFlow, PolicyHit as WHit, PolicyKind as WKind,
    PolicyTrigger as WTrigger, Reporter as WReporter,
};
use crate::proto::{Flow, FlowKey, PolicyHit, PolicyTrace};

macro_rules! enum_map {
    ($to:ident, $from:ident, $w:ident { $($n:literal => $v:ident),* $(,)? }) => {
        pub(super) fn $to(n: i32) -> $w {
            match n {
                $($n => $w::$v,)*
                _ => $w::Unknown,
            }
        }
        /// `None` for `unknown`: the caller restores the original number.
        pub(super) fn $from(w: $w) -> Option<i32> {
            match w {
                $($w::$v => Some($n),)*
                $w::Unknown => None,
            }
        }
    };
}

enum_map!(action_to, action_from, WAction { 0 => Unspecified, 1 => Allow, 2 => Deny, 3 => Pass });
enum_map!(reporter_to, reporter_from, WReporter { 0 => Unspecified, 1 => Src, 2 => Dst });
enum_map!(endpoint_to, endpoint_from, WEndpoint {
    0 => Unspecified, 1 => WorkloadEndpoint, 2 => HostEndpoint, 3 => NetworkSet, 4 => Network,
});
enum_map!(kind_to, kind_from, WKind {
    0 => Unspecified, 1 => CalicoNetworkPolicy, 2 => GlobalNetworkPolicy, 3 => StagedNetworkPolicy,
    4 => StagedGlobalNetworkPolicy, 5 => StagedKubernetesNetworkPolicy, 6 => NetworkPolicy,
    7 => AdminNetworkPolicy, 8 => BaselineAdminNetworkPolicy, 9 => Profile, 10 => EndOfTier,
    11 => ClusterNetworkPolicy,
});

pub(super) fn hit_to(h: &PolicyHit) -> WHit {
    WHit {
        kind: kind_to(h.kind),
        namespace: h.namespace.clone(),
        name: h.name.clone(),
        tier: h.tier.clone(),
        action: action_to(h.action),
        policy_index: h.policy_index,
        rule_index: h.rule_index,
        trigger: h.trigger.as_deref().map(|t| WTrigger {
            kind: kind_to(t.kind),
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            tier: t.tier.clone(),
            action: action_to(t.action),
            policy_index: t.policy_index,
            rule_index: t.rule_index,
        }),
    }
}

/// The WIT flow a guest sees. A trigger's own trigger (never set by Goldmane) is not carried.
pub fn flow_to_wit(f: &Flow) -> WFlow {
    let empty = FlowKey::default();
    let k = f.key.as_ref().unwrap_or(&empty);
    let trace = k.policies.as_ref();
    WFlow {
        source_name: k.source_name.clone(),
        source_namespace: k.source_namespace.clone(),
        source_type: endpoint_to(k.source_type),
        dest_name: k.dest_name.clone(),
        dest_namespace: k.dest_namespace.clone(),
        dest_type: endpoint_to(k.dest_type),
        dest_port: k.dest_port,
        dest_service_name: k.dest_service_name.clone(),
        dest_service_namespace: k.dest_service_namespace.clone(),
        dest_service_port_name: k.dest_service_port_name.clone(),
        dest_service_port: k.dest_service_port,
        proto: k.proto.clone(),
        reporter: reporter_to(k.reporter),
        action: action_to(k.action),
        enforced_policies: trace.map(|t| t.enforced_policies.iter().map(hit_to).collect()).unwrap_or_default(),
        pending_policies: trace.map(|t| t.pending_policies.iter().map(hit_to).collect()).unwrap_or_default(),
        start_time: f.start_time,
        end_time: f.end_time,
        source_labels: f.source_labels.clone(),
        dest_labels: f.dest_labels.clone(),
        packets_in: f.packets_in,
        packets_out: f.packets_out,
        bytes_in: f.bytes_in,
        bytes_out: f.bytes_out,
        num_connections_started: f.num_connections_started,
        num_connections_completed: f.num_connections_completed,
        num_connections_live: f.num_connections_live,
    }
}

/// A guest's policy hit, `unknown` enums restored from `orig` (the hit at the same position of the input).
fn hit_from(kind: WKind, action: WAction, orig: Option<&PolicyHit>) -> (i32, i32) {
    (
        kind_from(kind).unwrap_or_else(|| orig.map_or(0, |o| o.kind)),
        action_from(action).unwrap_or_else(|| orig.map_or(0, |o| o.action)),
    )
}

pub(super) fn hits_from(ws: Vec<WHit>, originals: &[PolicyHit]) -> Vec<PolicyHit> {
    ws.into_iter()
        .enumerate()
        .map(|(i, w)| {
            let orig = originals.get(i);
            let (kind, action) = hit_from(w.kind, w.action, orig);
            PolicyHit {
                kind,
                namespace: w.namespace,
                name: w.name,
                tier: w.tier,
                action,
                policy_index: w.policy_index,
                rule_index: w.rule_index,
                trigger: w.trigger.map(|t| {
                    let (kind, action) = hit_from(t.kind, t.action, orig.and_then(|o| o.trigger.as_deref()));
                    Box::new(PolicyHit {
                        kind,
                        namespace: t.namespace,
                        name: t.name,
                        tier: t.tier,
                        action,
                        policy_index: t.policy_index,
                        rule_index: t.rule_index,
                        trigger: None,
                    })
                }),
            }
        })
        .collect()
}

/// The flow a guest returned, with `unknown` enums given back their numbers from `original`.
pub fn flow_from_wit(w: WFlow, original: &Flow) -> Flow {
    let empty = FlowKey::default();
    let ok = original.key.as_ref().unwrap_or(&empty);
    let trace = ok.policies.clone().unwrap_or_default();
    Flow {
        key: Some(FlowKey {
            source_name: w.source_name,
            source_namespace: w.source_namespace,
            source_type: endpoint_from(w.source_type).unwrap_or(ok.source_type),
            dest_name: w.dest_name,
            dest_namespace: w.dest_namespace,
            dest_type: endpoint_from(w.dest_type).unwrap_or(ok.dest_type),
            dest_port: w.dest_port,
            dest_service_name: w.dest_service_name,
            dest_service_namespace: w.dest_service_namespace,
            dest_service_port_name: w.dest_service_port_name,
            dest_service_port: w.dest_service_port,
            proto: w.proto,
            reporter: reporter_from(w.reporter).unwrap_or(ok.reporter),
            action: action_from(w.action).unwrap_or(ok.action),
            policies: Some(PolicyTrace {
                enforced_policies: hits_from(w.enforced_policies, &trace.enforced_policies),
                pending_policies: hits_from(w.pending_policies, &trace.pending_policies),
            }),
        }),
        start_time: w.start_time,
        end_time: w.end_time,
        source_labels: w.source_labels,
        dest_labels: w.dest_labels,
        packets_in: w.packets_in,
        packets_out: w.packets_out,
        bytes_in: w.bytes_in,
        bytes_out: w.bytes_out,
        num_connections_started: w.num_connections_started,
        num_connections_completed: w.num_connections_completed,
        num_connections_live: w.num_connections_live,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::FlowGen;

    #[test]
    fn round_trip_is_lossless_for_goldmane_flows() {
        let flows = FlowGen { seed: 4, keys: 300 }.bucket(1_764_970_845);
        for flow in flows {
            assert_eq!(flow_from_wit(flow_to_wit(&flow), &flow), flow);
        }
    }

    /// Each enum value, by its name in `goldmane.proto` and in the WIT, both ways, with an empty original flow so
    /// that nothing can be filled back from it: a wrong or missing mapping shows.
    #[test]
    fn every_enum_value_maps_to_its_wit_case_and_back() {
        use crate::proto::{Action as A, EndpointType as E, PolicyKind as K, Reporter as R};
        let actions = [(0, WAction::Unspecified), (A::Allow as i32, WAction::Allow), (A::Deny as i32, WAction::Deny)];
        let actions = actions.into_iter().chain([(A::Pass as i32, WAction::Pass)]);
        let reporters = [(0, WReporter::Unspecified), (R::Src as i32, WReporter::Src), (R::Dst as i32, WReporter::Dst)];
        let endpoints = [
            (0, WEndpoint::Unspecified),
            (E::WorkloadEndpoint as i32, WEndpoint::WorkloadEndpoint),
            (E::HostEndpoint as i32, WEndpoint::HostEndpoint),
            (E::NetworkSet as i32, WEndpoint::NetworkSet),
            (E::Network as i32, WEndpoint::Network),
        ];
        let kinds = [
            (0, WKind::Unspecified),
            (K::CalicoNetworkPolicy as i32, WKind::CalicoNetworkPolicy),
            (K::GlobalNetworkPolicy as i32, WKind::GlobalNetworkPolicy),
            (K::StagedNetworkPolicy as i32, WKind::StagedNetworkPolicy),
            (K::StagedGlobalNetworkPolicy as i32, WKind::StagedGlobalNetworkPolicy),
            (K::StagedKubernetesNetworkPolicy as i32, WKind::StagedKubernetesNetworkPolicy),
            (K::NetworkPolicy as i32, WKind::NetworkPolicy),
            (K::AdminNetworkPolicy as i32, WKind::AdminNetworkPolicy),
            (K::BaselineAdminNetworkPolicy as i32, WKind::BaselineAdminNetworkPolicy),
            (K::Profile as i32, WKind::Profile),
            (K::EndOfTier as i32, WKind::EndOfTier),
            (K::ClusterNetworkPolicy as i32, WKind::ClusterNetworkPolicy),
        ];
        // The tables name every WIT case (a new case fails to compile here until it is added above).
        let _exhaustive = |w: WAction| match w {
            WAction::Unspecified | WAction::Allow | WAction::Deny | WAction::Pass | WAction::Unknown => {}
        };
        let _exhaustive = |w: WKind| match w {
            WKind::Unspecified
            | WKind::CalicoNetworkPolicy
            | WKind::GlobalNetworkPolicy
            | WKind::StagedNetworkPolicy
            | WKind::StagedGlobalNetworkPolicy
            | WKind::StagedKubernetesNetworkPolicy
            | WKind::NetworkPolicy
            | WKind::AdminNetworkPolicy
            | WKind::BaselineAdminNetworkPolicy
            | WKind::Profile
            | WKind::EndOfTier
            | WKind::ClusterNetworkPolicy
            | WKind::Unknown => {}
        };

        let original = Flow::default();
        let template = FlowGen { seed: 4, keys: 1 }.flow(0, 0);
        let with_key = |edit: &dyn Fn(&mut FlowKey)| {
            let mut f = template.clone();
            edit(f.key.as_mut().unwrap());
            f
        };
        for (n, w) in actions {
            let flow = with_key(&|k| {
                k.action = n;
                k.policies.as_mut().unwrap().enforced_policies[0].action = n;
            });
            let wit = flow_to_wit(&flow);
            assert_eq!((wit.action, wit.enforced_policies[0].action), (w, w), "action {n}");
            let back = flow_from_wit(wit, &original);
            let key = back.key.as_ref().unwrap();
            assert_eq!((key.action, key.policies.as_ref().unwrap().enforced_policies[0].action), (n, n), "{w:?}");
        }
        for (n, w) in reporters {
            let wit = flow_to_wit(&with_key(&|k| k.reporter = n));
            assert_eq!(wit.reporter, w, "reporter {n}");
            assert_eq!(flow_from_wit(wit, &original).key.unwrap().reporter, n, "{w:?}");
        }
        for (n, w) in endpoints {
            let wit = flow_to_wit(&with_key(&|k| (k.source_type, k.dest_type) = (n, n)));
            assert_eq!((wit.source_type, wit.dest_type), (w, w), "endpoint type {n}");
            let key = flow_from_wit(wit, &original).key.unwrap();
            assert_eq!((key.source_type, key.dest_type), (n, n), "{w:?}");
        }
        for (n, w) in kinds {
            let flow = with_key(&|k| {
                let trace = k.policies.as_mut().unwrap();
                let trigger = PolicyHit { kind: n, trigger: None, ..trace.enforced_policies[0].clone() };
                trace.enforced_policies[0].kind = n;
                trace.enforced_policies[0].trigger = Some(Box::new(trigger));
                trace.pending_policies = vec![PolicyHit { kind: n, ..PolicyHit::default() }];
            });
            let wit = flow_to_wit(&flow);
            let hit = &wit.enforced_policies[0];
            assert_eq!(
                (hit.kind, hit.trigger.as_ref().unwrap().kind, wit.pending_policies[0].kind),
                (w, w, w),
                "kind {n}"
            );
            let trace = flow_from_wit(wit, &original).key.unwrap().policies.unwrap();
            let hit = &trace.enforced_policies[0];
            assert_eq!(
                (hit.kind, hit.trigger.as_ref().unwrap().kind, trace.pending_policies[0].kind),
                (n, n, n),
                "{w:?}"
            );
        }
    }

    #[test]
    fn unknown_enum_numbers_survive_a_round_trip() {
        let mut flow = FlowGen { seed: 4, keys: 1 }.flow(0, 0);
        let key = flow.key.as_mut().unwrap();
        key.action = 42;
        key.dest_type = 17;
        key.policies.as_mut().unwrap().enforced_policies[0].kind = 12;
        let w = flow_to_wit(&flow);
        assert_eq!(w.action, WAction::Unknown);
        assert_eq!(w.enforced_policies[0].kind, WKind::Unknown);
        assert_eq!(flow_from_wit(w, &flow), flow);
    }
}
