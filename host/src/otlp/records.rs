//! Log records encoded where they are made, straight into the bytes a request carries.
//!
//! The pipeline renders each flow's body and writes its record as the `log_records` field of a `ScopeLogs`
//! (tag, length, `LogRecord`); the batcher copies those bytes into the request it is filling and writes the
//! request's head last ([`super::RequestEncoder::finish`]). No `LogRecord` is built, no per-record string is
//! allocated, and the only memory that crosses threads is one buffer a chunk. The bytes are those prost writes
//! for the same record (fields in prost's order, proto3 defaults left out), checked by the tests below.

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;
use prost::encoding::{encode_varint, encoded_len_varint};

use std::sync::Arc;

use crate::render;
use crate::wasm::{Attr, AttrValue, Severity};

/// `ScopeLogs.log_records` (field 2, length-delimited).
const SCOPE_LOGS_RECORD: u8 = 2 << 3 | 2;
// `LogRecord` fields, written in field-number order as prost does: 1, 2, 3, 5, 6, 11.
const TIME: u8 = 1 << 3 | 1;
const OBSERVED_TIME: u8 = 11 << 3 | 1;
const SEVERITY_NUMBER: u8 = 2 << 3;
const SEVERITY_TEXT: u8 = 3 << 3 | 2;
const BODY: u8 = 5 << 3 | 2;
const ATTRIBUTE: u8 = 6 << 3 | 2;
// `KeyValue`.
const KEY: u8 = 1 << 3 | 2;
const VALUE: u8 = 2 << 3 | 2;
// `AnyValue`'s oneof.
const STRING: u8 = 1 << 3 | 2;
const BOOL: u8 = 2 << 3;
const INT: u8 = 3 << 3;
const DOUBLE: u8 = 4 << 3 | 1;
const ARRAY: u8 = 5 << 3 | 2;
const KVLIST: u8 = 6 << 3 | 2;
/// `ArrayValue.values` and `KeyValueList.values`.
const VALUES: u8 = 1 << 3 | 2;

/// A record's body.
#[derive(Debug, Clone, Copy)]
pub enum BodyRef<'a> {
    /// A string (the flow's JSON, or a transform's text).
    Str(&'a str),
    /// A structured map.
    KvList(&'a [Attr]),
}

/// Records encoded as a request's `ScopeLogs` carries them, back to back, after room for a request's head when
/// made for one ([`EncodedRecords::for_request`]): a batch of them that makes a request whole becomes it as is.
#[derive(Debug, Default, Clone)]
pub struct EncodedRecords {
    bytes: Vec<u8>,
    /// Bytes left at the front of `bytes` for a request's head.
    head_room: usize,
    /// Where each record ends in `bytes`.
    ends: Vec<usize>,
}

impl EncodedRecords {
    /// Room for `records` records of about `bytes` bytes in all.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Self::for_request(0, records, bytes)
    }

    /// [`EncodedRecords::with_capacity`], after `head_room` bytes for a request's head (the encoder's
    /// [`super::RequestEncoder::head_room`]).
    pub fn for_request(head_room: usize, records: usize, bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(head_room + bytes);
        buf.resize(head_room, 0);
        EncodedRecords { bytes: buf, head_room, ends: Vec::with_capacity(records) }
    }

    /// The room left in front for a request's head.
    pub fn head_room(&self) -> usize {
        self.head_room
    }

    /// The buffer: `head_room` bytes, then the records (to finish as a request).
    pub fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of every record, framing included (what they add to a request).
    pub fn bytes_len(&self) -> usize {
        self.bytes.len() - self.head_room
    }

    /// Each record's bytes, framing included.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.ends.iter().enumerate().map(|(i, &end)| {
            let start = if i == 0 { self.head_room } else { self.ends[i - 1] };
            &self.bytes[start..end]
        })
    }

    /// Appends a record: both timestamps `time`, `severity`, `body`, then `attributes` in order.
    pub fn push<'a, A>(&mut self, time: u64, severity: Severity, body: BodyRef<'_>, attributes: A)
    where
        A: Iterator<Item = (&'a str, &'a AttrValue)> + Clone,
    {
        let (number, text) = super::severity(severity);
        let body_len = body_len(body);
        let mut len = if time == 0 { 0 } else { 2 * 9 };
        len += 1 + encoded_len_varint(number as u64);
        len += 1 + framed(text.len());
        len += 1 + framed(body_len);
        len += attributes.clone().map(|(k, v)| 1 + framed(key_value_len(k, v))).sum::<usize>();

        let out = &mut self.bytes;
        out.reserve(1 + framed(len));
        out.push(SCOPE_LOGS_RECORD);
        encode_varint(len as u64, out);
        put_head(out, time, number, text);
        encode_varint(body_len as u64, out);
        match body {
            BodyRef::Str(s) => {
                out.push(STRING);
                put_str(out, s);
            }
            BodyRef::KvList(list) => {
                out.push(KVLIST);
                encode_varint(kvlist_len(list) as u64, out);
                for (k, v) in list {
                    out.push(VALUES);
                    put_key_value(out, k, v);
                }
            }
        }
        for (k, v) in attributes {
            out.push(ATTRIBUTE);
            put_key_value(out, k, v);
        }
        if time != 0 {
            out.push(OBSERVED_TIME);
            out.extend_from_slice(&time.to_le_bytes());
        }
        self.ends.push(out.len());
    }

    /// Appends the old exporter's record for an encoded `goldmane.Flow`: its JSON body rendered from the wire
    /// straight into the record, severity INFO, both timestamps `time`, then `attributes`.
    pub fn push_flow<'a, A>(&mut self, wire: &[u8], time: u64, attributes: A) -> Result<(), render::Malformed>
    where
        A: Iterator<Item = (&'a str, &'a AttrValue)> + Clone,
    {
        self.push_rendered(time, Severity::Info, |out| render::flow_json_bytes_from_wire(wire, out), attributes)
    }

    /// Appends a record whose body is a string `render` writes straight into the buffer (the flow's JSON): no
    /// scratch buffer, no copy. The record's three lengths (record, body, string) are left two bytes each and
    /// filled in once known, which fits bodies of 128 B to about 16 KiB; a record of another size is encoded again
    /// by [`EncodedRecords::push`]. `render` must append UTF-8 and, when it fails, nothing (then neither does
    /// this).
    pub fn push_rendered<'a, A, E>(
        &mut self,
        time: u64,
        severity: Severity,
        render: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
        attributes: A,
    ) -> Result<(), E>
    where
        A: Iterator<Item = (&'a str, &'a AttrValue)> + Clone,
    {
        let (number, text) = super::severity(severity);
        let out = &mut self.bytes;
        let start = out.len();
        out.push(SCOPE_LOGS_RECORD);
        out.extend_from_slice(&[0, 0]);
        put_head(out, time, number, text);
        let body_at = out.len();
        out.extend_from_slice(&[0, 0, STRING, 0, 0]);
        let string_at = out.len();
        if let Err(e) = render(out) {
            out.truncate(start);
            return Err(e);
        }
        let string_len = out.len() - string_at;
        for (k, v) in attributes.clone() {
            out.push(ATTRIBUTE);
            put_key_value(out, k, v);
        }
        if time != 0 {
            out.push(OBSERVED_TIME);
            out.extend_from_slice(&time.to_le_bytes());
        }
        let record_len = out.len() - (start + 3);
        match (two_byte_varint(string_len), two_byte_varint(string_len + 3), two_byte_varint(record_len)) {
            (Some(string), Some(body), Some(record)) => {
                out[start + 1..start + 3].copy_from_slice(&record);
                out[body_at..body_at + 2].copy_from_slice(&body);
                out[string_at - 2..string_at].copy_from_slice(&string);
                self.ends.push(out.len());
            }
            _ => {
                let body = out[string_at..string_at + string_len].to_vec();
                out.truncate(start);
                let body = std::str::from_utf8(&body).expect("the renderer appends UTF-8");
                self.push(time, severity, BodyRef::Str(body), attributes);
            }
        }
        Ok(())
    }

    /// Appends a record built elsewhere (a batch split after a 413), as prost encodes it.
    pub fn push_log_record(&mut self, record: &LogRecord) {
        self.bytes.push(SCOPE_LOGS_RECORD);
        record.encode_length_delimited(&mut self.bytes).expect("a Vec grows as needed");
        self.ends.push(self.bytes.len());
    }

    /// The records, decoded (tools and tests).
    pub fn decode(&self) -> Result<Vec<LogRecord>, prost::DecodeError> {
        self.iter().map(|r| LogRecord::decode_length_delimited(&r[1..])).collect()
    }
}

impl FromIterator<LogRecord> for EncodedRecords {
    fn from_iter<I: IntoIterator<Item = LogRecord>>(iter: I) -> Self {
        let mut out = EncodedRecords::default();
        for r in iter {
            out.push_log_record(&r);
        }
        out
    }
}

/// A record's fields before its body's length: the time (unless 0), the severity, the body's tag.
fn put_head(out: &mut Vec<u8>, time: u64, severity_number: i32, severity_text: &str) {
    if time != 0 {
        out.push(TIME);
        out.extend_from_slice(&time.to_le_bytes());
    }
    out.push(SEVERITY_NUMBER);
    encode_varint(severity_number as u64, out);
    out.push(SEVERITY_TEXT);
    put_str(out, severity_text);
    out.push(BODY);
}

/// `len` as a varint of exactly two bytes, if that is its length.
fn two_byte_varint(len: usize) -> Option<[u8; 2]> {
    (128..1 << 14).contains(&len).then_some([(len & 0x7f) as u8 | 0x80, (len >> 7) as u8])
}

/// A length prefix and what it prefixes.
fn framed(len: usize) -> usize {
    encoded_len_varint(len as u64) + len
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

fn body_len(body: BodyRef<'_>) -> usize {
    match body {
        BodyRef::Str(s) => 1 + framed(s.len()),
        BodyRef::KvList(list) => 1 + framed(kvlist_len(list)),
    }
}

fn kvlist_len(list: &[Attr]) -> usize {
    list.iter().map(|(k, v)| 1 + framed(key_value_len(k, v))).sum()
}

/// A `KeyValue`'s length: the key unless empty (a proto3 default), the value always (set, if empty).
fn key_value_len(key: &str, value: &AttrValue) -> usize {
    let key = if key.is_empty() { 0 } else { 1 + framed(key.len()) };
    key + 1 + framed(any_len(value))
}

/// An `AnyValue`'s length: its oneof is always written, whatever the value.
fn any_len(value: &AttrValue) -> usize {
    match value {
        AttrValue::Str(s) => 1 + framed(s.len()),
        AttrValue::Int(i) => 1 + encoded_len_varint(*i as u64),
        AttrValue::Float(_) => 1 + 8,
        AttrValue::Boolean(_) => 1 + 1,
        AttrValue::StrList(list) => 1 + framed(array_len(list)),
    }
}

fn array_len(list: &[Arc<str>]) -> usize {
    list.iter().map(|s| 1 + framed(1 + framed(s.len()))).sum()
}

fn put_key_value(out: &mut Vec<u8>, key: &str, value: &AttrValue) {
    encode_varint(key_value_len(key, value) as u64, out);
    if !key.is_empty() {
        out.push(KEY);
        put_str(out, key);
    }
    out.push(VALUE);
    encode_varint(any_len(value) as u64, out);
    match value {
        AttrValue::Str(s) => {
            out.push(STRING);
            put_str(out, s);
        }
        AttrValue::Int(i) => {
            out.push(INT);
            encode_varint(*i as u64, out);
        }
        AttrValue::Float(f) => {
            out.push(DOUBLE);
            out.extend_from_slice(&f.to_le_bytes());
        }
        AttrValue::Boolean(b) => {
            out.push(BOOL);
            out.push(u8::from(*b));
        }
        AttrValue::StrList(list) => {
            out.push(ARRAY);
            encode_varint(array_len(list) as u64, out);
            for s in list.iter() {
                out.push(VALUES);
                encode_varint((1 + framed(s.len())) as u64, out);
                out.push(STRING);
                put_str(out, s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::{kv, kv_list, string_value};

    fn prost_record(time: u64, severity: Severity, body: BodyRef<'_>, attributes: &[(&str, &AttrValue)]) -> LogRecord {
        let (severity_number, severity_text) = crate::otlp::severity(severity);
        let body = match body {
            BodyRef::Str(s) => string_value(s.to_string()),
            BodyRef::KvList(list) => kv_list(list.iter().map(|(k, v)| kv(k.to_string(), v)).collect()),
        };
        LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            severity_number,
            severity_text: severity_text.to_string(),
            body: Some(body),
            attributes: attributes.iter().map(|(k, v)| kv(k.to_string(), v)).collect(),
            ..LogRecord::default()
        }
    }

    fn values() -> Vec<AttrValue> {
        vec![
            AttrValue::str(""),
            AttrValue::str(&"x".repeat(200)),
            AttrValue::str("é\"\\"),
            AttrValue::Int(0),
            AttrValue::Int(-1),
            AttrValue::Int(i64::MAX),
            AttrValue::Float(0.0),
            AttrValue::Float(-2.5e300),
            AttrValue::Boolean(false),
            AttrValue::Boolean(true),
            AttrValue::StrList(Arc::new([])),
            AttrValue::StrList(["", "a", &"b".repeat(130)].map(Arc::from).into()),
        ]
    }

    #[test]
    fn records_are_the_bytes_prost_writes_for_the_same_record() {
        let values = values();
        let structured: Vec<Attr> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (if i == 0 { "".into() } else { format!("k{i}").into() }, v.clone()))
            .collect();
        let long = "y".repeat(20_000);
        let bodies = [
            BodyRef::Str(""),
            BodyRef::Str("{}"),
            BodyRef::Str(&long),
            BodyRef::KvList(&[]),
            BodyRef::KvList(&structured),
        ];
        let keys = ["", "flowgate.transforms", "a.much.longer.attribute.key.than.most"];
        let mut cases = 0;
        for (n, body) in bodies.iter().enumerate() {
            for time in [0, 1, 1_764_970_845_123_456_789] {
                for severity in [Severity::Trace, Severity::Info, Severity::Fatal] {
                    // No attributes, then a growing prefix of every kind.
                    for count in [0, 1, 5, values.len()] {
                        let attributes: Vec<(&str, &AttrValue)> =
                            values.iter().take(count).enumerate().map(|(i, v)| (keys[(i + n) % 3], v)).collect();
                        let mut ours = EncodedRecords::default();
                        ours.push(time, severity, *body, attributes.iter().copied());
                        let theirs: EncodedRecords =
                            std::iter::once(prost_record(time, severity, *body, &attributes)).collect();
                        assert_eq!(ours.bytes, theirs.bytes, "body {n}, time {time}, {severity:?}, {count} attributes");
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 5 * 3 * 3 * 4);
    }

    /// A body rendered in place is the record `push` writes, at every size where a length's varint changes (the
    /// string's, the body's and the record's), with and without attributes; a failed render appends nothing.
    #[test]
    fn bodies_rendered_in_place_make_the_records_push_makes() {
        let values = values();
        let attributes: Vec<(&str, &AttrValue)> = values.iter().map(|v| ("flowgate.k", v)).collect();
        let mut cases = 0;
        for len in
            [0, 1, 100, 124, 125, 126, 127, 128, 129, 1_152, 16_000, 16_300, 16_380, 16_381, 16_383, 16_384, 20_000]
        {
            let body = "j".repeat(len);
            for count in [0, 1, values.len()] {
                for time in [0, 1_764_970_845_123_456_789] {
                    let mut ours = EncodedRecords::for_request(7, 0, 0);
                    ours.push_rendered(
                        time,
                        Severity::Info,
                        |out| {
                            out.extend_from_slice(body.as_bytes());
                            Ok::<_, ()>(())
                        },
                        attributes[..count].iter().copied(),
                    )
                    .unwrap();
                    let failed = ours.push_rendered(
                        time,
                        Severity::Warn,
                        |out| {
                            out.extend_from_slice(b"half");
                            out.truncate(out.len() - 4);
                            Err(())
                        },
                        attributes[..count].iter().copied(),
                    );
                    assert!(failed.is_err());
                    let mut theirs = EncodedRecords::for_request(7, 0, 0);
                    theirs.push(time, Severity::Info, BodyRef::Str(&body), attributes[..count].iter().copied());
                    assert_eq!(ours.bytes, theirs.bytes, "body of {len} B, {count} attributes, time {time}");
                    assert_eq!(ours.ends, theirs.ends);
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 17 * 3 * 2);
    }

    #[test]
    fn records_read_back_one_by_one() {
        let mut records = EncodedRecords::default();
        let v = AttrValue::str("late");
        for i in 0..300u64 {
            let body = "z".repeat(i as usize);
            records.push(i, Severity::Warn, BodyRef::Str(&body), std::iter::once(("n", &v)));
        }
        assert_eq!(records.len(), 300);
        let mut with_room = EncodedRecords::for_request(40, 0, 0);
        with_room.push(3, Severity::Info, BodyRef::Str("b"), std::iter::once(("n", &v)));
        assert_eq!(with_room.bytes_len() + 40, with_room.clone().into_buffer().len());
        assert_eq!(with_room.decode().unwrap().len(), 1);
        assert_eq!(records.iter().map(<[u8]>::len).sum::<usize>(), records.bytes_len());
        let decoded = records.decode().unwrap();
        for (i, r) in decoded.iter().enumerate() {
            assert_eq!(r.time_unix_nano, i as u64);
            assert_eq!(r.severity_text, "WARN");
            assert_eq!(r.body, Some(string_value("z".repeat(i))));
            assert_eq!(r.attributes, vec![kv("n".into(), &v)]);
        }
    }
}
