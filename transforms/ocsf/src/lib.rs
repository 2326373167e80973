//! `ocsf`: each flow as an OCSF 1.x Network Activity event (class 4001, activity 6 `Traffic`), as flat dotted
//! attributes and, by default, the same as the record's structured body (see README.md for the table, and
//! [`schema`] for what the schema requires and where that comes from).
//!
//! Config: `body` = `structured` (default: the event as the body) or `json` (keep the old exporter's JSON body
//! and only add attributes).

use flowgate_guest::network::{self, Deciding};
use flowgate_guest::{
    Action, Annotations, Attribute, Body, EndpointField, EndpointType, Flow, Flows, IntField, Mapped, Mapping, Outcome,
    PoliciesField, Reporter, StringColumn, StringField, Value,
};

pub mod schema;

/// The OCSF version the events declare (`metadata.version`).
pub const OCSF_VERSION: &str = "1.4.0";

/// What every event says the same way: class, category, activity, producer.
fn constants() -> Vec<(&'static str, Value)> {
    let s = |v: &str| Value::Str(v.to_string());
    vec![
        ("class_uid", Value::Int(4001)),
        ("class_name", s("Network Activity")),
        ("category_uid", Value::Int(4)),
        ("category_name", s("Network Activity")),
        ("activity_id", Value::Int(6)),
        ("activity_name", s("Traffic")),
        ("type_uid", Value::Int(400_106)),
        ("type_name", s("Network Activity: Traffic")),
        ("metadata.version", s(OCSF_VERSION)),
        ("metadata.product.name", s("Calico Goldmane")),
        ("metadata.product.vendor_name", s("Tigera")),
    ]
}

/// `severity_id` and `severity`: a denied flow is `Low` (worth a look), the rest `Informational`.
pub fn severity(a: Action) -> (i64, &'static str) {
    if a == Action::Deny { (2, "Low") } else { (1, "Informational") }
}

/// `action_id` and `action`: Calico's `pass` (on to the next tier) has no OCSF value, so `Other` with its name.
pub fn action(a: Action) -> (i64, &'static str) {
    match a {
        Action::Allow => (1, "Allowed"),
        Action::Deny => (2, "Denied"),
        Action::Pass => (99, "Pass"),
        _ => (0, "Unknown"),
    }
}

/// `disposition_id` and `disposition`.
pub fn disposition(a: Action) -> (i64, &'static str) {
    match a {
        Action::Allow => (1, "Allowed"),
        Action::Deny => (2, "Blocked"),
        _ => (0, "Unknown"),
    }
}

/// `connection_info.direction_id` and `direction`: from outside the cluster (a network or network set) is
/// `Inbound`, to outside `Outbound`, between workloads and hosts `Lateral`; an endpoint of unknown type `Unknown`.
pub fn direction(source: EndpointType, dest: EndpointType) -> (i64, &'static str) {
    let outside = |t: EndpointType| matches!(t, EndpointType::Network | EndpointType::NetworkSet);
    let known = |t: EndpointType| !matches!(t, EndpointType::Unspecified | EndpointType::Unknown);
    match (source, dest) {
        (s, _) if outside(s) => (1, "Inbound"),
        (_, d) if outside(d) => (2, "Outbound"),
        (s, d) if known(s) && known(d) => (3, "Lateral"),
        _ => (0, "Unknown"),
    }
}

fn reporter(r: Reporter) -> &'static str {
    match r {
        Reporter::Src => "src",
        Reporter::Dst => "dst",
        _ => "unknown",
    }
}

/// Goldmane writes `-` (or nothing) for a flow without a service.
fn service(name: &str) -> Option<&str> {
    (!matches!(name, "" | "-")).then_some(name)
}

const RULE_KEYS: [&str; 4] =
    ["firewall_rule.name", "firewall_rule.uid", "firewall_rule.type", "firewall_rule.category"];

/// The `firewall_rule` of the policy that decided: its name, `namespace/name`, kind, tier.
fn rule_values(d: &Deciding<'_>) -> [String; 4] {
    [d.name.to_string(), d.id(), network::policy_kind_name(d.kind).to_string(), d.tier.to_string()]
}

/// The mapping of one flow: (attribute, value), in the order [`map_batch`] sends them.
pub fn mapped(f: &Flow<'_>) -> Vec<Attribute> {
    let s = |v: &str| Value::Str(v.to_string());
    let mut out = constants();
    let a = f.action();
    let (severity_id, severity) = severity(a);
    out.extend([("severity_id", Value::Int(severity_id)), ("severity", s(severity))]);
    out.extend([
        ("time", Value::Int(f.end_time() * 1000)),
        ("start_time", Value::Int(f.start_time() * 1000)),
        ("end_time", Value::Int(f.end_time() * 1000)),
        ("duration", Value::Int((f.end_time() - f.start_time()) * 1000)),
    ]);
    let ((action_id, action), (disposition_id, disposition)) = (action(a), disposition(a));
    out.extend([
        ("action_id", Value::Int(action_id)),
        ("action", s(action)),
        ("disposition_id", Value::Int(disposition_id)),
        ("disposition", s(disposition)),
        ("src_endpoint.name", s(f.source_name())),
        ("dst_endpoint.name", s(f.dest_name())),
        ("dst_endpoint.port", Value::Int(f.dest_port())),
    ]);
    if let Some(svc) = service(f.dest_service_name()) {
        out.push(("dst_endpoint.svc_name", s(svc)));
    }
    out.push(("connection_info.protocol_name", s(&f.proto().to_ascii_lowercase())));
    let (direction_id, direction) = direction(f.source_type(), f.dest_type());
    out.extend([
        ("connection_info.direction_id", Value::Int(direction_id)),
        ("connection_info.direction", s(direction)),
    ]);
    let (bytes_out, bytes_in) = network::by_end(f.reporter(), f.bytes_in(), f.bytes_out());
    let (packets_out, packets_in) = network::by_end(f.reporter(), f.packets_in(), f.packets_out());
    out.extend([
        ("traffic.bytes_in", Value::Int(bytes_in)),
        ("traffic.bytes_out", Value::Int(bytes_out)),
        ("traffic.packets_in", Value::Int(packets_in)),
        ("traffic.packets_out", Value::Int(packets_out)),
        ("traffic.bytes", Value::Int(bytes_in + bytes_out)),
        ("traffic.packets", Value::Int(packets_in + packets_out)),
    ]);
    if let Some(rule) = Deciding::of(f.enforced_policies()) {
        out.extend(RULE_KEYS.into_iter().zip(rule_values(&rule).map(Value::Str)));
    }
    out.extend([
        ("unmapped.source_namespace", s(f.source_namespace())),
        ("unmapped.dest_namespace", s(f.dest_namespace())),
        ("unmapped.reporter", s(reporter(f.reporter()))),
        ("unmapped.policies", Value::StrList(network::policy_names(f.enforced_policies()))),
    ]);
    // Sent with the flow's own annotations by the batch path (an integer column cannot leave a flow out).
    if let Some(num) = network::iana_protocol(f.proto()) {
        out.push(("connection_info.protocol_num", Value::Int(num)));
    }
    out.into_iter().map(|(key, value)| Attribute { key: key.to_string(), value }).collect()
}

/// The same mapping as [`mapped`] for a whole batch, column by column: every attribute a batch annotation but
/// `connection_info.protocol_num` when a flow of the batch has a protocol without a number. Returns what each
/// flow answers.
pub fn map_batch(flows: &mut Flows<'_>, structured_body: bool) -> Vec<Outcome> {
    use IntField as I;
    use StringField as S;
    let n = flows.len();
    let ints = |flows: &Flows<'_>, field| flows.ints(field).to_vec();
    for (key, value) in constants() {
        match value {
            Value::Int(v) => flows.annotate_ints(key, vec![v; n]),
            Value::Str(v) => flows.annotate_strings(key, StringColumn::constant(&v, n)),
            _ => unreachable!("constants are strings and integers"),
        }
    }
    let actions = flows.actions().to_vec();
    let by_action =
        |flows: &mut Flows<'_>, (id_key, caption_key): (&str, &str), map: fn(Action) -> (i64, &'static str)| {
            flows.annotate_ints(id_key, actions.iter().map(|a| map(*a).0).collect());
            flows.annotate_strings(caption_key, StringColumn::collect(actions.iter().map(|a| Some(map(*a).1))));
        };
    by_action(flows, ("severity_id", "severity"), severity);
    let (start, end) = (ints(flows, I::StartTime), ints(flows, I::EndTime));
    flows.annotate_ints("time", end.iter().map(|t| t * 1000).collect());
    flows.annotate_ints("start_time", start.iter().map(|t| t * 1000).collect());
    flows.annotate_ints("end_time", end.iter().map(|t| t * 1000).collect());
    flows.annotate_ints("duration", start.iter().zip(&end).map(|(s, e)| (e - s) * 1000).collect());
    by_action(flows, ("action_id", "action"), action);
    by_action(flows, ("disposition_id", "disposition"), disposition);
    flows.annotate_string_field("src_endpoint.name", S::SourceName);
    flows.annotate_string_field("dst_endpoint.name", S::DestName);
    flows.annotate_int_field("dst_endpoint.port", I::DestPort);
    let services = flows.strings(S::DestServiceName).clone();
    flows.annotate_strings(
        "dst_endpoint.svc_name",
        StringColumn::collect(services.at.iter().map(|&i| service(&services.values[i as usize]))),
    );
    let proto = flows.strings(S::Proto).clone();
    let lower =
        StringColumn { values: proto.values.iter().map(|p| p.to_ascii_lowercase()).collect(), at: proto.at.clone() };
    flows.annotate_strings("connection_info.protocol_name", lower);
    let (sources, dests) = (
        flows.endpoint_types(EndpointField::SourceType).to_vec(),
        flows.endpoint_types(EndpointField::DestType).to_vec(),
    );
    let directions: Vec<_> = sources.iter().zip(&dests).map(|(s, d)| direction(*s, *d)).collect();
    flows.annotate_ints("connection_info.direction_id", directions.iter().map(|d| d.0).collect());
    flows.annotate_strings("connection_info.direction", StringColumn::collect(directions.iter().map(|d| Some(d.1))));
    let reporters = flows.reporters().to_vec();
    let by_end = |counted_in: &[i64], counted_out: &[i64]| -> (Vec<i64>, Vec<i64>) {
        reporters.iter().zip(counted_in.iter().zip(counted_out)).map(|(r, (i, o))| network::by_end(*r, *i, *o)).unzip()
    };
    let (bytes_out, bytes_in) = by_end(flows.ints(I::BytesIn), flows.ints(I::BytesOut));
    let (packets_out, packets_in) = by_end(flows.ints(I::PacketsIn), flows.ints(I::PacketsOut));
    let sum = |a: &[i64], b: &[i64]| a.iter().zip(b).map(|(a, b)| a + b).collect::<Vec<_>>();
    let (bytes, packets) = (sum(&bytes_in, &bytes_out), sum(&packets_in, &packets_out));
    flows.annotate_ints("traffic.bytes_in", bytes_in);
    flows.annotate_ints("traffic.bytes_out", bytes_out);
    flows.annotate_ints("traffic.packets_in", packets_in);
    flows.annotate_ints("traffic.packets_out", packets_out);
    flows.annotate_ints("traffic.bytes", bytes);
    flows.annotate_ints("traffic.packets", packets);
    // The deciding rule of each distinct hit once; each flow's by its last hit.
    let hits = flows.policies(PoliciesField::EnforcedPolicies).clone();
    let rules: Vec<Option<[String; 4]>> =
        hits.hits.iter().map(|h| Deciding::of_hit(h).map(|d| rule_values(&d))).collect();
    let rule_of: Vec<Option<&[String; 4]>> =
        network::last_hits(&hits).into_iter().map(|k| k.and_then(|k| rules[k].as_ref())).collect();
    for (j, key) in RULE_KEYS.into_iter().enumerate() {
        flows.annotate_strings(key, StringColumn::collect(rule_of.iter().map(|r| r.map(|r| r[j].as_str()))));
    }
    flows.annotate_string_field("unmapped.source_namespace", S::SourceNamespace);
    flows.annotate_string_field("unmapped.dest_namespace", S::DestNamespace);
    flows.annotate_strings("unmapped.reporter", StringColumn::collect(reporters.iter().map(|r| Some(reporter(*r)))));
    flows.annotate_string_lists("unmapped.policies", network::policy_names_column(&hits));
    let numbers: Vec<Option<i64>> = proto.values.iter().map(|p| network::iana_protocol(p)).collect();
    let mut own: Vec<Vec<Attribute>> = vec![Vec::new(); n];
    if numbers.iter().all(Option::is_some) {
        flows.annotate_ints(
            "connection_info.protocol_num",
            proto.at.iter().map(|&i| numbers[i as usize].unwrap_or(0)).collect(),
        );
    } else {
        for (attrs, &i) in own.iter_mut().zip(&proto.at) {
            if let Some(num) = numbers[i as usize] {
                attrs.push(Attribute { key: "connection_info.protocol_num".into(), value: Value::Int(num) });
            }
        }
    }
    let body = structured_body.then_some(Body::Attributes);
    own.into_iter()
        .map(|attributes| match (attributes.is_empty(), &body) {
            (true, None) => Outcome::Keep,
            _ => Outcome::Annotate(Annotations { attributes, severity: None, body: body.clone() }),
        })
        .collect()
}

/// The mapping; exported as a transform configured by `body` ([`Mapped`]).
pub struct Ocsf;

impl Mapping for Ocsf {
    fn mapped(flow: &Flow<'_>) -> Vec<Attribute> {
        mapped(flow)
    }

    fn map_batch(flows: &mut Flows<'_>, structured_body: bool) -> Vec<Outcome> {
        map_batch(flows, structured_body)
    }
}

flowgate_guest::export!(Mapped<Ocsf>);

#[cfg(test)]
mod tests;
