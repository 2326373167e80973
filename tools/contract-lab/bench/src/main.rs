//! `flowgate-contract-lab`: issue 11, step 1. Two candidate contracts for `flowgate:transform@0.2.0`, measured
//! through wasmtime against the passthrough path and today's 0.1.0 host in the same run, as ns/flow and as
//! ratios to passthrough.
//!
//! - A (`../wit/a`): the batch is a host resource; typed getters, typed setters, `record` for the whole flow.
//! - B (`../wit/b`): the flows' protobuf bytes as one `list<u8>` plus typed records of offsets into them; typed
//!   edits back.
//!
//! Both hosts keep each flow as its wire bytes through the chain, index them in one pass ([`index`]), apply
//! changes to the flow that changed ([`apply`]) and render the record from the bytes at the end, as passthrough
//! does. Build the guests first (see README.md), then `cargo run --release -p flowgate-contract-lab`.

mod a;
mod apply;
mod b;
mod index;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowgate::otlp::flow_record;
use flowgate::pipeline::unix_nanos;
use flowgate::proto::FlowResult;
use flowgate::sim::FlowGen;
use flowgate::wire::flow_of_result;
use prost::Message as _;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const FLOWS: usize = 20_480;
const BATCH: usize = 512;
const ROUNDS: usize = 5;

/// The same allocator as the `flowgate` binary, so the figures are the gateway's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What a lab Store carries (both candidates).
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// Sum of `counter-add` deltas (kept so the call is not optimised into nothing).
    counted: u64,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The engine as `flowgate::wasm::Runtime` configures it (same flags, so the same generated code).
fn engine() -> Engine {
    let mut config = Config::new();
    config.concurrency_support(false);
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.memory_reservation(1 << 30);
    config.memory_guard_size(64 << 10);
    Engine::new(&config).expect("engine")
}

/// A Store bounded as the host bounds one (memory cap; an epoch deadline far away: no ticker here).
fn store(engine: &Engine) -> Store<State> {
    let state = State {
        wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new().memory_size(256 << 20).instances(64).trap_on_grow_failure(true).build(),
        counted: 0,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(1 << 40);
    store
}

/// A flow in the chain: its bytes (changed only where a transform changed it) and what transforms added.
pub struct Live {
    wire: Bytes,
    /// Candidate A's shallow index of `wire`, kept along the chain until a stage changes the flow.
    view: Option<b::types::FlowView>,
    ann: apply::Ann,
    dropped: bool,
}

/// Where one chain's time goes, summed over a run.
#[derive(Default, Clone, Copy)]
pub struct Times {
    /// Splitting `FlowResult`s and indexing the flows' bytes (again after a stage changed or dropped flows).
    index: Duration,
    /// The component call: lowering, the guest's work, its calls back into the host, lifting.
    call: Duration,
    /// Applying outcomes: annotations, and changes to the flows' bytes.
    apply: Duration,
    /// Rendering the OTLP records.
    render: Duration,
}

/// One transform instance of either candidate.
pub trait Stage {
    /// Whether the host indexes the whole batch before the call (B) or the stage indexes on demand (A).
    fn eager_index(&self) -> bool {
        true
    }
    /// Runs the batch; marks drops and applies changes in `live`. True when any flow was dropped or changed
    /// (the batch is indexed again before the next stage).
    fn process(&mut self, batch: &mut b::types::Batch, live: &mut [Live], times: &mut Times) -> bool;
}

/// One batch from the wire through `stages` to OTLP records.
fn run_chain(
    stages: &mut [Box<dyn Stage>],
    chunk: &[Bytes],
    batch: &mut b::types::Batch,
    times: &mut Times,
) -> Vec<opentelemetry_proto::tonic::logs::v1::LogRecord> {
    let t = Instant::now();
    let mut live: Vec<Live> = chunk
        .iter()
        .map(|w| Live {
            wire: flow_of_result(w).unwrap().unwrap().wire,
            view: None,
            ann: apply::Ann::default(),
            dropped: false,
        })
        .collect();
    let mut stale = true;
    times.index += t.elapsed();
    for stage in stages.iter_mut() {
        if stale {
            let t = Instant::now();
            live.retain(|l| !l.dropped);
            if stage.eager_index() {
                index::clear(batch);
                for l in &live {
                    index::push(batch, &l.wire).expect("valid flow");
                }
            }
            times.index += t.elapsed();
        }
        stale = stage.process(batch, &mut live, times);
    }
    let t = Instant::now();
    let now = unix_nanos();
    let records = live.into_iter().filter(|l| !l.dropped).map(|l| l.ann.finish(&l.wire, now)).collect();
    times.render += t.elapsed();
    records
}

/// Passthrough, ns/flow: split and render, as the gateway does with no transform. Measured again right after
/// every row, whose ratio is to that measurement (the machine's load drifts; a ratio taken minutes apart would not).
fn passthrough(wire: &[Bytes]) -> f64 {
    ns(best(|| {
        for chunk in wire.chunks(BATCH) {
            let now = unix_nanos();
            let records: Vec<_> =
                chunk.iter().map(|w| flow_record(&flow_of_result(w).unwrap().unwrap().wire, now).unwrap()).collect();
            black_box(records);
        }
    }))
}

fn best(mut f: impl FnMut()) -> Duration {
    f(); // warm up
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .expect("at least one round")
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64 / FLOWS as f64
}

/// The rows of the table: (label, in Python, transforms as (logic, config) pairs).
type Chain = (&'static str, bool, Vec<(&'static str, Vec<(&'static str, &'static str)>)>);

fn chains() -> Vec<Chain> {
    let filter = ("filter", vec![("drop_namespaces", "kube-*")]);
    let redact = (
        "redact",
        vec![
            ("drop_labels", "pod-template-hash=*"),
            ("pseudonymize", "source_namespace,dest_namespace"),
            ("key", "bench-secret-key-0123"),
        ],
    );
    let enrich = ("enrich", vec![("attr.k8s.cluster.name", "bench"), ("owner.payments", "billing")]);
    let semconv = ("semconv", vec![]);
    let keep = ("keep", vec![]);
    let labels_only = ("redact", vec![("drop_labels", "pod-template-hash=*")]);
    let attributes_only = ("semconv", vec![("body", "json")]);
    let columns = |(logic, mut config): (&'static str, Vec<(&'static str, &'static str)>)| {
        config.push(("access", "columns"));
        (logic, config)
    };
    let cached = |(logic, mut config): (&'static str, Vec<(&'static str, &'static str)>)| {
        config.push(("cache", "true"));
        (logic, config)
    };
    let rows = vec![
        ("filter", false, vec![filter.clone()]),
        ("filter (A: by columns)", false, vec![columns(filter.clone())]),
        ("redact", false, vec![redact.clone()]),
        ("redact (A: by columns)", false, vec![columns(redact.clone())]),
        ("redact: labels only (no HMAC)", false, vec![labels_only]),
        ("enrich", false, vec![enrich.clone()]),
        ("enrich (A: by columns)", false, vec![columns(enrich.clone())]),
        ("semconv", false, vec![semconv.clone()]),
        ("semconv (A: by columns)", false, vec![columns(semconv.clone())]),
        ("semconv: attributes only (body=json)", false, vec![attributes_only]),
        ("redact -> enrich -> semconv", false, vec![redact.clone(), enrich.clone(), semconv.clone()]),
        (
            "redact -> enrich -> semconv (A: by columns)",
            false,
            vec![columns(redact.clone()), columns(enrich.clone()), columns(semconv.clone())],
        ),
        ("chain, pseudonyms cached", false, vec![cached(redact.clone()), enrich.clone(), semconv.clone()]),
        (
            "chain, pseudonyms cached (A: by columns)",
            false,
            vec![columns(cached(redact)), columns(enrich), columns(semconv)],
        ),
        ("keep x3 (per transform = this / 3)", false, vec![keep.clone(), keep.clone(), keep.clone()]),
        ("keep x3 (A: by columns)", false, vec![columns(keep.clone()), columns(keep.clone()), columns(keep)]),
        ("Python filter", true, vec![filter.clone()]),
        ("Python filter (A: by columns)", true, vec![filter]),
    ];
    // `flowgate-contract-lab <text>`: only the rows whose label contains <text> (`host`: the host lines only).
    match std::env::args().nth(1) {
        Some(only) => rows.into_iter().filter(|(label, _, _)| label.contains(only.as_str())).collect(),
        None => rows,
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let dir = root.join("target/wasm32-wasip2/transform");
    let flows = FlowGen { seed: 3, keys: FLOWS }.bucket(1_764_970_845);
    let wire: Vec<Bytes> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| Bytes::from(FlowResult { id: i as i64, flow: Some(f.clone()) }.encode_to_vec()))
        .collect();
    println!("flowgate-contract-lab: {FLOWS} simulator flows, batches of {BATCH}, one core, best of {ROUNDS} rounds");
    println!("every figure: ns/flow from the wire to OTLP log records (not encoded), and its ratio to passthrough\n");

    let passthrough = passthrough(&wire);
    println!("{:<38} {passthrough:>8.0} ns/flow  1.00x", "passthrough (split + render)");
    let split = ns(best(|| {
        for w in &wire {
            black_box(flow_of_result(w).unwrap().unwrap());
        }
    }));
    println!("{:<38} {split:>8.0} ns/flow  {:.2}x", "host: split only", split / passthrough);
    let mut idx = index::batch(BATCH);
    let indexing = ns(best(|| {
        for chunk in wire.chunks(BATCH) {
            index::clear(&mut idx);
            for w in chunk {
                index::push(&mut idx, &flow_of_result(w).unwrap().unwrap().wire).unwrap();
            }
            black_box(&idx);
        }
    }));
    println!(
        "{:<38} {indexing:>8.0} ns/flow  {:.2}x   (bytes {} B/flow, {} hits, {} labels a batch)",
        "host: split + index (both candidates)",
        indexing / passthrough,
        idx.bytes.len() / idx.flows.len().max(1),
        idx.hits.len(),
        idx.labels.len()
    );

    let shallow = ns(best(|| {
        for w in &wire {
            black_box(index::shallow(&flow_of_result(w).unwrap().unwrap().wire).unwrap());
        }
    }));
    println!("{:<38} {shallow:>8.0} ns/flow  {:.2}x\n", "host: split + shallow index (A)", shallow / passthrough);
    if std::env::args().nth(1).as_deref() == Some("host") {
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("index-profile") {
        for _ in 0..200 {
            for chunk in wire.chunks(BATCH) {
                index::clear(&mut idx);
                for w in chunk {
                    index::push(&mut idx, &flow_of_result(w).unwrap().unwrap().wire).unwrap();
                }
                black_box(&idx);
            }
        }
        return;
    }
    let baseline = baseline_0_1(&dir, &wire);
    let engine = engine();
    let mut results: Vec<(&str, Vec<Option<Row>>)> = Vec::new();
    for name in ["A", "B"] {
        results.push((name, candidate(&engine, name, &dir, &wire)));
    }

    println!("\n{:<38} {:>16} {:>16} {:>16}", "logic (Rust guests)", "0.1.0 today", "candidate A", "candidate B");
    // `*`: exported records differ from 0.1.0's for the same row (checked on the first two batches).
    // Lab-only rows compare with the row they vary: the same logic, read by columns or with pseudonyms cached.
    let labels: Vec<&str> = chains().iter().map(|(label, _, _)| *label).collect();
    let reference = |i: usize| {
        let base = labels[i]
            .replace(" (A: by columns)", "")
            .replace("chain, pseudonyms cached", "redact -> enrich -> semconv");
        let j = labels.iter().position(|l| *l == base)?;
        baseline.get(j).and_then(Option::as_ref).map(|r| r.digest)
    };
    let cell = |i: usize, r: Option<&Option<Row>>| match r {
        Some(Some(r)) => {
            let mark = match reference(i) {
                Some(d) if d != r.digest => "*",
                Some(_) => "",
                None => "?",
            };
            format!("{:.0} ({:.2}x){mark}", r.ns, r.ns / r.passthrough)
        }
        _ => "-".to_string(),
    };
    for (i, (label, _, _)) in chains().iter().enumerate() {
        println!(
            "{label:<44} {:>16} {:>16} {:>16}",
            cell(i, baseline.get(i)),
            cell(i, results[0].1.get(i)),
            cell(i, results[1].1.get(i)),
        );
    }
    println!("(* = records differ from 0.1.0's for the same logic, on the first two batches; ? = not compared)");
    println!("\nwhere the time goes (ns/flow: split+index / component call / apply outcomes / render)");
    for (name, rows) in &results {
        for (i, (label, _, _)) in chains().iter().enumerate() {
            if let Some(Some(Row { times: t, passthrough, .. })) = rows.get(i) {
                println!(
                    "  {name} {label:<44} {:>6.0} / {:>6.0} / {:>6.0} / {:>6.0}   (passthrough {passthrough:.0})",
                    ns(t.index),
                    ns(t.call),
                    ns(t.apply),
                    ns(t.render)
                );
            }
        }
    }
}

/// A digest of what a chain exported for the first two batches (severity, body, attributes; not the time or
/// 0.1.0's provenance attribute), to check that every column runs the same logic.
fn digest(records: &[opentelemetry_proto::tonic::logs::v1::LogRecord]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in records {
        r.severity_number.hash(&mut h);
        format!("{:?}", r.body).hash(&mut h);
        for a in r.attributes.iter().filter(|a| a.key != flowgate::pipeline::PROVENANCE_ATTRIBUTE) {
            format!("{a:?}").hash(&mut h);
        }
    }
    h.finish()
}

/// One measured cell.
#[derive(Default)]
struct Row {
    /// [`digest`] of its first two batches.
    digest: u64,
    ns: f64,
    /// Passthrough measured right after.
    passthrough: f64,
    times: Times,
}

/// Each chain through one candidate's components, `None` where a component is not built.
fn candidate(engine: &Engine, name: &str, dir: &Path, wire: &[Bytes]) -> Vec<Option<Row>> {
    let lower = name.to_ascii_lowercase();
    let load = |file: String| -> Option<Component> {
        let path = dir.join(&file);
        let Ok(bytes) = std::fs::read(&path) else {
            println!("candidate {name}: {} not built (see tools/contract-lab/README.md)", path.display());
            return None;
        };
        let t = Instant::now();
        let component = Component::new(engine, &bytes).expect("compiles");
        println!("candidate {name}: {file} {} B, compiled in {:.0} ms", bytes.len(), t.elapsed().as_secs_f64() * 1e3);
        Some(component)
    };
    let rust = load(format!("contract_lab_guest_{lower}.wasm"));
    let python = load(format!("contract_lab_python_{lower}.wasm"));
    let python_columns = if name == "A" { load("contract_lab_python_a_columns.wasm".to_string()) } else { None };
    let linker_a = a::linker(engine).expect("linker A");
    let linker_b = b::linker(engine).expect("linker B");
    let mut out = Vec::new();
    for (label, in_python, specs) in chains() {
        if label.contains("A: ") && name != "A" {
            out.push(None);
            continue;
        }
        let component = match (in_python, label.contains("A: ")) {
            (true, true) => python_columns.as_ref(),
            (true, false) => python.as_ref(),
            (false, _) => rust.as_ref(),
        };
        let Some(component) = component else {
            out.push(None);
            continue;
        };
        let mut stages: Vec<Box<dyn Stage>> = specs
            .iter()
            .map(|(logic, config)| {
                let mut config = config.clone();
                config.push(("logic", logic));
                if name == "A" {
                    Box::new(a::Instance::new(engine, &linker_a, component, &config)) as Box<dyn Stage>
                } else {
                    Box::new(b::Instance::new(engine, &linker_b, component, &config))
                }
            })
            .collect();
        let mut batch = index::batch(BATCH);
        // The stage breakdown is the best round's, so it adds up to the figure reported.
        let (mut times, mut best_times, mut best_total) = (Times::default(), Times::default(), Duration::MAX);
        let mut kept = 0;
        let total = best(|| {
            times = Times::default();
            kept = 0;
            let t = Instant::now();
            for chunk in wire.chunks(BATCH) {
                let records = run_chain(&mut stages, chunk, &mut batch, &mut times);
                kept += records.len();
                black_box(records);
            }
            if t.elapsed() < best_total {
                (best_total, best_times) = (t.elapsed(), times);
            }
        });
        let times = best_times;
        println!("  {name} {label:<36} {:>8.0} ns/flow  {kept} records", ns(total));
        let records: Vec<_> = wire[..2 * BATCH]
            .chunks(BATCH)
            .flat_map(|chunk| run_chain(&mut stages, chunk, &mut batch, &mut Times::default()))
            .collect();
        out.push(Some(Row { digest: digest(&records), ns: ns(total), passthrough: passthrough(wire), times }));
    }
    out
}

/// Today's contract through today's host (`flowgate::pipeline`), as `make bench` measures it. `keep x3` is
/// three 0.1.0 `filter`s with no configuration (each keeps every flow).
fn baseline_0_1(dir: &Path, wire: &[Bytes]) -> Vec<Option<Row>> {
    use flowgate::pipeline::chain::{self, EntrySpec, FailurePolicy};
    use flowgate::pipeline::{Worker, worker};
    use flowgate::telemetry::Metrics;
    use flowgate::wasm::{Limits, Runtime};

    if !dir.join("flowgate_transform_filter.wasm").exists() {
        println!("0.1.0: transforms not built (`make transforms`)");
        return Vec::new();
    }
    let rt = Runtime::new().expect("wasmtime");
    let mut out = Vec::new();
    for (label, in_python, specs) in chains() {
        let specs: Vec<EntrySpec> = specs
            .iter()
            .map(|(logic, config)| {
                let (file, config) = if *logic == "keep" { ("filter", vec![]) } else { (*logic, config.clone()) };
                let path = if in_python {
                    dir.join("python_filter.wasm")
                } else {
                    dir.join(format!("flowgate_transform_{file}.wasm"))
                };
                EntrySpec {
                    name: logic.to_string(),
                    path,
                    config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                    policy: FailurePolicy::FailClosed,
                    limits: Limits { deadline: Duration::from_secs(5), memory_bytes: 256 << 20 },
                }
            })
            .collect();
        // Lab-only rows: A's access mode, or logic the 0.1.0 transforms do not have.
        if specs.iter().any(|s| !s.path.exists()) || label.contains("A: ") || label.contains("cached") {
            out.push(None);
            continue;
        }
        let chain = chain::build(&rt, specs, 1).expect("chain builds");
        let mut w = Worker::new(Metrics::new(), None);
        let mut kept = 0;
        let total = best(|| {
            kept = 0;
            for chunk in wire.chunks(BATCH) {
                let batch: Vec<_> = chunk
                    .iter()
                    .map(|b| flowgate::proto::Flow::decode(flow_of_result(b).unwrap().unwrap().wire).unwrap())
                    .collect();
                let now = unix_nanos();
                let records: Vec<_> =
                    w.run(&chain, batch).into_iter().map(|i| worker::record(i, now, Some(&chain.provenance))).collect();
                kept += records.len();
                black_box(records);
            }
        });
        println!("  0.1.0 {label:<36} {:>8.0} ns/flow  {kept} records", ns(total));
        let records: Vec<_> = wire[..2 * BATCH]
            .chunks(BATCH)
            .flat_map(|chunk| {
                let batch: Vec<_> = chunk
                    .iter()
                    .map(|b| flowgate::proto::Flow::decode(flow_of_result(b).unwrap().unwrap().wire).unwrap())
                    .collect();
                w.run(&chain, batch).into_iter().map(|i| worker::record(i, 0, Some(&chain.provenance)))
            })
            .collect();
        out.push(Some(Row {
            digest: digest(&records),
            ns: ns(total),
            passthrough: passthrough(wire),
            times: Times::default(),
        }));
    }
    out
}
