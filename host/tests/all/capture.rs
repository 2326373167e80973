//! The transform author's loop against real traffic: `flowgate capture` from the simulator (real mTLS gRPC) and
//! from a running gateway's admin port, `flowgate replay` through a real chain, `flowgate test` on the capture;
//! `flowgate tap` with its filter, rate limit and the redaction rule.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowgate::config::RawEntry;
use flowgate::proto::Flow;
use flowgate::sim::{SimConfig, Simulator};
use prost::Message as _;

use crate::support::{self, Gateway};
use crate::wasm::component;

/// The `redact` component and its config (pseudonymised names), as a transforms author lays them out.
pub fn redact_dir(dir: &Path) -> PathBuf {
    std::fs::copy(component("flowgate_transform_redact.wasm"), dir.join("redact.wasm")).unwrap();
    std::fs::write(
        dir.join("redact.yaml"),
        "config:\n  pseudonymize: source_name,dest_name\n  key: an-example-key-of-32-bytes-000000\n",
    )
    .unwrap();
    dir.join("redact.wasm")
}

/// Runs `flowgate` (linked into `dir`: see [`support::flowgate_binary`]) in `dir`; it must succeed.
fn flowgate(args: &[&str], dir: &Path) -> Output {
    let bin = dir.join("bin/flowgate");
    if !bin.exists() {
        support::flowgate_binary(dir);
    }
    let out = Command::new(bin).args(args).current_dir(dir).env_clear().output().unwrap();
    assert!(
        out.status.success(),
        "flowgate {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Every flow the simulator can have sent from `first` to now, encoded as it encodes them.
fn sent_bytes(sim: &Simulator, first: i64) -> HashSet<Vec<u8>> {
    let flows = sim.flow_gen();
    (first..=sim.newest_bucket() + 15).step_by(15).flat_map(|b| flows.bucket(b)).map(|f| f.encode_to_vec()).collect()
}

pub fn config_yaml(sim: &Simulator, dir: &Path) -> PathBuf {
    let path = dir.join("flowgate.yaml");
    std::fs::write(
        &path,
        format!(
            "goldmane:\n  host: {}\n  ca_cert_path: {}\n  client_cert_path: {}\n  client_key_path: {}\n  start_time_gte: -600\n",
            sim.target(),
            sim.certs.ca_cert.display(),
            sim.certs.client_cert.display(),
            sim.certs.client_key.display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_then_replay_then_test_round_trips_the_flows_byte_for_byte_through_a_real_chain() {
    let (sim, _pki) = support::simulator(SimConfig { flows_per_bucket: 40, ..SimConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let config = config_yaml(&sim, &d);
    redact_dir(&d);
    let first = sim.newest_bucket() - 600;
    let run = |args: Vec<String>| {
        let d = d.clone();
        tokio::task::spawn_blocking(move || flowgate(&args.iter().map(String::as_str).collect::<Vec<_>>(), &d))
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // capture: the settings `run` reads (the YAML file), bounded by count.
    run(s(&["capture", "--config", config.to_str().unwrap(), "--output", "flows.cap", "--count", "150"]))
        .await
        .unwrap();
    let file = Bytes::from(std::fs::read(d.join("flows.cap")).unwrap());
    let (header, records) = flowgate::capture::read(&file).unwrap();
    assert_eq!(header.version, flowgate::capture::VERSION);
    assert!(header.source.contains(&sim.target().split(':').next_back().unwrap().to_string()), "{header:?}");
    assert_eq!(records.len(), 150);
    let sent = sent_bytes(&sim, first);
    let distinct: HashSet<&[u8]> = records.iter().map(|r| r.flow.as_ref()).collect();
    assert_eq!(distinct.len(), 150, "a flow was captured twice");
    for r in &records {
        assert!(sent.contains(r.flow.as_ref()), "a captured flow differs from every flow the simulator sent");
    }
    assert!(records.windows(2).all(|w| w[0].offset_ms <= w[1].offset_ms));

    // test on the capture without a chain: the old exporter's records of exactly those flows.
    let plain = run(s(&["test", "--input", "flows.cap"])).await.unwrap();
    let bodies: Vec<serde_json::Value> = String::from_utf8(plain.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["body"].clone())
        .collect();
    let expected: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::from_str(&flowgate::render::flow_json_string(&Flow::decode(r.flow.clone()).unwrap())).unwrap()
        })
        .collect();
    assert_eq!(bodies, expected);

    // replay through redact: records on stdout, as `flowgate test` prints them; names pseudonymised.
    let replayed = run(s(&["replay", "--input", "flows.cap", "--transform", "redact.wasm"])).await.unwrap();
    let text = String::from_utf8(replayed.stdout).unwrap();
    assert_eq!(text.lines().count(), 150);
    for (line, r) in text.lines().zip(&records) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let original = Flow::decode(r.flow.clone()).unwrap().key.unwrap().source_name;
        let name = v["body"]["Key"]["sourceName"].as_str().unwrap();
        assert!(name.starts_with("anon-") && name != original, "{name} (was {original})");
    }
    std::fs::write(d.join("expected.jsonl"), &text).unwrap();

    // test --expected against what replay printed: the same chain, the same records.
    let ok = run(s(&["test", "--input", "flows.cap", "--transform", "redact.wasm", "--expected", "expected.jsonl"]))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok: 150 records as expected\n");

    // The summary counts what went through each transform.
    let summary = run(s(&["replay", "--input", "flows.cap", "--transform", "redact.wasm", "--summary"])).await.unwrap();
    let summary = String::from_utf8(summary.stdout).unwrap();
    let row: Vec<&str> = summary.lines().find(|l| l.starts_with("redact ")).unwrap().split_whitespace().collect();
    assert_eq!(row[1..5], ["150", "150", "0", "0"], "{summary}");

    // Bounded by bytes and by time as well as by count.
    run(s(&["capture", "--config", config.to_str().unwrap(), "--output", "bytes.cap", "--max-bytes", "20000"]))
        .await
        .unwrap();
    let file = Bytes::from(std::fs::read(d.join("bytes.cap")).unwrap());
    let (_, by_bytes) = flowgate::capture::read(&file).unwrap();
    let biggest = records.iter().map(|r| r.flow.len()).max().unwrap() as u64 + 16;
    assert!((20_000..20_000 + biggest).contains(&(file.len() as u64)), "{} bytes", file.len());
    assert!(by_bytes.iter().all(|r| sent.contains(r.flow.as_ref())));
    let started = Instant::now();
    run(s(&["capture", "--config", config.to_str().unwrap(), "--output", "timed.cap", "--duration-secs", "2"]))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2));
    let (_, timed) = load(&d.join("timed.cap"));
    assert!(timed.len() >= 150, "the history alone holds more than {} flows", timed.len());
}

fn load(path: &Path) -> (flowgate::capture::Header, Vec<flowgate::capture::Record>) {
    flowgate::capture::read(&Bytes::from(std::fs::read(path).unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_at_recorded_pace_waits_for_each_flow_and_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let flows = flowgate::sim::FlowGen { seed: 5, keys: 3 }.bucket(1_800_000_000);
    let header =
        flowgate::capture::Header { version: 1, started_unix_ms: 1, source: "test".into(), writer: "test".into() };
    let mut w = flowgate::capture::Writer::new(Vec::new(), &header).unwrap();
    for (f, at) in flows.iter().zip([0, 600, 1_200]) {
        w.write(at, &f.encode_to_vec()).unwrap();
    }
    std::fs::write(d.join("paced.cap"), w.finish().unwrap()).unwrap();
    support::flowgate_binary(&d);
    let run = |args: &'static [&'static str]| {
        let d = d.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(d.join("bin/flowgate")).args(args).current_dir(&d).env_clear().output().unwrap()
        })
    };
    let started = Instant::now();
    let out = run(&["replay", "--input", "paced.cap", "--pace", "recorded"]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() >= Duration::from_millis(1_200), "{:?}", started.elapsed());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);

    let out = run(&["replay", "--input", "missing.cap"]).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot read the capture missing.cap"), "{err}");
    let mut damaged = std::fs::read(d.join("paced.cap")).unwrap();
    damaged.truncate(damaged.len() - 3);
    std::fs::write(d.join("damaged.cap"), damaged).unwrap();
    for args in [&["replay", "--input", "damaged.cap"][..], &["test", "--input", "damaged.cap"][..]] {
        let out = run(args).await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("damaged.cap") && err.contains("record 3"), "{args:?}: {err}");
    }
}

/// A gateway with the tap enabled (its `before_redaction` as given) and the chain redact -> semconv.
pub async fn tapped_gateway(sim: &Simulator, dir: &Path, enabled: bool, before_redaction: bool) -> Gateway {
    let mut raw = support::raw_config(sim, "http://127.0.0.1:9");
    raw.admin.tap.enabled = Some(enabled);
    raw.admin.tap.before_redaction = Some(before_redaction);
    raw.admin.tap.max_per_second = Some(1_000);
    let redact = redact_dir(dir);
    let entry = |name: &str, path: PathBuf, config: &[(&str, &str)]| RawEntry {
        name: Some(name.into()),
        path: Some(path),
        config: config.iter().map(|(k, v)| (k.to_string(), serde_norway::Value::String(v.to_string()))).collect(),
        ..RawEntry::default()
    };
    raw.transforms.chain = Some(vec![
        entry(
            "redact",
            redact,
            &[("pseudonymize", "source_name,dest_name"), ("key", "an-example-key-of-32-bytes-000000")],
        ),
        entry("semconv", component("flowgate_transform_semconv.wasm"), &[]),
    ]);
    raw.transforms.workers = Some(1);
    Gateway::start(support::resolve(raw)).await
}

/// The lines of a tap for `secs` seconds: (records, skipped counts).
async fn tap_lines(gw: &Gateway, query: &str, secs: f64) -> (Vec<serde_json::Value>, u64, Duration) {
    let mut r = reqwest::get(format!("http://{}/tap?{query}", gw.admin)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let started = Instant::now();
    let (mut text, mut records, mut skipped) = (Vec::new(), Vec::new(), 0);
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(until, r.chunk()).await {
        text.extend_from_slice(&chunk);
    }
    let elapsed = started.elapsed();
    for line in String::from_utf8(text).unwrap().lines() {
        match line.split_once(' ') {
            Some(("record", json)) => records.push(serde_json::from_str(json).unwrap()),
            Some(("skipped", n)) => skipped += n.parse::<u64>().unwrap(),
            _ => panic!("unexpected tap line {line:?}"),
        }
    }
    (records, skipped, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_after_a_redaction_never_shows_what_it_removed_and_before_it_needs_its_own_setting() {
    let (sim, _pki) =
        support::simulator(SimConfig { flows_per_bucket: 30, time_scale: 15.0, ..SimConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = tapped_gateway(&sim, dir.path(), true, false).await;

    // Before the redaction (the source, i.e. /capture too): refused, naming the setting.
    for path in ["/tap?after=source", "/capture?count=1"] {
        let (status, body) = gw.admin_get(path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("admin.tap.before_redaction") && body.contains("\"redact\""), "{body}");
    }
    let (status, body) = gw.admin_get("/tap?after=nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("source, redact, semconv, end"), "{body}");
    let (status, body) = gw.admin_get("/tap?after=redact&filter=action%20%3D%3D").await;
    assert_eq!((status, body.contains("expected a value")), (400, true), "{body}");

    // After it: names pseudonymised in every record, none of the names the simulator sent.
    let originals: HashSet<String> = (sim.newest_bucket() - 900..=sim.newest_bucket() + 60)
        .step_by(15)
        .flat_map(|b| sim.flow_gen().bucket(b))
        .flat_map(|f| {
            let k = f.key.unwrap();
            [k.source_name, k.dest_name]
        })
        .collect();
    // With no `after`, the tap is at the end of the chain (after semconv here): a plain tap works on a chain that
    // redacts.
    for (after, query) in [("redact", "after=redact&"), ("semconv", "after=semconv&"), ("the end", "")] {
        let (records, _, _) = tap_lines(&gw, &format!("{query}rate=1000"), 2.5).await;
        assert!(!records.is_empty(), "no record tapped after {after}");
        // redact's output is the old exporter's body; semconv's puts the names in attributes.
        let names = |r: &serde_json::Value| match after {
            "redact" => [r["body"]["Key"]["sourceName"].clone(), r["body"]["Key"]["destName"].clone()],
            _ => [r["attributes"]["source.address"].clone(), r["attributes"]["destination.address"].clone()],
        };
        for r in &records {
            for name in names(r) {
                let name = name.as_str().unwrap_or_else(|| panic!("{after}: no name in {r}"));
                assert!(name.starts_with("anon-") && !originals.contains(name), "{after}: {name} shown");
            }
        }
    }
    gw.shutdown().await.unwrap();

    // With its own setting, the source may be tapped: the real names show.
    let mut gw = tapped_gateway(&sim, dir.path(), true, true).await;
    let (records, _, _) = tap_lines(&gw, "after=source", 2.5).await;
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| originals.contains(r["body"]["Key"]["sourceName"].as_str().unwrap())));
    gw.shutdown().await.unwrap();

    // Off unless enabled.
    let mut gw = tapped_gateway(&sim, dir.path(), false, true).await;
    let (status, body) = gw.admin_get("/tap?after=semconv").await;
    assert_eq!(status, 403);
    assert!(body.contains("admin.tap.enabled"), "{body}");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_keeps_to_its_rate_and_its_filter() {
    // About 200 flows a second.
    let (sim, _pki) =
        support::simulator(SimConfig { flows_per_bucket: 200, time_scale: 15.0, ..SimConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = tapped_gateway(&sim, dir.path(), true, false).await;

    let rate = 5;
    let (records, skipped, elapsed) = tap_lines(&gw, &format!("after=semconv&rate={rate}"), 3.0).await;
    // A burst of `rate`, then `rate` a second.
    let most = rate as f64 * (1.0 + elapsed.as_secs_f64());
    assert!(
        !records.is_empty() && records.len() as f64 <= most,
        "{} records in {elapsed:?} at {rate}/s",
        records.len()
    );
    assert!(skipped > 0, "a tap at {rate}/s over ~200 flows/s skipped nothing");

    // Unfiltered, both actions pass; filtered, only the one asked for. Through the real `flowgate tap`.
    let (all, _, _) = tap_lines(&gw, "after=semconv&rate=1000", 2.0).await;
    let actions: HashSet<&str> = all.iter().map(|r| r["attributes"]["calico.action"].as_str().unwrap()).collect();
    assert!(actions.contains("deny") && actions.contains("allow"), "{actions:?}");
    let admin = gw.admin.to_string();
    let bin = support::flowgate_binary(dir.path());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args([
                "tap",
                "--admin",
                &admin,
                "--after",
                "semconv",
                "--filter",
                "calico.action == deny and not destination.port == 0",
                "--count",
                "20",
            ])
            .env_clear()
            .output()
            .unwrap()
    });
    let out = support::within(Duration::from_secs(30), "flowgate tap --count 20", out).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|r| r["attributes"]["calico.action"] == "deny"), "{lines:?}");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_from_a_running_gateways_admin_port_holds_the_flows_as_goldmane_sent_them() {
    let (sim, _pki) =
        support::simulator(SimConfig { flows_per_bucket: 50, time_scale: 15.0, ..SimConfig::default() }).await;
    let mut raw = support::raw_config(&sim, "http://127.0.0.1:9");
    raw.admin.tap.enabled = Some(true);
    let mut gw = Gateway::start(support::resolve(raw)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let admin = gw.admin.to_string();
    let first = sim.newest_bucket();
    let out = tokio::task::spawn_blocking(move || {
        flowgate(&["capture", "--admin", &admin, "--output", "gw.cap", "--count", "60"], &d)
    });
    support::within(Duration::from_secs(30), "capture --admin", out).await.unwrap();
    let file = Bytes::from(std::fs::read(dir.path().join("gw.cap")).unwrap());
    let (header, records) = flowgate::capture::read(&file).unwrap();
    assert_eq!(header.source, "flowgate admin /capture");
    assert_eq!(records.len(), 60);
    let sent = sent_bytes(&sim, first - 15);
    assert!(records.iter().all(|r| sent.contains(r.flow.as_ref())), "a flow differs from what the simulator sent");
    gw.shutdown().await.unwrap();
}
