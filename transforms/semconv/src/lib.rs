//! `semconv`: OpenTelemetry semantic-convention attributes and a structured body (see README.md for the table).
//!
//! Config: `body` = `structured` (default: the mapped fields as the body, for stores that index maps) or
//! `json` (keep the old exporter's JSON body and only add attributes).

use flowgate_guest::{Action, Annotations, Attribute, Body, Config, Flow, Outcome, Reporter, Transform, Value};

pub struct SemConv {
    structured_body: bool,
}

fn action(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Pass => "pass",
        _ => "unknown",
    }
}

/// The mapping: (attribute, value) for one flow.
pub fn mapped(f: &Flow<'_>) -> Vec<Attribute> {
    let s = |v: &str| Value::Str(v.to_string());
    let policies: Vec<String> =
        f.enforced_policies().iter().filter(|h| !h.name.is_empty()).map(|h| format!("{}/{}", h.tier, h.name)).collect();
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

impl Transform for SemConv {
    fn init(c: &Config) -> Result<Self, String> {
        match c.get("body").unwrap_or("structured") {
            "structured" => Ok(SemConv { structured_body: true }),
            "json" => Ok(SemConv { structured_body: false }),
            other => Err(format!("body: {other:?} is not structured or json")),
        }
    }

    fn process(&mut self, f: &mut Flow<'_>) -> Outcome {
        let attributes = mapped(f);
        // The attributes again as the body, without sending them twice.
        let body = self.structured_body.then_some(Body::Attributes);
        Outcome::Annotate(Annotations { attributes, severity: None, body })
    }
}

flowgate_guest::export!(SemConv);

#[cfg(test)]
mod tests {
    use flowgate_guest::sample_flow;

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

    #[test]
    fn structured_body_by_default_json_on_request() {
        let mut t = SemConv::init(&Config::default()).unwrap();
        assert!(matches!(
            t.process(&mut Flow::of(&sample_flow())),
            Outcome::Annotate(Annotations { body: Some(Body::Attributes), .. })
        ));
        let mut t = SemConv::init(&Config::new(vec![("body".into(), "json".into())])).unwrap();
        assert!(matches!(t.process(&mut Flow::of(&sample_flow())), Outcome::Annotate(Annotations { body: None, .. })));
    }
}
