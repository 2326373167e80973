//! `semconv`: OpenTelemetry semantic-convention attributes and a structured body (see README.md for the table).
//!
//! Config: `body` = `structured` (default: the mapped fields as the body, for stores that index maps) or
//! `json` (keep the old exporter's JSON body and only add attributes).

use flowgate_guest::{
    Action, Annotations, Attribute, Body, Flow, Flows, IntField, Mapped, Mapping, Outcome, PoliciesField, Reporter,
    StringColumn, StringField, Value,
};

/// The mapping; exported as a transform configured by `body` ([`Mapped`]).
pub struct SemConv;

const ACTIONS: [&str; 4] = ["allow", "deny", "pass", "unknown"];

fn action_at(a: Action) -> u32 {
    match a {
        Action::Allow => 0,
        Action::Deny => 1,
        Action::Pass => 2,
        _ => 3,
    }
}

fn action(a: Action) -> &'static str {
    ACTIONS[action_at(a) as usize]
}

/// The same mapping as [`mapped`], for a whole batch: every attribute is a batch annotation
/// (a key crosses once a batch; the flow's own fields do not cross at all). Returns what each flow answers.
pub fn map_batch(flows: &mut Flows<'_>, structured_body: bool) -> Vec<Outcome> {
    use IntField as I;
    use StringField as S;
    let column =
        |values: &[&str], at: Vec<u32>| StringColumn { values: values.iter().map(|v| v.to_string()).collect(), at };
    flows.annotate_string_field("source.address", S::SourceName);
    flows.annotate_string_field("destination.address", S::DestName);
    flows.annotate_int_field("destination.port", I::DestPort);
    let proto = flows.strings(S::Proto);
    let lower =
        StringColumn { values: proto.values.iter().map(|p| p.to_ascii_lowercase()).collect(), at: proto.at.clone() };
    flows.annotate_strings("network.transport", lower);
    let direction = flows.reporters().iter().map(|r| u32::from(*r == Reporter::Dst)).collect();
    flows.annotate_strings("network.io.direction", column(&["transmit", "receive"], direction));
    flows.annotate_string_field("k8s.source.namespace.name", S::SourceNamespace);
    flows.annotate_string_field("k8s.destination.namespace.name", S::DestNamespace);
    let actions = flows.actions().iter().map(|a| action_at(*a)).collect();
    flows.annotate_strings("calico.action", column(&ACTIONS, actions));
    let hits = flows.policies(PoliciesField::EnforcedPolicies).clone();
    flows.annotate_string_lists("calico.policies", flowgate_guest::network::policy_names_column(&hits));
    flows.annotate_int_field("network.io.bytes.received", I::BytesIn);
    flows.annotate_int_field("network.io.bytes.transmitted", I::BytesOut);
    flows.annotate_int_field("network.io.packets.received", I::PacketsIn);
    flows.annotate_int_field("network.io.packets.transmitted", I::PacketsOut);
    flows.annotate_int_field("event.start", I::StartTime);
    flows.annotate_int_field("event.end", I::EndTime);
    // Only a real service: "" and Goldmane's "-" get no attribute (an index past the values).
    let service = flows.strings(S::DestServiceName).clone();
    let at = service
        .at
        .iter()
        .map(|&i| if matches!(service.values[i as usize].as_str(), "" | "-") { u32::MAX } else { i })
        .collect();
    flows.annotate_strings("k8s.service.name", StringColumn { values: service.values, at });
    // Every attribute is a batch annotation: a flow answers with the body only, or `keep`.
    let outcome = match structured_body {
        true => Outcome::Annotate(Annotations { attributes: Vec::new(), severity: None, body: Some(Body::Attributes) }),
        false => Outcome::Keep,
    };
    (0..flows.len()).map(|_| outcome.clone()).collect()
}

/// The mapping: (attribute, value) for one flow.
pub fn mapped(f: &Flow<'_>) -> Vec<Attribute> {
    let s = |v: &str| Value::Str(v.to_string());
    // `enforced_policies` as `tier/name`, unnamed hits left out.
    let policies = flowgate_guest::network::policy_names(f.enforced_policies());
    let mut out = vec![
        ("source.address", s(f.source_name())),
        ("destination.address", s(f.dest_name())),
        ("destination.port", Value::Int(f.dest_port())),
        ("network.transport", s(&f.proto().to_ascii_lowercase())),
        ("network.io.direction", s(if f.reporter() == Reporter::Dst { "receive" } else { "transmit" })),
        ("k8s.source.namespace.name", s(f.source_namespace())),
        ("k8s.destination.namespace.name", s(f.dest_namespace())),
        ("calico.action", s(action(f.action()))),
        ("calico.policies", Value::StrList(policies)),
        ("network.io.bytes.received", Value::Int(f.bytes_in())),
        ("network.io.bytes.transmitted", Value::Int(f.bytes_out())),
        ("network.io.packets.received", Value::Int(f.packets_in())),
        ("network.io.packets.transmitted", Value::Int(f.packets_out())),
        ("event.start", Value::Int(f.start_time())),
        ("event.end", Value::Int(f.end_time())),
    ];
    let service = f.dest_service_name();
    if !service.is_empty() && service != "-" {
        out.push(("k8s.service.name", s(service)));
    }
    out.into_iter().map(|(key, value)| Attribute { key: key.to_string(), value }).collect()
}

impl Mapping for SemConv {
    fn mapped(flow: &Flow<'_>) -> Vec<Attribute> {
        mapped(flow)
    }

    fn map_batch(flows: &mut Flows<'_>, structured_body: bool) -> Vec<Outcome> {
        map_batch(flows, structured_body)
    }
}

flowgate_guest::export!(Mapped<SemConv>);

#[cfg(test)]
mod tests {
    use flowgate_guest::{Config, Transform, sample_flow};

    use super::*;

    #[test]
    fn maps_a_flow_onto_semantic_conventions() {
        let a = mapped(&Flow::of(&sample_flow()));
        let get = |k: &str| a.iter().find(|x| x.key == k).map(|x| x.value.clone());
        assert_eq!(get("destination.port"), Some(Value::Int(5432)));
        assert_eq!(get("network.transport"), Some(Value::Str("tcp".into())));
        assert_eq!(get("network.io.direction"), Some(Value::Str("transmit".into())));
        assert_eq!(get("calico.policies"), Some(Value::StrList(vec!["default/allow-checkout".into()])));
        assert_eq!(get("k8s.service.name"), Some(Value::Str("postgres".into())));
    }

    /// The batch path gives every flow the same attributes as the per-flow mapping.
    #[test]
    fn the_batch_mapping_equals_the_per_flow_mapping() {
        let mut records = vec![sample_flow(); 4];
        records[1].reporter = Reporter::Dst;
        records[1].proto = "UDP".into();
        records[2].action = Action::Deny;
        records[2].dest_service_name = "-".into();
        records[3].dest_service_name = String::new();
        records[3].enforced_policies.clear();
        let mut flows = Flows::of(&records);
        let outcomes = map_batch(&mut flows, true);
        for (i, (record, outcome)) in records.iter().zip(outcomes).enumerate() {
            let Outcome::Annotate(a) = outcome else { panic!("annotate") };
            assert_eq!(a.body, Some(Body::Attributes));
            assert!(a.attributes.is_empty(), "nothing per flow");
            let got = flows.annotations_of(i);
            // The same attributes, values and order as the per-flow mapping.
            assert_eq!(got, mapped(&Flow::of(record)), "flow {i}");
        }
    }

    #[test]
    fn structured_body_by_default_json_on_request() {
        let mut t = Mapped::<SemConv>::init(&Config::default()).unwrap();
        assert!(matches!(
            t.process(&mut Flow::of(&sample_flow())),
            Outcome::Annotate(Annotations { body: Some(Body::Attributes), .. })
        ));
        let mut t = Mapped::<SemConv>::init(&Config::new(vec![("body".into(), "json".into())])).unwrap();
        assert!(matches!(t.process(&mut Flow::of(&sample_flow())), Outcome::Annotate(Annotations { body: None, .. })));
    }
}
