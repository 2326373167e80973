//! The WebAssembly host with real components built from `transforms/` and the deliberately broken
//! `host/tests/guests/chaos` (built by `make transforms`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate::pipeline::chain::{self, EntrySpec, FailurePolicy};
use flowgate::pipeline::{DeadLetter, Worker};
use flowgate::proto::Flow;
use flowgate::sim::FlowGen;
use flowgate::telemetry::Metrics;
use flowgate::telemetry::TransformError;
use flowgate::wasm::{GuestFailure, Limits, LoadError, Outcome, Runtime, TrapKind};

/// A component built by `make transforms`.
pub fn component(file: &str) -> PathBuf {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/wasm32-wasip2/transform")).join(file);
    assert!(path.exists(), "{} is missing: run `make transforms` first", path.display());
    path
}

fn spec(name: &str, file: &str, config: &[(&str, &str)], policy: FailurePolicy) -> EntrySpec {
    EntrySpec {
        name: name.into(),
        path: component(file),
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        policy,
        limits: Limits { deadline: Duration::from_millis(100), memory_bytes: 32 << 20 },
    }
}

fn flows(n: usize) -> Vec<Flow> {
    FlowGen { seed: 21, keys: n }.bucket(1_764_970_845)
}

fn with_port(mut f: Flow, port: i64) -> Flow {
    f.key.as_mut().unwrap().dest_port = port;
    f
}

#[test]
fn bad_bytes_and_wrong_worlds_are_refused_with_clear_errors() {
    let rt = Runtime::new().unwrap();
    let err = rt.load("junk", b"this is not wasm").err().unwrap();
    assert!(matches!(err, LoadError::NotAComponent { .. }), "{err}");
    assert!(err.to_string().starts_with("junk: not a WebAssembly component"), "{err}");
    // A core module is WebAssembly but not a component.
    let core = wat::parse_str("(module (func (export \"process\")))").unwrap();
    assert!(matches!(rt.load("core", &core).err().unwrap(), LoadError::NotAComponent { .. }));
    // A WASI command is a component of another world.
    let bytes = std::fs::read(component("wrong-world.wasm")).unwrap();
    let err = rt.load("cli", &bytes).err().unwrap();
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");
    assert!(err.to_string().contains("flowgate:transform/transformer"), "{err}");
}

#[test]
fn init_failures_refuse_the_component() {
    let rt = Runtime::new().unwrap();
    let chaos = rt.load_file("chaos", &component("flowgate_test_guest_chaos.wasm")).unwrap();
    let limits = Limits { deadline: Duration::from_millis(100), memory_bytes: 32 << 20 };
    let cfg = |v: &str| vec![("init".to_string(), v.to_string())];
    match chaos.instantiate(&cfg("fail"), limits, None) {
        Err(GuestFailure::InitRefused { message, .. }) => assert_eq!(message, "chaos refuses this configuration"),
        other => panic!("{:?}", other.err()),
    }
    match chaos.instantiate(&cfg("trap"), limits, None) {
        Err(GuestFailure::Trap { kind: TrapKind::Trap, .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    let started = Instant::now();
    match chaos.instantiate(&cfg("loop"), limits, None) {
        Err(GuestFailure::Trap { kind: TrapKind::Deadline, .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "the deadline stopped an endless init");
}

#[test]
fn guests_cannot_read_host_files_open_sockets_or_see_the_environment() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "top secret").unwrap();
    let rt = Runtime::new().unwrap();
    let chaos = rt.load_file("chaos", &component("flowgate_test_guest_chaos.wasm")).unwrap();
    let metrics = Metrics::new();
    let config = vec![("read_file".to_string(), secret.path().display().to_string()), ("connect".to_string(), addr)];
    chaos.instantiate(&config, Limits::default(), Some(metrics.clone())).unwrap();
    assert_eq!(metrics.transform_counter_value("chaos", "sandbox_breach"), 0);
    assert_eq!(metrics.transform_counter_value("chaos", "sandbox_refused"), 2, "both attempts ran and failed");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "nothing connected to the host socket");
}

#[test]
fn one_trapping_flow_costs_only_itself() {
    let rt = Runtime::new().unwrap();
    for policy in [FailurePolicy::FailClosed, FailurePolicy::FailOpen] {
        let chain = chain::build(
            &rt,
            vec![spec("chaos", "flowgate_test_guest_chaos.wasm", &[("trap_on_port", "666")], policy)],
            1,
        )
        .unwrap();
        let metrics = Metrics::new();
        let mut worker = Worker::new(metrics.clone(), None);
        let mut batch = flows(256);
        batch[100] = with_port(batch[100].clone(), 666);
        let out = worker.run(&chain, batch.clone());
        match policy {
            FailurePolicy::FailClosed => {
                assert_eq!(out.len(), 255, "only the poisonous flow is dropped");
                assert_eq!(metrics.dropped_by_transform_count(false), 1, "a loss, not the transform's decision");
                assert_eq!(metrics.dropped_by_transform_count(true), 0);
                assert!(out.iter().all(|i| i.flow().key.as_ref().unwrap().dest_port != 666));
                assert!(
                    out.iter().all(|i| i.attributes.iter().any(|(k, _)| &**k == "chaos")),
                    "the others were processed"
                );
            }
            _ => {
                assert_eq!(out.len(), 256, "fail-open passes the poisonous flow on");
                let passed = out.iter().find(|i| i.flow().key.as_ref().unwrap().dest_port == 666).unwrap();
                assert!(passed.attributes.is_empty(), "unchanged by the transform that failed on it");
            }
        }
        assert_eq!(metrics.transform_failures_count("chaos", policy), 1);
        assert!(
            metrics.transform_errors_count("chaos", TransformError::Trap) >= 8,
            "bisection re-ran halves: log2(256) traps"
        );
        // The worker recovers: the next batch runs normally.
        assert_eq!(worker.run(&chain, flows(10)).len(), 10);
    }
}

#[test]
fn endless_loops_and_huge_allocations_are_bounded() {
    let rt = Runtime::new().unwrap();
    let chain = chain::build(
        &rt,
        vec![spec(
            "chaos",
            "flowgate_test_guest_chaos.wasm",
            &[("loop_on_port", "7"), ("alloc_on_port", "8")],
            FailurePolicy::FailClosed,
        )],
        1,
    )
    .unwrap();
    let metrics = Metrics::new();
    let mut worker = Worker::new(metrics.clone(), None);
    let mut batch = flows(20);
    batch[3] = with_port(batch[3].clone(), 7);
    batch[15] = with_port(batch[15].clone(), 8);
    let started = Instant::now();
    let out = worker.run(&chain, batch);
    assert_eq!(out.len(), 18);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(metrics.transform_errors_count("chaos", TransformError::Deadline) >= 1);
    assert!(
        metrics.transform_errors_count("chaos", TransformError::Memory) >= 1,
        "the 4 GiB allocation hit the memory cap"
    );
    assert_eq!(
        metrics.transform_errors_count("chaos", TransformError::Trap),
        0,
        "each failure is classified as what it was"
    );
}

#[test]
fn guest_errors_follow_the_policy_and_dead_letters_keep_the_original() {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("transform-dead-letter.jsonl");
    let chain = chain::build(
        &rt,
        vec![spec("chaos", "flowgate_test_guest_chaos.wasm", &[("error_on_port", "9")], FailurePolicy::DeadLetter)],
        1,
    )
    .unwrap();
    let metrics = Metrics::new();
    let mut worker = Worker::new(metrics.clone(), Some(Arc::new(DeadLetter::new(path.clone()))));
    let mut batch = flows(5);
    batch[2] = with_port(batch[2].clone(), 9);
    let out = worker.run(&chain, batch.clone());
    assert_eq!(out.len(), 4);
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["transform"], "chaos");
    assert_eq!(lines[0]["error"], "chaos cannot handle port 9");
    assert!(lines[0]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(lines[0]["flow"]["Key"]["destPort"], "9");
    assert_eq!(metrics.transform_errors_count("chaos", TransformError::GuestError), 1);
}

#[test]
fn a_transform_that_keeps_trapping_is_quarantined_and_its_policy_applies() {
    let rt = Runtime::new().unwrap();
    let chain = chain::build(
        &rt,
        vec![spec("chaos", "flowgate_test_guest_chaos.wasm", &[("trap_on_port", "1")], FailurePolicy::FailClosed)],
        1,
    )
    .unwrap();
    let metrics = Metrics::new();
    let mut worker = Worker::new(metrics.clone(), None);
    let poison = vec![with_port(flows(1).remove(0), 1)];
    for _ in 0..flowgate::pipeline::worker::QUARANTINE_TRAPS {
        assert!(worker.run(&chain, poison.clone()).is_empty());
    }
    assert_eq!(metrics.transform_errors_count("chaos", TransformError::QuarantineEntered), 1);
    let calls_before = metrics.transform_errors_count("chaos", TransformError::Trap);
    // While quarantined, good flows take the failure policy too (fail-closed: dropped), without a call.
    assert!(worker.run(&chain, flows(3)).is_empty());
    assert_eq!(metrics.transform_errors_count("chaos", TransformError::Trap), calls_before);
    assert!(metrics.transform_errors_count("chaos", TransformError::Quarantined) >= 1);
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(worker.run(&chain, flows(3)).len(), 3, "after the backoff it serves again");
}

/// Quarantine is one state per transform across workers: traps on two workers add up, and once quarantined,
/// neither calls it.
#[test]
fn traps_on_every_worker_add_up_to_one_quarantine_that_every_worker_honours() {
    let rt = Runtime::new().unwrap();
    let chain = chain::build(
        &rt,
        vec![spec("chaos", "flowgate_test_guest_chaos.wasm", &[("trap_on_port", "1")], FailurePolicy::FailOpen)],
        1,
    )
    .unwrap();
    let metrics = Metrics::new();
    let (mut a, mut b) = (Worker::new(metrics.clone(), None), Worker::new(metrics.clone(), None));
    let poison = vec![with_port(flows(1).remove(0), 1)];
    for n in 0..flowgate::pipeline::worker::QUARANTINE_TRAPS {
        let worker = if n % 2 == 0 { &mut a } else { &mut b };
        assert_eq!(worker.run(&chain, poison.clone()).len(), 1, "fail-open passes the flow on");
    }
    assert_eq!(metrics.transform_errors_count("chaos", TransformError::QuarantineEntered), 1);
    let traps = metrics.transform_errors_count("chaos", TransformError::Trap);
    assert_eq!(traps, flowgate::pipeline::worker::QUARANTINE_TRAPS as u64, "half on each worker, none alone enough");
    for worker in [&mut a, &mut b] {
        assert_eq!(worker.run(&chain, flows(3)).len(), 3);
    }
    assert_eq!(metrics.transform_errors_count("chaos", TransformError::Trap), traps, "no call while quarantined");
    assert_eq!(metrics.transform_errors_count("chaos", TransformError::Quarantined), 2, "one skipped call each");
    // The chain's health, which the rollback reads, counts every flow either worker gave it and every failure.
    let flows_given = flowgate::pipeline::worker::QUARANTINE_TRAPS as u64 + 6;
    assert_eq!(chain.entries[0].health.counts(), (flows_given, flows_given));
}

#[test]
fn unknown_enum_numbers_survive_the_chain() {
    let rt = Runtime::new().unwrap();
    let chain =
        chain::build(&rt, vec![spec("chaos", "flowgate_test_guest_chaos.wasm", &[], FailurePolicy::FailClosed)], 1)
            .unwrap();
    let mut worker = Worker::new(Metrics::new(), None);
    let mut f = flows(1).remove(0);
    f.key.as_mut().unwrap().action = 77;
    let out = worker.run(&chain, vec![f.clone()]);
    assert_eq!(out[0].flow(), &f);
    let body = flowgate::render::flow_json_string(out[0].flow());
    assert!(body.contains("\"action\":77"), "{body}");
    // And the outcome itself is an annotation: the flow did not cross back.
    let loaded = rt.load_file("chaos", &component("flowgate_test_guest_chaos.wasm")).unwrap();
    let mut inst = loaded.instantiate(&[], Limits::default(), None).unwrap();
    assert!(matches!(inst.process_flows(&[f]).unwrap()[0], Outcome::Annotate(_)));
}

#[test]
fn redact_enrich_semconv_shape_records_through_the_host() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    let rt = Runtime::new().unwrap();
    let chain = chain::build(
        &rt,
        vec![
            spec(
                "redact",
                "flowgate_transform_redact.wasm",
                &[
                    ("drop_labels", "pod-template-hash=*,controller-revision-hash=*"),
                    ("pseudonymize", "source_namespace"),
                    ("key", "a-secret-of-16-bytes"),
                ],
                FailurePolicy::FailClosed,
            ),
            spec(
                "enrich",
                "flowgate_transform_enrich.wasm",
                &[("attr.k8s.cluster.name", "prod"), ("owner.payments", "billing")],
                FailurePolicy::FailOpen,
            ),
            spec("semconv", "flowgate_transform_semconv.wasm", &[("body", "json")], FailurePolicy::FailOpen),
        ],
        1,
    )
    .unwrap();
    let mut worker = Worker::new(Metrics::new(), None);
    let input = flows(200);
    let items = worker.run(&chain, input.clone());
    assert_eq!(items.len(), 200);
    for (item, original) in items.into_iter().zip(&input) {
        let deny = original.key.as_ref().unwrap().action == flowgate::proto::Action::Deny as i32;
        let record = flowgate::pipeline::worker::record(item, 1, Some(&chain.provenance)).unwrap();
        let Some(Any::StringValue(body)) = record.body.as_ref().and_then(|b| b.value.clone()) else {
            panic!("string body")
        };
        assert!(
            !body.contains("pod-template-hash") && !body.contains("controller-revision-hash"),
            "labels redacted in the body: {body}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["Key"]["sourceNamespace"].as_str().unwrap().starts_with("anon-"),
            "pseudonymised in the body: {body}"
        );
        let attr = |k: &str| record.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()?.value);
        assert_eq!(attr("k8s.cluster.name"), Some(Any::StringValue("prod".into())));
        assert!(
            matches!(attr("flowgate.bytes.total"), Some(Any::IntValue(n)) if n == original.bytes_in + original.bytes_out)
        );
        assert!(
            matches!(attr("k8s.source.namespace.name"), Some(Any::StringValue(s)) if s.starts_with("anon-")),
            "semconv sees the redacted flow"
        );
        let chain_attr = attr(flowgate::pipeline::PROVENANCE_ATTRIBUTE);
        assert!(
            matches!(chain_attr, Some(Any::StringValue(s)) if s.starts_with("redact@sha256:") && s.contains(",enrich@sha256:") && s.contains(",semconv@sha256:"))
        );
        assert_eq!(
            (record.severity_number, record.severity_text.as_str()),
            if deny { (13, "WARN") } else { (9, "INFO") }
        );
    }
}

#[test]
fn flowgate_test_runs_a_chain_over_loki_bodies_and_diffs_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let redact = dir.path().join("redact.wasm");
    std::fs::copy(component("flowgate_transform_redact.wasm"), &redact).unwrap();
    std::fs::write(
        dir.path().join("redact.yaml"),
        "config:\n  drop_labels: \"pod-template-hash=*\"\n  strip_policy_names: true\n",
    )
    .unwrap();
    let input = dir.path().join("flows.jsonl");
    let bodies: Vec<String> = flows(5).iter().map(flowgate::render::flow_json_string).collect();
    std::fs::write(&input, bodies.join("\n")).unwrap();
    let cfg = flowgate::config::transforms_only(None, None, std::slice::from_ref(&redact)).unwrap();

    let report = flowgate::tools::test_chain(&cfg, &input, None).unwrap();
    assert_eq!(report.outputs.len(), 5);
    for o in &report.outputs {
        assert_eq!(o["severity"], "INFO");
        let body = o["body"].to_string();
        assert!(!body.contains("pod-template-hash"), "{body}");
        assert!(o["body"]["Key"]["policies"]["enforcedPolicies"][0].get("name").is_none(), "policy names stripped");
    }
    // Expected, written from the input by the transform's documented effect (not from the tool's output): labels
    // matching the glob gone, policy names (and their triggers' names) empty, hence absent; INFO; no attribute.
    let by_hand: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| {
            let mut body: serde_json::Value = serde_json::from_str(b).unwrap();
            for labels in ["sourceLabels", "destLabels"] {
                if let Some(l) = body[labels].as_array_mut() {
                    l.retain(|l| !l.as_str().unwrap().starts_with("pod-template-hash="));
                }
            }
            for list in ["enforcedPolicies", "pendingPolicies"] {
                for hit in body["Key"]["policies"][list].as_array_mut().into_iter().flatten() {
                    hit.as_object_mut().unwrap().remove("name");
                    if let Some(t) = hit.get_mut("trigger").and_then(|t| t.as_object_mut()) {
                        t.remove("name");
                    }
                }
            }
            serde_json::json!({
                "severity": "INFO",
                "attributes": {},
                "body": body,
            })
        })
        .collect();
    assert!(bodies.iter().any(|b| b.contains("pod-template-hash=")), "the input has labels to drop");
    let expected = dir.path().join("expected.jsonl");
    let lines: Vec<String> = by_hand.iter().map(|o| o.to_string()).collect();
    std::fs::write(&expected, lines.join("\n")).unwrap();
    let diff = flowgate::tools::test_chain(&cfg, &input, Some(&expected)).unwrap().diff;
    assert!(diff.is_empty(), "{diff}");
    let mut changed = by_hand.clone();
    changed[2]["body"]["bytesIn"] = serde_json::json!("1");
    std::fs::write(&expected, changed.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("\n")).unwrap();
    let diff = flowgate::tools::test_chain(&cfg, &input, Some(&expected)).unwrap().diff;
    assert!(diff.starts_with("record 3:\n  body.bytesIn:\n    - expected \"1\""), "{diff}");

    let check = flowgate::tools::check_chain(&cfg).unwrap();
    assert!(
        check.contains("1 in the chain, all compiled, initialised and self-tested") && check.contains("redact@sha256:"),
        "{check}"
    );
}

/// A rebuilt chain takes the compiled code of a component whose bytes did not change, and initialises it with its
/// new configuration; a component from another engine is compiled again.
#[test]
fn a_rebuild_takes_compiled_code_only_for_the_same_bytes_on_the_same_engine() {
    let rt = Runtime::new().unwrap();
    let filter =
        |action| spec("filter", "flowgate_transform_filter.wasm", &[("actions", action)], FailurePolicy::FailClosed);
    let kept_actions = |chain: &chain::Chain| {
        let mut w = Worker::new(Metrics::new(), None);
        let out: Vec<Flow> = w.run(chain, flows(200)).into_iter().map(|i| i.into_flow()).collect();
        assert!(!out.is_empty());
        out.iter().map(|f| f.key.as_ref().unwrap().action).collect::<std::collections::BTreeSet<_>>()
    };
    let (first, compiled) = chain::build_reusing(&rt, vec![filter("Deny")], 1, &chain::Chain::default()).unwrap();
    assert_eq!(compiled, 1);
    let semconv = spec("semconv", "flowgate_transform_semconv.wasm", &[], FailurePolicy::FailClosed);
    let (second, compiled) = chain::build_reusing(&rt, vec![filter("Allow"), semconv], 2, &first).unwrap();
    assert_eq!(compiled, 1, "only the new component is compiled");
    assert_eq!(second.entries[0].component.digest, first.entries[0].component.digest);
    assert_eq!(kept_actions(&first), [flowgate::proto::Action::Deny as i32].into());
    assert_eq!(kept_actions(&second), [flowgate::proto::Action::Allow as i32].into(), "the new configuration holds");
    // Compiled code belongs to its engine: another runtime compiles the same bytes, and its chain runs.
    let other = Runtime::new().unwrap();
    let (third, compiled) = chain::build_reusing(&other, vec![filter("Deny")], 1, &first).unwrap();
    assert_eq!(compiled, 1);
    assert_eq!(kept_actions(&third), [flowgate::proto::Action::Deny as i32].into());
}

/// The same filter written in Python (componentize-py, `transforms/python-filter`), JavaScript
/// (componentize-js, `transforms/js-filter`), C (wit-bindgen c, `transforms/c-filter`) and Go (mainline Go,
/// `transforms/go-filter`) behaves as the Rust one.
#[test]
fn the_python_javascript_c_and_go_filters_agree_with_the_rust_filter() {
    let rt = Runtime::new().unwrap();
    let config = [("actions", "Deny"), ("drop_namespaces", "kube-*")];
    let input = flows(400);
    let mut kept = Vec::new();
    for (name, file) in [
        ("rust", "flowgate_transform_filter.wasm"),
        ("python", "python_filter.wasm"),
        ("js", "js_filter.wasm"),
        ("c", "c_filter.wasm"),
        ("go", "go_filter.wasm"),
    ] {
        let mut s = spec(name, file, &config, FailurePolicy::FailClosed);
        // An interpreter inside (CPython, SpiderMonkey): more memory, and more time for the first batch.
        s.limits = Limits { deadline: Duration::from_secs(5), memory_bytes: 256 << 20 };
        let chain = chain::build(&rt, vec![s], 1).unwrap();
        let metrics = Metrics::new();
        let mut w = Worker::new(metrics.clone(), None);
        let out: Vec<Flow> = w.run(&chain, input.clone()).into_iter().map(|i| i.into_flow()).collect();
        // A filter's drops are its decision: counted as intentional, never as losses.
        assert_eq!(metrics.dropped_by_transform_count(true), (input.len() - out.len()) as u64, "{name}");
        assert_eq!(metrics.dropped_by_transform_count(false), 0, "{name}");
        kept.push(out);
    }
    assert!(!kept[0].is_empty() && kept[0].len() < 400);
    assert!(kept[0].iter().all(|f| f.key.as_ref().unwrap().action == flowgate::proto::Action::Deny as i32));
    assert_eq!(kept[0], kept[1], "Python keeps exactly the flows Rust keeps");
    assert_eq!(kept[0], kept[2], "JavaScript keeps exactly the flows Rust keeps");
    assert_eq!(kept[0], kept[3], "C keeps exactly the flows Rust keeps");
    assert_eq!(kept[0], kept[4], "Go keeps exactly the flows Rust keeps");
}

#[test]
fn gzipped_components_and_yaml_beside_them_are_read_from_the_directory() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&std::fs::read(component("flowgate_transform_filter.wasm")).unwrap()).unwrap();
    std::fs::write(dir.path().join("20-filter.wasm.gz"), gz.finish().unwrap()).unwrap();
    std::fs::copy(component("flowgate_transform_enrich.wasm"), dir.path().join("10-enrich.wasm")).unwrap();
    std::fs::write(dir.path().join("20-filter.yaml"), "config:\n  actions: [Deny]\nfailure_policy: fail-open\n")
        .unwrap();
    std::fs::write(dir.path().join("..data"), "kubelet bookkeeping, skipped").unwrap();
    let specs = flowgate::reload::scan_dir(dir.path()).unwrap();
    assert_eq!(
        specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec!["10-enrich", "20-filter"],
        "lexical order"
    );
    assert_eq!(specs[1].config, vec![("actions".to_string(), "Deny".to_string())]);
    assert_eq!(specs[1].policy, FailurePolicy::FailOpen);
    let chain = chain::build(&Runtime::new().unwrap(), specs, 1).unwrap();
    let out = Worker::new(Metrics::new(), None).run(&chain, flows(100));
    assert!(
        !out.is_empty()
            && out.iter().all(|i| i.flow().key.as_ref().unwrap().action == flowgate::proto::Action::Deny as i32)
    );
    assert!(out.iter().all(|i| i.attributes.iter().any(|(k, _)| &**k == "flowgate.bytes.total")), "enrich ran first");
}
