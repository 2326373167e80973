//! `flow_metrics` and `aggregation`: what the gateway derives from the flows after the transform chain (counters,
//! pushed as OTLP metrics too, and merged records).

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;
use super::env::ENV_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT;
use super::otlp::http_url;

/// Default label sets per flow-metric group.
pub const DEFAULT_FLOW_METRICS_MAX_SERIES: usize = 2_000;
/// Default push period of the OTLP flow metrics (the OpenTelemetry SDK's `OTEL_METRIC_EXPORT_INTERVAL`).
pub const DEFAULT_FLOW_METRICS_OTLP_INTERVAL_MS: u64 = 60_000;
/// Shortest push period accepted.
pub const MIN_FLOW_METRICS_OTLP_INTERVAL_MS: u64 = 100;
/// Default quiet time before a bucket's merged records are sent.
pub const DEFAULT_AGGREGATION_LINGER_MS: u64 = 2_000;
/// Default bound on merged records held.
pub const DEFAULT_AGGREGATION_MAX_GROUPS: usize = 500_000;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMetricsConfig {
    pub max_series: usize,
    pub namespaces: Option<HashSet<String>>,
    pub otlp: Option<FlowMetricsOtlpConfig>,
}

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

impl RawFlowMetrics {
    /// Off unless enabled; `logs` is the logs endpoint the push URL is derived from when not given.
    pub(super) fn resolve(self, logs: &url::Url, p: &mut Problems) -> Option<FlowMetricsConfig> {
        let enabled = self.enabled.unwrap_or(false);
        let otlp = self.otlp.resolve(enabled, logs, p);
        if self.max_series == Some(0) {
            p.at("flow_metrics.max_series", "must be at least 1");
        }
        enabled.then(|| FlowMetricsConfig {
            max_series: self.max_series.unwrap_or(DEFAULT_FLOW_METRICS_MAX_SERIES),
            namespaces: self.namespaces.map(|n| n.into_iter().collect()),
            otlp,
        })
    }
}

impl RawFlowMetricsOtlp {
    /// The OTLP push of the flow metrics, when asked for: its URL (explicit, or the logs URL with `/v1/logs` made
    /// `/v1/metrics`) and period.
    fn resolve(self, counting: bool, logs: &url::Url, p: &mut Problems) -> Option<FlowMetricsOtlpConfig> {
        if !self.enabled.unwrap_or(false) {
            return None;
        }
        if !counting {
            p.at("flow_metrics.otlp.enabled", "needs flow_metrics.enabled: true (nothing is counted otherwise)");
            return None;
        }
        let interval_ms = self.interval_ms.unwrap_or(DEFAULT_FLOW_METRICS_OTLP_INTERVAL_MS);
        if interval_ms < MIN_FLOW_METRICS_OTLP_INTERVAL_MS {
            p.at("flow_metrics.otlp.interval_ms", format!("must be at least {MIN_FLOW_METRICS_OTLP_INTERVAL_MS}"));
        }
        let endpoint = match &self.endpoint {
            Some(text) => http_url(text, "flow_metrics.otlp.endpoint", p),
            None => match logs.path().strip_suffix("/v1/logs") {
                Some(base) => {
                    let mut u = logs.clone();
                    u.set_path(&format!("{base}/v1/metrics"));
                    Some(u)
                }
                None => {
                    p.at(
                        "flow_metrics.otlp.endpoint",
                        format!(
                            "the logs endpoint {logs} does not end in /v1/logs, so the metrics URL cannot be derived \
                             from it: set it (or {ENV_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT})"
                        ),
                    );
                    None
                }
            },
        }?;
        Some(FlowMetricsOtlpConfig { endpoint, interval: Duration::from_millis(interval_ms) })
    }
}

impl RawAggregation {
    pub(super) fn resolve(self, p: &mut Problems) -> Option<AggregationConfig> {
        if self.max_groups == Some(0) {
            p.at("aggregation.max_groups", "must be at least 1");
        }
        self.enabled.unwrap_or(false).then(|| AggregationConfig {
            level: self.level.unwrap_or_default(),
            linger: Duration::from_millis(self.linger_ms.unwrap_or(DEFAULT_AGGREGATION_LINGER_MS).max(10)),
            max_groups: self.max_groups.unwrap_or(DEFAULT_AGGREGATION_MAX_GROUPS),
        })
    }
}
