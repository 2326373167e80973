//! The pipeline between source and batcher: flows in, OTLP log records out.
//!
//! With no transform chain (the default, and the old exporter's behaviour) each flow becomes one record whose
//! body is the old exporter's JSON, rendered straight from the wire, severity INFO and both timestamps the
//! processing time: rendered where the chunk arrives, on the runtime, with no hand-off to a thread. With a chain
//! (or flow metrics or aggregation), `workers` threads each run the chain over whole chunks with their own
//! instances; the chain is read at every chunk, so a new one is swapped in at a batch boundary.

pub mod chain;
pub mod dead_letter;
pub mod health;
pub mod post;
pub mod tap;
pub mod worker;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

pub use chain::{Chain, EntrySpec, FailurePolicy};
pub use dead_letter::DeadLetter;
pub use worker::{Item, PROVENANCE_ATTRIBUTE, Worker};

use crate::otlp::EncodedRecords;
use crate::telemetry::{DropReason, Metrics};
use crate::wasm::AttrValue;
use crate::wire::{Chunk, FlowBytes, Origin};

/// The attribute on records of flows reconciliation found: `late` (never streamed live) or `delta` (the growth
/// of a key already exported for that bucket: its counters are the difference).
pub const RECONCILED_ATTRIBUTE: &str = "flowgate.reconciled";

/// The chain serving now; replaced whole by the reloader.
#[derive(Default)]
pub struct ChainCell(RwLock<Chain>);

impl ChainCell {
    pub fn get(&self) -> Chain {
        self.0.read().expect("chain lock").clone()
    }

    /// Serves `chain` from the next batch on; the live tap carries over.
    pub fn set(&self, mut chain: Chain) {
        let mut current = self.0.write().expect("chain lock");
        chain.tap = current.tap.clone();
        *current = chain;
    }

    /// Installs the gateway's live tap.
    pub fn set_tap(&self, hub: tap::Hub) {
        self.0.write().expect("chain lock").tap = hub;
    }
}

/// How the pipeline runs transforms.
#[derive(Clone)]
pub struct PipelineOptions {
    pub chain: Arc<ChainCell>,
    pub workers: usize,
    /// Add the provenance attribute to records a chain shaped.
    pub provenance: bool,
    pub dead_letter: Option<Arc<DeadLetter>>,
    /// Flow metrics and aggregation after the chain, when configured.
    pub post: Option<Arc<crate::pipeline::post::Post>>,
    /// Room left in front of each chunk's records for a request's head (the request encoder's), so the batcher
    /// can send a chunk that makes a whole request without copying it.
    pub head_room: usize,
    /// Spans for sampled batches, when the gateway's own traces are on.
    pub tracing: Option<crate::telemetry::otel::Tracing>,
}

impl PipelineOptions {
    /// Whether flows go out as the old exporter's records: no chain (`chain` is the one serving), no flow metrics,
    /// no aggregation.
    fn passes_through(&self, chain: &Chain) -> bool {
        self.post.is_none() && chain.is_empty()
    }
}

/// What the pipeline hands the batcher: records (encoded), and the source chunks they complete (for the stream
/// cursor).
#[derive(Debug, Default)]
pub struct Records {
    pub records: EncodedRecords,
    /// Chunk numbers whose every record is in `records` or earlier output (or was dropped).
    pub chunks: Vec<u64>,
    /// The open span of the batch, when sampled (the gateway's own traces): it ends once exported.
    pub trace: Option<opentelemetry::Context>,
}

impl Records {
    /// Nothing to hand on: no records, and no chunk to report done (sent even without records when a cursor is
    /// kept).
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.chunks.is_empty()
    }
}

/// Runs until `input` closes and every worker has handed on its last chunk.
pub async fn run(
    mut input: mpsc::Receiver<Chunk>,
    output: mpsc::Sender<Records>,
    metrics: Arc<Metrics>,
    opts: PipelineOptions,
) {
    let (jobs_tx, jobs_rx) = mpsc::channel::<Chunk>(opts.workers.max(1));
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let threads: Vec<_> = (0..opts.workers.max(1))
        .map(|n| {
            let (jobs, output, metrics, opts) = (jobs_rx.clone(), output.clone(), metrics.clone(), opts.clone());
            std::thread::Builder::new()
                .name(format!("flowgate-worker-{n}"))
                .spawn(move || worker_loop(&jobs, &output, &metrics, &opts))
                .expect("spawning a pipeline worker")
        })
        .collect();
    // Aggregation hands buckets on when they go quiet, whether or not flows arrive.
    let stop_ticker = tokio_util::sync::CancellationToken::new();
    let ticker = opts.post.clone().and_then(|post| {
        let (tick, output, stop, metrics) = (post.tick()?, output.clone(), stop_ticker.clone(), metrics.clone());
        Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while stop.run_until_cancelled(interval.tick()).await.is_some() {
                let out = records_of(post.flush_idle(), &metrics, 0);
                if !(out.records.is_empty() && out.chunks.is_empty()) && output.send(out).await.is_err() {
                    return;
                }
            }
        }))
    });
    while let Some(chunk) = input.recv().await {
        let chain = opts.chain.get();
        if opts.passes_through(&chain) {
            // Rendered here: a chunk of 512 flows takes well under a millisecond (the batcher compresses a
            // request on the runtime too), and handing it to a worker thread and back cost 4-9% more CPU a flow
            // end to end (medians of paired `flowgate-e2e` runs).
            let out = passthrough_chunk(chunk, &chain, &metrics, &opts);
            if !out.is_empty() && output.send(out).await.is_err() {
                break;
            }
            continue;
        }
        if jobs_tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(jobs_tx);
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    stop_ticker.cancel();
    if let Some(t) = ticker {
        let _ = t.await;
    }
    if let Some(post) = &opts.post {
        let out = records_of(post.flush_all(), &metrics, 0);
        if !(out.records.is_empty() && out.chunks.is_empty()) {
            let _ = output.send(out).await;
        }
    }
}

fn records_of(
    (merged, chunks): (Vec<crate::pipeline::post::Merged>, Vec<u64>),
    metrics: &Metrics,
    head_room: usize,
) -> Records {
    let now = unix_nanos();
    let mut records = EncodedRecords::for_request(head_room, merged.len(), merged.len() * RECORD_BYTES_HINT);
    for m in merged {
        let provenance = m.provenance.map(AttrValue::Str);
        encoded(&m.item, now, provenance.as_ref(), &mut records, metrics);
    }
    Records { records, chunks, trace: None }
}

/// A record's size, to size buffers: the simulator's run 1.2 KB, real flows with many labels more.
const RECORD_BYTES_HINT: usize = 1536;

/// Appends the record of an item leaving the chain; a flow whose bytes cannot be rendered is dropped as malformed.
fn encoded(item: &Item, now: u64, provenance: Option<&AttrValue>, out: &mut EncodedRecords, metrics: &Metrics) {
    if let Err(e) = worker::encode_record(item, now, provenance, out) {
        metrics.dropped(DropReason::Malformed, 1);
        tracing::warn!(error = %e, "a flow from Goldmane could not be rendered; skipped");
    }
}

/// The records of items leaving the chain.
fn rendered(items: &[Item], provenance: Option<&AttrValue>, metrics: &Metrics, head_room: usize) -> EncodedRecords {
    let now = unix_nanos();
    let mut records = EncodedRecords::for_request(head_room, items.len(), items.len() * RECORD_BYTES_HINT);
    for item in items {
        encoded(item, now, provenance, &mut records, metrics);
    }
    records
}

fn worker_loop(
    jobs: &Mutex<mpsc::Receiver<Chunk>>,
    output: &mpsc::Sender<Records>,
    metrics: &Arc<Metrics>,
    opts: &PipelineOptions,
) {
    let mut worker = Worker::new(metrics.clone(), opts.dead_letter.clone());
    // Chunks for the chain, flow metrics or aggregation ([`run`] renders passthrough itself).
    loop {
        // One worker waits on the queue at a time; the others wait for the lock.
        let Some(chunk) = jobs.lock().expect("jobs lock").blocking_recv() else { return };
        let chain = opts.chain.get();
        if opts.passes_through(&chain) {
            // The chain was emptied after the chunk was queued.
            let out = passthrough_chunk(chunk, &chain, metrics, opts);
            if !out.is_empty() && output.blocking_send(out).is_err() {
                return;
            }
            continue;
        }
        let Chunk { seq, flows } = chunk;
        let (done, trace) = begin(seq, &flows, &chain, opts);
        worker.timings = trace.as_ref().map(|_| Vec::new());
        let out = match &opts.post {
            None => {
                let items = traced(trace.as_ref(), &mut worker, |w| transformed(w, &chain, flows));
                let provenance = opts.provenance.then(|| AttrValue::Str(chain.provenance.clone()));
                let records = rendered(&items, provenance.as_ref(), metrics, opts.head_room);
                Records { records, chunks: done, trace: None }
            }
            Some(post) => {
                let items = decoded(traced(trace.as_ref(), &mut worker, |w| transformed(w, &chain, flows)), metrics);
                let provenance = (opts.provenance && !chain.is_empty()).then(|| chain.provenance.clone());
                records_of(post.process(items, provenance, seq), metrics, opts.head_room)
            }
        };
        let out = end(out, trace);
        if !out.is_empty() && output.blocking_send(out).is_err() {
            return;
        }
    }
}

/// A chunk's start through the pipeline: the chunk numbers it completes (chunk 0 is unnumbered: no stream cursor
/// is kept, nothing to report), the live tap's look at its flows, and its span when sampled.
fn begin(
    seq: u64,
    flows: &[FlowBytes],
    chain: &Chain,
    opts: &PipelineOptions,
) -> (Vec<u64>, Option<crate::telemetry::otel::BatchTrace>) {
    let done = (seq != 0).then_some(seq).into_iter().collect();
    chain.tap.source(chain, flows);
    (done, opts.tracing.as_ref().and_then(|t| t.batch(flows.len())))
}

/// A chunk's records, their span queued with them when sampled.
fn end(mut out: Records, trace: Option<crate::telemetry::otel::BatchTrace>) -> Records {
    if let Some(trace) = trace {
        out.trace = Some(trace.queued(out.records.len()));
    }
    out
}

/// The records of a chunk with no chain, flow metrics or aggregation: the old exporter's.
fn passthrough_chunk(Chunk { seq, flows }: Chunk, chain: &Chain, metrics: &Metrics, opts: &PipelineOptions) -> Records {
    let (done, trace) = begin(seq, &flows, chain, opts);
    let records = passthrough(&flows, metrics, opts.head_room);
    end(Records { records, chunks: done, trace: None }, trace)
}

/// Runs `chain` (through `run`) inside a traced batch's chain span, with its transforms' spans.
fn traced(
    trace: Option<&crate::telemetry::otel::BatchTrace>,
    worker: &mut Worker,
    run: impl FnOnce(&mut Worker) -> Vec<Item>,
) -> Vec<Item> {
    let Some(trace) = trace else { return run(worker) };
    let start = SystemTime::now();
    let items = run(worker);
    trace.chain(start, SystemTime::now(), &worker.timings.take().unwrap_or_default());
    items
}

/// The old exporter's records for flows as they came off the stream, with the reconciliation attribute on those
/// reconciliation found.
fn passthrough(flows: &[FlowBytes], metrics: &Metrics, head_room: usize) -> EncodedRecords {
    let now = unix_nanos();
    let reconciled = [Origin::Stream, Origin::Late, Origin::Delta].map(|o| o.attribute().map(AttrValue::str));
    let mut records = EncodedRecords::for_request(head_room, flows.len(), flows.len() * RECORD_BYTES_HINT);
    for flow in flows {
        let attribute = reconciled[flow.origin as usize].as_ref().map(|v| (RECONCILED_ATTRIBUTE, v));
        if let Err(e) = records.push_flow(&flow.wire, now, attribute.into_iter()) {
            metrics.dropped(DropReason::Malformed, 1);
            tracing::warn!(error = %e, "a flow from Goldmane could not be rendered; skipped");
        }
    }
    records
}

/// Flow metrics and aggregation read every field: the items decoded once, malformed flows dropped.
fn decoded(mut items: Vec<Item>, metrics: &Metrics) -> Vec<Item> {
    items.retain_mut(|item| match item.decode() {
        Ok(_) => true,
        Err(e) => {
            metrics.dropped(DropReason::Malformed, 1);
            tracing::warn!(error = %e, "a flow from Goldmane could not be decoded; skipped");
            false
        }
    });
    items
}

/// Runs the chain (possibly empty) over the flows, as their bytes.
fn transformed(worker: &mut Worker, chain: &Chain, raw: Vec<FlowBytes>) -> Vec<Item> {
    let reconciled = |mut item: Item, origin: crate::wire::Origin| {
        if let Some(v) = origin.attribute() {
            item.attributes.push((RECONCILED_ATTRIBUTE.into(), AttrValue::str(v)));
        }
        item
    };
    if chain.is_empty() {
        return raw.into_iter().map(|r| reconciled(Item::from_wire(r.wire), r.origin)).collect();
    }
    // The worker counts what the chain drops (intentionally or not) and expands.
    if raw.iter().any(|r| r.origin.attribute().is_some()) {
        // Rare (late flows): each origin runs as its own batch, so its records carry the attribute whatever the
        // chain does to them.
        let mut groups: [(crate::wire::Origin, Vec<Item>); 3] =
            [crate::wire::Origin::Stream, crate::wire::Origin::Late, crate::wire::Origin::Delta]
                .map(|o| (o, Vec::new()));
        for r in raw {
            groups[r.origin as usize].1.push(Item::from_wire(r.wire));
        }
        let mut items = Vec::new();
        for (o, group) in groups {
            if !group.is_empty() {
                items.extend(worker.run_items(chain, group).into_iter().map(|i| reconciled(i, o)));
            }
        }
        return items;
    }
    worker.run_items(chain, raw.into_iter().map(|r| Item::from_wire(r.wire)).collect())
}

pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use prost::Message as _;

    use super::*;
    use crate::flowgen::FlowGen;
    use crate::render;

    #[test]
    fn a_flow_that_cannot_be_read_is_dropped_as_malformed_and_the_others_pass() {
        let good = FlowGen { seed: 3, keys: 2 }.bucket(1_800_000_000);
        let raw = |wire: Bytes| FlowBytes { wire, origin: crate::wire::Origin::Stream };
        // Field 1 (the key), length-delimited, its length varint cut short.
        let bad = Bytes::from_static(&[0x0a, 0xff]);
        let flows = vec![raw(good[0].encode_to_vec().into()), raw(bad), raw(good[1].encode_to_vec().into())];
        let expected: Vec<String> = good.iter().map(render::flow_json_string).collect();

        let metrics = Metrics::new();
        let bodies: Vec<String> = passthrough(&flows, &metrics, 0)
            .decode()
            .unwrap()
            .into_iter()
            .map(|r| match r.body.and_then(|b| b.value) {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => s,
                other => panic!("not a string body: {other:?}"),
            })
            .collect();
        assert_eq!(bodies, expected);
        assert_eq!(metrics.dropped_count(DropReason::Malformed), 1);

        // The chain's path renders from the bytes and counts it the same way.
        let metrics = Metrics::new();
        let mut worker = Worker::new(metrics.clone(), None);
        let items = transformed(&mut worker, &Chain::default(), flows.clone());
        let records = rendered(&items, None, &metrics, 0);
        assert_eq!(records.len(), 2);
        assert_eq!(metrics.dropped_count(DropReason::Malformed), 1);

        // The decoding path (flow metrics or aggregation configured) counts it the same way.
        let metrics = Metrics::new();
        let items = decoded(transformed(&mut worker, &Chain::default(), flows), &metrics);
        assert_eq!(items.into_iter().map(Item::into_flow).collect::<Vec<_>>(), good);
        assert_eq!(metrics.dropped_count(DropReason::Malformed), 1);
    }
}
