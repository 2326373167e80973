//! The gateway's own metrics: names are defined here and nowhere else.
//!
//! Counters are named `flowgate_<noun>_total` (prometheus-client appends `_total`); labels are bounded sets
//! (reasons and statuses are enumerated in code, never taken from data).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Why flows left the pipeline without being exported. A bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The endpoint rejected the batch permanently (4xx other than 413/429, or 5xx other than 502/503/504).
    Rejected,
    /// The endpoint accepted the request but reported rejected records in `partial_success`.
    PartialSuccess,
    /// A single record larger than the endpoint accepts (413 on a batch of one).
    TooLarge,
    /// Still queued when the shutdown grace period ran out.
    Shutdown,
    /// Bytes from Goldmane that are not a valid `goldmane.Flow`.
    Malformed,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Rejected => "rejected",
            DropReason::PartialSuccess => "partial_success",
            DropReason::TooLarge => "too_large",
            DropReason::Shutdown => "shutdown",
            DropReason::Malformed => "malformed",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    /// An HTTP status code, or `connect` / `timeout` / `io`.
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    version: &'static str,
}

/// All gateway metrics, plus the health flags the probes read.
pub struct Metrics {
    registry: Registry,
    pub flows_received: Counter,
    pub flows_exported: Counter,
    pub duplicates_skipped: Counter,
    flows_dropped: Family<ReasonLabel, Counter>,
    export_retries: Family<StatusLabel, Counter>,
    pub export_requests: Counter,
    pub dead_lettered: Counter,
    pub reconnects: Counter,
    pub stream_connected: Gauge,
    pub queue_records: Gauge,
    pub queue_bytes: Gauge,
    pub export_duration: Histogram,
    last_message_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_message_unix_ms: AtomicI64,
    exporter_failing: AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("flowgate");
        let m = Metrics {
            flows_received: Counter::default(),
            flows_exported: Counter::default(),
            duplicates_skipped: Counter::default(),
            flows_dropped: Family::default(),
            export_retries: Family::default(),
            export_requests: Counter::default(),
            dead_lettered: Counter::default(),
            reconnects: Counter::default(),
            stream_connected: Gauge::default(),
            queue_records: Gauge::default(),
            queue_bytes: Gauge::default(),
            export_duration: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            last_message_age: Gauge::default(),
            last_message_unix_ms: AtomicI64::new(0),
            exporter_failing: AtomicBool::new(false),
            registry: Registry::default(),
        };
        registry.register("flows_received", "Flows read from the Goldmane stream", m.flows_received.clone());
        registry.register("flows_exported", "Flows accepted by the OTLP endpoint", m.flows_exported.clone());
        registry.register(
            "flows_duplicate",
            "Flows skipped because their (key, bucket) was already received (after a resume)",
            m.duplicates_skipped.clone(),
        );
        registry.register("flows_dropped", "Flows not exported, by reason", m.flows_dropped.clone());
        registry.register(
            "export_retries",
            "OTLP requests retried, by HTTP status or connect/timeout/io",
            m.export_retries.clone(),
        );
        registry.register("export_requests", "OTLP requests that succeeded", m.export_requests.clone());
        registry.register("dead_letter_records", "Records written to the dead-letter file", m.dead_lettered.clone());
        registry.register(
            "source_reconnects",
            "Goldmane stream (re)connection attempts after a drop",
            m.reconnects.clone(),
        );
        registry.register("source_connected", "1 while the Goldmane stream is open", m.stream_connected.clone());
        registry.register("queue_records", "Records waiting in the export queue", m.queue_records.clone());
        registry.register("queue_bytes", "Encoded bytes waiting in the export queue", m.queue_bytes.clone());
        registry.register("export_duration_seconds", "Latency of successful OTLP requests", m.export_duration.clone());
        registry.register(
            "source_last_message_age_seconds",
            "Seconds since the last message on the Goldmane stream (a quiet cluster is normal)",
            m.last_message_age.clone(),
        );
        let info: Family<InfoLabels, Gauge> = Family::default();
        info.get_or_create(&InfoLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "Flowgate build", info);
        Arc::new(Metrics { registry, ..m })
    }

    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.flows_dropped.get_or_create(&ReasonLabel { reason: reason.as_str() }).inc_by(n);
    }

    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.flows_dropped.get_or_create(&ReasonLabel { reason: reason.as_str() }).get()
    }

    /// Flows received and not yet accounted for (exported, skipped as duplicates or dropped): those still in the
    /// gateway. Shutdown counts them as lost if the grace period runs out.
    pub fn in_gateway(&self) -> u64 {
        let dropped: u64 =
            [DropReason::Rejected, DropReason::PartialSuccess, DropReason::TooLarge, DropReason::Malformed]
                .into_iter()
                .map(|r| self.dropped_count(r))
                .sum();
        let done = self.flows_exported.get() + self.duplicates_skipped.get() + dropped;
        self.flows_received.get().saturating_sub(done)
    }

    pub fn retry(&self, status: &str) {
        self.export_retries.get_or_create(&StatusLabel { status: status.to_string() }).inc();
    }

    pub fn retries_count(&self, status: &str) -> u64 {
        self.export_retries.get_or_create(&StatusLabel { status: status.to_string() }).get()
    }

    pub fn message_seen(&self) {
        self.last_message_unix_ms.store(unix_ms(), Ordering::Relaxed);
    }

    pub fn set_exporter_failing(&self, failing: bool) {
        self.exporter_failing.store(failing, Ordering::Relaxed);
    }

    /// Ready: the stream is open and the exporter is not failing permanently.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.stream_connected.get() == 0 {
            return Err("Goldmane stream not established");
        }
        if self.exporter_failing.load(Ordering::Relaxed) {
            return Err("OTLP endpoint rejects every request permanently");
        }
        Ok(())
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let last = self.last_message_unix_ms.load(Ordering::Relaxed);
        let age = if last == 0 { f64::NAN } else { (unix_ms() - last).max(0) as f64 / 1000.0 };
        self.last_message_age.set(age);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
