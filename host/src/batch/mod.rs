//! Batching: log records become OTLP requests, flushed on count, bytes or delay, then queued for export.
//!
//! A request is encoded (and compressed) once here; the exporter only sends bytes, so retries cost no CPU and
//! the queue holds compact requests. Pushing into a full queue waits, which stops the pipeline and, behind it,
//! the Goldmane stream.

pub mod queue;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::BatchConfig;
use crate::sink::otlp::{Encoded, RequestEncoder};
pub use queue::{Queue, Weighted};

/// Overhead of one record inside a request beyond its own encoding (tag and length prefix).
const RECORD_FRAMING_BYTES: usize = 6;

/// Runs until `input` closes; flushes the last partial batch, then returns. Queue closing is the caller's job.
pub async fn run(
    cfg: BatchConfig,
    encoder: Arc<RequestEncoder>,
    mut input: mpsc::Receiver<Vec<LogRecord>>,
    queue: Arc<Queue<Encoded>>,
) {
    let mut pending: Vec<LogRecord> = Vec::with_capacity(cfg.max_records);
    let mut pending_bytes = 0usize;
    // The delay counts from the oldest record in the batch.
    let mut deadline: Option<Instant> = None;
    loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let records = tokio::select! {
            r = input.recv() => r,
            () = timer => {
                flush(&encoder, &queue, &mut pending, &mut pending_bytes).await;
                deadline = None;
                continue;
            }
        };
        let Some(records) = records else { break };
        for record in records {
            let size = record.encoded_len() + RECORD_FRAMING_BYTES;
            if !pending.is_empty() && pending_bytes + size > cfg.max_bytes {
                flush(&encoder, &queue, &mut pending, &mut pending_bytes).await;
            }
            if pending.is_empty() {
                deadline = Some(Instant::now() + cfg.delay.max(Duration::from_millis(1)));
            }
            pending.push(record);
            pending_bytes += size;
            if pending.len() >= cfg.max_records {
                flush(&encoder, &queue, &mut pending, &mut pending_bytes).await;
                deadline = None;
            }
        }
    }
    flush(&encoder, &queue, &mut pending, &mut pending_bytes).await;
}

async fn flush(
    encoder: &RequestEncoder,
    queue: &Queue<Encoded>,
    pending: &mut Vec<LogRecord>,
    pending_bytes: &mut usize,
) {
    if pending.is_empty() {
        return;
    }
    let records = std::mem::take(pending);
    *pending_bytes = 0;
    let encoded = encoder.encode(records);
    if let Err(lost) = queue.push(encoded).await {
        // Only after a failed shutdown drain: the queue was abandoned and its records already counted as dropped.
        tracing::error!(records = lost.records, "export queue closed before a batch could be queued");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Compression;
    use crate::pipeline::SEVERITY_INFO;
    use crate::sink::otlp::{resource, string_value};
    use crate::telemetry::Metrics;

    fn record(body_len: usize) -> LogRecord {
        LogRecord {
            severity_number: SEVERITY_INFO,
            body: Some(string_value("x".repeat(body_len))),
            ..LogRecord::default()
        }
    }

    async fn batches(cfg: BatchConfig, input: Vec<Vec<LogRecord>>, hold_open: Duration) -> Vec<Encoded> {
        let queue = Queue::new(usize::MAX, usize::MAX, Metrics::new());
        let encoder = Arc::new(RequestEncoder::new(resource(&[]), Compression::None));
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(run(cfg, encoder, rx, queue.clone()));
        for chunk in input {
            tx.send(chunk).await.unwrap();
        }
        tokio::time::sleep(hold_open).await;
        let before_close = queue.records();
        drop(tx);
        task.await.unwrap();
        queue.close();
        let mut out = Vec::new();
        while let Some(e) = queue.pop().await {
            out.push(e);
        }
        assert!(before_close <= out.iter().map(|e| e.records).sum());
        out
    }

    #[tokio::test]
    async fn flushes_on_count() {
        let cfg = BatchConfig { max_records: 10, max_bytes: 1 << 20, delay: Duration::from_secs(3600) };
        let out = batches(cfg, vec![(0..25).map(|_| record(10)).collect()], Duration::ZERO).await;
        assert_eq!(out.iter().map(|e| e.records).collect::<Vec<_>>(), vec![10, 10, 5]);
    }

    #[tokio::test]
    async fn flushes_on_bytes_before_the_limit_is_crossed() {
        let cfg = BatchConfig { max_records: 1_000, max_bytes: 10_000, delay: Duration::from_secs(3600) };
        let out = batches(cfg, vec![(0..10).map(|_| record(3_000)).collect()], Duration::ZERO).await;
        assert_eq!(out.iter().map(|e| e.records).sum::<usize>(), 10);
        for e in &out {
            assert!(e.raw_bytes <= 10_000 + 200, "a request of {} bytes", e.raw_bytes);
        }
        assert_eq!(out.iter().map(|e| e.records).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
    }

    #[tokio::test]
    async fn flushes_a_partial_batch_after_the_delay() {
        let cfg = BatchConfig { max_records: 1_000, max_bytes: 1 << 20, delay: Duration::from_millis(50) };
        let queue = Queue::new(usize::MAX, usize::MAX, Metrics::new());
        let encoder = Arc::new(RequestEncoder::new(resource(&[]), Compression::None));
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(run(cfg, encoder, rx, queue.clone()));
        tx.send(vec![record(10), record(10)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Still open: only the delay can have flushed it.
        assert_eq!(queue.records(), 2);
        drop(tx);
        task.await.unwrap();
    }
}
