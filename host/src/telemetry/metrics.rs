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

use crate::config::FailurePolicy;

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
    /// A transform dropped it (a `drop` outcome, or its failure policy).
    Transform,
    /// The persistent queue was full under `when_full: drop-oldest`.
    QueueFull,
    /// A batch on disk failed its checksum.
    Corrupt,
}

/// What became of dead letters: the `outcome` label of `flowgate_dead_letter_stream_records_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamOutcome {
    /// Accepted by the dead-letter endpoint.
    Exported,
    /// Dropped as it was offered: the channel to the endpoint was full.
    QueueFull,
    /// The dead-letter endpoint refused it permanently (or in `partial_success`).
    Rejected,
    /// Still waiting when the gateway stopped.
    Shutdown,
}

impl StreamOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamOutcome::Exported => "exported",
            StreamOutcome::QueueFull => "queue_full",
            StreamOutcome::Rejected => "rejected",
            StreamOutcome::Shutdown => "shutdown",
        }
    }
}

/// What happened to flows at a transform: the `kind` label of `flowgate_transform_flows_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransformEvent {
    /// Handed to the transform.
    In,
    /// Passed on by it (expansions included).
    Out,
    /// Dropped by its own decision (`drop`, or an `expand` into nothing).
    Dropped,
    /// Records beyond one made by `expand`.
    Expanded,
}

impl TransformEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TransformEvent::In => "in",
            TransformEvent::Out => "out",
            TransformEvent::Dropped => "dropped",
            TransformEvent::Expanded => "expanded",
        }
    }
}

/// Why a transform failed: the `kind` label of `flowgate_transform_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransformError {
    /// The guest answered `error` for a flow.
    GuestError,
    /// A trap other than the two below (a panic, `unreachable`, a broken contract).
    Trap,
    /// The per-call deadline passed.
    Deadline,
    /// The memory cap was hit.
    Memory,
    /// `init` refused the configuration when instantiating again.
    Init,
    /// Flows not given to a quarantined transform (one per call skipped).
    Quarantined,
    /// The transform entered quarantine.
    QuarantineEntered,
}

impl TransformError {
    pub fn as_str(self) -> &'static str {
        match self {
            TransformError::GuestError => "guest_error",
            TransformError::Trap => "trap",
            TransformError::Deadline => "deadline",
            TransformError::Memory => "memory",
            TransformError::Init => "init",
            TransformError::Quarantined => "quarantined",
            TransformError::QuarantineEntered => "quarantine_entered",
        }
    }
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Rejected => "rejected",
            DropReason::PartialSuccess => "partial_success",
            DropReason::TooLarge => "too_large",
            DropReason::Shutdown => "shutdown",
            DropReason::Malformed => "malformed",
            DropReason::Transform => "transform",
            DropReason::QueueFull => "queue_full",
            DropReason::Corrupt => "corrupt",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
    /// `true` for a transform's own decision to drop; `false` for every loss (errors, fail-closed, rejections).
    intentional: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    /// An HTTP status code, or `connect` / `timeout` / `io`.
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    /// From config or file names, never from flow data.
    transform: String,
    /// Guest-chosen, at most 32 per transform.
    name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransformLabels {
    transform: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransformKindLabels {
    transform: String,
    /// flows: a [`TransformEvent`]; errors: a [`TransformError`].
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    transform: String,
    /// The failure policy applied.
    policy: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DigestLabels {
    transform: String,
    digest: String,
    position: u64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LateLabels {
    /// `new` (a key Goldmane never streamed live) or `growth` (a key already exported whose counters grew).
    kind: &'static str,
    /// `list` (reconciliation) or `stream` (a backfill or a re-sent bucket).
    found_by: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    /// One of the allocator's figures (see `flowgate_allocator_bytes`).
    kind: &'static str,
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
    /// Records beyond one per flow, from transforms that expand.
    pub records_expanded: Counter,
    pub duplicates_skipped: Counter,
    flows_dropped: Family<ReasonLabel, Counter>,
    export_retries: Family<StatusLabel, Counter>,
    pub dead_lettered: Counter,
    dead_letter_stream: Family<OutcomeLabels, Counter>,
    pub dead_letter_stream_retries: Counter,
    /// Spans of the gateway's own traces dropped because their queue was full.
    pub telemetry_spans_dropped: Counter,
    /// Spans of the gateway's own traces whose export failed.
    pub telemetry_spans_failed: Counter,
    dead_letter_stream_queued: Gauge,
    pub reconnects: Counter,
    pub stream_connected: Gauge,
    pub queue_records: Gauge,
    pub queue_bytes: Gauge,
    pub export_duration: Histogram,
    last_message_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    allocator: Family<KindLabel, Gauge>,
    transform_counters: Family<CounterLabels, Counter>,
    transform_flows: Family<TransformKindLabels, Counter>,
    transform_errors: Family<TransformKindLabels, Counter>,
    transform_failures: Family<PolicyLabels, Counter>,
    transform_calls: Family<TransformLabels, Counter>,
    transform_duration: Family<TransformLabels, Histogram>,
    transform_reloads: Family<OutcomeLabels, Counter>,
    /// Transform components compiled for chains that were swapped in (a reload reuses unchanged ones).
    pub transform_compilations: Counter,
    transform_rollbacks: Family<TransformLabels, Counter>,
    transform_active: Family<DigestLabels, Gauge>,
    last_message_unix_ms: AtomicI64,
    exporter_failing: AtomicBool,
    /// Flow-derived metrics (policy, end-of-tier, traffic), filled when `flow_metrics` is on.
    pub flow: super::flow::FlowFamilies,
    pub aggregation_flows_in: Counter,
    pub aggregation_records_out: Counter,
    aggregation_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub aggregation_groups: Gauge,
    /// Records found in the persistent queue at startup.
    pub queue_replayed: Counter,
    pub queue_disk_errors: Counter,
    flows_late: Family<LateLabels, Counter>,
    reconcile_passes: Family<OutcomeLabels, Counter>,
    reconcile_listed: Counter,
    reconcile_ledger_entries: Gauge,
    reconcile_ledger_bytes: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("flowgate");
        let m = Metrics {
            flows_received: Counter::default(),
            flows_exported: Counter::default(),
            records_expanded: Counter::default(),
            duplicates_skipped: Counter::default(),
            flows_dropped: Family::default(),
            export_retries: Family::default(),
            dead_lettered: Counter::default(),
            dead_letter_stream: Family::default(),
            dead_letter_stream_retries: Counter::default(),
            telemetry_spans_dropped: Counter::default(),
            telemetry_spans_failed: Counter::default(),
            dead_letter_stream_queued: Gauge::default(),
            reconnects: Counter::default(),
            stream_connected: Gauge::default(),
            queue_records: Gauge::default(),
            queue_bytes: Gauge::default(),
            export_duration: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            last_message_age: Gauge::default(),
            allocator: Family::default(),
            transform_counters: Family::default(),
            transform_flows: Family::default(),
            transform_errors: Family::default(),
            transform_failures: Family::default(),
            transform_calls: Family::default(),
            transform_duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                ])
            }),
            transform_reloads: Family::default(),
            transform_compilations: Counter::default(),
            transform_rollbacks: Family::default(),
            transform_active: Family::default(),
            last_message_unix_ms: AtomicI64::new(0),
            exporter_failing: AtomicBool::new(false),
            flow: Default::default(),
            aggregation_flows_in: Counter::default(),
            aggregation_records_out: Counter::default(),
            aggregation_ratio: Gauge::default(),
            aggregation_groups: Gauge::default(),
            queue_replayed: Counter::default(),
            queue_disk_errors: Counter::default(),
            flows_late: Family::default(),
            reconcile_passes: Family::default(),
            reconcile_listed: Counter::default(),
            reconcile_ledger_entries: Gauge::default(),
            reconcile_ledger_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "flows_received",
            "Flows read from Goldmane: the stream, and late flows reconciliation found",
            m.flows_received.clone(),
        );
        registry.register(
            "flows_late",
            "Flows Goldmane held but never streamed live, found by reconciliation (found_by=list) or a backfill (found_by=stream); kind=growth: a key already exported whose counters grew",
            m.flows_late.clone(),
        );
        registry.register(
            "reconcile_passes",
            "Reconciliation passes (one bucket listed), by outcome (ok, error)",
            m.reconcile_passes.clone(),
        );
        registry.register(
            "reconcile_flows_listed",
            "Flows Goldmane's List returned to reconciliation (compared, mostly already exported)",
            m.reconcile_listed.clone(),
        );
        registry.register(
            "reconcile_ledger_entries",
            "(flow key, bucket) entries the reconciliation ledger holds over its window",
            m.reconcile_ledger_entries.clone(),
        );
        registry.register(
            "reconcile_ledger_bytes",
            "Memory the reconciliation ledger's entries take",
            m.reconcile_ledger_bytes.clone(),
        );
        registry.register("flows_exported", "Flows accepted by the OTLP endpoint", m.flows_exported.clone());
        registry.register(
            "records_expanded",
            "Records added by transforms that expand one flow into several",
            m.records_expanded.clone(),
        );
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
        registry.register("dead_letter_records", "Records written to the dead-letter file", m.dead_lettered.clone());
        registry.register(
            "dead_letter_stream_records",
            "Dead letters for the dead-letter endpoint by outcome (exported, queue_full, rejected, shutdown)",
            m.dead_letter_stream.clone(),
        );
        registry.register(
            "telemetry_spans_dropped",
            "Spans of Flowgate's own traces dropped: their export queue was full",
            m.telemetry_spans_dropped.clone(),
        );
        registry.register(
            "telemetry_spans_failed",
            "Spans of Flowgate's own traces whose export failed",
            m.telemetry_spans_failed.clone(),
        );
        registry.register(
            "dead_letter_stream_retries",
            "Requests to the dead-letter endpoint retried (unreachable, 429, 502-504)",
            m.dead_letter_stream_retries.clone(),
        );
        registry.register(
            "dead_letter_stream_queued_records",
            "Dead letters waiting for the dead-letter endpoint",
            m.dead_letter_stream_queued.clone(),
        );
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
        registry.register(
            "allocator_bytes",
            "The memory allocator's own accounting: allocated (live allocations), active (pages holding them), \
             resident (in RAM: active, metadata, and freed pages not yet returned), metadata, retained (returned \
             to the kernel, still mapped)",
            m.allocator.clone(),
        );
        registry.register(
            "transform_counter",
            "Counters transforms add to through the host's counter-add",
            m.transform_counters.clone(),
        );
        registry.register(
            "transform_flows",
            "Flows into and out of each transform (in, out, dropped, expanded)",
            m.transform_flows.clone(),
        );
        registry.register(
            "transform_errors",
            "Transform failures by kind (guest_error, trap, deadline, memory, init, quarantined)",
            m.transform_errors.clone(),
        );
        registry.register(
            "transform_failure_policy",
            "Flows that took a transform's failure policy, by policy",
            m.transform_failures.clone(),
        );
        registry.register("transform_calls", "process calls per transform", m.transform_calls.clone());
        registry.register(
            "transform_duration_seconds",
            "Time per transform per batch (bisection re-runs included)",
            m.transform_duration.clone(),
        );
        registry.register(
            "transform_reloads",
            "Chain reloads by outcome (swapped, unchanged, or why it was refused)",
            m.transform_reloads.clone(),
        );
        registry.register(
            "transform_compilations",
            "Transform components compiled for chains swapped in: a reload takes the serving chain's compiled code for \
             a component whose bytes did not change",
            m.transform_compilations.clone(),
        );
        registry.register(
            "transform_rollbacks",
            "Hot-swapped chains rolled back to the last good one, by the transform whose failures did it",
            m.transform_rollbacks.clone(),
        );
        registry.register(
            "transform_active",
            "1 for each component of the chain serving now, with its digest",
            m.transform_active.clone(),
        );
        m.flow.register(&mut registry);
        registry.register(
            "queue_replayed_records",
            "Records found in the persistent queue at startup, sent again",
            m.queue_replayed.clone(),
        );
        registry.register(
            "queue_disk_errors",
            "Failed writes to the persistent queue (disk full, I/O errors); the queue holds the stream back meanwhile",
            m.queue_disk_errors.clone(),
        );
        registry.register(
            "aggregation_flows_in",
            "Flows into the aggregation stage (in handed-on buckets)",
            m.aggregation_flows_in.clone(),
        );
        registry.register(
            "aggregation_records_out",
            "Merged records out of the aggregation stage",
            m.aggregation_records_out.clone(),
        );
        registry.register(
            "aggregation_reduction_ratio",
            "Flows per merged record in the last bucket handed on (1 = nothing merged)",
            m.aggregation_ratio.clone(),
        );
        registry.register(
            "aggregation_groups",
            "Merged records held, waiting for their bucket to close",
            m.aggregation_groups.clone(),
        );
        let info: Family<InfoLabels, Gauge> = Family::default();
        info.get_or_create(&InfoLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "Flowgate build", info);
        Arc::new(Metrics { registry, ..m })
    }

    /// Flows lost (not by a transform's own decision).
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.flows_dropped.get_or_create(&ReasonLabel { reason: reason.as_str(), intentional: "false" }).inc_by(n);
    }

    /// Flows a transform dropped: by its own decision (`intentional`), or by its failure policy.
    pub fn dropped_by_transform(&self, intentional: bool, n: u64) {
        let intentional = if intentional { "true" } else { "false" };
        let labels = ReasonLabel { reason: DropReason::Transform.as_str(), intentional };
        self.flows_dropped.get_or_create(&labels).inc_by(n);
    }

    /// Flows dropped for `reason`, intentionally or not.
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        ["true", "false"]
            .into_iter()
            .map(|intentional| {
                self.flows_dropped.get_or_create(&ReasonLabel { reason: reason.as_str(), intentional }).get()
            })
            .sum()
    }

    /// Flows a transform dropped by its own decision (`true`) or by its failure policy (`false`).
    pub fn dropped_by_transform_count(&self, intentional: bool) -> u64 {
        let intentional = if intentional { "true" } else { "false" };
        self.flows_dropped.get_or_create(&ReasonLabel { reason: DropReason::Transform.as_str(), intentional }).get()
    }

    /// Records received or made (expansions) and not yet accounted for (exported, skipped as duplicates, dropped,
    /// merged by aggregation): those still in the gateway. Shutdown counts them as lost if the grace period runs out.
    pub fn in_gateway(&self) -> u64 {
        let dropped: u64 = [
            DropReason::Rejected,
            DropReason::PartialSuccess,
            DropReason::TooLarge,
            DropReason::Malformed,
            DropReason::Transform,
            DropReason::QueueFull,
            DropReason::Corrupt,
        ]
        .into_iter()
        .map(|r| self.dropped_count(r))
        .sum();
        let merged = self.aggregation_flows_in.get().saturating_sub(self.aggregation_records_out.get());
        let done = self.flows_exported.get() + self.duplicates_skipped.get() + dropped + merged;
        (self.flows_received.get() + self.records_expanded.get()).saturating_sub(done)
    }

    /// A bucket left aggregation: `flows_in` flows became `records_out` records.
    pub fn aggregated(&self, flows_in: u64, records_out: u64) {
        self.aggregation_flows_in.inc_by(flows_in);
        self.aggregation_records_out.inc_by(records_out);
        self.aggregation_ratio.set(flows_in as f64 / records_out.max(1) as f64);
    }

    pub fn expanded(&self, n: u64) {
        self.records_expanded.inc_by(n);
    }

    pub fn transform_flows(&self, transform: &str, event: TransformEvent, n: u64) {
        counter(&self.transform_flows, transform, event.as_str()).inc_by(n);
    }

    pub fn transform_flows_count(&self, transform: &str, event: TransformEvent) -> u64 {
        counter(&self.transform_flows, transform, event.as_str()).get()
    }

    pub fn transform_error(&self, transform: &str, error: TransformError) {
        counter(&self.transform_errors, transform, error.as_str()).inc();
    }

    pub fn transform_errors_count(&self, transform: &str, error: TransformError) -> u64 {
        counter(&self.transform_errors, transform, error.as_str()).get()
    }

    pub fn transform_failure(&self, transform: &str, policy: FailurePolicy) {
        let labels = PolicyLabels { transform: transform.into(), policy: policy.as_str() };
        self.transform_failures.get_or_create(&labels).inc();
    }

    pub fn transform_failures_count(&self, transform: &str, policy: FailurePolicy) -> u64 {
        self.transform_failures
            .get_or_create(&PolicyLabels { transform: transform.into(), policy: policy.as_str() })
            .get()
    }

    pub fn transform_calls(&self, transform: &str) {
        self.transform_calls.get_or_create(&TransformLabels { transform: transform.into() }).inc();
    }

    pub fn transform_duration(&self, transform: &str, d: std::time::Duration) {
        self.transform_duration
            .get_or_create(&TransformLabels { transform: transform.into() })
            .observe(d.as_secs_f64());
    }

    pub fn transform_reload(&self, outcome: &'static str) {
        self.transform_reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn transform_reloads_count(&self, outcome: &'static str) -> u64 {
        self.transform_reloads.get_or_create(&OutcomeLabels { outcome }).get()
    }

    pub fn dead_letter_stream(&self, outcome: StreamOutcome, n: u64) {
        self.dead_letter_stream.get_or_create(&OutcomeLabels { outcome: outcome.as_str() }).inc_by(n);
    }

    pub fn dead_letter_stream_count(&self, outcome: StreamOutcome) -> u64 {
        self.dead_letter_stream.get_or_create(&OutcomeLabels { outcome: outcome.as_str() }).get()
    }

    pub fn dead_letter_queued(&self, delta: i64) {
        self.dead_letter_stream_queued.inc_by(delta);
    }

    pub fn transform_rollback(&self, transform: &str) {
        self.transform_rollbacks.get_or_create(&TransformLabels { transform: transform.into() }).inc();
    }

    pub fn transform_rollbacks_count(&self, transform: &str) -> u64 {
        self.transform_rollbacks.get_or_create(&TransformLabels { transform: transform.into() }).get()
    }

    /// Replaces the active-chain info series with `entries` (name, digest) in order.
    pub fn set_active_chain(&self, entries: &[(String, String)]) {
        self.transform_active.clear();
        for (position, (transform, digest)) in entries.iter().enumerate() {
            self.transform_active
                .get_or_create(&DigestLabels {
                    transform: transform.clone(),
                    digest: digest.clone(),
                    position: position as u64,
                })
                .set(1);
        }
    }

    pub fn transform_counter_value(&self, transform: &str, name: &str) -> u64 {
        self.transform_counters.get_or_create(&CounterLabels { transform: transform.into(), name: name.into() }).get()
    }

    pub fn transform_counter(&self, transform: &str, name: &str, delta: u64) {
        self.transform_counters
            .get_or_create(&CounterLabels { transform: transform.into(), name: name.into() })
            .inc_by(delta);
    }

    pub fn retry(&self, status: &str) {
        self.export_retries.get_or_create(&StatusLabel { status: status.to_string() }).inc();
    }

    pub fn retries_count(&self, status: &str) -> u64 {
        self.export_retries.get_or_create(&StatusLabel { status: status.to_string() }).get()
    }

    pub fn flows_late(&self, kind: &'static str, found_by: &'static str) {
        self.flows_late.get_or_create(&LateLabels { kind, found_by }).inc();
    }

    /// Late flows of a kind, found either way.
    pub fn flows_late_count(&self, kind: &'static str) -> u64 {
        ["list", "stream"]
            .map(|found_by| self.flows_late.get_or_create(&LateLabels { kind, found_by }).get())
            .iter()
            .sum()
    }

    pub fn reconcile_pass(&self, ok: bool) {
        self.reconcile_passes.get_or_create(&OutcomeLabels { outcome: if ok { "ok" } else { "error" } }).inc();
    }

    pub fn reconcile_passes_count(&self, ok: bool) -> u64 {
        self.reconcile_passes.get_or_create(&OutcomeLabels { outcome: if ok { "ok" } else { "error" } }).get()
    }

    pub fn reconcile_listed(&self, n: u64) {
        self.reconcile_listed.inc_by(n);
    }

    pub fn reconcile_ledger(&self, entries: usize, bytes: usize) {
        self.reconcile_ledger_entries.set(entries as i64);
        self.reconcile_ledger_bytes.set(bytes as i64);
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
        if let Some(a) = super::allocator::stats() {
            for (kind, bytes) in [
                ("allocated", a.allocated),
                ("active", a.active),
                ("resident", a.resident),
                ("metadata", a.metadata),
                ("retained", a.retained),
            ] {
                self.allocator.get_or_create(&KindLabel { kind }).set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The counter of one (transform, kind) series.
fn counter(family: &Family<TransformKindLabels, Counter>, transform: &str, kind: &'static str) -> Counter {
    family.get_or_create(&TransformKindLabels { transform: transform.into(), kind }).clone()
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
