//! `flowgate capture` and `flowgate tap`: record what Goldmane streams to a capture file (from Goldmane with the
//! settings `run` uses, or from a running gateway's admin port), and watch a running gateway live.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::capture as format;
use crate::config::GoldmaneConfig;
use crate::telemetry::Metrics;
use crate::tools::print;

/// When a capture stops (the first bound reached; none: until Ctrl-C).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    pub count: Option<u64>,
    pub bytes: Option<u64>,
    pub duration: Option<Duration>,
}

impl Bounds {
    fn reached(&self, records: u64, bytes: u64, elapsed: Duration) -> bool {
        self.count.is_some_and(|c| records >= c)
            || self.bytes.is_some_and(|b| bytes >= b)
            || self.duration.is_some_and(|d| elapsed >= d)
    }
}

/// What a capture wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    pub flows: u64,
    pub bytes: u64,
}

/// A progress line on stderr, redrawn at most four times a second, only when stderr is a terminal.
struct Progress {
    on: bool,
    started: Instant,
    drawn: Instant,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Progress { on: std::io::stderr().is_terminal(), started: now, drawn: now }
    }

    fn show(&mut self, what: &str, force: bool) {
        if !self.on || (!force && self.drawn.elapsed() < Duration::from_millis(250)) {
            return;
        }
        self.drawn = Instant::now();
        let _ = write!(std::io::stderr(), "\r\x1b[K{what} ({:.1} s)", self.started.elapsed().as_secs_f64());
    }

    fn done(&self) {
        if self.on {
            let _ = writeln!(std::io::stderr());
        }
    }
}

fn create(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot create the capture file {}", path.display()))?;
    Ok(std::io::BufWriter::new(f))
}

fn header(source: String) -> format::Header {
    format::Header {
        version: format::VERSION,
        started_unix_ms: crate::pipeline::unix_nanos() / 1_000_000,
        source,
        writer: concat!("flowgate ", env!("CARGO_PKG_VERSION")).to_string(),
    }
}

/// Captures from Goldmane with `cfg` (the settings `run` uses; reconciliation off: the capture holds what the
/// stream sent) into `out`, until a bound is reached or `shutdown` fires.
pub async fn from_goldmane(
    mut cfg: GoldmaneConfig,
    out: &Path,
    bounds: Bounds,
    shutdown: CancellationToken,
) -> anyhow::Result<Captured> {
    cfg.reconcile = None;
    crate::tls::client_config(&cfg.tls, &[b"h2"]).context("Goldmane client TLS")?;
    let mut w = format::Writer::new(create(out)?, &header(cfg.uri.to_string()))
        .with_context(|| format!("writing {}", out.display()))?;
    let (tx, mut rx) = mpsc::channel(4);
    let stop = shutdown.child_token();
    let source = tokio::spawn(crate::source::run(cfg, tx, Metrics::new(), None, stop.clone()));
    let started = Instant::now();
    let mut progress = Progress::new();
    let deadline = bounds.duration.map(|d| tokio::time::Instant::now() + d);
    'read: while !bounds.reached(w.records, w.bytes, started.elapsed()) {
        let chunk = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(c) => c,
                Err(_) => break,
            },
            None => rx.recv().await,
        };
        let Some(chunk) = chunk else { break };
        for flow in chunk.flows {
            w.write(started.elapsed().as_millis() as u64, &flow.wire)
                .with_context(|| format!("writing {}", out.display()))?;
            if bounds.reached(w.records, w.bytes, started.elapsed()) {
                break 'read;
            }
        }
        progress.show(&format!("captured {} flows, {} bytes", w.records, w.bytes), false);
    }
    stop.cancel();
    drop(rx);
    let _ = source.await;
    let captured = Captured { flows: w.records, bytes: w.bytes };
    progress.show(&format!("captured {} flows, {} bytes", w.records, w.bytes), true);
    progress.done();
    w.finish().with_context(|| format!("writing {}", out.display()))?;
    Ok(captured)
}

/// `http://host:port` for an admin address given as `host:port` or a URL.
fn admin_url(admin: &str, path: &str) -> String {
    let base = if admin.contains("://") { admin.trim_end_matches('/').to_string() } else { format!("http://{admin}") };
    format!("{base}{path}")
}

async fn admin_get(admin: &str, path: &str) -> anyhow::Result<reqwest::Response> {
    let url = admin_url(admin, path);
    crate::tls::install_default_provider();
    let response = reqwest::Client::builder()
        .build()
        .context("HTTP client")?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway's admin port at {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        anyhow::bail!("the gateway refused {url}: HTTP {status}: {}", text.trim());
    }
    Ok(response)
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref().map(|v| {
                format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC))
            })
        })
        .collect();
    if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
}

/// Captures from a running gateway's admin port (`/capture`: the flows it receives from now on).
pub async fn from_admin(
    admin: &str,
    out: &Path,
    bounds: Bounds,
    shutdown: CancellationToken,
) -> anyhow::Result<Captured> {
    let path = format!(
        "/capture{}",
        query(&[
            ("count", bounds.count.map(|c| c.to_string())),
            ("bytes", bounds.bytes.map(|b| b.to_string())),
            ("duration_ms", bounds.duration.map(|d| d.as_millis().to_string())),
        ])
    );
    let mut response = admin_get(admin, &path).await?;
    let mut file = create(out)?;
    let mut progress = Progress::new();
    let mut bytes = 0u64;
    loop {
        let chunk = tokio::select! {
            _ = shutdown.cancelled() => break,
            c = response.chunk() => c.with_context(|| format!("reading the capture from {admin}"))?,
        };
        let Some(chunk) = chunk else { break };
        file.write_all(&chunk).with_context(|| format!("writing {}", out.display()))?;
        bytes += chunk.len() as u64;
        progress.show(&format!("captured {bytes} bytes"), false);
    }
    file.flush().with_context(|| format!("writing {}", out.display()))?;
    drop(file);
    progress.done();
    // Count what arrived (and check it reads back).
    let data = bytes::Bytes::from(std::fs::read(out).with_context(|| format!("reading {}", out.display()))?);
    let (_, records) = format::read(&data).with_context(|| format!("the capture from {admin} is damaged"))?;
    Ok(Captured { flows: records.len() as u64, bytes })
}

/// Watches a running gateway: records after `after` (a stage, or `source`), matching `filter`, at most `rate` a
/// second, printed as `flowgate test` prints them; skipped counts go to stderr. Stops after `limit` records, or
/// when `shutdown` fires or the gateway goes away.
pub async fn tap(
    admin: &str,
    after: &str,
    filter: Option<&str>,
    rate: Option<u32>,
    limit: Option<u64>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let path = format!(
        "/tap{}",
        query(&[
            ("after", Some(after.to_string())),
            ("filter", filter.map(str::to_string)),
            ("rate", rate.map(|r| r.to_string())),
        ])
    );
    let mut response = admin_get(admin, &path).await?;
    let (mut shown, mut pending) = (0u64, Vec::<u8>::new());
    loop {
        let chunk = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            c = response.chunk() => c.with_context(|| format!("reading the tap from {admin}"))?,
        };
        let Some(chunk) = chunk else { return Ok(()) };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(record) = line.strip_prefix("record ") {
                print(record)?;
                shown += 1;
                if limit.is_some_and(|l| shown >= l) {
                    return Ok(());
                }
            } else if let Some(n) = line.strip_prefix("skipped ") {
                let _ = writeln!(std::io::stderr(), "flowgate tap: {} matching records skipped (rate limit)", n.trim());
            }
        }
    }
}
