//! The old exporter's log body: protobuf-JSON ("protojson") of `goldmane.Flow`, transcoded straight from the
//! protobuf wire bytes, with no intermediate structs (the hot path: no allocation but the output).
//!
//! The rules, from `shared/reference/seed-exporter.md`, are the whole contract users' Loki queries and SIEM
//! parsers depend on:
//! - proto JSON names in lowerCamelCase, except the top-level key field, which is `Key`;
//! - int64 as JSON strings, enums as value names, an enum number the schema does not know as a bare number;
//! - zero values omitted (0, "", the `…Unspecified` enum value, empty lists), fields in declaration order;
//! - `Key.policies` always present (`{}` when both lists are empty), as Goldmane always sets it.
//!
//! Field numbers ascend in declaration order in every message here, and protobuf encoders (Go's, prost) write
//! fields in number order, so JSON can be written as the bytes are read. Input that is valid protobuf but not in
//! that canonical shape (fields out of order, a scalar repeated, explicit zeros are fine) is decoded with prost
//! and re-encoded canonically first. Tests hold the output equal to an independent protojson implementation.

use prost::Message as _;

use crate::proto::{Action, EndpointType, Flow, PolicyKind, Reporter};
use crate::wire::{Reader, WIRE_LEN, WIRE_VARINT, WireError};

/// Why bytes could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("malformed goldmane.Flow: {0}")]
pub struct Malformed(String);

/// Renders the encoded `goldmane.Flow` in `wire` as the old exporter's JSON body, appending to `out`.
pub fn flow_json_from_wire(wire: &[u8], out: &mut String) -> Result<(), Malformed> {
    // Strings are copied as bytes and the output is checked as UTF-8 once, at the end: one fast pass instead of a
    // check per string.
    let mut buf = std::mem::take(out).into_bytes();
    let mark = buf.len();
    let result = transcode(&FLOW, wire, &mut buf, 0);
    if result.is_err() {
        buf.truncate(mark);
    }
    *out = String::from_utf8(buf).map_err(|_| Malformed("a string field is not valid UTF-8".into()))?;
    match result {
        Ok(()) => Ok(()),
        Err(Stop::NonCanonical) => {
            let flow = Flow::decode(wire).map_err(|e| Malformed(e.to_string()))?;
            flow_json(&flow, out);
            Ok(())
        }
        Err(Stop::Malformed(why)) => Err(Malformed(why.to_string())),
    }
}

/// Renders `flow` as the old exporter's JSON body, appending to `out`.
pub fn flow_json(flow: &Flow, out: &mut String) {
    flow_json_from_wire(&flow.encode_to_vec(), out).expect("prost encodes canonically and validly");
}

/// Renders `flow` into a new string.
pub fn flow_json_string(flow: &Flow) -> String {
    let mut out = String::with_capacity(flow.encoded_len() * 2 + 64);
    flow_json(flow, &mut out);
    out
}

/// How a field is written.
enum Kind {
    Str,
    Int64,
    Enum(fn(i32) -> Option<&'static str>),
    Msg(&'static MessageSpec),
    RepeatedStr,
    RepeatedMsg(&'static MessageSpec),
}

struct FieldSpec {
    number: u32,
    /// `"name":`, ready to write.
    key: &'static str,
    kind: Kind,
}

struct MessageSpec {
    /// In field-number (= declaration) order.
    fields: &'static [FieldSpec],
    /// The last field is a message written as `{}` even when absent (only `FlowKey.policies`).
    last_always: bool,
}

const fn f(number: u32, key: &'static str, kind: Kind) -> FieldSpec {
    FieldSpec { number, key, kind }
}

static FLOW: MessageSpec = MessageSpec {
    fields: &[
        f(1, "\"Key\":", Kind::Msg(&FLOW_KEY)),
        f(2, "\"startTime\":", Kind::Int64),
        f(3, "\"endTime\":", Kind::Int64),
        f(4, "\"sourceLabels\":", Kind::RepeatedStr),
        f(5, "\"destLabels\":", Kind::RepeatedStr),
        f(6, "\"packetsIn\":", Kind::Int64),
        f(7, "\"packetsOut\":", Kind::Int64),
        f(8, "\"bytesIn\":", Kind::Int64),
        f(9, "\"bytesOut\":", Kind::Int64),
        f(10, "\"numConnectionsStarted\":", Kind::Int64),
        f(11, "\"numConnectionsCompleted\":", Kind::Int64),
        f(12, "\"numConnectionsLive\":", Kind::Int64),
    ],
    last_always: false,
};

static FLOW_KEY: MessageSpec = MessageSpec {
    fields: &[
        f(1, "\"sourceName\":", Kind::Str),
        f(2, "\"sourceNamespace\":", Kind::Str),
        f(3, "\"sourceType\":", Kind::Enum(endpoint_type_name)),
        f(4, "\"destName\":", Kind::Str),
        f(5, "\"destNamespace\":", Kind::Str),
        f(6, "\"destType\":", Kind::Enum(endpoint_type_name)),
        f(7, "\"destPort\":", Kind::Int64),
        f(8, "\"destServiceName\":", Kind::Str),
        f(9, "\"destServiceNamespace\":", Kind::Str),
        f(10, "\"destServicePortName\":", Kind::Str),
        f(11, "\"destServicePort\":", Kind::Int64),
        f(12, "\"proto\":", Kind::Str),
        f(13, "\"reporter\":", Kind::Enum(reporter_name)),
        f(14, "\"action\":", Kind::Enum(action_name)),
        f(15, "\"policies\":", Kind::Msg(&POLICY_TRACE)),
    ],
    last_always: true,
};

static POLICY_TRACE: MessageSpec = MessageSpec {
    fields: &[
        f(1, "\"enforcedPolicies\":", Kind::RepeatedMsg(&POLICY_HIT)),
        f(2, "\"pendingPolicies\":", Kind::RepeatedMsg(&POLICY_HIT)),
    ],
    last_always: false,
};

static POLICY_HIT: MessageSpec = MessageSpec {
    fields: &[
        f(1, "\"kind\":", Kind::Enum(policy_kind_name)),
        f(2, "\"namespace\":", Kind::Str),
        f(3, "\"name\":", Kind::Str),
        f(4, "\"tier\":", Kind::Str),
        f(5, "\"action\":", Kind::Enum(action_name)),
        f(6, "\"policyIndex\":", Kind::Int64),
        f(7, "\"ruleIndex\":", Kind::Int64),
        f(8, "\"trigger\":", Kind::Msg(&POLICY_HIT)),
    ],
    last_always: false,
};

/// Nesting deeper than this (a chain of EndOfTier triggers) goes through prost, which has its own limit.
const MAX_DEPTH: u32 = 16;

#[derive(Debug)]
enum Stop {
    /// Valid protobuf, perhaps, but not in the shape this transcoder writes from: decode with prost instead.
    NonCanonical,
    Malformed(&'static str),
}

impl From<WireError> for Stop {
    fn from(e: WireError) -> Self {
        Stop::Malformed(e.0)
    }
}

fn transcode(spec: &MessageSpec, wire: &[u8], out: &mut Vec<u8>, depth: u32) -> Result<(), Stop> {
    if depth > MAX_DEPTH {
        return Err(Stop::NonCanonical);
    }
    let mut r = Reader::new(wire);
    out.push(b'{');
    let mut first = true;
    let mut last_number = 0u32;
    // The repeated field whose JSON array is open.
    let mut open_array: Option<u32> = None;
    while !r.is_empty() {
        let (number, wire_type) = r.tag()?;
        // Fields are numbered 1..=n in every spec (checked by a test), so the number is the index.
        let Some(field) = spec.fields.get(number as usize - 1).filter(|fs| fs.number == number) else {
            // Unknown to this schema: protojson of the schema leaves it out.
            r.skip(wire_type)?;
            continue;
        };
        let repeated = matches!(field.kind, Kind::RepeatedStr | Kind::RepeatedMsg(_));
        if number < last_number || (number == last_number && !(repeated && open_array == Some(number))) {
            return Err(Stop::NonCanonical);
        }
        if let Some(open) = open_array
            && open != number
        {
            out.push(b']');
            open_array = None;
        }
        last_number = number;
        let expected_wire = match field.kind {
            Kind::Int64 | Kind::Enum(_) => WIRE_VARINT,
            _ => WIRE_LEN,
        };
        if wire_type != expected_wire {
            // Packed or mistyped: leave it to prost, which knows every legal encoding.
            return Err(Stop::NonCanonical);
        }
        match &field.kind {
            Kind::Int64 => {
                let v = r.varint()? as i64;
                if v != 0 {
                    key(out, &mut first, field.key);
                    out.push(b'"');
                    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
                    out.push(b'"');
                }
            }
            Kind::Enum(names) => {
                let v = r.varint()? as i32;
                if v != 0 {
                    key(out, &mut first, field.key);
                    match names(v) {
                        Some(name) => {
                            out.push(b'"');
                            out.extend_from_slice(name.as_bytes());
                            out.push(b'"');
                        }
                        // Proto3 enums are open: an unknown number is kept and rendered bare.
                        None => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
                    }
                }
            }
            Kind::Str => {
                let s = r.len_delimited()?;
                if !s.is_empty() {
                    key(out, &mut first, field.key);
                    push_json_bytes(out, s);
                }
            }
            Kind::Msg(inner) => {
                let bytes = r.len_delimited()?;
                key(out, &mut first, field.key);
                transcode(inner, bytes, out, depth + 1)?;
            }
            Kind::RepeatedStr => {
                let s = r.len_delimited()?;
                open_element(out, &mut first, &mut open_array, number, field.key);
                push_json_bytes(out, s);
            }
            Kind::RepeatedMsg(inner) => {
                let bytes = r.len_delimited()?;
                open_element(out, &mut first, &mut open_array, number, field.key);
                transcode(inner, bytes, out, depth + 1)?;
            }
        }
    }
    if open_array.is_some() {
        out.push(b']');
    }
    if spec.last_always
        && let Some(last) = spec.fields.last()
        && last_number < last.number
    {
        key(out, &mut first, last.key);
        out.extend_from_slice(b"{}");
    }
    out.push(b'}');
    Ok(())
}

#[inline]
fn key(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.extend_from_slice(key.as_bytes());
}

#[inline]
fn open_element(out: &mut Vec<u8>, first: &mut bool, open_array: &mut Option<u32>, number: u32, name: &str) {
    if *open_array == Some(number) {
        out.push(b',');
    } else {
        key(out, first, name);
        out.push(b'[');
        *open_array = Some(number);
    }
}

/// The proto name of a known, non-zero enum value.
fn known_name<E: TryFrom<i32>>(n: i32, name: impl Fn(E) -> &'static str) -> Option<&'static str> {
    E::try_from(n).ok().map(name)
}

fn action_name(n: i32) -> Option<&'static str> {
    known_name(n, |e: Action| e.as_str_name())
}
fn endpoint_type_name(n: i32) -> Option<&'static str> {
    known_name(n, |e: EndpointType| e.as_str_name())
}
fn reporter_name(n: i32) -> Option<&'static str> {
    known_name(n, |e: Reporter| e.as_str_name())
}
fn policy_kind_name(n: i32) -> Option<&'static str> {
    known_name(n, |e: PolicyKind| e.as_str_name())
}

/// Appends `s` as a JSON string literal: `"`, `\` and control characters escaped, everything else as is.
pub fn push_json_string(out: &mut String, s: &str) {
    let mut buf = std::mem::take(out).into_bytes();
    push_json_bytes(&mut buf, s.as_bytes());
    *out = String::from_utf8(buf).expect("escaping keeps UTF-8 valid");
}

/// [`push_json_string`] on bytes (UTF-8 is checked by the caller, once for the whole output).
#[inline]
fn push_json_bytes(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    // The common case, nothing to escape, is one branch-free (vectorised) scan and one copy.
    let needs_escape =
        s.iter().fold(0u8, |acc, &b| acc | u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\')) != 0;
    if !needs_escape {
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::FlowKey;

    #[test]
    fn escapes_control_characters_quotes_and_backslashes() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1}é\u{7f}");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\"");
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é\u{7f}");
    }

    #[test]
    fn empty_flow_renders_empty_object_and_policies_always_present_under_key() {
        assert_eq!(flow_json_string(&Flow::default()), "{}");
        let flow = Flow { key: Some(FlowKey::default()), ..Flow::default() };
        assert_eq!(flow_json_string(&flow), r#"{"Key":{"policies":{}}}"#);
    }

    #[test]
    fn unknown_enum_numbers_render_bare() {
        let flow = Flow { key: Some(FlowKey { action: 42, source_type: -3, ..FlowKey::default() }), ..Flow::default() };
        assert_eq!(flow_json_string(&flow), r#"{"Key":{"sourceType":-3,"action":42,"policies":{}}}"#);
    }

    #[test]
    fn truncated_or_invalid_input_is_malformed_not_a_panic() {
        // One field: every proper prefix ends inside it.
        let wire = Flow { source_labels: vec!["app=checkout".into()], ..Flow::default() }.encode_to_vec();
        for cut in 1..wire.len() {
            let mut out = String::from("prefix");
            let result = flow_json_from_wire(&wire[..cut], &mut out);
            assert!(result.is_err(), "cut at {cut}");
            assert_eq!(out, "prefix", "nothing half-written is left behind");
        }
        // Field 4 (a label) holding invalid UTF-8.
        let mut out = String::new();
        assert!(flow_json_from_wire(&[0x22, 0x02, 0xff, 0xfe], &mut out).is_err());
    }
}

#[cfg(test)]
mod fast_path {
    use super::*;

    #[test]
    fn specs_are_numbered_densely_from_one() {
        for spec in [&FLOW, &FLOW_KEY, &POLICY_TRACE, &POLICY_HIT] {
            for (i, field) in spec.fields.iter().enumerate() {
                assert_eq!(field.number as usize, i + 1, "{}", field.key);
            }
        }
    }

    #[test]
    fn prost_encodings_take_the_fast_path() {
        let flows = crate::flowgen::FlowGen { seed: 3, keys: 20_000 }.bucket(1_764_970_845);
        for flow in flows {
            let wire = flow.encode_to_vec();
            let mut out = Vec::new();
            let r = transcode(&FLOW, &wire, &mut out, 0);
            assert!(r.is_ok(), "{r:?} {flow:?}");
        }
    }
}
