//! Environment variables of the old exporter and of the OpenTelemetry specification, mapped onto [`RawConfig`].
//!
//! OTLP precedence follows the exporter spec: a signal-specific variable (`OTEL_EXPORTER_OTLP_LOGS_*`) wins over
//! the generic one (`OTEL_EXPORTER_OTLP_*`) as a whole value; `/v1/logs` is appended only to the generic endpoint.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use super::{DEFAULT_RECONNECT_INITIAL_MS, Problems, RawConfig};

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
    fn otlp(&self, suffix: &str) -> Option<(String, &str)> {
        let specific = format!("OTEL_EXPORTER_OTLP_LOGS_{suffix}");
        if let Some(v) = self.get(&specific) {
            return Some((specific, v));
        }
        let generic = format!("OTEL_EXPORTER_OTLP_{suffix}");
        self.get(&generic).map(|v| (generic, v))
    }
}

fn parse<T: FromStr>(name: &str, v: &str, p: &mut Problems) -> Option<T> {
    match v.trim().parse() {
        Ok(x) => Some(x),
        Err(_) => {
            p.push(name, format!("{v:?} is not a valid number"));
            None
        }
    }
}

/// Overlays `env` onto `raw`. Problems are collected, not returned early.
pub(crate) fn apply_env(raw: &mut RawConfig, env: &Env, p: &mut Problems, warnings: &mut Vec<String>) {
    let g = &mut raw.goldmane;
    if let Some(v) = env.get("GOLDMANE_HOST") {
        g.host = Some(v.trim().to_string());
    }
    for (name, slot) in [
        ("CA_CERT_PATH", &mut g.ca_cert_path),
        ("PRIVATE_KEY_PATH", &mut g.client_key_path),
        ("PUBLIC_CERT_PATH", &mut g.client_cert_path),
    ] {
        if let Some(v) = env.get(name) {
            *slot = Some(PathBuf::from(v));
        }
    }
    if let Some(v) = env.get("RECONNECT_WAIT_TIME_IN_MILLISECONDS") {
        // The old exporter falls back to its default on an unparsable value; so do we, loudly.
        match v.trim().parse::<u64>() {
            Ok(ms) => g.reconnect_initial_ms = Some(ms),
            Err(_) => warnings.push(format!(
                "RECONNECT_WAIT_TIME_IN_MILLISECONDS={v:?} is not a number; using {DEFAULT_RECONNECT_INITIAL_MS}"
            )),
        }
    }

    if let Some(v) = env.get("FLOWGATE_TRANSFORMS_DIR") {
        raw.transforms.dir = Some(PathBuf::from(v.trim()));
    }
    if let Some(v) = env.get("FLOWGATE_STATE_DIR") {
        raw.state_dir = Some(PathBuf::from(v.trim()));
    }
    if let Some(v) = env.get("FLOWGATE_RECONCILE") {
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "on" => raw.goldmane.reconcile.enabled = Some(true),
            "false" | "0" | "off" => raw.goldmane.reconcile.enabled = Some(false),
            _ => p.push("FLOWGATE_RECONCILE", format!("{v:?} is not true or false")),
        }
    }
    if let Some(v) = env.get("FLOWGATE_ADMIN_LISTEN") {
        match v.trim().parse::<std::net::SocketAddr>() {
            Ok(_) => raw.admin.listen = Some(v.trim().to_string()),
            Err(e) => p.push("FLOWGATE_ADMIN_LISTEN", format!("{v:?} is not addr:port (e.g. 0.0.0.0:9090): {e}")),
        }
    }

    let o = &mut raw.otlp;
    if let Some(v) = env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") {
        o.endpoint = Some(v.trim().to_string());
    } else if let Some(v) = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") {
        o.endpoint = Some(format!("{}/v1/logs", v.trim().trim_end_matches('/')));
    }
    // The flow metrics' OTLP push, per the OTLP exporter spec: the metrics variable is a full URL, used as is;
    // the generic one is covered by deriving from the logs URL.
    if let Some(v) = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
        raw.flow_metrics.otlp.endpoint = Some(v.trim().to_string());
    }
    if let Some(v) = env.get("OTEL_METRIC_EXPORT_INTERVAL") {
        raw.flow_metrics.otlp.interval_ms =
            parse("OTEL_METRIC_EXPORT_INTERVAL", v, p).or(raw.flow_metrics.otlp.interval_ms);
    }
    let o = &mut raw.otlp;
    if let Some((name, v)) = env.otlp("PROTOCOL")
        && v.trim() != "http/protobuf"
    {
        p.push(name, format!("{v:?} is not supported: Flowgate exports OTLP/HTTP with protobuf (http/protobuf)"));
    }
    if let Some((name, v)) = env.otlp("HEADERS") {
        match parse_key_values(v) {
            Ok(kvs) => o.headers.extend(kvs),
            Err(e) => p.push(name, e),
        }
    }
    if let Some((_, v)) = env.otlp("COMPRESSION") {
        o.compression = Some(v.trim().to_string());
    }
    if let Some((name, v)) = env.otlp("TIMEOUT") {
        o.timeout_ms = parse(&name, v, p).or(o.timeout_ms);
    }
    for (suffix, slot) in [
        ("CERTIFICATE", &mut o.ca_cert_path),
        ("CLIENT_CERTIFICATE", &mut o.client_cert_path),
        ("CLIENT_KEY", &mut o.client_key_path),
    ] {
        if let Some((_, v)) = env.otlp(suffix) {
            *slot = Some(PathBuf::from(v.trim()));
        }
    }
    if let Some(v) = env.get("OTEL_RESOURCE_ATTRIBUTES") {
        match parse_key_values(v) {
            Ok(kvs) => o.resource_attributes.extend(kvs),
            Err(e) => p.push("OTEL_RESOURCE_ATTRIBUTES", e),
        }
    }
    if let Some(v) = env.get("OTEL_SERVICE_NAME") {
        o.resource_attributes.insert("service.name".into(), v.trim().to_string());
    }

    if let Some(v) = env.get("OTEL_BLRP_SCHEDULE_DELAY") {
        raw.batch.delay_ms = parse("OTEL_BLRP_SCHEDULE_DELAY", v, p).or(raw.batch.delay_ms);
    }
    if let Some(v) = env.get("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE") {
        raw.batch.max_records = parse("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", v, p).or(raw.batch.max_records);
    }
    if let Some(v) = env.get("OTEL_BLRP_MAX_QUEUE_SIZE") {
        raw.queue.max_records = parse("OTEL_BLRP_MAX_QUEUE_SIZE", v, p).or(raw.queue.max_records);
    }
    if let Some(v) = env.get("OTEL_BLRP_EXPORT_TIMEOUT")
        && parse::<u64>("OTEL_BLRP_EXPORT_TIMEOUT", v, p).is_some()
    {
        warnings.push(
            "OTEL_BLRP_EXPORT_TIMEOUT is accepted but has no effect: Flowgate never abandons a retryable batch; \
             OTEL_EXPORTER_OTLP_TIMEOUT bounds each request"
                .to_string(),
        );
    }
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
}
