//! The OTLP form, below every stage (Flowgate's equivalent of mini-redis's `frame`): log records as the old
//! exporter writes them, attribute values, requests (one `ExportLogsServiceRequest` a batch, with one
//! ResourceLogs and one ScopeLogs) and their compression. It depends on no stage.
//!
//! Records are encoded where they are made ([`EncodedRecords`], by the pipeline); a request is their
//! bytes behind a head written last ([`RequestEncoder::finish`]), so nothing is encoded twice.

pub mod gzip;
mod records;

use std::io::Read as _;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use prost::encoding::{encode_varint, encoded_len_varint};

pub use records::{BodyRef, EncodedRecords};

use crate::config::{Compression, SERVICE_NAME};
use crate::wasm::{AttrValue, Severity};

/// zstd level, chosen by CPU per byte saved (`make bench`, "compressing OTLP requests"): level 1 costs 1.27 ns a
/// byte saved (122 B a 1,187 B record), level 3 1.50 (117 B): the last 5 B a record would cost ~50 ns a byte.
const ZSTD_LEVEL: i32 = 1;

/// gzip level, chosen the same way, with ISA-L's igzip: level 0 costs 1.37–1.53 ns a byte saved (180 B a record),
/// level 1 1.59–1.64 (156 B), level 3 6.2–6.7 (162 B); in the same runs flate2 with zlib-rs cost 2.8–2.9 at its
/// level 1 (196 B, the default before) and 6.4–6.6 at 4 (112 B). Level 0 sends fewer bytes than that default did,
/// for half its CPU.
const GZIP_LEVEL: u32 = 0;

/// The gzip compressor, as the bench prints it.
pub const GZIP_BACKEND: &str = "ISA-L igzip";

/// An encoded, possibly compressed request ready to send as is.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub body: Bytes,
    pub records: usize,
    /// Size before compression.
    pub raw_bytes: usize,
    /// Its number in the in-memory queue when acknowledgements move the stream cursor (0: not tracked).
    pub batch: u64,
    /// The open spans of sampled batches whose records start in this request (the gateway's own traces): the
    /// exporter ends them once it is delivered.
    pub traces: Vec<opentelemetry::Context>,
}

/// Builds requests with a fixed resource and scope.
#[derive(Debug)]
pub struct RequestEncoder {
    resource: Resource,
    scope: InstrumentationScope,
    compression: Compression,
    /// `ResourceLogs.resource` and `ScopeLogs.scope` as fields (tag, length, message), encoded once.
    resource_field: Vec<u8>,
    scope_field: Vec<u8>,
}

/// `ExportLogsServiceRequest.resource_logs`, `ResourceLogs.resource` and `.scope_logs`, `ScopeLogs.scope`: each
/// field 1 or 2, length-delimited.
const FIELD_1: u8 = 1 << 3 | 2;
const FIELD_2: u8 = 2 << 3 | 2;

/// An OTLP string attribute.
pub fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(string_value(value.to_string())), ..KeyValue::default() }
}

/// An OTLP string value.
pub fn string_value(value: String) -> AnyValue {
    AnyValue { value: Some(any_value::Value::StringValue(value)) }
}

/// OTLP `SEVERITY_NUMBER_INFO`: every record of the old exporter.
pub const SEVERITY_INFO: i32 = 9;

/// A transform's severity as OTLP's number and text.
pub fn severity(level: Severity) -> (i32, &'static str) {
    match level {
        Severity::Trace => (1, "TRACE"),
        Severity::Debug => (5, "DEBUG"),
        Severity::Info => (SEVERITY_INFO, "INFO"),
        Severity::Warn => (13, "WARN"),
        Severity::Error => (17, "ERROR"),
        Severity::Fatal => (21, "FATAL"),
    }
}

/// An attribute as OTLP's.
pub fn kv(key: String, value: &AttrValue) -> KeyValue {
    let value = match value {
        AttrValue::Str(s) => any_value::Value::StringValue(s.to_string()),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Float(f) => any_value::Value::DoubleValue(*f),
        AttrValue::Boolean(b) => any_value::Value::BoolValue(*b),
        AttrValue::StrList(l) => {
            any_value::Value::ArrayValue(ArrayValue { values: l.iter().map(|s| string_value(s.to_string())).collect() })
        }
    };
    KeyValue { key, value: Some(AnyValue { value: Some(value) }), ..KeyValue::default() }
}

/// A structured body.
pub fn kv_list(values: Vec<KeyValue>) -> AnyValue {
    AnyValue { value: Some(any_value::Value::KvlistValue(KeyValueList { values })) }
}

/// The resource the old exporter reports, plus `OTEL_RESOURCE_ATTRIBUTES` (which may override any key).
pub fn resource(extra: &[(String, String)]) -> Resource {
    let mut attrs: Vec<(String, String)> = vec![
        ("service.name".into(), SERVICE_NAME.into()),
        ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("telemetry.sdk.language".into(), "rust".into()),
        ("telemetry.sdk.name".into(), "flowgate".into()),
        ("telemetry.sdk.version".into(), env!("CARGO_PKG_VERSION").into()),
    ];
    for (k, v) in extra {
        match attrs.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => attrs.push((k.clone(), v.clone())),
        }
    }
    Resource {
        attributes: attrs.iter().map(|(k, v)| string_kv(k, v)).collect(),
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    }
}

impl RequestEncoder {
    pub fn new(resource: Resource, compression: Compression) -> Self {
        let scope = InstrumentationScope { name: SERVICE_NAME.to_string(), ..InstrumentationScope::default() };
        let field = |tag: u8, message: &dyn Fn(&mut Vec<u8>)| {
            let mut out = vec![tag];
            message(&mut out);
            out
        };
        let resource_field = field(FIELD_1, &|out| resource.encode_length_delimited(out).expect("a Vec grows"));
        let scope_field = field(FIELD_1, &|out| scope.encode_length_delimited(out).expect("a Vec grows"));
        RequestEncoder { resource, scope, compression, resource_field, scope_field }
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The request for `records`, uncompressed.
    pub fn request(&self, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(self.scope.clone()),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// Bytes the head of a request may take: records are appended after this much room ([`RequestEncoder::start`]).
    pub fn head_room(&self) -> usize {
        // Two tags and two length varints of at most 5 bytes (a request is far below 4 GiB).
        2 * (1 + 5) + self.resource_field.len() + self.scope_field.len()
    }

    /// A buffer for a request: room for its head, then records appended as [`EncodedRecords`] hold them.
    pub fn start(&self, capacity: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.head_room() + capacity);
        buf.resize(self.head_room(), 0);
        buf
    }

    /// The request of `records` records appended to a buffer from [`RequestEncoder::start`]: its head is written
    /// in front of them, into the room left, and the whole compressed if configured. The bytes are prost's for
    /// the same request.
    pub fn finish(&self, mut buf: Vec<u8>, records: usize) -> Encoded {
        let room = self.head_room();
        let scope_logs = self.scope_field.len() + (buf.len() - room);
        let resource_logs = self.resource_field.len() + 1 + encoded_len_varint(scope_logs as u64) + scope_logs;
        let mut head = Vec::with_capacity(room);
        head.push(FIELD_1);
        encode_varint(resource_logs as u64, &mut head);
        head.extend_from_slice(&self.resource_field);
        head.push(FIELD_2);
        encode_varint(scope_logs as u64, &mut head);
        head.extend_from_slice(&self.scope_field);
        let at = room - head.len();
        buf[at..room].copy_from_slice(&head);
        let raw_bytes = buf.len() - at;
        let body = match self.compression {
            Compression::None => {
                // A request is held until exported: it should not hold much more than it uses.
                if buf.capacity() > buf.len() + buf.len() / 8 {
                    buf.shrink_to_fit();
                }
                Bytes::from(buf).slice(at..)
            }
            c => Bytes::from(compress(c, &buf[at..])),
        };
        Encoded { body, records, raw_bytes, batch: 0, traces: Vec::new() }
    }

    /// The request of records made with this encoder's head room in front, as the pipeline makes a chunk's
    /// and the batcher sends one that makes a whole request: the head written into the room, nothing copied.
    pub fn finish_records(&self, records: EncodedRecords) -> Encoded {
        debug_assert_eq!(records.head_room(), self.head_room(), "records made for another encoder");
        let n = records.len();
        self.finish(records.into_buffer(), n)
    }

    /// Encodes and compresses a batch (copying the records after a head).
    pub fn encode(&self, records: &EncodedRecords) -> Encoded {
        let mut buf = self.start(records.bytes_len());
        for r in records.iter() {
            buf.extend_from_slice(r);
        }
        self.finish(buf, records.len())
    }

    /// Encodes and compresses records built elsewhere (a batch split after a 413).
    pub fn encode_log_records(&self, records: Vec<LogRecord>) -> Encoded {
        self.encode(&records.into_iter().collect())
    }

    /// The records of an encoded request, to split it after a 413.
    pub fn decode(&self, encoded: &Encoded) -> Result<Vec<LogRecord>, std::io::Error> {
        let raw = decompress(self.compression, &encoded.body, encoded.raw_bytes)?;
        let request = ExportLogsServiceRequest::decode(raw.as_slice()).map_err(std::io::Error::other)?;
        Ok(request.resource_logs.into_iter().flat_map(|r| r.scope_logs).flat_map(|s| s.log_records).collect())
    }
}

/// Applies `Content-Encoding`.
pub fn compress(compression: Compression, raw: &[u8]) -> Vec<u8> {
    match compression {
        Compression::None => raw.to_vec(),
        Compression::Gzip => gzip::compress(raw, GZIP_LEVEL),
        Compression::Zstd => zstd::bulk::compress(raw, ZSTD_LEVEL).expect("zstd compression of a buffer"),
    }
}

/// Undoes `Content-Encoding` (used by `decode`, the demo receiver and tests).
pub fn decompress(compression: Compression, body: &[u8], size_hint: usize) -> Result<Vec<u8>, std::io::Error> {
    match compression {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => {
            let mut out = Vec::with_capacity(size_hint);
            flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
            Ok(out)
        }
        Compression::Zstd => {
            let mut out = Vec::with_capacity(size_hint);
            zstd::stream::read::Decoder::new(body)?.read_to_end(&mut out)?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_the_bytes_prost_writes_for_it_whatever_its_size() {
        let extra = [("k8s.cluster.name".to_string(), "x".repeat(300))];
        for resource in [resource(&[]), resource(&extra)] {
            let encoder = RequestEncoder::new(resource, Compression::None);
            // Sizes around where the lengths' varints grow a byte (128, 16 Ki, 2 Mi).
            for (records, body) in [(0, 0), (1, 10), (1, 100), (3, 5_000), (40, 400), (200, 20_000)] {
                let logs: Vec<LogRecord> = (0..records)
                    .map(|i| LogRecord {
                        time_unix_nano: i,
                        severity_number: SEVERITY_INFO,
                        body: Some(string_value("b".repeat(body))),
                        ..LogRecord::default()
                    })
                    .collect();
                let encoded = encoder.encode_log_records(logs.clone());
                let expected = encoder.request(logs.clone()).encode_to_vec();
                assert_eq!(encoded.body.as_ref(), expected.as_slice(), "{records} records of {body} B");
                // Records made with the head room in front become the request without a copy: the same bytes.
                let mut made = EncodedRecords::for_request(encoder.head_room(), records as usize, 0);
                for log in &logs {
                    made.push_log_record(log);
                }
                assert_eq!(encoder.finish_records(made).body, encoded.body, "{records} records of {body} B");
                assert_eq!((encoded.records, encoded.raw_bytes), (records as usize, expected.len()));
                assert_eq!(encoder.decode(&encoded).unwrap(), logs);
            }
        }
    }

    #[test]
    fn compressed_requests_read_back() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let encoder = RequestEncoder::new(resource(&[]), c);
            let logs: Vec<LogRecord> = (0..50)
                .map(|i| LogRecord {
                    time_unix_nano: i,
                    body: Some(string_value("c".repeat(300))),
                    ..LogRecord::default()
                })
                .collect();
            let encoded = encoder.encode_log_records(logs.clone());
            assert!(
                encoded.body.len() < encoded.raw_bytes / 5,
                "{c:?}: {} of {}",
                encoded.body.len(),
                encoded.raw_bytes
            );
            assert_eq!(encoder.decode(&encoded).unwrap(), logs);
        }
    }
}
