//! Batching: log records become OTLP requests, flushed on count, bytes or delay, then queued for export.
//!
//! A request is encoded (and compressed) once here; the exporter only sends bytes, so retries cost no CPU and
//! the queue holds compact requests. Pushing into a full queue waits, which stops the pipeline and, behind it,
//! the Goldmane stream.

pub mod disk;
pub mod queue;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::BatchConfig;
use crate::pipeline::Records;
use crate::sink::otlp::{Encoded, RequestEncoder};
use crate::source::Progress;
pub use queue::{Queue, Weighted};

/// Where encoded batches wait for the exporters: in memory (the default) or on disk.
#[derive(Clone)]
pub enum ExportQueue {
    Memory(Arc<Queue<Encoded>>),
    Disk(Arc<disk::DiskQueue>),
}

/// A batch taken for export; give it back with [`ExportQueue::done`].
pub struct Ticket {
    bytes: usize,
    records: usize,
    seq: Option<u64>,
}

impl ExportQueue {
    pub async fn push(&self, e: Encoded) -> Result<(), Encoded> {
        match self {
            ExportQueue::Memory(q) => q.push(e).await,
            ExportQueue::Disk(q) => q.push(e).await,
        }
    }

    pub async fn pop(&self) -> Option<(Encoded, Ticket)> {
        match self {
            ExportQueue::Memory(q) => q.pop().await.map(|e| {
                let t = Ticket { bytes: e.body.len(), records: e.records, seq: None };
                (e, t)
            }),
            ExportQueue::Disk(q) => q.pop().await.map(|t| {
                let ticket = Ticket { bytes: t.encoded.body.len(), records: t.encoded.records, seq: Some(t.seq) };
                (t.encoded, ticket)
            }),
        }
    }

    /// The batch is exported or permanently rejected: never to be sent again.
    pub fn done(&self, t: Ticket) {
        match (self, t.seq) {
            (ExportQueue::Disk(q), Some(seq)) => q.ack(seq),
            (ExportQueue::Memory(q), _) => q.release(t.bytes, t.records),
            (ExportQueue::Disk(_), None) => {}
        }
    }

    pub fn close(&self) {
        match self {
            ExportQueue::Memory(q) => q.close(),
            ExportQueue::Disk(q) => q.close(),
        }
    }

    /// After a drain ran out of time: the memory queue empties (its records are lost); the disk queue keeps
    /// them for the next start. Returns whether records were lost.
    pub fn abandon(&self) -> bool {
        match self {
            ExportQueue::Memory(q) => {
                q.abandon();
                true
            }
            ExportQueue::Disk(q) => {
                q.close();
                false
            }
        }
    }

    pub fn records(&self) -> usize {
        match self {
            ExportQueue::Memory(q) => q.records(),
            ExportQueue::Disk(q) => q.records(),
        }
    }
}

/// Overhead of one record inside a request beyond its own encoding (tag and length prefix).
const RECORD_FRAMING_BYTES: usize = 6;

/// Runs until `input` closes; flushes the last partial batch, then returns. Queue closing is the caller's job.
///
/// With `progress`, source chunks are reported persisted once every record they produced is in the queue.
pub async fn run(
    cfg: BatchConfig,
    encoder: Arc<RequestEncoder>,
    mut input: mpsc::Receiver<Records>,
    queue: ExportQueue,
    progress: Option<Arc<Progress>>,
) {
    // Chunks whose records are all in `pending` (or already queued).
    let mut unflushed: Vec<u64> = Vec::new();
    let persisted = |chunks: &mut Vec<u64>| {
        if let Some(p) = &progress {
            p.persisted(chunks);
        }
        chunks.clear();
    };
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
                persisted(&mut unflushed);
                deadline = None;
                continue;
            }
        };
        let Some(Records { records, chunks }) = records else { break };
        for record in records {
            let size = record.encoded_len() + RECORD_FRAMING_BYTES;
            if !pending.is_empty() && pending_bytes + size > cfg.max_bytes {
                flush(&encoder, &queue, &mut pending, &mut pending_bytes).await;
                persisted(&mut unflushed);
            }
            if pending.is_empty() {
                deadline = Some(Instant::now() + cfg.delay.max(Duration::from_millis(1)));
            }
            pending.push(record);
            pending_bytes += size;
            if pending.len() >= cfg.max_records {
                flush(&encoder, &queue, &mut pending, &mut pending_bytes).await;
                persisted(&mut unflushed);
                deadline = None;
            }
        }
        unflushed.extend(chunks);
        if pending.is_empty() {
            persisted(&mut unflushed);
        }
    }
    flush(&encoder, &queue, &mut pending, &mut pending_bytes).await;
    persisted(&mut unflushed);
    if let Some(p) = &progress {
        p.flush();
    }
}

async fn flush(encoder: &RequestEncoder, queue: &ExportQueue, pending: &mut Vec<LogRecord>, pending_bytes: &mut usize) {
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
        let task = tokio::spawn(run(cfg, encoder, rx, ExportQueue::Memory(queue.clone()), None));
        for chunk in input {
            tx.send(Records { records: chunk, chunks: vec![] }).await.unwrap();
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
        let task = tokio::spawn(run(cfg, encoder, rx, ExportQueue::Memory(queue.clone()), None));
        tx.send(Records { records: vec![record(10), record(10)], chunks: vec![] }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Still open: only the delay can have flushed it.
        assert_eq!(queue.records(), 2);
        drop(tx);
        task.await.unwrap();
    }
}
