//! Lossless resume: where to re-open the stream after a drop, and which re-sent flows to skip.
//!
//! Goldmane sends buckets in time order, one whole bucket per rollover. A bucket is known to be complete once a
//! flow from a later bucket arrives; only the newest bucket seen can be half-received when the stream drops.
//! So the stream is re-opened at that bucket's start (never later than the last `end_time` received, which would
//! make the server replay its whole ring), and the flows of that bucket that already arrived are skipped by
//! (flow key, start_time). Only the newest bucket's key hashes are kept: 16 bytes a flow key.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use xxhash_rust::xxh3::xxh3_128_with_seed;

/// Hashes by value for keys that are hashes already (identities, fingerprints): hashing them again (std's
/// SipHash) was a tenth of the source's time.
#[derive(Debug, Default, Clone, Copy)]
pub struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64 ^ (n >> 64) as u64;
    }
}

/// A map or set keyed by hashes.
pub type PreHashedState = BuildHasherDefault<PreHashed>;

/// Goldmane's bucket width in seconds.
pub const BUCKET_SECONDS: i64 = 15;
/// Goldmane keeps 242 buckets; a start older than now-3600 gets no backfill at all, so clamp to this.
pub const HISTORY_SECONDS: i64 = 3600 - BUCKET_SECONDS;

/// A flow's identity: its encoded key and bucket.
pub fn identity(key: &[u8], start: i64) -> u128 {
    xxh3_128_with_seed(key, start as u64)
}

/// Resume state for one Goldmane server.
#[derive(Debug, Default)]
pub struct Resume {
    /// Start of the newest bucket seen: the oldest one that may not be fully received.
    newest_start: Option<i64>,
    /// Largest `end_time` received.
    last_end: Option<i64>,
    /// Hashes of (key, start_time) received for the newest bucket.
    seen: HashSet<u128, PreHashedState>,
}

impl Resume {
    /// Records a flow by its encoded key and times; false when its (key, bucket) was already received, so it
    /// must be skipped.
    pub fn admit(&mut self, key: &[u8], start: i64, end: i64) -> bool {
        self.admit_id(identity(key, start), start, end)
    }

    /// [`Resume::admit`] with the identity already computed.
    pub fn admit_id(&mut self, id: u128, start: i64, end: i64) -> bool {
        self.advance(start, end) && self.seen.insert(id)
    }

    /// Moves on to a flow of bucket `start` ending at `end` without recording its identity; false when its bucket
    /// is older than the newest (skipped, as by [`Resume::admit`]). For flows whose re-sent copies something else
    /// finds: the ledger, which holds every flow handed on of the buckets it judges.
    pub fn advance(&mut self, start: i64, end: i64) -> bool {
        match self.newest_start {
            Some(newest) if start < newest => {
                // An older bucket than the newest one: only a server replaying its ring does this, and every flow
                // of those buckets was received in full before. Skip it.
                return false;
            }
            Some(newest) if start == newest => {}
            _ => {
                self.newest_start = Some(start);
                // The next bucket is about as big as this one: sized once, not grown by rehashing.
                let size = self.seen.len();
                self.seen = HashSet::with_capacity_and_hasher(size, PreHashedState::default());
            }
        }
        self.last_end = Some(self.last_end.map_or(end, |e| e.max(end)));
        true
    }

    /// A restarted gateway's state: the persisted cursor's bucket, and the flows of it already queued.
    pub fn from_cursor(bucket: i64, last_end: i64, seen: impl IntoIterator<Item = u128>) -> Self {
        Resume { newest_start: Some(bucket), last_end: Some(last_end), seen: seen.into_iter().collect() }
    }

    /// The newest bucket seen and the last end time, once anything arrived.
    pub fn position(&self) -> Option<(i64, i64)> {
        Some((self.newest_start?, self.last_end?))
    }

    /// The `start_time_gte` for the next connection, `initial` when nothing was received yet.
    pub fn start_time_gte(&self, now_unix: i64, initial: i64) -> i64 {
        let Some(newest) = self.newest_start else {
            return initial;
        };
        let start = match self.last_end {
            Some(end) => newest.min(end),
            None => newest,
        };
        start.max(now_unix - HISTORY_SECONDS)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::proto::{Flow, FlowKey};

    fn flow(name: &str, start: i64) -> Flow {
        Flow {
            key: Some(FlowKey { source_name: name.into(), ..FlowKey::default() }),
            start_time: start,
            end_time: start + BUCKET_SECONDS,
            ..Flow::default()
        }
    }

    impl Resume {
        fn admit_flow(&mut self, f: &Flow) -> bool {
            self.admit(&f.key.as_ref().map(|k| k.encode_to_vec()).unwrap_or_default(), f.start_time, f.end_time)
        }
    }

    #[test]
    fn first_connection_uses_the_configured_start() {
        assert_eq!(Resume::default().start_time_gte(10_000, 0), 0);
    }

    #[test]
    fn resumes_at_the_newest_bucket_and_skips_what_it_already_has() {
        let mut r = Resume::default();
        assert!(r.admit_flow(&flow("a", 1500)));
        assert!(r.admit_flow(&flow("b", 1500)));
        assert!(r.admit_flow(&flow("a", 1515)));
        assert_eq!(r.start_time_gte(2000, 0), 1515);
        // The server re-sends bucket 1515 in full: "a" is a duplicate, "c" is new.
        assert!(!r.admit_flow(&flow("a", 1515)));
        assert!(r.admit_flow(&flow("c", 1515)));
        // Same key, next bucket: new.
        assert!(r.admit_flow(&flow("a", 1530)));
        // A replay of an older bucket is skipped.
        assert!(!r.admit_flow(&flow("b", 1500)));
    }

    #[test]
    fn advancing_keeps_the_position_and_skips_older_buckets_without_recording_identities() {
        let mut r = Resume::default();
        assert!(r.advance(1500, 1510));
        assert!(r.advance(1515, 1530));
        assert!(r.advance(1515, 1525), "the same bucket again: for the ledger to judge");
        assert!(!r.advance(1500, 1515), "an older bucket is skipped");
        assert_eq!(r.position(), Some((1515, 1530)));
        assert_eq!(r.start_time_gte(2000, 0), 1515);
        assert!(r.admit_flow(&flow("a", 1515)), "nothing was recorded for the bucket");
        assert!(!r.admit_flow(&flow("a", 1515)));
    }

    #[test]
    fn clamps_to_goldmane_history() {
        let mut r = Resume::default();
        r.admit_flow(&flow("a", 1500));
        assert_eq!(r.start_time_gte(1500 + 7200, 0), 1500 + 7200 - HISTORY_SECONDS);
    }

    #[test]
    fn key_fields_and_bucket_both_distinguish_flows() {
        let mut r = Resume::default();
        let mut f = flow("a", 1500);
        assert!(r.admit_flow(&f));
        f.key.as_mut().unwrap().action = 2;
        assert!(r.admit_flow(&f));
        // Counters are not part of the key.
        f.bytes_in = 99;
        assert!(!r.admit_flow(&f));
    }
}
