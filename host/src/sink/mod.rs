//! The OTLP/HTTP exporter: `max_in_flight` workers take encoded requests from the queue and POST them.
//!
//! Outcomes, per the OTLP/HTTP spec:
//! - 2xx: exported; `partial_success.rejected_log_records` are counted as dropped.
//! - 429, 502, 503, 504, connection errors and timeouts: retried with exponential backoff and full jitter,
//!   honouring `Retry-After` (seconds or HTTP-date) even beyond the request timeout. The batch is held, never
//!   dropped: the queue fills and the source slows down.
//! - 413: the batch is split in halves and each half sent; a single record too large is dropped (and
//!   dead-lettered).
//! - anything else: permanent. Counted, logged once per reason, written to the dead-letter file if configured.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use tokio::io::AsyncWriteExt as _;

pub mod dead_letter;
pub mod metrics_push;

use crate::backoff::{Backoff, Jitter};
use crate::batch::ExportQueue;
use crate::config::{MAX_RETRY_AFTER_MS, OtlpConfig};
use crate::dead_letter::DeadLetterStream;
use crate::otlp::{Encoded, RequestEncoder};
use crate::telemetry::{DropReason, Metrics};
use crate::tls;

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("OTLP header {name:?}: {detail}")]
    Header { name: String, detail: String },
    #[error("building the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// A digest of the contents of the endpoint's TLS files (missing files hash as empty).
fn tls_digest(cfg: &OtlpConfig) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for path in [&cfg.tls.ca_cert, &cfg.tls.client_cert, &cfg.tls.client_key].into_iter().flatten() {
        std::hash::Hash::hash(&std::fs::read(path).unwrap_or_default(), &mut h);
    }
    std::hash::Hasher::finish(&h)
}

/// The outcome of one POST.
#[derive(Debug)]
enum Attempt {
    Ok { rejected: u64, message: String },
    Retry { reason: String, after: Option<Duration> },
    TooLarge,
    Permanent { status: StatusCode, message: String },
}

/// Shared by the export workers.
pub struct Exporter {
    /// Rebuilt when the TLS files change (Kubernetes rotates mounted Secrets in place).
    client: std::sync::RwLock<reqwest::Client>,
    cfg: OtlpConfig,
    /// Digest of the TLS files the client was built from.
    tls_digest: Mutex<u64>,
    endpoint: reqwest::Url,
    headers: HeaderMap,
    timeout: Duration,
    retry_initial: Duration,
    retry_max: Duration,
    encoder: Arc<RequestEncoder>,
    dead_letter: Option<PathBuf>,
    /// Rejected records go here instead of the file, when the dead-letter endpoint is configured.
    dead_letter_stream: Option<Arc<DeadLetterStream>>,
    metrics: Arc<Metrics>,
    /// Reasons already logged, so a permanent failure repeating per batch logs once.
    logged: Mutex<HashSet<String>>,
}

impl Exporter {
    pub fn new(cfg: &OtlpConfig, encoder: Arc<RequestEncoder>, metrics: Arc<Metrics>) -> Result<Self, SinkError> {
        let tls_digest = tls_digest(cfg);
        let client = Self::client(cfg)?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        if let Some(enc) = encoder.compression().content_encoding() {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(enc));
        }
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| SinkError::Header { name: k.clone(), detail: e.to_string() })?;
            let mut value =
                HeaderValue::from_str(v).map_err(|e| SinkError::Header { name: k.clone(), detail: e.to_string() })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(Exporter {
            client: std::sync::RwLock::new(client),
            cfg: cfg.clone(),
            tls_digest: Mutex::new(tls_digest),
            endpoint: cfg.endpoint.clone(),
            headers,
            timeout: cfg.timeout,
            retry_initial: cfg.retry_initial,
            retry_max: cfg.retry_max,
            encoder,
            dead_letter: cfg.dead_letter_path.clone(),
            dead_letter_stream: None,
            metrics,
            logged: Mutex::new(HashSet::new()),
        })
    }

    /// Sends permanently rejected records to the dead-letter endpoint (instead of the file).
    pub fn with_dead_letter_stream(mut self, stream: Arc<DeadLetterStream>) -> Self {
        self.dead_letter_stream = Some(stream);
        self
    }

    fn client(cfg: &OtlpConfig) -> Result<reqwest::Client, SinkError> {
        tls::install_default_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(cfg.max_in_flight)
            .tcp_nodelay(true)
            .user_agent(concat!("flowgate/", env!("CARGO_PKG_VERSION")));
        if cfg.endpoint.scheme() == "https" {
            let tls = tls::client_config(&cfg.tls, &[b"h2", b"http/1.1"])?;
            builder = builder.use_preconfigured_tls(tls);
        }
        builder.build().map_err(SinkError::Client)
    }

    /// Rebuilds the HTTP client if the endpoint's TLS files changed; a half-written or broken set keeps the old
    /// client (and is tried again next time). Returns whether the client was replaced.
    pub fn reload_tls_if_changed(&self) -> bool {
        let digest = tls_digest(&self.cfg);
        let mut current = self.tls_digest.lock().expect("tls digest lock");
        if digest == *current {
            return false;
        }
        match Self::client(&self.cfg) {
            Ok(client) => {
                *self.client.write().expect("client lock") = client;
                *current = digest;
                tracing::info!("OTLP endpoint TLS files changed; new connections use them");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "OTLP endpoint TLS files changed but cannot be used yet; keeping the previous ones");
                false
            }
        }
    }

    /// One export worker: runs until the queue is closed and drained.
    pub async fn worker(self: Arc<Self>, queue: ExportQueue) {
        while let Some((mut batch, ticket)) = queue.pop().await {
            let traces = std::mem::take(&mut batch.traces);
            let (started, records) = (SystemTime::now(), batch.records);
            self.export(batch).await;
            queue.done(ticket);
            for cx in traces {
                crate::telemetry::otel::exported(cx, started, records);
            }
        }
    }

    /// Delivers one batch: returns when it is exported, split and exported, or permanently rejected.
    async fn export(&self, first: Encoded) {
        // Splitting after 413 turns one batch into a stack of halves.
        let mut stack = vec![first];
        while let Some(batch) = stack.pop() {
            let mut backoff = Backoff::new(self.retry_initial, self.retry_max, Jitter::Full);
            loop {
                let started = Instant::now();
                match self.post(&batch).await {
                    Attempt::Ok { rejected, message } => {
                        // Also the count of requests that succeeded (`_count`).
                        self.metrics.export_duration.observe(started.elapsed().as_secs_f64());
                        let rejected = rejected.min(batch.records as u64);
                        self.metrics.flows_exported.inc_by(batch.records as u64 - rejected);
                        if rejected > 0 {
                            self.metrics.dropped(DropReason::PartialSuccess, rejected);
                            self.log_once(format!("partial_success: {message}"), || {
                                tracing::warn!(rejected, message, "OTLP endpoint rejected part of a batch")
                            });
                        }
                        self.metrics.set_exporter_failing(false);
                        break;
                    }
                    Attempt::Retry { reason, after } => {
                        self.metrics.retry(&reason);
                        let wait = match after {
                            Some(after) => after.min(Duration::from_millis(MAX_RETRY_AFTER_MS)),
                            None => backoff.next_wait(),
                        };
                        tracing::debug!(
                            reason,
                            wait_ms = wait.as_millis() as u64,
                            records = batch.records,
                            "OTLP export will be retried"
                        );
                        tokio::time::sleep(wait).await;
                    }
                    Attempt::TooLarge => {
                        self.metrics.retry("413");
                        match self.split(&batch) {
                            Some((a, b)) => {
                                stack.push(b);
                                stack.push(a);
                            }
                            None => {
                                self.metrics.dropped(DropReason::TooLarge, batch.records as u64);
                                self.log_once("413 single record".to_string(), || {
                                    tracing::error!("OTLP endpoint answers 413 for a single record; dropping it (see the dead-letter file if configured)")
                                });
                                self.dead_letter(&batch, 413, "record too large for the endpoint (413)").await;
                            }
                        }
                        break;
                    }
                    Attempt::Permanent { status, message } => {
                        self.metrics.dropped(DropReason::Rejected, batch.records as u64);
                        self.metrics.set_exporter_failing(true);
                        self.log_once(format!("{status} {message}"), || {
                            tracing::error!(
                                status = status.as_u16(),
                                message,
                                records = batch.records,
                                "OTLP endpoint rejected a batch permanently; not retrying"
                            )
                        });
                        self.dead_letter(&batch, status.as_u16(), &message).await;
                        break;
                    }
                }
            }
        }
    }

    /// One POST of `body` to `url` with the current client (TLS reloads swap it) and the configured headers.
    async fn send(&self, url: &reqwest::Url, body: bytes::Bytes) -> reqwest::Result<reqwest::Response> {
        let client = self.client.read().expect("client lock").clone();
        client.post(url.clone()).headers(self.headers.clone()).body(body).send().await
    }

    async fn post(&self, batch: &Encoded) -> Attempt {
        let response = match self.send(&self.endpoint, batch.body.clone()).await {
            Ok(r) => r,
            Err(e) => {
                let reason = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "io"
                };
                self.log_once(format!("transport {reason}"), || {
                    tracing::warn!(endpoint = %self.endpoint, error = %crate::telemetry::error_chain(&e), "OTLP endpoint unreachable; retrying")
                });
                return Attempt::Retry { reason: reason.to_string(), after: None };
            }
        };
        let status = response.status();
        let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let body = tokio::time::timeout(self.timeout, response.bytes()).await;
        let body = match body {
            Ok(Ok(b)) => b,
            Ok(Err(_)) | Err(_) if status.is_success() => {
                // The request was accepted; only the response body was lost.
                return Attempt::Ok { rejected: 0, message: String::new() };
            }
            _ => Default::default(),
        };
        if status.is_success() {
            let response = ExportLogsServiceResponse::decode(body.as_ref()).unwrap_or_default();
            let (rejected, message) = response
                .partial_success
                .map(|p| (p.rejected_log_records.max(0) as u64, p.error_message))
                .unwrap_or_default();
            return Attempt::Ok { rejected, message };
        }
        match status.as_u16() {
            429 | 502 | 503 | 504 => Attempt::Retry { reason: status.as_u16().to_string(), after: retry_after },
            413 => Attempt::TooLarge,
            _ => Attempt::Permanent { status, message: status_message(&body) },
        }
    }

    /// POSTs an already encoded (and compressed) body to `url`, another signal of the same endpoint (the flow
    /// metrics' push): same client, TLS, headers and timeout. One attempt, answering the response body or why it
    /// failed; its caller sends cumulative values, so the next push covers a failed one.
    pub async fn post_once(&self, url: &reqwest::Url, body: bytes::Bytes) -> Result<bytes::Bytes, String> {
        let response = self.send(url, body).await.map_err(|e| crate::telemetry::error_chain(&e))?;
        let status = response.status();
        let body = tokio::time::timeout(self.timeout, response.bytes()).await;
        let body = match body {
            Ok(Ok(b)) => b,
            _ if status.is_success() => bytes::Bytes::new(),
            _ => return Err(format!("HTTP {status}")),
        };
        if status.is_success() { Ok(body) } else { Err(format!("HTTP {status}: {}", status_message(&body))) }
    }

    fn split(&self, batch: &Encoded) -> Option<(Encoded, Encoded)> {
        if batch.records < 2 {
            return None;
        }
        let mut records = match self.encoder.decode(batch) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot decode a batch to split it after 413");
                return None;
            }
        };
        let second = records.split_off(records.len() / 2);
        Some((self.encoder.encode_log_records(records), self.encoder.encode_log_records(second)))
    }

    fn log_once(&self, reason: String, log: impl FnOnce()) {
        if self.logged.lock().expect("log-once lock").insert(reason) {
            log();
        }
    }

    /// Hands the batch's records to the dead-letter stream, or appends them as JSON lines:
    /// `{"status":…,"reason":…,"time_unix_nano":…,"body":…}`.
    async fn dead_letter(&self, batch: &Encoded, status: u16, reason: &str) {
        if self.dead_letter.is_none() && self.dead_letter_stream.is_none() {
            return;
        }
        let records = match self.encoder.decode(batch) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot decode a rejected batch for the dead letters");
                return;
            }
        };
        let Some(path) = &self.dead_letter else {
            if let Some(stream) = &self.dead_letter_stream {
                stream.rejected(records, status, reason);
            }
            return;
        };
        match append_dead_letter(path, &records, status, reason).await {
            Ok(()) => {
                self.metrics.dead_lettered.inc_by(records.len() as u64);
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot write the dead-letter file")
            }
        }
    }
}

async fn append_dead_letter(path: &Path, records: &[LogRecord], status: u16, reason: &str) -> std::io::Result<()> {
    let mut out = String::new();
    for r in records {
        let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => serde_json::Value::String(s.clone()),
            _ => serde_json::Value::Null,
        };
        let line = serde_json::json!({
            "status": status,
            "reason": reason,
            "time_unix_nano": r.time_unix_nano.to_string(),
            "body": body,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    let mut f = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
    f.write_all(out.as_bytes()).await?;
    f.flush().await
}

/// The reason in an OTLP error response (a `google.rpc.Status` protobuf), else the body as text, shortened.
fn status_message(body: &[u8]) -> String {
    #[derive(prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    if let Ok(s) = RpcStatus::decode(body)
        && !s.message.is_empty()
    {
        return s.message;
    }
    let text = String::from_utf8_lossy(body);
    text.chars().take(200).collect()
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_http_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let in_20s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(20));
        let d = parse_retry_after(&in_20s).unwrap();
        assert!(d > Duration::from_secs(17) && d <= Duration::from_secs(20), "{d:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn status_message_reads_rpc_status_or_text() {
        #[derive(prost::Message)]
        struct S {
            #[prost(int32, tag = "1")]
            code: i32,
            #[prost(string, tag = "2")]
            message: String,
        }
        let body = S { code: 3, message: "bad attribute".into() }.encode_to_vec();
        assert_eq!(status_message(&body), "bad attribute");
        assert_eq!(status_message(b"plain words"), "plain words");
    }
}
