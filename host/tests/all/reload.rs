//! Hot reload through a directory updated exactly as the kubelet updates a ConfigMap volume.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flowgate::config::RawConfig;
use flowgate::pipeline::PROVENANCE_ATTRIBUTE;
use flowgate::receiver::{Receiver, accept_all};
use flowgate::sim::{SimConfig, Simulator};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use crate::support::*;
use crate::wasm::component;

const WAIT: Duration = Duration::from_secs(60);

/// A ConfigMap volume: `..<timestamp>/` holds the files, `..data` points at it, visible names point through
/// `..data`. `update` replays the kubelet's atomic writer.
struct ConfigMapDir {
    root: PathBuf,
    generation: u32,
    visible: Vec<String>,
}

impl ConfigMapDir {
    fn new(root: &Path) -> Self {
        std::fs::create_dir_all(root).unwrap();
        ConfigMapDir { root: root.to_path_buf(), generation: 0, visible: Vec::new() }
    }

    fn update(&mut self, files: &[(&str, Vec<u8>)]) {
        self.generation += 1;
        let old = std::fs::read_link(self.root.join("..data")).ok();
        // 1. A new timestamped directory with every file.
        let ts = format!("..2026_11_23_20_00_{:02}.{}", self.generation, 1000 + self.generation);
        std::fs::create_dir(self.root.join(&ts)).unwrap();
        for (name, bytes) in files {
            std::fs::write(self.root.join(&ts).join(name), bytes).unwrap();
        }
        // 2. `..data_tmp` -> it, renamed over `..data` (atomic).
        symlink(&ts, self.root.join("..data_tmp")).unwrap();
        std::fs::rename(self.root.join("..data_tmp"), self.root.join("..data")).unwrap();
        // 3. Visible names: links for new keys, removal of keys gone.
        let names: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
        for n in &names {
            if !self.visible.contains(n) {
                symlink(Path::new("..data").join(n), self.root.join(n)).unwrap();
            }
        }
        for n in &self.visible {
            if !names.contains(n) {
                std::fs::remove_file(self.root.join(n)).unwrap();
            }
        }
        self.visible = names;
        // 4. The old directory goes.
        if let Some(old) = old {
            std::fs::remove_dir_all(self.root.join(old)).unwrap();
        }
    }
}

fn wasm(file: &str) -> Vec<u8> {
    std::fs::read(component(file)).unwrap()
}

fn provenance(r: &opentelemetry_proto::tonic::logs::v1::LogRecord) -> Option<String> {
    r.attributes.iter().find(|kv| kv.key == PROVENANCE_ATTRIBUTE).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_from_the_transforms_dir_shapes_records_and_config_changes_reload() {
    let (sim, dir) =
        simulator(SimConfig { flows_per_bucket: 300, time_scale: 30.0, seed: 3, ..SimConfig::default() }).await;
    let mut cm = ConfigMapDir::new(&dir.path().join("transforms"));
    cm.update(&[
        ("filter.wasm", wasm("flowgate_transform_filter.wasm")),
        ("filter.yaml", b"config:\n  actions: [Deny]\n".to_vec()),
    ]);
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.transforms.dir = Some(cm.root.clone());
    raw.transforms.debounce_ms = Some(100);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "denied flows exported", || rx.body_count() >= 20).await;
    assert!(rx.bodies().iter().all(|b| b.contains("\"action\":\"Deny\"")), "only denied flows pass the filter");
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(wasm("flowgate_transform_filter.wasm")))
    };
    for r in crate::support::log_records(&rx) {
        assert_eq!(provenance(&r), Some(format!("filter@sha256:{}", &digest[..12])));
    }
    // Only the YAML changes: a reload, then allowed flows only.
    cm.update(&[
        ("filter.wasm", wasm("flowgate_transform_filter.wasm")),
        ("filter.yaml", b"config:\n  actions: [Allow]\n".to_vec()),
    ]);
    wait_until(WAIT, "allowed flows after the config change", || {
        rx.bodies().iter().any(|b| b.contains("\"action\":\"Allow\""))
    })
    .await;
    gw.shutdown().await.unwrap();
    assert_eq!(gw.metrics.transform_reloads_count("swapped"), 2);
    // The component's bytes did not change: the reload took its compiled code (and ran `init` with the new config).
    assert_eq!(gw.metrics.transform_compilations.get(), 1, "compiled once, at startup");
}

/// A gateway under load (1,000 flows a bucket at 30×: 2,000 flows a second) whose chain comes from a ConfigMap
/// holding `files`, run by two workers, its configuration otherwise as `tune` leaves it.
struct Loaded {
    sim: Simulator,
    _dir: tempfile::TempDir,
    cm: ConfigMapDir,
    rx: Receiver,
    gw: Gateway,
}

async fn under_load(seed: u64, files: &[(&str, Vec<u8>)], tune: impl FnOnce(&mut RawConfig)) -> Loaded {
    let (sim, dir) =
        simulator(SimConfig { flows_per_bucket: 1_000, time_scale: 30.0, seed, ..SimConfig::default() }).await;
    let mut cm = ConfigMapDir::new(&dir.path().join("transforms"));
    cm.update(files);
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.transforms.dir = Some(cm.root.clone());
    raw.transforms.debounce_ms = Some(100);
    raw.transforms.workers = Some(2);
    tune(&mut raw);
    let gw = Gateway::start(resolve(raw)).await;
    Loaded { sim, _dir: dir, cm, rx, gw }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_components_under_load_loses_and_duplicates_nothing_and_a_broken_update_changes_nothing() {
    let Loaded { sim, _dir, mut cm, rx, mut gw } =
        under_load(4, &[("chaos.wasm", wasm("flowgate_test_guest_chaos.wasm"))], |_| {}).await;
    wait_until(WAIT, "chaos serving", || rx.body_count() >= 1_000).await;

    // Mid-stream (2,000 flows a second), the ConfigMap switches to the filter (which keeps every flow).
    cm.update(&[("filter.wasm", wasm("flowgate_transform_filter.wasm"))]);
    wait_until(WAIT, "filter serving", || {
        crate::support::log_records(&rx).iter().any(|r| provenance(r).is_some_and(|p| p.starts_with("filter@")))
    })
    .await;
    // A broken update: refused, the filter keeps serving.
    cm.update(&[("filter.wasm", b"not wasm at all".to_vec())]);
    wait_until(WAIT, "broken update refused", || gw.metrics.transform_reloads_count("not_a_component") == 1).await;
    let after_refusal = crate::support::log_records(&rx).len();
    wait_until(WAIT, "still serving", || crate::support::log_records(&rx).len() >= after_refusal + 2_000).await;
    gw.shutdown().await.unwrap();

    let all = crate::support::log_records(&rx);
    let names: std::collections::BTreeSet<String> =
        all.iter().filter_map(provenance).map(|p| p.split('@').next().unwrap().to_string()).collect();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), vec!["chaos", "filter"]);
    assert!(all[after_refusal..].iter().all(|r| provenance(r).is_some_and(|p| p.starts_with("filter@"))));
    assert_eq!(gw.metrics.transform_reloads_count("swapped"), 2);
    // Both transforms keep every flow with its body: every flow arrives exactly once across the swap.
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, flows) = assert_exactly_once(&sim, &rx.bodies(), first, last);
    assert!(buckets >= 3, "{buckets} buckets, {flows} flows");
}

/// Passthrough is rendered on the runtime and a chain on worker threads: a chain emptied and filled again under
/// load moves chunks from one to the other and back, and every flow still arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptying_the_chain_under_load_and_filling_it_again_loses_and_duplicates_nothing() {
    let filter = [("filter.wasm", wasm("flowgate_transform_filter.wasm"))];
    let Loaded { sim, _dir, mut cm, rx, mut gw } = under_load(7, &filter, |_| {}).await;
    let shaped = |r: &opentelemetry_proto::tonic::logs::v1::LogRecord| provenance(r).is_some();
    wait_until(WAIT, "the filter serving", || crate::support::log_records(&rx).len() >= 1_000).await;

    // Mid-stream (2,000 flows a second) the ConfigMap empties: passthrough, then the filter again.
    cm.update(&[]);
    wait_until(WAIT, "passthrough serving", || {
        crate::support::log_records(&rx).iter().rev().take(500).all(|r| !shaped(r))
    })
    .await;
    cm.update(&filter);
    wait_until(WAIT, "the filter serving again", || {
        crate::support::log_records(&rx).iter().rev().take(500).all(shaped)
    })
    .await;
    gw.shutdown().await.unwrap();

    let all = crate::support::log_records(&rx);
    // Shaped, then not, then shaped again: runs of records by whether the chain shaped them.
    let mut runs: Vec<bool> = all.iter().map(shaped).collect();
    runs.dedup();
    let from_the_filter = &runs[runs.iter().position(|&s| s).expect("records the filter shaped")..];
    assert!(from_the_filter.len() >= 3 && runs.last() == Some(&true), "{runs:?}");
    assert_eq!(gw.metrics.transform_reloads_count("swapped"), 3);
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, flows) = assert_exactly_once(&sim, &rx.bodies(), first, last);
    assert!(buckets >= 3, "{buckets} buckets, {flows} flows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_chain_from_config_with_a_structured_body() {
    use flowgate::config::RawEntry;
    let (sim, _dir) =
        simulator(SimConfig { flows_per_bucket: 100, time_scale: 30.0, seed: 6, ..SimConfig::default() }).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.transforms.chain = Some(vec![RawEntry {
        name: Some("semconv".into()),
        path: Some(component("flowgate_transform_semconv.wasm")),
        ..RawEntry::default()
    }]);
    raw.transforms.provenance = Some(false);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "records", || crate::support::log_records(&rx).len() >= 100).await;
    gw.shutdown().await.unwrap();
    for r in crate::support::log_records(&rx) {
        let Some(Value::KvlistValue(kv)) = r.body.and_then(|b| b.value) else { panic!("a structured body") };
        assert!(kv.values.iter().any(|a| a.key == "destination.port"));
        assert!(r.attributes.iter().all(|a| a.key != PROVENANCE_ATTRIBUTE), "provenance off");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_config_files_chain_reloads_it() {
    let (sim, dir) =
        simulator(SimConfig { flows_per_bucket: 100, time_scale: 30.0, seed: 9, ..SimConfig::default() }).await;
    let rx = receiver(accept_all()).await;
    let file = dir.path().join("flowgate.yaml");
    let chain_yaml = |name: &str, file: &str| {
        format!("transforms:\n  chain:\n    - name: {name}\n      path: {}\n", component(file).display())
    };
    std::fs::write(&file, chain_yaml("chaos", "flowgate_test_guest_chaos.wasm")).unwrap();
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.transforms = RawConfig::from_yaml(&std::fs::read_to_string(&file).unwrap(), &file).unwrap().transforms;
    raw.transforms.debounce_ms = Some(100);
    let mut cfg = resolve(raw);
    cfg.transforms.config_file = Some(file.clone());
    let mut gw = Gateway::start(cfg).await;
    wait_until(WAIT, "chaos serving", || {
        crate::support::log_records(&rx).iter().any(|r| provenance(r).is_some_and(|p| p.starts_with("chaos@")))
    })
    .await;
    // Whole-file replacement, as kubelet updates a mounted ConfigMap (a plain write can be read half-done).
    let replace = |text: &str| {
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    replace(&chain_yaml("semconv", "flowgate_transform_semconv.wasm"));
    wait_until(WAIT, "semconv serving", || {
        crate::support::log_records(&rx).iter().any(|r| provenance(r).is_some_and(|p| p.starts_with("semconv@")))
    })
    .await;
    assert_eq!(gw.metrics.transform_compilations.get(), 2, "a new component is compiled");
    // A broken edit is refused; semconv keeps serving.
    replace("transforms:\n  chain: [{name: x}]\n  surprise: 1\n");
    wait_until(WAIT, "broken config refused", || gw.metrics.transform_reloads_count("config") == 1).await;
    gw.shutdown().await.unwrap();
    assert_eq!(gw.metrics.transform_reloads_count("swapped"), 2);
}

/// A transform's config key it never reads (a typo) refuses the chain, with the key named: at startup (the gateway
/// does not start, and `flowgate check` says why) and on reload (the running chain keeps serving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_transform_config_key_is_refused_at_startup_and_on_reload() {
    let (sim, dir) =
        simulator(SimConfig { flows_per_bucket: 300, time_scale: 30.0, seed: 5, ..SimConfig::default() }).await;
    let typo = b"config:\n  actions: [Deny]\n  drop_namespace: [kube-*]\n".to_vec();
    let named = "unknown config key \"drop_namespace\"; this transform reads: actions, allow_sample_rate, \
                 drop_namespaces, ports";
    let rx = receiver(accept_all()).await;

    // Startup: refused, naming the key.
    let mut bad = ConfigMapDir::new(&dir.path().join("bad"));
    bad.update(&[("filter.wasm", wasm("flowgate_transform_filter.wasm")), ("filter.yaml", typo.clone())]);
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.transforms.dir = Some(bad.root.clone());
    let cfg = resolve(raw);
    let check = flowgate::tools::check_chain(&cfg.transforms).unwrap_err();
    assert!(format!("{check:#}").contains(named), "flowgate check: {check:#}");
    let refused = flowgate::app::build(cfg, flowgate::telemetry::Metrics::new(), flowgate::app::Purpose::Run)
        .err()
        .expect("a gateway with a misspelt transform key does not start");
    assert!(format!("{refused:#}").contains(named), "startup: {refused:#}");

    // Reload: the running chain stays.
    let mut cm = ConfigMapDir::new(&dir.path().join("transforms"));
    cm.update(&[
        ("filter.wasm", wasm("flowgate_transform_filter.wasm")),
        ("filter.yaml", b"config:\n  actions: [Deny]\n".to_vec()),
    ]);
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.transforms.dir = Some(cm.root.clone());
    raw.transforms.debounce_ms = Some(100);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "denied flows exported", || rx.body_count() >= 20).await;
    cm.update(&[("filter.wasm", wasm("flowgate_transform_filter.wasm")), ("filter.yaml", typo)]);
    wait_until(WAIT, "the misspelt config refused", || gw.metrics.transform_reloads_count("init") == 1).await;
    let after = rx.body_count();
    wait_until(WAIT, "still serving", || rx.body_count() >= after + 20).await;
    gw.shutdown().await.unwrap();
    assert!(rx.bodies().iter().all(|b| b.contains("\"action\":\"Deny\"")), "the old chain kept filtering");
    assert_eq!(gw.metrics.transform_reloads_count("swapped"), 1);
}

/// A component that passes its self-test but fails in production (chaos answers `error` for every flow to port
/// 443, about one in seven), swapped in under load over a chain that never failed: its failure share is many
/// times the old chain's, so within the probation window the old chain serves again. Fail-open passes the failed
/// flows on unchanged, so every flow arrives exactly once across both swaps. The refused files are left alone by
/// the rescans; the next change to them is built and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_component_swapped_in_under_load_is_rolled_back_with_nothing_lost() {
    let filter = ("filter.wasm", wasm("flowgate_transform_filter.wasm"));
    let Loaded { sim, _dir, mut cm, rx, mut gw } = under_load(11, std::slice::from_ref(&filter), |raw| {
        raw.transforms.resync_interval_ms = Some(300);
        raw.transforms.rollback.window_ms = Some(30_000);
    })
    .await;
    wait_until(WAIT, "filter serving", || rx.body_count() >= 1_000).await;

    let chaos = ("chaos.wasm", wasm("flowgate_test_guest_chaos.wasm"));
    let bad = ("chaos.yaml", b"failure_policy: fail-open\nconfig:\n  error_on_port: 443\n".to_vec());
    cm.update(&[chaos.clone(), bad, filter.clone()]);
    wait_until(WAIT, "the bad chain rolled back", || gw.metrics.transform_rollbacks_count("chaos") == 1).await;
    assert!(gw.metrics.transform_failures_count("chaos", flowgate::config::FailurePolicy::FailOpen) > 0);
    let at_rollback = crate::support::log_records(&rx).len();
    // Several rescans later the refused files have not been built again, and the filter alone serves.
    wait_until(WAIT, "serving after the rollback", || crate::support::log_records(&rx).len() >= at_rollback + 3_000)
        .await;
    assert_eq!(gw.metrics.transform_reloads_count("swapped"), 2, "filter, then chaos: never chaos again");
    assert_eq!(gw.metrics.transform_reloads_count("rolled_back"), 1);
    let tail = crate::support::log_records(&rx).split_off(at_rollback + 2_000);
    assert!(tail.iter().all(|r| provenance(r).is_some_and(|p| p.starts_with("filter@") && !p.contains("chaos"))));

    // The files change (chaos without the bad setting): built, swapped in, and it serves through probation.
    cm.update(&[chaos, ("chaos.yaml", b"failure_policy: fail-open\n".to_vec()), filter]);
    wait_until(WAIT, "the fixed chaos serving", || {
        crate::support::log_records(&rx)
            .iter()
            .rev()
            .take(100)
            .any(|r| provenance(r).is_some_and(|p| p.starts_with("chaos@")))
    })
    .await;
    let fixed = crate::support::log_records(&rx).len();
    wait_until(WAIT, "the fixed chain serving on", || crate::support::log_records(&rx).len() >= fixed + 2_000).await;
    gw.shutdown().await.unwrap();
    assert_eq!(gw.metrics.transform_reloads_count("swapped"), 3);
    assert_eq!(gw.metrics.transform_rollbacks_count("chaos"), 1, "the fixed component is not rolled back");

    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, flows) = assert_exactly_once(&sim, &rx.bodies(), first, last);
    assert!(buckets >= 3, "{buckets} buckets, {flows} flows");
}
