//! Runs a chain over batches on one worker thread, with that thread's own instances.
//!
//! Traps cost only the flows that cause them: a batch whose call traps is split in halves, each half re-run on a
//! fresh instance, down to the single flow that traps, which then takes the transform's failure policy. A
//! transform that keeps trapping (traps in a row on any worker, with no successful call between them) is
//! quarantined on every worker (its flows take the failure policy without calling it) and re-instantiated after a
//! backoff that doubles up to a minute ([`super::health`]). One that traps on a few flows and serves the rest is
//! never quarantined.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::logs::v1::LogRecord;

use bytes::Bytes;
use prost::Message as _;

use super::chain::{Chain, Entry, FailurePolicy};
use super::dead_letter::DeadLetter;
use super::health::{Admission, TrapVerdict};
use crate::otlp::{BodyRef, EncodedRecords};
use crate::proto::Flow;
use crate::render;
use crate::telemetry::otel::TransformTiming;
use crate::telemetry::{DropReason, Metrics, TransformError, TransformEvent};
use crate::wasm::{
    Annotations, Attr, AttrValue, Attribute, BatchAnnotation, BatchFlow, Body, Change, FlowIndex, GuestFailure,
    Instance, Outcome, Processed, Severity, apply, flow_from_wit, splice,
};
use crate::wire::WireError;

/// The attribute naming the chain that shaped a record.
pub const PROVENANCE_ATTRIBUTE: &str = "flowgate.transforms";
pub use super::health::{QUARANTINE_TRAPS, TRAP_WINDOW};

/// A flow on its way through the chain, with what transforms added to its record.
///
/// The flow stays as the bytes Goldmane sent while no transform changes it: indexed once for the first
/// transform, the index reused by the next, and the record's body rendered from the bytes at the end, as on the
/// passthrough path. A change decodes it; the next transform (or the end) encodes it again.
#[derive(Debug, Clone)]
pub struct Item {
    data: Data,
    pub attributes: Vec<Attr>,
    pub severity: Option<Severity>,
    pub body: Option<RecordBody>,
}

/// A record's body as the transforms left it.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordBody {
    /// The old exporter's JSON, rendered from the flow as it leaves the chain.
    FlowJson,
    /// A structured map: a transform's own, or the attributes it added (`body: attributes`) where they are not
    /// all new to the flow (they then share their keys and strings with the record's attributes).
    Structured(Vec<Attr>),
    /// The attributes a transform added (`body: attributes`), all new to the flow: where they are in the item's
    /// attributes. A later transform that replaces one of them turns this into [`RecordBody::Structured`] first.
    Attributes(std::ops::Range<usize>),
    Text(String),
}

/// A transform's attribute as the pipeline holds it.
fn attr(a: Attribute) -> Attr {
    (a.key.into(), a.value.into())
}

#[derive(Debug, Clone)]
enum Data {
    /// An encoded `goldmane.Flow`, and its index once a transform needed it.
    Wire(Bytes, Option<FlowIndex>),
    Decoded(Flow),
}

impl Item {
    pub fn new(flow: Flow) -> Self {
        Item::with(Data::Decoded(flow))
    }

    /// A flow as it came off the stream (an encoded `goldmane.Flow`).
    pub fn from_wire(wire: Bytes) -> Self {
        Item::with(Data::Wire(wire, None))
    }

    fn with(data: Data) -> Self {
        Item { data, attributes: Vec::new(), severity: None, body: None }
    }

    /// The flow, decoded (and kept decoded) if it was still bytes.
    pub fn decode(&mut self) -> Result<&mut Flow, prost::DecodeError> {
        if let Data::Wire(wire, _) = &self.data {
            self.data = Data::Decoded(Flow::decode(wire.as_ref())?);
        }
        match &mut self.data {
            Data::Decoded(flow) => Ok(flow),
            Data::Wire(..) => unreachable!("decoded above"),
        }
    }

    /// The decoded flow. Items reaching the post-chain stage are decoded ([`Item::decode`]); one still in bytes
    /// reads as an empty flow.
    pub fn flow(&self) -> &Flow {
        static EMPTY: std::sync::LazyLock<Flow> = std::sync::LazyLock::new(Flow::default);
        match &self.data {
            Data::Decoded(flow) => flow,
            Data::Wire(..) => &EMPTY,
        }
    }

    /// The flow. Items the pipeline hands on have been decoded or checked; bytes that do not decode give an empty
    /// flow (never reached: see [`Item::decode`]).
    pub fn flow_mut(&mut self) -> &mut Flow {
        if self.decode().is_err() {
            self.data = Data::Decoded(Flow::default());
        }
        self.decode().expect("decoded")
    }

    pub fn into_flow(mut self) -> Flow {
        std::mem::take(self.flow_mut())
    }

    /// The flow as a transform reads it: its bytes and index (encoding and indexing it if needed).
    fn batch_flow(&mut self) -> Result<BatchFlow, WireError> {
        if let Data::Decoded(flow) = &self.data {
            self.data = Data::Wire(Bytes::from(flow.encode_to_vec()), None);
        }
        match &mut self.data {
            Data::Wire(wire, Some(index)) => Ok(BatchFlow { wire: wire.clone(), index: *index }),
            Data::Wire(wire, slot) => {
                let index = FlowIndex::new(wire)?;
                *slot = Some(index);
                Ok(BatchFlow { wire: wire.clone(), index })
            }
            Data::Decoded(_) => unreachable!("encoded above"),
        }
    }

    /// Applies a transform's changes where the flow lives: spliced into its bytes, or assigned if decoded.
    fn change(&mut self, changes: Vec<Change>) {
        if let Data::Wire(wire, _) = &self.data
            && let Ok(spliced) = splice(wire, &changes)
        {
            self.data = Data::Wire(Bytes::from(spliced), None);
            return;
        }
        apply(self.flow_mut(), changes);
    }

    /// Appends the old exporter's JSON body for the flow as it is now.
    fn flow_json(&self, out: &mut Vec<u8>) -> Result<(), render::Malformed> {
        match &self.data {
            Data::Wire(wire, _) => render::flow_json_bytes_from_wire(wire, out),
            Data::Decoded(flow) => render::flow_json_bytes_from_wire(&flow.encode_to_vec(), out),
        }
    }

    /// Adds what a transform answered for the flow: `batch` (its batch annotations for this flow) and then `a`.
    fn annotate(&mut self, mut batch: Vec<Attr>, a: Option<Annotations>) {
        let (severity, body) = match a {
            Some(Annotations { attributes, severity, body }) => {
                batch.extend(attributes.into_iter().map(attr));
                (severity, body)
            }
            None => (None, None),
        };
        let attributes = batch;
        let start = self.attributes.len();
        // The usual case: every key is new to the flow and sent once, so the list lands as it is at the end of
        // the attributes, and a body of the attributes can point at it there instead of holding a copy.
        let fresh = attributes
            .iter()
            .enumerate()
            .all(|(n, (key, _))| !self.attributes.iter().chain(&attributes[..n]).any(|(k, _)| k == key));
        let body = body.map(|b| match b {
            Body::FlowJson => RecordBody::FlowJson,
            Body::Attributes if fresh => RecordBody::Attributes(start..start + attributes.len()),
            Body::Attributes => RecordBody::Structured(attributes.clone()),
            Body::Structured(list) => RecordBody::Structured(list.into_iter().map(attr).collect()),
            Body::Text(t) => RecordBody::Text(t),
        });
        if fresh {
            self.attributes.extend(attributes);
        } else {
            for (key, value) in attributes {
                match self.attributes.iter().position(|(k, _)| *k == key) {
                    Some(at) => {
                        // A body pointing at this attribute keeps the value it was given.
                        if let Some(RecordBody::Attributes(range)) = &self.body
                            && range.contains(&at)
                        {
                            self.body = Some(RecordBody::Structured(self.attributes[range.clone()].to_vec()));
                        }
                        self.attributes[at].1 = value;
                    }
                    None => self.attributes.push((key, value)),
                }
            }
        }
        if severity.is_some() {
            self.severity = severity;
        }
        if body.is_some() {
            self.body = body;
        }
    }
}

/// One entry's instance on this worker (its trap history and quarantine are the entry's, across workers).
#[derive(Default)]
struct Slot {
    instance: Option<Instance>,
}

/// A worker's instances of the current chain.
pub struct Worker {
    generation: u64,
    slots: Vec<Slot>,
    metrics: Arc<Metrics>,
    dead_letter: Option<Arc<DeadLetter>>,
    /// Where the chain's time went on this worker (three clock reads per transform per batch).
    pub stages: Stages,
    /// Set for a traced batch: each transform's span is collected here.
    pub timings: Option<Vec<TransformTiming>>,
}

/// Time spent by stage of the chain, summed over every transform and batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stages {
    /// Encoding (after a change) and indexing the flows for a transform.
    pub index: Duration,
    /// The calls into the guests: lowering, the guest's work, its calls back into the host, lifting.
    pub call: Duration,
    /// Outcomes: changes spliced into the flows, annotations gathered.
    pub apply: Duration,
}

impl Worker {
    pub fn new(metrics: Arc<Metrics>, dead_letter: Option<Arc<DeadLetter>>) -> Self {
        Worker {
            generation: u64::MAX,
            slots: Vec::new(),
            metrics,
            dead_letter,
            stages: Stages::default(),
            timings: None,
        }
    }

    /// Runs `chain` over `flows`; what comes out, in order, with expansions in place, decoded (tests and tools:
    /// the pipeline keeps flows as bytes with [`Worker::run_items`]).
    pub fn run(&mut self, chain: &Chain, flows: Vec<Flow>) -> Vec<Item> {
        let mut items = self.run_items(chain, flows.into_iter().map(Item::new).collect());
        for item in &mut items {
            item.flow_mut();
        }
        items
    }

    /// Runs `chain` over `items`.
    pub fn run_items(&mut self, chain: &Chain, mut items: Vec<Item>) -> Vec<Item> {
        if chain.generation != self.generation {
            // A new chain: this batch is the boundary. Old instances go; new ones are made on first use.
            self.generation = chain.generation;
            self.slots = chain.entries.iter().map(|_| Slot::default()).collect();
        }
        for (i, entry) in chain.entries.iter().enumerate() {
            if items.is_empty() {
                break;
            }
            let traced = self.timings.is_some().then(|| (std::time::SystemTime::now(), items.len() as u64));
            items = self.run_entry(i, entry, items);
            if let (Some(timings), Some((start, flows_in))) = (self.timings.as_mut(), traced) {
                let (name, end, flows_out) =
                    (entry.spec.name.clone(), std::time::SystemTime::now(), items.len() as u64);
                timings.push(TransformTiming { name, start, end, flows_in, flows_out });
            }
            chain.tap.after(chain, i, &items);
        }
        items
    }

    fn run_entry(&mut self, i: usize, entry: &Entry, mut inputs: Vec<Item>) -> Vec<Item> {
        let name = entry.spec.name.as_str();
        let indexing = Instant::now();
        let mut batch = Vec::with_capacity(inputs.len());
        for item in &mut inputs {
            match item.batch_flow() {
                Ok(flow) => batch.push(flow),
                Err(_) => break,
            }
        }
        if batch.len() < inputs.len() {
            // Rare: bytes that are not a flow leave here, counted.
            inputs.retain_mut(|item| match item.batch_flow() {
                Ok(_) => true,
                Err(e) => {
                    self.metrics.dropped(DropReason::Malformed, 1);
                    tracing::warn!(error = %e, "a flow from Goldmane could not be read; skipped");
                    false
                }
            });
            batch = inputs.iter_mut().map(|item| item.batch_flow().expect("checked above")).collect();
        }
        self.metrics.transform_flows(name, TransformEvent::In, inputs.len() as u64);
        entry.health.given(inputs.len());
        let started = Instant::now();
        self.stages.index += started - indexing;
        let mut results = Vec::with_capacity(inputs.len());
        let mut changes = Vec::new();
        let mut calls = Vec::new();
        self.bisect(
            i,
            entry,
            batch,
            0,
            &mut Answers { results: &mut results, changes: &mut changes, calls: &mut calls },
        );
        let applying = Instant::now();
        self.metrics.transform_duration(name, applying - started);
        self.stages.call += applying - started;
        // The changes of each flow, in the order the transform made them.
        let mut per_flow: Vec<Vec<Change>> = Vec::new();
        if !changes.is_empty() {
            per_flow.resize_with(inputs.len(), Vec::new);
            for (at, change) in changes {
                per_flow[at as usize].push(change);
            }
        }
        // Every flow passed on (the common case): annotated where it is, no new list.
        if results.iter().all(|r| matches!(r, Ok(Outcome::Keep | Outcome::Annotate(_)))) {
            for (n, (item, result)) in inputs.iter_mut().zip(results).enumerate() {
                if let Some(c) = per_flow.get_mut(n).filter(|c| !c.is_empty()) {
                    item.change(std::mem::take(c));
                }
                let attributes = batch_attributes(&calls, n, item);
                match result {
                    Ok(Outcome::Annotate(a)) => item.annotate(attributes, Some(a)),
                    _ if !attributes.is_empty() => item.annotate(attributes, None),
                    _ => {}
                }
            }
            self.metrics.transform_flows(name, TransformEvent::Out, inputs.len() as u64);
            self.stages.apply += applying.elapsed();
            return inputs;
        }
        let mut out = Vec::with_capacity(inputs.len());
        for (n, (mut item, result)) in inputs.into_iter().zip(results).enumerate() {
            let mut changed = |item: &mut Item| {
                if let Some(c) = per_flow.get_mut(n).filter(|c| !c.is_empty()) {
                    item.change(std::mem::take(c));
                }
            };
            match result {
                Ok(Outcome::Keep) => {
                    changed(&mut item);
                    let attributes = batch_attributes(&calls, n, &mut item);
                    if !attributes.is_empty() {
                        item.annotate(attributes, None);
                    }
                    out.push(item);
                }
                Ok(Outcome::Drop) => {
                    self.metrics.transform_flows(name, TransformEvent::Dropped, 1);
                    self.metrics.dropped_by_transform(true, 1);
                }
                Ok(Outcome::Annotate(a)) => {
                    changed(&mut item);
                    let attributes = batch_attributes(&calls, n, &mut item);
                    item.annotate(attributes, Some(a));
                    out.push(item);
                }
                Ok(Outcome::Expand(outputs)) => {
                    if outputs.is_empty() {
                        self.metrics.transform_flows(name, TransformEvent::Dropped, 1);
                        self.metrics.dropped_by_transform(true, 1);
                    } else if outputs.len() > 1 {
                        self.metrics.transform_flows(name, TransformEvent::Expanded, outputs.len() as u64 - 1);
                        self.metrics.expanded(outputs.len() as u64 - 1);
                    }
                    let original = item.flow_mut().clone();
                    for o in outputs {
                        let mut child = item.clone();
                        child.data = Data::Decoded(flow_from_wit(o.flow, &original));
                        child.annotate(Vec::new(), Some(o.annotations));
                        out.push(child);
                    }
                }
                Ok(Outcome::Error(message)) => {
                    self.metrics.transform_error(name, TransformError::GuestError);
                    self.fail(entry, item, &message, &mut out);
                }
                Err(message) => self.fail(entry, item, &message, &mut out),
            }
        }
        self.metrics.transform_flows(name, TransformEvent::Out, out.len() as u64);
        self.stages.apply += applying.elapsed();
        out
    }

    /// Applies the failure policy to one flow.
    fn fail(&self, entry: &Entry, mut item: Item, error: &str, out: &mut Vec<Item>) {
        let name = entry.spec.name.as_str();
        entry.health.failed();
        self.metrics.transform_failure(name, entry.spec.policy);
        if entry.spec.policy != FailurePolicy::FailOpen {
            // Fail-closed and dead-letter: not exported, and not the transform's decision.
            self.metrics.dropped_by_transform(false, 1);
        }
        match entry.spec.policy {
            FailurePolicy::FailClosed => {}
            FailurePolicy::FailOpen => out.push(item),
            FailurePolicy::DeadLetter => match &self.dead_letter {
                Some(dl) => dl.write(entry, error, item.flow_mut()),
                None => tracing::error!(
                    transform = name,
                    error,
                    "dead-letter policy without a dead-letter path; flow dropped"
                ),
            },
        }
    }

    /// Outcomes for `batch` (whose first flow is flow `offset` of the whole), or per-flow errors where the
    /// transform traps or is quarantined; the changes and batch annotations of the calls that succeeded.
    fn bisect(&mut self, i: usize, entry: &Entry, batch: Vec<BatchFlow>, offset: u32, answers: &mut Answers<'_>) {
        if batch.is_empty() {
            return;
        }
        let sent = batch.len();
        let (mut batch, result) = self.call(i, entry, batch);
        if batch.len() != sent {
            // Never seen: the resource table lost the batch. Each flow takes the failure policy.
            let message = match &result {
                Err(CallError::Wasm(e)) => e.to_string(),
                _ => format!("{}: the batch was lost", entry.spec.name),
            };
            answers.results.extend((0..sent).map(|_| Err(message.clone())));
            return;
        }
        match result {
            Ok(done) => {
                answers.results.extend(done.outcomes.into_iter().map(Ok));
                answers.changes.extend(done.changes.into_iter().map(|(at, c)| (at + offset, c)));
                if !done.annotations.is_empty() {
                    answers.calls.push((offset, batch.len() as u32, done.annotations));
                }
            }
            Err(CallError::Quarantined) => {
                self.metrics.transform_error(&entry.spec.name, TransformError::Quarantined);
                answers.results.extend(
                    batch.iter().map(|_| Err(format!("{} is quarantined after repeated traps", entry.spec.name))),
                );
            }
            Err(CallError::Wasm(e)) if batch.len() == 1 => answers.results.push(Err(e.to_string())),
            Err(CallError::Wasm(_)) => {
                let half = batch.len() / 2;
                let b = batch.split_off(half);
                self.bisect(i, entry, batch, offset, answers);
                self.bisect(i, entry, b, offset + half as u32, answers);
            }
        }
    }

    fn call(
        &mut self,
        i: usize,
        entry: &Entry,
        batch: Vec<BatchFlow>,
    ) -> (Vec<BatchFlow>, Result<Processed, CallError>) {
        let name = entry.spec.name.as_str();
        match entry.health.admit(Instant::now()) {
            Admission::Quarantined => return (batch, Err(CallError::Quarantined)),
            Admission::Released => tracing::info!(transform = name, "quarantine over; instantiating again"),
            Admission::Serve => {}
        }
        let slot = &mut self.slots[i];
        if slot.instance.is_none() {
            match entry.component.instantiate(&entry.spec.config, entry.spec.limits, Some(self.metrics.clone())) {
                Ok(instance) => slot.instance = Some(instance),
                Err(e) => {
                    self.trapped(entry, &e);
                    return (batch, Err(CallError::Wasm(e)));
                }
            }
        }
        let instance = slot.instance.as_mut().expect("instantiated above");
        self.metrics.transform_calls(name);
        let (batch, result) = instance.process(batch);
        let result = match result {
            Ok(done) => {
                // A transform that traps on a few flows but serves the rest is not quarantined: only traps in a
                // row with no successful call in between count.
                entry.health.succeeded();
                Ok(done)
            }
            Err(e) => {
                // A trap poisons the Store: never call this instance again.
                self.slots[i].instance = None;
                self.trapped(entry, &e);
                Err(CallError::Wasm(e))
            }
        };
        (batch, result)
    }

    fn trapped(&mut self, entry: &Entry, e: &GuestFailure) {
        let name = entry.spec.name.as_str();
        self.metrics.transform_error(name, e.event());
        match entry.health.trapped(Instant::now()) {
            TrapVerdict::First => tracing::warn!(transform = name, error = %e, "transform trapped; re-instantiating"),
            TrapVerdict::Again => {}
            TrapVerdict::Quarantined(backoff) => {
                self.metrics.transform_error(name, TransformError::QuarantineEntered);
                tracing::error!(
                    transform = name,
                    backoff_ms = backoff.as_millis() as u64,
                    policy = entry.spec.policy.as_str(),
                    "transform quarantined after repeated traps; its failure policy applies meanwhile"
                );
            }
        }
    }
}

/// What the calls over one batch answered.
struct Answers<'a> {
    results: &'a mut Vec<Result<Outcome, String>>,
    /// (position in the whole batch, change).
    changes: &'a mut Vec<(u32, Change)>,
    /// (first flow, flows, batch annotations) of each call that made some.
    calls: &'a mut Vec<(u32, u32, Vec<BatchAnnotation>)>,
}

/// The batch annotations for flow `n` of the batch, `item` being that flow as the transform left it.
fn batch_attributes(calls: &[(u32, u32, Vec<BatchAnnotation>)], n: usize, item: &mut Item) -> Vec<Attr> {
    let n = n as u32;
    let Some((offset, _, annotations)) = calls.iter().find(|(o, len, _)| (*o..o + len).contains(&n)) else {
        return Vec::new();
    };
    let flow = if annotations.iter().any(BatchAnnotation::reads_the_flow) { item.batch_flow().ok() } else { None };
    let at = (n - offset) as usize;
    annotations.iter().filter_map(|a| Some((a.key.clone(), a.value(at, flow.as_ref())?))).collect()
}

enum CallError {
    Quarantined,
    Wasm(GuestFailure),
}

/// Appends the OTLP record for an item leaving the chain to `out` (a flow's JSON body rendered straight into
/// it); `Err` when its bytes cannot be rendered (malformed), and nothing is appended.
pub fn encode_record(
    item: &Item,
    now_unix_nanos: u64,
    provenance: Option<&AttrValue>,
    out: &mut EncodedRecords,
) -> Result<(), render::Malformed> {
    let attributes = item.attributes.iter().map(|(k, v)| (&**k, v));
    let provenance = provenance.map(|p| (PROVENANCE_ATTRIBUTE, p));
    let attributes = attributes.chain(provenance);
    let severity = item.severity.unwrap_or(Severity::Info);
    let body = match &item.body {
        None | Some(RecordBody::FlowJson) => {
            return out.push_rendered(now_unix_nanos, severity, |json| item.flow_json(json), attributes);
        }
        Some(RecordBody::Structured(attrs)) => BodyRef::KvList(attrs),
        Some(RecordBody::Attributes(range)) => BodyRef::KvList(&item.attributes[range.clone()]),
        Some(RecordBody::Text(t)) => BodyRef::Str(t),
    };
    out.push(now_unix_nanos, severity, body, attributes);
    Ok(())
}

/// The OTLP record for an item leaving the chain, as [`encode_record`] writes it (tools and tests).
pub fn record(item: Item, now_unix_nanos: u64, provenance: Option<&str>) -> Result<LogRecord, render::Malformed> {
    let mut out = EncodedRecords::default();
    let provenance = provenance.map(AttrValue::str);
    encode_record(&item, now_unix_nanos, provenance.as_ref(), &mut out)?;
    Ok(out.decode().expect("records encoded here decode").pop().expect("one record appended"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::wasm::{AttrKey, Value};

    fn wit(key: &str, value: &str) -> Attribute {
        Attribute { key: key.into(), value: Value::Str(value.into()) }
    }

    /// A transform's own attributes follow its batch annotations and win on the same key; `body: attributes` is
    /// what this transform added, sharing its strings with the record's attributes; a later transform's key
    /// replaces the value in the attributes but not in that body.
    #[test]
    fn annotations_merge_in_order_and_the_body_of_attributes_shares_them() {
        let mut item = Item::new(Flow::default());
        let key: AttrKey = "k8s.source.namespace.name".into();
        let batch = vec![(key.clone(), AttrValue::str("shop")), ("team".into(), AttrValue::str("a"))];
        let own = Annotations {
            attributes: vec![wit("team", "b"), wit("tier", "web"), wit("tier", "db")],
            severity: Some(Severity::Warn),
            body: Some(Body::Attributes),
        };
        item.annotate(batch, Some(own));
        let expected = [("k8s.source.namespace.name", "shop"), ("team", "b"), ("tier", "db")]
            .map(|(k, v)| (AttrKey::from(k), AttrValue::str(v)));
        assert_eq!(item.attributes, expected);
        assert!(Arc::ptr_eq(&item.attributes[0].0, &key), "the batch annotation's key, not a copy");
        let Some(RecordBody::Structured(body)) = &item.body else { panic!("a structured body: {:?}", item.body) };
        assert_eq!(
            body[..2],
            [("k8s.source.namespace.name".into(), AttrValue::str("shop")), ("team".into(), AttrValue::str("a"))]
        );
        assert_eq!(body.len(), 5, "the body is the list as the transform sent it");
        let (AttrValue::Str(in_body), AttrValue::Str(in_attributes)) = (&body[0].1, &item.attributes[0].1) else {
            panic!("strings")
        };
        assert!(Arc::ptr_eq(in_body, in_attributes), "one string for both");
        assert_eq!(item.severity, Some(Severity::Warn));

        item.annotate(vec![], Some(Annotations { attributes: vec![wit("team", "c")], severity: None, body: None }));
        assert_eq!(item.attributes[1], ("team".into(), AttrValue::str("c")));
        let Some(RecordBody::Structured(body)) = &item.body else { panic!("the body stays") };
        assert_eq!(body[1].1, AttrValue::str("a"), "the body as it was set");
        assert_eq!(item.severity, Some(Severity::Warn), "a later transform without a severity keeps it");
    }

    /// Attributes all new to the flow land at the end of its attributes and a body of them points there: the
    /// record carries them twice, the item once. A later transform replacing one of them leaves the body as it was.
    #[test]
    fn a_body_of_new_attributes_points_at_them_until_one_is_replaced() {
        let mut item = Item::new(Flow::default());
        item.annotate(vec![("cluster".into(), AttrValue::str("east"))], None);
        let batch = vec![
            ("source.address".into(), AttrValue::str("10.0.0.1")),
            ("destination.port".into(), AttrValue::Int(53)),
        ];
        item.annotate(
            batch,
            Some(Annotations { attributes: vec![wit("tier", "web")], severity: None, body: Some(Body::Attributes) }),
        );
        assert_eq!(item.body, Some(RecordBody::Attributes(1..4)));
        let body_of = |item: &Item| {
            let record = record(item.clone(), 1, None).unwrap();
            let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::KvlistValue(list)) =
                record.body.and_then(|b| b.value)
            else {
                panic!("a structured body")
            };
            let keys: Vec<String> = list.values.iter().map(|kv| kv.key.clone()).collect();
            let attributes: Vec<String> = record.attributes.iter().map(|kv| kv.key.clone()).collect();
            (keys, list.values, attributes)
        };
        let (keys, before, attributes) = body_of(&item);
        assert_eq!(keys, ["source.address", "destination.port", "tier"]);
        assert_eq!(attributes, ["cluster", "source.address", "destination.port", "tier"]);

        // Appending leaves the body where it is; replacing one of its attributes gives it its own copy first.
        item.annotate(vec![("team".into(), AttrValue::str("dns"))], None);
        assert_eq!(item.body, Some(RecordBody::Attributes(1..4)));
        item.annotate(vec![("tier".into(), AttrValue::str("db"))], None);
        assert!(matches!(item.body, Some(RecordBody::Structured(_))), "{:?}", item.body);
        assert_eq!(item.attributes[3], ("tier".into(), AttrValue::str("db")));
        let (_, after, _) = body_of(&item);
        assert_eq!(after, before, "the body as the transform set it");
    }
}
