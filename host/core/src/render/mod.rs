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

pub mod reference;

/// Why bytes could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("malformed goldmane.Flow: {0}")]
pub struct Malformed(String);

/// Renders the encoded `goldmane.Flow` in `wire` as the old exporter's JSON body, appending to `out`.
pub fn flow_json_from_wire(wire: &[u8], out: &mut String) -> Result<(), Malformed> {
    let mut buf = std::mem::take(out).into_bytes();
    let result = flow_json_bytes_from_wire(wire, &mut buf);
    *out = String::from_utf8(buf).expect("the renderer writes UTF-8 (each string is checked as it is copied)");
    result
}

/// [`flow_json_from_wire`] appending to bytes, for the hot path: what it appends is valid UTF-8 (each string field
/// is checked as it is copied: ASCII, found by the same scan that looks for what to escape, needs nothing more),
/// and on an error nothing is appended.
pub fn flow_json_bytes_from_wire(wire: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
    let mark = out.len();
    let result = match flow(wire, out) {
        Err(Stop::NonCanonical) => {
            out.truncate(mark);
            match Flow::decode(wire) {
                // prost's own encoding is canonical, so it takes the path above.
                Ok(decoded) => flow(&decoded.encode_to_vec(), out).map_err(|e| Malformed(e.to_string())),
                Err(e) => Err(Malformed(e.to_string())),
            }
        }
        other => other.map_err(|e| Malformed(e.to_string())),
    };
    if result.is_err() {
        out.truncate(mark);
    }
    result
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

/// Messages nested deeper than this (a chain of EndOfTier triggers) are refused, as prost refuses them: the flow
/// is depth 0, its key 1, the policy trace 2, its hits 3.
const MAX_DEPTH: u32 = 100;

#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("not in canonical order")]
    /// Valid protobuf, perhaps, but not in the shape this transcoder writes from: decode with prost instead.
    NonCanonical,
    #[error("{0}")]
    Malformed(&'static str),
}

impl From<WireError> for Stop {
    fn from(e: WireError) -> Self {
        Stop::Malformed(e.0)
    }
}

// One function a message, one arm a field, every key a constant (so it is written by a store or two, not a copy
// loop): 1.5x the table-driven transcoder in `reference`, which the tests hold this one byte-identical to.
//
// An object is written as its fields, each `,"key":value`, after a mark; `close` turns the first comma into `{`
// (or writes `{}`), so no field asks whether it is the first. A repeated field's elements are read in one run
// while the next tag is the same byte; the field coming back later is out of order, which prost handles.

/// Writes the JSON of the encoded `goldmane.Flow` in `wire`.
fn flow(wire: &[u8], out: &mut Vec<u8>) -> Result<(), Stop> {
    let mark = out.len();
    let mut r = Reader::new(wire);
    let mut last = 0;
    while !r.is_empty() {
        let (number, wire_type) = r.tag()?;
        if !(1..=12).contains(&number) {
            // Unknown to this schema: protojson of the schema leaves it out.
            r.skip(wire_type)?;
            continue;
        }
        in_order(&mut last, number)?;
        let r = &mut r;
        match number {
            1 => message(r, wire_type, out, b",\"Key\":", flow_key)?,
            2 => int64(r, wire_type, out, b",\"startTime\":\"")?,
            3 => int64(r, wire_type, out, b",\"endTime\":\"")?,
            4 => strings(r, wire_type, out, b",\"sourceLabels\":[", tag(4))?,
            5 => strings(r, wire_type, out, b",\"destLabels\":[", tag(5))?,
            6 => int64(r, wire_type, out, b",\"packetsIn\":\"")?,
            7 => int64(r, wire_type, out, b",\"packetsOut\":\"")?,
            8 => int64(r, wire_type, out, b",\"bytesIn\":\"")?,
            9 => int64(r, wire_type, out, b",\"bytesOut\":\"")?,
            10 => int64(r, wire_type, out, b",\"numConnectionsStarted\":\"")?,
            11 => int64(r, wire_type, out, b",\"numConnectionsCompleted\":\"")?,
            _ => int64(r, wire_type, out, b",\"numConnectionsLive\":\"")?,
        }
    }
    close(out, mark);
    Ok(())
}

fn flow_key(wire: &[u8], out: &mut Vec<u8>) -> Result<(), Stop> {
    let mark = out.len();
    let mut r = Reader::new(wire);
    let mut last = 0;
    while !r.is_empty() {
        let (number, wire_type) = r.tag()?;
        if !(1..=15).contains(&number) {
            r.skip(wire_type)?;
            continue;
        }
        in_order(&mut last, number)?;
        let r = &mut r;
        match number {
            1 => string(r, wire_type, out, b",\"sourceName\":")?,
            2 => string(r, wire_type, out, b",\"sourceNamespace\":")?,
            3 => enumeration(r, wire_type, out, b",\"sourceType\":", endpoint_type_name)?,
            4 => string(r, wire_type, out, b",\"destName\":")?,
            5 => string(r, wire_type, out, b",\"destNamespace\":")?,
            6 => enumeration(r, wire_type, out, b",\"destType\":", endpoint_type_name)?,
            7 => int64(r, wire_type, out, b",\"destPort\":\"")?,
            8 => string(r, wire_type, out, b",\"destServiceName\":")?,
            9 => string(r, wire_type, out, b",\"destServiceNamespace\":")?,
            10 => string(r, wire_type, out, b",\"destServicePortName\":")?,
            11 => int64(r, wire_type, out, b",\"destServicePort\":\"")?,
            12 => string(r, wire_type, out, b",\"proto\":")?,
            13 => enumeration(r, wire_type, out, b",\"reporter\":", reporter_name)?,
            14 => enumeration(r, wire_type, out, b",\"action\":", action_name)?,
            _ => message(r, wire_type, out, b",\"policies\":", policy_trace)?,
        }
    }
    if last < 15 {
        // Goldmane always sets the trace, and the old exporter always writes it.
        out.extend_from_slice(b",\"policies\":{}");
    }
    close(out, mark);
    Ok(())
}

fn policy_trace(wire: &[u8], out: &mut Vec<u8>) -> Result<(), Stop> {
    let mark = out.len();
    let mut r = Reader::new(wire);
    let mut last = 0;
    while !r.is_empty() {
        let (number, wire_type) = r.tag()?;
        if !(1..=2).contains(&number) {
            r.skip(wire_type)?;
            continue;
        }
        in_order(&mut last, number)?;
        let (key, tag): (&[u8], u8) = match number {
            1 => (b",\"enforcedPolicies\":[", tag(1)),
            _ => (b",\"pendingPolicies\":[", tag(2)),
        };
        expect(wire_type, WIRE_LEN)?;
        out.extend_from_slice(key);
        // The trace sits at depth 2 (flow, key), so its hits at 3: the depth the reference counts.
        policy_hit(r.len_delimited()?, out, 3)?;
        while r.take_if(tag) {
            out.push(b',');
            policy_hit(r.len_delimited()?, out, 3)?;
        }
        out.push(b']');
    }
    close(out, mark);
    Ok(())
}

fn policy_hit(wire: &[u8], out: &mut Vec<u8>, depth: u32) -> Result<(), Stop> {
    if depth > MAX_DEPTH {
        return Err(Stop::Malformed("recursion limit reached"));
    }
    let mark = out.len();
    let mut r = Reader::new(wire);
    let mut last = 0;
    while !r.is_empty() {
        let (number, wire_type) = r.tag()?;
        if !(1..=8).contains(&number) {
            r.skip(wire_type)?;
            continue;
        }
        in_order(&mut last, number)?;
        let r = &mut r;
        match number {
            1 => enumeration(r, wire_type, out, b",\"kind\":", policy_kind_name)?,
            2 => string(r, wire_type, out, b",\"namespace\":")?,
            3 => string(r, wire_type, out, b",\"name\":")?,
            4 => string(r, wire_type, out, b",\"tier\":")?,
            5 => enumeration(r, wire_type, out, b",\"action\":", action_name)?,
            6 => int64(r, wire_type, out, b",\"policyIndex\":\"")?,
            7 => int64(r, wire_type, out, b",\"ruleIndex\":\"")?,
            _ => message(r, wire_type, out, b",\"trigger\":", |m, out| policy_hit(m, out, depth + 1))?,
        }
    }
    close(out, mark);
    Ok(())
}

/// The one-byte tag of length-delimited field `number` (< 16).
const fn tag(number: u8) -> u8 {
    number << 3 | WIRE_LEN
}

/// Fields in number order, each once (a repeated field's run is read whole): anything else goes through prost.
#[inline(always)]
fn in_order(last: &mut u32, number: u32) -> Result<(), Stop> {
    if number <= *last {
        return Err(Stop::NonCanonical);
    }
    *last = number;
    Ok(())
}

/// Packed or mistyped: left to prost, which knows every legal encoding.
#[inline(always)]
fn expect(wire_type: u8, expected: u8) -> Result<(), Stop> {
    if wire_type == expected { Ok(()) } else { Err(Stop::NonCanonical) }
}

/// The object's first comma becomes `{`; an object without fields is `{}`.
#[inline(always)]
fn close(out: &mut Vec<u8>, mark: usize) {
    if out.len() == mark {
        out.extend_from_slice(b"{}");
    } else {
        out[mark] = b'{';
        out.push(b'}');
    }
}

/// int64 as a JSON string, left out when 0. `key` ends with the opening quote.
#[inline(always)]
fn int64(r: &mut Reader<'_>, wire_type: u8, out: &mut Vec<u8>, key: &[u8]) -> Result<(), Stop> {
    expect(wire_type, WIRE_VARINT)?;
    let v = r.varint()? as i64;
    if v != 0 {
        out.extend_from_slice(key);
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        out.push(b'"');
    }
    Ok(())
}

/// A proto3 enum by name, left out when 0; open, so an unknown number is kept and written bare.
#[inline(always)]
fn enumeration(
    r: &mut Reader<'_>,
    wire_type: u8,
    out: &mut Vec<u8>,
    key: &[u8],
    names: fn(i32) -> Option<&'static str>,
) -> Result<(), Stop> {
    expect(wire_type, WIRE_VARINT)?;
    let v = r.varint()? as i32;
    if v != 0 {
        out.extend_from_slice(key);
        enum_value(out, v, names);
    }
    Ok(())
}

/// An enum value: its name, or (proto3 enums are open) an unknown number kept and written bare.
#[inline]
fn enum_value(out: &mut Vec<u8>, v: i32, names: fn(i32) -> Option<&'static str>) {
    match names(v) {
        Some(name) => {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
    }
}

/// A string, left out when empty.
#[inline(always)]
fn string(r: &mut Reader<'_>, wire_type: u8, out: &mut Vec<u8>, key: &[u8]) -> Result<(), Stop> {
    expect(wire_type, WIRE_LEN)?;
    let (s, rest) = r.len_delimited_and_rest()?;
    if !s.is_empty() {
        out.extend_from_slice(key);
        push_json_bytes(out, s, rest)?;
    }
    Ok(())
}

/// A repeated string field's run of elements. `key` ends with `[`; `tag` is the field's one-byte tag.
#[inline(always)]
fn strings(r: &mut Reader<'_>, wire_type: u8, out: &mut Vec<u8>, key: &[u8], tag: u8) -> Result<(), Stop> {
    expect(wire_type, WIRE_LEN)?;
    out.extend_from_slice(key);
    let (s, rest) = r.len_delimited_and_rest()?;
    push_json_bytes(out, s, rest)?;
    while r.take_if(tag) {
        out.push(b',');
        let (s, rest) = r.len_delimited_and_rest()?;
        push_json_bytes(out, s, rest)?;
    }
    out.push(b']');
    Ok(())
}

/// A message field, written even when empty (`{}`), as protojson writes a set message.
#[inline(always)]
fn message(
    r: &mut Reader<'_>,
    wire_type: u8,
    out: &mut Vec<u8>,
    key: &[u8],
    inner: impl FnOnce(&[u8], &mut Vec<u8>) -> Result<(), Stop>,
) -> Result<(), Stop> {
    expect(wire_type, WIRE_LEN)?;
    let bytes = r.len_delimited()?;
    out.extend_from_slice(key);
    inner(bytes, out)
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
    push_json_bytes(&mut buf, s.as_bytes(), s.as_bytes()).expect("a str is UTF-8");
    *out = String::from_utf8(buf).expect("escaping keeps UTF-8 valid");
}

/// [`push_json_string`] on bytes, which must be UTF-8 (checked here). `rest` starts with `s` and runs on to the end
/// of the buffer `s` is in.
#[inline]
fn push_json_bytes(out: &mut Vec<u8>, s: &[u8], rest: &[u8]) -> Result<(), Stop> {
    let (special, non_ascii) = scan(s);
    if non_ascii && std::str::from_utf8(s).is_err() {
        return Err(Stop::Malformed("a string field is not valid UTF-8"));
    }
    out.push(b'"');
    if special {
        escape_into(out, s);
    } else {
        // The common case: one copy.
        copy(out, s, rest);
        out.push(b'"');
    }
    Ok(())
}

/// Appends `s`, which `rest` starts with. A short string is copied as a fixed 16 or 32 bytes of `rest` (two vector
/// moves, where a copy of a length known only now is a call) and the output cut back to its length.
#[inline(always)]
fn copy(out: &mut Vec<u8>, s: &[u8], rest: &[u8]) {
    let at = out.len();
    match (s.len(), rest.len()) {
        (..=16, 16..) => out.extend_from_slice(&rest[..16]),
        (..=32, 32..) => out.extend_from_slice(&rest[..32]),
        _ => return out.extend_from_slice(s),
    }
    out.truncate(at + s.len());
}

/// Whether `s` holds a byte to escape (`"`, `\`, a control character), and whether it holds a byte beyond ASCII:
/// eight bytes a step (SWAR; names and labels are short, so a vector loop would spend its time in its scalar
/// tail).
#[inline]
fn scan(s: &[u8]) -> (bool, bool) {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte of `x` is zero (below `n`) when its high bit is set in `x - ONES * n` and clear in `x`: exact as to
    // whether any byte is.
    let special = |x: u64| {
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        (x.wrapping_sub(ONES * 0x20) & !x)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
    };
    let u32_at = |at: usize| u64::from(u32::from_ne_bytes(s[at..at + 4].try_into().expect("four bytes")));
    let u64_at = |at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("eight bytes"));
    // Whole words, then the last eight bytes (overlapping what was scanned) rather than a byte loop; a short string
    // as one word, from two overlapping halves or its bytes over a plain letter.
    let (mut specials, mut all) = (0, 0);
    match s.len() {
        8.. => {
            for chunk in s.chunks_exact(8) {
                let x = u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
                specials |= special(x);
                all |= x;
            }
            let x = u64_at(s.len() - 8);
            specials |= special(x);
            all |= x;
        }
        4.. => {
            let x = u32_at(0) | u32_at(s.len() - 4) << 32;
            (specials, all) = (special(x), x);
        }
        _ => {
            let mut word = [b'a'; 8];
            for (w, &b) in word.iter_mut().zip(s) {
                *w = b;
            }
            let x = u64::from_ne_bytes(word);
            (specials, all) = (special(x), x);
        }
    }
    (specials & HIGH != 0, all & HIGH != 0)
}

#[cold]
fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
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
    fn prost_encodings_take_the_fast_path() {
        let flows = crate::flowgen::FlowGen { seed: 3, keys: 20_000 }.bucket(1_764_970_845);
        for flow in flows {
            let wire = flow.encode_to_vec();
            let mut out = Vec::new();
            let r = super::flow(&wire, &mut out);
            assert!(r.is_ok(), "{r:?} {flow:?}");
        }
    }

    /// The specialised renderer against the table-driven one it replaced, byte for byte: on the simulator's flows,
    /// on concatenated encodings (fields out of order, repeated fields in pieces), and on thousands of damaged
    /// inputs (bytes changed, cut, inserted), where both must refuse alike.
    #[test]
    fn byte_identical_to_the_table_driven_reference() {
        let flows = crate::flowgen::FlowGen { seed: 5, keys: 2_000 }.bucket(1_764_970_845);
        let wires: Vec<Vec<u8>> = flows.iter().map(prost::Message::encode_to_vec).collect();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        /// Whether the bytes rendered (both alike) or were refused (both).
        fn check(wire: &[u8]) -> bool {
            let (mut ours, mut theirs) = (String::from("x"), String::from("x"));
            let a = flow_json_from_wire(wire, &mut ours);
            let b = reference::flow_json_from_wire(wire, &mut theirs);
            assert_eq!(a.is_ok(), b.is_ok(), "{a:?} against {b:?} for {wire:?}");
            assert_eq!(ours, theirs, "for {wire:?}");
            a.is_ok()
        }
        let mut outcomes = Vec::new();
        for (i, wire) in wires.iter().enumerate() {
            outcomes.push(check(wire));
            let mut joined: Vec<u8> = wire.clone();
            joined.extend_from_slice(&wires[(i * 7 + 3) % wires.len()]);
            outcomes.push(check(&joined));
            for _ in 0..4 {
                let mut damaged: Vec<u8> = wire.clone();
                let at = next(damaged.len());
                match next(3) {
                    0 => damaged[at] = next(256) as u8,
                    1 => damaged.truncate(at),
                    _ => damaged.insert(at, next(256) as u8),
                }
                outcomes.push(check(&damaged));
            }
        }
        // Chains of triggers around prost's recursion limit (the deepest hit at depth 98 to 102), with explicit
        // zeros: both render what prost decodes and refuse what it refuses (this once recursed without end).
        for triggers in 95..100 {
            let mut hit = crate::proto::PolicyHit { name: "deep".into(), ..Default::default() };
            for _ in 0..triggers {
                hit = crate::proto::PolicyHit { trigger: Some(Box::new(hit)), kind: 2, ..Default::default() };
            }
            let key = crate::proto::FlowKey {
                policies: Some(crate::proto::PolicyTrace { enforced_policies: vec![hit], ..Default::default() }),
                ..Default::default()
            };
            let mut deep = Flow { key: Some(key), ..Flow::default() }.encode_to_vec();
            deep.extend([0x10, 0x00, 0x30, 0x00]);
            let decodes = Flow::decode(deep.as_slice()).is_ok();
            assert_eq!(check(&deep), decodes, "{triggers} triggers");
            assert_eq!(decodes, triggers < 98, "prost's limit: the deepest hit at depth {}", triggers + 3);
        }
        let rendered = outcomes.iter().filter(|&&ok| ok).count();
        let refused = outcomes.len() - rendered;
        assert!(rendered > 4_000 && refused > 4_000, "{rendered} rendered, {refused} refused");
    }

    #[test]
    fn the_scan_finds_every_byte_to_escape_and_every_non_ascii_byte_at_every_position() {
        for len in 0..40 {
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut s = vec![b'a'; len];
                    assert!(!scan(&s).0);
                    s[at] = special;
                    assert!(scan(&s).0, "{special} at {at} of {len}");
                    // Bytes just past the special ones and non-ASCII bytes are not special.
                    for plain in [b'#', b'!', b'[', b']', 0x20, 0x7f, 0x80, 0xdc, 0xff] {
                        s[at] = plain;
                        assert!(!scan(&s).0, "{plain} at {at} of {len}");
                        assert_eq!(scan(&s).1, plain >= 0x80, "{plain} at {at} of {len}");
                    }
                }
            }
        }
    }
}
