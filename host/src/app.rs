//! Wiring: builds every stage from the config, runs them over bounded channels, and cascades shutdown.
//!
//! Shutdown: the source stops reading; each later stage drains when its input closes; the batcher flushes its
//! partial batch; the exporters drain the queue. The whole drain is capped by the grace period, after which
//! whatever is still queued is counted as dropped (reason `shutdown`).

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::batch::disk::DiskQueue;
use crate::batch::{self, ExportQueue, Queue};
use crate::config::{Config, Fsync};
use crate::otlp::{RequestEncoder, resource};
use crate::sink::Exporter;
use crate::sink::metrics_push::MetricsPush;
use crate::telemetry::{DropReason, Metrics};
use crate::{admin, pipeline, reload, source, tls};

/// Chunks buffered between stages. Small on purpose: the byte-bounded export queue is where bursts wait.
const STAGE_CHANNEL_CHUNKS: usize = 4;
/// How often the OTLP endpoint's TLS files are checked for changes.
const TLS_RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the gateway until `shutdown` fires, then drains within the grace period.
pub async fn run(
    cfg: Config,
    admin_listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    for w in &cfg.warnings {
        tracing::warn!(warning = %w, "configuration");
    }
    // Fail at startup, naming the file, rather than in a reconnect loop.
    tls::client_config(&cfg.goldmane.tls, &[b"h2"]).context("Goldmane client TLS")?;
    let encoder = Arc::new(RequestEncoder::new(resource(&cfg.otlp.resource_attributes), cfg.otlp.compression));
    let exporter = Arc::new(Exporter::new(&cfg.otlp, encoder.clone(), metrics.clone()).context("OTLP exporter")?);
    // The stream cursor lets a restart resume the stream where the safe data ends: beside the persistent queue
    // (what it holds is safe), or in the state directory (what the endpoint acknowledged is safe).
    let progress = match (&cfg.queue.persistent, &cfg.state_dir) {
        (Some(p), _) => Some(Arc::new(source::Progress::new(&p.dir, p.fsync == Fsync::Always))),
        (None, Some(dir)) => {
            writable_dir(dir).with_context(|| format!("state_dir (FLOWGATE_STATE_DIR) {}", dir.display()))?;
            Some(Arc::new(source::Progress::new(dir, false)))
        }
        (None, None) => {
            tracing::info!(
                "no state directory (FLOWGATE_STATE_DIR) and no persistent queue: a restart starts the stream from now, and flows Goldmane streamed while Flowgate was down are not exported"
            );
            None
        }
    };
    let queue = match &cfg.queue.persistent {
        Some(p) => ExportQueue::Disk(DiskQueue::open(p.clone(), metrics.clone()).context("persistent queue")?),
        None => ExportQueue::Memory(
            Queue::new(cfg.queue.max_bytes, cfg.queue.max_records, metrics.clone()),
            progress.clone().map(batch::Acks::new),
        ),
    };

    let admin_shutdown = CancellationToken::new();
    let admin_addr = admin_listener.local_addr()?;
    let admin = tokio::spawn(admin::serve(admin_listener, metrics.clone(), admin_shutdown.clone()));
    tracing::info!(
        goldmane = %cfg.goldmane.uri,
        otlp = %cfg.otlp.endpoint,
        admin = %admin_addr,
        "flowgate running"
    );

    let (flow_tx, flow_rx) = mpsc::channel(STAGE_CHANNEL_CHUNKS);
    let (record_tx, record_rx) = mpsc::channel(STAGE_CHANNEL_CHUNKS);
    let pipeline_opts = transforms(&cfg, &metrics, &shutdown).await?;
    let post = pipeline_opts.post.clone();
    let source =
        tokio::spawn(source::run(cfg.goldmane.clone(), flow_tx, metrics.clone(), progress.clone(), shutdown.clone()));
    let pipeline = tokio::spawn(pipeline::run(flow_rx, record_tx, metrics.clone(), pipeline_opts));
    let batcher = tokio::spawn(batch::run(cfg.batch, encoder, record_rx, queue.clone(), progress));
    // Kubernetes rotates mounted Secrets in place: check the endpoint's TLS files every few seconds.
    // (Goldmane's are read at every connection; an open stream never needs a new handshake.)
    let otlp_tls = &cfg.otlp.tls;
    if cfg.otlp.endpoint.scheme() == "https" && (otlp_tls.ca_cert.is_some() || otlp_tls.client_cert.is_some()) {
        let (exporter, stop) = (exporter.clone(), admin_shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TLS_RELOAD_CHECK);
            while stop.run_until_cancelled(tick.tick()).await.is_some() {
                exporter.reload_tls_if_changed();
            }
        });
    }
    let workers: Vec<_> =
        (0..cfg.otlp.max_in_flight).map(|_| tokio::spawn(exporter.clone().worker(queue.clone()))).collect();
    let metrics_push = MetricsPush::new(
        post.as_ref(),
        cfg.flow_metrics.as_ref().and_then(|m| m.otlp.clone()),
        exporter.clone(),
        resource(&cfg.otlp.resource_attributes),
        cfg.otlp.compression,
        metrics.clone(),
    )
    .map(Arc::new);
    if let Some(push) = &metrics_push {
        tokio::spawn(push.clone().run(admin_shutdown.clone()));
    }

    shutdown.cancelled().await;
    tracing::info!(grace_ms = cfg.shutdown_grace.as_millis() as u64, "shutting down: draining");
    let drain = async {
        let _ = source.await;
        let _ = pipeline.await;
        let _ = batcher.await;
        queue.close();
        futures::future::join_all(workers).await;
    };
    match tokio::time::timeout(cfg.shutdown_grace, drain).await {
        Ok(()) => tracing::info!("drained; every received flow was handed to the endpoint"),
        Err(_) => {
            let kept = queue.records() as u64;
            if queue.abandon() {
                // Queued, in flight, or still in a stage before the queue.
                let lost = metrics.in_gateway();
                metrics.dropped(DropReason::Shutdown, lost);
                tracing::error!(records = lost, "grace period over with records still in the gateway; they are lost");
            } else {
                let lost = metrics.in_gateway().saturating_sub(kept);
                if lost > 0 {
                    metrics.dropped(DropReason::Shutdown, lost);
                }
                tracing::warn!(
                    kept,
                    lost,
                    "grace period over: queued records stay in the persistent queue for the next start"
                );
            }
        }
    }
    // The flow metrics' last values, now that every flow has been counted.
    if let Some(push) = &metrics_push {
        push.final_push(cfg.otlp.timeout).await;
    }
    admin_shutdown.cancel();
    let _ = admin.await;
    Ok(())
}

/// Builds the first transform chain (refusing to start if it is broken) and starts the reloader.
async fn transforms(
    cfg: &Config,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<pipeline::PipelineOptions> {
    let t = &cfg.transforms;
    let mut opts = pipeline::PipelineOptions {
        chain: Arc::default(),
        workers: t.workers,
        provenance: t.provenance,
        dead_letter: t.dead_letter_path.clone().map(|p| Arc::new(pipeline::DeadLetter::new(p))),
        post: crate::pipeline::post::Post::new(cfg.flow_metrics.clone(), cfg.aggregation, metrics.clone()),
    };
    if t.dir.is_none() && t.chain.is_none() && t.config_file.is_none() {
        // No chain: one worker renders straight from the wire; decoding for the post-chain stages takes more.
        opts.workers = if opts.post.is_some() { t.workers.min(2) } else { 1 };
        return Ok(opts);
    }
    let runtime = crate::wasm::Runtime::new().context("starting the WebAssembly runtime")?;
    let mut reloader = reload::Reloader::new(runtime, t.clone(), opts.chain.clone(), metrics.clone());
    let reloader = tokio::task::spawn_blocking(move || reload::initial(&mut reloader).map(|()| reloader)).await??;
    tokio::spawn(reload::run(reloader, shutdown.clone()));
    Ok(opts)
}

/// `flowgate check`: loads the TLS material and builds the exporter as `run` would, without connecting, and
/// describes the result. Secrets (header values) are redacted.
pub fn check(cfg: &Config) -> anyhow::Result<String> {
    tls::client_config(&cfg.goldmane.tls, &[b"h2"]).context("Goldmane client TLS")?;
    let encoder = Arc::new(RequestEncoder::new(resource(&cfg.otlp.resource_attributes), cfg.otlp.compression));
    Exporter::new(&cfg.otlp, encoder, Metrics::new()).context("OTLP exporter")?;
    Ok(report(cfg, &crate::tools::check_chain(&cfg.transforms)?))
}

/// The resolved configuration, described; secrets (header values) redacted. Reads no file.
pub fn describe(cfg: &Config) -> String {
    report(cfg, "")
}

/// The configuration, then `chain` (the chain check, when files were read), then the warnings.
fn report(cfg: &Config, chain: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let g = &cfg.goldmane;
    let _ = writeln!(out, "configuration OK");
    let _ = writeln!(out, "goldmane:  {}:{} (TLS server name {})", g.host, g.port, g.server_name);
    let _ = writeln!(out, "  ca bundle        {}", display(&g.tls.ca_cert));
    let _ = writeln!(out, "  client cert/key  {} / {}", display(&g.tls.client_cert), display(&g.tls.client_key));
    let _ = writeln!(
        out,
        "  reconnect        {} ms initial, {} ms max; start_time_gte {}; filter {}",
        g.reconnect_initial.as_millis(),
        g.reconnect_max.as_millis(),
        g.start_time_gte,
        if g.filter.is_some() { "set" } else { "none" }
    );
    let o = &cfg.otlp;
    let _ = writeln!(
        out,
        "otlp:      POST {} ({:?}, timeout {} ms, {} in flight)",
        o.endpoint,
        o.compression,
        o.timeout.as_millis(),
        o.max_in_flight
    );
    for (k, _) in &o.headers {
        let _ = writeln!(out, "  header           {k}: <redacted>");
    }
    let _ = writeln!(
        out,
        "  dead letters     {}",
        o.dead_letter_path.as_ref().map_or("off".to_string(), |p| p.display().to_string())
    );
    let _ = writeln!(
        out,
        "batch:     {} records / {} bytes / {} ms; queue {}",
        cfg.batch.max_records,
        cfg.batch.max_bytes,
        cfg.batch.delay.as_millis(),
        match &cfg.queue.persistent {
            Some(p) => format!(
                "on disk in {} ({} bytes, fsync {:?}, when full {:?})",
                p.dir.display(),
                p.max_bytes,
                p.fsync,
                p.when_full
            ),
            None => format!("in memory, {} records / {} bytes", cfg.queue.max_records, cfg.queue.max_bytes),
        }
    );
    let _ = writeln!(
        out,
        "state:     {}",
        match (&cfg.queue.persistent, &cfg.state_dir) {
            (Some(p), _) => format!("stream cursor beside the persistent queue in {}", p.dir.display()),
            (None, Some(d)) => format!("stream cursor in {} (moves with the endpoint's acknowledgements)", d.display()),
            (None, None) => "none: a restart starts the stream from now".to_string(),
        }
    );
    match &g.reconcile {
        Some(r) => {
            let _ = writeln!(
                out,
                "  reconcile        on: List each bucket {} s after it was streamed, {} s window, growth {:?}, pages of {}",
                r.passes.iter().map(|d| d.as_secs().to_string()).collect::<Vec<_>>().join("/"),
                r.window.as_secs(),
                r.growth,
                r.page_size
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  reconcile        off: flows reaching Goldmane after their bucket was streamed are not exported"
            );
        }
    }
    let _ = writeln!(out, "admin:     http://{}/metrics /healthz /readyz", cfg.admin_listen);
    match &cfg.flow_metrics {
        Some(m) => {
            let _ = writeln!(
                out,
                "flow metrics: on, {} label sets per group{}; OTLP push {}",
                m.max_series,
                m.namespaces.as_ref().map_or(String::new(), |n| format!(", {} namespaces allowed", n.len())),
                m.otlp.as_ref().map_or("off".to_string(), |o| format!(
                    "every {} ms to {}",
                    o.interval.as_millis(),
                    o.endpoint
                ))
            );
        }
        None => {
            let _ = writeln!(out, "flow metrics: off");
        }
    }
    match &cfg.aggregation {
        Some(a) => {
            let _ = writeln!(
                out,
                "aggregation: level {:?}, linger {} ms, at most {} merged records held",
                a.level,
                a.linger.as_millis(),
                a.max_groups
            );
        }
        None => {
            let _ = writeln!(out, "aggregation: off");
        }
    }
    out.push_str(chain);
    for w in &cfg.warnings {
        let _ = writeln!(out, "warning:   {w}");
    }
    out
}

/// Creates `dir` if needed and proves a file can be written in it.
fn writable_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).context("cannot create it")?;
    let probe = dir.join(".flowgate-write-test");
    std::fs::write(&probe, b"ok").context("is not writable")?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn display(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref().map_or("-".to_string(), |p| p.display().to_string())
}
