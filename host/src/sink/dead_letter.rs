//! The dead-letter stream's export task: takes dead letters from the bounded channel the data path offers them
//! to ([`crate::dead_letter`]), in batches of up to [`DEAD_LETTER_BATCH_RECORDS`], and POSTs them as OTLP logs to
//! `dead_letter.endpoint` with an exporter of its own (its TLS, headers and timeout; the main endpoint's
//! compression and resource). Retryable failures (unreachable, 429, 502-504) are retried with backoff while the
//! channel fills behind it (and then drops, counted, at the offering end); permanent ones are counted and
//! logged. Once the main data path has drained, what is left gets one attempt, and what fails is counted lost.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Attempt, Exporter, SinkError};
use crate::backoff::{Backoff, Jitter};
use crate::config::{Config, DEAD_LETTER_BATCH_RECORDS, DeadLetterConfig, MAX_RETRY_AFTER_MS, OtlpConfig};
use crate::dead_letter::DeadLetterStream;
use crate::otlp::{RequestEncoder, resource};
use crate::telemetry::{Metrics, StreamOutcome};

/// The exporter for the dead-letter endpoint: the main endpoint's settings with its own URL, headers, timeout
/// and TLS files. Built (and its TLS files read) at startup, so a bad file fails there, named.
pub fn exporter(cfg: &Config, d: &DeadLetterConfig, metrics: Arc<Metrics>) -> Result<Exporter, SinkError> {
    let otlp = OtlpConfig {
        endpoint: d.endpoint.clone(),
        headers: d.headers.clone(),
        timeout: d.timeout,
        tls: d.tls.clone(),
        max_in_flight: 1,
        dead_letter_path: None,
        ..cfg.otlp.clone()
    };
    let encoder = Arc::new(RequestEncoder::new(resource(&otlp.resource_attributes), otlp.compression));
    Exporter::new(&otlp, encoder, metrics)
}

/// Sends dead letters until `stop` (the main data path has drained), then gives what is left one attempt.
pub async fn run(
    stream: Arc<DeadLetterStream>,
    mut rx: mpsc::Receiver<LogRecord>,
    exporter: Arc<Exporter>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            r = rx.recv() => r,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let records = batch(first, &mut rx);
        send(&stream, &exporter, &metrics, records, &stop).await;
    }
    rx.close();
    while let Ok(first) = rx.try_recv() {
        let records = batch(first, &mut rx);
        send(&stream, &exporter, &metrics, records, &stop).await;
    }
}

fn batch(first: LogRecord, rx: &mut mpsc::Receiver<LogRecord>) -> Vec<LogRecord> {
    let mut records = vec![first];
    while records.len() < DEAD_LETTER_BATCH_RECORDS {
        match rx.try_recv() {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
    }
    records
}

/// Delivers one batch: exported, rejected, or (once `stop` fired and an attempt failed) lost at shutdown.
async fn send(
    stream: &DeadLetterStream,
    exporter: &Exporter,
    metrics: &Metrics,
    records: Vec<LogRecord>,
    stop: &CancellationToken,
) {
    let n = records.len() as u64;
    let batch = exporter.encoder.encode_log_records(records);
    let mut backoff = Backoff::new(exporter.retry_initial, exporter.retry_max, Jitter::Full);
    loop {
        match exporter.post(&batch).await {
            Attempt::Ok { rejected, message } => {
                let rejected = rejected.min(n);
                if rejected > 0 {
                    stream.settled(StreamOutcome::Rejected, rejected);
                    exporter.log_once(format!("dead letters partial_success: {message}"), || {
                        tracing::warn!(rejected, message, endpoint = %exporter.endpoint, "dead-letter endpoint rejected part of a batch")
                    });
                }
                stream.settled(StreamOutcome::Exported, n - rejected);
                return;
            }
            Attempt::Retry { reason, after } => {
                metrics.dead_letter_stream_retries.inc();
                if stop.is_cancelled() {
                    stream.settled(StreamOutcome::Shutdown, n);
                    tracing::error!(records = n, reason, endpoint = %exporter.endpoint, "dead letters lost at shutdown: the dead-letter endpoint did not take them");
                    return;
                }
                let wait = match after {
                    Some(after) => after.min(Duration::from_millis(MAX_RETRY_AFTER_MS)),
                    None => backoff.next_wait(),
                };
                // Cut short by the stop, for the one last attempt.
                let _ = stop.run_until_cancelled(tokio::time::sleep(wait)).await;
            }
            Attempt::TooLarge => {
                stream.settled(StreamOutcome::Rejected, n);
                exporter.log_once("dead letters 413".to_string(), || {
                    tracing::error!(records = n, endpoint = %exporter.endpoint, "dead-letter endpoint answers 413 (too large); dead letters dropped")
                });
                return;
            }
            Attempt::Permanent { status, message } => {
                stream.settled(StreamOutcome::Rejected, n);
                exporter.log_once(format!("dead letters {status} {message}"), || {
                    tracing::error!(status = status.as_u16(), message, records = n, endpoint = %exporter.endpoint, "dead-letter endpoint rejected dead letters permanently")
                });
                return;
            }
        }
    }
}
