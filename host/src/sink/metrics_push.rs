//! The flow metrics pushed as OTLP/HTTP metrics: every `interval`, each series `/metrics` shows becomes a data
//! point of a cumulative, monotonic sum, POSTed to the metrics URL of the logs endpoint with the logs exporter's
//! client (TLS, headers, compression, timeout). Values are cumulative from when counting began, so a failed push
//! loses nothing: the next one carries the totals. At shutdown, a last push follows the drain.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::config::{Compression, FlowMetricsOtlpConfig};
use crate::otlp::{compress, string_value};
use crate::pipeline::post::Post;
use crate::pipeline::post::metrics::{Descriptor, Point};
use crate::sink::Exporter;
use crate::telemetry::Metrics;

/// The instrumentation scope of the pushed metrics.
pub const SCOPE: &str = "flowgate.flow_metrics";

/// Pushes the flow metrics on a period.
pub struct MetricsPush {
    post: Arc<Post>,
    exporter: Arc<Exporter>,
    cfg: FlowMetricsOtlpConfig,
    resource: Resource,
    compression: Compression,
    metrics: Arc<Metrics>,
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// The request carrying `points`: one metric per descriptor, in the order first seen.
pub fn request(
    points: Vec<Point>,
    resource: Resource,
    start: SystemTime,
    now: SystemTime,
) -> ExportMetricsServiceRequest {
    let (start, now) = (unix_nanos(start), unix_nanos(now));
    let mut sums: Vec<(Descriptor, Vec<NumberDataPoint>)> = Vec::new();
    for p in points {
        let i = match sums.iter().position(|(d, _)| *d == p.metric) {
            Some(i) => i,
            None => {
                sums.push((p.metric, Vec::new()));
                sums.len() - 1
            }
        };
        sums[i].1.push(NumberDataPoint {
            attributes: p
                .attributes
                .into_iter()
                .map(|(k, v)| KeyValue { key: k.to_string(), value: Some(string_value(v)), ..KeyValue::default() })
                .collect(),
            start_time_unix_nano: start,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsInt(p.value.min(i64::MAX as u64) as i64)),
            ..NumberDataPoint::default()
        });
    }
    let metrics = sums
        .into_iter()
        .map(|(d, data_points)| Metric {
            name: d.name.to_string(),
            unit: d.unit.to_string(),
            description: format!("flowgate_{}_total on /metrics", d.prometheus),
            data: Some(metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Metric::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..InstrumentationScope::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

impl MetricsPush {
    /// `None` unless the flow metrics are on with an OTLP push configured.
    pub fn new(
        post: Option<&Arc<Post>>,
        cfg: Option<FlowMetricsOtlpConfig>,
        exporter: Arc<Exporter>,
        resource: Resource,
        compression: Compression,
        metrics: Arc<Metrics>,
    ) -> Option<MetricsPush> {
        let post = post.filter(|p| p.counts_flows())?.clone();
        Some(MetricsPush { post, exporter, cfg: cfg?, resource, compression, metrics })
    }

    /// Pushes every `interval` until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + self.cfg.interval, self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            self.push().await;
        }
    }

    /// One push of every series' current value; returns whether the endpoint accepted it.
    pub async fn push(&self) -> bool {
        let Some((points, started)) = self.post.flow_metric_points() else { return false };
        let n = points.len();
        let req = request(points, self.resource.clone(), started, SystemTime::now());
        let body = Bytes::from(compress(self.compression, &req.encode_to_vec()));
        let outcome = match self.exporter.post_once(&self.cfg.endpoint, body).await {
            Ok(response) => {
                match ExportMetricsServiceResponse::decode(response.as_ref()).ok().and_then(|r| r.partial_success) {
                    Some(p) if p.rejected_data_points > 0 => {
                        Err(format!("rejected {} data points: {}", p.rejected_data_points, p.error_message))
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => Err(e),
        };
        let f = &self.metrics.flow;
        match outcome {
            Ok(()) => {
                f.pushed("ok");
                f.otlp_points.set(n as i64);
                tracing::debug!(points = n, endpoint = %self.cfg.endpoint, "flow metrics pushed");
                true
            }
            Err(error) => {
                f.pushed("error");
                tracing::warn!(endpoint = %self.cfg.endpoint, error, "flow metrics push failed; the next push carries the totals");
                false
            }
        }
    }

    /// The last push, after the drain, bounded by `limit`.
    pub async fn final_push(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.push()).await;
    }
}
