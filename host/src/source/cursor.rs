//! The persisted stream cursor: where a restarted gateway resumes Goldmane so that nothing between the last
//! durable batch and the restart is lost (within Goldmane's hour of history).
//!
//! Every chunk the source hands on gets a sequence number and a snapshot of the resume state after it (the newest
//! bucket, the last `end_time`, how many of that bucket's flow identities had arrived). The batcher reports a
//! chunk once all its records are in the persistent queue; the cursor then moves to the snapshot of the newest
//! chunk with every earlier chunk persisted too, and is written to `<queue dir>/cursor` (atomically, at most once
//! a second, and at shutdown).
//!
//! The file holds the bucket start, the last end time and the (key, start) hashes of that bucket's persisted
//! flows: a restart re-opens the stream at the bucket and skips exactly those. At least once, duplicates removed
//! where the gateway can know them. Flows a transform dropped count as persisted (their fate was decided).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::resume::Resume;

const MAGIC: &[u8; 4] = b"FGC1";
/// Minimum time between cursor writes (the last state is always written at shutdown).
const WRITE_EVERY: Duration = Duration::from_secs(1);

/// A cursor as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub bucket: i64,
    pub last_end: i64,
    pub seen: Vec<u128>,
}

#[derive(Debug, Clone, Copy)]
struct Snap {
    bucket: i64,
    last_end: i64,
    seen_len: usize,
}

struct Inner {
    next_seq: u64,
    snaps: BTreeMap<u64, Snap>,
    /// Persisted chunks beyond the contiguous prefix.
    done: BTreeSet<u64>,
    /// Every chunk up to this one is persisted.
    prefix: u64,
    /// Identities of the newest bucket, in arrival order, and of the one before.
    current: (i64, Vec<u128>),
    previous: (i64, Vec<u128>),
    /// The cursor to write, and when the file was last written.
    pending: Option<Snap>,
    written: Option<Instant>,
}

/// Tracks chunks from the source to the persistent queue and keeps the cursor file.
pub struct Progress {
    path: PathBuf,
    sync: bool,
    inner: Mutex<Inner>,
}

impl Progress {
    /// `dir` is the persistent queue's directory; `sync` fsyncs each write.
    pub fn new(dir: &Path, sync: bool) -> Self {
        Progress {
            path: dir.join("cursor"),
            sync,
            inner: Mutex::new(Inner {
                next_seq: 1,
                snaps: BTreeMap::new(),
                done: BTreeSet::new(),
                prefix: 0,
                current: (i64::MIN, Vec::new()),
                previous: (i64::MIN, Vec::new()),
                pending: None,
                written: None,
            }),
        }
    }

    /// The cursor an earlier run left, if any (a damaged file is reported and ignored).
    pub fn load(&self) -> Option<Cursor> {
        let bytes = std::fs::read(&self.path).ok()?;
        match decode(&bytes) {
            Some(c) => Some(c),
            None => {
                tracing::warn!(path = %self.path.display(), "stream cursor damaged; resuming from the configured start");
                None
            }
        }
    }

    /// Seeds the identity lists from a loaded cursor, so the cursor written next still names them.
    pub fn seed(&self, c: &Cursor) {
        let mut s = self.inner.lock().expect("progress lock");
        s.current = (c.bucket, c.seen.clone());
    }

    /// A chunk is being handed on: `flows` are the (start, identity) of the flows it admitted, `resume` the state
    /// after them. Returns the chunk's sequence number.
    pub fn sent(&self, flows: &[(i64, u128)], resume: &Resume) -> u64 {
        let mut s = self.inner.lock().expect("progress lock");
        for &(start, id) in flows {
            if start != s.current.0 {
                if start < s.current.0 {
                    continue; // replayed older bucket (skipped by Resume anyway)
                }
                let cur = std::mem::replace(&mut s.current, (start, Vec::new()));
                s.previous = cur;
            }
            s.current.1.push(id);
        }
        let seq = s.next_seq;
        s.next_seq += 1;
        if let Some((bucket, last_end)) = resume.position() {
            let seen_len = if bucket == s.current.0 { s.current.1.len() } else { 0 };
            s.snaps.insert(seq, Snap { bucket, last_end, seen_len });
        }
        seq
    }

    /// Every record of these chunks is in the persistent queue (or was dropped by a transform).
    pub fn persisted(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        let write = {
            let mut guard = self.inner.lock().expect("progress lock");
            let s = &mut *guard;
            s.done.extend(seqs.iter().copied());
            let mut advanced = None;
            while s.done.remove(&(s.prefix + 1)) {
                s.prefix += 1;
                if let Some(snap) = s.snaps.remove(&s.prefix) {
                    advanced = Some(snap);
                }
            }
            let prefix = s.prefix;
            s.snaps.retain(|&k, _| k > prefix);
            if let Some(snap) = advanced {
                s.pending = Some(snap);
            }
            s.pending.is_some() && s.written.is_none_or(|w| w.elapsed() >= WRITE_EVERY)
        };
        if write {
            self.flush();
        }
    }

    /// Writes the newest cursor, if it moved since the last write.
    pub fn flush(&self) {
        let (snap, seen) = {
            let mut s = self.inner.lock().expect("progress lock");
            let Some(snap) = s.pending.take() else { return };
            s.written = Some(Instant::now());
            let seen = if snap.bucket == s.current.0 {
                s.current.1[..snap.seen_len.min(s.current.1.len())].to_vec()
            } else if snap.bucket == s.previous.0 {
                // The snapshot was taken while its bucket was current: its count indexes that list.
                s.previous.1[..snap.seen_len.min(s.previous.1.len())].to_vec()
            } else {
                Vec::new()
            };
            (snap, seen)
        };
        let cursor = Cursor { bucket: snap.bucket, last_end: snap.last_end, seen };
        if let Err(e) = self.write(&cursor) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the stream cursor; a restart may resend more");
        }
    }

    fn write(&self, c: &Cursor) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&encode(c))?;
        if self.sync {
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)
    }
}

fn encode(c: &Cursor) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + c.seen.len() * 16 + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&c.bucket.to_le_bytes());
    out.extend_from_slice(&c.last_end.to_le_bytes());
    out.extend_from_slice(&(c.seen.len() as u32).to_le_bytes());
    for id in &c.seen {
        out.extend_from_slice(&id.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode(b: &[u8]) -> Option<Cursor> {
    let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
    if crc32fast::hash(body).to_le_bytes() != crc || body.get(..4)? != MAGIC {
        return None;
    }
    let i64_at = |at: usize| Some(i64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?));
    let n = u32::from_le_bytes(body.get(20..24)?.try_into().ok()?) as usize;
    let ids = body.get(24..)?;
    if ids.len() != n * 16 {
        return None;
    }
    let seen = ids.chunks_exact(16).map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes"))).collect();
    Some(Cursor { bucket: i64_at(4)?, last_end: i64_at(12)?, seen })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_round_trips_and_damage_is_detected() {
        let c = Cursor { bucket: 1_700_000_010, last_end: 1_700_000_025, seen: vec![1, u128::MAX, 42] };
        let bytes = encode(&c);
        assert_eq!(decode(&bytes), Some(c));
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn the_cursor_moves_only_over_a_contiguous_persisted_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let p = Progress::new(dir.path(), false);
        let mut r = Resume::default();
        let mut chunk = |ids: &[(i64, u128)]| {
            for &(start, id) in ids {
                r.admit(&id.to_le_bytes(), start, start + 15);
            }
            p.sent(ids, &r)
        };
        let a = chunk(&[(1500, 1), (1500, 2)]);
        let b = chunk(&[(1500, 3), (1515, 4)]);
        let c = chunk(&[(1515, 5)]);
        // b and c persisted, a not yet: nothing may be written.
        p.persisted(&[b, c]);
        assert!(p.load().is_none());
        p.persisted(&[a]);
        p.flush();
        let cursor = p.load().unwrap();
        assert_eq!((cursor.bucket, cursor.last_end), (1515, 1530));
        assert_eq!(cursor.seen.len(), 2, "the newest bucket's two flows");
    }
}
