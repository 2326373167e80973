//! `batch`: how records are grouped into OTLP requests.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;

/// Records per OTLP request (`OTEL_BLRP_MAX_EXPORT_BATCH_SIZE` default).
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 512;
/// Uncompressed request size that flushes a batch early.
pub const DEFAULT_BATCH_MAX_BYTES: usize = 4 << 20;
/// Longest a record waits in a partial batch (`OTEL_BLRP_SCHEDULE_DELAY` default).
pub const DEFAULT_BATCH_DELAY_MS: u64 = 1_000;

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawBatch {
    pub max_records: Option<usize>,
    pub max_bytes: Option<usize>,
    pub delay_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_records: usize,
    pub max_bytes: usize,
    pub delay: Duration,
}

impl RawBatch {
    pub(super) fn resolve(self, p: &mut Problems) -> BatchConfig {
        let batch = BatchConfig {
            max_records: self.max_records.unwrap_or(DEFAULT_BATCH_MAX_RECORDS),
            max_bytes: self.max_bytes.unwrap_or(DEFAULT_BATCH_MAX_BYTES),
            delay: Duration::from_millis(self.delay_ms.unwrap_or(DEFAULT_BATCH_DELAY_MS)),
        };
        if batch.max_records == 0 {
            p.at("batch.max_records", "must be at least 1");
        }
        if batch.max_bytes < 1024 {
            p.at("batch.max_bytes", "must be at least 1024");
        }
        batch
    }
}
