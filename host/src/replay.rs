//! `flowgate replay`: a capture (or the simulator) through a chain, offline, at full speed or at the pace it was
//! recorded; out as records (as `flowgate test` prints them), to an OTLP endpoint, or as a summary per transform.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::capture as format;
use crate::config::{Env, RawConfig, resolve_with_env};
use crate::pipeline::{Chain, Item, Worker, chain, tap::describe, worker};
use crate::sim::{SimCerts, SimConfig, Simulator};
use crate::telemetry::{Metrics, TransformEvent};
use crate::tools::print;
use crate::wasm::AttrKey;

/// Distinct values of one added attribute tracked, at most (the summary shows `>= N` past it).
const CARDINALITY_CAP: usize = 10_000;

/// How fast flows are replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pace {
    /// As fast as the chain goes.
    Full,
    /// As they arrived when captured.
    Recorded,
}

/// Where the chain's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// JSON lines on stdout, as `flowgate test` prints them.
    Records,
    /// Per transform: in, out, dropped, errors, time per flow, attributes added and their distinct values.
    Summary,
    /// OTLP/HTTP logs to this URL (e.g. `http://127.0.0.1:4318/v1/logs`).
    Otlp(String),
}

/// A capture read from `path`.
pub fn load(path: &Path) -> anyhow::Result<(format::Header, Vec<format::Record>)> {
    let bytes =
        Bytes::from(std::fs::read(path).with_context(|| format!("cannot read the capture {}", path.display()))?);
    format::read(&bytes).with_context(|| format!("{}", path.display()))
}

/// `count` flows from the simulator (a real Goldmane stream over mTLS on loopback), as a capture would hold them.
pub async fn from_simulator(count: u64, seed: u64) -> anyhow::Result<(format::Header, Vec<format::Record>)> {
    let dir = tempfile::tempdir().context("a temporary directory for the simulator")?;
    let certs = SimCerts::generate(&dir.path().join("pki"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(SimConfig { seed, flows_per_bucket: 100, ..SimConfig::default() }, certs, listener)?;
    let mut raw = RawConfig::default();
    raw.goldmane.host = Some(sim.target());
    raw.goldmane.ca_cert_path = Some(sim.certs.ca_cert.clone());
    raw.goldmane.client_cert_path = Some(sim.certs.client_cert.clone());
    raw.goldmane.client_key_path = Some(sim.certs.client_key.clone());
    // An hour back: the simulator's history arrives at once.
    raw.goldmane.start_time_gte = Some(-3585);
    let cfg = resolve_with_env(raw, &Env::default())?;
    let file = dir.path().join("sim.cap");
    let bounds =
        crate::capture_cli::Bounds { count: Some(count), duration: Some(Duration::from_secs(60)), bytes: None };
    crate::capture_cli::from_goldmane(cfg.goldmane, &file, bounds, CancellationToken::new()).await?;
    sim.stop();
    load(&file)
}

/// One transform's figures over a replay.
#[derive(Debug, Default)]
pub struct StageSummary {
    pub name: String,
    pub flows_in: u64,
    pub flows_out: u64,
    pub dropped: u64,
    pub errors: u64,
    pub time: Duration,
    /// Attributes this stage added (absent from its input), with their distinct values.
    pub added: BTreeMap<String, HashSet<String>>,
}

/// Runs the chain one stage at a time, keeping each stage's figures.
struct Stages {
    stages: Vec<(Chain, Worker, StageSummary)>,
    metrics: Arc<Metrics>,
}

impl Stages {
    fn new(chain: &Chain) -> Self {
        let metrics = Metrics::new();
        let stages = chain
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let one = Chain { entries: Arc::new(vec![e.clone()]), generation: i as u64 + 1, ..Chain::default() };
                let summary = StageSummary { name: e.spec.name.clone(), ..StageSummary::default() };
                (one, Worker::new(metrics.clone(), None), summary)
            })
            .collect();
        Stages { stages, metrics }
    }

    fn run(&mut self, mut items: Vec<Item>) -> Vec<Item> {
        for (chain, worker, s) in &mut self.stages {
            if items.is_empty() {
                break;
            }
            let before: BTreeSet<AttrKey> =
                items.iter().flat_map(|i| i.attributes.iter().map(|(k, _)| k.clone())).collect();
            s.flows_in += items.len() as u64;
            let started = Instant::now();
            items = worker.run_items(chain, items);
            s.time += started.elapsed();
            s.flows_out += items.len() as u64;
            for item in &items {
                for (k, v) in &item.attributes {
                    if !before.contains(k) {
                        let values = s.added.entry(k.to_string()).or_default();
                        if values.len() < CARDINALITY_CAP {
                            values.insert(format!("{v:?}"));
                        }
                    }
                }
            }
        }
        items
    }

    fn finish(mut self) -> Vec<StageSummary> {
        for (_, _, s) in &mut self.stages {
            s.dropped = self.metrics.transform_flows_count(&s.name, TransformEvent::Dropped);
            s.errors =
                [chain::FailurePolicy::FailClosed, chain::FailurePolicy::FailOpen, chain::FailurePolicy::DeadLetter]
                    .into_iter()
                    .map(|p| self.metrics.transform_failures_count(&s.name, p))
                    .sum();
        }
        self.stages.into_iter().map(|(_, _, s)| s).collect()
    }
}

/// The summary as a table.
pub fn summary_text(flows: usize, elapsed: Duration, stages: &[StageSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "replayed {flows} flows in {:.3} s", elapsed.as_secs_f64());
    if stages.is_empty() {
        let _ = writeln!(out, "no transforms: every flow becomes the old exporter's record");
        return out;
    }
    let width = stages.iter().map(|s| s.name.len()).max().unwrap_or(0).max("transform".len());
    let _ = writeln!(
        out,
        "{:width$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>10}  attributes added (distinct values)",
        "transform", "in", "out", "dropped", "errors", "us/flow"
    );
    for s in stages {
        let per_flow = if s.flows_in == 0 { 0.0 } else { s.time.as_secs_f64() * 1e6 / s.flows_in as f64 };
        let added = if s.added.is_empty() {
            "-".to_string()
        } else {
            s.added
                .iter()
                .map(|(k, v)| {
                    if v.len() >= CARDINALITY_CAP {
                        format!("{k} (>={})", v.len())
                    } else {
                        format!("{k} ({})", v.len())
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "{:width$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>10.2}  {added}",
            s.name, s.flows_in, s.flows_out, s.dropped, s.errors, per_flow
        );
    }
    out
}

/// Replays `records` through `chain` to `output`, at `pace`. Returns the per-transform figures.
pub async fn replay(
    chain: &Chain,
    records: Vec<format::Record>,
    pace: Pace,
    output: &Output,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<StageSummary>> {
    let otlp = match output {
        Output::Otlp(url) => {
            let cfg = crate::config::otlp_only(url)?;
            let encoder = Arc::new(crate::otlp::RequestEncoder::new(
                crate::otlp::resource(&cfg.resource_attributes),
                cfg.compression,
            ));
            let exporter =
                crate::sink::Exporter::new(&cfg, encoder.clone(), Metrics::new()).context("OTLP exporter")?;
            Some((cfg.endpoint.clone(), encoder, exporter))
        }
        _ => None,
    };
    let mut stages = Stages::new(chain);
    let started = tokio::time::Instant::now();
    let mut rest = records.as_slice();
    while !rest.is_empty() {
        // A group: every flow due now (all of them at full speed).
        let n = match pace {
            Pace::Full => rest.len(),
            Pace::Recorded => {
                let due = Duration::from_millis(rest[0].offset_ms);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(started + due) => {}
                }
                rest.iter().take_while(|r| r.offset_ms <= rest[0].offset_ms).count()
            }
        };
        let (group, later) = rest.split_at(n);
        rest = later;
        let items = stages.run(group.iter().map(|r| Item::from_wire(r.flow.clone())).collect());
        let now = crate::pipeline::unix_nanos();
        match (output, &otlp) {
            (Output::Records, _) => {
                let mut text = String::new();
                for item in items {
                    let _ = writeln!(text, "{}", describe(&worker::record(item, 0, None)?));
                }
                print(&text)?;
            }
            (Output::Otlp(_), Some((url, encoder, exporter))) => {
                let records = items.into_iter().map(|i| worker::record(i, now, None)).collect::<Result<Vec<_>, _>>()?;
                if !records.is_empty() {
                    let encoded = encoder.encode_log_records(records);
                    exporter
                        .post_once(url, encoded.body)
                        .await
                        .map_err(|e| anyhow::anyhow!("OTLP endpoint {url}: {e}"))?;
                }
            }
            _ => {}
        }
    }
    Ok(stages.finish())
}
