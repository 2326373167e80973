//! Dead letters as an OTLP logs stream (`dead_letter.endpoint`): the flows the `dead-letter` failure policy sets
//! aside and the records the main endpoint rejects permanently, as log records for a second endpoint.
//!
//! The handle here is what the data path holds: offering a dead letter never waits. A bounded channel
//! (`dead_letter.max_records`) stands between it and the export task (`sink::dead_letter`); when the channel is
//! full (the endpoint is slow or down) the new dead letter is dropped and counted
//! (`flowgate_dead_letter_stream_records_total{outcome="queue_full"}`).
//!
//! A dead letter's body is the flow's JSON body, as the old exporter renders it (for a rejected record, its own
//! body); its attributes say why:
//! - [`REASON_ATTRIBUTE`]: `transform` (a failure policy) or `rejected` (the main endpoint);
//! - [`ERROR_ATTRIBUTE`]: the transform's error or the endpoint's answer;
//! - [`TRANSFORM_ATTRIBUTE`] and [`DIGEST_ATTRIBUTE`] (`sha256:<hex>`): the transform that failed;
//! - [`STATUS_ATTRIBUTE`]: the HTTP status of a rejection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tokio::sync::mpsc;

use crate::otlp::{string_kv, string_value};
use crate::telemetry::{Metrics, StreamOutcome};

pub const REASON_ATTRIBUTE: &str = "flowgate.dead_letter.reason";
pub const ERROR_ATTRIBUTE: &str = "flowgate.dead_letter.error";
pub const TRANSFORM_ATTRIBUTE: &str = "flowgate.transform.name";
pub const DIGEST_ATTRIBUTE: &str = "flowgate.transform.digest";
pub const STATUS_ATTRIBUTE: &str = "http.response.status_code";

/// OTLP `SEVERITY_NUMBER_WARN`: a dead letter is a flow that did not go where it should have.
const SEVERITY_WARN: (i32, &str) = (13, "WARN");

/// The data path's side of the stream. Cheap to share.
pub struct DeadLetterStream {
    tx: mpsc::Sender<LogRecord>,
    /// Offered and not yet settled (exported, rejected or lost at shutdown).
    pending: AtomicU64,
    metrics: Arc<Metrics>,
}

impl DeadLetterStream {
    /// The handle, and the receiver the export task drains.
    pub fn channel(max_records: usize, metrics: Arc<Metrics>) -> (Arc<Self>, mpsc::Receiver<LogRecord>) {
        let (tx, rx) = mpsc::channel(max_records.max(1));
        (Arc::new(DeadLetterStream { tx, pending: AtomicU64::new(0), metrics }), rx)
    }

    /// A flow a transform failed on, under the `dead-letter` policy; `body` is its JSON body.
    pub fn transform_failure(&self, transform: &str, digest: &str, error: &str, body: String) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        self.offer(LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: SEVERITY_WARN.0,
            severity_text: SEVERITY_WARN.1.to_string(),
            body: Some(string_value(body)),
            attributes: vec![
                string_kv(REASON_ATTRIBUTE, "transform"),
                string_kv(ERROR_ATTRIBUTE, error),
                string_kv(TRANSFORM_ATTRIBUTE, transform),
                string_kv(DIGEST_ATTRIBUTE, digest),
            ],
            ..LogRecord::default()
        });
    }

    /// Records the main endpoint rejected permanently with `status`: each keeps its body, attributes and
    /// timestamps, and says why.
    pub fn rejected(&self, records: Vec<LogRecord>, status: u16, error: &str) {
        for mut r in records {
            r.attributes.push(string_kv(REASON_ATTRIBUTE, "rejected"));
            r.attributes.push(string_kv(ERROR_ATTRIBUTE, error));
            r.attributes.push(KeyValue {
                key: STATUS_ATTRIBUTE.to_string(),
                value: Some(AnyValue { value: Some(any_value::Value::IntValue(status.into())) }),
                ..KeyValue::default()
            });
            self.offer(r);
        }
    }

    /// Never waits: a full channel drops the dead letter, counted.
    fn offer(&self, record: LogRecord) {
        match self.tx.try_send(record) {
            Ok(()) => {
                self.pending.fetch_add(1, Ordering::Relaxed);
                self.metrics.dead_letter_queued(1);
            }
            Err(mpsc::error::TrySendError::Full(_)) => self.metrics.dead_letter_stream(StreamOutcome::QueueFull, 1),
            Err(mpsc::error::TrySendError::Closed(_)) => self.metrics.dead_letter_stream(StreamOutcome::Shutdown, 1),
        }
    }

    /// `n` offered dead letters met their `outcome`.
    pub fn settled(&self, outcome: StreamOutcome, n: u64) {
        self.pending.fetch_sub(n, Ordering::Relaxed);
        self.metrics.dead_letter_queued(-(n as i64));
        self.metrics.dead_letter_stream(outcome, n);
    }

    /// Offered and not yet settled.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }
}
