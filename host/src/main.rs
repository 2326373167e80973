//! `flowgate`: parse the command line, start logging, load the config, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use flowgate::config::env::{ENV_FLOWGATE_CONFIG, ENV_FLOWGATE_LOG_FORMAT};
use flowgate::config::{self, Env};
use flowgate::telemetry::{self, LogFormat, Metrics, allocator};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "flowgate", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FLOWGATE_GIT_REV"), ")"), about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "json", env = ENV_FLOWGATE_LOG_FORMAT)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The transform chain of `test` and `replay`.
#[derive(Args)]
struct ChainArgs {
    #[arg(long, short, env = ENV_FLOWGATE_CONFIG)]
    config: Option<PathBuf>,
    /// A transforms directory (overrides the config's).
    #[arg(long)]
    transforms_dir: Option<PathBuf>,
    /// A component, in chain order (repeat); its `<name>.yaml` beside it is read if present.
    #[arg(long = "transform")]
    transforms: Vec<PathBuf>,
}

impl ChainArgs {
    fn resolve(&self) -> anyhow::Result<config::TransformsConfig> {
        Ok(config::transforms_only(self.config.as_deref(), self.transforms_dir.clone(), &self.transforms)?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Stream flows from Goldmane to the OTLP endpoint (the default job).
    Run {
        /// Optional YAML config; the old exporter's environment variables override it.
        #[arg(long, short, env = ENV_FLOWGATE_CONFIG)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and TLS material, print what would run, exit non-zero on any problem.
    Check {
        #[arg(long, short, env = ENV_FLOWGATE_CONFIG)]
        config: Option<PathBuf>,
        /// Check the configuration (file and environment) only, without reading certificates or components:
        /// for CI, where the mounted files do not exist.
        #[arg(long)]
        config_only: bool,
    },
    /// Run the transform chain over flows from a file of JSON bodies (as in Loki, one a line) and print the
    /// records, or compare them with expected records (JSON lines) and show the differences.
    Test {
        #[command(flatten)]
        chain: ChainArgs,
        /// Flows: a capture (`flowgate capture`), or one JSON body a line.
        #[arg(long)]
        input: PathBuf,
        /// Expected records, one JSON object a line (as this command prints them).
        #[arg(long)]
        expected: Option<PathBuf>,
    },
    /// Record what Goldmane streams to a capture file (flows as Goldmane sent them), with the connection settings
    /// `run` uses, or from a running gateway's admin port (`--admin`, needs `admin.tap.enabled`).
    Capture {
        #[arg(long, short, env = ENV_FLOWGATE_CONFIG)]
        config: Option<PathBuf>,
        /// A running gateway's admin address (`127.0.0.1:9090`): capture what it receives instead.
        #[arg(long)]
        admin: Option<String>,
        /// The capture file to write.
        #[arg(long, short)]
        output: PathBuf,
        /// Stop after this many flows.
        #[arg(long)]
        count: Option<u64>,
        /// Stop once the file holds this many bytes.
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration_secs: Option<u64>,
    },
    /// Run a capture (or the simulator) through a transform chain offline: records on stdout (as `flowgate test`
    /// prints them), to an OTLP endpoint, or a summary per transform.
    Replay {
        #[command(flatten)]
        chain: ChainArgs,
        /// The capture to replay.
        #[arg(long, required_unless_present = "sim", conflicts_with = "sim")]
        input: Option<PathBuf>,
        /// Replay this many flows from a simulated Goldmane instead of a capture.
        #[arg(long)]
        sim: Option<u64>,
        /// `full` (as fast as the chain goes) or `recorded` (as the flows arrived).
        #[arg(long, value_enum, default_value = "full")]
        pace: flowgate::replay::Pace,
        /// Print a summary per transform instead of the records.
        #[arg(long, conflicts_with = "otlp")]
        summary: bool,
        /// Send the records to this OTLP/HTTP logs URL instead (e.g. http://127.0.0.1:4318/v1/logs).
        #[arg(long)]
        otlp: Option<String>,
    },
    /// Watch a running gateway live through its admin port (needs `admin.tap.enabled`): the records after a
    /// stage of the chain, filtered and rate-limited.
    Tap {
        /// The gateway's admin address.
        #[arg(long, default_value = flowgate::config::DEFAULT_ADMIN_LISTEN)]
        admin: String,
        /// The stage whose output to show, `source` (flows before the chain) or `end` (what is exported: after
        /// the last stage).
        #[arg(long, default_value = flowgate::pipeline::tap::END)]
        after: String,
        /// Only records matching this expression (e.g. `action == Deny and sourceNamespace ~ prod`).
        #[arg(long)]
        filter: Option<String>,
        /// At most this many records a second (the gateway caps it at `admin.tap.max_per_second`).
        #[arg(long)]
        rate: Option<u32>,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Run a simulated Goldmane, the gateway and an OTLP receiver on loopback, printing what arrives.
    Demo {
        /// Distinct flows in every 15 s bucket.
        #[arg(long, default_value_t = 20)]
        flows_per_bucket: usize,
        /// Simulated seconds per real second (15 = one bucket a second).
        #[arg(long, default_value_t = 15.0)]
        time_scale: f64,
        /// Seconds to run; 0 runs until Ctrl-C.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// One line a batch instead of a line a flow.
        #[arg(long)]
        quiet: bool,
        /// Run the transform chain from this directory (hot-reloaded: drop a .wasm in while it runs).
        #[arg(long)]
        transforms_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = matches!(cli.command, Command::Run { .. }).then(with_allocator_settings).flatten();
    let format = match &cli.command {
        Command::Demo { .. } | Command::Capture { .. } | Command::Replay { .. } | Command::Tap { .. }
            if std::env::var_os(ENV_FLOWGATE_LOG_FORMAT).is_none() =>
        {
            LogFormat::Text
        }
        _ => cli.log_format,
    };
    telemetry::init_logging(format);
    if let Some(e) = settings {
        tracing::warn!(
            error = %e,
            "cannot execute the gateway again with {}={}: freed memory stays resident for jemalloc's default 10 s \
             (set the variable to avoid this)",
            allocator::CONF_VAR,
            allocator::GATEWAY_CONF
        );
    }
    if matches!(cli.command, Command::Run { .. }) {
        match allocator::settings() {
            Ok(a) => tracing::info!(
                background_thread = a.background_thread,
                narenas = a.narenas,
                dirty_decay_ms = a.dirty_decay_ms,
                muzzy_decay_ms = a.muzzy_decay_ms,
                "allocator settings (jemalloc; {} overrides them)",
                allocator::CONF_VAR
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read the allocator's settings"),
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let env = Env::from_process();
    let interactive = !matches!(cli.command, Command::Run { .. });
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => run(config, &env).await,
            Command::Check { config, config_only } => check(config, config_only, &env),
            Command::Test { chain, input, expected } => test(&chain, &input, expected.as_deref()),
            Command::Capture { config, admin, output, count, max_bytes, duration_secs } => {
                let bounds = flowgate::capture_cli::Bounds {
                    count,
                    bytes: max_bytes,
                    duration: duration_secs.map(Duration::from_secs),
                };
                let done = match admin {
                    Some(admin) => flowgate::capture_cli::from_admin(&admin, &output, bounds, shutdown_signal()).await,
                    None => {
                        let cfg = config::load(config.as_deref(), &env)?;
                        flowgate::capture_cli::from_goldmane(cfg.goldmane, &output, bounds, shutdown_signal()).await
                    }
                }?;
                use std::io::Write as _;
                let _ =
                    writeln!(std::io::stderr(), "{} flows, {} bytes in {}", done.flows, done.bytes, output.display());
                Ok(())
            }
            Command::Replay { chain, input, sim, pace, summary, otlp } => {
                let chain = flowgate::tools::build_chain(&chain.resolve()?)?;
                let (_, records) = match (input, sim) {
                    (Some(path), _) => flowgate::replay::load(&path)?,
                    (None, count) => flowgate::replay::from_simulator(count.unwrap_or(500), 1).await?,
                };
                let output = match (summary, otlp) {
                    (true, _) => flowgate::replay::Output::Summary,
                    (false, Some(url)) => flowgate::replay::Output::Otlp(url),
                    (false, None) => flowgate::replay::Output::Records,
                };
                let (flows, started) = (records.len(), std::time::Instant::now());
                let stages = flowgate::replay::replay(&chain, records, pace, &output, shutdown_signal()).await?;
                if summary {
                    flowgate::tools::print(&flowgate::replay::summary_text(flows, started.elapsed(), &stages))?;
                }
                Ok(())
            }
            Command::Tap { admin, after, filter, rate, count } => {
                flowgate::capture_cli::tap(&admin, &after, filter.as_deref(), rate, count, shutdown_signal()).await
            }
            Command::Demo { flows_per_bucket, time_scale, duration_secs, quiet, transforms_dir } => {
                let opts = flowgate::demo::DemoOptions {
                    flows_per_bucket,
                    time_scale,
                    duration: (duration_secs > 0).then(|| Duration::from_secs(duration_secs)),
                    quiet,
                    transforms_dir,
                };
                flowgate::demo::run(opts, &env, shutdown_signal()).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `flowgate demo | head`: the reader has what it wanted.
        Err(e) if e.chain().any(|c| c.is::<flowgate::tools::StdoutClosed>()) => ExitCode::SUCCESS,
        Err(e) => {
            // A person reads `check` and `demo`; `run` is read by a log stack.
            if interactive {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "flowgate: {e:#}");
            } else {
                tracing::error!(error = format!("{e:#}"), "flowgate failed");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(path: Option<PathBuf>, env: &Env) -> anyhow::Result<()> {
    let cfg = config::load(path.as_deref(), env)?;
    let admin = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on admin.listen {}: {e}", cfg.admin_listen))?;
    flowgate::app::run(cfg, admin, Metrics::new(), shutdown_signal()).await
}

fn check(path: Option<PathBuf>, config_only: bool, env: &Env) -> anyhow::Result<()> {
    let cfg = config::load(path.as_deref(), env)?;
    let report = if config_only { flowgate::app::describe(&cfg) } else { flowgate::app::check(&cfg)? };
    flowgate::tools::print(&report)
}

fn test(chain: &ChainArgs, input: &std::path::Path, expected: Option<&std::path::Path>) -> anyhow::Result<()> {
    use flowgate::tools::print;
    let cfg = chain.resolve()?;
    let report = flowgate::tools::test_chain(&cfg, input, expected)?;
    if expected.is_none() {
        for o in &report.outputs {
            print(&format!("{o}\n"))?;
        }
        return Ok(());
    }
    if report.diff.is_empty() {
        return print(&format!("ok: {} records as expected\n", report.outputs.len()));
    }
    print(&report.diff)?;
    anyhow::bail!("the chain's records differ from {}", expected.map(|p| p.display().to_string()).unwrap_or_default())
}

/// Cancelled on SIGTERM or SIGINT.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the SIGTERM handler");
                    let _ = ctrl_c.await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

/// jemalloc reads its settings from the environment as the process starts, before `main`, and setting them from
/// Rust takes `unsafe`, which this workspace forbids. So `run` started without [`allocator::CONF_VAR`] executes
/// itself again, once, with [`allocator::GATEWAY_CONF`] there: the same process (its id, arguments, environment
/// otherwise and open files), before any thread or file. Returns why it could not, if it could not.
fn with_allocator_settings() -> Option<std::io::Error> {
    use std::os::unix::process::CommandExt as _;
    if std::env::var_os(allocator::CONF_VAR).is_some() {
        return None;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return Some(e),
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    Some(
        std::process::Command::new(&exe).arg0(arg0).args(args).env(allocator::CONF_VAR, allocator::GATEWAY_CONF).exec(),
    )
}

/// jemalloc, run by the gateway with [`allocator::GATEWAY_CONF`]. Against mimalloc (which it replaced), in
/// alternating `flowgate-e2e` runs: the same CPU a flow within the noise (±5%), and peaks 3–4 MiB lower for
/// passthrough, 11–13 MiB for gzip and zstd and 17–18 MiB with the three-transform chain, whose idle fell 7 MiB;
/// memory goes back after a burst (32–33 MiB against 43). glibc's allocator returns large request buffers to the
/// kernel and faults them back in (measured with `flowgate-bench`).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
