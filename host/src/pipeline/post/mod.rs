//! Stages after the transform chain, on the flows it hands on: flow-derived metrics ([`metrics`]) and
//! aggregation ([`aggregate`]). Both are off by default; with either on, the pipeline decodes every flow (the
//! pass-through path otherwise renders straight from the wire).
//!
//! Metrics are counted before aggregation, so `flows` counters count Goldmane's flows, not merged records.

pub mod aggregate;
pub mod metrics;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use aggregate::{Aggregator, Flushed, Merged};
pub use metrics::{FlowFamilies, FlowStats};

use crate::config::{AggregationConfig, FlowMetricsConfig};
use crate::pipeline::Item;
use crate::telemetry::Metrics;

/// The post-chain stages, shared by every pipeline worker.
pub struct Post {
    metrics: Arc<Metrics>,
    stats: Option<Mutex<FlowStats>>,
    aggregator: Option<Mutex<Aggregator>>,
    linger: Option<Duration>,
    /// Chunks whose flows went into the aggregator: done for the stream cursor only once it is empty.
    held_chunks: Mutex<Vec<u64>>,
}

impl Post {
    /// `None` when both stages are off.
    pub fn new(
        flow_metrics: Option<FlowMetricsConfig>,
        aggregation: Option<AggregationConfig>,
        metrics: Arc<Metrics>,
    ) -> Option<Arc<Post>> {
        if flow_metrics.is_none() && aggregation.is_none() {
            return None;
        }
        Some(Arc::new(Post {
            metrics,
            stats: flow_metrics.map(|c| Mutex::new(FlowStats::new(c))),
            linger: aggregation.map(|a| a.linger),
            aggregator: aggregation.map(|a| Mutex::new(Aggregator::new(a))),
            held_chunks: Mutex::new(Vec::new()),
        }))
    }

    /// Whether the flow metrics are on.
    pub fn counts_flows(&self) -> bool {
        self.stats.is_some()
    }

    /// Every flow-metric series' current value, and when counting began (`None` with the flow metrics off).
    pub fn flow_metric_points(&self) -> Option<(Vec<metrics::Point>, std::time::SystemTime)> {
        let stats = self.stats.as_ref()?.lock().expect("flow stats lock");
        Some((stats.points(), stats.started))
    }

    /// How often [`Post::flush_idle`] should run, if aggregation is on.
    pub fn tick(&self) -> Option<Duration> {
        self.linger.map(|l| (l / 4).max(Duration::from_millis(10)))
    }

    /// Counts the items and, with aggregation on, merges them; returns what is ready to leave now, and the source
    /// chunks (`chunk` among them) now completely out of this stage.
    pub fn process(&self, items: Vec<Item>, provenance: Option<Arc<str>>, chunk: u64) -> (Vec<Merged>, Vec<u64>) {
        if let Some(stats) = &self.stats {
            let mut stats = stats.lock().expect("flow stats lock");
            for item in &items {
                stats.observe(item.flow(), &self.metrics.flow);
            }
        }
        let Some(aggregator) = &self.aggregator else {
            let merged = items.into_iter().map(|item| Merged { item, provenance: provenance.clone() }).collect();
            return (merged, (chunk != 0).then_some(chunk).into_iter().collect());
        };
        let mut out = Vec::new();
        let mut agg = aggregator.lock().expect("aggregator lock");
        let now = Instant::now();
        // Buckets sent early (past `max_groups`) are accounted for once, after the whole chunk.
        let early: Vec<Flushed> =
            items.into_iter().map(|item| agg.add(item, provenance.clone(), now, &mut out)).collect();
        self.account(&early, agg.groups());
        let chunks = self.release_chunks(Some(chunk), agg.groups() == 0);
        (out, chunks)
    }

    /// Holds `chunk` (when numbered) and, when the aggregator is empty, releases every chunk held.
    fn release_chunks(&self, chunk: Option<u64>, empty: bool) -> Vec<u64> {
        let mut held = self.held_chunks.lock().expect("held chunks lock");
        held.extend(chunk.filter(|&c| c != 0));
        if empty { std::mem::take(&mut *held) } else { Vec::new() }
    }

    /// Buckets quiet for the linger time (and the chunks that completes).
    pub fn flush_idle(&self) -> (Vec<Merged>, Vec<u64>) {
        self.flush(|agg, out| agg.flush_idle(Instant::now(), out))
    }

    /// Everything held (at shutdown).
    pub fn flush_all(&self) -> (Vec<Merged>, Vec<u64>) {
        self.flush(|agg, out| agg.flush_all(out))
    }

    fn flush(&self, f: impl FnOnce(&mut Aggregator, &mut Vec<Merged>) -> Vec<Flushed>) -> (Vec<Merged>, Vec<u64>) {
        let Some(aggregator) = &self.aggregator else { return (Vec::new(), Vec::new()) };
        let mut out = Vec::new();
        let mut agg = aggregator.lock().expect("aggregator lock");
        let flushed = f(&mut agg, &mut out);
        self.account(&flushed, agg.groups());
        let chunks = self.release_chunks(None, agg.groups() == 0);
        (out, chunks)
    }

    fn account(&self, flushed: &[Flushed], held: usize) {
        for f in flushed.iter().filter(|f| f.flows_in > 0) {
            self.metrics.aggregated(f.flows_in, f.records_out);
        }
        self.metrics.aggregation_groups.set(held as i64);
    }
}
