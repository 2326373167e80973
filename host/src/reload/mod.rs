//! Hot reload of the transform chain from a directory (a mounted ConfigMap) and the config file.
//!
//! A ConfigMap volume is updated by the kubelet writing a new timestamped directory, pointing `..data_tmp` at
//! it and renaming that over `..data`; the visible names are symlinks through `..data`. Watches on files die
//! at the first update, so the *directory* is watched, any event means "rescan", the visible names are re-read
//! through their links, and content hashes decide whether anything changed. A periodic resync covers missed
//! events. A changed chain is built to the side (compile, instantiate, `init`, self-test) and swapped in only
//! if all of it passes; otherwise the running chain stays, and the reason is logged and counted.
//!
//! A chain swapped in over a running one is then on probation (`transforms.rollback`): if, within the window,
//! one of its transforms fails too large a share of its flows (guest errors, traps, quarantine), the chain it
//! replaced serves again, and the new files are refused until they change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::Watcher as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ROLLBACK_FACTOR_FLOOR, RawConfig, RawEntry, RollbackConfig, TransformsConfig};
use crate::pipeline::chain::{self, EntrySpec};
use crate::pipeline::{Chain, ChainCell};
use crate::telemetry::Metrics;
use crate::wasm::{DEFAULT_DEADLINE_MS, DEFAULT_MEMORY_MB, Limits, Runtime};

/// What a reload did. Also the `outcome` label of `flowgate_transform_reloads_total` (or the refusal's kind).
#[derive(Debug)]
pub enum ReloadOutcome {
    /// Nothing changed (same files, same contents, same config).
    Unchanged,
    /// A new chain serves.
    Swapped { entries: usize },
    /// The new chain was refused; the running one stays.
    Refused(String),
    /// The chain on probation failed too often; the one it replaced serves again.
    RolledBack { transform: String },
}

/// How often a chain on probation is judged (reads a few counters).
const PROBATION_CHECK: Duration = Duration::from_millis(200);

/// A chain swapped in over a running one, watched until its window ends.
struct Probation {
    since: Instant,
    chain: Chain,
    /// What serves again if it fails, with its inputs and the share of flows its worst transform failed.
    previous: Chain,
    previous_fingerprint: Option<Fingerprint>,
    previous_ratio: f64,
}

/// The chain's inputs: every entry spec and the hash of every file it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<(String, String)>);

pub struct Reloader {
    runtime: Runtime,
    cfg: TransformsConfig,
    cell: Arc<ChainCell>,
    metrics: Arc<Metrics>,
    /// The inputs last built (or refused, or rolled back): the same inputs are not built again.
    current: Option<Fingerprint>,
    /// The inputs of the chain serving.
    serving: Option<Fingerprint>,
    generation: u64,
    probation: Option<Probation>,
}

impl Reloader {
    pub fn new(runtime: Runtime, cfg: TransformsConfig, cell: Arc<ChainCell>, metrics: Arc<Metrics>) -> Self {
        Reloader { runtime, cfg, cell, metrics, current: None, serving: None, generation: 0, probation: None }
    }

    /// Rescans and, if anything changed, builds and swaps. Blocking (compiles): call off the async threads.
    pub fn reload(&mut self) -> ReloadOutcome {
        if let Some(path) = self.cfg.config_file.clone() {
            match read_transforms_section(&path) {
                Ok(t) => {
                    self.cfg.chain = t.chain;
                    if t.dir.is_some() {
                        self.cfg.dir = t.dir;
                    }
                }
                Err(e) => return self.refused(&format!("config file {}: {e}", path.display()), "config"),
            }
        }
        let specs = match chain_specs(&self.cfg) {
            Ok(s) => s,
            Err(e) => return self.refused(&e, "read"),
        };
        let fingerprint = match fingerprint(&specs) {
            Ok(f) => f,
            Err(e) => return self.refused(&e, "read"),
        };
        if self.current.as_ref() == Some(&fingerprint) {
            return ReloadOutcome::Unchanged;
        }
        let generation = self.generation + 1;
        // The serving chain's compiled components are taken for any whose bytes did not change.
        match chain::build_reusing(&self.runtime, specs, generation, &self.cell.get()) {
            Ok((chain, compiled)) => {
                let entries = chain.entries.len();
                self.install(chain, fingerprint, generation, compiled);
                ReloadOutcome::Swapped { entries }
            }
            Err(e) => {
                let kind = e.kind();
                // Remember the refused inputs: the same broken files are not rebuilt every resync.
                self.current = Some(fingerprint);
                self.refused(&e.to_string(), kind)
            }
        }
    }

    fn install(&mut self, chain: Chain, fingerprint: Fingerprint, generation: u64, compiled: usize) {
        let reused = chain.entries.len() - compiled;
        tracing::info!(chain = %chain.provenance, generation, compiled, reused, "transform chain swapped in");
        self.metrics.transform_reload("swapped");
        self.metrics.transform_compilations.inc_by(compiled as u64);
        let previous = self.cell.get();
        // The chain to go back to: the last one that served through its window (a chain replaced while still on
        // probation never proved itself). Nothing to go back to over no chain: rolling back to none would turn a
        // failing redaction into a pass-through.
        self.probation = match (self.cfg.rollback, self.probation.take()) {
            (None, _) => None,
            (Some(_), Some(p)) => Some(Probation { since: Instant::now(), chain: chain.clone(), ..p }),
            (Some(_), None) if previous.is_empty() => None,
            (Some(_), None) => Some(Probation {
                since: Instant::now(),
                chain: chain.clone(),
                previous_ratio: worst_ratio(&previous),
                previous,
                previous_fingerprint: self.serving.clone(),
            }),
        };
        self.serve(chain, generation);
        self.current = Some(fingerprint.clone());
        self.serving = Some(fingerprint);
    }

    fn serve(&mut self, chain: Chain, generation: u64) {
        let active: Vec<(String, String)> =
            chain.entries.iter().map(|e| (e.spec.name.clone(), format!("sha256:{}", e.component.digest))).collect();
        self.metrics.set_active_chain(&active);
        self.cell.set(chain);
        self.generation = generation;
    }

    /// Whether a swapped-in chain is being watched.
    pub fn on_probation(&self) -> bool {
        self.probation.is_some()
    }

    /// Judges the chain on probation: rolls it back if one of its transforms failed too large a share of its
    /// flows, ends the probation once the window passed. Cheap (counters only).
    pub fn check_probation(&mut self, now: Instant) -> Option<ReloadOutcome> {
        let (p, rb) = (self.probation.as_ref()?, self.cfg.rollback?);
        if now.duration_since(p.since) > rb.window {
            tracing::info!(chain = %p.chain.provenance, "transform chain served through its probation");
            self.probation = None;
            return None;
        }
        let (entry, flows, failed, why) = p.chain.entries.iter().find_map(|e| {
            let (flows, failed) = e.health.counts();
            let why = judge(rb, flows, failed, p.previous_ratio)?;
            Some((e, flows, failed, why))
        })?;
        let (transform, digest) = (entry.spec.name.clone(), format!("sha256:{}", entry.component.digest));
        let p = self.probation.take().expect("checked above");
        let generation = self.generation + 1;
        tracing::error!(
            transform,
            digest,
            flows,
            failed,
            reason = why,
            refused = %p.chain.provenance,
            restored = %p.previous.provenance,
            "transform chain rolled back; the new files are refused until they change"
        );
        self.metrics.transform_reload("rolled_back");
        self.metrics.transform_rollback(&transform);
        // `current` keeps the refused inputs, so the next rescans leave them alone until a file changes.
        self.serve(p.previous.renewed(generation), generation);
        self.serving = p.previous_fingerprint;
        Some(ReloadOutcome::RolledBack { transform })
    }

    fn refused(&self, why: &str, kind: &'static str) -> ReloadOutcome {
        tracing::error!(reason = why, "transform chain refused; the running chain stays");
        self.metrics.transform_reload(kind);
        ReloadOutcome::Refused(why.to_string())
    }
}

/// Why a transform that was given `flows` and failed `failed` of them rolls its chain back, if it does.
fn judge(rb: RollbackConfig, flows: u64, failed: u64, previous_ratio: f64) -> Option<String> {
    if flows < rb.min_flows {
        return None;
    }
    let ratio = failed as f64 / flows as f64;
    if ratio > rb.max_failure_ratio {
        return Some(format!("{failed} of {flows} flows failed, over the {} allowed", rb.max_failure_ratio));
    }
    let factor = rb.factor?;
    (ratio >= ROLLBACK_FACTOR_FLOOR && ratio > factor * previous_ratio).then(|| {
        format!("{failed} of {flows} flows failed, over {factor} times the old chain's share ({previous_ratio:.4})")
    })
}

/// The largest share of its flows any transform of `chain` failed so far.
fn worst_ratio(chain: &Chain) -> f64 {
    chain
        .entries
        .iter()
        .map(|e| match e.health.counts() {
            (0, _) => 0.0,
            (flows, failed) => failed as f64 / flows as f64,
        })
        .fold(0.0, f64::max)
}

/// Entry specs from the explicit chain (relative paths resolved against `dir`), or from the directory.
pub fn chain_specs(cfg: &TransformsConfig) -> Result<Vec<EntrySpec>, String> {
    if let Some(chain) = &cfg.chain {
        return chain
            .iter()
            .map(|e| {
                let name = e.name.clone().unwrap_or_default();
                let path = e.path.clone().unwrap_or_default();
                let path = match (&cfg.dir, path.is_relative()) {
                    (Some(dir), true) => dir.join(path),
                    _ => path,
                };
                entry_spec(name, path, e)
            })
            .collect();
    }
    let Some(dir) = &cfg.dir else { return Ok(Vec::new()) };
    scan_dir(dir)
}

fn entry_spec(name: String, path: PathBuf, e: &RawEntry) -> Result<EntrySpec, String> {
    let config = e
        .config
        .iter()
        .map(|(k, v)| match v {
            serde_norway::Value::String(s) => Ok((k.clone(), s.clone())),
            serde_norway::Value::Number(n) => Ok((k.clone(), n.to_string())),
            serde_norway::Value::Bool(b) => Ok((k.clone(), b.to_string())),
            serde_norway::Value::Sequence(items) => Ok((
                k.clone(),
                items
                    .iter()
                    .map(|i| match i {
                        serde_norway::Value::String(s) => s.clone(),
                        other => serde_norway::to_string(other).unwrap_or_default().trim().to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            _ => Err(format!("{name}: config key {k:?} must be a string, number, boolean or list")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EntrySpec {
        name,
        path,
        config,
        policy: e.failure_policy.unwrap_or_default(),
        limits: Limits {
            deadline: Duration::from_millis(e.deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS).max(1)),
            memory_bytes: (e.memory_mb.unwrap_or(DEFAULT_MEMORY_MB).max(1) << 20) as usize,
        },
    })
}

/// Every visible `*.wasm` / `*.wasm.gz` in `dir`, in lexical order, with `<name>.yaml` beside it if present.
/// Names starting with `.` are the kubelet's (`..data`, `..2026_…`) and are skipped.
pub fn scan_dir(dir: &Path) -> Result<Vec<EntrySpec>, String> {
    let read =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list transforms directory {}: {e}", dir.display()))?;
    let mut components: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in read.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') {
            continue;
        }
        let name = file_name.strip_suffix(".wasm.gz").or_else(|| file_name.strip_suffix(".wasm"));
        if let Some(name) = name
            && let Some(previous) = components.insert(name.to_string(), entry.path())
        {
            return Err(format!(
                "{} and {} name the same transform {name:?}",
                previous.display(),
                entry.path().display()
            ));
        }
    }
    components
        .into_iter()
        .map(|(name, path)| {
            let yaml = dir.join(format!("{name}.yaml"));
            let raw = match std::fs::read_to_string(&yaml) {
                Ok(text) => {
                    serde_norway::from_str::<RawEntry>(&text).map_err(|e| format!("{}: {e}", yaml.display()))?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => RawEntry::default(),
                Err(e) => return Err(format!("cannot read {}: {e}", yaml.display())),
            };
            entry_spec(name, path, &raw)
        })
        .collect()
}

fn fingerprint(specs: &[EntrySpec]) -> Result<Fingerprint, String> {
    specs
        .iter()
        .map(|s| {
            let bytes =
                std::fs::read(&s.path).map_err(|e| format!("{}: cannot read {}: {e}", s.name, s.path.display()))?;
            Ok((format!("{s:?}"), hex::encode(Sha256::digest(&bytes))))
        })
        .collect::<Result<_, String>>()
        .map(Fingerprint)
}

fn read_transforms_section(path: &Path) -> Result<crate::config::RawTransforms, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    RawConfig::from_yaml(&text, path).map(|r| r.transforms).map_err(|e| e.to_string())
}

/// Builds the first chain (startup fails if it is refused: a broken redaction must not start as a pass-through).
pub fn initial(reloader: &mut Reloader) -> anyhow::Result<()> {
    match reloader.reload() {
        ReloadOutcome::Refused(why) => anyhow::bail!("transform chain: {why}"),
        ReloadOutcome::Swapped { .. } | ReloadOutcome::Unchanged | ReloadOutcome::RolledBack { .. } => Ok(()),
    }
}

/// Watches and reloads until `shutdown`.
pub async fn run(mut reloader: Reloader, shutdown: CancellationToken) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut dirs: Vec<PathBuf> = reloader.cfg.dir.iter().cloned().collect();
    if let Some(f) = &reloader.cfg.config_file
        && let Some(parent) = f.parent()
    {
        dirs.push(if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() });
    }
    for e in reloader.cfg.chain.iter().flatten() {
        if let Some(parent) = e.path.as_ref().and_then(|p| p.parent()).filter(|p| p.is_absolute()) {
            dirs.push(parent.to_path_buf());
        }
    }
    dirs.sort();
    dirs.dedup();
    let watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = tx.send(());
    });
    let _watcher = match watcher {
        Ok(mut w) => {
            for d in &dirs {
                if let Err(e) = w.watch(d, notify::RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %d.display(), error = %e, "cannot watch; relying on the periodic resync");
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no file watcher; relying on the periodic resync");
            None
        }
    };
    let (debounce, resync) = (reloader.cfg.debounce, reloader.cfg.resync_interval);
    let mut tick = tokio::time::interval(resync);
    tick.tick().await;
    let mut probe = tokio::time::interval(PROBATION_CHECK);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = probe.tick(), if reloader.on_probation() => {
                reloader.check_probation(Instant::now());
                continue;
            }
            _ = tick.tick() => {}
            Some(()) = rx.recv() => {
                // Debounce: a ConfigMap update is several events; wait for quiet.
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(debounce) => break,
                        Some(()) = rx.recv() => {}
                    }
                }
            }
        }
        reloader = match tokio::task::spawn_blocking(move || {
            let outcome = reloader.reload();
            (reloader, outcome)
        })
        .await
        {
            Ok((r, outcome)) => {
                tracing::debug!(?outcome, "transforms rescanned");
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "transform reload panicked; reloading stops");
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RB: RollbackConfig =
        RollbackConfig { window: Duration::from_secs(60), max_failure_ratio: 0.5, factor: Some(10.0), min_flows: 100 };

    #[test]
    fn a_transform_is_judged_by_its_share_of_failures_alone_or_against_the_old_chain() {
        assert_eq!(judge(RB, 99, 99, 0.0), None, "too few flows to judge");
        assert!(judge(RB, 100, 51, 0.5).unwrap().contains("over the 0.5 allowed"));
        // Against an old chain that never failed: 1% and more is too many; below the floor never is.
        assert!(judge(RB, 1_000, 10, 0.0).unwrap().contains("10 times the old chain's share"));
        assert_eq!(judge(RB, 1_000, 9, 0.0), None);
        // An old chain failing 2%: the new one may reach 20%.
        assert_eq!(judge(RB, 1_000, 200, 0.02), None);
        assert!(judge(RB, 1_000, 201, 0.02).is_some());
        assert_eq!(judge(RollbackConfig { factor: None, ..RB }, 1_000, 400, 0.0), None, "no comparison when off");
    }
}
