//! `flowgate demo`: a simulated Goldmane, the gateway, and an OTLP receiver that prints what arrives, all on
//! loopback. With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._LOGS_ENDPOINT`) set, flows go there instead.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::env::{
    ENV_OTEL_EXPORTER_OTLP_COMPRESSION, ENV_OTEL_EXPORTER_OTLP_ENDPOINT, ENV_OTEL_EXPORTER_OTLP_HEADERS,
    ENV_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
};
use crate::config::{self, Env, RawConfig};
use crate::receiver::{self, Receiver};
use crate::sim::{SimCerts, SimConfig, Simulator};
use crate::telemetry::Metrics;
use crate::tools::print;

/// Demo settings (from the command line).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub flows_per_bucket: usize,
    pub time_scale: f64,
    /// Stop after this long; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// One line a batch instead of a line a flow.
    pub quiet: bool,
    /// A transforms directory to run the chain from (hot-reloaded).
    pub transforms_dir: Option<std::path::PathBuf>,
}

/// Runs the demo until `duration` or `shutdown`; prints a summary. Errors if a flow was lost or duplicated.
pub async fn run(opts: DemoOptions, env: &Env, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory for the demo's certificates")?;
    let certs = SimCerts::generate(dir.path())?;
    let sim_cfg =
        SimConfig { flows_per_bucket: opts.flows_per_bucket, time_scale: opts.time_scale, ..SimConfig::default() };
    let sim = Simulator::start(sim_cfg, certs.clone(), TcpListener::bind("127.0.0.1:0").await?)?;

    let external = env.get(ENV_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT).or(env.get(ENV_OTEL_EXPORTER_OTLP_ENDPOINT)).is_some();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let receiver = if external {
        None
    } else {
        Some(Receiver::start(TcpListener::bind("127.0.0.1:0").await?, receiver::accept_all(), Some(tx))?)
    };

    let mut raw = RawConfig::default();
    raw.goldmane.host = Some(sim.target());
    raw.goldmane.ca_cert_path = Some(certs.ca_cert.clone());
    raw.goldmane.client_cert_path = Some(certs.client_cert.clone());
    raw.goldmane.client_key_path = Some(certs.client_key.clone());
    raw.goldmane.reconnect_initial_ms = Some(200);
    if let Some(r) = &receiver {
        raw.otlp.endpoint = Some(format!("{}/v1/logs", r.base_url()));
    }
    raw.admin.listen = Some("127.0.0.1:0".into());
    raw.batch.delay_ms = Some(200);
    raw.transforms.dir = opts.transforms_dir.clone();
    // Only the OTLP variables apply: the Goldmane side is the simulator's.
    let otlp_env = Env::from_pairs(
        [
            ENV_OTEL_EXPORTER_OTLP_ENDPOINT,
            ENV_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
            ENV_OTEL_EXPORTER_OTLP_HEADERS,
            ENV_OTEL_EXPORTER_OTLP_COMPRESSION,
        ]
        .iter()
        .filter_map(|k| env.get(k).map(|v| (k.to_string(), v.to_string()))),
    );
    let cfg = config::resolve_with_env(raw, &otlp_env)?;
    let endpoint = cfg.otlp.endpoint.clone();

    let admin = TcpListener::bind("127.0.0.1:0").await?;
    let admin_addr = admin.local_addr()?;
    let metrics = Metrics::new();
    let gateway_stop = CancellationToken::new();
    let gateway = tokio::spawn(crate::app::run(cfg, admin, metrics.clone(), gateway_stop.clone()));

    let mut out = String::new();
    writeln!(out, "flowgate demo")?;
    writeln!(
        out,
        "  goldmane simulator  {} (mTLS, {} flows per 15 s bucket, clock x{})",
        sim.addr, opts.flows_per_bucket, opts.time_scale
    )?;
    writeln!(out, "  OTLP endpoint       {endpoint}{}", if external { "" } else { " (embedded receiver)" })?;
    writeln!(out, "  metrics and probes  http://{admin_addr}/metrics  /healthz  /readyz")?;
    match opts.duration {
        Some(d) => writeln!(out, "  running for {} s (Ctrl-C to stop early)\n", d.as_secs())?,
        None => writeln!(out, "  running until Ctrl-C\n")?,
    }
    print(&out)?;

    let deadline = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut seen: HashSet<(String, i64)> = HashSet::new();
    let mut shown_body = false;
    let mut duplicates = 0usize;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = shutdown.cancelled() => break,
            Some(request) = rx.recv() => {
                if !shown_body && let Some(body) = receiver::bodies(std::slice::from_ref(&request)).first() {
                    shown_body = true;
                    let pretty = serde_json::from_str::<serde_json::Value>(body)
                        .and_then(|v| serde_json::to_string_pretty(&v))
                        .unwrap_or_else(|_| body.clone());
                    let record = request.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records).next();
                    let (severity, attributes) = record
                        .map(|r| (r.severity_text.clone(), r.attributes.iter().map(|a| a.key.as_str()).collect::<Vec<_>>().join(", ")))
                        .unwrap_or_default();
                    print(&format!("the first record's body, as Loki and SIEM parsers see it (severity {severity}):\n{pretty}\n\n"))?;
                    if !attributes.is_empty() {
                        print(&format!("its attributes: {attributes}\n\n"))?;
                    }
                    print("bucket     action proto source -> destination:port (reporter) bytes in/out\n")?;
                }
                print(&describe(&request, !opts.quiet, &mut seen, &mut duplicates))?;
            }
        }
    }
    gateway_stop.cancel();
    gateway.await.context("gateway task")??;
    while let Ok(request) = rx.try_recv() {
        print(&describe(&request, !opts.quiet, &mut seen, &mut duplicates))?;
    }
    sim.stop();

    let mut summary = String::new();
    writeln!(summary, "\nsummary")?;
    writeln!(summary, "  flows sent by the simulator    {}", sim.sent())?;
    writeln!(summary, "  flows received by the gateway  {}", metrics.flows_received.get())?;
    writeln!(summary, "  flows exported                 {}", metrics.flows_exported.get())?;
    if let Some(r) = &receiver {
        r.stop();
        writeln!(summary, "  distinct flows at the receiver {} (duplicates: {duplicates})", seen.len())?;
    }
    print(&summary)?;
    if receiver.is_some() {
        anyhow::ensure!(duplicates == 0, "the receiver got {duplicates} duplicate flows");
        anyhow::ensure!(
            opts.transforms_dir.is_some() || seen.len() as u64 == sim.sent(),
            "the simulator sent {} flows but the receiver got {}",
            sim.sent(),
            seen.len()
        );
    }
    Ok(())
}

/// One line a flow (verbose) or a line a request.
fn describe(
    request: &ExportLogsServiceRequest,
    verbose: bool,
    seen: &mut HashSet<(String, i64)>,
    duplicates: &mut usize,
) -> String {
    let mut text = String::new();
    let bodies = receiver::bodies(std::slice::from_ref(request));
    let mut denies = 0;
    for body in &bodies {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let key = &v["Key"];
        let start: i64 = v["startTime"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        if !seen.insert((key.to_string(), start)) {
            *duplicates += 1;
        }
        let action = key["action"].as_str().unwrap_or("?");
        if action == "Deny" {
            denies += 1;
        }
        if verbose {
            let _ = writeln!(
                text,
                "{start} {action:<6} {proto:<5} {sns}/{sname} -> {dns}/{dname}:{port} ({rep}) {bin}/{bout}",
                proto = key["proto"].as_str().unwrap_or("-"),
                sns = key["sourceNamespace"].as_str().unwrap_or("-"),
                sname = key["sourceName"].as_str().unwrap_or("-"),
                dns = key["destNamespace"].as_str().unwrap_or("-"),
                dname = key["destName"].as_str().unwrap_or("-"),
                port = key["destPort"].as_str().unwrap_or("-"),
                rep = key["reporter"].as_str().unwrap_or("-"),
                bin = v["bytesIn"].as_str().unwrap_or("0"),
                bout = v["bytesOut"].as_str().unwrap_or("0"),
            );
        }
    }
    if !verbose && let Some(first) = bodies.first() {
        let _ = writeln!(
            text,
            "received {} flows ({} denied); first: {}",
            bodies.len(),
            denies,
            first.chars().take(160).collect::<String>()
        );
    }
    text
}
