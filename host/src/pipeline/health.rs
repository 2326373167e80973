//! How each transform of a chain is doing, shared by every worker running it: the flows it was given and the
//! ones that failed (the rollback judges a new chain by them), and its quarantine.
//!
//! Quarantine is one state per transform, not per worker: traps in a row on any worker count together, a
//! successful call on any worker clears them, and a quarantined transform is skipped by every worker until its
//! backoff ends. Otherwise `workers` instances would each have to trap [`QUARANTINE_TRAPS`] times, and a
//! transform would be in quarantine on one thread while still trapping on the others.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Traps in a row (no successful call between them, on any worker) within [`TRAP_WINDOW`] that quarantine a
/// transform.
pub const QUARANTINE_TRAPS: usize = 20;
pub const TRAP_WINDOW: Duration = Duration::from_secs(60);
/// The first quarantine's length; each one after doubles it, up to [`QUARANTINE_MAX`].
const QUARANTINE_FIRST: Duration = Duration::from_secs(1);
const QUARANTINE_MAX: Duration = Duration::from_secs(60);

/// One transform of one chain, as every worker sees it.
#[derive(Debug, Default)]
pub struct TransformHealth {
    flows: AtomicU64,
    failures: AtomicU64,
    quarantine: Mutex<Quarantine>,
    /// Fast paths, so a transform that never traps takes no lock per call: traps are counted, a quarantine is on.
    trapping: AtomicBool,
    quarantined: AtomicBool,
}

#[derive(Debug, Default)]
struct Quarantine {
    traps: VecDeque<Instant>,
    until: Option<Instant>,
    backoff: Option<Duration>,
}

/// Whether a worker may call the transform now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Serve,
    /// Quarantined: its flows take the failure policy without a call.
    Quarantined,
    /// The quarantine just ended (reported to one worker only, which logs it); serve.
    Released,
}

/// What one more trap meant.
#[derive(Debug, PartialEq, Eq)]
pub enum TrapVerdict {
    /// The first trap in a row: worth a warning.
    First,
    /// Another in a row.
    Again,
    /// Enough in a row: quarantined for this long (reported once, to the worker whose trap tipped it).
    Quarantined(Duration),
}

impl TransformHealth {
    /// Flows handed to the transform.
    pub fn given(&self, flows: usize) {
        self.flows.fetch_add(flows as u64, Ordering::Relaxed);
    }

    /// A flow that took the failure policy (a guest error, a trap pinned on it, or quarantine).
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// (flows given, flows failed) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.flows.load(Ordering::Relaxed), self.failures.load(Ordering::Relaxed))
    }

    pub fn admit(&self, now: Instant) -> Admission {
        if !self.quarantined.load(Ordering::Acquire) {
            return Admission::Serve;
        }
        let mut q = self.quarantine.lock().expect("quarantine lock");
        match q.until {
            Some(until) if now < until => Admission::Quarantined,
            Some(_) => {
                q.until = None;
                self.quarantined.store(false, Ordering::Release);
                Admission::Released
            }
            None => Admission::Serve,
        }
    }

    /// A call that returned: the traps in a row end.
    pub fn succeeded(&self) {
        if !self.trapping.load(Ordering::Acquire) {
            return;
        }
        let mut q = self.quarantine.lock().expect("quarantine lock");
        q.traps.clear();
        self.trapping.store(false, Ordering::Release);
    }

    pub fn trapped(&self, now: Instant) -> TrapVerdict {
        let mut q = self.quarantine.lock().expect("quarantine lock");
        if q.until.is_some_and(|until| now < until) {
            // Another worker's call that was already running when the quarantine began.
            return TrapVerdict::Again;
        }
        q.traps.push_back(now);
        self.trapping.store(true, Ordering::Release);
        while q.traps.front().is_some_and(|t| now.duration_since(*t) > TRAP_WINDOW) {
            q.traps.pop_front();
        }
        if q.traps.len() >= QUARANTINE_TRAPS {
            let backoff = q.backoff.map_or(QUARANTINE_FIRST, |b| (b * 2).min(QUARANTINE_MAX));
            q.backoff = Some(backoff);
            q.until = Some(now + backoff);
            q.traps.clear();
            self.trapping.store(false, Ordering::Release);
            self.quarantined.store(true, Ordering::Release);
            return TrapVerdict::Quarantined(backoff);
        }
        if q.traps.len() == 1 { TrapVerdict::First } else { TrapVerdict::Again }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traps_in_a_row_quarantine_with_a_doubling_backoff_and_a_success_resets_the_count() {
        let h = TransformHealth::default();
        let t0 = Instant::now();
        assert_eq!(h.trapped(t0), TrapVerdict::First);
        h.succeeded();
        assert_eq!(h.trapped(t0), TrapVerdict::First, "a success in between starts a new row");
        for _ in 2..QUARANTINE_TRAPS {
            assert_eq!(h.trapped(t0), TrapVerdict::Again);
        }
        assert_eq!(h.trapped(t0), TrapVerdict::Quarantined(QUARANTINE_FIRST));
        assert_eq!(h.admit(t0), Admission::Quarantined);
        assert_eq!(h.admit(t0 + QUARANTINE_FIRST), Admission::Released);
        assert_eq!(h.admit(t0 + QUARANTINE_FIRST), Admission::Serve, "released once");
        let t1 = t0 + QUARANTINE_FIRST;
        for _ in 1..QUARANTINE_TRAPS {
            h.trapped(t1);
        }
        assert_eq!(h.trapped(t1), TrapVerdict::Quarantined(QUARANTINE_FIRST * 2));
    }
}
