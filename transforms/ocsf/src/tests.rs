use std::collections::BTreeMap;

use flowgate_guest::{FlowRecord, sample_flow, sample_flows};

use flowgate_guest::{Config, Transform};

use super::*;
use crate::schema::{Val, problems};

fn val(v: &Value) -> Val<'_> {
    match v {
        Value::Str(s) => Val::Str(s),
        Value::Int(i) => Val::Int(*i),
        Value::StrList(l) => Val::StrList(l.iter().map(String::as_str).collect()),
        _ => Val::Other,
    }
}

fn check(attributes: &[Attribute]) -> Vec<String> {
    let event: Vec<(&str, Val<'_>)> = attributes.iter().map(|a| (a.key.as_str(), val(&a.value))).collect();
    problems(&event)
}

/// What the batch path gives flow `i`: its batch annotations, then its own attributes.
fn batch_attributes(flows: &Flows<'_>, outcome: &Outcome, i: usize) -> Vec<Attribute> {
    let mut got = flows.annotations_of(i);
    if let Outcome::Annotate(a) = outcome {
        got.extend(a.attributes.iter().cloned());
    }
    got
}

fn as_map(attributes: Vec<Attribute>) -> BTreeMap<String, Value> {
    let n = attributes.len();
    let map: BTreeMap<String, Value> = attributes.into_iter().map(|a| (a.key, a.value)).collect();
    assert_eq!(map.len(), n, "no key twice");
    map
}

#[test]
fn a_flow_becomes_a_network_activity_event() {
    let a = as_map(mapped(&Flow::of(&sample_flow())));
    assert_eq!(a["class_uid"], Value::Int(4001));
    assert_eq!(a["type_uid"], Value::Int(400_106));
    assert_eq!(a["time"], Value::Int(1_764_970_860_000), "milliseconds, the end of the bucket");
    assert_eq!(a["action_id"], Value::Int(1));
    assert_eq!(a["connection_info.direction_id"], Value::Int(3), "workload to workload is lateral");
    assert_eq!(a["connection_info.protocol_num"], Value::Int(6));
    assert_eq!(a["dst_endpoint.svc_name"], Value::Str("postgres".into()));
    assert_eq!(a["firewall_rule.uid"], Value::Str("payments/allow-checkout".into()));
    // Reported by the source: what it counted out went from source to destination.
    assert_eq!((&a["traffic.bytes_out"], &a["traffic.bytes_in"]), (&Value::Int(1226), &Value::Int(957)));
    let mut from_dest = sample_flow();
    from_dest.reporter = Reporter::Dst;
    let b = as_map(mapped(&Flow::of(&from_dest)));
    assert_eq!((&b["traffic.bytes_out"], &b["traffic.bytes_in"]), (&Value::Int(957), &Value::Int(1226)));
    assert_eq!(b["traffic.bytes"], Value::Int(957 + 1226));
}

#[test]
fn a_deny_names_the_policy_behind_the_end_of_tier() {
    let deny = sample_flows()
        .into_iter()
        .find(|f| f.enforced_policies.last().is_some_and(|h| h.kind == flowgate_guest::PolicyKind::EndOfTier))
        .unwrap();
    let a = as_map(mapped(&Flow::of(&deny)));
    assert_eq!(a["firewall_rule.name"], Value::Str("default-deny".into()));
    assert_eq!(a["firewall_rule.category"], Value::Str("security".into()));
    assert_eq!(a["firewall_rule.type"], Value::Str("CalicoNetworkPolicy".into()));
}

/// OCSF 1.x's required fields, types and enum values (see `schema.rs` for where they come from) hold for every
/// shape of flow, by either path.
#[test]
fn every_sample_flow_passes_the_schema_check_by_flow_and_by_batch() {
    let records = sample_flows();
    for (i, r) in records.iter().enumerate() {
        let p = check(&mapped(&Flow::of(r)));
        assert!(p.is_empty(), "flow {i} {r:?}: {p:?}");
    }
    for chunk in records.chunks(512) {
        let mut flows = Flows::of(chunk);
        let outcomes = map_batch(&mut flows, true);
        for (i, outcome) in outcomes.iter().enumerate() {
            let p = check(&batch_attributes(&flows, outcome, i));
            assert!(p.is_empty(), "flow {i} {:?}: {p:?}", chunk[i]);
        }
    }
}

/// The by-column mapping gives every flow exactly its per-flow mapping, in order.
#[test]
fn the_batch_mapping_equals_the_per_flow_mapping() {
    let records = sample_flows();
    // Batches with and without a protocol that has no number (that one's number travels per flow).
    let known: Vec<FlowRecord> = records.iter().filter(|r| r.proto != "gre").take(300).cloned().collect();
    for batch in [&records[..], &known[..]] {
        let mut flows = Flows::of(batch);
        let outcomes = map_batch(&mut flows, true);
        assert_eq!(outcomes.len(), batch.len());
        for (i, (record, outcome)) in batch.iter().zip(&outcomes).enumerate() {
            let Outcome::Annotate(a) = outcome else { panic!("annotate") };
            assert_eq!(a.body, Some(Body::Attributes));
            let (got, want) = (batch_attributes(&flows, outcome, i), mapped(&Flow::of(record)));
            assert_eq!(got, want, "flow {i}: the same attributes in the same order");
            as_map(got);
        }
    }
    let mut flows = Flows::of(&known);
    assert!(map_batch(&mut flows, false).iter().all(|o| *o == Outcome::Keep), "attributes only: nothing per flow");
}

/// The check is not a formality: each kind of mistake is caught.
#[test]
fn the_schema_check_catches_what_is_wrong() {
    let good = mapped(&Flow::of(&sample_flow()));
    assert!(check(&good).is_empty());
    let without = |key: &str| good.iter().filter(|a| a.key != key).cloned().collect::<Vec<_>>();
    let with = |key: &str, value: Value| {
        good.iter()
            .map(|a| if a.key == key { Attribute { key: a.key.clone(), value: value.clone() } } else { a.clone() })
            .collect::<Vec<_>>()
    };
    let caught = |attrs: Vec<Attribute>, what: &str| {
        let p = check(&attrs);
        assert!(p.iter().any(|p| p.contains(what)), "{what}: {p:?}");
    };
    for required in ["class_uid", "metadata.product.vendor_name", "connection_info.direction_id", "time"] {
        caught(without(required), &format!("{required}: required"));
    }
    caught(with("time", Value::Int(1_764_970_860)), "time: Int(1764970860) is not a Timestamp");
    caught(with("severity_id", Value::Int(7)), "severity_id: 7 is not one of its enum values");
    caught(with("activity_name", Value::Str("Open".into())), "activity_name");
    caught(with("type_uid", Value::Int(400_101)), "type_uid");
    caught(with("dst_endpoint.port", Value::Int(70_000)), "dst_endpoint.port");
    caught(with("class_uid", Value::Str("4001".into())), "class_uid");
    let mut extra = good.clone();
    extra.push(Attribute { key: "src_endpoint.namespace".into(), value: Value::Str("x".into()) });
    caught(extra, "not an attribute");
    let nameless: Vec<Attribute> =
        without("src_endpoint.name").into_iter().filter(|a| a.key != "dst_endpoint.name").collect();
    caught(nameless, "at least one");
}

#[test]
fn structured_body_by_default_json_on_request_and_nothing_else() {
    let mut t = Mapped::<Ocsf>::init(&Config::default()).unwrap();
    assert!(matches!(
        t.process(&mut Flow::of(&sample_flow())),
        Outcome::Annotate(Annotations { body: Some(Body::Attributes), .. })
    ));
    let mut t = Mapped::<Ocsf>::init(&Config::new(vec![("body".into(), "json".into())])).unwrap();
    assert!(matches!(t.process(&mut Flow::of(&sample_flow())), Outcome::Annotate(Annotations { body: None, .. })));
    let err = Mapped::<Ocsf>::init(&Config::new(vec![("body".into(), "xml".into())])).err().unwrap();
    assert_eq!(err, "body: \"xml\" is not structured or json");
}
