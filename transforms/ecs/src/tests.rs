use std::collections::BTreeMap;

use flowgate_guest::{PolicyKind, sample_flow, sample_flows};

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

fn as_map(attributes: Vec<Attribute>) -> BTreeMap<String, Value> {
    attributes.into_iter().map(|a| (a.key, a.value)).collect()
}

#[test]
fn a_flow_becomes_an_ecs_network_event() {
    let a = as_map(mapped(&Flow::of(&sample_flow())));
    let s = |v: &str| Value::Str(v.into());
    assert_eq!(a["@timestamp"], s("2025-12-05T21:41:00Z"), "the end of the bucket");
    assert_eq!(a["event.start"], s("2025-12-05T21:40:45Z"));
    assert_eq!(a["event.duration"], Value::Int(15_000_000_000), "nanoseconds");
    assert_eq!(a["event.type"], Value::StrList(vec!["connection".into(), "allowed".into()]));
    assert_eq!(a["network.iana_number"], s("6"));
    assert_eq!(a["network.direction"], s("egress"), "reported by the source");
    assert_eq!(a["rule.id"], s("payments/allow-checkout"));
    assert_eq!(a["rule.ruleset"], s("default"));
    assert_eq!(a["calico.destination.service"], s("postgres"));
    assert_eq!((&a["source.bytes"], &a["destination.bytes"]), (&Value::Int(1226), &Value::Int(957)));
    let mut from_dest = sample_flow();
    from_dest.reporter = Reporter::Dst;
    let b = as_map(mapped(&Flow::of(&from_dest)));
    assert_eq!(b["network.direction"], s("ingress"));
    assert_eq!((&b["source.bytes"], &b["destination.bytes"]), (&Value::Int(957), &Value::Int(1226)));
}

#[test]
fn a_deny_names_the_policy_behind_the_end_of_tier() {
    let deny = sample_flows()
        .into_iter()
        .find(|f| {
            f.action == Action::Deny && f.enforced_policies.last().is_some_and(|h| h.kind == PolicyKind::EndOfTier)
        })
        .unwrap();
    let a = as_map(mapped(&Flow::of(&deny)));
    assert_eq!(a["rule.name"], Value::Str("default-deny".into()));
    assert_eq!(a["event.type"], Value::StrList(vec!["connection".into(), "denied".into()]));
}

/// ECS's required fields, types and allowed values (see `schema.rs` for where they come from) hold for every
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
        map_batch(&mut flows, true);
        for (i, r) in chunk.iter().enumerate() {
            let p = check(&flows.annotations_of(i));
            assert!(p.is_empty(), "flow {i} {r:?}: {p:?}");
        }
    }
}

/// The by-column mapping gives every flow exactly its per-flow mapping, in the same order, and nothing crosses
/// per flow.
#[test]
fn the_batch_mapping_equals_the_per_flow_mapping() {
    let records = sample_flows();
    let mut flows = Flows::of(&records);
    let outcomes = map_batch(&mut flows, true);
    assert_eq!(outcomes.len(), records.len());
    for (i, (record, outcome)) in records.iter().zip(outcomes).enumerate() {
        let Outcome::Annotate(a) = outcome else { panic!("annotate") };
        assert_eq!(a.body, Some(Body::Attributes));
        assert!(a.attributes.is_empty(), "nothing per flow");
        assert_eq!(flows.annotations_of(i), mapped(&Flow::of(record)), "flow {i}");
    }
    let mut flows = Flows::of(&records);
    assert!(map_batch(&mut flows, false).iter().all(|o| *o == Outcome::Keep));
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
    caught(without("@timestamp"), "@timestamp: required");
    caught(without("ecs.version"), "ecs.version: required");
    caught(with("@timestamp", Value::Int(1_764_970_860)), "@timestamp: Int");
    caught(with("@timestamp", Value::Str("05/12/2025 21:41".into())), "@timestamp");
    caught(with("event.kind", Value::Str("flow".into())), "event.kind: \"flow\" is not one of its allowed values");
    caught(with("event.type", Value::StrList(vec!["creation".into()])), "not expected with event.category network");
    caught(with("event.category", Value::Str("network".into())), "event.category");
    caught(with("network.direction", Value::Str("east-west".into())), "network.direction");
    caught(with("network.transport", Value::Str("TCP".into())), "lowercase");
    caught(with("network.bytes", Value::Int(1)), "network.bytes: 1 is not");
    caught(with("destination.port", Value::Str("5432".into())), "destination.port");
    let mut extra = good.clone();
    extra.push(Attribute { key: "source.namespace".into(), value: Value::Str("x".into()) });
    caught(extra, "not an ECS field");
}

#[test]
fn structured_body_by_default_json_on_request_and_nothing_else() {
    let mut t = Mapped::<Ecs>::init(&Config::default()).unwrap();
    assert!(matches!(
        t.process(&mut Flow::of(&sample_flow())),
        Outcome::Annotate(Annotations { body: Some(Body::Attributes), .. })
    ));
    let mut t = Mapped::<Ecs>::init(&Config::new(vec![("body".into(), "json".into())])).unwrap();
    assert!(matches!(t.process(&mut Flow::of(&sample_flow())), Outcome::Annotate(Annotations { body: None, .. })));
    let err = Mapped::<Ecs>::init(&Config::new(vec![("body".into(), "xml".into())])).err().unwrap();
    assert_eq!(err, "body: \"xml\" is not structured or json");
}
