//! What OCSF 1.x asks of a Network Activity event (class 4001), as flat dotted keys, and a check of one event
//! against it. Shared by this crate's tests and the host's integration test (`host/tests/all/mappings.rs`), so
//! it depends on nothing.
//!
//! Where the lists come from (the OCSF schema repository, `github.com/ocsf/ocsf-schema`, JSON definitions):
//! - `events/base_event.json`: `activity_id`, `category_uid`, `class_uid`, `metadata`, `severity_id`, `time` and
//!   `type_uid` are `required`; the `*_name`/`severity` captions, `start_time`, `end_time`, `duration` and
//!   `unmapped` are `optional`; `activity_id` 0 `Unknown` and 99 `Other`.
//! - `events/network/network.json` (category `network`, uid 4): `src_endpoint`, `dst_endpoint`,
//!   `connection_info`, `traffic` are `recommended`, with the constraint `at_least_one: [dst_endpoint,
//!   src_endpoint]`.
//! - `events/network/network_activity.json` (uid 1, so class_uid 4 * 1000 + 1 = 4001): `activity_id` 1 `Open`
//!   … 6 `Traffic`, 7 `Listen`.
//! - `objects/metadata.json`: `product` and `version` `required`. `objects/product.json`: `vendor_name`
//!   `required` in 1.x (`name` was required before 1.0; both are sent and both are checked).
//! - `objects/network_connection_info.json`: `direction_id` `required`; `protocol_name`, `protocol_num`
//!   `recommended`.
//! - `objects/network_endpoint.json` (through `_endpoint.json`): at least one of `ip`, `name`, `hostname`, `uid`,
//!   … identifies an endpoint; `port` is a `port_t`.
//! - `dictionary.json`: the types (`integer_t`, `long_t`, `timestamp_t` in milliseconds, `port_t`, `string_t`)
//!   and the enums of `severity_id`, `action_id`, `disposition_id`, `direction_id`; the `security_control`
//!   profile (`profiles/security_control.json`) adds `action_id`, `disposition_id` and `firewall_rule`.

/// A flat attribute's value, as whoever checks sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Str(&'a str),
    Int(i64),
    StrList(Vec<&'a str>),
    /// Anything else (float, bool, map): never right for these fields.
    Other,
}

/// An OCSF type, as a flat attribute carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ty {
    /// `integer_t` and `long_t`.
    Int,
    /// `timestamp_t`: milliseconds since the epoch.
    Timestamp,
    /// `port_t`: 0 to 65535.
    Port,
    /// `string_t`.
    Str,
    /// `string_t` with `is_array`.
    StrList,
}

/// One attribute of the class: its flat name, type, requirement and, for enums, `(id, caption)` pairs.
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub enum_of: &'static [(i64, &'static str)],
}

const fn f(name: &'static str, ty: Ty, required: bool) -> Field {
    Field { name, ty, required, enum_of: &[] }
}

const fn e(name: &'static str, required: bool, enum_of: &'static [(i64, &'static str)]) -> Field {
    Field { name, ty: Ty::Int, required, enum_of }
}

/// `activity_id` of Network Activity (base_event.json plus network_activity.json).
pub const ACTIVITY: &[(i64, &str)] = &[
    (0, "Unknown"),
    (1, "Open"),
    (2, "Close"),
    (3, "Reset"),
    (4, "Fail"),
    (5, "Refuse"),
    (6, "Traffic"),
    (7, "Listen"),
    (99, "Other"),
];
/// `severity_id` (dictionary.json).
pub const SEVERITY: &[(i64, &str)] = &[
    (0, "Unknown"),
    (1, "Informational"),
    (2, "Low"),
    (3, "Medium"),
    (4, "High"),
    (5, "Critical"),
    (6, "Fatal"),
    (99, "Other"),
];
/// `action_id` (dictionary.json, security_control profile).
pub const ACTION: &[(i64, &str)] =
    &[(0, "Unknown"), (1, "Allowed"), (2, "Denied"), (3, "Observed"), (4, "Modified"), (99, "Other")];
/// `disposition_id` (dictionary.json), the values a network control reports.
pub const DISPOSITION: &[(i64, &str)] = &[(0, "Unknown"), (1, "Allowed"), (2, "Blocked"), (99, "Other")];
/// `direction_id` of `network_connection_info` (dictionary.json).
pub const DIRECTION: &[(i64, &str)] = &[(0, "Unknown"), (1, "Inbound"), (2, "Outbound"), (3, "Lateral"), (99, "Other")];

/// Every attribute this mapping may send, required or not; any other key is a mistake.
pub const FIELDS: &[Field] = &[
    e("class_uid", true, &[(4001, "Network Activity")]),
    f("class_name", Ty::Str, false),
    e("category_uid", true, &[(4, "Network Activity")]),
    f("category_name", Ty::Str, false),
    e("activity_id", true, ACTIVITY),
    f("activity_name", Ty::Str, false),
    f("type_uid", Ty::Int, true),
    f("type_name", Ty::Str, false),
    e("severity_id", true, SEVERITY),
    f("severity", Ty::Str, false),
    f("time", Ty::Timestamp, true),
    f("start_time", Ty::Timestamp, false),
    f("end_time", Ty::Timestamp, false),
    f("duration", Ty::Int, false),
    f("metadata.version", Ty::Str, true),
    f("metadata.product.name", Ty::Str, true),
    f("metadata.product.vendor_name", Ty::Str, true),
    e("action_id", false, ACTION),
    f("action", Ty::Str, false),
    e("disposition_id", false, DISPOSITION),
    f("disposition", Ty::Str, false),
    f("src_endpoint.name", Ty::Str, false),
    f("dst_endpoint.name", Ty::Str, false),
    f("dst_endpoint.port", Ty::Port, false),
    f("dst_endpoint.svc_name", Ty::Str, false),
    f("connection_info.protocol_name", Ty::Str, false),
    f("connection_info.protocol_num", Ty::Int, false),
    e("connection_info.direction_id", true, DIRECTION),
    f("connection_info.direction", Ty::Str, false),
    f("traffic.bytes_in", Ty::Int, false),
    f("traffic.bytes_out", Ty::Int, false),
    f("traffic.packets_in", Ty::Int, false),
    f("traffic.packets_out", Ty::Int, false),
    f("traffic.bytes", Ty::Int, false),
    f("traffic.packets", Ty::Int, false),
    f("firewall_rule.name", Ty::Str, false),
    f("firewall_rule.uid", Ty::Str, false),
    f("firewall_rule.type", Ty::Str, false),
    f("firewall_rule.category", Ty::Str, false),
    f("unmapped.source_namespace", Ty::Str, false),
    f("unmapped.dest_namespace", Ty::Str, false),
    f("unmapped.reporter", Ty::Str, false),
    f("unmapped.policies", Ty::StrList, false),
];

/// The `(id, caption)` siblings: the caption must name the id (for `99`, any data-source value).
const SIBLINGS: &[(&str, &str)] = &[
    ("class_uid", "class_name"),
    ("category_uid", "category_name"),
    ("activity_id", "activity_name"),
    ("severity_id", "severity"),
    ("action_id", "action"),
    ("disposition_id", "disposition"),
    ("connection_info.direction_id", "connection_info.direction"),
];

/// Every way `event` (flat key, value) falls short of the class; empty when it conforms.
pub fn problems(event: &[(&str, Val<'_>)]) -> Vec<String> {
    let mut out = Vec::new();
    let get = |k: &str| event.iter().find(|(key, _)| *key == k).map(|(_, v)| v);
    let int = |k: &str| match get(k) {
        Some(Val::Int(i)) => Some(*i),
        _ => None,
    };
    for (i, (key, _)) in event.iter().enumerate() {
        if event[..i].iter().any(|(k, _)| k == key) {
            out.push(format!("{key}: sent twice"));
        }
    }
    for (key, value) in event {
        let Some(field) = FIELDS.iter().find(|f| f.name == *key) else {
            out.push(format!("{key}: not an attribute of network_activity"));
            continue;
        };
        let fits = match (field.ty, value) {
            (Ty::Int, Val::Int(_)) | (Ty::Str, Val::Str(_)) | (Ty::StrList, Val::StrList(_)) => true,
            // Milliseconds: a second count would put the event in 1970.
            (Ty::Timestamp, Val::Int(ms)) => *ms > 100_000_000_000,
            (Ty::Port, Val::Int(p)) => (0..=65_535).contains(p),
            _ => false,
        };
        if !fits {
            out.push(format!("{key}: {value:?} is not a {:?}", field.ty));
        }
        if let (false, Val::Int(id)) = (field.enum_of.is_empty(), value)
            && !field.enum_of.iter().any(|(v, _)| v == id)
        {
            out.push(format!("{key}: {id} is not one of its enum values"));
        }
    }
    for field in FIELDS.iter().filter(|f| f.required) {
        if get(field.name).is_none() {
            out.push(format!("{}: required, missing", field.name));
        }
    }
    for (id_key, caption_key) in SIBLINGS {
        let field = FIELDS.iter().find(|f| f.name == *id_key).expect("siblings are fields");
        let (Some(id), Some(caption)) = (int(id_key), get(caption_key)) else { continue };
        let Val::Str(caption) = caption else { continue };
        match field.enum_of.iter().find(|(v, _)| *v == id) {
            Some((99, _)) if !caption.is_empty() => {}
            Some((_, expected)) if expected == caption => {}
            _ => out.push(format!("{caption_key}: {caption:?} does not name {id_key} {id}")),
        }
    }
    if let (Some(class), Some(activity), Some(type_uid)) = (int("class_uid"), int("activity_id"), int("type_uid"))
        && type_uid != class * 100 + activity
    {
        out.push(format!("type_uid: {type_uid} is not class_uid * 100 + activity_id"));
    }
    // network.json: at least one endpoint; _endpoint.json: an endpoint is identified (here by its name).
    let endpoint = |prefix: &str| event.iter().any(|(k, v)| *k == format!("{prefix}.name") && *v != Val::Str(""));
    if !endpoint("src_endpoint") && !endpoint("dst_endpoint") {
        out.push("src_endpoint, dst_endpoint: at least one is required, with a name".to_string());
    }
    if let (Some(start), Some(end)) = (int("start_time"), int("end_time"))
        && (start > end || int("duration").is_some_and(|d| d != end - start))
    {
        out.push(format!("start_time {start}, end_time {end}, duration: inconsistent"));
    }
    out
}
