//! The OTLP form, below every stage (Flowgate's equivalent of mini-redis's `frame`): log records as the old
//! exporter writes them, attribute values, requests (one `ExportLogsServiceRequest` a batch, with one
//! ResourceLogs and one ScopeLogs) and their compression. It depends on no stage.

use std::io::{Read as _, Write as _};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use crate::config::{Compression, SERVICE_NAME};
use crate::render;
use crate::wasm::{Severity, Value};

/// zstd level, chosen by CPU per byte saved (`make bench`, "compressing OTLP requests"): level 1 costs 1.27 ns a
/// byte saved (122 B a 1,187 B record), level 3 1.50 (117 B): the last 5 B a record would cost ~50 ns a byte.
const ZSTD_LEVEL: i32 = 1;

/// gzip level, chosen the same way: level 1 costs 2.2 ns a byte saved (196 B a record), level 4 4.6 (112 B),
/// level 6 6.6 (98 B), with flate2's zlib-rs backend (1.1× faster than miniz_oxide at level 1, 1.8× at 6).
const GZIP_LEVEL: u32 = 1;

/// flate2's backend, as the bench prints it.
pub const GZIP_BACKEND: &str = "zlib-rs";

/// An encoded, possibly compressed request ready to send as is.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub body: Bytes,
    pub records: usize,
    /// Size before compression.
    pub raw_bytes: usize,
    /// Its number in the in-memory queue when acknowledgements move the stream cursor (0: not tracked).
    pub batch: u64,
}

/// Builds requests with a fixed resource and scope.
#[derive(Debug)]
pub struct RequestEncoder {
    resource: Resource,
    scope: InstrumentationScope,
    compression: Compression,
}

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

/// A transform's attribute value as OTLP's.
pub fn kv(key: String, value: Value) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Float(f) => any_value::Value::DoubleValue(f),
        Value::Boolean(b) => any_value::Value::BoolValue(b),
        Value::StrList(l) => {
            any_value::Value::ArrayValue(ArrayValue { values: l.into_iter().map(string_value).collect() })
        }
    };
    KeyValue { key, value: Some(AnyValue { value: Some(value) }), ..KeyValue::default() }
}

/// A structured body.
pub fn kv_list(values: Vec<KeyValue>) -> AnyValue {
    AnyValue { value: Some(any_value::Value::KvlistValue(KeyValueList { values })) }
}

/// The old exporter's record for one encoded `goldmane.Flow`: its body rendered straight from the wire, severity
/// INFO, both timestamps the processing time.
pub fn flow_record(wire: &[u8], now_unix_nanos: u64) -> Result<LogRecord, render::Malformed> {
    // Bodies run a little over twice the flow's wire size; one allocation in the common case.
    let mut body = String::with_capacity(wire.len() * 5 / 2 + 64);
    render::flow_json_from_wire(wire, &mut body)?;
    Ok(LogRecord {
        time_unix_nano: now_unix_nanos,
        observed_time_unix_nano: now_unix_nanos,
        severity_number: SEVERITY_INFO,
        severity_text: "INFO".to_string(),
        body: Some(string_value(body)),
        ..LogRecord::default()
    })
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
        RequestEncoder {
            resource,
            scope: InstrumentationScope { name: SERVICE_NAME.to_string(), ..InstrumentationScope::default() },
            compression,
        }
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

    /// Encodes and compresses a batch.
    pub fn encode(&self, records: Vec<LogRecord>) -> Encoded {
        let n = records.len();
        let raw = self.request(records).encode_to_vec();
        let raw_bytes = raw.len();
        Encoded { body: Bytes::from(compress(self.compression, raw)), records: n, raw_bytes, batch: 0 }
    }

    /// The records of an encoded request, to split it after a 413.
    pub fn decode(&self, encoded: &Encoded) -> Result<Vec<LogRecord>, std::io::Error> {
        let raw = decompress(self.compression, &encoded.body, encoded.raw_bytes)?;
        let request = ExportLogsServiceRequest::decode(raw.as_slice()).map_err(std::io::Error::other)?;
        Ok(request.resource_logs.into_iter().flat_map(|r| r.scope_logs).flat_map(|s| s.log_records).collect())
    }
}

/// Applies `Content-Encoding`.
pub fn compress(compression: Compression, raw: Vec<u8>) -> Vec<u8> {
    match compression {
        Compression::None => raw,
        Compression::Gzip => {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::new(GZIP_LEVEL));
            enc.write_all(&raw).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Zstd => zstd::bulk::compress(&raw, ZSTD_LEVEL).expect("zstd compression of a buffer"),
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
