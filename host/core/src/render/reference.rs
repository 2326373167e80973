//! The table-driven transcoder the specialised renderer replaced (issue 13): one loop over a table of fields for
//! every message. It is kept as the renderer's executable specification (tests hold the two byte-identical) and as
//! the reference `flowgate-bench` measures the renderer against.

use prost::Message as _;

use super::{
    MAX_DEPTH, Malformed, Stop, action_name, endpoint_type_name, enum_value, escape_into, policy_kind_name,
    reporter_name,
};
use crate::proto::Flow;
use crate::wire::{Reader, WIRE_LEN, WIRE_VARINT};

/// [`super::flow_json_from_wire`], by the table-driven transcoder.
pub fn flow_json_from_wire(wire: &[u8], out: &mut String) -> Result<(), Malformed> {
    match append(out, |buf| transcode(&FLOW, wire, buf, 0)) {
        Ok(()) => Ok(()),
        Err(Stop::NonCanonical) => {
            let decoded = Flow::decode(wire).map_err(|e| Malformed(e.to_string()))?;
            append(out, |buf| transcode(&FLOW, &decoded.encode_to_vec(), buf, 0))
                .map_err(|e| Malformed(format!("{e:?}")))
        }
        Err(Stop::Malformed(why)) => Err(Malformed(why.to_string())),
    }
}

/// Runs `write` on the bytes of `out` and keeps what it wrote if it succeeds and is UTF-8; otherwise `out` is left
/// as it was. Strings are copied as bytes and the output is checked as UTF-8 once, at the end: one fast pass
/// instead of a check per string.
fn append(out: &mut String, write: impl FnOnce(&mut Vec<u8>) -> Result<(), Stop>) -> Result<(), Stop> {
    let mut buf = std::mem::take(out).into_bytes();
    let mark = buf.len();
    let mut result = write(&mut buf);
    if result.is_err() {
        buf.truncate(mark);
    }
    match String::from_utf8(buf) {
        Ok(json) => *out = json,
        Err(e) => {
            let mut buf = e.into_bytes();
            buf.truncate(mark);
            *out = String::from_utf8(buf).expect("what was there before is a String");
            result = Err(Stop::Malformed("a string field is not valid UTF-8"));
        }
    }
    result
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
                    enum_value(out, v, *names);
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

/// A JSON string literal of `s` (UTF-8 is checked by the caller, once for the whole output).
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
    escape_into(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_numbered_densely_from_one() {
        for spec in [&FLOW, &FLOW_KEY, &POLICY_TRACE, &POLICY_HIT] {
            for (i, field) in spec.fields.iter().enumerate() {
                assert_eq!(field.number as usize, i + 1, "{}", field.key);
            }
        }
    }
}
