//! Wiring, as linkerd's `main` does it: [`build`] makes every stage from the config (whatever can fail fails
//! there), then [`Gateway::run`] runs them over bounded channels and cascades shutdown.
//!
//! Shutdown: the source stops reading; each later stage drains when its input closes; the batcher flushes its
//! partial batch; the exporters drain the queue. The whole drain is capped by the grace period, after which
//! whatever is still queued is counted as dropped (reason `shutdown`).

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::disk::DiskQueue;
use crate::batch::{self, ExportQueue, Queue};
use crate::config::env::ENV_FLOWGATE_STATE_DIR;
use crate::config::{Config, Fsync};
use crate::dead_letter::DeadLetterStream;
use crate::otlp::{RequestEncoder, resource};
use crate::sink::Exporter;
use crate::sink::metrics_push::MetricsPush;
use crate::telemetry::{DropReason, Metrics};
use crate::{admin, pipeline, reload, source, tls};

/// Chunks buffered between stages. Small on purpose: the byte-bounded export queue is where bursts wait.
const STAGE_CHANNEL_CHUNKS: usize = 2;
/// How often the OTLP endpoint's TLS files are checked for changes.
const TLS_RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`build`] prepares for: the gateway itself, or `flowgate check` beside a running one, which must not
/// open the persistent queue or write the state directory that one may be using.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Run,
    Check,
}

/// Everything the gateway runs with, built and checked: what can fail has failed here, with the file or field
/// named. Nothing runs until [`Gateway::run`].
pub struct Gateway {
    cfg: Config,
    metrics: Arc<Metrics>,
    encoder: Arc<RequestEncoder>,
    exporter: Arc<Exporter>,
    /// The export queue and the stream cursor beside it (not opened for a check).
    queue: Option<ExportQueue>,
    progress: Option<Arc<source::Progress>>,
    pipeline: pipeline::PipelineOptions,
    /// The chain's reloader, when a chain is configured (its first chain already serves).
    reloader: Option<reload::Reloader>,
    metrics_push: Option<Arc<MetricsPush>>,
    dead_letters: Option<DeadLetters>,
}

/// The dead-letter stream, when `dead_letter.endpoint` is set: the handle the data path offers to, the channel's
/// receiving end and the exporter for the endpoint.
struct DeadLetters {
    stream: Arc<DeadLetterStream>,
    rx: mpsc::Receiver<opentelemetry_proto::tonic::logs::v1::LogRecord>,
    exporter: Arc<Exporter>,
}

/// Builds every stage from the config: TLS material, the exporter, the queue and the cursor, the first transform
/// chain (refusing a broken one). Blocking (components compile here): call it off the async threads.
pub fn build(cfg: Config, metrics: Arc<Metrics>, purpose: Purpose) -> anyhow::Result<Gateway> {
    // Fail at startup, naming the file, rather than in a reconnect loop.
    tls::client_config(&cfg.goldmane.tls, &[b"h2"]).context("Goldmane client TLS")?;
    let encoder = Arc::new(RequestEncoder::new(resource(&cfg.otlp.resource_attributes), cfg.otlp.compression));
    let dead_letters = match &cfg.dead_letter {
        Some(d) => {
            let exporter = crate::sink::dead_letter::exporter(&cfg, d, metrics.clone())
                .with_context(|| format!("dead-letter exporter for {}", d.endpoint))?;
            let (stream, rx) = DeadLetterStream::channel(d.max_records, metrics.clone());
            Some(DeadLetters { stream, rx, exporter: Arc::new(exporter) })
        }
        None => None,
    };
    let mut exporter = Exporter::new(&cfg.otlp, encoder.clone(), metrics.clone()).context("OTLP exporter")?;
    if let Some(d) = &dead_letters {
        exporter = exporter.with_dead_letter_stream(d.stream.clone());
    }
    let exporter = Arc::new(exporter);
    let (queue, progress) = match purpose {
        Purpose::Run => {
            let progress = cursor(&cfg)?;
            (Some(export_queue(&cfg, &metrics, progress.clone())?), progress)
        }
        Purpose::Check => (None, None),
    };
    let (mut pipeline, reloader) = transforms(&cfg, &metrics, purpose, dead_letters.as_ref().map(|d| &d.stream))?;
    pipeline.head_room = encoder.head_room();
    let metrics_push = MetricsPush::new(
        pipeline.post.as_ref(),
        cfg.flow_metrics.as_ref().and_then(|m| m.otlp.clone()),
        exporter.clone(),
        resource(&cfg.otlp.resource_attributes),
        cfg.otlp.compression,
        metrics.clone(),
    )
    .map(Arc::new);
    Ok(Gateway { cfg, metrics, encoder, exporter, queue, progress, pipeline, reloader, metrics_push, dead_letters })
}

/// The stream cursor lets a restart resume the stream where the safe data ends: beside the persistent queue (what
/// it holds is safe), or in the state directory (what the endpoint acknowledged is safe).
fn cursor(cfg: &Config) -> anyhow::Result<Option<Arc<source::Progress>>> {
    Ok(match (&cfg.queue.persistent, &cfg.state_dir) {
        (Some(p), _) => Some(Arc::new(source::Progress::new(&p.dir, p.fsync == Fsync::Always))),
        (None, Some(dir)) => {
            writable_dir(dir).with_context(|| format!("state_dir ({ENV_FLOWGATE_STATE_DIR}) {}", dir.display()))?;
            Some(Arc::new(source::Progress::new(dir, false)))
        }
        (None, None) => {
            tracing::info!(
                "no state directory ({ENV_FLOWGATE_STATE_DIR}) and no persistent queue: a restart starts the stream from now, and flows Goldmane streamed while Flowgate was down are not exported"
            );
            None
        }
    })
}

fn export_queue(
    cfg: &Config,
    metrics: &Arc<Metrics>,
    progress: Option<Arc<source::Progress>>,
) -> anyhow::Result<ExportQueue> {
    Ok(match &cfg.queue.persistent {
        Some(p) => ExportQueue::Disk(DiskQueue::open(p.clone(), metrics.clone()).context("persistent queue")?),
        None => ExportQueue::Memory(
            Queue::new(cfg.queue.max_bytes, cfg.queue.max_records, metrics.clone()),
            progress.map(batch::Acks::new),
        ),
    })
}

/// Builds the gateway off the async threads, then runs it until `shutdown` fires and drains it.
pub async fn run(
    cfg: Config,
    admin_listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let gateway = tokio::task::spawn_blocking(move || build(cfg, metrics, Purpose::Run)).await??;
    gateway.run(admin_listener, shutdown).await
}

impl Gateway {
    /// Runs every stage until `shutdown` fires, then drains within the grace period. Every task spawned here is
    /// awaited before it returns.
    pub async fn run(self, admin_listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Gateway {
            cfg,
            metrics,
            encoder,
            exporter,
            queue,
            progress,
            mut pipeline,
            reloader,
            metrics_push,
            dead_letters,
        } = self;
        let queue = queue.context("a gateway built for a check cannot run")?;
        for w in &cfg.warnings {
            tracing::warn!(warning = %w, "configuration");
        }
        // The gateway's own metrics and traces, before any flow moves.
        let telemetry = match &cfg.telemetry {
            Some(t) => {
                let resource = resource(&cfg.otlp.resource_attributes)
                    .attributes
                    .into_iter()
                    .filter_map(|kv| match kv.value?.value? {
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => Some((kv.key, s)),
                        _ => None,
                    })
                    .collect();
                let client = telemetry_client(&cfg.otlp).context("the self-telemetry HTTP client")?;
                Some(
                    crate::telemetry::otel::start(t, &cfg.otlp, resource, client, &metrics)
                        .context("self-telemetry")?,
                )
            }
            None => None,
        };
        pipeline.tracing = telemetry.as_ref().and_then(|t| t.tracing());
        // Stopped once the data path has drained: the admin server, the TLS reload ticker, the metrics push.
        let after_drain = CancellationToken::new();
        let tasks = TaskTracker::new();
        let admin_addr = admin_listener.local_addr()?;
        tasks.spawn(admin::serve(admin_listener, metrics.clone(), pipeline.chain.clone(), after_drain.clone()));
        tracing::info!(
            goldmane = %cfg.goldmane.uri,
            otlp = %cfg.otlp.endpoint,
            admin = %admin_addr,
            "flowgate running"
        );
        if let Some(reloader) = reloader {
            tasks.spawn(reload::run(reloader, shutdown.clone()));
        }

        let (flow_tx, flow_rx) = mpsc::channel(STAGE_CHANNEL_CHUNKS);
        let (record_tx, record_rx) = mpsc::channel(STAGE_CHANNEL_CHUNKS);
        let source = tokio::spawn(source::run(
            cfg.goldmane.clone(),
            flow_tx,
            metrics.clone(),
            progress.clone(),
            shutdown.clone(),
        ));
        let pipeline = tokio::spawn(pipeline::run(flow_rx, record_tx, metrics.clone(), pipeline));
        let batcher = tokio::spawn(batch::run(cfg.batch, encoder, record_rx, queue.clone(), progress));
        // Kubernetes rotates mounted Secrets in place: check the endpoint's TLS files every few seconds.
        // (Goldmane's are read at every connection; an open stream never needs a new handshake.)
        let otlp_tls = &cfg.otlp.tls;
        if cfg.otlp.endpoint.scheme() == "https" && (otlp_tls.ca_cert.is_some() || otlp_tls.client_cert.is_some()) {
            let (exporter, stop) = (exporter.clone(), after_drain.clone());
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(TLS_RELOAD_CHECK);
                while stop.run_until_cancelled(tick.tick()).await.is_some() {
                    exporter.reload_tls_if_changed();
                }
            });
        }
        let workers: Vec<_> =
            (0..cfg.otlp.max_in_flight).map(|_| tokio::spawn(exporter.clone().worker(queue.clone()))).collect();
        if let Some(push) = &metrics_push {
            tasks.spawn(push.clone().run(after_drain.clone()));
        }
        // Told to finish once the data path has drained (rejections come until the last export).
        let dead_letters_stop = CancellationToken::new();
        let dead_letters = dead_letters.map(|d| {
            let task = crate::sink::dead_letter::run(
                d.stream.clone(),
                d.rx,
                d.exporter,
                metrics.clone(),
                dead_letters_stop.clone(),
            );
            (d.stream, tokio::spawn(task))
        });

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
                    tracing::error!(
                        records = lost,
                        "grace period over with records still in the gateway; they are lost"
                    );
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
        // The dead letters' last attempt, bounded by one request's timeout per batch still held.
        if let (Some((stream, mut task)), Some(d)) = (dead_letters, &cfg.dead_letter) {
            dead_letters_stop.cancel();
            let batches = stream.pending().div_ceil(crate::config::DEAD_LETTER_BATCH_RECORDS as u64).max(1);
            if tokio::time::timeout(d.timeout * batches as u32, &mut task).await.is_err() {
                task.abort();
                let lost = stream.pending();
                stream.settled(crate::telemetry::StreamOutcome::Shutdown, lost);
                tracing::error!(
                    records = lost,
                    "dead letters lost at shutdown: the dead-letter endpoint did not take them"
                );
            }
        }
        // The flow metrics' last values, now that every flow has been counted.
        if let Some(push) = &metrics_push {
            push.final_push(cfg.otlp.timeout).await;
        }
        // The last values and spans of the gateway's own telemetry.
        if let Some(t) = telemetry {
            // Bounded: a telemetry endpoint that hangs must not hold the exit.
            let last = tokio::task::spawn_blocking(move || t.shutdown());
            if tokio::time::timeout(cfg.otlp.timeout, last).await.is_err() {
                tracing::warn!("the gateway's own telemetry: last export still running at exit; abandoned");
            }
        }
        after_drain.cancel();
        tasks.close();
        tasks.wait().await;
        Ok(())
    }
}

/// The pipeline's options, with the first transform chain loaded and self-tested when one is configured (a
/// broken one refuses to start), and its reloader. A check leaves the chain to `tools::check_chain`.
fn transforms(
    cfg: &Config,
    metrics: &Arc<Metrics>,
    purpose: Purpose,
    dead_letters: Option<&Arc<DeadLetterStream>>,
) -> anyhow::Result<(pipeline::PipelineOptions, Option<reload::Reloader>)> {
    let t = &cfg.transforms;
    let mut opts = pipeline::PipelineOptions {
        chain: Arc::default(),
        workers: t.workers,
        provenance: t.provenance,
        dead_letter: match dead_letters {
            Some(stream) => Some(Arc::new(pipeline::DeadLetter::stream(stream.clone()))),
            None => t.dead_letter_path.clone().map(|p| Arc::new(pipeline::DeadLetter::new(p))),
        },
        post: crate::pipeline::post::Post::new(cfg.flow_metrics.clone(), cfg.aggregation, metrics.clone()),
        head_room: 0,
        tracing: None,
    };
    if cfg.tap.enabled {
        opts.chain.set_tap(pipeline::tap::Hub::new(cfg.tap.clone()));
    }
    if (t.dir.is_none() && t.chain.is_none() && t.config_file.is_none()) || purpose == Purpose::Check {
        // No chain: one worker renders straight from the wire; decoding for the post-chain stages takes more.
        opts.workers = if opts.post.is_some() { t.workers.min(2) } else { 1 };
        return Ok((opts, None));
    }
    let runtime = crate::wasm::Runtime::new().context("starting the WebAssembly runtime")?;
    let mut reloader = reload::Reloader::new(runtime, t.clone(), opts.chain.clone(), metrics.clone());
    reload::initial(&mut reloader)?;
    Ok((opts, Some(reloader)))
}

/// `flowgate check`: builds the gateway as `run` would (without opening the persistent queue or writing the state
/// directory a running gateway may use, and without connecting), checks the chain, and describes the result.
/// Secrets (header values) are redacted.
pub fn check(cfg: &Config) -> anyhow::Result<String> {
    build(cfg.clone(), Metrics::new(), Purpose::Check)?;
    Ok(report(cfg, &crate::tools::check_chain(&cfg.transforms)?))
}

/// The resolved configuration, described; secrets (header values) redacted. Reads no file.
pub fn describe(cfg: &Config) -> String {
    report(cfg, "")
}

/// "configuration OK", the configuration, then `chain` (the chain check, when files were read), then the warnings.
fn report(cfg: &Config, chain: &str) -> String {
    let mut out = format!("configuration OK\n{cfg}{chain}");
    for w in &cfg.warnings {
        out.push_str(&format!("warning:   {w}\n"));
    }
    out
}

/// The HTTP client of the gateway's own telemetry: rustls with the main endpoint's TLS files, for whichever
/// scheme the telemetry URLs turn out to have (the SDK's signal variables may name an https one).
fn telemetry_client(otlp: &crate::config::OtlpConfig) -> anyhow::Result<reqwest::Client> {
    tls::install_default_provider();
    Ok(reqwest::Client::builder()
        .timeout(otlp.timeout)
        .user_agent(concat!("flowgate/", env!("CARGO_PKG_VERSION"), " (self-telemetry)"))
        .use_preconfigured_tls(tls::client_config(&otlp.tls, &[b"http/1.1"])?)
        .build()?)
}

/// Creates `dir` if needed and proves a file can be written in it.
fn writable_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).context("cannot create it")?;
    let probe = dir.join(".flowgate-write-test");
    std::fs::write(&probe, b"ok").context("is not writable")?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}
