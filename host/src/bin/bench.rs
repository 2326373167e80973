//! `flowgate-bench`: the host path per flow on one core, printed as figures (never asserted in tests).
//!
//! decode `FlowResult` (protobuf, as it comes off the gRPC stream) -> render the old exporter's JSON body and
//! log record -> encode the OTLP request (none, gzip, zstd). Run with `cargo run --release --bin flowgate-bench`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowgate::config::Compression;
use flowgate::otlp::{EncodedRecords, RequestEncoder, SEVERITY_INFO, resource, string_value};
use flowgate::pipeline::unix_nanos;
use flowgate::proto::FlowResult;
use flowgate::render::{flow_json_bytes_from_wire, reference};
use flowgate::sim::FlowGen;
use flowgate::telemetry::allocator;
use flowgate::wire::flow_of_result;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;

const FLOWS: usize = 20_000;
const BATCH: usize = 512;
const ROUNDS: usize = 5;

fn main() {
    if std::env::var_os("FLOWGATE_BENCH_COMPRESSION").is_some() {
        return compression_levels(&wire_of(&FlowGen { seed: 3, keys: FLOWS }.bucket(1_764_970_845)));
    }
    if std::env::var_os("FLOWGATE_BENCH_CHAINS").is_some() {
        return transforms(&wire_of(&FlowGen { seed: 3, keys: FLOWS }.bucket(1_764_970_845)));
    }
    // `FLOWGATE_BENCH_RENDER`: only the split and render rows, for an A/B of the renderer.
    let render_only = std::env::var_os("FLOWGATE_BENCH_RENDER").is_some();
    // First, so its memory figure is not hidden by what the allocator kept from the other stages.
    if !render_only {
        reconciliation();
    }
    let flows = FlowGen { seed: 3, keys: FLOWS }.bucket(1_764_970_845);
    let wire = wire_of(&flows);
    let wire_bytes: usize = wire.iter().map(Bytes::len).sum();
    println!(
        "flowgate-bench: {FLOWS} simulator flows, {} B each on the wire (mean), batches of {BATCH}",
        wire_bytes / FLOWS
    );
    let conf = std::env::var(allocator::CONF_VAR).unwrap_or_else(|_| "jemalloc's defaults".into());
    println!("one core, best of {ROUNDS} rounds, allocator: {conf}\n");

    let decode = best(|| {
        for w in &wire {
            black_box(FlowResult::decode(w.as_ref()).unwrap());
        }
    });
    report("prost-decode FlowResult (the transform path)", decode, None);

    let split = best(|| {
        for w in &wire {
            black_box(flow_of_result(w.clone()).unwrap().unwrap());
        }
    });
    report("split FlowResult + find key (the source)", split, None);

    let flow_wire: Vec<Bytes> = wire.iter().map(|w| flow_of_result(w.clone()).unwrap().unwrap().wire).collect();
    let mut body = Vec::with_capacity(4096);
    let render = best(|| {
        for w in &flow_wire {
            body.clear();
            flow_json_bytes_from_wire(w, &mut body).unwrap();
            black_box(&body);
        }
    });
    report("render JSON body from the wire", render, None);
    let mut body = String::with_capacity(4096);
    let render_reference = best(|| {
        for w in &flow_wire {
            body.clear();
            reference::flow_json_from_wire(w, &mut body).unwrap();
            black_box(&body);
        }
    });
    report("reference: the table-driven renderer", render_reference, None);
    println!("{:<42} {:>8.2}x faster than the reference", "", render_reference.as_secs_f64() / render.as_secs_f64());
    if render_only {
        return;
    }

    let index = best(|| {
        for w in &flow_wire {
            black_box(flowgate::wasm::FlowIndex::new(w).unwrap());
        }
    });
    report("index a flow for transforms", index, None);

    // The path as it was when issue 13 was filed: the table-driven renderer into a `LogRecord` a flow (its body a
    // new String), then the request encoded by prost. Kept as the reference the path below is measured against.
    let structs = RequestEncoder::new(resource(&[]), Compression::None);
    let reference = best(|| {
        for chunk in wire.chunks(BATCH) {
            let now = unix_nanos();
            let records: Vec<LogRecord> = chunk
                .iter()
                .map(|w| {
                    let raw = flow_of_result(w.clone()).unwrap().unwrap();
                    let mut body = String::with_capacity(raw.wire.len() * 5 / 2 + 64);
                    reference::flow_json_from_wire(&raw.wire, &mut body).unwrap();
                    LogRecord {
                        time_unix_nano: now,
                        observed_time_unix_nano: now,
                        severity_number: SEVERITY_INFO,
                        severity_text: "INFO".to_string(),
                        body: Some(string_value(body)),
                        ..LogRecord::default()
                    }
                })
                .collect();
            black_box(structs.request(records).encode_to_vec());
        }
    });
    report("reference: LogRecord structs, prost encode", reference, None);

    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let encoder = RequestEncoder::new(resource(&[]), compression);
        let mut out_bytes = 0usize;
        let mut raw_bytes = 0usize;
        let total = best(|| {
            out_bytes = 0;
            raw_bytes = 0;
            for chunk in wire.chunks(BATCH) {
                let encoded = encoder.finish_records(records_of(chunk, encoder.head_room()));
                out_bytes += encoded.body.len();
                raw_bytes += encoded.raw_bytes;
            }
        });
        report(
            &format!("decode -> render -> encode ({compression:?})"),
            total,
            Some((out_bytes as f64 / FLOWS as f64, raw_bytes as f64 / FLOWS as f64)),
        );
        if compression == Compression::None {
            println!("{:<42} {:>8.2}x faster than the reference", "", reference.as_secs_f64() / total.as_secs_f64());
        }
    }
    compression_levels(&wire);
    post_chain(&flows);
    transforms(&wire);
}

/// The reconciliation ledger at the design point: 100,000 flows a bucket over the default 330 s window.
fn reconciliation() {
    use flowgate::source::identity;
    use flowgate::source::ledger::{Ledger, Verdict};

    const KEYS: usize = 100_000;
    const BUCKETS: i64 = 22;
    println!("reconciliation ledger ({KEYS} flows a bucket, {BUCKETS} buckets = the 330 s window), one core");
    let flow_gen = FlowGen { seed: 9, keys: KEYS };
    // One flow at a time: a whole bucket of decoded flows would leave the allocator holding more than the ledger.
    let keys: Vec<(Bytes, [i64; 7])> = (0..KEYS)
        .map(|i| {
            let w = Bytes::from(FlowResult { id: 0, flow: Some(flow_gen.flow(i, 0)) }.encode_to_vec());
            let raw = flow_of_result(w).unwrap().unwrap();
            (Bytes::copy_from_slice(raw.key()), raw.counters)
        })
        .collect();
    let rss_before = rss_bytes();
    let mut ledger = Ledger::default();
    ledger.set_floor(0);
    let started = Instant::now();
    for b in 0..BUCKETS {
        let start = b * 15;
        for (key, counters) in &keys {
            // As the source records a streamed flow: new to the bucket, recorded in one step.
            assert!(ledger.record_if_new(start, identity(key, start) as u64, counters));
        }
        ledger.seal(start);
    }
    let record = started.elapsed();
    let rss_after = rss_bytes();
    let entries = ledger.entries();
    report("record a streamed flow (incl. seal)", record / (BUCKETS as u32) * (FLOWS as u32) / (KEYS as u32), None);
    let started = Instant::now();
    let mut known = 0;
    for (key, counters) in &keys {
        let start = 7 * 15;
        if ledger.classify(start, identity(key, start) as u64, counters) == Some(Verdict::Known) {
            known += 1;
        }
    }
    assert_eq!(known, KEYS);
    let judge = started.elapsed();
    report("judge a listed flow (hash + lookup)", judge * (FLOWS as u32) / (KEYS as u32), None);
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    println!(
        "  {entries} entries: {:.1} MiB held ({:.1} B an entry; bound 36 B = {:.1} MiB), process RSS +{:.1} MiB",
        mib(ledger.bytes()),
        ledger.bytes() as f64 / entries as f64,
        mib(entries * 36),
        mib(rss_after.saturating_sub(rss_before))
    );
    println!();
}

/// Resident memory of this process, from /proc (0 where there is none).
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Flow metrics and aggregation (after the chain), and aggregation's reduction on the simulator's flows.
fn post_chain(flows: &[flowgate::proto::Flow]) {
    use flowgate::config::{AggregationConfig, AggregationLevel, FlowMetricsConfig};
    use flowgate::pipeline::Item;
    use flowgate::pipeline::post::{Aggregator, FlowFamilies, FlowStats};

    println!("\nafter the chain (on decoded flows)");
    let families = FlowFamilies::default();
    let mut stats = FlowStats::new(FlowMetricsConfig { max_series: 2_000, namespaces: None, otlp: None });
    let observe = best(|| {
        for f in flows {
            stats.observe(f, &families);
        }
    });
    report("flow metrics (policy + end-of-tier + traffic)", observe, None);
    // One OTLP push of every series: snapshot, request, protobuf encoding (per push, not per flow).
    let mut points = 0;
    let mut encoded = 0;
    let push = best(|| {
        let p = stats.points();
        points = p.len();
        let req = flowgate::sink::metrics_push::request(
            p,
            flowgate::otlp::resource(&[]),
            stats.started,
            std::time::SystemTime::now(),
        );
        encoded = prost::Message::encoded_len(&req);
    });
    println!(
        "{:<42} {:>8.2} ms/push  {points} data points, {encoded} B before compression",
        "  OTLP push of the flow metrics",
        push.as_secs_f64() * 1e3
    );
    for level in [AggregationLevel::None, AggregationLevel::Names, AggregationLevel::Namespaces] {
        let cfg = AggregationConfig { level, linger: Duration::from_secs(1), max_groups: usize::MAX };
        let mut records = 0;
        let d = best(|| {
            let mut agg = Aggregator::new(cfg);
            let mut out = Vec::new();
            let now = Instant::now();
            for f in flows {
                agg.add(Item::new(f.clone()), None, now, &mut out);
            }
            agg.flush_all(&mut out);
            records = out.len();
        });
        report(&format!("aggregate, level {level:?} (incl. clone)"), d, None);
        print!("{:<42}", format!("  reduction, level {level:?}"));
        for keys in [500, 2_000, FLOWS] {
            let bucket = FlowGen { seed: 3, keys }.bucket(1_764_970_845);
            let mut agg = Aggregator::new(cfg);
            let mut out = Vec::new();
            for f in bucket {
                agg.add(Item::new(f), None, Instant::now(), &mut out);
            }
            agg.flush_all(&mut out);
            print!("  {keys} flows -> {} ({:.1}x)", out.len(), keys as f64 / out.len() as f64);
        }
        println!();
        black_box(records);
    }
}

/// Each compression and level on the same requests (batches of `BATCH` records): CPU per flow, bytes per record,
/// and the CPU spent per byte saved, the figure the defaults are chosen by.
fn compression_levels(wire: &[Bytes]) {
    let encoder = RequestEncoder::new(resource(&[]), Compression::None);
    let requests: Vec<Vec<u8>> = wire
        .chunks(BATCH)
        .map(|chunk| encoder.finish_records(records_of(chunk, encoder.head_room())).body.to_vec())
        .collect();
    let raw: usize = requests.iter().map(Vec::len).sum();
    println!("\ncompressing OTLP requests of {BATCH} records ({} B a record before compression)", raw / FLOWS);
    let row = |name: String, f: &dyn Fn(&[u8]) -> Vec<u8>| {
        let mut out = 0usize;
        let d = best(|| out = requests.iter().map(|r| f(r).len()).sum());
        let ns = d.as_nanos() as f64 / FLOWS as f64;
        let saved = (raw - out) as f64 / FLOWS as f64;
        println!(
            "{name:<42} {ns:>8.0} ns/flow  {:>7.0} B/record  {:>5.2} ns per byte saved",
            out as f64 / FLOWS as f64,
            ns / saved
        );
    };
    for level in flowgate::otlp::gzip::LEVELS {
        row(format!("gzip level {level} ({})", flowgate::otlp::GZIP_BACKEND), &|r| {
            flowgate::otlp::gzip::compress(r, level)
        });
    }
    for level in [1, 4, 6] {
        row(format!("gzip level {level} (flate2 with zlib-rs)"), &|r| {
            use std::io::Write as _;
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(r.len() / 4), flate2::Compression::new(level));
            enc.write_all(r).unwrap();
            enc.finish().unwrap()
        });
    }
    for level in [1, 4, 6] {
        row(format!("gzip level {level} (libdeflate)"), &|r| {
            let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level).unwrap());
            let mut out = vec![0; c.gzip_compress_bound(r.len())];
            let n = c.gzip_compress(r, &mut out).unwrap();
            out.truncate(n);
            out
        });
    }
    for level in [-3, -1, 1, 3] {
        row(format!("zstd level {level}"), &|r| zstd::bulk::compress(r, level).unwrap());
    }
}

/// The flows as `FlowResult`s on the wire.
fn wire_of(flows: &[flowgate::proto::Flow]) -> Vec<Bytes> {
    flows
        .iter()
        .enumerate()
        .map(|(i, f)| Bytes::from(FlowResult { id: i as i64, flow: Some(f.clone()) }.encode_to_vec()))
        .collect()
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

fn report(what: &str, d: Duration, bytes: Option<(f64, f64)>) {
    let per_flow_ns = d.as_nanos() as f64 / FLOWS as f64;
    let rate = FLOWS as f64 / d.as_secs_f64();
    let bytes =
        bytes.map_or(String::new(), |(out, raw)| format!("  {out:>7.0} B/record sent ({raw:.0} B uncompressed)"));
    println!("{what:<42} {per_flow_ns:>8.0} ns/flow  {rate:>12.0} flows/s{bytes}");
}

/// The same allocator as the `flowgate` binary, so the figures are the gateway's.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Transforms through the host: compile and instantiate time, then ns/flow for each example (the schema
/// mappings semconv, ocsf and ecs among them) and the chain redact -> enrich -> semconv, on batches of `BATCH` flows (from the wire, as the pipeline keeps them, through
/// the chain, to OTLP records), each as a ratio to passthrough measured beside it.
fn transforms(wire: &[Bytes]) {
    use flowgate::pipeline::chain::{self, EntrySpec, FailurePolicy};
    use flowgate::pipeline::{Worker, worker};
    use flowgate::telemetry::Metrics;
    use flowgate::wasm::{Limits, Runtime};

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/transform");
    if !dir.join("flowgate_transform_redact.wasm").exists() {
        println!("\n(transforms not built: run `make transforms` for their figures)");
        return;
    }
    let rt = Runtime::new().expect("wasmtime");
    let spec = |name: &str, config: &[(&str, &str)]| EntrySpec {
        name: name.to_string(),
        path: dir.join(format!("flowgate_transform_{name}.wasm")),
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        policy: FailurePolicy::FailClosed,
        limits: Limits::default(),
    };
    let redact = spec(
        "redact",
        &[
            ("drop_labels", "pod-template-hash=*"),
            ("pseudonymize", "source_namespace,dest_namespace"),
            ("key", "bench-secret-key-0123"),
        ],
    );
    let enrich = spec("enrich", &[("attr.k8s.cluster.name", "bench"), ("owner.payments", "billing")]);
    let semconv = spec("semconv", &[]);
    let ocsf = spec("ocsf", &[]);
    let ecs = spec("ecs", &[]);
    let filter = spec("filter", &[("drop_namespaces", "kube-*")]);
    // The same filter in other languages, where built (`make transforms`); interpreters need more room.
    let other_language = |name: &str, file: &str| {
        let path = dir.join(file);
        path.exists().then(|| EntrySpec {
            name: name.to_string(),
            path,
            config: vec![("drop_namespaces".to_string(), "kube-*".to_string())],
            policy: FailurePolicy::FailClosed,
            limits: Limits { deadline: std::time::Duration::from_secs(5), memory_bytes: 256 << 20 },
        })
    };
    let languages: Vec<EntrySpec> = [
        other_language("c-filter", "c_filter.wasm"),
        other_language("go-filter", "go_filter.wasm"),
        other_language("python-filter", "python_filter.wasm"),
        other_language("js-filter", "js_filter.wasm"),
    ]
    .into_iter()
    .flatten()
    .collect();
    // FLOWGATE_BENCH_CHAINS=semconv,filter runs only these chains (by label), for profiling.
    let only: Vec<String> =
        std::env::var("FLOWGATE_BENCH_CHAINS").map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default();
    println!("\ntransforms (wasmtime, one worker thread, batches of {BATCH})");
    for s in
        [&filter, &redact, &enrich, &semconv, &ocsf, &ecs].into_iter().chain(&languages).filter(|_| only.is_empty())
    {
        let bytes = std::fs::read(&s.path).expect("component");
        let t = Instant::now();
        let loaded = rt.load(&s.name, &bytes).expect("compiles");
        let compile = t.elapsed();
        let t = Instant::now();
        let n = 20;
        for _ in 0..n {
            black_box(loaded.instantiate(&s.config, s.limits, None).expect("instantiates"));
        }
        let instantiate = t.elapsed();
        println!(
            "{:<14} {:>9} B ({:>8} B gzipped)  compile {:>7.1} ms  instantiate+init {:>8.1} us",
            s.name,
            bytes.len(),
            gzipped_len(&bytes),
            compile.as_secs_f64() * 1e3,
            instantiate.as_secs_f64() * 1e6 / n as f64
        );
    }
    // Each row's ratio is to passthrough measured right before it: absolute times drift on a shared machine,
    // ratios taken side by side do not. Targets are issue 11's.
    let keep = spec("filter", &[]);
    let chains: Vec<(String, Vec<EntrySpec>, Option<f64>)> = vec![
        ("filter".into(), vec![filter.clone()], Some(1.3)),
        ("keep x3 (filter without config)".into(), vec![keep.clone(), keep.clone(), keep], None),
        ("redact".into(), vec![redact.clone()], None),
        ("enrich".into(), vec![enrich.clone()], None),
        ("semconv".into(), vec![semconv.clone()], None),
        ("ocsf".into(), vec![ocsf], None),
        ("ecs".into(), vec![ecs], None),
        ("redact -> enrich -> semconv".into(), vec![redact, enrich, semconv], Some(4.0)),
    ];
    let targets = |name: &str| match name {
        "python-filter" => Some(7.0),
        "js-filter" => Some(20.0),
        _ => None,
    };
    let chains =
        chains.into_iter().chain(languages.iter().map(|s| (s.name.clone(), vec![s.clone()], targets(&s.name))));
    println!(
        "\n{:<42} {:>8}  {:>12}  {:>13}  target",
        "chain (from the wire to OTLP records)", "ns/flow", "flows/s", "x passthrough"
    );
    let mut rust_filter = None;
    for (label, specs, target) in chains {
        if !only.is_empty() && !only.contains(&label) {
            continue;
        }
        let chain = chain::build(&rt, specs, 1).expect("chain builds");
        let mut w = Worker::new(Metrics::new(), None);
        // Passthrough before and after the row: the lower of the two is the machine at its quietest around it.
        let passthrough_before = passthrough(wire);
        let mut stages = Vec::new();
        let provenance = flowgate::wasm::AttrValue::Str(chain.provenance.clone());
        let total = best(|| {
            w.stages = Default::default();
            let t = Instant::now();
            for chunk in wire.chunks(BATCH) {
                let items = chunk
                    .iter()
                    .map(|b| worker::Item::from_wire(flow_of_result(b.clone()).unwrap().unwrap().wire))
                    .collect();
                let now = unix_nanos();
                let mut records = EncodedRecords::with_capacity(chunk.len(), chunk.len() * 1536);
                for item in w.run_items(&chain, items) {
                    worker::encode_record(&item, now, Some(&provenance), &mut records).unwrap();
                }
                black_box(records);
            }
            stages.push((t.elapsed(), w.stages));
        });
        let passthrough = passthrough_before.min(passthrough(wire));
        // The stages of the best round.
        let (_, st) = stages.iter().min_by_key(|(d, _)| *d).copied().expect("rounds ran");
        let ratio = total.as_secs_f64() / passthrough.as_secs_f64();
        let per_flow_ns = total.as_nanos() as f64 / FLOWS as f64;
        let extra = if label.starts_with("keep x3") {
            format!("{:.2} per transform (target <= 0.25)", (ratio - 1.0) / 3.0)
        } else if label == "c-filter" {
            let rust = rust_filter.unwrap_or(f64::NAN);
            format!("{:.2} x the Rust filter (target <= 1.2)", per_flow_ns / rust)
        } else {
            target.map_or(String::new(), |t| format!("<= {t} {}", if ratio <= t { "met" } else { "MISSED" }))
        };
        if label == "filter" {
            rust_filter = Some(per_flow_ns);
        }
        let ns = |d: Duration| d.as_nanos() as f64 / FLOWS as f64;
        println!(
            "{:<42} {per_flow_ns:>8.0}  {:>12.0}  {ratio:>13.2}  {extra}",
            format!("chain: {label}"),
            FLOWS as f64 / total.as_secs_f64(),
        );
        println!(
            "{:<42} passthrough {:.0}; stages: index {:.0}, call {:.0}, apply {:.0}, split + render + the rest {:.0}",
            "",
            ns(passthrough),
            ns(st.index),
            ns(st.call),
            ns(st.apply),
            ns(total) - ns(st.index) - ns(st.call) - ns(st.apply),
        );
    }
}

/// The passthrough path over `wire` (split, render, record), best of the rounds.
fn passthrough(wire: &[Bytes]) -> Duration {
    best(|| {
        for chunk in wire.chunks(BATCH) {
            black_box(records_of(chunk, 0));
        }
    })
}

/// The records of a chunk of encoded `FlowResult`s, as the passthrough path makes them.
fn records_of(chunk: &[Bytes], head_room: usize) -> EncodedRecords {
    let now = unix_nanos();
    let mut records = EncodedRecords::for_request(head_room, chunk.len(), chunk.len() * 1536);
    for w in chunk {
        records.push_flow(&flow_of_result(w.clone()).unwrap().unwrap().wire, now, std::iter::empty()).unwrap();
    }
    records
}

fn gzipped_len(bytes: &[u8]) -> usize {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).expect("writing to a Vec");
    gz.finish().expect("writing to a Vec").len()
}
