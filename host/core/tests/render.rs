//! The body must be what the old exporter wrote: checked against its documented example and, on generated flows,
//! against an independent protojson implementation (prost-reflect, driven by the same .proto). These test only
//! `flowgate-core`, so they build without wasmtime.

use flowgate_core::flowgen::FlowGen;
use flowgate_core::proto::{Action, EndpointType, Flow, FlowKey, PolicyHit, PolicyKind, PolicyTrace, Reporter};
use flowgate_core::render::flow_json_string;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

/// protojson of `flow` by prost-reflect, with Go protojson's options: JSON names, enum names, int64 as strings,
/// defaults omitted.
fn oracle(flow: &Flow) -> Value {
    let pool = DescriptorPool::decode(flowgate_core::proto::FILE_DESCRIPTOR_SET).unwrap();
    let desc = pool.get_message_by_name("goldmane.Flow").unwrap();
    let msg = DynamicMessage::decode(desc, flow.encode_to_vec().as_slice()).unwrap();
    let opts = SerializeOptions::new()
        .skip_default_fields(true)
        .stringify_64_bit_integers(true)
        .use_proto_field_name(false)
        .use_enum_numbers(false);
    msg.serialize_with_options(serde_json::value::Serializer, &opts).unwrap()
}

fn ours(flow: &Flow) -> Value {
    serde_json::from_str(&flow_json_string(flow)).expect("our body is valid JSON")
}

fn hit(kind: i32, name: &str, action: i32) -> PolicyHit {
    PolicyHit {
        kind,
        namespace: "longhorn-system".into(),
        name: name.into(),
        tier: "default".into(),
        action,
        ..PolicyHit::default()
    }
}

/// The flow behind the old exporter's documented example body.
fn readme_flow() -> Flow {
    let allow = hit(PolicyKind::CalicoNetworkPolicy as i32, "allow-same-namespace", Action::Allow as i32);
    Flow {
        key: Some(FlowKey {
            source_name: "longhorn-manager-*".into(),
            source_namespace: "longhorn-system".into(),
            source_type: EndpointType::WorkloadEndpoint as i32,
            dest_name: "instance-manager-318f1eac2bc7c775b7a6d2e68e9e2800".into(),
            dest_namespace: "longhorn-system".into(),
            dest_type: EndpointType::WorkloadEndpoint as i32,
            dest_port: 8503,
            dest_service_name: "-".into(),
            dest_service_namespace: "-".into(),
            dest_service_port_name: "-".into(),
            dest_service_port: 0,
            proto: "tcp".into(),
            reporter: Reporter::Src as i32,
            action: Action::Allow as i32,
            policies: Some(PolicyTrace { enforced_policies: vec![allow.clone()], pending_policies: vec![allow] }),
        }),
        start_time: 1764970845,
        end_time: 1764970860,
        source_labels: [
            "app.kubernetes.io/instance=longhorn",
            "app.kubernetes.io/managed-by=Helm",
            "app.kubernetes.io/name=longhorn",
            "app.kubernetes.io/version=v1.8.1",
            "app=longhorn-manager",
            "controller-revision-hash=5bb8c89b95",
            "helm.sh/chart=longhorn-1.8.1",
            "longhorn.io/admission-webhook=long horn-admission-webhook",
            "longhorn.io/conversion-webhook=longhorn-conversion-webhook",
            "longhorn.io/recovery-backend=longhorn-recovery-backend",
            "pod-template-generation=2",
        ]
        .map(String::from)
        .to_vec(),
        dest_labels: [
            "longhorn.io/component=instance-manager",
            "longhorn.io/data-engine=v1",
            "longhorn.io/instance-manager-image=imi-7d4dc4d4",
            "longhorn.io/instance-manager-type=aio",
            "longhorn.io/managed-by=longhorn-manager",
            "longhorn.io/node=k8s-worker-2",
        ]
        .map(String::from)
        .to_vec(),
        packets_in: 11,
        packets_out: 14,
        bytes_in: 957,
        bytes_out: 1226,
        num_connections_started: 1,
        num_connections_completed: 1,
        num_connections_live: 1,
    }
}

#[test]
fn matches_the_old_exporters_documented_body() {
    let fixture =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/seed-readme-flow.json"))
            .expect("shared/fixtures/seed-readme-flow.json beside the repository");
    let expected: Value = serde_json::from_str(&fixture).unwrap();
    assert_eq!(ours(&readme_flow()), expected);
    assert_eq!(oracle(&readme_flow()), expected, "the oracle agrees with the fixture too");
}

#[test]
fn field_order_is_declaration_order() {
    let body = flow_json_string(&readme_flow());
    let order = [
        "\"Key\"",
        "\"startTime\"",
        "\"endTime\"",
        "\"sourceLabels\"",
        "\"destLabels\"",
        "\"packetsIn\"",
        "\"numConnectionsLive\"",
    ];
    let positions: Vec<usize> = order.iter().map(|k| body.find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{body}");
}

/// Small deterministic generator for edge-case flows.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn int(&mut self) -> i64 {
        match self.next() % 8 {
            0 => 0,
            1 => i64::MAX,
            2 => i64::MIN,
            3 => -1,
            4 => -(self.next() as i64 % 1_000_000),
            _ => self.next() as i64 % 10_000_000_000,
        }
    }
    /// Every known value, zero, and unknown numbers on both sides.
    fn enumeration(&mut self, max_known: i32) -> i32 {
        match self.next() % 6 {
            0 => 0,
            1 => max_known + 1 + (self.next() % 50) as i32,
            2 => -((self.next() % 5) as i32) - 1,
            _ => (self.next() % max_known as u64) as i32 + 1,
        }
    }
    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "",
            "a",
            "checkout-api-*",
            "ünïcødé ✓",
            "日本語",
            "quote\"back\\slash",
            "tab\tnl\nnul\u{0}",
            "\u{1f}\u{7f}",
            "emoji 🦀",
            "<&>",
            "\u{2028}",
        ];
        (0..self.next() % 3).map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize]).collect()
    }
    fn labels(&mut self) -> Vec<String> {
        let n = match self.next() % 5 {
            0 => 0,
            1 => 500,
            _ => (self.next() % 8) as usize,
        };
        (0..n).map(|i| format!("k{i}={}", self.string())).collect()
    }
    fn hit(&mut self, depth: u32) -> PolicyHit {
        PolicyHit {
            kind: self.enumeration(11),
            namespace: self.string(),
            name: self.string(),
            tier: self.string(),
            action: self.enumeration(3),
            policy_index: self.int(),
            rule_index: self.int(),
            trigger: (depth < 2 && self.next().is_multiple_of(3)).then(|| Box::new(self.hit(depth + 1))),
        }
    }
}

fn generated(seed: u64) -> Flow {
    let mut g = Lcg(seed);
    let hits = |g: &mut Lcg| (0..g.next() % 4).map(|_| g.hit(0)).collect::<Vec<_>>();
    Flow {
        key: (!g.next().is_multiple_of(10)).then(|| FlowKey {
            source_name: g.string(),
            source_namespace: g.string(),
            source_type: g.enumeration(4),
            dest_name: g.string(),
            dest_namespace: g.string(),
            dest_type: g.enumeration(4),
            dest_port: g.int(),
            dest_service_name: g.string(),
            dest_service_namespace: g.string(),
            dest_service_port_name: g.string(),
            dest_service_port: g.int(),
            proto: g.string(),
            reporter: g.enumeration(2),
            action: g.enumeration(3),
            // Goldmane always sets the trace; the old exporter's body therefore always has `policies`.
            policies: Some(PolicyTrace { enforced_policies: hits(&mut g), pending_policies: hits(&mut g) }),
        }),
        start_time: g.int(),
        end_time: g.int(),
        source_labels: g.labels(),
        dest_labels: g.labels(),
        packets_in: g.int(),
        packets_out: g.int(),
        bytes_in: g.int(),
        bytes_out: g.int(),
        num_connections_started: g.int(),
        num_connections_completed: g.int(),
        num_connections_live: g.int(),
    }
}

#[test]
fn generated_edge_case_flows_match_the_independent_protojson() {
    for seed in 0..2_000 {
        let flow = generated(seed);
        assert_eq!(ours(&flow), oracle(&flow), "seed {seed}: {}", flow_json_string(&flow));
    }
}

#[test]
fn every_enum_value_renders_by_name_and_unknown_numbers_bare() {
    for kind in 0..=13 {
        for action in 0..=5 {
            let flow = Flow {
                key: Some(FlowKey {
                    source_type: kind % 6,
                    reporter: kind % 4,
                    action,
                    policies: Some(PolicyTrace {
                        enforced_policies: vec![hit(kind, "p", action)],
                        pending_policies: vec![],
                    }),
                    ..FlowKey::default()
                }),
                ..Flow::default()
            };
            assert_eq!(ours(&flow), oracle(&flow), "kind {kind} action {action}");
        }
    }
    // Names every Calico version from 3.30 uses.
    let body = flow_json_string(&Flow {
        key: Some(FlowKey {
            policies: Some(PolicyTrace {
                enforced_policies: vec![hit(7, "a", 1), hit(8, "b", 2), hit(11, "c", 3)],
                pending_policies: vec![],
            }),
            ..FlowKey::default()
        }),
        ..Flow::default()
    });
    for name in ["AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "ClusterNetworkPolicy", "Allow", "Deny", "Pass"] {
        assert!(body.contains(&format!("\"{name}\"")), "{name} missing from {body}");
    }
}

#[test]
fn simulator_flows_match_the_independent_protojson() {
    let flows = FlowGen { seed: 9, keys: 500 }.bucket(1_764_970_845);
    for flow in flows {
        assert_eq!(ours(&flow), oracle(&flow));
    }
}

/// Protobuf allows what prost never writes: fields out of order, a scalar twice (last wins), a repeated field in
/// pieces, explicit zeros, unknown fields. Concatenated encodings are merged by any decoder, so they make such
/// input. The wire renderer must agree with the oracle on what the bytes decode to.
#[test]
fn non_canonical_wire_input_renders_as_it_decodes() {
    use flowgate_core::render::flow_json_from_wire;
    for seed in 0..300 {
        let (a, b, c) = (generated(seed), generated(seed + 10_000), generated(seed + 20_000));
        let mut wire = b.encode_to_vec();
        wire.extend(a.encode_to_vec());
        wire.extend(c.encode_to_vec());
        // Explicit zero (start_time = 0) and an unknown field 99 (varint 7).
        wire.extend([0x10, 0x00, 0x98, 0x06, 0x07]);
        let decoded = Flow::decode(wire.as_slice()).unwrap();
        let mut body = String::new();
        flow_json_from_wire(&wire, &mut body).unwrap();
        let ours: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(ours, oracle(&decoded), "seed {seed}");
    }
}

/// Inputs the `flow_result` fuzz target once failed on (host/fuzz): the wire renderer accepts exactly what prost
/// accepts, and renders it as prost decodes it (an absent policy trace and an empty one render alike).
#[test]
fn fuzz_found_inputs_render_as_prost_decodes_or_are_refused_by_both() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/fuzz-regressions/flow_result");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = bytes::Bytes::from(std::fs::read(entry.unwrap().path()).unwrap());
        let mut body = String::new();
        let ours = flowgate_core::wire::flow_of_result(bytes.clone()).and_then(|raw| match raw {
            Some(raw) => flowgate_core::render::flow_json_from_wire(&raw.wire, &mut body)
                .map(|()| Some(()))
                .map_err(|_| flowgate_core::wire::WireError("not a flow")),
            None => Ok(None),
        });
        match flowgate_core::proto::FlowResult::decode(bytes.as_ref()) {
            Ok(result) => {
                let rendered = ours.expect("prost decodes it, so the wire path must take it");
                let Some(mut decoded) = result.flow else {
                    assert!(rendered.is_none());
                    continue;
                };
                // The old exporter always writes `Key.policies`: an absent trace renders as an empty one.
                if let Some(k) = decoded.key.as_mut() {
                    k.policies.get_or_insert_with(Default::default);
                }
                let parsed: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(parsed, oracle(&decoded));
            }
            Err(e) => assert!(ours.is_err(), "prost refuses it ({e}) but the wire path took it: {body}"),
        }
        checked += 1;
    }
    assert!(checked >= 2);
}
