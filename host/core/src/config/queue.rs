//! `queue`: the bounded queue between batcher and exporter, in memory or on disk.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problems;

/// The in-memory queue between batcher and exporter, in bytes of encoded requests. Sized so a whole
/// 100,000-flow Goldmane burst (~1.2 KiB a record) fits while the endpoint is slow or down.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 512 << 20;
/// The queue's record bound. `OTEL_BLRP_MAX_QUEUE_SIZE` sets it; below 100,000 a burst can stall the stream.
pub const DEFAULT_QUEUE_MAX_RECORDS: usize = 250_000;
/// A Goldmane burst Flowgate must absorb without stalling the stream.
pub const BURST_RECORDS: usize = 100_000;
/// Default on-disk queue bound.
pub const DEFAULT_PERSISTENT_MAX_BYTES: u64 = 1 << 30;

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawQueue {
    pub max_bytes: Option<usize>,
    pub max_records: Option<usize>,
    /// Keep queued batches on disk (crash- and restart-safe) instead of in memory.
    pub persistent: Option<RawPersistentQueue>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawPersistentQueue {
    /// A directory of its own (an emptyDir or a PVC in Kubernetes).
    pub dir: Option<PathBuf>,
    /// Bytes on disk at most (segment files).
    pub max_bytes: Option<u64>,
    /// `always` (default: every batch is fsynced before it counts as queued) or `never` (the OS decides: survives
    /// a crash of Flowgate, not of the node).
    pub fsync: Option<Fsync>,
    /// `block` (default: backpressure to the stream) or `drop-oldest` (counted as dropped, reason `queue_full`).
    pub when_full: Option<WhenFull>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Fsync {
    #[default]
    Always,
    Never,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// A full queue stops the pipeline and, behind it, the Goldmane stream (HTTP/2 flow control slows Goldmane
    /// down): nothing is lost, until Goldmane's own 60 s stall rule drops the rest of a bucket.
    #[default]
    Block,
    /// A full queue drops its oldest batch to take the new one, counted as `flows_dropped{reason="queue_full"}`:
    /// the stream never waits, old data goes first. The persistent queue only: the in-memory one always blocks.
    DropOldest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistentQueueConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub fsync: Fsync,
    pub when_full: WhenFull,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub max_bytes: usize,
    pub max_records: usize,
    pub persistent: Option<PersistentQueueConfig>,
}

impl RawQueue {
    /// The queue alone; that it holds a whole batch is checked beside the batch (in `RawConfig::resolve`).
    pub(super) fn resolve(self, p: &mut Problems, warnings: &mut Vec<String>) -> QueueConfig {
        let persistent = match self.persistent {
            None => None,
            Some(RawPersistentQueue { dir: None, .. }) => {
                p.at("queue.persistent.dir", "required");
                None
            }
            Some(RawPersistentQueue { dir: Some(dir), max_bytes, fsync, when_full }) => {
                let max_bytes = max_bytes.unwrap_or(DEFAULT_PERSISTENT_MAX_BYTES);
                if max_bytes < 16 << 20 {
                    p.at("queue.persistent.max_bytes", "must be at least 16 MiB (16777216)");
                }
                Some(PersistentQueueConfig {
                    dir,
                    max_bytes,
                    fsync: fsync.unwrap_or_default(),
                    when_full: when_full.unwrap_or_default(),
                })
            }
        };
        let max_records = self.max_records.unwrap_or(DEFAULT_QUEUE_MAX_RECORDS);
        if max_records < BURST_RECORDS {
            warnings.push(format!(
                "{} is {max_records}: a Goldmane burst of {BURST_RECORDS} flows will not fit while the endpoint is slow, and Flowgate will slow the stream down (Goldmane drops a bucket's rest after a 60 s stall)",
                p.label("queue.max_records"),
            ));
        }
        QueueConfig { max_bytes: self.max_bytes.unwrap_or(DEFAULT_QUEUE_MAX_BYTES), max_records, persistent }
    }
}
