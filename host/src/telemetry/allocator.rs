//! The memory allocator of the binaries (jemalloc): the settings the gateway runs it with, and its own accounting
//! of where the heap's bytes are, for the metrics.
//!
//! jemalloc reads its settings from [`CONF_VAR`] as the process starts, before `main`. The `flowgate` binary
//! starts `run` with [`GATEWAY_CONF`] there unless the variable is set (see its `main.rs`).

use tikv_jemalloc_ctl::{Access as _, AsName as _, epoch, stats};

/// jemalloc's settings variable (its `MALLOC_CONF`, with the prefix its Rust build gives every symbol).
pub const CONF_VAR: &str = "_RJEM_MALLOC_CONF";

/// The gateway's allocator settings, measured with `flowgate-e2e` (medians of alternating runs, README):
/// - `background_thread:true`: a thread returns freed pages on time. Without it, pages go back only when some
///   thread allocates or frees again, so a gateway gone quiet after a burst kept the burst's pages.
/// - `narenas:1`: one arena for every thread. With jemalloc's default (4 a core) each thread of the data path
///   holds its own free pages; one arena peaked 8 MiB lower, for about 3% more CPU.
/// - `dirty_decay_ms:300`, `muzzy_decay_ms:0`: freed pages go back to the kernel over 300 ms (jemalloc's default is
///   10 s). With 4 arenas a core, 100 ms cost 13% more CPU a flow than mimalloc did, and 1,000 ms peaked at
///   55.6 MiB against 47.7 at 100 ms.
pub const GATEWAY_CONF: &str = "background_thread:true,narenas:1,dirty_decay_ms:300,muzzy_decay_ms:0";

/// What jemalloc runs with, as it reports it.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub background_thread: bool,
    pub narenas: u32,
    pub dirty_decay_ms: isize,
    pub muzzy_decay_ms: isize,
}

/// The settings in effect, or why they cannot be read.
pub fn settings() -> Result<Settings, tikv_jemalloc_ctl::Error> {
    Ok(Settings {
        background_thread: b"background_thread\0".name().read()?,
        narenas: b"opt.narenas\0".name().read()?,
        dirty_decay_ms: b"opt.dirty_decay_ms\0".name().read()?,
        muzzy_decay_ms: b"opt.muzzy_decay_ms\0".name().read()?,
    })
}

/// jemalloc's accounting, in bytes (refreshed on each call).
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Held by live allocations.
    pub allocated: u64,
    /// In pages that hold live allocations: `allocated` plus the room between them.
    pub active: u64,
    /// In RAM on the allocator's account: active pages, metadata, and freed pages not yet returned.
    pub resident: u64,
    /// The allocator's own bookkeeping.
    pub metadata: u64,
    /// Address space kept mapped but returned to the kernel (not in RAM).
    pub retained: u64,
}

/// The accounting now, or `None` where it cannot be read.
pub fn stats() -> Option<Stats> {
    epoch::advance().ok()?;
    Some(Stats {
        allocated: stats::allocated::read().ok()? as u64,
        active: stats::active::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
        metadata: stats::metadata::read().ok()? as u64,
        retained: stats::retained::read().ok()? as u64,
    })
}
