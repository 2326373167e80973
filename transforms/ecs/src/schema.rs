//! What the Elastic Common Schema asks of the fields this mapping sends, and a check of one event against it.
//! Shared by this crate's tests and the host's integration test (`host/tests/all/mappings.rs`), so it depends on
//! nothing.
//!
//! Where the lists come from: the ECS field reference as published in `github.com/elastic/ecs`,
//! `generated/ecs/ecs_flat.yml` (compiled from `schemas/*.yml`: `base.yml`, `ecs.yml`, `event.yml`,
//! `network.yml`, `source.yml`, `destination.yml`, `rule.yml`, `observer.yml`). From it:
//! - `required: true`: `@timestamp` (`date`) and `ecs.version` (`keyword`), the only two required fields of ECS.
//! - `type`: `keyword`, `long`, `date` for each field below; `normalize: [array]` for `event.category` and
//!   `event.type`.
//! - `allowed_values`: `event.kind`, `event.category` (with each category's `expected_event_types`: for
//!   `network`, `access`, `allowed`, `connection`, `denied`, `end`, `info`, `protocol`, `start`), `event.type`.
//! - `expected_values` of `network.direction`: `ingress`, `egress`, `inbound`, `outbound`, `internal`,
//!   `external`, `unknown` (ECS 1.7, elastic/ecs#945).
//! - `network.transport` and `network.iana_number`: lowercase IANA name and number (as text); `event.duration`
//!   in nanoseconds; `network.bytes` the sum of `source.bytes` and `destination.bytes` (likewise packets).
//!
//! Fields ECS does not define go under `calico.*`, as ECS asks of custom fields (a name of its own, no ECS field
//! set).

/// A flat attribute's value, as whoever checks sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Str(&'a str),
    Int(i64),
    StrList(Vec<&'a str>),
    /// Anything else (float, bool, map).
    Other,
}

/// An ECS field type, as a flat attribute carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ty {
    /// `keyword`.
    Keyword,
    /// `keyword` with `normalize: [array]`.
    KeywordArray,
    /// `long`.
    Long,
    /// `date`: RFC 3339 / ISO 8601 UTC text, as Elasticsearch's default date format reads it.
    Date,
}

/// One field: its flat name, type, whether ECS requires it, and its allowed (or expected) values.
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub allowed: &'static [&'static str],
}

const fn f(name: &'static str, ty: Ty) -> Field {
    Field { name, ty, required: false, allowed: &[] }
}

/// `event.kind` `allowed_values`.
pub const KINDS: &[&str] = &["alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"];
/// `event.category` `allowed_values`.
pub const CATEGORIES: &[&str] = &[
    "api",
    "authentication",
    "configuration",
    "database",
    "driver",
    "email",
    "file",
    "host",
    "iam",
    "intrusion_detection",
    "library",
    "malware",
    "network",
    "package",
    "process",
    "registry",
    "session",
    "threat",
    "vulnerability",
    "web",
];
/// `event.type` `allowed_values`.
pub const TYPES: &[&str] = &[
    "access",
    "admin",
    "allowed",
    "change",
    "connection",
    "creation",
    "deletion",
    "denied",
    "device",
    "end",
    "error",
    "group",
    "indicator",
    "info",
    "installation",
    "protocol",
    "start",
    "user",
];
/// `expected_event_types` of the `network` category.
pub const NETWORK_TYPES: &[&str] = &["access", "allowed", "connection", "denied", "end", "info", "protocol", "start"];
/// `network.direction` `expected_values`.
pub const DIRECTIONS: &[&str] = &["ingress", "egress", "inbound", "outbound", "internal", "external", "unknown"];

/// Every ECS field this mapping may send; any other key outside `calico.*` is a mistake.
pub const FIELDS: &[Field] = &[
    Field { name: "@timestamp", ty: Ty::Date, required: true, allowed: &[] },
    Field { name: "ecs.version", ty: Ty::Keyword, required: true, allowed: &[] },
    Field { name: "event.kind", ty: Ty::Keyword, required: false, allowed: KINDS },
    Field { name: "event.category", ty: Ty::KeywordArray, required: false, allowed: CATEGORIES },
    Field { name: "event.type", ty: Ty::KeywordArray, required: false, allowed: TYPES },
    f("event.action", Ty::Keyword),
    f("event.dataset", Ty::Keyword),
    f("event.start", Ty::Date),
    f("event.end", Ty::Date),
    f("event.duration", Ty::Long),
    f("observer.vendor", Ty::Keyword),
    f("observer.product", Ty::Keyword),
    f("network.transport", Ty::Keyword),
    f("network.iana_number", Ty::Keyword),
    Field { name: "network.direction", ty: Ty::Keyword, required: false, allowed: DIRECTIONS },
    f("network.bytes", Ty::Long),
    f("network.packets", Ty::Long),
    f("source.address", Ty::Keyword),
    f("source.bytes", Ty::Long),
    f("source.packets", Ty::Long),
    f("destination.address", Ty::Keyword),
    f("destination.port", Ty::Long),
    f("destination.bytes", Ty::Long),
    f("destination.packets", Ty::Long),
    f("rule.name", Ty::Keyword),
    f("rule.id", Ty::Keyword),
    f("rule.ruleset", Ty::Keyword),
    f("rule.category", Ty::Keyword),
];

/// `YYYY-MM-DDThh:mm:ssZ` (with optional fraction): the shape `strict_date_optional_time` reads.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && s.ends_with('Z')
}

/// Every way `event` (flat key, value) falls short of ECS; empty when it conforms.
pub fn problems(event: &[(&str, Val<'_>)]) -> Vec<String> {
    let mut out = Vec::new();
    let get = |k: &str| event.iter().find(|(key, _)| *key == k).map(|(_, v)| v);
    let long = |k: &str| match get(k) {
        Some(Val::Int(i)) => Some(*i),
        _ => None,
    };
    let text = |k: &str| match get(k) {
        Some(Val::Str(s)) => Some(*s),
        _ => None,
    };
    for (i, (key, _)) in event.iter().enumerate() {
        if event[..i].iter().any(|(k, _)| k == key) {
            out.push(format!("{key}: sent twice"));
        }
    }
    for (key, value) in event {
        if key.starts_with("calico.") {
            continue;
        }
        let Some(field) = FIELDS.iter().find(|f| f.name == *key) else {
            out.push(format!("{key}: not an ECS field (custom fields go under calico.*)"));
            continue;
        };
        let values: Vec<&str> = match (field.ty, value) {
            (Ty::Keyword, Val::Str(s)) => vec![s],
            (Ty::KeywordArray, Val::StrList(l)) => l.clone(),
            (Ty::Date, Val::Str(s)) if is_date(s) => vec![],
            (Ty::Long, Val::Int(_)) => vec![],
            _ => {
                out.push(format!("{key}: {value:?} is not a {:?}", field.ty));
                continue;
            }
        };
        if field.ty == Ty::KeywordArray && values.is_empty() {
            out.push(format!("{key}: empty"));
        }
        for v in values.iter().filter(|v| !field.allowed.is_empty() && !field.allowed.contains(v)) {
            out.push(format!("{key}: {v:?} is not one of its allowed values"));
        }
    }
    for field in FIELDS.iter().filter(|f| f.required) {
        if get(field.name).is_none() {
            out.push(format!("{}: required, missing", field.name));
        }
    }
    if let (Some(Val::StrList(categories)), Some(Val::StrList(types))) = (get("event.category"), get("event.type"))
        && categories.contains(&"network")
    {
        for t in types.iter().filter(|t| !NETWORK_TYPES.contains(t)) {
            out.push(format!("event.type: {t:?} is not expected with event.category network"));
        }
    }
    if let Some(t) = text("network.transport")
        && t.chars().any(|c| c.is_ascii_uppercase())
    {
        out.push(format!("network.transport: {t:?} is not lowercase"));
    }
    if let Some(n) = text("network.iana_number")
        && n.parse::<u8>().is_err()
    {
        out.push(format!("network.iana_number: {n:?} is not a protocol number"));
    }
    for total in ["bytes", "packets"] {
        let (s, d, t) = (
            long(&format!("source.{total}")),
            long(&format!("destination.{total}")),
            long(&format!("network.{total}")),
        );
        if let (Some(s), Some(d), Some(t)) = (s, d, t)
            && s + d != t
        {
            out.push(format!("network.{total}: {t} is not source.{total} + destination.{total}"));
        }
    }
    if let (Some(start), Some(end)) = (text("event.start"), text("event.end"))
        && start > end
    {
        out.push(format!("event.start {start} is after event.end {end}"));
    }
    if !event.iter().any(|(k, v)| (*k == "source.address" || *k == "destination.address") && *v != Val::Str("")) {
        out.push("source.address, destination.address: neither is set".to_string());
    }
    out
}
