//! `ecs`: each flow as an Elastic Common Schema event: `@timestamp`, `ecs.version`, `event.*`, `network.*`,
//! `source.*`, `destination.*` and `rule.*`, with Calico's own fields under `calico.*`; flat dotted attributes
//! and, by default, the same as the record's structured body (see README.md for the table, and [`schema`] for
//! what ECS requires and where that comes from).
//!
//! Config: `body` = `structured` (default: the event as the body) or `json` (keep the old exporter's JSON body
//! and only add attributes).

use std::collections::HashMap;

use flowgate_guest::network::{self, Deciding};
use flowgate_guest::{
    Action, Annotations, Attribute, Body, EndpointField, EndpointType, Flow, Flows, IntField, LabelsColumn, Mapped,
    Mapping, Outcome, PoliciesField, Reporter, StringColumn, StringField, Value,
};

pub mod schema;

/// The ECS version the events declare (`ecs.version`).
pub const ECS_VERSION: &str = "8.11.0";

/// What every event says the same way.
fn constants() -> Vec<(&'static str, Value)> {
    let s = |v: &str| Value::Str(v.to_string());
    vec![
        ("ecs.version", s(ECS_VERSION)),
        ("event.kind", s("event")),
        ("event.category", Value::StrList(vec!["network".into()])),
        ("event.dataset", s("calico.flows")),
        ("observer.vendor", s("Tigera")),
        ("observer.product", s("Calico")),
    ]
}

/// `event.type`: a connection, allowed or denied when the policy decided so (`pass` and unknown actions
/// decide nothing).
pub fn event_type(a: Action) -> &'static [&'static str] {
    match a {
        Action::Allow => &["connection", "allowed"],
        Action::Deny => &["connection", "denied"],
        _ => &["connection"],
    }
}

/// `event.action`: Calico's action.
pub fn action(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Pass => "pass",
        _ => "unknown",
    }
}

/// `network.direction`, from the reporting endpoint's side (ECS's host-based values): the source reports what
/// leaves it, the destination what enters it.
pub fn direction(r: Reporter) -> &'static str {
    match r {
        Reporter::Src => "egress",
        Reporter::Dst => "ingress",
        _ => "unknown",
    }
}

/// `calico.*.type`: the endpoint type as Calico's flow logs abbreviate it.
pub fn endpoint_type(t: EndpointType) -> &'static str {
    match t {
        EndpointType::WorkloadEndpoint => "wep",
        EndpointType::HostEndpoint => "hep",
        EndpointType::NetworkSet => "ns",
        EndpointType::Network => "net",
        _ => "unknown",
    }
}

/// Goldmane writes `-` (or nothing) for a flow without a service.
fn service(name: &str) -> Option<&str> {
    (!matches!(name, "" | "-")).then_some(name)
}

const NANOS: i64 = 1_000_000_000;
const RULE_KEYS: [&str; 4] = ["rule.name", "rule.id", "rule.ruleset", "rule.category"];

/// The `rule.*` of the policy that decided: its name, `namespace/name`, tier, kind.
fn rule_values(d: &Deciding<'_>) -> [String; 4] {
    [d.name.to_string(), d.id(), d.tier.to_string(), network::policy_kind_name(d.kind).to_string()]
}

/// The mapping of one flow: (attribute, value), in the order [`map_batch`] sends them.
pub fn mapped(f: &Flow<'_>) -> Vec<Attribute> {
    let s = |v: &str| Value::Str(v.to_string());
    let mut out = vec![("@timestamp", s(&network::rfc3339(f.end_time())))];
    out.extend(constants());
    let a = f.action();
    out.extend([
        ("event.type", Value::StrList(event_type(a).iter().map(|t| t.to_string()).collect())),
        ("event.action", s(action(a))),
        ("event.start", s(&network::rfc3339(f.start_time()))),
        ("event.end", s(&network::rfc3339(f.end_time()))),
        ("event.duration", Value::Int((f.end_time() - f.start_time()) * NANOS)),
        ("network.transport", s(&f.proto().to_ascii_lowercase())),
    ]);
    if let Some(num) = network::iana_protocol(f.proto()) {
        out.push(("network.iana_number", s(&num.to_string())));
    }
    let (source_bytes, dest_bytes) = network::by_end(f.reporter(), f.bytes_in(), f.bytes_out());
    let (source_packets, dest_packets) = network::by_end(f.reporter(), f.packets_in(), f.packets_out());
    out.extend([
        ("network.direction", s(direction(f.reporter()))),
        ("network.bytes", Value::Int(source_bytes + dest_bytes)),
        ("network.packets", Value::Int(source_packets + dest_packets)),
        ("source.address", s(f.source_name())),
        ("source.bytes", Value::Int(source_bytes)),
        ("source.packets", Value::Int(source_packets)),
        ("destination.address", s(f.dest_name())),
        ("destination.port", Value::Int(f.dest_port())),
        ("destination.bytes", Value::Int(dest_bytes)),
        ("destination.packets", Value::Int(dest_packets)),
    ]);
    if let Some(rule) = Deciding::of(f.enforced_policies()) {
        out.extend(RULE_KEYS.into_iter().zip(rule_values(&rule).map(Value::Str)));
    }
    out.extend([
        ("calico.source.namespace", s(f.source_namespace())),
        ("calico.source.type", s(endpoint_type(f.source_type()))),
        ("calico.destination.namespace", s(f.dest_namespace())),
        ("calico.destination.type", s(endpoint_type(f.dest_type()))),
    ]);
    if let Some(svc) = service(f.dest_service_name()) {
        out.push(("calico.destination.service", s(svc)));
    }
    out.push(("calico.policies", Value::StrList(network::policy_names(f.enforced_policies()))));
    out.into_iter().map(|(key, value)| Attribute { key: key.to_string(), value }).collect()
}

/// RFC 3339 text of every flow's time, each distinct second rendered once (a batch holds a bucket or two).
fn dates(seconds: &[i64]) -> StringColumn {
    let mut values = Vec::new();
    let mut seen: HashMap<i64, u32> = HashMap::new();
    let at = seconds
        .iter()
        .map(|&t| {
            *seen.entry(t).or_insert_with(|| {
                values.push(network::rfc3339(t));
                values.len() as u32 - 1
            })
        })
        .collect();
    StringColumn { values, at }
}

/// The same mapping as [`mapped`] for a whole batch, column by column: every attribute a batch annotation, so a
/// flow answers with the body only (or `keep`).
pub fn map_batch(flows: &mut Flows<'_>, structured_body: bool) -> Vec<Outcome> {
    use IntField as I;
    use StringField as S;
    let n = flows.len();
    let (start, end) = (flows.ints(I::StartTime).to_vec(), flows.ints(I::EndTime).to_vec());
    let end_dates = dates(&end);
    flows.annotate_strings("@timestamp", end_dates.clone());
    for (key, value) in constants() {
        match value {
            Value::Str(v) => flows.annotate_strings(key, StringColumn::constant(&v, n)),
            Value::StrList(v) => flows.annotate_string_lists(
                key,
                LabelsColumn { values: v, at: vec![0; n], starts: (0..=n as u32).collect() },
            ),
            _ => unreachable!("constants are strings and lists"),
        }
    }
    let actions = flows.actions().to_vec();
    // "connection" for every flow, then "allowed" (1) or "denied" (2) when decided.
    let mut types = LabelsColumn {
        values: ["connection", "allowed", "denied"].map(String::from).to_vec(),
        at: Vec::with_capacity(2 * n),
        starts: Vec::with_capacity(n + 1),
    };
    for a in &actions {
        types.starts.push(types.at.len() as u32);
        types.at.extend(event_type(*a).iter().map(|t| types.values.iter().position(|v| v == t).unwrap_or(0) as u32));
    }
    types.starts.push(types.at.len() as u32);
    flows.annotate_string_lists("event.type", types);
    flows.annotate_strings("event.action", StringColumn::collect(actions.iter().map(|a| Some(action(*a)))));
    flows.annotate_strings("event.start", dates(&start));
    flows.annotate_strings("event.end", end_dates);
    flows.annotate_ints("event.duration", start.iter().zip(&end).map(|(s, e)| (e - s) * NANOS).collect());
    let proto = flows.strings(S::Proto).clone();
    let lower =
        StringColumn { values: proto.values.iter().map(|p| p.to_ascii_lowercase()).collect(), at: proto.at.clone() };
    flows.annotate_strings("network.transport", lower);
    let numbers: Vec<Option<String>> =
        proto.values.iter().map(|p| network::iana_protocol(p).map(|n| n.to_string())).collect();
    flows.annotate_strings(
        "network.iana_number",
        StringColumn::collect(proto.at.iter().map(|&i| numbers[i as usize].as_deref())),
    );
    let reporters = flows.reporters().to_vec();
    flows.annotate_strings("network.direction", StringColumn::collect(reporters.iter().map(|r| Some(direction(*r)))));
    let by_end = |counted_in: &[i64], counted_out: &[i64]| -> (Vec<i64>, Vec<i64>) {
        reporters.iter().zip(counted_in.iter().zip(counted_out)).map(|(r, (i, o))| network::by_end(*r, *i, *o)).unzip()
    };
    let (source_bytes, dest_bytes) = by_end(flows.ints(I::BytesIn), flows.ints(I::BytesOut));
    let (source_packets, dest_packets) = by_end(flows.ints(I::PacketsIn), flows.ints(I::PacketsOut));
    let sum = |a: &[i64], b: &[i64]| a.iter().zip(b).map(|(a, b)| a + b).collect::<Vec<_>>();
    flows.annotate_ints("network.bytes", sum(&source_bytes, &dest_bytes));
    flows.annotate_ints("network.packets", sum(&source_packets, &dest_packets));
    flows.annotate_string_field("source.address", S::SourceName);
    flows.annotate_ints("source.bytes", source_bytes);
    flows.annotate_ints("source.packets", source_packets);
    flows.annotate_string_field("destination.address", S::DestName);
    flows.annotate_int_field("destination.port", I::DestPort);
    flows.annotate_ints("destination.bytes", dest_bytes);
    flows.annotate_ints("destination.packets", dest_packets);
    // The deciding rule of each distinct hit once; each flow's by its last hit.
    let hits = flows.policies(PoliciesField::EnforcedPolicies).clone();
    let rules: Vec<Option<[String; 4]>> =
        hits.hits.iter().map(|h| Deciding::of_hit(h).map(|d| rule_values(&d))).collect();
    let rule_of: Vec<Option<&[String; 4]>> =
        network::last_hits(&hits).into_iter().map(|k| k.and_then(|k| rules[k].as_ref())).collect();
    for (j, key) in RULE_KEYS.into_iter().enumerate() {
        flows.annotate_strings(key, StringColumn::collect(rule_of.iter().map(|r| r.map(|r| r[j].as_str()))));
    }
    let types_of = |flows: &Flows<'_>, field| {
        StringColumn::collect(flows.endpoint_types(field).iter().map(|t| Some(endpoint_type(*t))))
    };
    flows.annotate_string_field("calico.source.namespace", S::SourceNamespace);
    let source_types = types_of(flows, EndpointField::SourceType);
    flows.annotate_strings("calico.source.type", source_types);
    flows.annotate_string_field("calico.destination.namespace", S::DestNamespace);
    let dest_types = types_of(flows, EndpointField::DestType);
    flows.annotate_strings("calico.destination.type", dest_types);
    let services = flows.strings(S::DestServiceName).clone();
    flows.annotate_strings(
        "calico.destination.service",
        StringColumn::collect(services.at.iter().map(|&i| service(&services.values[i as usize]))),
    );
    flows.annotate_string_lists("calico.policies", network::policy_names_column(&hits));
    let outcome = match structured_body {
        true => Outcome::Annotate(Annotations { attributes: Vec::new(), severity: None, body: Some(Body::Attributes) }),
        false => Outcome::Keep,
    };
    vec![outcome; n]
}

/// The mapping; exported as a transform configured by `body` ([`Mapped`]).
pub struct Ecs;

impl Mapping for Ecs {
    fn mapped(flow: &Flow<'_>) -> Vec<Attribute> {
        mapped(flow)
    }

    fn map_batch(flows: &mut Flows<'_>, structured_body: bool) -> Vec<Outcome> {
        map_batch(flows, structured_body)
    }
}

flowgate_guest::export!(Mapped<Ecs>);

#[cfg(test)]
mod tests;
