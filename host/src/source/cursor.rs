//! The persisted stream cursor: where a restarted gateway resumes Goldmane so that nothing between the last
//! durable batch and the restart is lost (within Goldmane's hour of history).
//!
//! Every chunk the source hands on gets a sequence number and a snapshot of the resume state after it (the newest
//! bucket, the last `end_time`, how many of that bucket's flow identities had arrived). The batcher reports a
//! chunk once all its records are in the persistent queue; the cursor then moves to the snapshot of the newest
//! chunk with every earlier chunk persisted too, and is written to `<queue dir>/cursor` at once.
//!
//! The file holds the bucket start and the last end time (a header, rewritten atomically when the bucket
//! changes), then the (key, start) hashes of that bucket's persisted flows, appended in checksummed blocks as they
//! become durable: a restart re-opens the stream at the bucket and skips exactly those. A block torn by a crash is
//! ignored (those flows come again: at least once). Flows a transform dropped count as persisted (their fate was
//! decided).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::resume::Resume;

const MAGIC: &[u8; 4] = b"FGC2";
const HEADER: usize = 24;

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
    /// The cursor to write.
    pending: Option<Snap>,
    /// The file as written: its bucket, how many identities it holds, and an append handle.
    file: Option<(i64, usize, std::fs::File)>,
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
                file: None,
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
            s.pending.is_some()
        };
        if write {
            self.flush();
        }
    }

    /// Writes the newest cursor, if it moved since the last write: appends the newly durable identities, or
    /// rewrites the file when the bucket changed.
    pub fn flush(&self) {
        let mut guard = self.inner.lock().expect("progress lock");
        let s = &mut *guard;
        let Some(snap) = s.pending.take() else { return };
        let list = if snap.bucket == s.current.0 {
            &s.current.1
        } else if snap.bucket == s.previous.0 {
            // The snapshot was taken while its bucket was current: its count indexes that list.
            &s.previous.1
        } else {
            &Vec::new()
        };
        let seen = &list[..snap.seen_len.min(list.len())];
        let result = match &mut s.file {
            Some((bucket, written, file)) if *bucket == snap.bucket => {
                if seen.len() > *written {
                    let block = encode_block(&seen[*written..]);
                    let r = file.write_all(&block).and_then(|()| if self.sync { file.sync_data() } else { Ok(()) });
                    if r.is_ok() {
                        *written = seen.len();
                    }
                    r
                } else {
                    Ok(())
                }
            }
            _ => {
                let cursor = Cursor { bucket: snap.bucket, last_end: snap.last_end, seen: seen.to_vec() };
                self.rewrite(&cursor).map(|file| s.file = Some((snap.bucket, seen.len(), file)))
            }
        };
        if let Err(e) = result {
            // Next time the whole file is written again.
            s.file = None;
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the stream cursor; a restart may resend more");
        }
    }

    /// Replaces the file atomically; returns an append handle to it.
    fn rewrite(&self, c: &Cursor) -> std::io::Result<std::fs::File> {
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&encode(c))?;
        if self.sync {
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        std::fs::OpenOptions::new().append(true).open(&self.path)
    }
}

fn encode_block(ids: &[u128]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + ids.len() * 16);
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Header (magic, bucket, last end, CRC) and one block of identities.
fn encode(c: &Cursor) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 8 + c.seen.len() * 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&c.bucket.to_le_bytes());
    out.extend_from_slice(&c.last_end.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&encode_block(&c.seen));
    out
}

/// The header and every whole block; `None` when the header is damaged.
fn decode(b: &[u8]) -> Option<Cursor> {
    let header = b.get(..HEADER)?;
    if &header[..4] != MAGIC || crc32fast::hash(&header[..20]).to_le_bytes() != header[20..24] {
        return None;
    }
    let i64_at = |at: usize| Some(i64::from_le_bytes(header.get(at..at + 8)?.try_into().ok()?));
    let mut seen = Vec::new();
    let mut rest = &b[HEADER..];
    while let Some(n) = rest.get(..4).map(|n| u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize) {
        let Some(block) = rest.get(..4 + n * 16 + 4) else { break };
        let (body, crc) = block.split_at(4 + n * 16);
        if crc32fast::hash(body).to_le_bytes() != crc {
            break; // torn by a crash: those flows come again
        }
        seen.extend(body[4..].chunks_exact(16).map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes"))));
        rest = &rest[block.len()..];
    }
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
        bad[10] ^= 1;
        assert_eq!(decode(&bad), None, "a damaged header is no cursor");
        // A torn block loses its identities only (they come again).
        let torn = decode(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!((torn.bucket, torn.seen.len()), (1_700_000_010, 0));
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
        let cursor = p.load().unwrap();
        assert_eq!((cursor.bucket, cursor.last_end), (1515, 1530));
        assert_eq!(cursor.seen, vec![4, 5], "the newest bucket's two flows, in order");
        // More of the same bucket is appended.
        let d = chunk(&[(1515, 6), (1515, 7)]);
        p.persisted(&[d]);
        assert_eq!(p.load().unwrap().seen, vec![4, 5, 6, 7]);
        // A new bucket rewrites the file.
        let e = chunk(&[(1530, 8)]);
        p.persisted(&[e]);
        let cursor = p.load().unwrap();
        assert_eq!((cursor.bucket, cursor.seen), (1530, vec![8]));
    }
}
