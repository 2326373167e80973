//! The fault-injection suite: each scenario breaks something for real (on loopback), then counts what the
//! simulator generated against what the OTLP receiver got, after dedupe by (flow key, bucket), and fails on any
//! flow missing or (where the gateway can know it) duplicated. Each prints a `fault:` line with its counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flowgate::config::env::{ENV_FLOWGATE_STATE_DIR, ENV_OTEL_EXPORTER_OTLP_HEADERS};
use flowgate::config::{Fsync, RawEntry, RawPersistentQueue, WhenFull};
use flowgate::receiver::{Receiver, Reply, accept_all};
use flowgate::sim::{SimCerts, SimConfig, Simulator};
use flowgate::tls;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use tokio::net::TcpListener;

use crate::support::*;
use crate::wasm::component;

const WAIT: Duration = Duration::from_secs(90);

fn sim_config(flows_per_bucket: usize, seed: u64) -> SimConfig {
    SimConfig { flows_per_bucket, time_scale: 30.0, seed, ..SimConfig::default() }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Binds a port a server just released (its task may still be shutting down).
async fn bind_again(port: u16) -> TcpListener {
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("port {port} still busy after 5 s");
}

fn persistent(dir: &Path) -> Option<RawPersistentQueue> {
    Some(RawPersistentQueue {
        dir: Some(dir.to_path_buf()),
        max_bytes: Some(64 << 20),
        fsync: Some(Fsync::Always),
        when_full: Some(WhenFull::Block),
    })
}

/// Bodies deduplicated by (key, bucket); a duplicate must be the same body. Returns (unique, duplicates).
fn dedupe(bodies: &[String]) -> (Vec<String>, usize) {
    let mut seen: HashMap<(String, i64), &String> = HashMap::new();
    let mut dups = 0;
    for b in bodies {
        match seen.get(&identity(b)) {
            Some(first) => {
                assert_eq!(*first, b, "a flow arrived twice with different bodies");
                dups += 1;
            }
            None => {
                seen.insert(identity(b), b);
            }
        }
    }
    (seen.into_values().cloned().collect(), dups)
}

/// Asserts none is missing (every bucket of `range` whole, the last a prefix) after dedupe; prints and returns the
/// counts.
fn assert_nothing_missing(scenario: &str, sim: &Simulator, bodies: &[String], range: (i64, i64)) -> (usize, usize) {
    let (unique, dups) = dedupe(bodies);
    let (buckets, flows) = assert_exactly_once(sim, &unique, range.0, range.1);
    println!(
        "fault: {scenario}: {flows} flows in {buckets} buckets, none missing; {dups} duplicates at the receiver ({} received)",
        bodies.len()
    );
    (flows, dups)
}

/// 1. The endpoint refuses connections for a long stretch (3 simulated minutes) under steady load, then comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_1_endpoint_down_for_a_long_stretch_then_back() {
    let (sim, dir) = simulator(sim_config(200, 1)).await;
    let port = free_port();
    let mut raw = raw_config(&sim, &format!("http://127.0.0.1:{port}"));
    raw.queue.persistent = persistent(&dir.path().join("queue"));
    let mut gw = Gateway::start(resolve(raw)).await;
    // 12 buckets (3 simulated minutes) arrive while nothing listens on the endpoint.
    wait_until(WAIT, "12 buckets queued while the endpoint is down", || {
        gw.metrics.flows_received.get() >= 2_400 && gw.metrics.retries_count("connect") > 0
    })
    .await;
    assert_eq!(gw.metrics.flows_exported.get(), 0);
    let rx = Receiver::start(TcpListener::bind(("127.0.0.1", port)).await.unwrap(), accept_all(), None).unwrap();
    wait_until(WAIT, "everything delivered", || settled(&sim, &gw) && rx.body_count() >= 3_000).await;
    gw.shutdown().await.unwrap();
    let (_, dups) =
        assert_nothing_missing("endpoint down 3 min", &sim, &rx.bodies(), expected_buckets(&sim, &sim, &gw.metrics));
    assert_eq!(dups, 0);
}

/// 2. 429 and 503 with `Retry-After`, 413, slow answers and connections reset mid-request, all mixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_2_throttling_too_large_slow_and_reset_requests() {
    let (sim, _dir) = simulator(sim_config(300, 2)).await;
    let rx = receiver(Arc::new(|n, records| match n % 10 {
        0 => Reply::Status { code: 429, retry_after: Some("1".into()) },
        1 => Reply::Status { code: 503, retry_after: Some("0".into()) },
        2 if records > 40 => Reply::Status { code: 413, retry_after: None },
        3 => Reply::AcceptAfter(Duration::from_millis(300)),
        4 => Reply::Reset,
        5 => Reply::Status { code: 502, retry_after: None },
        _ => Reply::Accept { rejected: 0 },
    }))
    .await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.batch.max_records = Some(100);
    let mut gw = Gateway::start(resolve(raw)).await;
    // Under steady load some batch always waits out a Retry-After: stop, and let the shutdown drain.
    wait_until(WAIT, "five buckets through a flaky endpoint", || rx.body_count() >= 1_500).await;
    gw.shutdown().await.unwrap();
    let m = &gw.metrics;
    for status in ["429", "503", "413", "502"] {
        assert!(m.retries_count(status) > 0, "{status} was exercised");
    }
    assert_eq!(m.flows_exported.get(), m.flows_received.get(), "the shutdown drained everything");
    let resets = m.retries_count("io") + m.retries_count("connect");
    assert!(resets > 0, "resets were exercised");
    let range = expected_buckets(&sim, &sim, &gw.metrics);
    let (_, dups) = assert_nothing_missing("429/503/413/slow/reset", &sim, &rx.bodies(), range);
    assert_eq!(dups, 0, "nothing the endpoint acknowledged was sent again");
}

/// The real binary as a child process, its log on disk.
struct Child {
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    fn start(config: &Path, env: &[(&str, &str)], log: PathBuf) -> Child {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_flowgate"))
            .args(["run", "--config"])
            .arg(config)
            .env_clear()
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Child { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then its exit status (within 40 s).
    async fn sigterm(&mut self) -> std::process::ExitStatus {
        std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        within(Duration::from_secs(40), "exit after SIGTERM", async {
            loop {
                if let Some(s) = self.child.try_wait().unwrap() {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }
}

/// The YAML file the real binary runs with in faults 3 and 10: the simulator, the receiver, fast retries, two
/// requests in flight, the admin port; `extra` adds sections.
fn binary_config(dir: &Path, sim: &Simulator, rx: &Receiver, admin: u16, extra: &str) -> PathBuf {
    let config = dir.join("flowgate.yaml");
    std::fs::write(
        &config,
        format!(
            "goldmane:\n  host: {host}\n  ca_cert_path: {ca}\n  client_cert_path: {cert}\n  client_key_path: {key}\n  reconnect_initial_ms: 100\n\
             otlp:\n  endpoint: {ep}/v1/logs\n  retry_initial_ms: 50\n  max_in_flight: 2\n\
             batch:\n  delay_ms: 100\n\
             {extra}admin:\n  listen: 127.0.0.1:{admin}\n",
            host = sim.target(),
            ca = sim.certs.ca_cert.display(),
            cert = sim.certs.client_cert.display(),
            key = sim.certs.client_key.display(),
            ep = rx.base_url(),
        ),
    )
    .unwrap();
    config
}

/// SIGTERMs the restarted binary (it must exit 0), then asserts nothing is missing from the first bucket streamed
/// to the newest received, which must reach the bucket before the newest emitted at SIGTERM: a bucket takes ~0.1 s
/// to go through and the next comes 1 s later, so that one was read whole (the child's own counters die with it,
/// so this is the bound). Returns (flows, duplicates).
async fn sigterm_then_nothing_missing(
    child: &mut Child,
    scenario: &str,
    sim: &Simulator,
    rx: &Receiver,
) -> (usize, usize) {
    let read_before_sigterm = sim.newest_bucket() - 15;
    let status = child.sigterm().await;
    assert!(status.success(), "SIGTERM exits 0: {status:?}\n{}", child.log());
    let newest_received = rx.bodies().iter().map(|b| identity(b).1).max().unwrap_or(i64::MIN);
    assert!(
        newest_received >= read_before_sigterm,
        "bucket {read_before_sigterm} was read before SIGTERM but is missing"
    );
    let range = (sim.first_buckets()[0], newest_received);
    assert_nothing_missing(scenario, sim, &rx.bodies(), range)
}

async fn scrape(port: u16, metric: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?.text().await.ok()?;
    samples(&text, metric).get(&Labels::new()).copied()
}

/// 3. SIGKILL in the middle of a burst with the persistent queue on, then a restart: what was queued is sent,
/// the stream resumes where the queue ends. Also: the logs of both runs carry no secret and no flow contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_3_sigkill_mid_burst_with_the_persistent_queue_then_restart() {
    let cfg = SimConfig { flows_per_bucket: 3_000, time_scale: 15.0, seed: 3, ..SimConfig::default() };
    let (sim, dir) = simulator(cfg).await;
    let rx = receiver(Arc::new(|_, _| Reply::AcceptAfter(Duration::from_millis(30)))).await;
    let admin = free_port();
    let queue = format!("queue:\n  persistent:\n    dir: {}\n", dir.path().join("queue").display());
    let config = binary_config(dir.path(), &sim, &rx, admin, &queue);
    let secret = "s3cret-t0ken-value";
    let env = [(ENV_OTEL_EXPORTER_OTLP_HEADERS, &*format!("authorization=Bearer {secret}")), ("RUST_LOG", "debug")];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, *v)).collect();

    let mut first = Child::start(&config, &env, dir.path().join("first.log"));
    let started = std::time::Instant::now();
    while rx.body_count() < 1_500 {
        assert!(started.elapsed() < WAIT, "the first burst never got half exported:\n{}", first.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let at_kill = rx.body_count();
    // Down for two buckets' worth of simulated time.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut second = Child::start(&config, &env, dir.path().join("second.log"));
    wait_until(WAIT, "three more buckets exported", || rx.body_count() >= at_kill + 9_000).await;
    let replayed = scrape(admin, "flowgate_queue_replayed_records_total").await.unwrap_or(0.0);
    let (flows, dups) = sigterm_then_nothing_missing(&mut second, "SIGKILL mid-burst + restart", &sim, &rx).await;
    println!("fault: SIGKILL: {at_kill} received before the kill, {replayed} records replayed from disk");
    assert!(flows >= 9_000);
    // Known to the gateway and removed: flows it had queued (the cursor names them). Unknowable: batches the
    // endpoint took but never acknowledged before the kill (replayed from disk), and at most one batch queued
    // between its disk write and the cursor's.
    assert!(dups as f64 <= replayed + 512.0, "{dups} duplicates, {replayed} replayed");
    let logs = first.log() + &second.log();
    assert!(logs.contains("resuming the Goldmane stream where the last run"), "{logs}");
    assert!(!logs.contains(secret), "a header secret reached the logs");
    // Every distinctive string of a flow: workload and service names, labels, policy names (namespaces are
    // common words, such as `default`, and are left out), and the body's field names.
    let mut fields = std::collections::BTreeSet::new();
    for f in sim.flow_gen().bucket(0).iter().take(200) {
        let k = f.key.as_ref().unwrap();
        let trace = k.policies.as_ref().unwrap();
        let policies = trace.enforced_policies.iter().chain(&trace.pending_policies).map(|h| &h.name);
        fields.extend(
            [&k.source_name, &k.dest_name, &k.dest_service_name]
                .into_iter()
                .chain(&f.source_labels)
                .chain(&f.dest_labels)
                .chain(policies)
                .filter(|s| s.len() > 3)
                .cloned(),
        );
    }
    for field in &fields {
        assert!(!logs.contains(field.as_str()), "flow contents ({field}) reached the logs");
    }
    for name in ["sourceName", "source_name", "destLabels", "dest_labels", "enforcedPolicies"] {
        assert!(!logs.contains(name), "a flow's field ({name}) reached the logs");
    }
}

/// 4. The stream is cut mid-bucket, then Goldmane itself restarts (same address, clock going on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_4_stream_cut_mid_bucket_and_goldmane_restarted() {
    let (sim, _dir) = simulator(sim_config(500, 4)).await;
    let rx = receiver(accept_all()).await;
    let mut gw = Gateway::start(resolve(raw_config(&sim, &rx.base_url()))).await;
    wait_until(WAIT, "two buckets", || rx.body_count() >= 1_000).await;
    sim.cut_after(200);
    wait_until(WAIT, "a reconnect after the cut", || gw.metrics.reconnects.get() >= 1).await;
    wait_until(WAIT, "two more buckets", || rx.body_count() >= 2_000).await;

    // Goldmane restarts: down for a second, back on the same port with the same certificates.
    let port = sim.addr.port();
    let cfg = SimConfig { origin_unix: Some(sim.now()), ..sim_config(500, 4) };
    sim.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sim2 = Simulator::start(cfg, sim.certs.clone(), bind_again(port).await).unwrap();
    let before = rx.body_count();
    wait_until(WAIT, "three buckets from the restarted Goldmane", || rx.body_count() >= before + 1_500).await;
    gw.shutdown().await.unwrap();
    // Same seed: both simulators generate the same flows for a bucket.
    let range = expected_buckets(&sim, &sim2, &gw.metrics);
    let (_, dups) = assert_nothing_missing("cut mid-bucket + Goldmane restart", &sim2, &rx.bodies(), range);
    assert_eq!(dups, 0);
}

/// 5. The chain is swapped while a 100,000-flow burst is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_5_component_swapped_during_a_100k_flow_burst() {
    let cfg = SimConfig { flows_per_bucket: 100_000, time_scale: 2.0, seed: 5, ..SimConfig::default() };
    let (sim, dir) = simulator(cfg).await;
    let rx = receiver(accept_all()).await;
    let chain_dir = dir.path().join("transforms");
    std::fs::create_dir_all(&chain_dir).unwrap();
    std::fs::copy(component("flowgate_transform_enrich.wasm"), chain_dir.join("shape.wasm")).unwrap();
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.transforms.dir = Some(chain_dir.clone());
    raw.transforms.debounce_ms = Some(100);
    raw.transforms.workers = Some(2);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "a fifth of the burst exported", || rx.body_count() >= 20_000).await;
    // Kubelet-style: the new file appears whole.
    let tmp = dir.path().join("shape.wasm.tmp");
    std::fs::copy(component("flowgate_transform_redact.wasm"), &tmp).unwrap();
    std::fs::rename(&tmp, chain_dir.join("shape.wasm")).unwrap();
    wait_until(Duration::from_secs(240), "the whole burst exported", || rx.body_count() >= 100_000).await;
    gw.shutdown().await.unwrap();
    assert_eq!(gw.metrics.transform_reloads_count("swapped"), 2, "the first chain, then one swap mid-burst");
    for req in rx.accepted() {
        for r in req.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records) {
            let chains = r.attributes.iter().filter(|a| a.key == "flowgate.transforms").count();
            assert_eq!(chains, 1, "every record names the one chain that shaped it");
        }
    }
    let range = expected_buckets(&sim, &sim, &gw.metrics);
    let (_, dups) = assert_nothing_missing("swap during a 100k burst", &sim, &rx.bodies(), range);
    assert_eq!(dups, 0);
    let digests = rx
        .accepted()
        .iter()
        .flat_map(|r| r.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records))
        .filter_map(|r| r.attributes.iter().find(|a| a.key == "flowgate.transforms"))
        .filter_map(|a| match a.value.as_ref().and_then(|v| v.value.clone()) {
            Some(Any::StringValue(s)) => Some(s),
            _ => None,
        })
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(digests.len(), 2, "records from both component versions: {digests:?}");
}

/// Replaces a file the way Kubernetes updates a mounted Secret: a new file renamed over the old.
fn replace(path: &Path, from: &Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// 6. Every certificate rotates while streaming, to new CAs: Goldmane's (new server certificate, new client pair,
/// new CA bundle) and the OTLP endpoint's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_6_certificates_rotated_while_streaming() {
    let (sim, dir) = simulator(sim_config(300, 6)).await;
    // The gateway's own copies, as mounted files.
    let mounted = dir.path().join("mounted");
    std::fs::create_dir_all(&mounted).unwrap();
    let file = |name: &str| mounted.join(name);
    for (name, from) in
        [("ca.crt", &sim.certs.ca_cert), ("tls.crt", &sim.certs.client_cert), ("tls.key", &sim.certs.client_key)]
    {
        std::fs::copy(from, file(name)).unwrap();
    }
    let otlp_a = SimCerts::generate(&dir.path().join("otlp-a")).unwrap();
    for (name, from) in
        [("otlp-ca.crt", &otlp_a.ca_cert), ("otlp.crt", &otlp_a.client_cert), ("otlp.key", &otlp_a.client_key)]
    {
        std::fs::copy(from, file(name)).unwrap();
    }
    let https = |pki: &SimCerts| {
        tls::mtls_server_config(
            tls::load_certs("server certificate", &pki.server_cert).unwrap(),
            tls::load_key(&pki.server_key).unwrap(),
            tls::load_roots(&pki.ca_cert).unwrap(),
        )
        .unwrap()
    };
    let otlp_port = free_port();
    let rx_a =
        Receiver::start_tls(TcpListener::bind(("127.0.0.1", otlp_port)).await.unwrap(), accept_all(), https(&otlp_a))
            .unwrap();
    let mut raw = raw_config(&sim, &format!("https://localhost:{otlp_port}"));
    raw.goldmane.ca_cert_path = Some(file("ca.crt"));
    raw.goldmane.client_cert_path = Some(file("tls.crt"));
    raw.goldmane.client_key_path = Some(file("tls.key"));
    raw.otlp.ca_cert_path = Some(file("otlp-ca.crt"));
    raw.otlp.client_cert_path = Some(file("otlp.crt"));
    raw.otlp.client_key_path = Some(file("otlp.key"));
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "two buckets over the first certificates", || rx_a.body_count() >= 600).await;

    // Rotation: new CAs everywhere. The files change in place; the servers restart with the new certificates.
    let gm_b = SimCerts::generate(&dir.path().join("goldmane-b")).unwrap();
    let otlp_b = SimCerts::generate(&dir.path().join("otlp-b")).unwrap();
    replace(&file("ca.crt"), &gm_b.ca_cert);
    replace(&file("tls.crt"), &gm_b.client_cert);
    replace(&file("tls.key"), &gm_b.client_key);
    replace(&file("otlp-ca.crt"), &otlp_b.ca_cert);
    replace(&file("otlp.crt"), &otlp_b.client_cert);
    replace(&file("otlp.key"), &otlp_b.client_key);
    let goldmane_port = sim.addr.port();
    let cfg = SimConfig { origin_unix: Some(sim.now()), ..sim_config(300, 6) };
    sim.stop();
    rx_a.stop();
    let sim_b = Simulator::start(cfg, gm_b.clone(), bind_again(goldmane_port).await).unwrap();
    let rx_b = Receiver::start_tls(bind_again(otlp_port).await, accept_all(), https(&otlp_b)).unwrap();
    wait_until(WAIT, "three buckets over the rotated certificates", || rx_b.body_count() >= 900).await;
    gw.shutdown().await.unwrap();
    let bodies: Vec<String> = rx_a.bodies().into_iter().chain(rx_b.bodies()).collect();
    // A request the old endpoint took as it went down may be sent again to the new one (at least once).
    assert_nothing_missing("certificates rotated", &sim_b, &bodies, expected_buckets(&sim, &sim_b, &gw.metrics));
    assert!(!sim_b.stream_requests().is_empty(), "the gateway reconnected to Goldmane with the new pair");
}

/// 7. A transform traps on 1% of the flows under load: exactly those take the failure policy, the rest pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_7_a_transform_trapping_on_one_percent_of_flows() {
    let (sim, _dir) = simulator(sim_config(2_000, 7)).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    let mut entry = RawEntry {
        name: Some("chaos".into()),
        path: Some(component("flowgate_test_guest_chaos.wasm")),
        ..RawEntry::default()
    };
    entry.config.insert("trap_packets_in_multiple_of".into(), serde_norway::Value::String("100".into()));
    raw.transforms.chain = Some(vec![entry]);
    raw.transforms.workers = Some(2);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "four buckets received", || gw.metrics.flows_received.get() >= 8_000).await;
    // The shutdown drains: afterwards every received flow was exported or took the policy.
    gw.shutdown().await.unwrap();
    let m = &gw.metrics;
    let dropped = m.dropped_count(flowgate::telemetry::DropReason::Transform);
    assert_eq!(m.flows_exported.get() + dropped, m.flows_received.get());

    let got: std::collections::HashSet<(String, i64)> = rx.bodies().iter().map(|b| identity(b)).collect();
    assert_eq!(got.len(), rx.bodies().len(), "no duplicate");
    let generator = sim.flow_gen();
    let mut buckets: Vec<i64> = got.iter().map(|(_, s)| *s).collect();
    buckets.sort();
    buckets.dedup();
    let (mut trapping, mut passed) = (0, 0);
    // Every bucket but the newest is complete (the newest may be cut by the shutdown).
    for start in &buckets[..buckets.len() - 1] {
        for f in generator.bucket(*start) {
            let id = identity(&flowgate::render::flow_json_string(&f));
            if f.packets_in % 100 == 0 {
                trapping += 1;
                assert!(!got.contains(&id), "a trapping flow took the fail-closed policy");
            } else {
                passed += 1;
                assert!(got.contains(&id), "a healthy flow was lost next to a trapping one");
            }
        }
    }
    assert!(trapping > 0 && trapping * 50 < passed, "about 1%: {trapping} of {}", trapping + passed);
    assert_eq!(
        m.transform_errors_count("chaos", flowgate::telemetry::TransformError::QuarantineEntered),
        0,
        "1% traps never quarantine"
    );
    assert_eq!(
        m.transform_failures_count("chaos", flowgate::config::FailurePolicy::FailClosed),
        m.dropped_count(flowgate::telemetry::DropReason::Transform),
        "only trapping flows took the policy"
    );
    println!("fault: 1% traps: {trapping} trapping flows dropped by policy, {passed} passed, none lost");
}

/// The segment files of a persistent queue, read as the format says (`batch/disk.rs`): every file must be a
/// sequence of whole records with good checksums, nothing after the last. Returns the records (flows) they hold.
fn whole_records_on_disk(dir: &Path) -> u64 {
    let mut flows = 0;
    let mut segments = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "seg") {
            continue;
        }
        segments += 1;
        let data = std::fs::read(&path).unwrap();
        let mut at = 0;
        while at < data.len() {
            let h = data.get(at..at + 28).unwrap_or_else(|| panic!("{}: a partial header at {at}", path.display()));
            assert_eq!(&h[..4], b"FGQ1", "{}: no record starts at {at}", path.display());
            let field = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
            let body = data
                .get(at + 28..at + 28 + field(4) as usize)
                .unwrap_or_else(|| panic!("{}: a partial body at {at}", path.display()));
            let mut crc = crc32fast::Hasher::new();
            crc.update(&h[4..24]);
            crc.update(body);
            assert_eq!(crc.finalize(), field(24), "{}: checksum of the record at {at}", path.display());
            flows += u64::from(field(8));
            at += 28 + body.len();
        }
    }
    assert!(segments > 0, "no segment in {}", dir.display());
    flows
}

/// 8. The persistent queue's disk is full: a clear error, backpressure, no corruption, and recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_8_disk_full_for_the_persistent_queue() {
    use flowgate::telemetry::DropReason;
    use prost::Message as _;
    let (sim, dir) = simulator(sim_config(200, 8)).await;
    // The endpoint stays down throughout: what the gateway reads stays on disk, where it is checked below.
    let (rx, _down) = receiver_down_while().await;
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    // The first segment is the kernel's always-full device: every write fails with ENOSPC.
    let segment = queue.join(format!("{:020}.seg", 1));
    std::os::unix::fs::symlink("/dev/full", &segment).unwrap();
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.queue.persistent = persistent(&queue);
    raw.shutdown_grace_ms = Some(500);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "write errors", || gw.metrics.queue_disk_errors.get() >= 2).await;
    assert_eq!(rx.requests(), 0, "nothing got past a full disk");
    assert_eq!(gw.metrics.dropped_count(DropReason::QueueFull), 0, "block: nothing dropped");
    // Space comes back.
    std::fs::remove_file(&segment).unwrap();
    wait_until(WAIT, "1,000 flows queued after the disk recovers", || gw.metrics.queue_records.get() >= 1_000).await;
    gw.shutdown().await.unwrap();
    assert_eq!(gw.metrics.flows_exported.get(), 0);

    // On the files themselves: whole records only, holding every flow read.
    let on_disk = whole_records_on_disk(&queue);
    assert_eq!(on_disk, gw.metrics.flows_received.get(), "every flow read is on disk");
    // Reopened, the queue finds all of it, cuts nothing and drops nothing; the batches hold every flow once.
    let metrics = flowgate::telemetry::Metrics::new();
    let reopened = flowgate::batch::disk::DiskQueue::open(
        flowgate::config::PersistentQueueConfig {
            dir: queue.clone(),
            max_bytes: 64 << 20,
            fsync: Fsync::Always,
            when_full: WhenFull::Block,
        },
        metrics.clone(),
    )
    .unwrap();
    assert_eq!(reopened.records() as u64, on_disk);
    assert_eq!(whole_records_on_disk(&queue), on_disk, "opening cut nothing off");
    assert_eq!(metrics.dropped_count(DropReason::Corrupt), 0);
    reopened.close();
    let mut requests = Vec::new();
    while let Some(taken) = reopened.pop().await {
        requests.push(
            opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(taken.encoded.body)
                .unwrap(),
        );
    }
    let bodies = flowgate::receiver::bodies(&requests);
    let range = expected_buckets(&sim, &sim, &gw.metrics);
    let (_, dups) = assert_nothing_missing("disk full", &sim, &bodies, range);
    assert_eq!(dups, 0);
}

/// 9. Goldmane restarts and loses every bucket; Felix nodes come back on their own 1-10 s backoff and re-send
/// their last 5 minutes into buckets already past, while 5% of flows are late and 3% of keys grow in steady
/// state (as measured against Goldmane v3.32.1). Every flow the simulators finally hold reaches the receiver:
/// one record per (key, bucket) plus a delta record for a key that grew, sums equal to what Goldmane holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_9_goldmane_restarts_and_felix_nodes_replay_late() {
    let cfg = SimConfig { late_fraction: 0.05, growth_fraction: 0.03, nodes: 10, ..sim_config(400, 9) };
    let (sim, _dir) = simulator(cfg.clone()).await;
    let rx = receiver(accept_all()).await;
    let mut gw = Gateway::start(resolve(raw_config(&sim, &rx.base_url()))).await;
    wait_until(WAIT, "two live buckets", || rx.body_count() >= 800).await;
    let first = rx.bodies().iter().map(|b| identity(b).1).min().unwrap();

    // Goldmane has no SIGTERM handler: it is gone at once, with every bucket; back a second (30 s) later.
    let port = sim.addr.port();
    sim.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted_at = sim.now();
    let cfg2 = SimConfig { origin_unix: Some(restarted_at), restarted: true, ..cfg };
    let sim2 = Simulator::start(cfg2, sim.certs.clone(), bind_again(port).await).unwrap();
    let last = (restarted_at as i64).div_euclid(15) * 15 + 4 * 15;
    // Every reconciliation pass of the last bucket (the last 300 s after it was streamed) has come due.
    sim2.wait_for_bucket(last + 24 * 15).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.shutdown().await.unwrap();

    let records = crate::goldmane::records(&rx);
    let (flows, late, deltas, dups) =
        crate::goldmane::assert_sums_once(&[sim.model(), sim2.model()], 400, first..=last, &records);
    println!(
        "fault: Goldmane restart + Felix replay: {flows} flows in {} buckets, none missing; {late} found late, {deltas} delta records, {dups} duplicates; {} listed",
        (last - first) / 15 + 1,
        sim.listed() + sim2.listed()
    );
    assert_eq!(dups, 0);
    // How many the restart made late depends on when the gateway reconnected against the nodes' replays (what a
    // reconnect's backfill already holds is streamed, not late); the steady-state 5% alone guarantees some.
    assert!(late > 0 && deltas > 0, "late flows and grown keys were found: {late} late, {deltas} deltas");
    assert!(gw.metrics.reconnects.get() >= 1);
}

/// 10. SIGKILL with no persistent queue, only a state directory for the stream cursor: the restarted gateway
/// resumes the stream where the endpoint's acknowledgements end. Nothing of the buckets Goldmane still holds is
/// missed; duplicates are bounded by the batches in flight at the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_10_sigkill_with_only_the_cursor_directory_then_restart() {
    let cfg = SimConfig { flows_per_bucket: 3_000, time_scale: 15.0, seed: 10, ..SimConfig::default() };
    let (sim, dir) = simulator(cfg).await;
    let rx = receiver(Arc::new(|_, _| Reply::AcceptAfter(Duration::from_millis(30)))).await;
    let admin = free_port();
    let config = binary_config(dir.path(), &sim, &rx, admin, "");
    let state = dir.path().join("state");
    let state_env = state.display().to_string();
    let env = [(ENV_FLOWGATE_STATE_DIR, state_env.as_str())];

    let mut first = Child::start(&config, &env, dir.path().join("first.log"));
    let started = std::time::Instant::now();
    while rx.body_count() < 1_500 {
        assert!(started.elapsed() < WAIT, "the first burst never got half exported:\n{}", first.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().unwrap(); // SIGKILL: the in-memory queue is gone
    first.child.wait().unwrap();
    let at_kill = rx.body_count();
    assert!(state.join("cursor").exists(), "the cursor file is kept in the state directory");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut second = Child::start(&config, &env, dir.path().join("second.log"));
    wait_until(WAIT, "three more buckets exported", || rx.body_count() >= at_kill + 9_000).await;
    let (flows, dups) = sigterm_then_nothing_missing(&mut second, "SIGKILL, cursor directory only", &sim, &rx).await;
    assert!(flows >= 9_000);
    // Unknowable to the gateway: the batches in flight at the kill (max_in_flight 2; the endpoint may have taken
    // them, or acknowledged one after an earlier still in flight: the cursor moves over a contiguous prefix), and
    // the part of one source chunk (512 flows) already acknowledged in a batch before them.
    assert!(dups <= 3 * 512, "{dups} duplicates: more than 2 batches in flight and one chunk");
    println!("fault: SIGKILL, cursor directory only: {at_kill} received before the kill");
    let logs = first.log() + &second.log();
    assert!(logs.contains("resuming the Goldmane stream where"), "{logs}");
    // JSON log lines name the module once: the Goldmane URL is the `goldmane` field, never a second `target`.
    assert!(logs.contains("\"goldmane\":\"https://localhost:"), "{logs}");
    for line in logs.lines() {
        assert!(line.matches("\"target\":").count() <= 1, "a log line with two targets: {line}");
    }
}
