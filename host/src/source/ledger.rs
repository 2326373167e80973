//! The ledger: what the gateway has handed on, per (flow key, bucket), over a recent window.
//!
//! Goldmane streams each bucket once; flows that reach it later are filed into buckets already streamed and only
//! `List` (or a new stream's backfill) shows them. Reconciliation compares what Goldmane holds with this ledger:
//! a key it does not hold is a late flow, a key whose counters grew is a late report added to a flow already
//! exported, whose difference is exported as its own record.
//!
//! Memory is bounded by design: 36 bytes a (key, bucket) entry (a 64-bit fingerprint of the encoded key and the
//! seven counters as `u32`; values beyond `u32` are kept exactly on the side), held in a sorted vector per bucket,
//! for the buckets of the window only. At 100,000 flows a bucket over a 330 s window (22 buckets): 2.2 M
//! entries, 76 MiB; at 10,000 flows a bucket, 7.6 MiB.
//!
//! One stream sends a key once a bucket (Goldmane backfills, then goes live, "with no gap and no duplicate"), so
//! the bucket a stream brings is appended to without a lookup and sorted when the stream moves past it. A key can
//! come again only on a later stream (a bucket half-received before a drop), or after reconciliation recorded it:
//! a bucket someone else wrote to is sorted first, and what is appended to it after that is found through a
//! 5-byte index entry a flow until it is sorted again.

use std::collections::{BTreeMap, HashMap};

use hashbrown::HashTable;

use crate::wire::Counters;

/// A flow key's fingerprint within a bucket.
pub type Fingerprint = u64;

/// What reconciliation makes of a flow Goldmane holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Never handed on for this bucket: a late flow, to export whole.
    New,
    /// Handed on with smaller counters: this is the difference to export.
    Grown(Counters),
    /// Nothing to do: the same, smaller in some counter (a replay still under way), or not ours to judge.
    Known,
}

const UNKNOWN: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Entry {
    /// The fingerprint as two halves, so an entry is 36 bytes with 4-byte alignment.
    fp: [u32; 2],
    counts: [u32; 7],
}

impl Entry {
    fn new(fp: Fingerprint, counts: [u32; 7]) -> Self {
        Entry { fp: [(fp >> 32) as u32, fp as u32], counts }
    }

    fn fp(&self) -> Fingerprint {
        (u64::from(self.fp[0]) << 32) | u64::from(self.fp[1])
    }
}

/// One bucket's entries: sorted by fingerprint up to `sorted`, then appended in arrival order since the last seal.
/// A bucket is sealed when the stream moves past it: the appended entries are sorted in place, where a hash map of
/// entries would be drained into a vector (both alive at once) and dropped.
///
/// While `stream` names the stream that brought the bucket, every entry was appended by it, with no index: that
/// stream never sends a key twice. Anything else that reads or writes the bucket seals it first; entries appended
/// after that are found through `index` (their positions, hashed by fingerprint: 5 bytes an entry, where a map's
/// slots cost 41).
#[derive(Debug, Default)]
struct Bucket {
    entries: Vec<Entry>,
    sorted: usize,
    index: HashTable<u32>,
    stream: Option<u64>,
}

impl Bucket {
    /// A bucket that `stream` brings, with room for about `n` entries: a bucket is about as big as the one before,
    /// so it is sized once, not grown.
    fn streamed(stream: u64, n: usize) -> Self {
        Bucket { entries: Vec::with_capacity(n), stream: Some(stream), ..Bucket::default() }
    }

    fn seal(&mut self) {
        self.stream = None;
        if self.sorted == self.entries.len() {
            return;
        }
        let (sorted, fresh) = self.entries.split_at_mut(self.sorted);
        fresh.sort_unstable_by_key(Entry::fp);
        if sorted.last().zip(fresh.first()).is_some_and(|(a, b)| a.fp() > b.fp()) {
            // Late keys found after an earlier seal: two sorted runs, which the stable sort merges in one pass.
            self.entries.sort_by_key(Entry::fp);
        }
        // A key a stream sent twice (Goldmane promises it never does) is kept once, so lookups stay exact.
        self.entries.dedup_by_key(|e| e.fp());
        self.sorted = self.entries.len();
        self.index = HashTable::new();
    }

    /// Sealed first when the stream that brought it has not: only that stream appends without a lookup.
    fn searchable(&mut self) -> &mut Self {
        if self.stream.is_some() {
            self.seal();
        }
        self
    }

    /// Where `fp` is in `entries`.
    fn find(&self, fp: Fingerprint) -> Option<usize> {
        if let Ok(i) = self.entries[..self.sorted].binary_search_by_key(&fp, Entry::fp) {
            return Some(i);
        }
        let entries = &self.entries;
        self.index.find(fp, |&i| entries[i as usize].fp() == fp).map(|&i| i as usize)
    }

    fn get_mut(&mut self, fp: Fingerprint) -> Option<&mut [u32; 7]> {
        let i = self.searchable().find(fp)?;
        Some(&mut self.entries[i].counts)
    }

    /// Records an entry; a key that was there has its counters replaced.
    fn put(&mut self, fp: Fingerprint, counts: [u32; 7]) {
        match self.searchable().find(fp) {
            Some(i) => self.entries[i].counts = counts,
            None => self.append(fp, counts),
        }
    }

    /// Records a new entry if the key is not there; false, changing nothing, when it is. `stream` is the stream
    /// that sent it: the one that brought the bucket appends without a lookup.
    fn put_if_new(&mut self, stream: u64, fp: Fingerprint, counts: [u32; 7]) -> bool {
        if self.stream == Some(stream) {
            self.entries.push(Entry::new(fp, counts));
            return true;
        }
        self.searchable();
        if self.sorted > 0 && self.entries[..self.sorted].binary_search_by_key(&fp, Entry::fp).is_ok() {
            return false;
        }
        // One probe of the index for the bucket being streamed, whether the key is new or not.
        let Bucket { entries, index, .. } = self;
        let position = entries.len() as u32;
        match index.entry(fp, |&i| entries[i as usize].fp() == fp, |&i| entries[i as usize].fp()) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(position);
                entries.push(Entry::new(fp, counts));
                true
            }
        }
    }

    fn append(&mut self, fp: Fingerprint, counts: [u32; 7]) {
        let Bucket { entries, index, .. } = self;
        index.insert_unique(fp, entries.len() as u32, |&i| entries[i as usize].fp());
        entries.push(Entry::new(fp, counts));
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held: the entries' capacity and the index's slots (4 bytes and a control byte each).
    fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>() + self.index.capacity() * 5
    }
}

/// The ledger over a window of buckets.
#[derive(Debug, Default)]
pub struct Ledger {
    buckets: BTreeMap<i64, Bucket>,
    /// Exact counters of entries with a value beyond `u32`.
    big: HashMap<(i64, Fingerprint), Counters>,
    /// The oldest bucket whose every handed-on flow is recorded here: older ones are not ours to judge.
    floor: Option<i64>,
    /// Buckets before this were forgotten.
    kept_from: Option<i64>,
    /// The current stream, counted from 0: a new one may send again what an earlier one sent.
    stream: u64,
}

impl Ledger {
    /// From this bucket on, the ledger records every flow handed on. Set once; later calls are ignored.
    pub fn set_floor(&mut self, bucket: i64) {
        self.floor.get_or_insert(bucket);
    }

    pub fn floor(&self) -> Option<i64> {
        self.floor
    }

    /// A new stream opened: it may send again keys an earlier one sent (a bucket half-received before a drop).
    pub fn new_stream(&mut self) {
        self.stream += 1;
    }

    /// Whether the ledger judges flows of `bucket`: from the floor on, within the window kept.
    pub fn judges(&self, bucket: i64) -> bool {
        self.floor.is_some_and(|f| bucket >= f) && self.kept_from.is_none_or(|k| bucket >= k)
    }

    /// Records a flow handed on with these counters (or a delta's total).
    pub fn record(&mut self, bucket: i64, fp: Fingerprint, counters: &Counters) {
        let (counts, big) = compact(counters);
        self.buckets.entry(bucket).or_default().put(fp, counts);
        if big {
            self.big.insert((bucket, fp), *counters);
        } else if !self.big.is_empty() {
            self.big.remove(&(bucket, fp));
        }
    }

    /// Records a streamed flow if its key is not in the bucket yet; false, recording nothing, when it is (then
    /// [`Ledger::classify`] says what it is). In a bucket the current stream brought, the common case, there is
    /// nothing to look up.
    pub fn record_if_new(&mut self, bucket: i64, fp: Fingerprint, counters: &Counters) -> bool {
        let (counts, big) = compact(counters);
        let stream = self.stream;
        // The bucket being streamed is the newest: found without a search.
        let b = match self.buckets.last_entry() {
            Some(newest) if *newest.key() == bucket => newest.into_mut(),
            newest => {
                let size = newest.map_or(0, |b| b.get().len());
                self.buckets.entry(bucket).or_insert_with(|| Bucket::streamed(stream, size))
            }
        };
        if !b.put_if_new(stream, fp, counts) {
            return false;
        }
        if big {
            self.big.insert((bucket, fp), *counters);
        }
        true
    }

    /// A flow handed on whose counters are not known (a restarted gateway's cursor names only identities).
    pub fn record_unknown(&mut self, bucket: i64, fp: Fingerprint) {
        let b = self.buckets.entry(bucket).or_default().searchable();
        if b.find(fp).is_none() {
            b.append(fp, [UNKNOWN; 7]);
        }
    }

    /// Decides a flow Goldmane shows for `bucket` with these counters and records what is handed on: `None`
    /// when the bucket is not the ledger's to judge.
    pub fn admit(&mut self, bucket: i64, fp: Fingerprint, counters: &Counters) -> Option<Verdict> {
        let verdict = self.classify(bucket, fp, counters)?;
        if verdict != Verdict::Known {
            self.record(bucket, fp, counters);
        }
        Some(verdict)
    }

    /// What to do with a flow Goldmane holds for `bucket` with these counters. Does not record it.
    pub fn classify(&mut self, bucket: i64, fp: Fingerprint, counters: &Counters) -> Option<Verdict> {
        if !self.judges(bucket) {
            return None;
        }
        let Some(b) = self.buckets.get_mut(&bucket) else { return Some(Verdict::New) };
        let Some(counts) = b.get_mut(fp) else { return Some(Verdict::New) };
        let old = match self.big.get(&(bucket, fp)) {
            Some(c) => *c,
            None if *counts == [UNKNOWN; 7] => return Some(Verdict::Known),
            None => counts.map(i64::from),
        };
        let mut delta = [0i64; 7];
        for (d, (new, old)) in delta.iter_mut().zip(counters.iter().zip(old.iter())) {
            if new < old {
                // Smaller than what was exported: Goldmane is still rebuilding this bucket (a Felix replay under
                // way). Later passes see it whole.
                return Some(Verdict::Known);
            }
            *d = new - old;
        }
        Some(if delta == [0; 7] { Verdict::Known } else { Verdict::Grown(delta) })
    }

    /// Forgets buckets older than `oldest`; returns how many entries went.
    pub fn forget_before(&mut self, oldest: i64) -> usize {
        self.kept_from = Some(self.kept_from.map_or(oldest, |k| k.max(oldest)));
        let keep = self.buckets.split_off(&oldest);
        let gone: usize = self.buckets.values().map(Bucket::len).sum();
        self.buckets = keep;
        self.big.retain(|(b, _), _| *b >= oldest);
        gone
    }

    /// Sorts what was appended to a bucket (done when its stream moves on, to keep memory exact).
    pub fn seal(&mut self, bucket: i64) {
        if let Some(b) = self.buckets.get_mut(&bucket) {
            b.seal();
        }
    }

    /// (key, bucket) entries held.
    pub fn entries(&self) -> usize {
        self.buckets.values().map(Bucket::len).sum()
    }

    /// Bytes the entries take (their vectors' capacity), for the memory figures.
    pub fn bytes(&self) -> usize {
        self.buckets.values().map(Bucket::bytes).sum::<usize>()
            + self.big.capacity() * (std::mem::size_of::<((i64, Fingerprint), Counters)>() + 1)
    }

    /// Buckets held, oldest first.
    pub fn buckets(&self) -> impl Iterator<Item = i64> + '_ {
        self.buckets.keys().copied()
    }
}

fn compact(c: &Counters) -> ([u32; 7], bool) {
    let mut big = false;
    let counts = c.map(|v| match u32::try_from(v) {
        Ok(v) if v != UNKNOWN => v,
        _ => {
            big = true;
            UNKNOWN
        }
    });
    (counts, big)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_36_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 36);
    }

    #[test]
    fn new_grown_known_and_a_replay_under_way() {
        let mut l = Ledger::default();
        assert_eq!(l.classify(1500, 1, &[1; 7]), None, "no floor yet: not ours to judge");
        l.set_floor(1500);
        l.record(1500, 1, &[10, 10, 100, 100, 1, 1, 0]);
        assert_eq!(l.classify(1500, 2, &[1; 7]), Some(Verdict::New));
        assert_eq!(l.classify(1515, 1, &[1; 7]), Some(Verdict::New), "same key, another bucket");
        assert_eq!(l.classify(1485, 9, &[1; 7]), None, "before the floor");
        assert_eq!(l.classify(1500, 1, &[10, 10, 100, 100, 1, 1, 0]), Some(Verdict::Known));
        assert_eq!(l.classify(1500, 1, &[12, 10, 150, 100, 1, 1, 2]), Some(Verdict::Grown([2, 0, 50, 0, 0, 0, 2])));
        assert_eq!(l.classify(1500, 1, &[5, 20, 100, 100, 1, 1, 0]), Some(Verdict::Known), "smaller: replay under way");
        l.record(1500, 1, &[12, 10, 150, 100, 1, 1, 2]);
        assert_eq!(l.classify(1500, 1, &[12, 10, 150, 100, 1, 1, 2]), Some(Verdict::Known));
        assert_eq!(l.entries(), 1);
    }

    #[test]
    fn a_key_a_later_stream_sends_again_is_known_and_left_to_classify() {
        let mut l = Ledger::default();
        l.set_floor(0);
        l.new_stream();
        assert!(l.record_if_new(15, 1, &[1; 7]));
        l.new_stream();
        assert!(!l.record_if_new(15, 1, &[2; 7]), "known: not recorded again");
        assert!(l.record_if_new(15, 3, &[1; 7]), "a key the first stream had not sent is new");
        assert!(!l.record_if_new(15, 3, &[1; 7]), "appended after the bucket was sorted: found through the index");
        assert_eq!(l.classify(15, 1, &[2; 7]), Some(Verdict::Grown([1; 7])));
        l.seal(15);
        l.new_stream();
        assert!(!l.record_if_new(15, 1, &[3; 7]), "known once sealed too");
        let big = [5_000_000_000, 1, 1, 1, 1, 1, 1];
        assert!(l.record_if_new(15, 2, &big));
        assert_eq!(l.classify(15, 2, &big), Some(Verdict::Known), "counters beyond u32 kept exactly");
        assert_eq!(l.entries(), 3);
    }

    #[test]
    fn the_stream_that_brings_a_bucket_appends_without_a_lookup_until_another_reads_it() {
        let mut l = Ledger::default();
        l.set_floor(0);
        l.new_stream();
        for k in 0..1_000 {
            assert!(l.record_if_new(15, k, &[1; 7]));
        }
        assert!(l.buckets[&15].index.is_empty(), "no index for the stream's own bucket");
        // One stream sends a key once a bucket; were it to send one twice, the seal keeps it once.
        assert!(l.record_if_new(15, 7, &[1; 7]));
        assert_eq!(l.classify(15, 7, &[1; 7]), Some(Verdict::Known), "reading the bucket seals it first");
        assert_eq!(l.entries(), 1_000);
        assert!(!l.record_if_new(15, 8, &[1; 7]), "sealed: the same stream's keys are looked up now");
        assert!(l.record_if_new(15, 1_000, &[1; 7]));
        assert!(!l.record_if_new(15, 1_000, &[1; 7]), "found through the index");
        // Reconciliation found a late key of the bucket the stream is about to bring: the stream looks it up.
        l.record(30, 5, &[1; 7]);
        assert!(!l.record_if_new(30, 5, &[1; 7]), "recorded by reconciliation first");
        assert!(l.record_if_new(30, 6, &[1; 7]));
        assert_eq!(l.entries(), 1_003);
    }

    #[test]
    fn counters_beyond_u32_are_exact_and_unknown_ones_never_grow() {
        let mut l = Ledger::default();
        l.set_floor(0);
        let big = [5_000_000_000, 1, 1, 1, 1, 1, 1];
        l.record(15, 7, &big);
        assert_eq!(l.classify(15, 7, &big), Some(Verdict::Known));
        assert_eq!(l.classify(15, 7, &[5_000_000_003, 1, 1, 1, 1, 1, 1]), Some(Verdict::Grown([3, 0, 0, 0, 0, 0, 0])));
        l.record_unknown(15, 8);
        assert_eq!(l.classify(15, 8, &[9; 7]), Some(Verdict::Known));
    }

    #[test]
    fn late_keys_recorded_after_a_seal_are_merged_by_the_next() {
        let fp = |k: u64| k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut l = Ledger::default();
        l.set_floor(0);
        // The stream's keys (even), sealed when it moves on; then late keys (odd) between them, and growth of
        // streamed ones, over two more seals.
        l.new_stream();
        for k in (0..4_000u64).step_by(2) {
            assert!(l.record_if_new(15, fp(k), &[k as i64; 7]));
        }
        l.new_stream();
        assert!(!l.record_if_new(15, fp(10), &[0; 7]), "a key appended is found by the next stream");
        l.seal(15);
        for round in 0..2u64 {
            for k in (1 + 2 * round..4_000).step_by(4) {
                assert!(l.record_if_new(15, fp(k), &[k as i64; 7]), "late key {k} is new");
            }
            l.record(15, fp(round * 2), &[1_000_000; 7]);
            assert!(!l.record_if_new(15, fp(1 + 2 * round), &[0; 7]), "found among the appended keys");
            l.seal(15);
        }
        assert_eq!(l.entries(), 4_000);
        for k in 0..4_000u64 {
            let expected = if k < 4 && k % 2 == 0 { 1_000_000 } else { k as i64 };
            assert_eq!(l.classify(15, fp(k), &[expected; 7]), Some(Verdict::Known), "key {k}");
        }
        assert_eq!(l.classify(15, fp(4_001), &[1; 7]), Some(Verdict::New));
        let sorted = &l.buckets[&15].entries;
        assert!(sorted.windows(2).all(|w| w[0].fp() < w[1].fp()), "one sorted run after the seal");
    }

    #[test]
    fn many_entries_stay_findable_through_sorting_and_forgetting() {
        let mut l = Ledger::default();
        l.set_floor(0);
        for b in [0, 15, 30] {
            for k in 0..5_000u64 {
                l.record(b, k.wrapping_mul(0x9e37_79b9_7f4a_7c15), &[k as i64; 7]);
            }
        }
        l.seal(0);
        for k in (0..5_000u64).step_by(7) {
            let fp = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            assert_eq!(l.classify(15, fp, &[k as i64; 7]), Some(Verdict::Known));
            assert_eq!(l.classify(0, fp, &[k as i64 + 1; 7]), Some(Verdict::Grown([1; 7])));
        }
        assert_eq!(l.entries(), 15_000);
        assert_eq!(l.forget_before(30), 10_000);
        assert_eq!(l.entries(), 5_000);
        assert_eq!(l.buckets().collect::<Vec<_>>(), vec![30]);
        assert_eq!(l.classify(15, 1, &[1; 7]), None, "forgotten buckets are not judged");
    }
}
