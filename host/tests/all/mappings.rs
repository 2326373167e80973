//! The schema mappings shipped as components (`transforms/ocsf`, `transforms/ecs`), run by the real host over
//! the simulator's flows: every record must pass its schema's check (the checks live beside each transform, in
//! `schema.rs`, with where their field lists come from), carry the event both as its structured body and as its
//! attributes, and say what the flow said.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use flowgate::config::RawEntry;
use flowgate::pipeline::chain::{self, EntrySpec, FailurePolicy};
use flowgate::pipeline::{Worker, worker};
use flowgate::proto::Flow;
use flowgate::receiver::accept_all;
use flowgate::sim::{Model, SimConfig};
use flowgate::telemetry::Metrics;
use flowgate::wasm::{Limits, Runtime};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use crate::support::{Gateway, raw_config, receiver, resolve, simulator, wait_until};
use crate::wasm::component;

#[path = "../../../transforms/ocsf/src/schema.rs"]
mod ocsf_schema;

#[path = "../../../transforms/ecs/src/schema.rs"]
mod ecs_schema;

/// A flat attribute value, before it is handed to either schema's check.
#[derive(Debug, Clone, PartialEq)]
enum Flat {
    Str(String),
    Int(i64),
    StrList(Vec<String>),
    Other,
}

fn flat(v: Option<&AnyValue>) -> Flat {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => Flat::Str(s.clone()),
        Some(Any::IntValue(i)) => Flat::Int(*i),
        Some(Any::ArrayValue(a)) => {
            let strings: Option<Vec<String>> = a
                .values
                .iter()
                .map(|v| match &v.value {
                    Some(Any::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            strings.map_or(Flat::Other, Flat::StrList)
        }
        _ => Flat::Other,
    }
}

fn flat_all(kvs: &[KeyValue]) -> Vec<(String, Flat)> {
    kvs.iter().map(|kv| (kv.key.clone(), flat(kv.value.as_ref()))).collect()
}

macro_rules! check_with {
    ($schema:ident, $event:expr) => {{
        let event: Vec<(&str, $schema::Val<'_>)> = $event
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Flat::Str(s) => $schema::Val::Str(s),
                    Flat::Int(i) => $schema::Val::Int(*i),
                    Flat::StrList(l) => $schema::Val::StrList(l.iter().map(String::as_str).collect()),
                    Flat::Other => $schema::Val::Other,
                };
                (k.as_str(), v)
            })
            .collect();
        $schema::problems(&event)
    }};
}

/// The two mappings: component file, schema check, and what the event must say of the flow it came from.
#[derive(Clone, Copy, Debug)]
enum Mapping {
    Ocsf,
    Ecs,
}

impl Mapping {
    fn name(self) -> &'static str {
        match self {
            Mapping::Ocsf => "ocsf",
            Mapping::Ecs => "ecs",
        }
    }

    fn file(self) -> String {
        format!("flowgate_transform_{}.wasm", self.name())
    }

    fn problems(self, event: &[(String, Flat)]) -> Vec<String> {
        match self {
            Mapping::Ocsf => check_with!(ocsf_schema, event),
            Mapping::Ecs => check_with!(ecs_schema, event),
        }
    }

    /// What the event must repeat of the flow: the two ends, the port, the sum of bytes.
    fn says_what_the_flow_said(self, event: &BTreeMap<String, Flat>, f: &Flow) -> Result<(), String> {
        let key = f.key.as_ref().unwrap();
        let (source, dest, port, bytes) = match self {
            Mapping::Ocsf => ("src_endpoint.name", "dst_endpoint.name", "dst_endpoint.port", "traffic.bytes"),
            Mapping::Ecs => ("source.address", "destination.address", "destination.port", "network.bytes"),
        };
        let expected = [
            (source, Flat::Str(key.source_name.clone())),
            (dest, Flat::Str(key.dest_name.clone())),
            (port, Flat::Int(key.dest_port)),
            (bytes, Flat::Int(f.bytes_in + f.bytes_out)),
        ];
        for (k, want) in expected {
            if event.get(k) != Some(&want) {
                return Err(format!("{k}: {:?}, the flow says {want:?}", event.get(k)));
            }
        }
        Ok(())
    }
}

/// Checks one record of a mapping: the body is the event, the attributes are the same event, it passes the
/// schema's check and repeats the flow. `skip` names attributes the host adds (provenance).
fn check_record(m: Mapping, record: &LogRecord, f: &Flow, skip: &str) -> Result<(), String> {
    let Some(Any::KvlistValue(body)) = record.body.as_ref().and_then(|b| b.value.as_ref()) else {
        return Err(format!("{m:?}: the body is not a structured map: {:?}", record.body));
    };
    let body = flat_all(&body.values);
    let attributes: Vec<KeyValue> = record.attributes.iter().filter(|a| a.key != skip).cloned().collect();
    let attributes = flat_all(&attributes);
    let as_map = |v: &[(String, Flat)]| v.iter().cloned().collect::<BTreeMap<_, _>>();
    if as_map(&body) != as_map(&attributes) {
        return Err(format!("{m:?}: body and attributes differ:\n{body:?}\n{attributes:?}"));
    }
    let problems = m.problems(&body);
    if !problems.is_empty() {
        return Err(format!("{m:?}: {problems:?} in {body:?}"));
    }
    m.says_what_the_flow_said(&as_map(&body), f)
}

/// Every flow the simulator sends: its generator (`flowgen`) under its default seed and others, over two
/// buckets, and the halves Goldmane streams of keys reported by two nodes (realistic settings), for each of
/// which the check is run. Also checks that the flows cover every shape the generator makes.
fn simulator_flows() -> Vec<Flow> {
    let start = 1_764_970_845;
    let (mut flows, mut halves) = (Vec::new(), 0);
    for seed in [1, 7, 21, 42] {
        let cfg = SimConfig { seed, flows_per_bucket: 2_000, ..SimConfig::default().realistic() };
        let model = Model::new(&cfg, start as f64);
        for bucket in [start, start + 15] {
            for (i, full) in model.flow_gen.bucket(bucket).into_iter().enumerate() {
                // As held when the bucket is streamed live: late keys missing, growing keys with their first half.
                if let Some(held) = model.held(i, bucket, bucket as f64 + 16.0) {
                    halves += usize::from(held != full);
                    flows.push(held);
                }
                flows.push(full);
            }
        }
    }
    let shapes = |what: &str, seen: HashSet<String>, all: &[&str]| {
        for s in all {
            assert!(seen.contains(*s), "no simulated flow with {what} {s}: the check would not cover it");
        }
    };
    let keys = || flows.iter().map(|f| f.key.as_ref().unwrap());
    shapes("action", keys().map(|k| format!("{:?}", k.action())).collect(), &["Allow", "Deny"]);
    shapes("reporter", keys().map(|k| format!("{:?}", k.reporter())).collect(), &["Src", "Dst"]);
    let types = keys().map(|k| format!("{:?}", k.dest_type())).collect();
    shapes("destination", types, &["WorkloadEndpoint", "HostEndpoint", "NetworkSet", "Network"]);
    shapes("protocol", keys().map(|k| k.proto.clone()).collect(), &["tcp", "udp"]);
    shapes("service", keys().map(|k| (k.dest_service_name != "-").to_string()).collect(), &["true", "false"]);
    let deciding = keys()
        .filter_map(|k| k.policies.as_ref()?.enforced_policies.last().map(|h| format!("{:?}", h.kind())))
        .collect();
    shapes("deciding policy", deciding, &["CalicoNetworkPolicy", "NetworkPolicy", "GlobalNetworkPolicy", "EndOfTier"]);
    assert!(halves > 0, "split reports are in");
    flows
}

/// The OCSF and ECS components pass their schema checks for every flow of the simulator, run by the real host
/// (wasmtime, the batch contract, batches of 512, the pipeline's own record building).
#[test]
fn ocsf_and_ecs_pass_their_schema_checks_for_every_flow_of_the_simulator() {
    let flows = simulator_flows();
    let rt = Runtime::new().unwrap();
    for m in [Mapping::Ocsf, Mapping::Ecs] {
        let spec = EntrySpec {
            name: m.name().into(),
            path: component(&m.file()),
            config: Vec::new(),
            policy: FailurePolicy::FailClosed,
            limits: Limits { deadline: Duration::from_millis(500), memory_bytes: 32 << 20 },
        };
        let chain = chain::build(&rt, vec![spec], 1).unwrap();
        let metrics = Metrics::new();
        let mut worker = Worker::new(metrics.clone(), None);
        let mut checked = 0;
        for batch in flows.chunks(512) {
            let items = worker.run(&chain, batch.to_vec());
            assert_eq!(items.len(), batch.len(), "{m:?}: every flow passes");
            for (item, f) in items.into_iter().zip(batch) {
                assert_eq!(item.flow(), f, "{m:?}: the flow itself is unchanged");
                let record = worker::record(item, 1, None).unwrap();
                if let Err(e) = check_record(m, &record, f, "") {
                    panic!("flow {f:?}: {e}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, flows.len());
        println!("{m:?}: {checked} simulated flows, every record passes its schema check");
    }
}

/// Protocols Calico may report beyond the simulator's: a batch with a protocol that has no IANA number in the
/// mapping (its number then travels per flow in OCSF, and is left out in both) still gives valid events.
#[test]
fn protocols_without_a_number_still_give_valid_events() {
    let mut flows = flowgate::sim::FlowGen { seed: 3, keys: 512 }.bucket(1_764_970_845);
    for (i, f) in flows.iter_mut().enumerate() {
        f.key.as_mut().unwrap().proto = ["gre", "SCTP", "icmp", "tcp"][i % 4].into();
    }
    let rt = Runtime::new().unwrap();
    for m in [Mapping::Ocsf, Mapping::Ecs] {
        let spec = EntrySpec {
            name: m.name().into(),
            path: component(&m.file()),
            config: Vec::new(),
            policy: FailurePolicy::FailClosed,
            limits: Limits::default(),
        };
        let chain = chain::build(&rt, vec![spec], 1).unwrap();
        let mut worker = Worker::new(Metrics::new(), None);
        let items = worker.run(&chain, flows.clone());
        assert_eq!(items.len(), flows.len());
        let number = match m {
            Mapping::Ocsf => "connection_info.protocol_num",
            Mapping::Ecs => "network.iana_number",
        };
        for (item, f) in items.into_iter().zip(&flows) {
            let record = worker::record(item, 1, None).unwrap();
            check_record(m, &record, f, "").unwrap_or_else(|e| panic!("{e}"));
            let got = record.attributes.iter().find(|a| a.key == number).map(|a| flat(a.value.as_ref()));
            let want = match (m, f.key.as_ref().unwrap().proto.as_str()) {
                (_, "gre") => None,
                (Mapping::Ocsf, "SCTP") => Some(Flat::Int(132)),
                (Mapping::Ocsf, "icmp") => Some(Flat::Int(1)),
                (Mapping::Ocsf, _) => Some(Flat::Int(6)),
                (Mapping::Ecs, "SCTP") => Some(Flat::Str("132".into())),
                (Mapping::Ecs, "icmp") => Some(Flat::Str("1".into())),
                (Mapping::Ecs, _) => Some(Flat::Str("6".into())),
            };
            assert_eq!(got, want, "{m:?} {}", f.key.as_ref().unwrap().proto);
        }
    }
}

/// End to end: the simulator streams over mTLS to the gateway running the component; every record the OTLP
/// receiver gets passes its schema's check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_exports_schema_conforming_records_from_the_simulator() {
    for m in [Mapping::Ocsf, Mapping::Ecs] {
        let cfg = SimConfig { flows_per_bucket: 300, time_scale: 30.0, seed: 11, ..SimConfig::default() };
        let (sim, _dir) = simulator(cfg).await;
        let rx = receiver(accept_all()).await;
        let mut raw = raw_config(&sim, &rx.base_url());
        raw.transforms.chain = Some(vec![RawEntry {
            name: Some(m.name().into()),
            path: Some(component(&m.file())),
            ..RawEntry::default()
        }]);
        let mut gw = Gateway::start(resolve(raw)).await;
        wait_until(Duration::from_secs(60), "two buckets exported", || gw.metrics.flows_exported.get() >= 600).await;
        gw.shutdown().await.unwrap();
        let generator = sim.flow_gen();
        let mut checked = 0;
        for request in rx.accepted() {
            for record in request.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records) {
                let body: BTreeMap<String, Flat> = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(Any::KvlistValue(kv)) => flat_all(&kv.values).into_iter().collect(),
                    other => panic!("{m:?}: not a structured body: {other:?}"),
                };
                // The flow this record came from: the generator's key with the same ends, port and bucket.
                let start = match (m, body.get("start_time"), body.get("event.start")) {
                    (Mapping::Ocsf, Some(Flat::Int(ms)), _) => ms / 1000,
                    (Mapping::Ecs, _, Some(Flat::Str(s))) => unix_seconds(s),
                    other => panic!("{m:?}: no start: {other:?}"),
                };
                let f = generator
                    .bucket(start)
                    .into_iter()
                    .find(|f| m.says_what_the_flow_said(&body, f).is_ok() && same_counters(m, &body, f))
                    .unwrap_or_else(|| panic!("{m:?}: no simulated flow of bucket {start} matches {body:?}"));
                check_record(m, record, &f, flowgate::pipeline::PROVENANCE_ATTRIBUTE).unwrap_or_else(|e| panic!("{e}"));
                checked += 1;
            }
        }
        assert!(checked >= 600, "{m:?}: {checked} records checked");
        println!("{m:?}: {checked} records from the gateway, each passes its schema check");
    }
}

/// `YYYY-MM-DDThh:mm:ssZ` back to Unix seconds (days from civil, Howard Hinnant).
fn unix_seconds(text: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11..13) * 3_600 + n(14..16) * 60 + n(17..19)
}

/// The record's packet counters are the flow's (bytes alone could match two keys).
fn same_counters(m: Mapping, event: &BTreeMap<String, Flat>, f: &Flow) -> bool {
    let packets = match m {
        Mapping::Ocsf => "traffic.packets",
        Mapping::Ecs => "network.packets",
    };
    event.get(packets) == Some(&Flat::Int(f.packets_in + f.packets_out))
}
