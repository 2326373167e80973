//! `otlp`: the OTLP/HTTP logs endpoint, its TLS, headers, compression, retries and resource.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Problems, TlsFiles};

/// Default OTLP endpoint, as the OTLP spec and the old exporter.
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4318";
/// Per-request timeout (`OTEL_EXPORTER_OTLP_TIMEOUT` default).
pub const DEFAULT_EXPORT_TIMEOUT_MS: u64 = 10_000;
/// Concurrent OTLP requests.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// Retry backoff bounds (full jitter between 0 and the current step).
pub const DEFAULT_RETRY_INITIAL_MS: u64 = 500;
pub const DEFAULT_RETRY_MAX_MS: u64 = 30_000;
/// Longest `Retry-After` honoured; a server asking for more is retried after this.
pub const MAX_RETRY_AFTER_MS: u64 = 300_000;
/// The old exporter's `service.name` and scope name, which users' dashboards select on.
pub const SERVICE_NAME: &str = "calico-flow-logs-otlphttp-exporter";

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawOtlp {
    /// Full logs URL, used as is (like `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`).
    pub endpoint: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// `none`, `gzip` or `zstd`.
    pub compression: Option<String>,
    pub timeout_ms: Option<u64>,
    pub ca_cert_path: Option<PathBuf>,
    pub client_cert_path: Option<PathBuf>,
    pub client_key_path: Option<PathBuf>,
    pub max_in_flight: Option<usize>,
    pub retry_initial_ms: Option<u64>,
    pub retry_max_ms: Option<u64>,
    /// Where batches rejected permanently (4xx other than 413/429) are appended as JSON lines.
    pub dead_letter_path: Option<PathBuf>,
    pub resource_attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The `Content-Encoding` value, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub endpoint: url::Url,
    pub headers: Vec<(String, String)>,
    pub compression: Compression,
    pub timeout: Duration,
    pub tls: TlsFiles,
    pub max_in_flight: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub dead_letter_path: Option<PathBuf>,
    pub resource_attributes: Vec<(String, String)>,
}

impl RawOtlp {
    pub(super) fn resolve(self, p: &mut Problems, warnings: &mut Vec<String>) -> OtlpConfig {
        let endpoint_text = self.endpoint.unwrap_or_else(|| format!("{DEFAULT_OTLP_ENDPOINT}/v1/logs"));
        let endpoint = http_url(&endpoint_text, "otlp.endpoint", p)
            .unwrap_or_else(|| url::Url::parse("http://invalid/").expect("static URL"));
        let compression = match self.compression.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") | Some("") => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some(other) => {
                p.at("otlp.compression", format!("{other:?} is not none, gzip or zstd"));
                Compression::None
            }
        };
        let tls = TlsFiles {
            ca_cert: self.ca_cert_path,
            client_cert: self.client_cert_path,
            client_key: self.client_key_path,
        };
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            // Named after the one that is set: it is the one missing its other half.
            let set = if tls.client_cert.is_some() { "otlp.client_cert_path" } else { "otlp.client_key_path" };
            p.at(set, "a client certificate and a client key go together: set both or neither");
        }
        if endpoint.scheme() == "http" && (tls.ca_cert.is_some() || tls.client_cert.is_some()) {
            warnings.push(format!("OTLP endpoint {endpoint} is plain http: the OTLP TLS files are not used"));
        }
        let max_in_flight = self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        if max_in_flight == 0 {
            p.at("otlp.max_in_flight", "must be at least 1");
        }
        // The environment's headers were checked as they were read, against their variable.
        for k in self.headers.keys() {
            if !is_header_name(k) {
                p.at("otlp.headers", format!("{k:?} is not a valid header name"));
            }
        }
        let retry_initial = self.retry_initial_ms.unwrap_or(DEFAULT_RETRY_INITIAL_MS).max(1);
        OtlpConfig {
            endpoint,
            headers: self.headers.into_iter().collect(),
            compression,
            timeout: Duration::from_millis(self.timeout_ms.unwrap_or(DEFAULT_EXPORT_TIMEOUT_MS).max(1)),
            tls,
            max_in_flight: max_in_flight.max(1),
            retry_initial: Duration::from_millis(retry_initial),
            retry_max: Duration::from_millis(self.retry_max_ms.unwrap_or(DEFAULT_RETRY_MAX_MS).max(retry_initial)),
            dead_letter_path: self.dead_letter_path,
            resource_attributes: self.resource_attributes.into_iter().collect(),
        }
    }
}

/// Whether `name` can be sent as an HTTP header name.
pub(super) fn is_header_name(name: &str) -> bool {
    http::HeaderName::from_bytes(name.as_bytes()).is_ok()
}

/// `text` as an http or https URL, or a problem with the setting at `yaml_path`.
pub(super) fn http_url(text: &str, yaml_path: &str, p: &mut Problems) -> Option<url::Url> {
    match url::Url::parse(text) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
        Ok(u) => {
            p.at(yaml_path, format!("scheme {:?} is not http or https", u.scheme()));
            None
        }
        Err(e) => {
            p.at(yaml_path, format!("{text:?} is not a URL: {e}"));
            None
        }
    }
}

/// An OTLP endpoint alone, with the defaults of everything else (`flowgate replay --otlp`).
pub fn otlp_only(endpoint: &str) -> Result<OtlpConfig, ConfigError> {
    let raw = RawOtlp { endpoint: Some(endpoint.to_string()), ..RawOtlp::default() };
    let (mut p, mut warnings) = (Problems::default(), Vec::new());
    let cfg = raw.resolve(&mut p, &mut warnings);
    if p.found.is_empty() { Ok(cfg) } else { Err(ConfigError { problems: p.found }) }
}
