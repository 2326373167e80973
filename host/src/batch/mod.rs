//! Batching: log records become OTLP requests, flushed on count, bytes or delay, then queued for export.
//!
//! A request is encoded (and compressed) once here; the exporter only sends bytes, so retries cost no CPU and
//! the queue holds compact requests. Pushing into a full queue waits, which stops the pipeline and, behind it,
//! the Goldmane stream.
//!
//! The stream cursor moves over source chunks whose records are safe: in the persistent queue once pushed, in
//! the in-memory queue once the endpoint took every batch up to the one that completed them (acknowledged).

pub mod disk;
pub mod queue;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::BatchConfig;
use crate::otlp::{Encoded, EncodedRecords, RequestEncoder};
use crate::pipeline::Records;
use crate::source::Progress;
pub use queue::{Queue, Weighted};

/// Where encoded batches wait for the exporters: in memory (the default) or on disk.
#[derive(Clone)]
pub enum ExportQueue {
    /// With acknowledgements tracked when a stream cursor is kept beside it.
    Memory(Arc<Queue<Encoded>>, Option<Arc<Acks>>),
    Disk(Arc<disk::DiskQueue>),
}

/// Moves the stream cursor over chunks once the endpoint acknowledged every batch up to the one that completed
/// them (batches finish out of order; a chunk's records may span batches before it).
pub struct Acks {
    progress: Arc<Progress>,
    inner: Mutex<AckState>,
}

#[derive(Default)]
struct AckState {
    next: u64,
    /// Every batch up to this one is acknowledged.
    prefix: u64,
    done: BTreeSet<u64>,
    /// Chunks completed by each batch not yet under the prefix.
    chunks: BTreeMap<u64, Vec<u64>>,
}

impl Acks {
    pub fn new(progress: Arc<Progress>) -> Arc<Self> {
        Arc::new(Acks { progress, inner: Mutex::new(AckState { next: 1, ..AckState::default() }) })
    }

    /// Numbers the next batch.
    fn number(&self) -> u64 {
        let mut s = self.inner.lock().expect("acks lock");
        let n = s.next;
        s.next += 1;
        n
    }

    /// `chunks` are complete once batch `batch` (and every earlier one) is acknowledged; batch 0: the last
    /// numbered one (chunks whose records all went before, or were dropped).
    fn completes(&self, batch: u64, chunks: &mut Vec<u64>) {
        if chunks.is_empty() {
            return;
        }
        let ready = {
            let mut s = self.inner.lock().expect("acks lock");
            let batch = if batch == 0 { s.next - 1 } else { batch };
            if batch <= s.prefix {
                std::mem::take(chunks)
            } else {
                s.chunks.entry(batch).or_default().append(chunks);
                Vec::new()
            }
        };
        self.progress.persisted(&ready);
    }

    fn acked(&self, batch: u64) {
        let ready = {
            let mut guard = self.inner.lock().expect("acks lock");
            let s = &mut *guard;
            s.done.insert(batch);
            while s.done.remove(&(s.prefix + 1)) {
                s.prefix += 1;
            }
            let later = s.chunks.split_off(&(s.prefix + 1));
            let ready: Vec<u64> = std::mem::replace(&mut s.chunks, later).into_values().flatten().collect();
            ready
        };
        self.progress.persisted(&ready);
    }
}

/// A batch taken for export; give it back with [`ExportQueue::done`].
pub enum Ticket {
    /// Its weight in the in-memory queue, and its number when acknowledgements move the cursor (0: not tracked).
    Memory { bytes: usize, records: usize, batch: u64 },
    /// Its sequence number in the persistent queue.
    Disk(u64),
}

impl ExportQueue {
    pub async fn push(&self, e: Encoded) -> Result<(), Encoded> {
        match self {
            ExportQueue::Memory(q, _) => q.push(e).await,
            ExportQueue::Disk(q) => q.push(e).await,
        }
    }

    /// These chunks' records are all pushed, the last in the batch pushed last: the cursor may move over them
    /// now (on disk) or once the endpoint acknowledged that batch (in memory).
    fn chunks_queued(&self, progress: Option<&Progress>, last_batch: u64, chunks: &mut Vec<u64>) {
        match (self, progress) {
            (ExportQueue::Memory(_, Some(acks)), _) => acks.completes(last_batch, chunks),
            (ExportQueue::Disk(_), Some(p)) => p.persisted(chunks),
            _ => {}
        }
        chunks.clear();
    }

    /// The number of the next batch pushed, when acknowledgements are tracked (else 0).
    fn number(&self) -> u64 {
        match self {
            ExportQueue::Memory(_, Some(acks)) => acks.number(),
            _ => 0,
        }
    }

    pub async fn pop(&self) -> Option<(Encoded, Ticket)> {
        match self {
            ExportQueue::Memory(q, _) => q.pop().await.map(|e| {
                let t = Ticket::Memory { bytes: e.body.len(), records: e.records, batch: e.batch };
                (e, t)
            }),
            ExportQueue::Disk(q) => q.pop().await.map(|t| (t.encoded, Ticket::Disk(t.seq))),
        }
    }

    /// The batch is exported or permanently rejected: never to be sent again.
    pub fn done(&self, t: Ticket) {
        match (self, t) {
            (ExportQueue::Disk(q), Ticket::Disk(seq)) => q.ack(seq),
            (ExportQueue::Memory(q, acks), Ticket::Memory { bytes, records, batch }) => {
                q.release(bytes, records);
                if let Some(acks) = acks
                    && batch != 0
                {
                    acks.acked(batch);
                }
            }
            (_, _) => unreachable!("a ticket goes back to the queue it came from"),
        }
    }

    pub fn close(&self) {
        match self {
            ExportQueue::Memory(q, _) => q.close(),
            ExportQueue::Disk(q) => q.close(),
        }
    }

    /// After a drain ran out of time: the memory queue empties (its records are lost); the disk queue keeps
    /// them for the next start. Returns whether records were lost.
    pub fn abandon(&self) -> bool {
        match self {
            ExportQueue::Memory(q, _) => {
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
            ExportQueue::Memory(q, _) => q.records(),
            ExportQueue::Disk(q) => q.records(),
        }
    }
}

/// Runs until `input` closes; flushes the last partial batch, then returns. Queue closing is the caller's job.
///
/// With `progress`, source chunks are reported safe once every record they produced is in the persistent queue,
/// or acknowledged by the endpoint (in-memory queue).
pub async fn run(
    cfg: BatchConfig,
    encoder: Arc<RequestEncoder>,
    mut input: mpsc::Receiver<Records>,
    queue: ExportQueue,
    progress: Option<Arc<Progress>>,
) {
    // Chunks whose records are all in `pending` (or already queued).
    let mut unflushed: Vec<u64> = Vec::new();
    // The number of the last batch pushed (in-memory queue with a cursor).
    let mut last_batch = 0u64;
    let q = queue.clone();
    let persisted = |chunks: &mut Vec<u64>, last_batch: u64| q.chunks_queued(progress.as_deref(), last_batch, chunks);
    let mut pending = Pending::new(&encoder);
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
                pending.flush(&encoder, &queue, &mut last_batch).await;
                persisted(&mut unflushed, last_batch);
                deadline = None;
                continue;
            }
        };
        let Some(Records { records, chunks, mut trace }) = records else { break };
        let whole = records.len() <= cfg.max_records && records.bytes_len() <= cfg.max_bytes;
        let adoptable = whole && !records.is_empty() && records.head_room() == pending.head_room;
        let fits = pending.records + records.len() <= cfg.max_records
            && pending.bytes() + records.bytes_len() <= cfg.max_bytes;
        if adoptable && pending.records > 0 && !fits {
            // Filling the request would split the chunk over two, every record copied: what is pending goes as it
            // is, and the chunk becomes the next request.
            pending.flush(&encoder, &queue, &mut last_batch).await;
            persisted(&mut unflushed, last_batch);
            deadline = None;
        }
        let records = if pending.records == 0 && adoptable {
            // The chunk's records are a request (the common case: chunks and batches are both 512): their buffer
            // becomes it, with no copy.
            pending.adopt(records);
            pending.traces.extend(trace.take());
            deadline = Some(Instant::now() + cfg.delay.max(Duration::from_millis(1)));
            EncodedRecords::default()
        } else {
            records
        };
        // An adopted chunk of `max_records` is a full request already.
        if pending.records >= cfg.max_records {
            pending.flush(&encoder, &queue, &mut last_batch).await;
            persisted(&mut unflushed, last_batch);
            deadline = None;
        }
        for record in records.iter() {
            if pending.records > 0 && pending.bytes() + record.len() > cfg.max_bytes {
                pending.flush(&encoder, &queue, &mut last_batch).await;
                persisted(&mut unflushed, last_batch);
            }
            if pending.records == 0 {
                deadline = Some(Instant::now() + cfg.delay.max(Duration::from_millis(1)));
            }
            pending.push(&encoder, record);
            // A sampled batch's span goes with the request its first record is in.
            pending.traces.extend(trace.take());
            if pending.records >= cfg.max_records {
                pending.flush(&encoder, &queue, &mut last_batch).await;
                persisted(&mut unflushed, last_batch);
                deadline = None;
            }
        }
        unflushed.extend(chunks);
        if pending.records == 0 {
            persisted(&mut unflushed, last_batch);
        }
    }
    pending.flush(&encoder, &queue, &mut last_batch).await;
    persisted(&mut unflushed, last_batch);
    if let Some(p) = &progress {
        p.flush();
    }
}

/// The request being filled: its records' bytes behind room for its head.
struct Pending {
    buf: Vec<u8>,
    /// Where the records start in `buf`.
    head_room: usize,
    records: usize,
    /// The last request's size: the next one is likely the same (so its buffer rarely grows or wastes).
    last_size: usize,
    /// Spans of sampled batches whose first record is in this request.
    traces: Vec<opentelemetry::Context>,
}

impl Pending {
    fn new(encoder: &RequestEncoder) -> Self {
        Pending { buf: Vec::new(), head_room: encoder.start(0).len(), records: 0, last_size: 0, traces: Vec::new() }
    }

    /// Bytes of the records so far (what the batch's byte limit counts).
    fn bytes(&self) -> usize {
        self.buf.len().saturating_sub(self.head_room)
    }

    /// Records from the pipeline, with room for the head in front, as the whole of the request so far.
    fn adopt(&mut self, records: EncodedRecords) {
        self.records = records.len();
        self.buf = records.into_buffer();
    }

    fn push(&mut self, encoder: &RequestEncoder, record: &[u8]) {
        if self.records == 0 {
            // Allocated with the first record, so an idle gateway holds no request buffer.
            self.buf = encoder.start(self.last_size.max(record.len()));
        }
        self.buf.extend_from_slice(record);
        self.records += 1;
    }

    async fn flush(&mut self, encoder: &RequestEncoder, queue: &ExportQueue, last_batch: &mut u64) {
        if self.records == 0 {
            return;
        }
        self.last_size = self.bytes();
        let mut encoded = encoder.finish(std::mem::take(&mut self.buf), std::mem::take(&mut self.records));
        encoded.traces = std::mem::take(&mut self.traces);
        encoded.batch = queue.number();
        if encoded.batch != 0 {
            *last_batch = encoded.batch;
        }
        if let Err(lost) = queue.push(encoded).await {
            // Only after a failed shutdown drain: the queue was abandoned and its records already counted as
            // dropped.
            tracing::error!(records = lost.records, "export queue closed before a batch could be queued");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Compression;
    use crate::otlp::{BodyRef, EncodedRecords, resource};
    use crate::telemetry::Metrics;
    use crate::wasm::Severity;

    fn records(n: usize, body_len: usize) -> EncodedRecords {
        let mut out = EncodedRecords::default();
        for _ in 0..n {
            out.push(1, Severity::Info, BodyRef::Str(&"x".repeat(body_len)), std::iter::empty());
        }
        out
    }

    async fn batches(cfg: BatchConfig, input: Vec<EncodedRecords>, hold_open: Duration) -> Vec<Encoded> {
        let queue = Queue::new(usize::MAX, usize::MAX, Metrics::new());
        let encoder = Arc::new(RequestEncoder::new(resource(&[]), Compression::None));
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(run(cfg, encoder, rx, ExportQueue::Memory(queue.clone(), None), None));
        for chunk in input {
            tx.send(Records { records: chunk, chunks: vec![], trace: None }).await.unwrap();
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
        let out = batches(cfg, vec![records(25, 10)], Duration::ZERO).await;
        assert_eq!(out.iter().map(|e| e.records).collect::<Vec<_>>(), vec![10, 10, 5]);
    }

    #[tokio::test]
    async fn chunks_made_with_room_for_the_head_become_requests_as_they_are() {
        let cfg = BatchConfig { max_records: 10, max_bytes: 1 << 20, delay: Duration::from_secs(3600) };
        let room = RequestEncoder::new(resource(&[]), Compression::None).head_room();
        let chunk = |n: usize, first: u64| {
            let mut out = EncodedRecords::for_request(room, n, 0);
            for i in 0..n as u64 {
                out.push(first + i, Severity::Info, BodyRef::Str("b"), std::iter::empty());
            }
            out
        };
        // Adopted whole (10); one copied record by record (25 > 10), 5 left pending; one that fits copied after
        // them (4); one that does not fit (7) is not split: the 9 pending go as they are and it is adopted.
        let input = vec![chunk(10, 0), chunk(25, 10), chunk(4, 35), chunk(7, 39)];
        let out = batches(cfg, input, Duration::ZERO).await;
        assert_eq!(out.iter().map(|e| e.records).collect::<Vec<_>>(), vec![10, 10, 10, 9, 7]);
        let encoder = RequestEncoder::new(resource(&[]), Compression::None);
        let times: Vec<u64> = out.iter().flat_map(|e| encoder.decode(e).unwrap()).map(|r| r.time_unix_nano).collect();
        assert_eq!(times, (0..46).collect::<Vec<_>>());
        for e in &out {
            let again = encoder.encode_log_records(encoder.decode(e).unwrap());
            assert_eq!(e.body, again.body, "an adopted buffer makes the same request as copies");
        }
    }

    #[tokio::test]
    async fn flushes_on_bytes_before_the_limit_is_crossed() {
        let cfg = BatchConfig { max_records: 1_000, max_bytes: 10_000, delay: Duration::from_secs(3600) };
        let out = batches(cfg, vec![records(10, 3_000)], Duration::ZERO).await;
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
        let task = tokio::spawn(run(cfg, encoder, rx, ExportQueue::Memory(queue.clone(), None), None));
        tx.send(Records { records: records(2, 10), chunks: vec![], trace: None }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Still open: only the delay can have flushed it.
        assert_eq!(queue.records(), 2);
        drop(tx);
        task.await.unwrap();
    }
}
