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
        }))
    }

    /// How often [`Post::flush_idle`] should run, if aggregation is on.
    pub fn tick(&self) -> Option<Duration> {
        self.linger.map(|l| (l / 4).max(Duration::from_millis(10)))
    }

    /// Counts the items and, with aggregation on, merges them; returns what is ready to leave now.
    pub fn process(&self, items: Vec<Item>, provenance: Option<Arc<str>>) -> Vec<Merged> {
        if let Some(stats) = &self.stats {
            let mut stats = stats.lock().expect("flow stats lock");
            for item in &items {
                stats.observe(&item.flow, &self.metrics.flow);
            }
        }
        let Some(aggregator) = &self.aggregator else {
            return items.into_iter().map(|item| Merged { item, provenance: provenance.clone() }).collect();
        };
        let mut out = Vec::new();
        let mut agg = aggregator.lock().expect("aggregator lock");
        let now = Instant::now();
        for item in items {
            let f = agg.add(item, provenance.clone(), now, &mut out);
            self.account(&[f], agg.groups());
        }
        out
    }

    /// Buckets quiet for the linger time.
    pub fn flush_idle(&self) -> Vec<Merged> {
        self.flush(|agg, out| agg.flush_idle(Instant::now(), out))
    }

    /// Everything held (at shutdown).
    pub fn flush_all(&self) -> Vec<Merged> {
        self.flush(|agg, out| agg.flush_all(out))
    }

    fn flush(&self, f: impl FnOnce(&mut Aggregator, &mut Vec<Merged>) -> Vec<Flushed>) -> Vec<Merged> {
        let Some(aggregator) = &self.aggregator else { return Vec::new() };
        let mut out = Vec::new();
        let mut agg = aggregator.lock().expect("aggregator lock");
        let flushed = f(&mut agg, &mut out);
        self.account(&flushed, agg.groups());
        out
    }

    fn account(&self, flushed: &[Flushed], held: usize) {
        for f in flushed.iter().filter(|f| f.flows_in > 0) {
            self.metrics.aggregated(f.flows_in, f.records_out);
        }
        self.metrics.aggregation_groups.set(held as i64);
    }
}
