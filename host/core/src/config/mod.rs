//! Typed, strict configuration: an optional YAML file, overlaid by the old exporter's and OpenTelemetry's
//! environment variables, resolved into one [`Config`] with every problem reported at once.
//!
//! Precedence: built-in defaults < YAML file < environment. Variable names are those of the exporter Flowgate
//! replaces (`GOLDMANE_HOST`, `CA_CERT_PATH`, …) and of the OTLP exporter spec (`OTEL_EXPORTER_OTLP_*`,
//! `OTEL_BLRP_*`, `OTEL_RESOURCE_ATTRIBUTES`), each a constant in [`env`](mod@env).
//!
//! One file per section of the YAML file, each with its raw (file) struct, its resolved struct, its defaults and
//! its `resolve`: [`goldmane`](RawGoldmane) (with the filter and reconciliation), [`otlp`](RawOtlp),
//! [`batch`](RawBatch), [`queue`](RawQueue), [`admin`](RawAdmin), [`transforms`](RawTransforms), and
//! [`flow_metrics`](RawFlowMetrics) with [`aggregation`](RawAggregation). This file holds what spans them: the
//! top-level structs, the checks between sections, and `Problems`, which labels each problem with where its
//! value came from: the variable that set it, or else its YAML path.

mod admin;
mod batch;
mod dead_letter;
pub mod env;
mod flow_metrics;
mod goldmane;
mod otlp;
mod queue;
mod telemetry;
mod transforms;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use admin::{DEFAULT_ADMIN_LISTEN, DEFAULT_TAP_MAX_PER_SECOND, RawAdmin, RawTap, TapConfig};
pub use batch::{BatchConfig, DEFAULT_BATCH_DELAY_MS, DEFAULT_BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_RECORDS, RawBatch};
pub use dead_letter::{DEAD_LETTER_BATCH_RECORDS, DEFAULT_DEAD_LETTER_MAX_RECORDS, DeadLetterConfig, RawDeadLetter};
pub use env::Env;
use env::{Origins, apply_env};
pub use flow_metrics::{
    AggregationConfig, AggregationLevel, DEFAULT_AGGREGATION_LINGER_MS, DEFAULT_AGGREGATION_MAX_GROUPS,
    DEFAULT_FLOW_METRICS_MAX_SERIES, DEFAULT_FLOW_METRICS_OTLP_INTERVAL_MS, FlowMetricsConfig, FlowMetricsOtlpConfig,
    MIN_FLOW_METRICS_OTLP_INTERVAL_MS, RawAggregation, RawFlowMetrics, RawFlowMetricsOtlp,
};
pub use goldmane::{
    DEFAULT_RECONCILE_PAGE_SIZE, DEFAULT_RECONCILE_PASSES_SECS, DEFAULT_RECONCILE_WINDOW_SECS,
    DEFAULT_RECONNECT_INITIAL_MS, DEFAULT_RECONNECT_MAX_MS, FilterConfig, GoldmaneConfig, Growth,
    MIN_KEEPALIVE_INTERVAL_MS, MatchTypeConfig, RawGoldmane, RawReconcile, ReconcileConfig, StringMatchConfig,
};
pub use otlp::{
    Compression, DEFAULT_EXPORT_TIMEOUT_MS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_OTLP_ENDPOINT, DEFAULT_RETRY_INITIAL_MS,
    DEFAULT_RETRY_MAX_MS, MAX_RETRY_AFTER_MS, OtlpConfig, RawOtlp, SERVICE_NAME, otlp_only,
};
pub use queue::{
    BURST_RECORDS, DEFAULT_PERSISTENT_MAX_BYTES, DEFAULT_QUEUE_MAX_BYTES, DEFAULT_QUEUE_MAX_RECORDS, Fsync,
    PersistentQueueConfig, QueueConfig, RawPersistentQueue, RawQueue, WhenFull,
};
pub use telemetry::{
    DEFAULT_TELEMETRY_INTERVAL_MS, DEFAULT_TRACES_MAX_QUEUE, DEFAULT_TRACES_SAMPLE_RATIO, RawTelemetry,
    RawTelemetryMetrics, RawTelemetryTraces, TelemetryConfig,
};
pub use transforms::{
    DEFAULT_DEBOUNCE_MS, DEFAULT_RESYNC_INTERVAL_MS, DEFAULT_ROLLBACK_FACTOR, DEFAULT_ROLLBACK_MAX_FAILURE_RATIO,
    DEFAULT_ROLLBACK_MIN_FLOWS, DEFAULT_ROLLBACK_WINDOW_MS, FailurePolicy, ROLLBACK_FACTOR_FLOOR, RawEntry,
    RawRollback, RawTransforms, RollbackConfig, TransformsConfig, transforms_only,
};

/// Grace period to flush on SIGTERM (Kubernetes' default termination grace is 30 s).
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 25_000;

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
    /// A second OTLP logs endpoint for dead letters (instead of the files).
    pub dead_letter: RawDeadLetter,
    /// Flowgate's own metrics and traces over OTLP.
    pub telemetry: RawTelemetry,
    pub shutdown_grace_ms: Option<u64>,
    /// A writable directory for the stream cursor (`FLOWGATE_STATE_DIR`): with it, a restart resumes the stream
    /// where the endpoint's acknowledgements end, even without the persistent queue.
    pub state_dir: Option<PathBuf>,
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
    /// The live tap through the admin listener (off by default).
    pub tap: TapConfig,
    pub transforms: TransformsConfig,
    pub flow_metrics: Option<FlowMetricsConfig>,
    pub aggregation: Option<AggregationConfig>,
    /// Off when `None`: dead letters go to the files, if set.
    pub dead_letter: Option<DeadLetterConfig>,
    /// Off when `None`.
    pub telemetry: Option<TelemetryConfig>,
    pub shutdown_grace: Duration,
    /// Problems that do not stop the gateway but deserve a line at startup and in `flowgate check`.
    pub warnings: Vec<String>,
}

/// PEM files for a TLS client (Goldmane's and the OTLP endpoint's). Read at every connect, so rotated files are
/// picked up on reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// One configuration problem, naming the field or variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The environment variable that set the value, else its YAML path (or the file, for a file that does not
    /// parse).
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
            match (&self.dead_letter, &o.dead_letter_path) {
                (Some(d), _) => format!(
                    "OTLP logs to {} (at most {} held, timeout {} ms)",
                    d.endpoint,
                    d.max_records,
                    d.timeout.as_millis()
                ),
                (None, Some(p)) => p.display().to_string(),
                (None, None) => "off".to_string(),
            }
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
        if self.tap.enabled {
            let before = if self.tap.before_redaction { "allowed" } else { "refused" };
            writeln!(
                f,
                "  tap              /tap /capture, {} records/s, before a redaction {before}",
                self.tap.max_per_second
            )?;
        }
        let t = &self.transforms;
        writeln!(
            f,
            "transforms: {} workers, provenance {}, dead letters {}; rollback {}",
            t.workers,
            if t.provenance { "on" } else { "off" },
            match (&self.dead_letter, &t.dead_letter_path) {
                (Some(_), _) => "to the dead-letter endpoint".to_string(),
                (None, Some(p)) => p.display().to_string(),
                (None, None) => "off".to_string(),
            },
            match &t.rollback {
                Some(r) => format!(
                    "after {} flows, over {:.0}% failing{} within {} ms of a swap",
                    r.min_flows,
                    r.max_failure_ratio * 100.0,
                    r.factor.map_or(String::new(), |f| format!(" or {f}x the old chain's share")),
                    r.window.as_millis()
                ),
                None => "off".to_string(),
            }
        )?;
        writeln!(f, "shutdown:  {} ms grace", self.shutdown_grace.as_millis())?;
        match &self.telemetry {
            Some(t) => writeln!(
                f,
                "telemetry: metrics {} ; traces {}",
                t.metrics_endpoint
                    .as_ref()
                    .map_or("off".to_string(), |u| format!("every {} ms to {u}", t.interval.as_millis())),
                t.traces_endpoint.as_ref().map_or("off".to_string(), |u| format!(
                    "{}% of batches to {u} (at most {} spans queued)",
                    t.sample_ratio * 100.0,
                    t.max_queue
                )),
            )?,
            None => writeln!(f, "telemetry: off (OTEL_METRICS_EXPORTER / OTEL_TRACES_EXPORTER=otlp turn it on)")?,
        }
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

/// Collects problems while resolving, labelled by where each value came from.
#[derive(Default)]
pub(crate) struct Problems {
    found: Vec<Problem>,
    /// Which settings the environment set (none when resolving a file alone).
    origins: Origins,
}

impl Problems {
    /// A problem with the setting at `yaml_path`, labelled with the variable that set its value if one did, else
    /// with the path.
    pub(crate) fn at(&mut self, yaml_path: &str, message: impl Into<String>) {
        let field = self.label(yaml_path).to_string();
        self.named(field, message);
    }

    /// A problem labelled as given: a variable whose text never became a setting (not a number, not a boolean),
    /// or one that spans settings (`required`).
    pub(crate) fn named(&mut self, label: impl Into<String>, message: impl Into<String>) {
        self.found.push(Problem { field: label.into(), message: message.into() });
    }

    /// How the setting at `yaml_path` is named to the user (in problems and warnings alike).
    pub(crate) fn label<'a>(&'a self, yaml_path: &'a str) -> &'a str {
        self.origins.label(yaml_path)
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

/// Overlays `env` onto `raw` and resolves; a problem with a value the environment set names its variable.
pub fn resolve_with_env(mut raw: RawConfig, env: &Env) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();
    let mut warnings = Vec::new();
    problems.origins = apply_env(&mut raw, env, &mut problems, &mut warnings);
    raw.resolve_into(problems, warnings)
}

impl RawConfig {
    /// Applies defaults and validates; every problem at once, each named by its YAML path.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        self.resolve_into(Problems::default(), Vec::new())
    }

    /// Each section resolves itself; what spans sections is checked here.
    fn resolve_into(self, mut p: Problems, mut warnings: Vec<String>) -> Result<Config, ConfigError> {
        let goldmane = self.goldmane.resolve(&mut p);
        let otlp = self.otlp.resolve(&mut p, &mut warnings);
        let batch = self.batch.resolve(&mut p);
        let queue = self.queue.resolve(&mut p, &mut warnings);
        if queue.max_bytes < batch.max_bytes {
            p.at("queue.max_bytes", format!("must hold at least one batch ({} bytes)", batch.max_bytes));
        }
        if queue.max_records < batch.max_records {
            p.at("queue.max_records", format!("must hold at least one batch ({} records)", batch.max_records));
        }
        let (admin_listen, tap) = self.admin.resolve(&mut p);
        let transforms = self.transforms.resolve(&mut p);
        let flow_metrics = self.flow_metrics.resolve(&otlp.endpoint, &mut p);
        let aggregation = self.aggregation.resolve(&mut p);
        // A bad endpoint is its own problem, not also the policy's.
        dead_letter_targets(self.dead_letter.endpoint.is_some(), &transforms, &otlp, &mut p);
        let dead_letter = self.dead_letter.resolve(otlp.timeout, &mut p);
        let telemetry = self.telemetry.resolve(&otlp.endpoint, &mut p);
        if let Some(dir) = &self.state_dir
            && dir.as_os_str().is_empty()
        {
            p.at("state_dir", "is empty");
        }
        if !p.found.is_empty() {
            return Err(ConfigError { problems: p.found });
        }
        Ok(Config {
            state_dir: self.state_dir,
            goldmane,
            otlp,
            batch,
            queue,
            admin_listen,
            tap,
            transforms,
            flow_metrics,
            aggregation,
            dead_letter,
            telemetry,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS)),
            warnings,
        })
    }
}

/// Dead letters go to the stream or to the files, never both; the `dead-letter` policy needs one of them.
fn dead_letter_targets(stream: bool, t: &TransformsConfig, o: &OtlpConfig, p: &mut Problems) {
    if stream {
        for (set, path) in [
            (t.dead_letter_path.is_some(), "transforms.dead_letter_path"),
            (o.dead_letter_path.is_some(), "otlp.dead_letter_path"),
        ] {
            if set {
                let endpoint = p.label("dead_letter.endpoint").to_string();
                p.at(path, format!("dead letters go to {endpoint}: set one or the other"));
            }
        }
        return;
    }
    if t.dead_letter_path.is_some() {
        return;
    }
    for (i, e) in t.chain.iter().flatten().enumerate() {
        if e.failure_policy == Some(FailurePolicy::DeadLetter) {
            p.at(
                &format!("transforms.chain[{i}].failure_policy"),
                "dead-letter needs transforms.dead_letter_path or dead_letter.endpoint",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::env::{ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, ENV_OTEL_BLRP_MAX_QUEUE_SIZE};
    use super::*;

    fn required() -> RawConfig {
        let mut raw = RawConfig::default();
        raw.goldmane.host = Some("goldmane:7443".into());
        raw.goldmane.ca_cert_path = Some("/ca.crt".into());
        raw.goldmane.client_cert_path = Some("/tls.crt".into());
        raw.goldmane.client_key_path = Some("/tls.key".into());
        raw
    }

    /// A check between sections names the setting at fault (the queue, not the batch it must hold), by where that
    /// setting's value came from.
    #[test]
    fn a_queue_smaller_than_a_batch_is_the_queues_problem_named_where_its_size_was_set() {
        let fields = |err: ConfigError| err.problems.into_iter().map(|p| p.field).collect::<Vec<_>>();
        let mut raw = required();
        raw.batch.max_records = Some(1_000);
        raw.queue.max_records = Some(999);
        assert_eq!(fields(raw.clone().resolve().unwrap_err()), ["queue.max_records"]);
        let env =
            Env::from_pairs([(ENV_OTEL_BLRP_MAX_QUEUE_SIZE, "999"), (ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, "1000")]);
        assert_eq!(fields(resolve_with_env(required(), &env).unwrap_err()), [ENV_OTEL_BLRP_MAX_QUEUE_SIZE]);
        // The batch from the environment, the queue from its default: the queue is named by its path.
        let env = Env::from_pairs([(ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, "300000")]);
        assert_eq!(fields(resolve_with_env(required(), &env).unwrap_err()), ["queue.max_records"]);
    }
}
