//! The persistent export queue: encoded OTLP requests in append-only segment files, replayed in order after a
//! crash or restart.
//!
//! # Layout
//!
//! `<dir>/<id>.seg` holds records, each `magic "FGQ1" | body_len u32 | records u32 | raw_bytes u32 | seq u64 |
//! crc32 u32 | body` (little endian; the CRC covers the four fields before it and the body). `<dir>/<id>.acks`
//! lists the sequence numbers of that segment's batches the endpoint has taken (`seq u64 | crc32 u32` each). A
//! segment and its acks file are deleted together once every batch in it is acknowledged.
//!
//! # Durability
//!
//! With `fsync: always` a batch is `fdatasync`ed (and a new segment's directory entry synced) before `push`
//! returns: once queued, it survives a node crash. With `fsync: never` it survives a crash of Flowgate only.
//! Acknowledgements are never synced: a lost one means the batch is sent again (at least once), never lost.
//! On open, a torn record at the end of the newest segment is cut off; a bad record elsewhere ends its segment
//! (what follows it is lost and logged as an error with its size: its records cannot be counted). A queued batch
//! that can no longer be read back is dropped and its records counted (reason `corrupt`).
//!
//! # Full disk
//!
//! At `max_bytes` the policy applies: `block` waits for acknowledgements (backpressure up to the stream);
//! `drop-oldest` drops the oldest batches not yet being sent. A failed write (ENOSPC, EIO) is cut back off the
//! segment, logged, counted, and retried every second: the queue then behaves as full.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::config::{Fsync, PersistentQueueConfig, WhenFull};
use crate::otlp::Encoded;
use crate::telemetry::{DropReason, Metrics};

const MAGIC: &[u8; 4] = b"FGQ1";
const HEADER: usize = 28;
const ACK: usize = 12;
/// A retry after a failed write.
const WRITE_RETRY: Duration = Duration::from_secs(1);
/// Largest body accepted when reading back (a corrupt length must not allocate gigabytes).
const MAX_BODY: u32 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum DiskQueueError {
    #[error("persistent queue directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("persistent queue {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    segment: u64,
    offset: u64,
    body_len: u32,
    records: u32,
    raw_bytes: u32,
}

#[derive(Debug, Default)]
struct Segment {
    bytes: u64,
    /// Batches not yet acknowledged.
    live: usize,
}

struct State {
    segments: BTreeMap<u64, Segment>,
    /// The segment being appended to and its file (reopened after a failed write).
    active: u64,
    writer: Option<File>,
    pending: VecDeque<Entry>,
    in_flight: HashMap<u64, Entry>,
    next_seq: u64,
    disk_bytes: u64,
    records: usize,
    closed: bool,
    /// The last write failed: the queue counts as full until a retry succeeds.
    write_failed: bool,
}

/// A batch taken from the queue; hand it back with [`DiskQueue::ack`].
pub struct Taken {
    pub encoded: Encoded,
    pub seq: u64,
}

pub struct DiskQueue {
    cfg: PersistentQueueConfig,
    segment_bytes: u64,
    state: Mutex<State>,
    space: Notify,
    items: Notify,
    metrics: Arc<Metrics>,
}

enum PushOutcome {
    Queued,
    Full,
    Failed(io::Error),
    Closed,
}

impl DiskQueue {
    /// Opens (or creates) the queue in `cfg.dir`, recovering what an earlier run left.
    pub fn open(cfg: PersistentQueueConfig, metrics: Arc<Metrics>) -> Result<Arc<Self>, DiskQueueError> {
        let dir = cfg.dir.clone();
        let dir_err = |source| DiskQueueError::Dir { path: dir.clone(), source };
        std::fs::create_dir_all(&dir).map_err(dir_err)?;
        let mut ids: Vec<u64> = std::fs::read_dir(&dir)
            .map_err(dir_err)?
            .filter_map(|e| e.ok())
            .filter(|e| {
                // Only regular files are segments (a device or a directory under that name is not ours to read).
                let regular = std::fs::metadata(e.path()).is_ok_and(|m| m.is_file());
                if !regular {
                    tracing::warn!(path = %e.path().display(), "persistent queue: not a regular file; ignored");
                }
                regular
            })
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut pending = Vec::new();
        let mut next_seq = 1;
        let (mut disk_bytes, mut records) = (0u64, 0usize);
        for (i, &id) in ids.iter().enumerate() {
            let newest = i + 1 == ids.len();
            let (entries, bytes) = recover_segment(&seg_path(&dir, id), id, newest, &metrics)?;
            let acked = read_acks(&ack_path(&dir, id));
            let live: Vec<Entry> = entries.iter().filter(|e| !acked.contains(&e.seq)).copied().collect();
            next_seq = entries.iter().map(|e| e.seq + 1).fold(next_seq, u64::max);
            if live.is_empty() {
                remove_segment(&dir, id);
                continue;
            }
            disk_bytes += bytes;
            records += live.iter().map(|e| e.records as usize).sum::<usize>();
            segments.insert(id, Segment { bytes, live: live.len() });
            pending.extend(live);
        }
        let replayed = records as u64;
        if replayed > 0 {
            metrics.queue_replayed.inc_by(replayed);
            tracing::info!(
                records = replayed,
                batches = pending.len(),
                bytes = disk_bytes,
                "persistent queue: replaying what an earlier run left"
            );
        }
        let active = ids.last().map_or(1, |id| id + 1);
        let segment_bytes = (cfg.max_bytes / 16).clamp(1 << 20, 64 << 20);
        let q = DiskQueue {
            cfg,
            segment_bytes,
            state: Mutex::new(State {
                segments,
                active,
                writer: None,
                pending: pending.into(),
                in_flight: HashMap::new(),
                next_seq,
                disk_bytes,
                records,
                closed: false,
                write_failed: false,
            }),
            space: Notify::new(),
            items: Notify::new(),
            metrics,
        };
        q.publish(&q.state.lock().expect("queue lock"));
        Ok(Arc::new(q))
    }

    /// Appends a batch, waiting while the queue is full or the disk refuses writes. Returns it back if closed.
    pub async fn push(self: &Arc<Self>, encoded: Encoded) -> Result<(), Encoded> {
        let mut logged = false;
        let encoded = Arc::new(encoded);
        loop {
            let space = self.space.notified();
            let (q, e) = (self.clone(), encoded.clone());
            let outcome = tokio::task::spawn_blocking(move || q.try_push(&e)).await.expect("queue write task");
            match outcome {
                PushOutcome::Queued => {
                    self.items.notify_one();
                    return Ok(());
                }
                PushOutcome::Closed => return Err(Arc::unwrap_or_clone(encoded)),
                PushOutcome::Full => space.await,
                PushOutcome::Failed(error) => {
                    self.metrics.queue_disk_errors.inc();
                    if !logged {
                        tracing::error!(
                            dir = %self.cfg.dir.display(),
                            error = %error,
                            "persistent queue: cannot write a batch (disk full?); holding the stream back and retrying every second"
                        );
                        logged = true;
                    }
                    let _ = tokio::time::timeout(WRITE_RETRY, space).await;
                }
            }
        }
    }

    fn try_push(&self, e: &Encoded) -> PushOutcome {
        let mut s = self.state.lock().expect("queue lock");
        if s.closed {
            return PushOutcome::Closed;
        }
        let need = (HEADER + e.body.len()) as u64;
        // One batch larger than the whole queue still goes into an empty one, so it cannot wedge the pipeline.
        while s.disk_bytes + need > self.cfg.max_bytes && s.disk_bytes > 0 {
            if self.cfg.when_full == WhenFull::Block || !self.drop_oldest(&mut s) {
                return PushOutcome::Full;
            }
        }
        match self.append(&mut s, e) {
            Ok(()) => {
                if s.write_failed {
                    s.write_failed = false;
                    tracing::info!("persistent queue: writes succeed again");
                }
                self.publish(&s);
                PushOutcome::Queued
            }
            Err(error) => {
                s.write_failed = true;
                PushOutcome::Failed(error)
            }
        }
    }

    /// Drops the oldest batch not being sent; false if there is none.
    fn drop_oldest(&self, s: &mut State) -> bool {
        let Some(e) = s.pending.pop_front() else { return false };
        self.metrics.dropped(DropReason::QueueFull, e.records as u64);
        self.settle(s, e);
        true
    }

    fn append(&self, s: &mut State, e: &Encoded) -> io::Result<()> {
        let rotate = s.segments.get(&s.active).is_some_and(|seg| seg.bytes >= self.segment_bytes);
        if rotate {
            if let Some(w) = s.writer.take()
                && self.cfg.fsync == Fsync::Always
            {
                w.sync_data()?;
            }
            s.active += 1;
        }
        if s.writer.is_none() {
            let path = seg_path(&self.cfg.dir, s.active);
            let created = !path.exists();
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            if created && self.cfg.fsync == Fsync::Always {
                File::open(&self.cfg.dir)?.sync_all()?;
            }
            s.writer = Some(file);
        }
        let seq = s.next_seq;
        let mut record = Vec::with_capacity(HEADER + e.body.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&(e.body.len() as u32).to_le_bytes());
        record.extend_from_slice(&(e.records as u32).to_le_bytes());
        record.extend_from_slice(&(e.raw_bytes as u32).to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&record[4..24]);
        crc.update(&e.body);
        record.extend_from_slice(&crc.finalize().to_le_bytes());
        record.extend_from_slice(&e.body);

        let active = s.active;
        let offset = s.segments.get(&active).map_or(0, |seg| seg.bytes);
        let writer = s.writer.as_mut().expect("writer opened above");
        let written = writer.write_all(&record).and_then(|()| match self.cfg.fsync {
            Fsync::Always => writer.sync_data(),
            Fsync::Never => Ok(()),
        });
        if let Err(error) = written {
            // Cut a partial record off and reopen next time, so the file stays a sequence of whole records.
            if let Some(w) = s.writer.take() {
                let _ = w.set_len(offset);
            }
            return Err(error);
        }
        let seg = s.segments.entry(active).or_default();
        seg.bytes += record.len() as u64;
        seg.live += 1;
        s.disk_bytes += record.len() as u64;
        s.records += e.records;
        s.next_seq += 1;
        s.pending.push_back(Entry {
            seq,
            segment: active,
            offset,
            body_len: e.body.len() as u32,
            records: e.records as u32,
            raw_bytes: e.raw_bytes as u32,
        });
        Ok(())
    }

    /// Takes the oldest batch, waiting for one; `None` once closed and empty.
    pub async fn pop(self: &Arc<Self>) -> Option<Taken> {
        loop {
            let ready = self.items.notified();
            let entry = {
                let mut s = self.state.lock().expect("queue lock");
                match s.pending.pop_front() {
                    Some(e) => {
                        s.in_flight.insert(e.seq, e);
                        if !s.pending.is_empty() {
                            self.items.notify_one();
                        }
                        Some(e)
                    }
                    None if s.closed => return None,
                    None => None,
                }
            };
            let Some(e) = entry else {
                ready.await;
                continue;
            };
            let path = seg_path(&self.cfg.dir, e.segment);
            match tokio::task::spawn_blocking(move || read_body(&path, &e)).await.expect("queue read task") {
                Ok(body) => {
                    let encoded = Encoded {
                        body,
                        records: e.records as usize,
                        raw_bytes: e.raw_bytes as usize,
                        batch: 0,
                        traces: Vec::new(),
                    };
                    return Some(Taken { encoded, seq: e.seq });
                }
                Err(error) => {
                    tracing::error!(segment = e.segment, seq = e.seq, error = %error, "persistent queue: a batch cannot be read back; dropped");
                    self.metrics.dropped(DropReason::Corrupt, e.records as u64);
                    self.ack(e.seq);
                }
            }
        }
    }

    /// The batch `seq` is done with (exported or permanently rejected): it will not be sent again.
    pub fn ack(&self, seq: u64) {
        let mut s = self.state.lock().expect("queue lock");
        let Some(e) = s.in_flight.remove(&seq) else { return };
        self.settle(&mut s, e);
        self.publish(&s);
        drop(s);
        self.space.notify_waiters();
    }

    /// Marks `e` done on disk; deletes its segment once nothing in it is live (unless it is being appended to).
    fn settle(&self, s: &mut State, e: Entry) {
        s.records = s.records.saturating_sub(e.records as usize);
        let done = s.segments.get_mut(&e.segment).is_some_and(|seg| {
            seg.live = seg.live.saturating_sub(1);
            seg.live == 0
        });
        if done {
            if e.segment == s.active {
                // Everything appended so far is done: the next batch starts a fresh segment.
                s.writer = None;
                s.active += 1;
            }
            let seg = s.segments.remove(&e.segment).expect("segment present");
            s.disk_bytes = s.disk_bytes.saturating_sub(seg.bytes);
            remove_segment(&self.cfg.dir, e.segment);
            return;
        }
        let mut ack = [0u8; ACK];
        ack[..8].copy_from_slice(&e.seq.to_le_bytes());
        let crc = crc32fast::hash(&ack[..8]);
        ack[8..].copy_from_slice(&crc.to_le_bytes());
        let path = ack_path(&self.cfg.dir, e.segment);
        if let Err(error) = OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(&ack))
        {
            // Not fatal: the batch is sent again after a restart.
            tracing::warn!(path = %path.display(), error = %error, "persistent queue: cannot record an acknowledgement");
        }
    }

    /// No more pushes; `pop` drains what is left, then returns `None`. Unacknowledged batches stay on disk.
    pub fn close(&self) {
        let mut s = self.state.lock().expect("queue lock");
        s.closed = true;
        if let Some(w) = s.writer.take() {
            let _ = w.sync_all();
        }
        drop(s);
        self.items.notify_waiters();
        self.space.notify_waiters();
    }

    /// Records queued or being sent.
    pub fn records(&self) -> usize {
        self.state.lock().expect("queue lock").records
    }

    fn publish(&self, s: &State) {
        self.metrics.queue_bytes.set(s.disk_bytes as i64);
        self.metrics.queue_records.set(s.records as i64);
    }
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn ack_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.acks"))
}

fn remove_segment(dir: &Path, id: u64) {
    for path in [seg_path(dir, id), ack_path(dir, id)] {
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "persistent queue: cannot delete a finished segment");
        }
    }
}

fn read_acks(path: &Path) -> HashSet<u64> {
    let Ok(bytes) = std::fs::read(path) else { return HashSet::new() };
    bytes
        .chunks_exact(ACK)
        .filter(|c| crc32fast::hash(&c[..8]).to_le_bytes() == c[8..])
        .map(|c| u64::from_le_bytes(c[..8].try_into().expect("8 bytes")))
        .collect()
}

/// Reads a segment's valid records; cuts a torn tail off the newest segment. Returns the entries and the bytes kept.
fn recover_segment(path: &Path, id: u64, newest: bool, metrics: &Metrics) -> Result<(Vec<Entry>, u64), DiskQueueError> {
    let io_err = |source| DiskQueueError::Io { path: path.to_path_buf(), source };
    let data = std::fs::read(path).map_err(io_err)?;
    let mut entries = Vec::new();
    let mut at = 0usize;
    let reason = loop {
        if at == data.len() {
            break None;
        }
        let Some(h) = data.get(at..at + HEADER) else { break Some("truncated header") };
        if &h[..4] != MAGIC {
            break Some("bad magic");
        }
        let field = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        let (body_len, records, raw_bytes) = (field(4), field(8), field(12));
        let seq = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
        let Some(body) = data.get(at + HEADER..at + HEADER + body_len as usize) else { break Some("truncated body") };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&h[4..24]);
        crc.update(body);
        if crc.finalize() != field(24) {
            break Some("checksum mismatch");
        }
        entries.push(Entry { seq, segment: id, offset: at as u64, body_len, records, raw_bytes });
        at += HEADER + body_len as usize;
    };
    if let Some(reason) = reason {
        let lost = data.len() - at;
        if newest {
            tracing::warn!(path = %path.display(), bytes = lost, reason, "persistent queue: cutting off a record torn by a crash");
        } else {
            tracing::error!(path = %path.display(), bytes = lost, reason, "persistent queue: a damaged segment; what follows the damage is lost");
            metrics.dropped(DropReason::Corrupt, 0);
        }
        let f = OpenOptions::new().write(true).open(path).map_err(io_err)?;
        f.set_len(at as u64).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
    }
    Ok((entries, at as u64))
}

fn read_body(path: &Path, e: &Entry) -> io::Result<Bytes> {
    if e.body_len > MAX_BODY {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "record length out of range"));
    }
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(e.offset + HEADER as u64))?;
    let mut body = vec![0u8; e.body_len as usize];
    f.read_exact(&mut body)?;
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, max_bytes: u64, when_full: WhenFull) -> PersistentQueueConfig {
        PersistentQueueConfig { dir: dir.to_path_buf(), max_bytes, fsync: Fsync::Always, when_full }
    }

    fn batch(tag: u8, len: usize) -> Encoded {
        Encoded { body: Bytes::from(vec![tag; len]), records: 10, raw_bytes: len * 2, batch: 0, traces: Vec::new() }
    }

    #[tokio::test]
    async fn batches_survive_a_reopen_in_order_and_acked_ones_do_not_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(cfg(dir.path(), 16 << 20, WhenFull::Block), Metrics::new()).unwrap();
        for tag in 1..=5 {
            q.push(batch(tag, 1000)).await.ok().unwrap();
        }
        let first = q.pop().await.unwrap();
        assert_eq!(first.encoded.body[0], 1);
        q.ack(first.seq);
        let second = q.pop().await.unwrap(); // taken, never acknowledged: a crash mid-send
        assert_eq!(second.encoded.body[0], 2);
        drop(q); // no close: as after SIGKILL

        let metrics = Metrics::new();
        let q = DiskQueue::open(cfg(dir.path(), 16 << 20, WhenFull::Block), metrics.clone()).unwrap();
        assert_eq!(metrics.queue_replayed.get(), 40);
        let mut tags = Vec::new();
        while q.records() > 0 {
            let t = q.pop().await.unwrap();
            assert_eq!(t.encoded.records, 10);
            assert_eq!(t.encoded.raw_bytes, 2000);
            tags.push(t.encoded.body[0]);
            q.ack(t.seq);
        }
        assert_eq!(tags, vec![2, 3, 4, 5]);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "finished segments are deleted: {left:?}");
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(cfg(dir.path(), 16 << 20, WhenFull::Block), Metrics::new()).unwrap();
        q.push(batch(1, 500)).await.ok().unwrap();
        q.push(batch(2, 500)).await.ok().unwrap();
        drop(q);
        let seg = seg_path(dir.path(), 1);
        // A crash mid-append: half a record at the end.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[b'F', b'G', b'Q', b'1', 0xff, 0x01]).unwrap();
        drop(f);
        // And a flipped byte in the second record's body is caught by the checksum.
        let q = DiskQueue::open(cfg(dir.path(), 16 << 20, WhenFull::Block), Metrics::new()).unwrap();
        assert_eq!(q.records(), 20);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), 2 * (HEADER as u64 + 500));
        drop(q);
        let mut bytes = std::fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&seg, bytes).unwrap();
        let q = DiskQueue::open(cfg(dir.path(), 16 << 20, WhenFull::Block), Metrics::new()).unwrap();
        assert_eq!(q.records(), 10, "the damaged record is not replayed");
        assert_eq!(q.pop().await.unwrap().encoded.body[0], 1);
    }

    #[tokio::test]
    async fn a_batch_that_cannot_be_read_back_is_counted_as_corrupt_and_the_queue_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let q = DiskQueue::open(cfg(dir.path(), 16 << 20, WhenFull::Block), metrics.clone()).unwrap();
        for tag in 1..=3 {
            q.push(batch(tag, 500)).await.ok().unwrap();
        }
        // The segment loses its end under the running queue (a damaged or truncated disk): the third batch's
        // body is gone.
        let seg = seg_path(dir.path(), 1);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(3 * (HEADER as u64 + 500) - 100).unwrap();
        drop(f);
        for tag in 1..=2 {
            let t = q.pop().await.unwrap();
            assert_eq!(t.encoded.body[0], tag);
            q.ack(t.seq);
        }
        assert_eq!(metrics.dropped_count(DropReason::Corrupt), 0);
        q.close();
        assert!(q.pop().await.is_none(), "the unreadable batch is not handed on");
        assert_eq!(metrics.dropped_count(DropReason::Corrupt), 10, "its records are counted");
        assert_eq!(q.records(), 0);
    }

    #[tokio::test]
    async fn full_blocks_by_default_and_drop_oldest_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        // 16 MiB bound, 4 MiB batches: three fit.
        let q = DiskQueue::open(cfg(dir.path(), 16 << 20, WhenFull::Block), Metrics::new()).unwrap();
        for tag in 1..=3 {
            q.push(batch(tag, 4 << 20)).await.ok().unwrap();
        }
        let blocked = tokio::time::timeout(Duration::from_millis(200), q.push(batch(4, 4 << 20))).await;
        assert!(blocked.is_err(), "a fourth batch waits");
        let t = q.pop().await.unwrap();
        let q2 = q.clone();
        let waiting = tokio::spawn(async move { q2.push(batch(4, 4 << 20)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        q.ack(t.seq);
        assert!(waiting.await.unwrap(), "an acknowledgement frees the space");

        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let q = DiskQueue::open(cfg(dir.path(), 16 << 20, WhenFull::DropOldest), metrics.clone()).unwrap();
        for tag in 1..=5 {
            q.push(batch(tag, 4 << 20)).await.ok().unwrap();
        }
        assert!(metrics.dropped_count(DropReason::QueueFull) >= 20);
        let newest = loop {
            let t = q.pop().await.unwrap();
            q.ack(t.seq);
            if q.records() == 0 {
                break t.encoded.body[0];
            }
        };
        assert_eq!(newest, 5, "the newest batch is kept");
    }

    #[tokio::test]
    async fn a_refused_write_leaves_no_partial_record_and_the_queue_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let q = DiskQueue::open(cfg(dir.path(), 16 << 20, WhenFull::Block), metrics.clone()).unwrap();
        // The first segment is the kernel's always-full device: every write fails with ENOSPC.
        std::os::unix::fs::symlink("/dev/full", seg_path(dir.path(), 1)).unwrap();
        let q2 = q.clone();
        let push = tokio::spawn(async move { q2.push(batch(7, 1000)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!push.is_finished(), "a refused write holds the producer back");
        assert!(metrics.queue_disk_errors.get() >= 1);
        // Space comes back (here: the device goes away and a real file takes its name).
        std::fs::remove_file(seg_path(dir.path(), 1)).unwrap();
        assert!(tokio::time::timeout(Duration::from_secs(5), push).await.unwrap().unwrap());
        let t = q.pop().await.unwrap();
        assert_eq!(&t.encoded.body[..], &[7u8; 1000][..]);
        drop(q);
        let q = DiskQueue::open(cfg(dir.path(), 16 << 20, WhenFull::Block), Metrics::new()).unwrap();
        assert_eq!(q.records(), 10, "exactly one whole record on disk");
    }
}
