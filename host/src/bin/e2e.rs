//! `flowgate-e2e`: the gateway as users run it, measured end to end (figures, never asserted in tests).
//!
//! The real `flowgate` binary (release, next to this one) is fed by a stand-in Goldmane in this process that serves
//! pre-built buckets over real mTLS gRPC as fast as the gateway reads, and exports over real HTTP to a receiver
//! here that only counts records. The gateway's own CPU (utime + stime from /proc; while idle with the stream open,
//! its threads' schedstat) and memory (VmRSS before the first flow, VmHWM at the end, VmRSS after the burst) are
//! read from the child, so the stand-in's and the receiver's work is not counted.
//! Every row is also a ratio to the pure data path (split -> render -> encode on one core), measured just before
//! each of its runs. The floor's row is the gateway less its data path: this binary as the child
//! (`flowgate-e2e floor <config>`), running the gateway's own source and exporter, and posting one request rendered
//! once for every batch; what passthrough costs beyond it is its data path in place.
//!
//! `cargo build --release --bin flowgate --bin flowgate-e2e && target/release/flowgate-e2e [flows-per-bucket...]`
//! (`make bench-e2e`); `FLOWGATE_E2E_CASES=floor,passthrough` runs some cases, e.g. under
//! `perf record -e cpu-clock -g`; `FLOWGATE_E2E_RUNS=<n>` prints each figure's median over `n` runs;
//! `FLOWGATE_E2E_LOG=<file>` keeps the gateway's stderr (of the last run); the allocator's settings
//! (`_RJEM_MALLOC_CONF`) and the gateway's own `FLOWGATE_*` variables reach it.

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
    /// The gateway without its data path: its source and its exporter, posting one request rendered once.
    Floor,
    Passthrough,
    Gzip,
    Zstd,
    Chain,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Floor => "floor: source + exporter",
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
    /// The pure data path measured just before the run, and the run's CPU per flow as a multiple of it.
    pure_ns: f64,
    x_pure: f64,
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
            pure_ns: of(|r| r.pure_ns),
            x_pure: of(|r| r.x_pure),
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, config] = args.as_slice()
        && mode == "floor"
    {
        return floor(Path::new(config)).await;
    }
    let exe = std::env::current_exe()?;
    let gateway = exe.with_file_name("flowgate");
    if !gateway.exists() {
        bail!("{} is missing: cargo build --release --bin flowgate --bin flowgate-e2e", gateway.display());
    }
    let sizes: Vec<usize> = args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
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
    println!("pure: the pure data path (split -> render -> encode, one core, the row's compression) just before each");
    println!("run; x pure: the run's CPU per flow over it, run by run\n");
    let pure_input = PureInput::new();
    println!(
        "{:<30} {:>8} {:>12} {:>10} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "case",
        "flows/b",
        "CPU us/flow",
        "flows/s",
        "pure ns",
        "x pure",
        "idle MiB",
        "idle CPU%",
        "peak MiB",
        "queue MiB",
        "after MiB"
    );
    let mut rows = Vec::new();
    for &per_bucket in &sizes {
        for case in [Case::Floor, Case::Passthrough, Case::Gzip, Case::Zstd, Case::Chain] {
            if (case == Case::Chain && !chain) || !wanted(case) {
                continue;
            }
            let compression = match case {
                Case::Gzip => Compression::Gzip,
                Case::Zstd => Compression::Zstd,
                _ => Compression::None,
            };
            let mut runs = Vec::with_capacity(repeats);
            for _ in 0..repeats {
                let pure_ns = pure_input.measure(compression);
                let mut row = run(case, per_bucket, &gateway, &certs, dir.path(), &components, ticks).await?;
                (row.pure_ns, row.x_pure) = (pure_ns, row.cpu_us * 1_000.0 / pure_ns);
                runs.push(row);
            }
            let row = Row::median(runs);
            println!(
                "{:<30} {:>8} {:>12.2} {:>10.0} {:>8.0} {:>7.2} {:>10.1} {:>10.2} {:>10.1} {:>10.1} {:>10.1}",
                row.case.name(),
                row.per_bucket,
                row.cpu_us,
                row.rate,
                row.pure_ns,
                row.x_pure,
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
                // The compressor's own cost: the pure path with it less the pure path without.
                let alone = (r.pure_ns - plain.pure_ns) / 1_000.0;
                Some(format!(
                    "{:.2}x at {} (the compressor alone {:.2}x)",
                    r.cpu_us / plain.cpu_us,
                    r.per_bucket,
                    1.0 + alone / plain.cpu_us
                ))
            })
            .collect();
        if !ratios.is_empty() {
            println!("{}: CPU per flow against passthrough's: {}", case.name(), ratios.join(", "));
        }
    }
    // What of passthrough is the data path: the gateway less its floor, against the pure path of the same runs.
    for plain in rows.iter().filter(|r| r.case == Case::Passthrough) {
        if let Some(floor) = rows.iter().find(|f| f.case == Case::Floor && f.per_bucket == plain.per_bucket) {
            let pure_us = plain.pure_ns / 1_000.0;
            println!(
                "passthrough at {}: the floor {:.2} us/flow ({:.2}x the pure path), the rest {:.2} us/flow ({:.2}x)",
                plain.per_bucket,
                floor.cpu_us,
                floor.cpu_us / pure_us,
                plain.cpu_us - floor.cpu_us,
                (plain.cpu_us - floor.cpu_us) / pure_us
            );
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

/// `FLOWGATE_E2E_CASES=floor,passthrough,gzip,zstd,chain` picks cases (all by default), e.g. to profile one.
fn wanted(case: Case) -> bool {
    let Ok(list) = std::env::var("FLOWGATE_E2E_CASES") else { return true };
    let key = match case {
        Case::Floor => "floor",
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
    let mut command = match case {
        // This binary as the floor, with the allocator settings the gateway gives itself.
        Case::Floor => {
            let mut c = std::process::Command::new(std::env::current_exe()?);
            c.arg("floor").arg(&config).env_clear().env(allocator::CONF_VAR, allocator::GATEWAY_CONF);
            c
        }
        _ => {
            let mut c = std::process::Command::new(gateway);
            c.args(["run", "--config"]).arg(&config).env_clear();
            c
        }
    };
    let mut child = command
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
        pure_ns: f64::NAN,
        x_pure: f64::NAN,
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

/// The pure data path's input: flows on the wire, as the stand-in sends them.
struct PureInput {
    wire: Vec<Bytes>,
}

impl PureInput {
    const FLOWS: usize = 20_000;

    fn new() -> Self {
        let flow_gen = FlowGen { seed: 13, keys: Self::FLOWS };
        let wire = (0..Self::FLOWS)
            .map(|i| {
                Bytes::from(FlowResult { id: i as i64, flow: Some(flow_gen.flow(i, 1_800_000_000)) }.encode_to_vec())
            })
            .collect();
        PureInput { wire }
    }

    /// Split -> render -> encode on one core, the median of 5 rounds: what the gateway's data path costs, in ns a
    /// flow (records rendered into a request's buffer, which becomes the request, as a chunk that makes a whole
    /// request does). Measured before each run: this machine's speed moves by half from one minute to the next,
    /// and a ratio to a figure taken minutes earlier carries that.
    fn measure(&self, compression: Compression) -> f64 {
        let encoder = RequestEncoder::new(resource(&[]), compression);
        let mut rounds: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                for chunk in self.wire.chunks(512) {
                    let split = chunk.iter().map(|w| flow_of_result(w.clone()).unwrap().unwrap().wire);
                    std::hint::black_box(request(&encoder, chunk.len(), split));
                }
                t.elapsed()
            })
            .collect();
        rounds.sort();
        rounds[rounds.len() / 2].as_nanos() as f64 / Self::FLOWS as f64
    }
}

/// A request of `n` flows (each a `goldmane.Flow` on the wire) as the gateway's data path makes it: records rendered
/// into the request's own buffer, which becomes the request.
fn request(encoder: &RequestEncoder, n: usize, flows: impl Iterator<Item = Bytes>) -> Bytes {
    let now = unix_nanos();
    let mut records = EncodedRecords::for_request(encoder.head_room(), n, n * 1536);
    for wire in flows {
        records.push_flow(&wire, now, std::iter::empty()).expect("the stand-in's flows render");
    }
    encoder.finish_records(records).body
}

/// `flowgate-e2e floor <config>`, a child of the floor's runs: the gateway less its data path. The gateway's own
/// source (mTLS gRPC stream, resume ledger, chunks) reads the stream, and its exporter (client, headers, in-flight
/// limit) posts a request per batch of flows; every full batch is one request rendered once, from the first
/// flows (a partial batch, after a quiet 100 ms, is rendered when sent). What the gateway costs beyond this is what
/// its data path costs in place: rendering, encoding, batching and the hand-offs between them.
async fn floor(config: &Path) -> anyhow::Result<()> {
    // Its stderr is the run's log (`FLOWGATE_E2E_LOG`): a failed post is found there.
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    flowgate::tls::install_default_provider();
    let cfg = flowgate::config::load(Some(config), &flowgate::config::Env::from_process())?;
    let metrics = flowgate::telemetry::Metrics::new();
    let encoder = Arc::new(RequestEncoder::new(resource(&cfg.otlp.resource_attributes), cfg.otlp.compression));
    let exporter = Arc::new(flowgate::sink::Exporter::new(&cfg.otlp, encoder.clone(), metrics.clone())?);
    let url = reqwest::Url::parse(cfg.otlp.endpoint.as_str())?;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(cfg.otlp.max_in_flight.max(1)));
    let batch = cfg.batch.max_records;
    let (tx, mut rx) = mpsc::channel(4);
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(flowgate::source::run(cfg.goldmane, tx, metrics, None, stop));
    let render = |flows: &[Bytes]| request(&encoder, flows.len(), flows.iter().cloned());
    let mut full: Option<Bytes> = None;
    let mut pending: Vec<Bytes> = Vec::with_capacity(batch);
    loop {
        let body = match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(None) => return Ok(()),
            Ok(Some(chunk)) => {
                for flow in chunk.flows {
                    pending.push(flow.wire);
                    if pending.len() == batch {
                        let body = full.get_or_insert_with(|| render(&pending)).clone();
                        pending.clear();
                        post(&exporter, &url, &in_flight, body).await;
                    }
                }
                continue;
            }
            Err(_) if pending.is_empty() => continue,
            Err(_) => render(&pending),
        };
        pending.clear();
        post(&exporter, &url, &in_flight, body).await;
    }
}

/// Posts `body` once on its own task, within the exporter's in-flight limit.
async fn post(
    exporter: &Arc<flowgate::sink::Exporter>,
    url: &reqwest::Url,
    in_flight: &Arc<tokio::sync::Semaphore>,
    body: Bytes,
) {
    let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
    let (exporter, url) = (exporter.clone(), url.clone());
    tokio::spawn(async move {
        if let Err(e) = exporter.post_once(&url, body).await {
            tracing::warn!(error = e, "the floor's post failed");
        }
        drop(permit);
    });
}

/// The same allocator as the `flowgate` binary.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
