//! Shared test helpers: a simulated Goldmane, an OTLP receiver and the real gateway, all on loopback.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate::config::{Config, Env, RawConfig, resolve_with_env};
use flowgate::receiver::{Receiver, Responder};
use flowgate::render;
use flowgate::sim::{SimCerts, SimConfig, Simulator};
use flowgate::telemetry::Metrics;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for `fut`, panicking with `what` after `timeout`.
pub async fn within<T>(timeout: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(timeout, fut).await.unwrap_or_else(|_| panic!("timed out after {timeout:?}: {what}"))
}

/// A simulator with fresh certificates in a temporary directory.
pub async fn simulator(cfg: SimConfig) -> (Simulator, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let certs = SimCerts::generate(&dir.path().join("pki")).unwrap();
    let sim = Simulator::start(cfg, certs, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    (sim, dir)
}

/// A receiver on loopback answering with `responder`.
pub async fn receiver(responder: Responder) -> Receiver {
    Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), responder, None).unwrap()
}

/// The gateway's configuration for `sim` and `receiver`, before test-specific changes.
/// `endpoint` is the base URL (`/v1/logs` is appended): a [`Receiver`]'s `base_url()` or another server's.
pub fn raw_config(sim: &Simulator, endpoint: &str) -> RawConfig {
    let mut raw = RawConfig::default();
    raw.goldmane.host = Some(sim.target());
    raw.goldmane.ca_cert_path = Some(sim.certs.ca_cert.clone());
    raw.goldmane.client_cert_path = Some(sim.certs.client_cert.clone());
    raw.goldmane.client_key_path = Some(sim.certs.client_key.clone());
    raw.goldmane.reconnect_initial_ms = Some(100);
    raw.goldmane.reconnect_max_ms = Some(1_000);
    raw.otlp.endpoint = Some(format!("{endpoint}/v1/logs"));
    raw.otlp.retry_initial_ms = Some(50);
    raw.otlp.retry_max_ms = Some(500);
    raw.batch.delay_ms = Some(100);
    raw.admin.listen = Some("127.0.0.1:0".to_string());
    raw.shutdown_grace_ms = Some(10_000);
    raw
}

pub fn resolve(raw: RawConfig) -> Config {
    resolve_with_env(raw, &Env::default()).expect("test config resolves")
}

/// The real gateway, running in-process.
pub struct Gateway {
    pub metrics: Arc<Metrics>,
    pub admin: std::net::SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Gateway {
    pub async fn start(cfg: Config) -> Gateway {
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = admin.local_addr().unwrap();
        let metrics = Metrics::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(flowgate::app::run(cfg, admin, metrics.clone(), stop.clone()));
        Gateway { metrics, admin: addr, stop, task: Some(task) }
    }

    /// SIGTERM-equivalent: stop reading, drain, return the run result.
    /// Metrics stay readable afterwards.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let task = self.task.take().expect("shut down once");
        within(Duration::from_secs(30), "gateway shutdown", task).await.expect("gateway task panicked")
    }

    /// GET an admin path; (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.admin)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// A flow's identity in a body: (Key as JSON text, startTime).
pub fn identity(body: &str) -> (String, i64) {
    let v: serde_json::Value = serde_json::from_str(body).expect("body is JSON");
    (v["Key"].to_string(), v["startTime"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0))
}

/// Asserts the receiver got every flow of every bucket from `first` to `last` (bucket starts) exactly once, each
/// body equal to the rendering of what the simulator generated, and nothing outside that range. The last bucket
/// may be cut short by the gateway's shutdown (it stops reading mid-burst); then it must hold exactly the flows
/// the simulator sent first, and at least one. Empty input fails. Returns (buckets, flows).
pub fn assert_exactly_once(sim: &Simulator, bodies: &[String], first: i64, last: i64) -> (usize, usize) {
    assert!(!bodies.is_empty(), "no flow reached the receiver (expected buckets {first}..={last})");
    assert!(first <= last && (last - first) % 15 == 0, "not a bucket range: {first}..={last}");
    let mut by_bucket: HashMap<i64, Vec<&String>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for b in bodies {
        let id = identity(b);
        by_bucket.entry(id.1).or_default().push(b);
        assert!(seen.insert(id), "duplicate flow at the receiver: {b}");
    }
    let flows = sim.flow_gen();
    let mut buckets: Vec<_> = by_bucket.keys().copied().collect();
    buckets.sort();
    let counts: Vec<(i64, usize)> = buckets.iter().map(|b| (*b, by_bucket[b].len())).collect();
    let expected_buckets: Vec<i64> = (first..=last).step_by(15).collect();
    assert_eq!(buckets, expected_buckets, "buckets at the receiver differ from {first}..={last}: {counts:?}");
    for start in &buckets {
        let mut got: Vec<String> = by_bucket[start].iter().map(|s| s.to_string()).collect();
        // The simulator sends a bucket's flows in generation order, so a cut-short bucket is a prefix.
        let take = if *start == last { got.len() } else { flows.keys };
        let mut expected: Vec<String> = flows.bucket(*start).iter().take(take).map(render::flow_json_string).collect();
        expected.sort();
        got.sort();
        assert_eq!(
            got.len(),
            expected.len(),
            "bucket {start}: {} of {} flows arrived; {counts:?}",
            got.len(),
            flows.keys
        );
        assert_eq!(got, expected, "bucket {start}: bodies differ from what the simulator sent first");
    }
    (buckets.len(), bodies.len())
}

/// The bucket range the gateway must have delivered, from sources other than the receiver: the first bucket the
/// simulator `first_from` served to the gateway's first stream, to the bucket of the last distinct flow the gateway
/// read (its own count; buckets are sent whole, in order, `flows_per_bucket` each). For in-process gateways that
/// read every flow they were sent (no stall).
pub fn expected_buckets(first_from: &Simulator, sim: &Simulator, metrics: &Metrics) -> (i64, i64) {
    let first = *first_from.first_buckets().first().expect("the gateway opened a stream");
    assert_eq!(sim.stalled(), 0, "the simulator dropped flows for a stalled stream: no range can be computed");
    let distinct = metrics.flows_received.get() - metrics.duplicates_skipped.get();
    assert!(distinct > 0, "the gateway read no flow");
    let per_bucket = sim.flow_gen().keys as u64;
    (first, first + 15 * ((distinct - 1) / per_bucket) as i64)
}

/// A receiver answering 503 while the returned switch is on, accepting once it is turned off.
pub async fn receiver_down_while() -> (Receiver, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let down = std::sync::Arc::new(AtomicBool::new(true));
    let d = down.clone();
    let rx = receiver(std::sync::Arc::new(move |_, _| {
        if d.load(Ordering::SeqCst) {
            flowgate::receiver::Reply::Status { code: 503, retry_after: None }
        } else {
            flowgate::receiver::Reply::Accept { rejected: 0 }
        }
    }))
    .await;
    (rx, down)
}

/// Every flow the simulator sent was received and exported (or skipped as a duplicate): nothing pending.
pub fn settled(sim: &Simulator, gw: &Gateway) -> bool {
    let m = &gw.metrics;
    m.flows_received.get() == sim.sent() && m.flows_exported.get() + m.duplicates_skipped.get() == sim.sent()
}

pub type Labels = BTreeMap<String, String>;

/// The samples of `metric` in a Prometheus text exposition.
pub fn samples(text: &str, metric: &str) -> HashMap<Labels, f64> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(metric) else { continue };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (l, v) = r.rsplit_once("} ").unwrap();
                (l, v)
            }
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue, // a longer metric name sharing the prefix
            },
        };
        let mut map = Labels::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap();
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        out.insert(map, value.parse().unwrap());
    }
    out
}

/// The `flowgate` binary, linked (or copied) into `dir` once for a whole test: a target directory shared with
/// other checkouts may get their own `flowgate` while the test runs.
pub fn flowgate_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("flowgate");
    let src = env!("CARGO_BIN_EXE_flowgate");
    if std::fs::hard_link(src, &path).is_err() {
        std::fs::copy(src, &path).unwrap();
    }
    path
}

/// Every log record the receiver accepted, in order.
pub fn log_records(rx: &flowgate::receiver::Receiver) -> Vec<opentelemetry_proto::tonic::logs::v1::LogRecord> {
    rx.accepted()
        .into_iter()
        .flat_map(|r| r.resource_logs)
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect()
}
