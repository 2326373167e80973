//! Environment variables of the old exporter and of the OpenTelemetry specification, mapped onto [`RawConfig`].
//!
//! Every name is declared here once, as `ENV_` followed by the variable's own name, so a search for the variable
//! finds its constant. Renaming one breaks deployments that set it: the unit tests pin each name.
//!
//! OTLP precedence follows the exporter spec: a signal-specific variable (`OTEL_EXPORTER_OTLP_LOGS_*`) wins over
//! the generic one (`OTEL_EXPORTER_OTLP_*`) as a whole value; `/v1/logs` is appended only to the generic endpoint.
//!
//! The overlay records which variable set which setting (`Origins`), so a problem with a value names the variable
//! it came from, or the YAML path when the file set it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use super::otlp::is_header_name;
use super::{DEFAULT_RECONNECT_INITIAL_MS, Problems, RawConfig};

// The old exporter's variables (its Helm chart sets them); Flowgate reads them unchanged.

/// Goldmane's `host:port` (`goldmane.host`).
pub const ENV_GOLDMANE_HOST: &str = "GOLDMANE_HOST";
/// PEM CA bundle Goldmane's certificate verifies against (`goldmane.ca_cert_path`).
pub const ENV_CA_CERT_PATH: &str = "CA_CERT_PATH";
/// Client key for Goldmane (`goldmane.client_key_path`).
pub const ENV_PRIVATE_KEY_PATH: &str = "PRIVATE_KEY_PATH";
/// Client certificate for Goldmane (`goldmane.client_cert_path`).
pub const ENV_PUBLIC_CERT_PATH: &str = "PUBLIC_CERT_PATH";
/// Initial reconnect wait (`goldmane.reconnect_initial_ms`); unparsable falls back to the default, as it did.
pub const ENV_RECONNECT_WAIT_TIME_IN_MILLISECONDS: &str = "RECONNECT_WAIT_TIME_IN_MILLISECONDS";

// Flowgate's own variables.

/// The YAML config file (read by the command line, not by this overlay).
pub const ENV_FLOWGATE_CONFIG: &str = "FLOWGATE_CONFIG";
/// Log format on stderr, `json` or `text` (read by the command line, not by this overlay).
pub const ENV_FLOWGATE_LOG_FORMAT: &str = "FLOWGATE_LOG_FORMAT";
/// The transforms directory (`transforms.dir`).
pub const ENV_FLOWGATE_TRANSFORMS_DIR: &str = "FLOWGATE_TRANSFORMS_DIR";
/// Where the stream cursor lives (`state_dir`).
pub const ENV_FLOWGATE_STATE_DIR: &str = "FLOWGATE_STATE_DIR";
/// `true` or `false`: reconciliation of late flows (`goldmane.reconcile.enabled`).
pub const ENV_FLOWGATE_RECONCILE: &str = "FLOWGATE_RECONCILE";
/// The admin listener's `addr:port` (`admin.listen`).
pub const ENV_FLOWGATE_ADMIN_LISTEN: &str = "FLOWGATE_ADMIN_LISTEN";
/// Threads running transforms (`transforms.workers`).
pub const ENV_FLOWGATE_TRANSFORM_WORKERS: &str = "FLOWGATE_TRANSFORM_WORKERS";
/// `true` or `false`: the `flowgate.transforms` provenance attribute (`transforms.provenance`).
pub const ENV_FLOWGATE_PROVENANCE: &str = "FLOWGATE_PROVENANCE";
/// Where the `dead-letter` failure policy writes flows (`transforms.dead_letter_path`).
pub const ENV_FLOWGATE_DEAD_LETTER_PATH: &str = "FLOWGATE_DEAD_LETTER_PATH";
/// Where batches the endpoint rejects permanently are written (`otlp.dead_letter_path`).
pub const ENV_FLOWGATE_EXPORT_DEAD_LETTER_PATH: &str = "FLOWGATE_EXPORT_DEAD_LETTER_PATH";
/// The dead-letter stream's OTLP/HTTP logs URL (`dead_letter.endpoint`).
pub const ENV_FLOWGATE_DEAD_LETTER_ENDPOINT: &str = "FLOWGATE_DEAD_LETTER_ENDPOINT";
/// Concurrent OTLP requests (`otlp.max_in_flight`).
pub const ENV_FLOWGATE_MAX_IN_FLIGHT: &str = "FLOWGATE_MAX_IN_FLIGHT";
/// Uncompressed request size that flushes a batch early (`batch.max_bytes`).
pub const ENV_FLOWGATE_BATCH_MAX_BYTES: &str = "FLOWGATE_BATCH_MAX_BYTES";
/// The in-memory queue's bound in bytes (`queue.max_bytes`).
pub const ENV_FLOWGATE_QUEUE_MAX_BYTES: &str = "FLOWGATE_QUEUE_MAX_BYTES";
/// Grace period to flush on SIGTERM, in milliseconds (`shutdown_grace_ms`).
pub const ENV_FLOWGATE_SHUTDOWN_GRACE_MS: &str = "FLOWGATE_SHUTDOWN_GRACE_MS";
/// `true` or `false`: per-flow metrics on `/metrics` (`flow_metrics.enabled`).
pub const ENV_FLOWGATE_FLOW_METRICS: &str = "FLOWGATE_FLOW_METRICS";
/// `true` or `false`: aggregation of equal flow keys (`aggregation.enabled`).
pub const ENV_FLOWGATE_AGGREGATION: &str = "FLOWGATE_AGGREGATION";
/// `none`, `names` or `namespaces` (`aggregation.level`).
pub const ENV_FLOWGATE_AGGREGATION_LEVEL: &str = "FLOWGATE_AGGREGATION_LEVEL";
/// `true` or `false`: rolling back a hot-swapped chain that fails (`transforms.rollback.enabled`).
pub const ENV_FLOWGATE_ROLLBACK: &str = "FLOWGATE_ROLLBACK";
/// How long a swapped-in chain is watched, in milliseconds (`transforms.rollback.window_ms`).
pub const ENV_FLOWGATE_ROLLBACK_WINDOW_MS: &str = "FLOWGATE_ROLLBACK_WINDOW_MS";
/// Share of flows failing (errors and traps) that rolls a new chain back (`transforms.rollback.max_failure_ratio`).
pub const ENV_FLOWGATE_ROLLBACK_MAX_FAILURE_RATIO: &str = "FLOWGATE_ROLLBACK_MAX_FAILURE_RATIO";

// The OTLP exporter spec's variables: each generic one has a logs-specific twin that wins over it.

/// Base URL; `/v1/logs` is appended (`otlp.endpoint`).
pub const ENV_OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Full logs URL, used as is (`otlp.endpoint`).
pub const ENV_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";
/// Full metrics URL of the flow metrics' push, used as is (`flow_metrics.otlp.endpoint`).
pub const ENV_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
/// Only `http/protobuf` is accepted.
pub const ENV_OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub const ENV_OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL";
/// `k=v,…`, percent-decoded, added to the file's (`otlp.headers`).
pub const ENV_OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
pub const ENV_OTEL_EXPORTER_OTLP_LOGS_HEADERS: &str = "OTEL_EXPORTER_OTLP_LOGS_HEADERS";
/// `none`, `gzip` or `zstd` (`otlp.compression`).
pub const ENV_OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
pub const ENV_OTEL_EXPORTER_OTLP_LOGS_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION";
/// Per-request timeout in milliseconds (`otlp.timeout_ms`).
pub const ENV_OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
pub const ENV_OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT";
/// PEM CA bundle for the endpoint (`otlp.ca_cert_path`).
pub const ENV_OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
pub const ENV_OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE";
/// Client certificate for the endpoint (`otlp.client_cert_path`).
pub const ENV_OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
pub const ENV_OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE";
/// Client key for the endpoint (`otlp.client_key_path`).
pub const ENV_OTEL_EXPORTER_OTLP_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
pub const ENV_OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY";

// The OpenTelemetry SDK's variables.

/// `k=v,…`, percent-decoded, added to the resource (`otlp.resource_attributes`).
pub const ENV_OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// The resource's `service.name`, over every other source.
pub const ENV_OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// Push period of the flow metrics in milliseconds (`flow_metrics.otlp.interval_ms`).
pub const ENV_OTEL_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// Longest a record waits in a partial batch, in milliseconds (`batch.delay_ms`).
pub const ENV_OTEL_BLRP_SCHEDULE_DELAY: &str = "OTEL_BLRP_SCHEDULE_DELAY";
/// Records per request (`batch.max_records`).
pub const ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE";
/// Records queued (`queue.max_records`).
pub const ENV_OTEL_BLRP_MAX_QUEUE_SIZE: &str = "OTEL_BLRP_MAX_QUEUE_SIZE";
/// `otlp` turns the gateway's own metrics on, `none` off (`telemetry.metrics.enabled`).
pub const ENV_OTEL_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
/// `otlp` turns the gateway's own traces on, `none` off (`telemetry.traces.enabled`).
pub const ENV_OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `always_on`, `always_off`, `traceidratio` or their `parentbased_` forms (`telemetry.traces.sample_ratio`).
pub const ENV_OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// The ratio of `traceidratio` (`telemetry.traces.sample_ratio`).
pub const ENV_OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// Finished spans queued for export (`telemetry.traces.max_queue`).
pub const ENV_OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// Accepted and warned about: Flowgate never abandons a retryable batch.
pub const ENV_OTEL_BLRP_EXPORT_TIMEOUT: &str = "OTEL_BLRP_EXPORT_TIMEOUT";

/// A snapshot of the environment (the process's, or a map in tests).
#[derive(Debug, Default, Clone)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Env(std::env::vars().collect())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Env(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// A set, non-empty value (the spec treats empty as unset).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// The logs-specific variable if set, else the generic one; returns the name that was used.
    fn otlp(&self, specific: &'static str, generic: &'static str) -> Option<(&'static str, &str)> {
        self.get(specific).map(|v| (specific, v)).or_else(|| self.get(generic).map(|v| (generic, v)))
    }
}

/// Which settings the environment set, and with which variable.
#[derive(Debug, Default, Clone)]
pub(crate) struct Origins(BTreeMap<&'static str, &'static str>);

impl Origins {
    fn set(&mut self, yaml_path: &'static str, var: &'static str) {
        self.0.insert(yaml_path, var);
    }

    /// How a problem with the setting at `yaml_path` is labelled: the variable that set its value, if one did,
    /// else the path (the file set it, or the default stands).
    pub(crate) fn label<'a>(&'a self, yaml_path: &'a str) -> &'a str {
        self.0.get(yaml_path).copied().unwrap_or(yaml_path)
    }
}

fn parse<T: FromStr>(name: &str, v: &str, p: &mut Problems) -> Option<T> {
    match v.trim().parse() {
        Ok(x) => Some(x),
        Err(_) => {
            p.named(name, format!("{v:?} is not a valid number"));
            None
        }
    }
}

/// Overlays `env` onto `raw` and returns which setting each variable set. Problems with a variable's text (not a
/// number, not a boolean) name the variable and leave the setting alone; problems are collected, not returned
/// early.
pub(crate) fn apply_env(raw: &mut RawConfig, env: &Env, p: &mut Problems, warnings: &mut Vec<String>) -> Origins {
    let mut origins = Origins::default();
    let g = &mut raw.goldmane;
    if let Some(v) = env.get(ENV_GOLDMANE_HOST) {
        g.host = Some(v.trim().to_string());
        origins.set("goldmane.host", ENV_GOLDMANE_HOST);
    }
    for (name, path, slot) in [
        (ENV_CA_CERT_PATH, "goldmane.ca_cert_path", &mut g.ca_cert_path),
        (ENV_PRIVATE_KEY_PATH, "goldmane.client_key_path", &mut g.client_key_path),
        (ENV_PUBLIC_CERT_PATH, "goldmane.client_cert_path", &mut g.client_cert_path),
    ] {
        if let Some(v) = env.get(name) {
            *slot = Some(PathBuf::from(v));
            origins.set(path, name);
        }
    }
    if let Some(v) = env.get(ENV_RECONNECT_WAIT_TIME_IN_MILLISECONDS) {
        // The old exporter falls back to its default on an unparsable value; so do we, loudly.
        match v.trim().parse::<u64>() {
            Ok(ms) => {
                g.reconnect_initial_ms = Some(ms);
                origins.set("goldmane.reconnect_initial_ms", ENV_RECONNECT_WAIT_TIME_IN_MILLISECONDS);
            }
            Err(_) => warnings.push(format!(
                "{ENV_RECONNECT_WAIT_TIME_IN_MILLISECONDS}={v:?} is not a number; using {DEFAULT_RECONNECT_INITIAL_MS}"
            )),
        }
    }

    if let Some(v) = env.get(ENV_FLOWGATE_TRANSFORMS_DIR) {
        raw.transforms.dir = Some(PathBuf::from(v.trim()));
        origins.set("transforms.dir", ENV_FLOWGATE_TRANSFORMS_DIR);
    }
    if let Some(v) = env.get(ENV_FLOWGATE_STATE_DIR) {
        raw.state_dir = Some(PathBuf::from(v.trim()));
        origins.set("state_dir", ENV_FLOWGATE_STATE_DIR);
    }
    if let Some(v) = env.get(ENV_FLOWGATE_RECONCILE) {
        let enabled = match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "on" => Some(true),
            "false" | "0" | "off" => Some(false),
            _ => {
                p.named(ENV_FLOWGATE_RECONCILE, format!("{v:?} is not true or false"));
                None
            }
        };
        if enabled.is_some() {
            raw.goldmane.reconcile.enabled = enabled;
            origins.set("goldmane.reconcile.enabled", ENV_FLOWGATE_RECONCILE);
        }
    }
    if let Some(v) = env.get(ENV_FLOWGATE_ADMIN_LISTEN) {
        // Checked with the file's value when resolved, and labelled with this variable.
        raw.admin.listen = Some(v.trim().to_string());
        origins.set("admin.listen", ENV_FLOWGATE_ADMIN_LISTEN);
    }
    apply_flowgate_env(raw, env, p, &mut origins);

    let o = &mut raw.otlp;
    if let Some(v) = env.get(ENV_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT) {
        o.endpoint = Some(v.trim().to_string());
        origins.set("otlp.endpoint", ENV_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT);
    } else if let Some(v) = env.get(ENV_OTEL_EXPORTER_OTLP_ENDPOINT) {
        o.endpoint = Some(format!("{}/v1/logs", v.trim().trim_end_matches('/')));
        origins.set("otlp.endpoint", ENV_OTEL_EXPORTER_OTLP_ENDPOINT);
    }
    // The flow metrics' OTLP push, per the OTLP exporter spec: the metrics variable is a full URL, used as is;
    // the generic one is covered by deriving from the logs URL.
    let m = &mut raw.flow_metrics.otlp;
    if let Some(v) = env.get(ENV_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) {
        m.endpoint = Some(v.trim().to_string());
        origins.set("flow_metrics.otlp.endpoint", ENV_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT);
    }
    if let Some(v) = env.get(ENV_OTEL_METRIC_EXPORT_INTERVAL)
        && let Some(ms) = parse(ENV_OTEL_METRIC_EXPORT_INTERVAL, v, p)
    {
        m.interval_ms = Some(ms);
        origins.set("flow_metrics.otlp.interval_ms", ENV_OTEL_METRIC_EXPORT_INTERVAL);
    }
    if let Some((name, v)) = env.otlp(ENV_OTEL_EXPORTER_OTLP_LOGS_PROTOCOL, ENV_OTEL_EXPORTER_OTLP_PROTOCOL)
        && v.trim() != "http/protobuf"
    {
        p.named(name, format!("{v:?} is not supported: Flowgate exports OTLP/HTTP with protobuf (http/protobuf)"));
    }
    // Headers and resource attributes add to the file's, key by key, so a bad header name is reported here,
    // against the variable; the file's are checked when resolved.
    if let Some((name, v)) = env.otlp(ENV_OTEL_EXPORTER_OTLP_LOGS_HEADERS, ENV_OTEL_EXPORTER_OTLP_HEADERS) {
        match parse_key_values(v) {
            Ok(kvs) => {
                for (k, v) in kvs {
                    if is_header_name(&k) {
                        o.headers.insert(k, v);
                    } else {
                        p.named(name, format!("{k:?} is not a valid header name"));
                    }
                }
            }
            Err(e) => p.named(name, e),
        }
    }
    if let Some((name, v)) = env.otlp(ENV_OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, ENV_OTEL_EXPORTER_OTLP_COMPRESSION) {
        o.compression = Some(v.trim().to_string());
        origins.set("otlp.compression", name);
    }
    if let Some((name, v)) = env.otlp(ENV_OTEL_EXPORTER_OTLP_LOGS_TIMEOUT, ENV_OTEL_EXPORTER_OTLP_TIMEOUT)
        && let Some(ms) = parse(name, v, p)
    {
        o.timeout_ms = Some(ms);
        origins.set("otlp.timeout_ms", name);
    }
    for (specific, generic, path, slot) in [
        (
            ENV_OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE,
            ENV_OTEL_EXPORTER_OTLP_CERTIFICATE,
            "otlp.ca_cert_path",
            &mut o.ca_cert_path,
        ),
        (
            ENV_OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE,
            ENV_OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
            "otlp.client_cert_path",
            &mut o.client_cert_path,
        ),
        (
            ENV_OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY,
            ENV_OTEL_EXPORTER_OTLP_CLIENT_KEY,
            "otlp.client_key_path",
            &mut o.client_key_path,
        ),
    ] {
        if let Some((name, v)) = env.otlp(specific, generic) {
            *slot = Some(PathBuf::from(v.trim()));
            origins.set(path, name);
        }
    }
    if let Some(v) = env.get(ENV_OTEL_RESOURCE_ATTRIBUTES) {
        match parse_key_values(v) {
            Ok(kvs) => o.resource_attributes.extend(kvs),
            Err(e) => p.named(ENV_OTEL_RESOURCE_ATTRIBUTES, e),
        }
    }
    if let Some(v) = env.get(ENV_OTEL_SERVICE_NAME) {
        o.resource_attributes.insert("service.name".into(), v.trim().to_string());
    }

    apply_telemetry_env(raw, env, p, &mut origins);
    if let Some(v) = env.get(ENV_OTEL_BLRP_SCHEDULE_DELAY)
        && let Some(ms) = parse(ENV_OTEL_BLRP_SCHEDULE_DELAY, v, p)
    {
        raw.batch.delay_ms = Some(ms);
        origins.set("batch.delay_ms", ENV_OTEL_BLRP_SCHEDULE_DELAY);
    }
    if let Some(v) = env.get(ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE)
        && let Some(n) = parse(ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, v, p)
    {
        raw.batch.max_records = Some(n);
        origins.set("batch.max_records", ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE);
    }
    if let Some(v) = env.get(ENV_OTEL_BLRP_MAX_QUEUE_SIZE)
        && let Some(n) = parse(ENV_OTEL_BLRP_MAX_QUEUE_SIZE, v, p)
    {
        raw.queue.max_records = Some(n);
        origins.set("queue.max_records", ENV_OTEL_BLRP_MAX_QUEUE_SIZE);
    }
    if let Some(v) = env.get(ENV_OTEL_BLRP_EXPORT_TIMEOUT)
        && parse::<u64>(ENV_OTEL_BLRP_EXPORT_TIMEOUT, v, p).is_some()
    {
        warnings.push(format!(
            "{ENV_OTEL_BLRP_EXPORT_TIMEOUT} is accepted but has no effect: Flowgate never abandons a retryable batch; \
             {ENV_OTEL_EXPORTER_OTLP_TIMEOUT} bounds each request"
        ));
    }
    origins
}

/// The SDK's variables for the gateway's own telemetry.
fn apply_telemetry_env(raw: &mut RawConfig, env: &Env, p: &mut Problems, origins: &mut Origins) {
    let t = &mut raw.telemetry;
    for (name, path, slot) in [
        (ENV_OTEL_METRICS_EXPORTER, "telemetry.metrics.enabled", &mut t.metrics.enabled),
        (ENV_OTEL_TRACES_EXPORTER, "telemetry.traces.enabled", &mut t.traces.enabled),
    ] {
        if let Some(v) = env.get(name) {
            match v.trim() {
                "otlp" => *slot = Some(true),
                "none" => *slot = Some(false),
                other => {
                    p.named(name, format!("{other:?} is not supported: use otlp or none"));
                    continue;
                }
            }
            origins.set(path, name);
        }
    }
    if let Some(v) = env.get(ENV_OTEL_METRIC_EXPORT_INTERVAL)
        && let Ok(ms) = v.trim().parse()
    {
        t.metrics.interval_ms = Some(ms);
        origins.set("telemetry.metrics.interval_ms", ENV_OTEL_METRIC_EXPORT_INTERVAL);
    }
    let arg = env.get(ENV_OTEL_TRACES_SAMPLER_ARG);
    let ratio = match env.get(ENV_OTEL_TRACES_SAMPLER).map(str::trim) {
        None => arg.map(|a| (ENV_OTEL_TRACES_SAMPLER_ARG, a)),
        Some("always_on" | "parentbased_always_on") => Some((ENV_OTEL_TRACES_SAMPLER, "1")),
        Some("always_off" | "parentbased_always_off") => Some((ENV_OTEL_TRACES_SAMPLER, "0")),
        // The spec's default argument is 1.0.
        Some("traceidratio" | "parentbased_traceidratio") => {
            Some(arg.map_or((ENV_OTEL_TRACES_SAMPLER, "1"), |a| (ENV_OTEL_TRACES_SAMPLER_ARG, a)))
        }
        Some(other) => {
            p.named(ENV_OTEL_TRACES_SAMPLER, format!("{other:?} is not always_on, always_off or traceidratio"));
            None
        }
    };
    if let Some((name, v)) = ratio {
        match v.trim().parse::<f64>() {
            Ok(r) => {
                t.traces.sample_ratio = Some(r);
                origins.set("telemetry.traces.sample_ratio", name);
            }
            Err(_) => p.named(name, format!("{v:?} is not a number between 0 and 1")),
        }
    }
    if let Some(v) = env.get(ENV_OTEL_BSP_MAX_QUEUE_SIZE)
        && let Some(n) = parse(ENV_OTEL_BSP_MAX_QUEUE_SIZE, v, p)
    {
        t.traces.max_queue = Some(n);
        origins.set("telemetry.traces.max_queue", ENV_OTEL_BSP_MAX_QUEUE_SIZE);
    }
}

/// Flowgate's own variables for the YAML settings a deployment commonly changes: each sets one path, and a value
/// that does not parse is a problem named by its variable (the setting keeps the file's value).
fn apply_flowgate_env(raw: &mut RawConfig, env: &Env, p: &mut Problems, origins: &mut Origins) {
    let mut one = |name: &'static str, path: &'static str, set: &mut dyn FnMut(&str) -> Result<(), String>| {
        if let Some(v) = env.get(name) {
            match set(v.trim()) {
                Ok(()) => origins.set(path, name),
                Err(e) => p.named(name, format!("{v:?} {e}")),
            }
        }
    };
    let t = &mut raw.transforms;
    one(ENV_FLOWGATE_TRANSFORM_WORKERS, "transforms.workers", &mut |v| number(v, &mut t.workers));
    one(ENV_FLOWGATE_PROVENANCE, "transforms.provenance", &mut |v| boolean(v, &mut t.provenance));
    one(ENV_FLOWGATE_DEAD_LETTER_PATH, "transforms.dead_letter_path", &mut |v| path(v, &mut t.dead_letter_path));
    let r = &mut t.rollback;
    one(ENV_FLOWGATE_ROLLBACK, "transforms.rollback.enabled", &mut |v| boolean(v, &mut r.enabled));
    one(ENV_FLOWGATE_ROLLBACK_WINDOW_MS, "transforms.rollback.window_ms", &mut |v| number(v, &mut r.window_ms));
    one(ENV_FLOWGATE_ROLLBACK_MAX_FAILURE_RATIO, "transforms.rollback.max_failure_ratio", &mut |v| {
        number(v, &mut r.max_failure_ratio)
    });
    let o = &mut raw.otlp;
    one(ENV_FLOWGATE_EXPORT_DEAD_LETTER_PATH, "otlp.dead_letter_path", &mut |v| path(v, &mut o.dead_letter_path));
    one(ENV_FLOWGATE_DEAD_LETTER_ENDPOINT, "dead_letter.endpoint", &mut |v| {
        raw.dead_letter.endpoint = Some(v.to_string());
        Ok(())
    });
    one(ENV_FLOWGATE_MAX_IN_FLIGHT, "otlp.max_in_flight", &mut |v| number(v, &mut o.max_in_flight));
    one(ENV_FLOWGATE_BATCH_MAX_BYTES, "batch.max_bytes", &mut |v| number(v, &mut raw.batch.max_bytes));
    one(ENV_FLOWGATE_QUEUE_MAX_BYTES, "queue.max_bytes", &mut |v| number(v, &mut raw.queue.max_bytes));
    one(ENV_FLOWGATE_SHUTDOWN_GRACE_MS, "shutdown_grace_ms", &mut |v| number(v, &mut raw.shutdown_grace_ms));
    one(ENV_FLOWGATE_FLOW_METRICS, "flow_metrics.enabled", &mut |v| boolean(v, &mut raw.flow_metrics.enabled));
    let a = &mut raw.aggregation;
    one(ENV_FLOWGATE_AGGREGATION, "aggregation.enabled", &mut |v| boolean(v, &mut a.enabled));
    one(ENV_FLOWGATE_AGGREGATION_LEVEL, "aggregation.level", &mut |v| {
        a.level = Some(serde_norway::from_str(v).map_err(|_| "is not none, names or namespaces".to_string())?);
        Ok(())
    });
}

fn number<T: FromStr>(v: &str, slot: &mut Option<T>) -> Result<(), String> {
    *slot = Some(v.parse().map_err(|_| "is not a valid number".to_string())?);
    Ok(())
}

/// `true`/`false`, also `1`/`0` and `on`/`off`, any case.
fn boolean(v: &str, slot: &mut Option<bool>) -> Result<(), String> {
    *slot = Some(match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "on" => true,
        "false" | "0" | "off" => false,
        _ => return Err("is not true or false".into()),
    });
    Ok(())
}

fn path(v: &str, slot: &mut Option<PathBuf>) -> Result<(), String> {
    *slot = Some(PathBuf::from(v));
    Ok(())
}

/// Parses the spec's `k1=v1,k2=v2` lists (headers, resource attributes); values are percent-decoded.
pub(crate) fn parse_key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| format!("{item:?} is not key=value"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        let v = percent_encoding::percent_decode_str(v.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of {k:?} is not UTF-8 once percent-decoded"))?;
        out.push((k.to_string(), v.into_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_are_trimmed_and_percent_decoded() {
        assert_eq!(
            parse_key_values(" a=b , authorization=Bearer%20x%3D ,").unwrap(),
            vec![("a".into(), "b".into()), ("authorization".into(), "Bearer x=".into())]
        );
        assert!(parse_key_values("novalue").unwrap_err().contains("key=value"));
    }

    /// Deployments set these names (the old exporter's chart, the OpenTelemetry specification): a constant renamed
    /// by mistake fails here rather than in someone's cluster.
    #[test]
    fn the_variables_keep_their_names() {
        let pinned = [
            (ENV_GOLDMANE_HOST, "GOLDMANE_HOST"),
            (ENV_CA_CERT_PATH, "CA_CERT_PATH"),
            (ENV_PRIVATE_KEY_PATH, "PRIVATE_KEY_PATH"),
            (ENV_PUBLIC_CERT_PATH, "PUBLIC_CERT_PATH"),
            (ENV_RECONNECT_WAIT_TIME_IN_MILLISECONDS, "RECONNECT_WAIT_TIME_IN_MILLISECONDS"),
            (ENV_FLOWGATE_CONFIG, "FLOWGATE_CONFIG"),
            (ENV_FLOWGATE_LOG_FORMAT, "FLOWGATE_LOG_FORMAT"),
            (ENV_FLOWGATE_TRANSFORMS_DIR, "FLOWGATE_TRANSFORMS_DIR"),
            (ENV_FLOWGATE_STATE_DIR, "FLOWGATE_STATE_DIR"),
            (ENV_FLOWGATE_RECONCILE, "FLOWGATE_RECONCILE"),
            (ENV_FLOWGATE_ADMIN_LISTEN, "FLOWGATE_ADMIN_LISTEN"),
            (ENV_FLOWGATE_TRANSFORM_WORKERS, "FLOWGATE_TRANSFORM_WORKERS"),
            (ENV_FLOWGATE_PROVENANCE, "FLOWGATE_PROVENANCE"),
            (ENV_FLOWGATE_DEAD_LETTER_PATH, "FLOWGATE_DEAD_LETTER_PATH"),
            (ENV_FLOWGATE_EXPORT_DEAD_LETTER_PATH, "FLOWGATE_EXPORT_DEAD_LETTER_PATH"),
            (ENV_FLOWGATE_DEAD_LETTER_ENDPOINT, "FLOWGATE_DEAD_LETTER_ENDPOINT"),
            (ENV_FLOWGATE_MAX_IN_FLIGHT, "FLOWGATE_MAX_IN_FLIGHT"),
            (ENV_FLOWGATE_BATCH_MAX_BYTES, "FLOWGATE_BATCH_MAX_BYTES"),
            (ENV_FLOWGATE_QUEUE_MAX_BYTES, "FLOWGATE_QUEUE_MAX_BYTES"),
            (ENV_FLOWGATE_SHUTDOWN_GRACE_MS, "FLOWGATE_SHUTDOWN_GRACE_MS"),
            (ENV_FLOWGATE_FLOW_METRICS, "FLOWGATE_FLOW_METRICS"),
            (ENV_FLOWGATE_AGGREGATION, "FLOWGATE_AGGREGATION"),
            (ENV_FLOWGATE_AGGREGATION_LEVEL, "FLOWGATE_AGGREGATION_LEVEL"),
            (ENV_FLOWGATE_ROLLBACK, "FLOWGATE_ROLLBACK"),
            (ENV_FLOWGATE_ROLLBACK_WINDOW_MS, "FLOWGATE_ROLLBACK_WINDOW_MS"),
            (ENV_FLOWGATE_ROLLBACK_MAX_FAILURE_RATIO, "FLOWGATE_ROLLBACK_MAX_FAILURE_RATIO"),
            (ENV_OTEL_EXPORTER_OTLP_ENDPOINT, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
            (ENV_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
            (ENV_OTEL_EXPORTER_OTLP_PROTOCOL, "OTEL_EXPORTER_OTLP_PROTOCOL"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_PROTOCOL, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"),
            (ENV_OTEL_EXPORTER_OTLP_HEADERS, "OTEL_EXPORTER_OTLP_HEADERS"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_HEADERS, "OTEL_EXPORTER_OTLP_LOGS_HEADERS"),
            (ENV_OTEL_EXPORTER_OTLP_COMPRESSION, "OTEL_EXPORTER_OTLP_COMPRESSION"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"),
            (ENV_OTEL_EXPORTER_OTLP_TIMEOUT, "OTEL_EXPORTER_OTLP_TIMEOUT"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_TIMEOUT, "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"),
            (ENV_OTEL_EXPORTER_OTLP_CERTIFICATE, "OTEL_EXPORTER_OTLP_CERTIFICATE"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE, "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE"),
            (ENV_OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE, "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE"),
            (ENV_OTEL_EXPORTER_OTLP_CLIENT_KEY, "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY, "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY"),
            (ENV_OTEL_RESOURCE_ATTRIBUTES, "OTEL_RESOURCE_ATTRIBUTES"),
            (ENV_OTEL_SERVICE_NAME, "OTEL_SERVICE_NAME"),
            (ENV_OTEL_METRIC_EXPORT_INTERVAL, "OTEL_METRIC_EXPORT_INTERVAL"),
            (ENV_OTEL_BLRP_SCHEDULE_DELAY, "OTEL_BLRP_SCHEDULE_DELAY"),
            (ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"),
            (ENV_OTEL_BLRP_MAX_QUEUE_SIZE, "OTEL_BLRP_MAX_QUEUE_SIZE"),
            (ENV_OTEL_BLRP_EXPORT_TIMEOUT, "OTEL_BLRP_EXPORT_TIMEOUT"),
            (ENV_OTEL_METRICS_EXPORTER, "OTEL_METRICS_EXPORTER"),
            (ENV_OTEL_TRACES_EXPORTER, "OTEL_TRACES_EXPORTER"),
            (ENV_OTEL_TRACES_SAMPLER, "OTEL_TRACES_SAMPLER"),
            (ENV_OTEL_TRACES_SAMPLER_ARG, "OTEL_TRACES_SAMPLER_ARG"),
            (ENV_OTEL_BSP_MAX_QUEUE_SIZE, "OTEL_BSP_MAX_QUEUE_SIZE"),
        ];
        for (constant, name) in pinned {
            assert_eq!(constant, name);
        }
    }

    /// A label is only as good as its path: every setting a variable can set is a real path of the YAML file.
    #[test]
    fn every_origin_is_a_yaml_path() {
        let env = Env::from_pairs([
            (ENV_GOLDMANE_HOST, "goldmane:7443"),
            (ENV_CA_CERT_PATH, "/ca"),
            (ENV_PRIVATE_KEY_PATH, "/key"),
            (ENV_PUBLIC_CERT_PATH, "/cert"),
            (ENV_RECONNECT_WAIT_TIME_IN_MILLISECONDS, "100"),
            (ENV_FLOWGATE_TRANSFORMS_DIR, "/t"),
            (ENV_FLOWGATE_STATE_DIR, "/s"),
            (ENV_FLOWGATE_RECONCILE, "on"),
            (ENV_FLOWGATE_ADMIN_LISTEN, "0.0.0.0:9090"),
            (ENV_FLOWGATE_TRANSFORM_WORKERS, "3"),
            (ENV_FLOWGATE_PROVENANCE, "off"),
            (ENV_FLOWGATE_DEAD_LETTER_PATH, "/dl"),
            (ENV_FLOWGATE_EXPORT_DEAD_LETTER_PATH, "/edl"),
            (ENV_FLOWGATE_DEAD_LETTER_ENDPOINT, "http://c:4318/v1/logs"),
            (ENV_FLOWGATE_MAX_IN_FLIGHT, "2"),
            (ENV_FLOWGATE_BATCH_MAX_BYTES, "2048"),
            (ENV_FLOWGATE_QUEUE_MAX_BYTES, "1048576"),
            (ENV_FLOWGATE_SHUTDOWN_GRACE_MS, "1000"),
            (ENV_FLOWGATE_FLOW_METRICS, "true"),
            (ENV_FLOWGATE_AGGREGATION, "true"),
            (ENV_FLOWGATE_AGGREGATION_LEVEL, "names"),
            (ENV_FLOWGATE_ROLLBACK, "true"),
            (ENV_FLOWGATE_ROLLBACK_WINDOW_MS, "5000"),
            (ENV_FLOWGATE_ROLLBACK_MAX_FAILURE_RATIO, "0.5"),
            (ENV_OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318"),
            (ENV_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, "http://c:4318/v1/metrics"),
            (ENV_OTEL_METRIC_EXPORT_INTERVAL, "1000"),
            (ENV_OTEL_EXPORTER_OTLP_COMPRESSION, "gzip"),
            (ENV_OTEL_EXPORTER_OTLP_TIMEOUT, "1000"),
            (ENV_OTEL_EXPORTER_OTLP_CERTIFICATE, "/ca"),
            (ENV_OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, "/cert"),
            (ENV_OTEL_EXPORTER_OTLP_CLIENT_KEY, "/key"),
            (ENV_OTEL_BLRP_SCHEDULE_DELAY, "100"),
            (ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, "100"),
            (ENV_OTEL_BLRP_MAX_QUEUE_SIZE, "100000"),
            (ENV_OTEL_METRICS_EXPORTER, "otlp"),
            (ENV_OTEL_TRACES_EXPORTER, "none"),
            (ENV_OTEL_TRACES_SAMPLER, "always_on"),
            (ENV_OTEL_BSP_MAX_QUEUE_SIZE, "10"),
        ]);
        let (mut p, mut warnings) = (Problems::default(), Vec::new());
        let origins = apply_env(&mut RawConfig::default(), &env, &mut p, &mut warnings);
        assert!(p.found.is_empty() && warnings.is_empty(), "{:?} {warnings:?}", p.found);
        for var in env.0.keys() {
            assert!(origins.0.values().any(|v| v == var), "{var} sets no setting: {origins:?}");
        }
        let file = serde_norway::to_value(RawConfig::default()).unwrap();
        for (path, var) in &origins.0 {
            let found = path.split('.').try_fold(&file, |v, key| v.get(key));
            assert!(found.is_some(), "{var} sets {path:?}, which is not a path of the YAML file");
        }
    }
}
