//! Aggregation: flows whose final keys are equal within one 15 s bucket become one record.
//!
//! The merge key is the flow key as the chain left it, reduced by the level (workload names dropped, or namespace
//! pairs only), without the policy trace, plus the bucket (`start_time`, `end_time`) and whatever the chain attached
//! (attributes, severity, body, the chain's provenance): flows a transform shaped differently never merge. Merging
//! sums packets, bytes and connection counts, intersects labels and unites policy traces (first-seen order).
//!
//! Goldmane sends a bucket as one burst, so a bucket is complete once it has been quiet for `linger`; it is then
//! handed on. Past `max_groups` merged records the oldest bucket goes early. A flow arriving for a bucket already
//! handed on starts a new record for it: sums are conserved, the bucket is just not merged as far as it could be.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use prost::Message as _;

use crate::config::{AggregationConfig, AggregationLevel};
use crate::pipeline::Item;
use crate::proto::{Flow, FlowKey, PolicyHit};

/// A merged record ready to leave, with the provenance of the chain that shaped it.
pub struct Merged {
    pub item: Item,
    pub provenance: Option<Arc<str>>,
}

/// What one hand-over produced, for the reduction metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub flows_in: u64,
    pub records_out: u64,
}

struct Bucket {
    groups: HashMap<Vec<u8>, Merged>,
    /// Insertion order of `groups`, so output order follows arrival.
    order: Vec<Vec<u8>>,
    flows_in: u64,
    touched: Instant,
}

pub struct Aggregator {
    cfg: AggregationConfig,
    buckets: BTreeMap<(i64, i64), Bucket>,
    groups: usize,
}

impl Aggregator {
    pub fn new(cfg: AggregationConfig) -> Self {
        Aggregator { cfg, buckets: BTreeMap::new(), groups: 0 }
    }

    /// Merged records held now.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Takes one item in; returns what had to leave early to stay within `max_groups`.
    pub fn add(
        &mut self,
        mut item: Item,
        provenance: Option<Arc<str>>,
        now: Instant,
        out: &mut Vec<Merged>,
    ) -> Flushed {
        reduce(item.flow_mut(), self.cfg.level);
        let key = merge_key(&item, provenance.as_deref());
        let bucket = self.buckets.entry((item.flow().start_time, item.flow().end_time)).or_insert_with(|| Bucket {
            groups: HashMap::new(),
            order: Vec::new(),
            flows_in: 0,
            touched: now,
        });
        bucket.flows_in += 1;
        bucket.touched = now;
        match bucket.groups.get_mut(&key) {
            Some(m) => merge(m.item.flow_mut(), item.into_flow()),
            None => {
                bucket.order.push(key.clone());
                bucket.groups.insert(key, Merged { item, provenance });
                self.groups += 1;
            }
        }
        let mut flushed = Flushed::default();
        while self.groups > self.cfg.max_groups {
            let Some((&oldest, _)) = self.buckets.iter().next() else { break };
            let f = self.take(oldest, out);
            flushed.flows_in += f.flows_in;
            flushed.records_out += f.records_out;
        }
        flushed
    }

    /// Hands on every bucket quiet for `linger`.
    pub fn flush_idle(&mut self, now: Instant, out: &mut Vec<Merged>) -> Vec<Flushed> {
        let idle: Vec<_> = self
            .buckets
            .iter()
            .filter(|(_, b)| now.saturating_duration_since(b.touched) >= self.cfg.linger)
            .map(|(k, _)| *k)
            .collect();
        idle.into_iter().map(|k| self.take(k, out)).collect()
    }

    /// Hands on everything (shutdown).
    pub fn flush_all(&mut self, out: &mut Vec<Merged>) -> Vec<Flushed> {
        let all: Vec<_> = self.buckets.keys().copied().collect();
        all.into_iter().map(|k| self.take(k, out)).collect()
    }

    fn take(&mut self, bucket: (i64, i64), out: &mut Vec<Merged>) -> Flushed {
        let Some(mut b) = self.buckets.remove(&bucket) else { return Flushed::default() };
        self.groups -= b.groups.len();
        let records_out = b.order.len() as u64;
        out.extend(b.order.iter().filter_map(|k| b.groups.remove(k)));
        Flushed { flows_in: b.flows_in, records_out }
    }
}

/// Clears what the level does not keep.
pub fn reduce(flow: &mut Flow, level: AggregationLevel) {
    let Some(k) = flow.key.as_mut() else { return };
    match level {
        AggregationLevel::None => {}
        AggregationLevel::Names => {
            k.source_name.clear();
            k.dest_name.clear();
        }
        AggregationLevel::Namespaces => {
            *k = FlowKey {
                source_namespace: std::mem::take(&mut k.source_namespace),
                source_type: k.source_type,
                dest_namespace: std::mem::take(&mut k.dest_namespace),
                dest_type: k.dest_type,
                reporter: k.reporter,
                action: k.action,
                policies: k.policies.take(),
                ..FlowKey::default()
            };
        }
    }
}

/// The bytes two items must share to merge.
fn merge_key(item: &Item, provenance: Option<&str>) -> Vec<u8> {
    let mut key = match &item.flow().key {
        Some(k) => FlowKey { policies: None, ..k.clone() }.encode_to_vec(),
        None => Vec::new(),
    };
    // What the chain attached (rare; Debug is stable within a build, which is all a merge key needs).
    if !item.attributes.is_empty() || item.severity.is_some() || item.body.is_some() || provenance.is_some() {
        key.push(0xff);
        key.extend_from_slice(
            format!("{:?}{:?}{:?}{provenance:?}", item.attributes, item.severity, item.body).as_bytes(),
        );
    }
    key
}

/// Adds `from` into `into`: counters summed, labels intersected, policy traces united.
pub fn merge(into: &mut Flow, from: Flow) {
    into.packets_in = into.packets_in.saturating_add(from.packets_in);
    into.packets_out = into.packets_out.saturating_add(from.packets_out);
    into.bytes_in = into.bytes_in.saturating_add(from.bytes_in);
    into.bytes_out = into.bytes_out.saturating_add(from.bytes_out);
    into.num_connections_started = into.num_connections_started.saturating_add(from.num_connections_started);
    into.num_connections_completed = into.num_connections_completed.saturating_add(from.num_connections_completed);
    into.num_connections_live = into.num_connections_live.saturating_add(from.num_connections_live);
    into.source_labels.retain(|l| from.source_labels.contains(l));
    into.dest_labels.retain(|l| from.dest_labels.contains(l));
    let (Some(into_key), Some(from_key)) = (into.key.as_mut(), from.key) else { return };
    let Some(from_trace) = from_key.policies else { return };
    let trace = into_key.policies.get_or_insert_with(Default::default);
    unite(&mut trace.enforced_policies, from_trace.enforced_policies);
    unite(&mut trace.pending_policies, from_trace.pending_policies);
}

fn unite(into: &mut Vec<PolicyHit>, from: Vec<PolicyHit>) {
    for hit in from {
        if !into.contains(&hit) {
            into.push(hit);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::FlowGen;

    fn cfg(level: AggregationLevel, max_groups: usize) -> AggregationConfig {
        AggregationConfig { level, linger: Duration::from_secs(1), max_groups }
    }

    fn totals(flows: impl IntoIterator<Item = Flow>) -> [i64; 7] {
        flows.into_iter().fold([0; 7], |mut t, f| {
            for (slot, v) in t.iter_mut().zip([
                f.packets_in,
                f.packets_out,
                f.bytes_in,
                f.bytes_out,
                f.num_connections_started,
                f.num_connections_completed,
                f.num_connections_live,
            ]) {
                *slot += v;
            }
            t
        })
    }

    #[test]
    fn every_level_conserves_sums_and_never_merges_across_buckets() {
        let generator = FlowGen { seed: 7, keys: 2_000 };
        let input: Vec<Flow> = [1_500, 1_515, 1_530].iter().flat_map(|&s| generator.bucket(s)).collect();
        for level in [AggregationLevel::None, AggregationLevel::Names, AggregationLevel::Namespaces] {
            let mut agg = Aggregator::new(cfg(level, usize::MAX));
            let mut out = Vec::new();
            let t0 = Instant::now();
            for f in &input {
                agg.add(Item::new(f.clone()), None, t0, &mut out);
            }
            let flushed = agg.flush_all(&mut out);
            assert_eq!(flushed.iter().map(|f| f.flows_in).sum::<u64>(), input.len() as u64);
            assert_eq!(flushed.iter().map(|f| f.records_out).sum::<u64>(), out.len() as u64);
            let merged: Vec<Flow> = out.into_iter().map(|m| m.item.into_flow()).collect();
            for start in [1_500, 1_515, 1_530] {
                let in_bucket = input.iter().filter(|f| f.start_time == start).cloned();
                let out_bucket = merged.iter().filter(|f| f.start_time == start).cloned();
                assert_eq!(totals(in_bucket), totals(out_bucket), "{level:?}: bucket {start} sums");
            }
            assert!(merged.iter().all(|f| f.end_time == f.start_time + 15));
            // Within a bucket no two records share a reduced key: they would have merged.
            let mut seen = std::collections::HashSet::new();
            for f in &merged {
                assert!(seen.insert((f.start_time, merge_key(&Item::new(f.clone()), None))), "{level:?}: duplicate");
            }
            match level {
                // The simulator's keys are distinct, as Goldmane's are.
                AggregationLevel::None => assert_eq!(merged.len(), input.len()),
                // Workload names dropped: flows differing only in pod sets merge.
                AggregationLevel::Names => assert!(merged.len() < input.len(), "{level:?}: {} records", merged.len()),
                // A dozen namespaces, four endpoint types, 2 reporters, 2 actions: a few hundred keys a bucket.
                AggregationLevel::Namespaces => {
                    assert!(merged.len() < input.len() / 3, "{level:?}: {} records", merged.len())
                }
            }
        }
    }

    #[test]
    fn merging_sums_intersects_labels_and_unites_traces() {
        let g = FlowGen { seed: 3, keys: 50 };
        let mut a = g.flow(0, 1_500);
        let mut b = g.flow(1, 1_500);
        a.source_labels = vec!["app=x".into(), "team=a".into()];
        b.source_labels = vec!["team=a".into(), "tier=web".into()];
        let hits_a = a.key.as_ref().unwrap().policies.as_ref().unwrap().enforced_policies.clone();
        let hits_b = b.key.as_ref().unwrap().policies.as_ref().unwrap().enforced_policies.clone();
        let bytes = a.bytes_in + b.bytes_in;
        merge(&mut a, b);
        assert_eq!(a.bytes_in, bytes);
        assert_eq!(a.source_labels, vec!["team=a".to_string()]);
        let united = &a.key.as_ref().unwrap().policies.as_ref().unwrap().enforced_policies;
        for h in hits_a.iter().chain(&hits_b) {
            assert!(united.contains(h));
        }
        assert_eq!(united.len(), if hits_a == hits_b { hits_a.len() } else { hits_a.len() + hits_b.len() });
    }

    #[test]
    fn a_quiet_bucket_leaves_and_the_group_bound_sends_the_oldest_early() {
        let g = FlowGen { seed: 1, keys: 100 };
        let mut agg = Aggregator::new(cfg(AggregationLevel::None, 150));
        let mut out = Vec::new();
        let t0 = Instant::now();
        for f in g.bucket(1_500) {
            agg.add(Item::new(f), None, t0, &mut out);
        }
        assert!(out.is_empty());
        assert!(agg.flush_idle(t0 + Duration::from_millis(500), &mut out).is_empty());
        // A second bucket pushes past 150 groups: the first leaves whole.
        let mut early = Flushed::default();
        for f in g.bucket(1_515) {
            let f = agg.add(Item::new(f), None, t0, &mut out);
            early.flows_in += f.flows_in;
            early.records_out += f.records_out;
        }
        assert_eq!(early, Flushed { flows_in: 100, records_out: 100 });
        assert!(out.iter().all(|m| m.item.flow().start_time == 1_500));
        let idle = agg.flush_idle(t0 + Duration::from_secs(1), &mut out);
        assert_eq!(idle, vec![Flushed { flows_in: 100, records_out: 100 }]);
        assert_eq!(agg.groups(), 0);
    }

    #[test]
    fn what_the_chain_attached_keeps_flows_apart() {
        let g = FlowGen { seed: 1, keys: 4 };
        let mut agg = Aggregator::new(cfg(AggregationLevel::Namespaces, usize::MAX));
        let mut out = Vec::new();
        let f = g.flow(0, 1_500);
        let mut tagged = Item::new(f.clone());
        tagged.attributes.push(("team".into(), crate::wasm::AttrValue::str("a")));
        agg.add(Item::new(f.clone()), None, Instant::now(), &mut out);
        agg.add(tagged, None, Instant::now(), &mut out);
        agg.add(Item::new(f.clone()), Some("redact@sha256:1".into()), Instant::now(), &mut out);
        agg.add(Item::new(f), None, Instant::now(), &mut out);
        agg.flush_all(&mut out);
        assert_eq!(out.len(), 3);
    }
}
