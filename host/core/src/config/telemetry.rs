//! `telemetry`: Flowgate's own metrics and traces over OTLP/HTTP with the OpenTelemetry SDK (the data path keeps
//! its own exporter). Off by default; the standard variables turn each signal on (`OTEL_METRICS_EXPORTER=otlp`,
//! `OTEL_TRACES_EXPORTER=otlp`) and choose the sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;
use super::otlp::http_url;

/// How often the gateway's metrics are exported (`OTEL_METRIC_EXPORT_INTERVAL`'s default).
pub const DEFAULT_TELEMETRY_INTERVAL_MS: u64 = 60_000;
/// Share of batches traced when nothing says otherwise: a span per batch is plenty at 1%.
pub const DEFAULT_TRACES_SAMPLE_RATIO: f64 = 0.01;
/// Finished spans waiting for export; past it new ones are dropped and counted (`OTEL_BSP_MAX_QUEUE_SIZE`).
pub const DEFAULT_TRACES_MAX_QUEUE: usize = 2_048;

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    /// Base URL; `/v1/metrics` and `/v1/traces` are appended. Default: the scheme, host and port of
    /// `otlp.endpoint`. `OTEL_EXPORTER_OTLP_{METRICS,TRACES}_ENDPOINT` set a signal's full URL.
    pub endpoint: Option<String>,
    pub metrics: RawTelemetryMetrics,
    pub traces: RawTelemetryTraces,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetryMetrics {
    /// `OTEL_METRICS_EXPORTER=otlp` (on) or `none` (off).
    pub enabled: Option<bool>,
    pub interval_ms: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetryTraces {
    /// `OTEL_TRACES_EXPORTER=otlp` (on) or `none` (off).
    pub enabled: Option<bool>,
    /// Share of batches traced, 0 to 1 (`OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`).
    pub sample_ratio: Option<f64>,
    pub max_queue: Option<usize>,
}

/// Resolved; `None` in [`crate::config::Config`] when both signals are off.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    pub metrics_endpoint: Option<url::Url>,
    pub traces_endpoint: Option<url::Url>,
    pub interval: Duration,
    pub sample_ratio: f64,
    pub max_queue: usize,
}

impl RawTelemetry {
    pub(super) fn resolve(self, logs: &url::Url, p: &mut Problems) -> Option<TelemetryConfig> {
        let (metrics, traces) = (self.metrics.enabled.unwrap_or(false), self.traces.enabled.unwrap_or(false));
        let base = match &self.endpoint {
            Some(text) => http_url(text, "telemetry.endpoint", p),
            None => url::Url::parse(&logs.origin().ascii_serialization()).ok(),
        };
        let ratio = self.traces.sample_ratio.unwrap_or(DEFAULT_TRACES_SAMPLE_RATIO);
        if !(0.0..=1.0).contains(&ratio) {
            p.at("telemetry.traces.sample_ratio", format!("{ratio} is not between 0 and 1"));
        }
        let interval = self.metrics.interval_ms.unwrap_or(DEFAULT_TELEMETRY_INTERVAL_MS);
        if interval < 100 {
            p.at("telemetry.metrics.interval_ms", format!("{interval} is below 100"));
        }
        let max_queue = self.traces.max_queue.unwrap_or(DEFAULT_TRACES_MAX_QUEUE);
        if max_queue == 0 {
            p.at("telemetry.traces.max_queue", "must be at least 1");
        }
        let signal = |on: bool, path: &str| {
            let base = base.as_ref().filter(|_| on)?;
            base.join(&format!("{}/{path}", base.path().trim_end_matches('/'))).ok()
        };
        let cfg = TelemetryConfig {
            metrics_endpoint: signal(metrics, "v1/metrics"),
            traces_endpoint: signal(traces, "v1/traces"),
            interval: Duration::from_millis(interval),
            sample_ratio: ratio.clamp(0.0, 1.0),
            max_queue: max_queue.max(1),
        };
        (cfg.metrics_endpoint.is_some() || cfg.traces_endpoint.is_some()).then_some(cfg)
    }
}
