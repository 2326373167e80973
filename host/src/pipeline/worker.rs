//! Runs a chain over batches on one worker thread, with that thread's own instances.
//!
//! Traps cost only the flows that cause them: a batch whose call traps is split in halves, each half re-run on a
//! fresh instance, down to the single flow that traps, which then takes the transform's failure policy. A
//! transform that keeps trapping (traps in a row, with no successful call between them) is quarantined (its
//! flows take the failure policy without calling it) and re-instantiated after a backoff that doubles up to a
//! minute. One that traps on a few flows and serves the rest is never quarantined.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::chain::{Chain, Entry, FailurePolicy};
use crate::proto::Flow;
use crate::telemetry::Metrics;
use crate::wasm::{
    Annotations, Body, Instance, Outcome, Severity, Value, WasmError, WitFlow, flow_from_wit, flow_to_wit,
};
use crate::{otlp, render};

/// The attribute naming the chain that shaped a record.
pub const PROVENANCE_ATTRIBUTE: &str = "flowgate.transforms";
/// Traps in a row (no successful call between them) within [`TRAP_WINDOW`] that quarantine a transform on a
/// worker.
pub const QUARANTINE_TRAPS: usize = 20;
pub const TRAP_WINDOW: Duration = Duration::from_secs(60);
const QUARANTINE_FIRST: Duration = Duration::from_secs(1);
const QUARANTINE_MAX: Duration = Duration::from_secs(60);

/// A flow on its way through the chain, with what transforms added to its record.
#[derive(Debug, Clone)]
pub struct Item {
    pub flow: Flow,
    pub attributes: Vec<(String, Value)>,
    pub severity: Option<Severity>,
    pub body: Option<Body>,
    /// `flow` as the guests see it, kept while no transform changes the flow: the next transform reuses it.
    wit: Option<WitFlow>,
}

impl Item {
    pub fn new(flow: Flow) -> Self {
        Item { flow, attributes: Vec::new(), severity: None, body: None, wit: None }
    }

    fn annotate(&mut self, a: Annotations) {
        for attr in a.attributes {
            match self.attributes.iter_mut().find(|(k, _)| *k == attr.key) {
                Some(slot) => slot.1 = attr.value,
                None => self.attributes.push((attr.key, attr.value)),
            }
        }
        if a.severity.is_some() {
            self.severity = a.severity;
        }
        if a.body.is_some() {
            self.body = a.body;
        }
    }
}

/// Where dead-lettered flows go: JSON lines `{transform, digest, error, flow}`.
pub struct DeadLetter {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl DeadLetter {
    pub fn new(path: PathBuf) -> Self {
        DeadLetter { path, file: Mutex::new(None) }
    }

    fn write(&self, entry: &Entry, error: &str, flow: &Flow) {
        let line = serde_json::json!({
            "transform": entry.spec.name,
            "digest": format!("sha256:{}", entry.component.digest),
            "error": error,
            "flow": serde_json::from_str::<serde_json::Value>(&render::flow_json_string(flow)).unwrap_or_default(),
        });
        let mut guard = self.file.lock().expect("dead-letter lock");
        if guard.is_none() {
            match std::fs::OpenOptions::new().create(true).append(true).open(&self.path) {
                Ok(f) => *guard = Some(f),
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot open the transform dead-letter file");
                    return;
                }
            }
        }
        if let Some(f) = guard.as_mut()
            && let Err(e) = writeln!(f, "{line}")
        {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the transform dead-letter file");
        }
    }
}

/// One entry's instance on this worker, with its trap history.
#[derive(Default)]
struct Slot {
    instance: Option<Instance>,
    traps: VecDeque<Instant>,
    quarantined_until: Option<Instant>,
    backoff: Option<Duration>,
}

/// A worker's instances of the current chain.
pub struct Worker {
    generation: u64,
    slots: Vec<Slot>,
    metrics: Arc<Metrics>,
    dead_letter: Option<Arc<DeadLetter>>,
}

impl Worker {
    pub fn new(metrics: Arc<Metrics>, dead_letter: Option<Arc<DeadLetter>>) -> Self {
        Worker { generation: u64::MAX, slots: Vec::new(), metrics, dead_letter }
    }

    /// Runs `chain` over `flows`; what comes out, in order, with expansions in place.
    pub fn run(&mut self, chain: &Chain, flows: Vec<Flow>) -> Vec<Item> {
        if chain.generation != self.generation {
            // A new chain: this batch is the boundary. Old instances go; new ones are made on first use.
            self.generation = chain.generation;
            self.slots = chain.entries.iter().map(|_| Slot::default()).collect();
        }
        let mut items: Vec<Item> = flows.into_iter().map(Item::new).collect();
        for (i, entry) in chain.entries.iter().enumerate() {
            if items.is_empty() {
                break;
            }
            items = self.run_entry(i, entry, items);
        }
        items
    }

    fn run_entry(&mut self, i: usize, entry: &Entry, mut items: Vec<Item>) -> Vec<Item> {
        let name = entry.spec.name.as_str();
        let batch: Vec<WitFlow> =
            items.iter_mut().map(|it| it.wit.take().unwrap_or_else(|| flow_to_wit(&it.flow))).collect();
        self.metrics.transform_flows(name, "in", items.len() as u64);
        let started = Instant::now();
        let mut results = Vec::with_capacity(items.len());
        self.bisect(i, entry, &batch, &mut results);
        self.metrics.transform_duration(name, started.elapsed());
        let mut out = Vec::with_capacity(items.len());
        for ((mut item, wit), result) in items.into_iter().zip(batch).zip(results) {
            match result {
                Ok(Outcome::Keep) => {
                    item.wit = Some(wit);
                    out.push(item);
                }
                Ok(Outcome::Drop) => self.metrics.transform_flows(name, "dropped", 1),
                Ok(Outcome::Annotate(a)) => {
                    item.annotate(a);
                    item.wit = Some(wit);
                    out.push(item);
                }
                Ok(Outcome::Replace(o)) => {
                    item.flow = flow_from_wit(o.flow, &item.flow);
                    item.annotate(o.annotations);
                    out.push(item);
                }
                Ok(Outcome::Expand(outputs)) => {
                    if outputs.is_empty() {
                        self.metrics.transform_flows(name, "dropped", 1);
                    } else if outputs.len() > 1 {
                        self.metrics.transform_flows(name, "expanded", outputs.len() as u64 - 1);
                    }
                    for o in outputs {
                        let mut child = item.clone();
                        child.flow = flow_from_wit(o.flow, &item.flow);
                        child.annotate(o.annotations);
                        out.push(child);
                    }
                }
                Ok(Outcome::Error(message)) => {
                    self.metrics.transform_error(name, "guest_error");
                    self.fail(entry, item, &message, &mut out);
                }
                Err(message) => self.fail(entry, item, &message, &mut out),
            }
        }
        self.metrics.transform_flows(name, "out", out.len() as u64);
        out
    }

    /// Applies the failure policy to one flow.
    fn fail(&self, entry: &Entry, item: Item, error: &str, out: &mut Vec<Item>) {
        let name = entry.spec.name.as_str();
        self.metrics.transform_failure(name, entry.spec.policy.as_str());
        match entry.spec.policy {
            FailurePolicy::FailClosed => {}
            FailurePolicy::FailOpen => out.push(item),
            FailurePolicy::DeadLetter => match &self.dead_letter {
                Some(dl) => dl.write(entry, error, &item.flow),
                None => tracing::error!(
                    transform = name,
                    error,
                    "dead-letter policy without a dead-letter path; flow dropped"
                ),
            },
        }
    }

    /// Outcomes for `batch`, or per-flow errors where the transform traps or is quarantined.
    fn bisect(&mut self, i: usize, entry: &Entry, batch: &[WitFlow], results: &mut Vec<Result<Outcome, String>>) {
        if batch.is_empty() {
            return;
        }
        match self.call(i, entry, batch) {
            Ok(outcomes) => results.extend(outcomes.into_iter().map(Ok)),
            Err(CallError::Quarantined) => {
                self.metrics.transform_error(&entry.spec.name, "quarantined");
                results.extend(
                    batch.iter().map(|_| Err(format!("{} is quarantined after repeated traps", entry.spec.name))),
                );
            }
            Err(CallError::Wasm(e)) if batch.len() == 1 => results.push(Err(e.to_string())),
            Err(CallError::Wasm(_)) => {
                let (a, b) = batch.split_at(batch.len() / 2);
                self.bisect(i, entry, a, results);
                self.bisect(i, entry, b, results);
            }
        }
    }

    fn call(&mut self, i: usize, entry: &Entry, batch: &[WitFlow]) -> Result<Vec<Outcome>, CallError> {
        let name = entry.spec.name.as_str();
        let slot = &mut self.slots[i];
        if let Some(until) = slot.quarantined_until {
            if Instant::now() < until {
                return Err(CallError::Quarantined);
            }
            slot.quarantined_until = None;
            tracing::info!(transform = name, "quarantine over; instantiating again");
        }
        if slot.instance.is_none() {
            match entry.component.instantiate(&entry.spec.config, entry.spec.limits, Some(self.metrics.clone())) {
                Ok(instance) => slot.instance = Some(instance),
                Err(e) => {
                    self.trapped(i, entry, &e);
                    return Err(CallError::Wasm(e));
                }
            }
        }
        let instance = slot.instance.as_mut().expect("instantiated above");
        self.metrics.transform_calls(name);
        match instance.process(batch) {
            Ok(outcomes) => {
                // A transform that traps on a few flows but serves the rest is not quarantined: only traps in a
                // row with no successful call in between count.
                self.slots[i].traps.clear();
                Ok(outcomes)
            }
            Err(e) => {
                // A trap poisons the Store: never call this instance again.
                self.slots[i].instance = None;
                self.trapped(i, entry, &e);
                Err(CallError::Wasm(e))
            }
        }
    }

    fn trapped(&mut self, i: usize, entry: &Entry, e: &WasmError) {
        let name = entry.spec.name.as_str();
        let kind = match e {
            WasmError::Trap { kind, .. } => kind.as_str(),
            WasmError::InitRefused { .. } => "init",
            _ => "trap",
        };
        self.metrics.transform_error(name, kind);
        let slot = &mut self.slots[i];
        let now = Instant::now();
        slot.traps.push_back(now);
        while slot.traps.front().is_some_and(|t| now.duration_since(*t) > TRAP_WINDOW) {
            slot.traps.pop_front();
        }
        if slot.traps.len() == 1 {
            tracing::warn!(transform = name, error = %e, "transform trapped; re-instantiating");
        }
        if slot.traps.len() >= QUARANTINE_TRAPS {
            let backoff = slot.backoff.map_or(QUARANTINE_FIRST, |b| (b * 2).min(QUARANTINE_MAX));
            slot.backoff = Some(backoff);
            slot.quarantined_until = Some(now + backoff);
            slot.traps.clear();
            self.metrics.transform_error(name, "quarantine_entered");
            tracing::error!(
                transform = name,
                backoff_ms = backoff.as_millis() as u64,
                policy = entry.spec.policy.as_str(),
                "transform quarantined after repeated traps; its failure policy applies meanwhile"
            );
        }
    }
}

enum CallError {
    Quarantined,
    Wasm(WasmError),
}

/// The OTLP record for an item leaving the chain.
pub fn record(item: Item, now_unix_nanos: u64, provenance: Option<&str>) -> LogRecord {
    let (severity_number, severity_text) = otlp::severity(item.severity.unwrap_or(Severity::Info));
    let body = match item.body {
        None | Some(Body::FlowJson) => otlp::string_value(render::flow_json_string(&item.flow)),
        Some(Body::Structured(attrs)) => otlp::kv_list(attrs.into_iter().map(|a| otlp::kv(a.key, a.value)).collect()),
        Some(Body::Text(t)) => otlp::string_value(t),
    };
    let mut attributes: Vec<KeyValue> = item.attributes.into_iter().map(|(k, v)| otlp::kv(k, v)).collect();
    if let Some(p) = provenance {
        attributes.push(otlp::kv(PROVENANCE_ATTRIBUTE.to_string(), Value::Str(p.to_string())));
    }
    LogRecord {
        time_unix_nano: now_unix_nanos,
        observed_time_unix_nano: now_unix_nanos,
        severity_number,
        severity_text: severity_text.to_string(),
        body: Some(body),
        attributes,
        ..LogRecord::default()
    }
}
