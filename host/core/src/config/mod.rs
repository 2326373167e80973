//! Typed, strict configuration: an optional YAML file, overlaid by the old exporter's and OpenTelemetry's
//! environment variables, resolved into one [`Config`] with every problem reported at once.
//!
//! Precedence: built-in defaults < YAML file < environment. Variable names are those of the exporter Flowgate
//! replaces (`GOLDMANE_HOST`, `CA_CERT_PATH`, …) and of the OTLP exporter spec (`OTEL_EXPORTER_OTLP_*`,
//! `OTEL_BLRP_*`, `OTEL_RESOURCE_ATTRIBUTES`).

mod env;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use env::Env;
use env::apply_env;

/// Default initial reconnect wait, as the old exporter's `RECONNECT_WAIT_TIME_IN_MILLISECONDS`.
pub const DEFAULT_RECONNECT_INITIAL_MS: u64 = 5_000;
/// Reconnect backoff cap.
pub const DEFAULT_RECONNECT_MAX_MS: u64 = 60_000;
/// Goldmane answers pings more often than every 5 minutes with GOAWAY `too_many_pings`.
pub const MIN_KEEPALIVE_INTERVAL_MS: u64 = 300_000;
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
/// Records per OTLP request (`OTEL_BLRP_MAX_EXPORT_BATCH_SIZE` default).
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 512;
/// Uncompressed request size that flushes a batch early.
pub const DEFAULT_BATCH_MAX_BYTES: usize = 4 << 20;
/// Longest a record waits in a partial batch (`OTEL_BLRP_SCHEDULE_DELAY` default).
pub const DEFAULT_BATCH_DELAY_MS: u64 = 1_000;
/// The in-memory queue between batcher and exporter, in bytes of encoded requests. Sized so a whole
/// 100,000-flow Goldmane burst (~1.2 KiB a record) fits while the endpoint is slow or down.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 512 << 20;
/// The queue's record bound. `OTEL_BLRP_MAX_QUEUE_SIZE` sets it; below 100,000 a burst can stall the stream.
pub const DEFAULT_QUEUE_MAX_RECORDS: usize = 250_000;
/// A Goldmane burst Flowgate must absorb without stalling the stream.
pub const BURST_RECORDS: usize = 100_000;
/// Admin HTTP listener (metrics, probes): loopback unless moved (`FLOWGATE_ADMIN_LISTEN`, `admin.listen`), since
/// it has no authentication. The Helm chart moves it to every address of the pod for probes and scraping.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Grace period to flush on SIGTERM (Kubernetes' default termination grace is 30 s).
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 25_000;
/// The old exporter's `service.name` and scope name, which users' dashboards select on.
pub const SERVICE_NAME: &str = "calico-flow-logs-otlphttp-exporter";

/// The YAML file, every field optional: what is absent comes from the environment or defaults.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub goldmane: RawGoldmane,
    pub otlp: RawOtlp,
    pub batch: RawBatch,
    pub queue: RawQueue,
    pub admin: RawAdmin,
    pub transforms: RawTransforms,
    pub flow_metrics: RawFlowMetrics,
    pub aggregation: RawAggregation,
    pub shutdown_grace_ms: Option<u64>,
    /// A writable directory for the stream cursor (`FLOWGATE_STATE_DIR`): with it, a restart resumes the stream
    /// where the endpoint's acknowledgements end, even without the persistent queue.
    pub state_dir: Option<PathBuf>,
}

/// Prometheus counters computed from the flows after the transform chain (so redaction protects their labels).
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawFlowMetrics {
    /// Off by default: it costs a decode of every flow.
    pub enabled: Option<bool>,
    /// Label sets one metric group may hold; later ones are folded into an `__overflow__` series.
    pub max_series: Option<usize>,
    /// When set, namespace label values outside this list become `__other__`.
    pub namespaces: Option<Vec<String>>,
    /// The same counters pushed as OTLP metrics (cumulative sums), besides Prometheus.
    pub otlp: RawFlowMetricsOtlp,
}

/// Pushing the flow metrics as OTLP/HTTP metrics, with the logs exporter's TLS, headers, compression and timeout.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawFlowMetricsOtlp {
    pub enabled: Option<bool>,
    /// Full metrics URL (like `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`); by default the logs endpoint with
    /// `/v1/logs` replaced by `/v1/metrics`.
    pub endpoint: Option<String>,
    /// Push period (like `OTEL_METRIC_EXPORT_INTERVAL`); the counters are cumulative, so a failed push loses
    /// nothing: the next one carries the totals.
    pub interval_ms: Option<u64>,
}

/// Merging flows with equal final keys within one 15 s bucket, after the transform chain.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawAggregation {
    pub enabled: Option<bool>,
    /// `none` (merge equal keys only), `names` (drop workload names) or `namespaces` (namespace pairs only).
    pub level: Option<AggregationLevel>,
    /// Quiet time after a bucket's last flow before its merged records are sent.
    pub linger_ms: Option<u64>,
    /// Merged records held at most; past it the oldest bucket is sent early.
    pub max_groups: Option<usize>,
}

/// How much of the flow key aggregation keeps.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AggregationLevel {
    /// The key as the chain left it: only flows whose final keys are already equal merge.
    #[default]
    None,
    /// Source and destination workload names are dropped; namespaces and everything else kept.
    Names,
    /// Namespace to namespace: source and destination namespace and endpoint type, reporter and action.
    Namespaces,
}

/// The transform chain. Without `chain`, every `*.wasm` / `*.wasm.gz` in `dir` (lexical order) with an optional
/// `<name>.yaml` beside it (the same fields as a chain entry, without `name` and `path`).
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTransforms {
    /// Watched for changes (a mounted ConfigMap works: updates are picked up without a restart).
    pub dir: Option<PathBuf>,
    /// An explicit chain; the files it names are watched too.
    pub chain: Option<Vec<RawEntry>>,
    /// Threads running transforms; default: the number of cores.
    pub workers: Option<usize>,
    /// Add `flowgate.transforms` (the chain, `name@sha256:digest` each) to every record a chain shaped.
    pub provenance: Option<bool>,
    /// Where flows go under the `dead-letter` failure policy (JSON lines).
    pub dead_letter_path: Option<PathBuf>,
    /// Full rescan period, in case a change notification was missed.
    pub resync_interval_ms: Option<u64>,
    /// Quiet time after a change before reloading (a ConfigMap update touches several files).
    pub debounce_ms: Option<u64>,
}

/// One transform of an explicit chain (or the contents of a `<name>.yaml` beside a component).
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawEntry {
    pub name: Option<String>,
    pub path: Option<PathBuf>,
    /// Handed to the component's `init`.
    pub config: BTreeMap<String, serde_norway::Value>,
    /// `fail-closed` (default), `fail-open` or `dead-letter`.
    pub failure_policy: Option<FailurePolicy>,
    /// Time one batch may take in this transform.
    pub deadline_ms: Option<u64>,
    /// Linear-memory cap of one instance.
    pub memory_mb: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawGoldmane {
    /// `host:port` of Goldmane (`GOLDMANE_HOST`).
    pub host: Option<String>,
    /// TLS server name; defaults to the host part of `host`.
    pub server_name: Option<String>,
    /// PEM CA bundle (`CA_CERT_PATH`).
    pub ca_cert_path: Option<PathBuf>,
    /// Client certificate (`PUBLIC_CERT_PATH`).
    pub client_cert_path: Option<PathBuf>,
    /// Client key, PKCS#1, PKCS#8 or SEC1 (`PRIVATE_KEY_PATH`).
    pub client_key_path: Option<PathBuf>,
    pub reconnect_initial_ms: Option<u64>,
    pub reconnect_max_ms: Option<u64>,
    /// HTTP/2 keepalive ping interval; at least 300000 (Goldmane's ping policy). Off when absent.
    pub keepalive_interval_ms: Option<u64>,
    /// First connection's `start_time_gte`: 0 = now, < 0 = seconds back (at most 3585), > 0 = epoch seconds.
    pub start_time_gte: Option<i64>,
    pub filter: Option<FilterConfig>,
    /// Finding the flows Goldmane never streams live (they reached it after their bucket was streamed).
    pub reconcile: RawReconcile,
}

/// Reconciliation of late flows with `Flows/List`.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawReconcile {
    /// On by default (`FLOWGATE_RECONCILE=false` turns it off).
    pub enabled: Option<bool>,
    /// How far back buckets are reconciled, in seconds (default 330: Felix re-sends its last 5 minutes).
    pub window_secs: Option<u64>,
    /// When each bucket is listed again, in seconds after Goldmane streamed it (default 10, 60, 300).
    pub passes_secs: Option<Vec<u64>>,
    /// A key already exported whose counters grew: `delta` (default) exports the difference as its own record
    /// (attribute `flowgate.reconciled=delta`), `ignore` only counts it.
    pub growth: Option<Growth>,
    /// Flows per `List` page (default 5000).
    pub page_size: Option<u64>,
}

/// What reconciliation does when a key already exported grows.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Growth {
    #[default]
    Delta,
    Ignore,
}

/// Default reconciliation window: Felix's 5-minute replay plus two buckets.
pub const DEFAULT_RECONCILE_WINDOW_SECS: u64 = 330;
/// Default reconciliation passes, seconds after a bucket was streamed.
pub const DEFAULT_RECONCILE_PASSES_SECS: [u64; 3] = [10, 60, 300];
/// Default `List` page size.
pub const DEFAULT_RECONCILE_PAGE_SIZE: u64 = 5_000;

/// Resolved reconciliation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    pub window: Duration,
    pub passes: Vec<Duration>,
    pub growth: Growth,
    pub page_size: u64,
}

/// A server-side stream filter. Policy filters are left out on purpose: their wire type changed in Calico 3.32.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    pub source_names: Vec<StringMatchConfig>,
    pub source_namespaces: Vec<StringMatchConfig>,
    pub dest_names: Vec<StringMatchConfig>,
    pub dest_namespaces: Vec<StringMatchConfig>,
    pub protocols: Vec<StringMatchConfig>,
    pub dest_ports: Vec<i64>,
    /// `Allow`, `Deny` or `Pass`.
    pub actions: Vec<String>,
    /// `Src` or `Dst` (honoured by Calico 3.32+, ignored by older servers).
    pub reporter: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StringMatchConfig {
    pub value: String,
    /// `exact` (default) or `fuzzy` (substring).
    #[serde(default)]
    pub r#type: MatchTypeConfig,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MatchTypeConfig {
    #[default]
    Exact,
    Fuzzy,
}

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

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawBatch {
    pub max_records: Option<usize>,
    pub max_bytes: Option<usize>,
    pub delay_ms: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawQueue {
    pub max_bytes: Option<usize>,
    pub max_records: Option<usize>,
    /// Keep queued batches on disk (crash- and restart-safe) instead of in memory.
    pub persistent: Option<RawPersistentQueue>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawPersistentQueue {
    /// A directory of its own (an emptyDir or a PVC in Kubernetes).
    pub dir: Option<PathBuf>,
    /// Bytes on disk at most (segment files).
    pub max_bytes: Option<u64>,
    /// `always` (default: every batch is fsynced before it counts as queued) or `never` (the OS decides: survives
    /// a crash of Flowgate, not of the node).
    pub fsync: Option<Fsync>,
    /// `block` (default: backpressure to the stream) or `drop-oldest` (counted as dropped, reason `queue_full`).
    pub when_full: Option<WhenFull>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Fsync {
    #[default]
    Always,
    Never,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// A full queue stops the pipeline and, behind it, the Goldmane stream (HTTP/2 flow control slows Goldmane
    /// down): nothing is lost, until Goldmane's own 60 s stall rule drops the rest of a bucket.
    #[default]
    Block,
    /// A full queue drops its oldest batch to take the new one, counted as `flows_dropped{reason="queue_full"}`:
    /// the stream never waits, old data goes first. The persistent queue only: the in-memory one always blocks.
    DropOldest,
}

/// Default on-disk queue bound.
pub const DEFAULT_PERSISTENT_MAX_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistentQueueConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub fsync: Fsync,
    pub when_full: WhenFull,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// `addr:port` for `/metrics`, `/healthz`, `/readyz`.
    pub listen: Option<String>,
}

/// The resolved configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the stream cursor lives without the persistent queue (with it, the cursor sits in its directory).
    pub state_dir: Option<PathBuf>,
    pub goldmane: GoldmaneConfig,
    pub otlp: OtlpConfig,
    pub batch: BatchConfig,
    pub queue: QueueConfig,
    pub admin_listen: SocketAddr,
    pub transforms: TransformsConfig,
    pub flow_metrics: Option<FlowMetricsConfig>,
    pub aggregation: Option<AggregationConfig>,
    pub shutdown_grace: Duration,
    /// Problems that do not stop the gateway but deserve a line at startup and in `flowgate check`.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct GoldmaneConfig {
    /// `https://host:port` for the gRPC channel.
    pub uri: http::Uri,
    pub host: String,
    pub port: u16,
    pub server_name: String,
    pub tls: TlsFiles,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub keepalive_interval: Option<Duration>,
    pub start_time_gte: i64,
    pub filter: Option<FilterConfig>,
    /// Off when `None`.
    pub reconcile: Option<ReconcileConfig>,
}

/// PEM files for a TLS client. Read at every connect, so rotated files are picked up on reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
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

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_records: usize,
    pub max_bytes: usize,
    pub delay: Duration,
}

/// Default rescan period of the transforms directory.
pub const DEFAULT_RESYNC_INTERVAL_MS: u64 = 30_000;
/// Default quiet time after a change before reloading.
pub const DEFAULT_DEBOUNCE_MS: u64 = 500;

#[derive(Debug, Clone)]
pub struct TransformsConfig {
    pub dir: Option<PathBuf>,
    pub chain: Option<Vec<RawEntry>>,
    pub workers: usize,
    pub provenance: bool,
    pub dead_letter_path: Option<PathBuf>,
    pub resync_interval: Duration,
    pub debounce: Duration,
    /// The config file, re-read when it changes (its `transforms` section applies live).
    pub config_file: Option<PathBuf>,
}

/// Default label sets per flow-metric group.
pub const DEFAULT_FLOW_METRICS_MAX_SERIES: usize = 2_000;
/// Default quiet time before a bucket's merged records are sent.
pub const DEFAULT_AGGREGATION_LINGER_MS: u64 = 2_000;
/// Default bound on merged records held.
pub const DEFAULT_AGGREGATION_MAX_GROUPS: usize = 500_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMetricsConfig {
    pub max_series: usize,
    pub namespaces: Option<std::collections::HashSet<String>>,
    pub otlp: Option<FlowMetricsOtlpConfig>,
}

/// Default push period of the OTLP flow metrics (the OpenTelemetry SDK's `OTEL_METRIC_EXPORT_INTERVAL`).
pub const DEFAULT_FLOW_METRICS_OTLP_INTERVAL_MS: u64 = 60_000;
/// Shortest push period accepted.
pub const MIN_FLOW_METRICS_OTLP_INTERVAL_MS: u64 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMetricsOtlpConfig {
    pub endpoint: url::Url,
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregationConfig {
    pub level: AggregationLevel,
    pub linger: Duration,
    pub max_groups: usize,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub max_bytes: usize,
    pub max_records: usize,
    pub persistent: Option<PersistentQueueConfig>,
}

/// One configuration problem, naming the field or variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

/// Every problem found, reported together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  - {}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

/// The resolved configuration as `flowgate check` reports it; secrets (header values) redacted.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.goldmane;
        writeln!(f, "goldmane:  {}:{} (TLS server name {})", g.host, g.port, g.server_name)?;
        writeln!(f, "  ca bundle        {}", display(&g.tls.ca_cert))?;
        writeln!(f, "  client cert/key  {} / {}", display(&g.tls.client_cert), display(&g.tls.client_key))?;
        writeln!(
            f,
            "  reconnect        {} ms initial, {} ms max; start_time_gte {}; filter {}",
            g.reconnect_initial.as_millis(),
            g.reconnect_max.as_millis(),
            g.start_time_gte,
            if g.filter.is_some() { "set" } else { "none" }
        )?;
        let o = &self.otlp;
        writeln!(
            f,
            "otlp:      POST {} ({:?}, timeout {} ms, {} in flight)",
            o.endpoint,
            o.compression,
            o.timeout.as_millis(),
            o.max_in_flight
        )?;
        for (k, _) in &o.headers {
            writeln!(f, "  header           {k}: <redacted>")?;
        }
        writeln!(
            f,
            "  dead letters     {}",
            o.dead_letter_path.as_ref().map_or("off".to_string(), |p| p.display().to_string())
        )?;
        writeln!(
            f,
            "batch:     {} records / {} bytes / {} ms; queue {}",
            self.batch.max_records,
            self.batch.max_bytes,
            self.batch.delay.as_millis(),
            match &self.queue.persistent {
                Some(p) => format!(
                    "on disk in {} ({} bytes, fsync {:?}, when full {:?})",
                    p.dir.display(),
                    p.max_bytes,
                    p.fsync,
                    p.when_full
                ),
                None => format!("in memory, {} records / {} bytes", self.queue.max_records, self.queue.max_bytes),
            }
        )?;
        writeln!(
            f,
            "state:     {}",
            match (&self.queue.persistent, &self.state_dir) {
                (Some(p), _) => format!("stream cursor beside the persistent queue in {}", p.dir.display()),
                (None, Some(d)) =>
                    format!("stream cursor in {} (moves with the endpoint's acknowledgements)", d.display()),
                (None, None) => "none: a restart starts the stream from now".to_string(),
            }
        )?;
        match &g.reconcile {
            Some(r) => {
                writeln!(
                    f,
                    "  reconcile        on: List each bucket {} s after it was streamed, {} s window, growth {:?}, pages of {}",
                    r.passes.iter().map(|d| d.as_secs().to_string()).collect::<Vec<_>>().join("/"),
                    r.window.as_secs(),
                    r.growth,
                    r.page_size
                )?;
            }
            None => {
                writeln!(
                    f,
                    "  reconcile        off: flows reaching Goldmane after their bucket was streamed are not exported"
                )?;
            }
        }
        writeln!(f, "admin:     http://{}/metrics /healthz /readyz", self.admin_listen)?;
        match &self.flow_metrics {
            Some(m) => {
                writeln!(
                    f,
                    "flow metrics: on, {} label sets per group{}; OTLP push {}",
                    m.max_series,
                    m.namespaces.as_ref().map_or(String::new(), |n| format!(", {} namespaces allowed", n.len())),
                    m.otlp.as_ref().map_or("off".to_string(), |o| format!(
                        "every {} ms to {}",
                        o.interval.as_millis(),
                        o.endpoint
                    ))
                )?;
            }
            None => {
                writeln!(f, "flow metrics: off")?;
            }
        }
        match &self.aggregation {
            Some(a) => {
                writeln!(
                    f,
                    "aggregation: level {:?}, linger {} ms, at most {} merged records held",
                    a.level,
                    a.linger.as_millis(),
                    a.max_groups
                )?;
            }
            None => {
                writeln!(f, "aggregation: off")?;
            }
        }
        Ok(())
    }
}

fn display(p: &Option<PathBuf>) -> String {
    p.as_ref().map_or("-".to_string(), |p| p.display().to_string())
}

/// Collects problems while resolving.
#[derive(Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { field: field.into(), message: message.into() });
    }
}

impl RawConfig {
    /// Parses a YAML file; unknown fields are errors, with the line and column.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        serde_norway::from_str(text).map_err(|e| ConfigError {
            problems: vec![Problem { field: path.display().to_string(), message: e.to_string() }],
        })
    }
}

/// The transforms section alone (for `flowgate test`, which needs no Goldmane or OTLP settings): from `file`,
/// with `dir` and `components` (each a `.wasm`, its `<stem>.yaml` beside it read if present) taking precedence.
pub fn transforms_only(
    file: Option<&Path>,
    dir: Option<PathBuf>,
    components: &[PathBuf],
) -> Result<TransformsConfig, ConfigError> {
    let mut raw = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                problems: vec![Problem { field: p.display().to_string(), message: format!("cannot read: {e}") }],
            })?;
            RawConfig::from_yaml(&text, p)?.transforms
        }
        None => RawTransforms::default(),
    };
    if dir.is_some() {
        raw.dir = dir;
    }
    if !components.is_empty() {
        let mut chain = Vec::new();
        for path in components {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".gz").trim_end_matches(".wasm").to_string());
            let yaml = path.with_file_name(format!("{}.yaml", name.clone().unwrap_or_default()));
            let mut entry = match std::fs::read_to_string(&yaml) {
                Ok(text) => serde_norway::from_str::<RawEntry>(&text).map_err(|e| ConfigError {
                    problems: vec![Problem { field: yaml.display().to_string(), message: e.to_string() }],
                })?,
                Err(_) => RawEntry::default(),
            };
            entry.name = name;
            entry.path = Some(path.clone());
            chain.push(entry);
        }
        raw.chain = Some(chain);
    }
    Ok(TransformsConfig {
        dir: raw.dir,
        chain: raw.chain,
        workers: 1,
        provenance: raw.provenance.unwrap_or(true),
        dead_letter_path: raw.dead_letter_path,
        resync_interval: Duration::from_millis(DEFAULT_RESYNC_INTERVAL_MS),
        debounce: Duration::from_millis(DEFAULT_DEBOUNCE_MS),
        config_file: None,
    })
}

/// Loads the optional file, overlays the environment and resolves.
pub fn load(path: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
    let raw = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                problems: vec![Problem {
                    field: p.display().to_string(),
                    message: format!("cannot read the config file: {e}"),
                }],
            })?;
            RawConfig::from_yaml(&text, p)?
        }
        None => RawConfig::default(),
    };
    let mut cfg = resolve_with_env(raw, env)?;
    cfg.transforms.config_file = path.map(Path::to_path_buf);
    Ok(cfg)
}

fn resolve_reconcile(r: &RawReconcile, p: &mut Problems) -> Option<ReconcileConfig> {
    if r.enabled == Some(false) {
        return None;
    }
    let window = r.window_secs.unwrap_or(DEFAULT_RECONCILE_WINDOW_SECS);
    let passes = r.passes_secs.clone().unwrap_or_else(|| DEFAULT_RECONCILE_PASSES_SECS.to_vec());
    if !(30..=3_300).contains(&window) {
        p.push("goldmane.reconcile.window_secs", format!("{window} must be between 30 and 3300 (Goldmane keeps ~1 h)"));
    }
    if passes.is_empty() {
        p.push("goldmane.reconcile.passes_secs", "needs at least one pass (or set enabled: false)");
    }
    if let Some(&last) = passes.iter().max()
        && last + 30 > window
    {
        p.push(
            "goldmane.reconcile.passes_secs",
            format!("a pass {last} s after a bucket was streamed falls outside the {window} s window"),
        );
    }
    if passes.windows(2).any(|w| w[0] >= w[1]) {
        p.push("goldmane.reconcile.passes_secs", "must be increasing");
    }
    let page_size = r.page_size.unwrap_or(DEFAULT_RECONCILE_PAGE_SIZE);
    if page_size == 0 {
        p.push("goldmane.reconcile.page_size", "must be at least 1");
    }
    Some(ReconcileConfig {
        window: Duration::from_secs(window),
        passes: passes.into_iter().map(Duration::from_secs).collect(),
        growth: r.growth.unwrap_or_default(),
        page_size,
    })
}

/// Overlays `env` onto `raw` and resolves.
pub fn resolve_with_env(mut raw: RawConfig, env: &Env) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();
    let mut warnings = Vec::new();
    apply_env(&mut raw, env, &mut problems, &mut warnings);
    raw.resolve_into(problems, warnings)
}

impl RawConfig {
    /// Applies defaults and validates; every problem at once.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        self.resolve_into(Problems::default(), Vec::new())
    }

    fn resolve_into(self, mut p: Problems, mut warnings: Vec<String>) -> Result<Config, ConfigError> {
        let g = self.goldmane;
        let mut missing = Vec::new();
        for (value, name) in [
            (g.host.is_none(), "GOLDMANE_HOST (goldmane.host)"),
            (g.ca_cert_path.is_none(), "CA_CERT_PATH (goldmane.ca_cert_path)"),
            (g.client_key_path.is_none(), "PRIVATE_KEY_PATH (goldmane.client_key_path)"),
            (g.client_cert_path.is_none(), "PUBLIC_CERT_PATH (goldmane.client_cert_path)"),
        ] {
            if value {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            p.push("required", format!("missing required settings: {}", missing.join(", ")));
        }

        let (host, port) = match g.host.as_deref().map(split_host_port) {
            Some(Ok(hp)) => hp,
            Some(Err(msg)) => {
                p.push("GOLDMANE_HOST", msg);
                (String::new(), 0)
            }
            None => (String::new(), 0),
        };
        let uri = format!("https://{}:{port}", bracket_ipv6(&host))
            .parse::<http::Uri>()
            .unwrap_or_else(|_| http::Uri::from_static("https://invalid:1"));
        let server_name = g.server_name.unwrap_or_else(|| host.clone());
        if let Err(e) = rustls_pki_types::ServerName::try_from(server_name.clone())
            && !host.is_empty()
        {
            p.push("goldmane.server_name", format!("{server_name:?} is not a valid TLS server name: {e}"));
        }
        let reconnect_initial = g.reconnect_initial_ms.unwrap_or(DEFAULT_RECONNECT_INITIAL_MS);
        let reconnect_max = g.reconnect_max_ms.unwrap_or(DEFAULT_RECONNECT_MAX_MS).max(reconnect_initial);
        let keepalive_interval = match g.keepalive_interval_ms {
            Some(ms) if ms < MIN_KEEPALIVE_INTERVAL_MS => {
                p.push(
                    "goldmane.keepalive_interval_ms",
                    format!("{ms} is below {MIN_KEEPALIVE_INTERVAL_MS}: Goldmane answers such pings with GOAWAY too_many_pings"),
                );
                None
            }
            other => other.map(Duration::from_millis),
        };
        let start_time_gte = g.start_time_gte.unwrap_or(0);
        if start_time_gte < -3585 {
            p.push(
                "goldmane.start_time_gte",
                format!("{start_time_gte} reaches past Goldmane's ~1 h history; use -3585 at most"),
            );
        }
        if let Some(f) = &g.filter {
            validate_filter(f, &mut p);
        }
        let reconcile = resolve_reconcile(&g.reconcile, &mut p);
        let goldmane = GoldmaneConfig {
            uri,
            host,
            port,
            server_name,
            tls: TlsFiles { ca_cert: g.ca_cert_path, client_cert: g.client_cert_path, client_key: g.client_key_path },
            reconnect_initial: Duration::from_millis(reconnect_initial),
            reconnect_max: Duration::from_millis(reconnect_max),
            keepalive_interval,
            start_time_gte,
            filter: g.filter,
            reconcile,
        };

        let o = self.otlp;
        let endpoint_text = o.endpoint.unwrap_or_else(|| format!("{DEFAULT_OTLP_ENDPOINT}/v1/logs"));
        let endpoint = http_url(&endpoint_text, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &mut p)
            .unwrap_or_else(|| url::Url::parse("http://invalid/").expect("static URL"));
        let compression = match o.compression.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") | Some("") => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some(other) => {
                p.push("OTEL_EXPORTER_OTLP_COMPRESSION", format!("{other:?} is not none, gzip or zstd"));
                Compression::None
            }
        };
        let tls = TlsFiles { ca_cert: o.ca_cert_path, client_cert: o.client_cert_path, client_key: o.client_key_path };
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            p.push(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                "a client certificate and a client key go together: set both or neither",
            );
        }
        if endpoint.scheme() == "http" && (tls.ca_cert.is_some() || tls.client_cert.is_some()) {
            warnings.push(format!("OTLP endpoint {endpoint} is plain http: the OTLP TLS files are not used"));
        }
        let max_in_flight = o.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        if max_in_flight == 0 {
            p.push("otlp.max_in_flight", "must be at least 1");
        }
        for k in o.headers.keys() {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                p.push("OTEL_EXPORTER_OTLP_HEADERS", format!("{k:?} is not a valid header name"));
            }
        }
        let retry_initial = o.retry_initial_ms.unwrap_or(DEFAULT_RETRY_INITIAL_MS).max(1);
        let otlp = OtlpConfig {
            endpoint,
            headers: o.headers.into_iter().collect(),
            compression,
            timeout: Duration::from_millis(o.timeout_ms.unwrap_or(DEFAULT_EXPORT_TIMEOUT_MS).max(1)),
            tls,
            max_in_flight: max_in_flight.max(1),
            retry_initial: Duration::from_millis(retry_initial),
            retry_max: Duration::from_millis(o.retry_max_ms.unwrap_or(DEFAULT_RETRY_MAX_MS).max(retry_initial)),
            dead_letter_path: o.dead_letter_path,
            resource_attributes: o.resource_attributes.into_iter().collect(),
        };

        let batch = BatchConfig {
            max_records: self.batch.max_records.unwrap_or(DEFAULT_BATCH_MAX_RECORDS),
            max_bytes: self.batch.max_bytes.unwrap_or(DEFAULT_BATCH_MAX_BYTES),
            delay: Duration::from_millis(self.batch.delay_ms.unwrap_or(DEFAULT_BATCH_DELAY_MS)),
        };
        if batch.max_records == 0 {
            p.push("batch.max_records (OTEL_BLRP_MAX_EXPORT_BATCH_SIZE)", "must be at least 1");
        }
        if batch.max_bytes < 1024 {
            p.push("batch.max_bytes", "must be at least 1024");
        }
        let persistent = match self.queue.persistent {
            None => None,
            Some(RawPersistentQueue { dir: None, .. }) => {
                p.push("queue.persistent.dir", "required");
                None
            }
            Some(RawPersistentQueue { dir: Some(dir), max_bytes, fsync, when_full }) => {
                let max_bytes = max_bytes.unwrap_or(DEFAULT_PERSISTENT_MAX_BYTES);
                if max_bytes < 16 << 20 {
                    p.push("queue.persistent.max_bytes", "must be at least 16 MiB (16777216)");
                }
                Some(PersistentQueueConfig {
                    dir,
                    max_bytes,
                    fsync: fsync.unwrap_or_default(),
                    when_full: when_full.unwrap_or_default(),
                })
            }
        };
        let queue = QueueConfig {
            max_bytes: self.queue.max_bytes.unwrap_or(DEFAULT_QUEUE_MAX_BYTES),
            max_records: self.queue.max_records.unwrap_or(DEFAULT_QUEUE_MAX_RECORDS),
            persistent,
        };
        if queue.max_bytes < batch.max_bytes {
            p.push("queue.max_bytes", format!("must hold at least one batch ({} bytes)", batch.max_bytes));
        }
        if queue.max_records < batch.max_records {
            p.push(
                "queue.max_records (OTEL_BLRP_MAX_QUEUE_SIZE)",
                format!("must hold at least one batch ({} records)", batch.max_records),
            );
        } else if queue.max_records < BURST_RECORDS {
            warnings.push(format!(
                "queue.max_records is {}: a Goldmane burst of {BURST_RECORDS} flows will not fit while the endpoint is slow, and Flowgate will slow the stream down (Goldmane drops a bucket's rest after a 60 s stall)",
                queue.max_records
            ));
        }

        let admin_text = self.admin.listen.unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
        let admin_listen = admin_text.parse().unwrap_or_else(|e| {
            p.push("admin.listen", format!("{admin_text:?} is not addr:port: {e}"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        });

        let t = self.transforms;
        if let Some(chain) = &t.chain {
            let mut names = std::collections::HashSet::new();
            for (i, e) in chain.iter().enumerate() {
                match &e.name {
                    Some(n) if !names.insert(n.clone()) => {
                        p.push(format!("transforms.chain[{i}].name"), format!("{n:?} is used twice"))
                    }
                    Some(n) if n.is_empty() || n.contains(|c: char| c.is_whitespace() || c == ',') => {
                        p.push(format!("transforms.chain[{i}].name"), format!("{n:?}: use letters, digits, - and _"))
                    }
                    Some(_) => {}
                    None => p.push(format!("transforms.chain[{i}].name"), "required"),
                }
                if e.path.is_none() {
                    p.push(format!("transforms.chain[{i}].path"), "required");
                }
                if e.failure_policy == Some(FailurePolicy::DeadLetter) && t.dead_letter_path.is_none() {
                    p.push(
                        format!("transforms.chain[{i}].failure_policy"),
                        "dead-letter needs transforms.dead_letter_path",
                    );
                }
            }
        }
        let transforms = TransformsConfig {
            dir: t.dir,
            chain: t.chain,
            workers: t.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1),
            provenance: t.provenance.unwrap_or(true),
            dead_letter_path: t.dead_letter_path,
            resync_interval: Duration::from_millis(t.resync_interval_ms.unwrap_or(DEFAULT_RESYNC_INTERVAL_MS).max(100)),
            debounce: Duration::from_millis(t.debounce_ms.unwrap_or(DEFAULT_DEBOUNCE_MS)),
            config_file: None,
        };

        let fm = self.flow_metrics;
        let fm_otlp = flow_metrics_otlp(&fm, &otlp.endpoint, &mut p);
        let flow_metrics = fm.enabled.unwrap_or(false).then(|| FlowMetricsConfig {
            max_series: fm.max_series.unwrap_or(DEFAULT_FLOW_METRICS_MAX_SERIES),
            namespaces: fm.namespaces.clone().map(|n| n.into_iter().collect()),
            otlp: fm_otlp,
        });
        if fm.max_series == Some(0) {
            p.push("flow_metrics.max_series", "must be at least 1");
        }
        let a = self.aggregation;
        let aggregation = a.enabled.unwrap_or(false).then(|| AggregationConfig {
            level: a.level.unwrap_or_default(),
            linger: Duration::from_millis(a.linger_ms.unwrap_or(DEFAULT_AGGREGATION_LINGER_MS).max(10)),
            max_groups: a.max_groups.unwrap_or(DEFAULT_AGGREGATION_MAX_GROUPS),
        });
        if a.max_groups == Some(0) {
            p.push("aggregation.max_groups", "must be at least 1");
        }

        if let Some(dir) = &self.state_dir
            && dir.as_os_str().is_empty()
        {
            p.push("state_dir (FLOWGATE_STATE_DIR)", "is empty");
        }
        if !p.0.is_empty() {
            return Err(ConfigError { problems: p.0 });
        }
        Ok(Config {
            state_dir: self.state_dir,
            goldmane,
            otlp,
            batch,
            queue,
            admin_listen,
            transforms,
            flow_metrics,
            aggregation,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS)),
            warnings,
        })
    }
}

/// `text` as an http or https URL, or a problem reported against `field`.
fn http_url(text: &str, field: &str, p: &mut Problems) -> Option<url::Url> {
    match url::Url::parse(text) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
        Ok(u) => {
            p.push(field, format!("scheme {:?} is not http or https", u.scheme()));
            None
        }
        Err(e) => {
            p.push(field, format!("{text:?} is not a URL: {e}"));
            None
        }
    }
}

/// The OTLP push of the flow metrics, when asked for: its URL (explicit, or the logs URL with `/v1/logs` made
/// `/v1/metrics`) and period.
fn flow_metrics_otlp(fm: &RawFlowMetrics, logs: &url::Url, p: &mut Problems) -> Option<FlowMetricsOtlpConfig> {
    let o = &fm.otlp;
    if !o.enabled.unwrap_or(false) {
        return None;
    }
    if !fm.enabled.unwrap_or(false) {
        p.push("flow_metrics.otlp.enabled", "needs flow_metrics.enabled: true (nothing is counted otherwise)");
        return None;
    }
    let interval_ms = o.interval_ms.unwrap_or(DEFAULT_FLOW_METRICS_OTLP_INTERVAL_MS);
    if interval_ms < MIN_FLOW_METRICS_OTLP_INTERVAL_MS {
        p.push("flow_metrics.otlp.interval_ms", format!("must be at least {MIN_FLOW_METRICS_OTLP_INTERVAL_MS}"));
    }
    let endpoint = match &o.endpoint {
        Some(text) => http_url(text, "flow_metrics.otlp.endpoint", p),
        None => match logs.path().strip_suffix("/v1/logs") {
            Some(base) => {
                let mut u = logs.clone();
                u.set_path(&format!("{base}/v1/metrics"));
                Some(u)
            }
            None => {
                p.push(
                    "flow_metrics.otlp.endpoint",
                    format!(
                        "the logs endpoint {logs} does not end in /v1/logs, so the metrics URL cannot be derived \
                         from it: set it (or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)"
                    ),
                );
                None
            }
        },
    }?;
    Some(FlowMetricsOtlpConfig { endpoint, interval: Duration::from_millis(interval_ms) })
}

fn validate_filter(f: &FilterConfig, p: &mut Problems) {
    for a in &f.actions {
        if !matches!(a.as_str(), "Allow" | "Deny" | "Pass") {
            p.push("goldmane.filter.actions", format!("{a:?} is not Allow, Deny or Pass"));
        }
    }
    if let Some(r) = &f.reporter
        && !matches!(r.as_str(), "Src" | "Dst")
    {
        p.push("goldmane.filter.reporter", format!("{r:?} is not Src or Dst"));
    }
}

/// Splits `host:port` (`[v6]:port` too). The port is required, as the old exporter dials it as given.
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| format!("{s:?}: unclosed '[' in IPv6 address"))?;
        let port = after.strip_prefix(':').ok_or_else(|| format!("{s:?} has no :port"))?;
        (h, port)
    } else {
        s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not host:port (for example goldmane:7443)"))?
    };
    if host.is_empty() {
        return Err(format!("{s:?} has an empty host"));
    }
    let port = port.parse::<u16>().map_err(|_| format!("{s:?}: port {port:?} is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(format!("{s:?}: port 0 cannot be dialled"));
    }
    Ok((host.to_string(), port))
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_string() }
}

/// What happens to a flow a transform could not process (a guest `error` outcome, or a trap that bisection
/// pinned on this flow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Drop it and count it: a failing redaction never lets an unredacted flow out. The default.
    #[default]
    FailClosed,
    /// Pass it on unchanged by this transform, and count it.
    FailOpen,
    /// Set the original flow aside (dead-letter file) with the error and the component digest; drop it.
    DeadLetter,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailClosed => "fail-closed",
            FailurePolicy::FailOpen => "fail-open",
            FailurePolicy::DeadLetter => "dead-letter",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("goldmane:7443").unwrap(), ("goldmane".into(), 7443));
        assert_eq!(split_host_port("[::1]:7443").unwrap(), ("::1".into(), 7443));
        assert!(split_host_port("goldmane").unwrap_err().contains("host:port"));
        assert!(split_host_port("goldmane:x").unwrap_err().contains("port"));
        assert!(split_host_port(":7443").unwrap_err().contains("empty host"));
    }
}
