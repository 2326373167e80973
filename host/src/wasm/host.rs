//! What the host offers guests: a rate-limited log attributed to the transform, and bounded named counters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::GuestState;
use super::bindings::host::{Host, Level};
use super::bindings::types;
use crate::telemetry::Metrics;

/// Log lines a guest may write per second (a burst of this many, refilled continuously).
pub const LOG_LINES_PER_SECOND: f64 = 20.0;
/// Distinct counter names per transform; further names are ignored (metric cardinality stays bounded).
pub const MAX_COUNTERS: usize = 32;

/// A token bucket.
#[derive(Debug)]
pub struct RateLimit {
    tokens: f64,
    last: Instant,
    rate: f64,
    /// Lines dropped since the last one let through.
    pub suppressed: u64,
}

impl RateLimit {
    pub fn new(rate: f64) -> Self {
        RateLimit { tokens: rate, last: Instant::now(), rate, suppressed: 0 }
    }

    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

pub struct HostState {
    transform: String,
    log_limit: RateLimit,
    counters: HashMap<String, u64>,
    metrics: Option<Arc<Metrics>>,
}

impl HostState {
    pub fn new(transform: &str, metrics: Option<Arc<Metrics>>) -> Self {
        HostState {
            transform: transform.to_string(),
            log_limit: RateLimit::new(LOG_LINES_PER_SECOND),
            counters: HashMap::new(),
            metrics,
        }
    }
}

impl types::Host for GuestState {}

/// Linked with `|s: &mut GuestState| &mut s.host`: the host functions see only their own state.
impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let h = self;
        if !h.log_limit.allow() {
            return Ok(());
        }
        let suppressed = std::mem::take(&mut h.log_limit.suppressed);
        let t = h.transform.as_str();
        match level {
            Level::Debug => tracing::debug!(transform = t, suppressed, "{message}"),
            Level::Info => tracing::info!(transform = t, suppressed, "{message}"),
            Level::Warn => tracing::warn!(transform = t, suppressed, "{message}"),
            Level::Error => tracing::error!(transform = t, suppressed, "{message}"),
        }
        Ok(())
    }

    fn counter_add(&mut self, name: String, delta: u64) -> wasmtime::Result<()> {
        let h = self;
        if !h.counters.contains_key(&name) && h.counters.len() >= MAX_COUNTERS {
            return Ok(());
        }
        *h.counters.entry(name.clone()).or_default() += delta;
        if let Some(m) = &h.metrics {
            m.transform_counter(&h.transform, &name, delta);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_a_burst_through_then_counts_what_it_drops() {
        let mut r = RateLimit::new(5.0);
        let allowed = (0..20).filter(|_| r.allow()).count();
        assert_eq!(allowed, 5);
        assert_eq!(r.suppressed, 15);
    }
}
