//! `flowgate-e2e`: the gateway as users run it, measured end to end (figures, never asserted in tests).
//!
//! The real `flowgate` binary (release, next to this one) is fed by a stand-in Goldmane in this process that serves
//! pre-built buckets over real mTLS gRPC as fast as the gateway reads, and exports over real HTTP to a receiver
//! here that only counts records. The gateway's own CPU (utime + stime from /proc; while idle with the stream open,
//! its threads' schedstat) and memory (VmRSS before the first flow, VmHWM at the end, VmRSS after the burst) are
//! read from the child, so the stand-in's and the receiver's work is not counted.
//! Every row is also a ratio to the pure data path (split -> render -> encode on one core) measured in the same run.
//!
//! `cargo build --release --bin flowgate --bin flowgate-e2e && target/release/flowgate-e2e [flows-per-bucket...]`
//! (`make bench-e2e`); `FLOWGATE_E2E_CASES=passthrough` runs one case, e.g. under `perf record -e cpu-clock -g`;
//! `FLOWGATE_E2E_RUNS=<n>` prints each figure's median over `n` runs; `FLOWGATE_E2E_LOG=<file>` keeps the
//! gateway's stderr (of the last run); the allocator's settings (`_RJEM_MALLOC_CONF`) and the gateway's own `FLOWGATE_*` variables
//! reach it.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use flowgate::config::Compression;
use flowgate::otlp::{EncodedRecords, RequestEncoder, resource};
use flowgate::pipeline::unix_nanos;
use flowgate::proto::flows_server::{Flows, FlowsServer};
use flowgate::proto::{FlowListRequest, FlowListResult, FlowResult, FlowStreamRequest, ListMetadata};
use flowgate::receiver::Receiver;
use flowgate::sim::{FlowGen, SimCerts};
use flowgate::telemetry::allocator;
use flowgate::wire::flow_of_result;
use futures::Stream;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// Flows a run sends, whatever the bucket size.
const TOTAL: usize = 200_000;
/// How often the queue's size is read from the gateway's metrics during a burst.
const QUEUE_SAMPLE: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Passthrough,
    Gzip,
    Zstd,
    Chain,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Passthrough => "passthrough",
            Case::Gzip => "gzip",
            Case::Zstd => "zstd",
            Case::Chain => "redact -> enrich -> semconv",
        }
    }
}

/// Serves the buckets once `go` turns true, back to back, then keeps the stream open (Goldmane never ends one).
struct StandIn {
    buckets: Arc<Vec<Vec<FlowResult>>>,
    go: watch::Receiver<bool>,
    opened: watch::Sender<bool>,
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<FlowResult, Status>> + Send>>;

#[tonic::async_trait]
impl Flows for StandIn {
    type StreamStream = FlowStream;

    async fn stream(&self, _: Request<FlowStreamRequest>) -> Result<Response<FlowStream>, Status> {
        let (tx, rx) = mpsc::channel(2_048);
        let (buckets, mut go) = (self.buckets.clone(), self.go.clone());
        self.opened.send_replace(true);
        tokio::spawn(async move {
            if go.wait_for(|g| *g).await.is_err() {
                return;
            }
            for bucket in buckets.iter() {
                for f in bucket {
                    if tx.send(Ok(f.clone())).await.is_err() {
                        return;
                    }
                }
            }
            tx.closed().await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list(&self, _: Request<FlowListRequest>) -> Result<Response<FlowListResult>, Status> {
        // Nothing arrived late here: reconciliation runs and finds nothing, as in a quiet steady state.
        Ok(Response::new(FlowListResult {
            meta: Some(ListMetadata { total_pages: 0, total_results: 0 }),
            flows: vec![],
        }))
    }
}

/// A process's CPU seconds (user + system) and memory (VmRSS, VmHWM) from /proc.
struct Usage {
    cpu: f64,
    rss: u64,
    hwm: u64,
}

/// Nanoseconds every thread of `pid` has run (`/proc/<pid>/task/*/schedstat`: exact, where `stat` counts ticks).
fn on_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread that ended between the listing and the read counts nothing.
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else { continue };
        total += stat.split_whitespace().next().context("schedstat")?.parse::<u64>()?;
    }
    Ok(total)
}

fn usage(pid: u32, ticks: f64) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').context("/proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu = (f[11].parse::<f64>()? + f[12].parse::<f64>()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok(Usage { cpu, rss: kib("VmRSS:"), hwm: kib("VmHWM:") })
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

struct Row {
    case: Case,
    per_bucket: usize,
    cpu_us: f64,
    rate: f64,
    idle_mib: f64,
    /// CPU while idle with the stream open, in percent of one core.
    idle_cpu_pct: f64,
    peak_mib: f64,
    /// The export queue's largest size seen (`flowgate_queue_bytes`, sampled): a burst the endpoint has not
    /// taken yet, bounded by the queue's own limit.
    queue_mib: f64,
    /// RSS [`AFTER_BURST`] after the last record arrived.
    after_mib: f64,
}

impl Row {
    /// The median of each figure over runs of one case and bucket size.
    fn median(runs: Vec<Row>) -> Row {
        let of = |figure: fn(&Row) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(figure).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Row {
            case: runs[0].case,
            per_bucket: runs[0].per_bucket,
            cpu_us: of(|r| r.cpu_us),
            rate: of(|r| r.rate),
            idle_mib: of(|r| r.idle_mib),
            idle_cpu_pct: of(|r| r.idle_cpu_pct),
            peak_mib: of(|r| r.peak_mib),
            queue_mib: of(|r| r.queue_mib),
            after_mib: of(|r| r.after_mib),
        }
    }
}

/// How long the idle gateway's CPU is measured for.
const IDLE_WINDOW: Duration = Duration::from_secs(2);

/// How long after a burst the RSS is read again.
const AFTER_BURST: Duration = Duration::from_secs(3);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let gateway = exe.with_file_name("flowgate");
    if !gateway.exists() {
        bail!("{} is missing: cargo build --release --bin flowgate --bin flowgate-e2e", gateway.display());
    }
    let sizes: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() { vec![1_000, 10_000, 100_000] } else { sizes };
    let components = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/transform");
    let chain = components.join("flowgate_transform_redact.wasm").exists();
    let dir = tempfile::tempdir()?;
    let certs = SimCerts::generate(&dir.path().join("pki"))?;
    let ticks = clock_ticks();

    println!("flowgate-e2e: the release gateway as a child process, {TOTAL} flows a run, 2 cores shared with the");
    println!("stand-in Goldmane and the counting receiver (their CPU is not counted)\n");
    let repeats = repeats()?;
    if repeats > 1 {
        println!("each row: the median of {repeats} runs, figure by figure\n");
    }
    let pure = pure_path();
    for (c, ns) in &pure {
        println!("pure data path, one core ({c:?}): {ns:.0} ns/flow");
    }
    println!();
    println!(
        "{:<30} {:>8} {:>12} {:>10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "case",
        "flows/b",
        "CPU us/flow",
        "flows/s",
        "x pure",
        "idle MiB",
        "idle CPU%",
        "peak MiB",
        "queue MiB",
        "after MiB"
    );
    let mut rows = Vec::new();
    for &per_bucket in &sizes {
        for case in [Case::Passthrough, Case::Gzip, Case::Zstd, Case::Chain] {
            if (case == Case::Chain && !chain) || !wanted(case) {
                continue;
            }
            let mut runs = Vec::with_capacity(repeats);
            for _ in 0..repeats {
                runs.push(run(case, per_bucket, &gateway, &certs, dir.path(), &components, ticks).await?);
            }
            let row = Row::median(runs);
            let compression = match case {
                Case::Gzip => Compression::Gzip,
                Case::Zstd => Compression::Zstd,
                _ => Compression::None,
            };
            let pure_ns = pure.iter().find(|(c, _)| *c == compression).map_or(f64::NAN, |(_, ns)| *ns);
            println!(
                "{:<30} {:>8} {:>12.2} {:>10.0} {:>9.2} {:>10.1} {:>10.2} {:>10.1} {:>10.1} {:>10.1}",
                row.case.name(),
                row.per_bucket,
                row.cpu_us,
                row.rate,
                row.cpu_us * 1_000.0 / pure_ns,
                row.idle_mib,
                row.idle_cpu_pct,
                row.peak_mib,
                row.queue_mib,
                row.after_mib
            );
            rows.push(row);
        }
    }
    if !chain {
        println!("\n(transforms not built: `make transforms` for the chain's row)");
    }
    // Per flow, the cost should not grow with the bucket.
    for case in [Case::Passthrough, Case::Gzip, Case::Zstd, Case::Chain] {
        let of: Vec<&Row> = rows.iter().filter(|r| r.case == case).collect();
        if let (Some(first), Some(last)) = (of.first(), of.last())
            && of.len() > 1
        {
            println!(
                "{}: CPU per flow at {} flows a bucket is {:.2}x that at {}",
                case.name(),
                last.per_bucket,
                last.cpu_us / first.cpu_us,
                first.per_bucket
            );
        }
    }
    // What compression costs end to end: the targets are ratios to passthrough at the same bucket size.
    for case in [Case::Gzip, Case::Zstd] {
        let ratios: Vec<String> = rows
            .iter()
            .filter(|r| r.case == case)
            .filter_map(|r| {
                let plain = rows.iter().find(|p| p.case == Case::Passthrough && p.per_bucket == r.per_bucket)?;
                Some(format!("{:.2}x at {}", r.cpu_us / plain.cpu_us, r.per_bucket))
            })
            .collect();
        if !ratios.is_empty() {
            println!("{}: CPU per flow against passthrough's: {}", case.name(), ratios.join(", "));
        }
    }
    Ok(())
}

/// `FLOWGATE_E2E_RUNS=<n>` runs each row `n` times and prints each figure's median (one run by default): single
/// runs of the same binary vary by a third.
fn repeats() -> anyhow::Result<usize> {
    match std::env::var("FLOWGATE_E2E_RUNS") {
        Err(_) => Ok(1),
        Ok(v) => match v.parse() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("FLOWGATE_E2E_RUNS={v}: expected a number of runs, 1 or more"),
        },
    }
}

/// `FLOWGATE_E2E_CASES=passthrough,gzip,zstd,chain` picks cases (all by default), e.g. to profile one.
fn wanted(case: Case) -> bool {
    let Ok(list) = std::env::var("FLOWGATE_E2E_CASES") else { return true };
    let key = match case {
        Case::Passthrough => "passthrough",
        Case::Gzip => "gzip",
        Case::Zstd => "zstd",
        Case::Chain => "chain",
    };
    list.split(',').any(|c| c.trim() == key)
}

/// One run: a fresh stand-in, receiver and gateway; returns the gateway's figures.
async fn run(
    case: Case,
    per_bucket: usize,
    gateway: &Path,
    certs: &SimCerts,
    dir: &Path,
    components: &Path,
    ticks: f64,
) -> anyhow::Result<Row> {
    let buckets = buckets(per_bucket);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (go_tx, go_rx) = watch::channel(false);
    let (opened_tx, mut opened_rx) = watch::channel(false);
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(std::fs::read(&certs.server_cert)?, std::fs::read(&certs.server_key)?))
        .client_ca_root(Certificate::from_pem(std::fs::read(&certs.ca_cert)?));
    let stop = tokio_util::sync::CancellationToken::new();
    let server = Server::builder().tls_config(tls)?.add_service(FlowsServer::new(StandIn {
        buckets: Arc::new(buckets),
        go: go_rx,
        opened: opened_tx,
    }));
    let token = stop.clone();
    tokio::spawn(server.serve_with_incoming_shutdown(TcpListenerStream::new(listener), token.cancelled_owned()));
    let receiver = Receiver::start_counting(TcpListener::bind("127.0.0.1:0").await?)?;
    // A free loopback port for the admin listener, to sample the queue's size from its metrics.
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;

    let config = dir.join("e2e.yaml");
    let mut yaml = format!(
        "goldmane:\n  host: localhost:{port}\n  ca_cert_path: {}\n  client_cert_path: {}\n  client_key_path: {}\n\
         otlp:\n  endpoint: {}/v1/logs\n  compression: {}\nadmin:\n  listen: {admin}\n",
        certs.ca_cert.display(),
        certs.client_cert.display(),
        certs.client_key.display(),
        receiver.base_url(),
        match case {
            Case::Gzip => "gzip",
            Case::Zstd => "zstd",
            _ => "none",
        }
    );
    if case == Case::Chain {
        let path = |n: &str| components.join(format!("flowgate_transform_{n}.wasm")).display().to_string();
        yaml.push_str(&format!(
            "transforms:\n  chain:\n\
             \x20   - name: redact\n      path: {}\n      config: {{drop_labels: \"pod-template-hash=*\", pseudonymize: \"source_namespace,dest_namespace\", key: bench-secret-key-0123}}\n\
             \x20   - name: enrich\n      path: {}\n      config: {{attr.k8s.cluster.name: bench, owner.payments: billing}}\n\
             \x20   - name: semconv\n      path: {}\n",
            path("redact"),
            path("enrich"),
            path("semconv")
        ));
    }
    std::fs::write(&config, yaml)?;
    let log = dir.join("e2e-gateway.log");
    let mut child = std::process::Command::new(gateway)
        .args(["run", "--config"])
        .arg(&config)
        .env_clear()
        // Allocator settings and the gateway's own variables pass through, for experiments
        // (`_RJEM_MALLOC_CONF=narenas:8 make bench-e2e`, `FLOWGATE_RECONCILE=false`).
        .envs(std::env::vars().filter(|(k, _)| passed_through(k)))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let pid = child.id();
    let ready = tokio::time::timeout(Duration::from_secs(30), opened_rx.wait_for(|o| *o)).await;
    if !matches!(ready, Ok(Ok(_))) {
        let _ = child.kill();
        bail!("the gateway never opened the stream: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    // Settled and idle: the footprint before the first flow, and what idling costs (the stream open, no flows).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = on_cpu_ns(pid)?;
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_cpu_ns = on_cpu_ns(pid)? - settled;
    let idle = usage(pid, ticks)?;
    let started = Instant::now();
    go_tx.send_replace(true);
    let mut queue_peak = 0u64;
    let mut sampled = Instant::now();
    while receiver.records() < TOTAL as u64 {
        if started.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            bail!("{} of {TOTAL} records after 10 minutes", receiver.records());
        }
        // Each scrape costs the gateway ~0.1 ms of CPU (the whole registry rendered): every 20 ms that was 2% of
        // its CPU a flow in a profile, where Prometheus scrapes every 15 s or more.
        if sampled.elapsed() >= QUEUE_SAMPLE {
            sampled = Instant::now();
            queue_peak = queue_peak.max(queue_bytes(admin).await.unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let done = usage(pid, ticks)?;
    // What the gateway gives back once the burst is over (CPU is counted up to `done`, so this wait costs none).
    tokio::time::sleep(AFTER_BURST).await;
    let after = usage(pid, ticks)?;
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    if let Some(keep) = std::env::var_os("FLOWGATE_E2E_LOG") {
        // The gateway's stderr, e.g. with `_RJEM_MALLOC_CONF=stats_print:true` for the allocator's own figures at exit.
        std::fs::copy(&log, keep)?;
    }
    stop.cancel();
    receiver.stop();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    Ok(Row {
        case,
        per_bucket,
        cpu_us: (done.cpu - idle.cpu) * 1e6 / TOTAL as f64,
        rate: TOTAL as f64 / elapsed.as_secs_f64(),
        idle_mib: mib(idle.rss),
        idle_cpu_pct: idle_cpu_ns as f64 / 1e9 * 100.0 / IDLE_WINDOW.as_secs_f64(),
        peak_mib: mib(done.hwm),
        queue_mib: mib(queue_peak),
        after_mib: mib(after.rss),
    })
}

/// `flowgate_queue_bytes` from the gateway's metrics.
async fn queue_bytes(admin: std::net::SocketAddr) -> Option<u64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("flowgate_queue_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Whether a variable of this process reaches the gateway: the allocator's and the gateway's own, not the bench's.
fn passed_through(name: &str) -> bool {
    let bench = name.starts_with("FLOWGATE_E2E_") || name.starts_with("FLOWGATE_BENCH_");
    name == allocator::CONF_VAR || (name.starts_with("FLOWGATE_") && !bench)
}

/// `TOTAL` flows in buckets of `per_bucket`, timed from now on (the gateway's clock follows the stream's).
fn buckets(per_bucket: usize) -> Vec<Vec<FlowResult>> {
    let flow_gen = FlowGen { seed: 13, keys: per_bucket };
    let now = flowgate::source::unix_now();
    let first = now.div_euclid(15) * 15;
    (0..TOTAL.div_ceil(per_bucket))
        .map(|b| {
            let start = first + 15 * b as i64;
            (0..per_bucket.min(TOTAL - b * per_bucket))
                .map(|i| FlowResult { id: i as i64 + 1, flow: Some(flow_gen.flow(i, start)) })
                .collect()
        })
        .collect()
}

/// Split -> render -> encode on one core, best of 3, for each compression: what the gateway's data path costs (records
/// rendered into a request's buffer, which becomes the request, as a chunk that makes a whole request does).
fn pure_path() -> Vec<(Compression, f64)> {
    const FLOWS: usize = 20_000;
    let flow_gen = FlowGen { seed: 13, keys: FLOWS };
    let wire: Vec<Bytes> = (0..FLOWS)
        .map(|i| Bytes::from(FlowResult { id: i as i64, flow: Some(flow_gen.flow(i, 1_800_000_000)) }.encode_to_vec()))
        .collect();
    [Compression::None, Compression::Gzip, Compression::Zstd]
        .into_iter()
        .map(|c| {
            let encoder = RequestEncoder::new(resource(&[]), c);
            let best = (0..3)
                .map(|_| {
                    let t = Instant::now();
                    for chunk in wire.chunks(512) {
                        let now = unix_nanos();
                        let mut records =
                            EncodedRecords::for_request(encoder.head_room(), chunk.len(), chunk.len() * 1536);
                        for w in chunk {
                            let wire = flow_of_result(w.clone()).unwrap().unwrap().wire;
                            records.push_flow(&wire, now, std::iter::empty()).unwrap();
                        }
                        std::hint::black_box(encoder.finish_records(records));
                    }
                    t.elapsed()
                })
                .min()
                .expect("three rounds");
            (c, best.as_nanos() as f64 / FLOWS as f64)
        })
        .collect()
}

/// The same allocator as the `flowgate` binary.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
