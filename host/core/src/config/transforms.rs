//! `transforms`: the WASM transform chain, from a watched directory or an explicit list, and what happens to a flow
//! a transform cannot process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Problem, Problems, RawConfig};

/// Default rescan period of the transforms directory.
pub const DEFAULT_RESYNC_INTERVAL_MS: u64 = 30_000;
/// Default quiet time after a change before reloading.
pub const DEFAULT_DEBOUNCE_MS: u64 = 500;
/// How long a hot-swapped chain is on probation: its failures in that time can roll it back.
pub const DEFAULT_ROLLBACK_WINDOW_MS: u64 = 60_000;
/// Share of a transform's flows failing (guest errors, traps, quarantine) that rolls its new chain back.
pub const DEFAULT_ROLLBACK_MAX_FAILURE_RATIO: f64 = 0.5;
/// How many times the old chain's failure share the new one may reach before it is rolled back.
pub const DEFAULT_ROLLBACK_FACTOR: f64 = 10.0;
/// Below this share, the factor alone never rolls back (an old chain that never failed would make a single
/// failure of the new one a rollback).
pub const ROLLBACK_FACTOR_FLOOR: f64 = 0.01;
/// Flows a transform of the new chain must have seen before its failure share is judged.
pub const DEFAULT_ROLLBACK_MIN_FLOWS: u64 = 100;

/// The transform chain. Without `chain`, every `*.wasm` / `*.wasm.gz` in `dir` (lexical order) with an optional
/// `<name>.yaml` beside it (the same fields as a chain entry, without `name` and `path`).
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTransforms {
    /// Watched for changes (a mounted ConfigMap works: updates are picked up without a restart).
    pub dir: Option<PathBuf>,
    /// An explicit chain; the files it names are watched too.
    pub chain: Option<Vec<RawEntry>>,
    /// Threads running transforms; default: the number of cores.
    pub workers: Option<usize>,
    /// Add `flowgate.transforms` (the chain, `name@sha256:digest` each) to every record a chain shaped.
    pub provenance: Option<bool>,
    /// Where flows go under the `dead-letter` failure policy (JSON lines).
    pub dead_letter_path: Option<PathBuf>,
    /// Full rescan period, in case a change notification was missed.
    pub resync_interval_ms: Option<u64>,
    /// Quiet time after a change before reloading (a ConfigMap update touches several files).
    pub debounce_ms: Option<u64>,
    /// Rolling back a hot-swapped chain that fails.
    pub rollback: RawRollback,
}

/// After a hot swap the new chain is on probation for `window_ms`: if one of its transforms fails more than
/// `max_failure_ratio` of its flows, or more than `factor` times the share the old chain failed (and at least 1%),
/// once it has seen `min_flows`, the old chain serves again and the new files are refused until they change.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRollback {
    /// On by default (`FLOWGATE_ROLLBACK=false` turns it off).
    pub enabled: Option<bool>,
    pub window_ms: Option<u64>,
    /// Between 0 and 1 (default 0.5).
    pub max_failure_ratio: Option<f64>,
    /// At least 1 (default 10); 0 turns the comparison with the old chain off.
    pub factor: Option<f64>,
    pub min_flows: Option<u64>,
}

/// Resolved rollback settings (`None` in [`TransformsConfig`] when off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollbackConfig {
    pub window: Duration,
    pub max_failure_ratio: f64,
    /// `None`: no comparison with the old chain.
    pub factor: Option<f64>,
    pub min_flows: u64,
}

impl RawRollback {
    fn resolve(self, p: &mut Problems) -> Option<RollbackConfig> {
        if self.enabled == Some(false) {
            return None;
        }
        let max_failure_ratio = self.max_failure_ratio.unwrap_or(DEFAULT_ROLLBACK_MAX_FAILURE_RATIO);
        if !(max_failure_ratio > 0.0 && max_failure_ratio <= 1.0) {
            p.at("transforms.rollback.max_failure_ratio", format!("{max_failure_ratio} is not above 0 and at most 1"));
        }
        let factor = self.factor.unwrap_or(DEFAULT_ROLLBACK_FACTOR);
        if factor != 0.0 && !(factor >= 1.0 && factor.is_finite()) {
            p.at("transforms.rollback.factor", format!("{factor} must be at least 1 (or 0 for no comparison)"));
        }
        let window_ms = self.window_ms.unwrap_or(DEFAULT_ROLLBACK_WINDOW_MS);
        if window_ms < 1_000 {
            p.at("transforms.rollback.window_ms", format!("{window_ms} is below 1000: too short to judge a chain"));
        }
        let min_flows = self.min_flows.unwrap_or(DEFAULT_ROLLBACK_MIN_FLOWS);
        if min_flows == 0 {
            p.at("transforms.rollback.min_flows", "must be at least 1");
        }
        Some(RollbackConfig {
            window: Duration::from_millis(window_ms),
            max_failure_ratio,
            factor: (factor != 0.0).then_some(factor),
            min_flows: min_flows.max(1),
        })
    }
}

/// One transform of an explicit chain (or the contents of a `<name>.yaml` beside a component).
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawEntry {
    pub name: Option<String>,
    pub path: Option<PathBuf>,
    /// Handed to the component's `init`.
    pub config: BTreeMap<String, serde_norway::Value>,
    /// `fail-closed` (default), `fail-open` or `dead-letter`.
    pub failure_policy: Option<FailurePolicy>,
    /// Time one batch may take in this transform.
    pub deadline_ms: Option<u64>,
    /// Linear-memory cap of one instance.
    pub memory_mb: Option<u64>,
}

/// What happens to a flow a transform could not process (a guest `error` outcome, or a trap that bisection
/// pinned on this flow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Drop it and count it: a failing redaction never lets an unredacted flow out. The default.
    #[default]
    FailClosed,
    /// Pass it on unchanged by this transform, and count it.
    FailOpen,
    /// Set the original flow aside (dead-letter file) with the error and the component digest; drop it.
    DeadLetter,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailClosed => "fail-closed",
            FailurePolicy::FailOpen => "fail-open",
            FailurePolicy::DeadLetter => "dead-letter",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TransformsConfig {
    pub dir: Option<PathBuf>,
    pub chain: Option<Vec<RawEntry>>,
    pub workers: usize,
    pub provenance: bool,
    pub dead_letter_path: Option<PathBuf>,
    pub resync_interval: Duration,
    pub debounce: Duration,
    /// Off when `None`.
    pub rollback: Option<RollbackConfig>,
    /// The config file, re-read when it changes (its `transforms` section applies live).
    pub config_file: Option<PathBuf>,
}

impl RawTransforms {
    pub(super) fn resolve(self, p: &mut Problems) -> TransformsConfig {
        if let Some(chain) = &self.chain {
            let mut names = std::collections::HashSet::new();
            for (i, e) in chain.iter().enumerate() {
                let at = |field: &str| format!("transforms.chain[{i}].{field}");
                match &e.name {
                    Some(n) if !names.insert(n.clone()) => p.at(&at("name"), format!("{n:?} is used twice")),
                    Some(n) if n.is_empty() || n.contains(|c: char| c.is_whitespace() || c == ',') => {
                        p.at(&at("name"), format!("{n:?}: use letters, digits, - and _"))
                    }
                    Some(_) => {}
                    None => p.at(&at("name"), "required"),
                }
                if e.path.is_none() {
                    p.at(&at("path"), "required");
                }
            }
        }
        TransformsConfig {
            dir: self.dir,
            chain: self.chain,
            workers: self.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1),
            provenance: self.provenance.unwrap_or(true),
            dead_letter_path: self.dead_letter_path,
            resync_interval: Duration::from_millis(
                self.resync_interval_ms.unwrap_or(DEFAULT_RESYNC_INTERVAL_MS).max(100),
            ),
            debounce: Duration::from_millis(self.debounce_ms.unwrap_or(DEFAULT_DEBOUNCE_MS)),
            rollback: self.rollback.resolve(p),
            config_file: None,
        }
    }
}

/// The transforms section alone (for `flowgate test`, which needs no Goldmane or OTLP settings): from `file`,
/// with `dir` and `components` (each a `.wasm`, its `<stem>.yaml` beside it read if present) taking precedence.
pub fn transforms_only(
    file: Option<&Path>,
    dir: Option<PathBuf>,
    components: &[PathBuf],
) -> Result<TransformsConfig, ConfigError> {
    let mut raw = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                problems: vec![Problem { field: p.display().to_string(), message: format!("cannot read: {e}") }],
            })?;
            RawConfig::from_yaml(&text, p)?.transforms
        }
        None => RawTransforms::default(),
    };
    if dir.is_some() {
        raw.dir = dir;
    }
    if !components.is_empty() {
        let mut chain = Vec::new();
        for path in components {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".gz").trim_end_matches(".wasm").to_string());
            let yaml = path.with_file_name(format!("{}.yaml", name.clone().unwrap_or_default()));
            let mut entry = match std::fs::read_to_string(&yaml) {
                Ok(text) => serde_norway::from_str::<RawEntry>(&text).map_err(|e| ConfigError {
                    problems: vec![Problem { field: yaml.display().to_string(), message: e.to_string() }],
                })?,
                Err(_) => RawEntry::default(),
            };
            entry.name = name;
            entry.path = Some(path.clone());
            chain.push(entry);
        }
        raw.chain = Some(chain);
    }
    Ok(TransformsConfig {
        dir: raw.dir,
        chain: raw.chain,
        workers: 1,
        provenance: raw.provenance.unwrap_or(true),
        dead_letter_path: raw.dead_letter_path,
        resync_interval: Duration::from_millis(DEFAULT_RESYNC_INTERVAL_MS),
        debounce: Duration::from_millis(DEFAULT_DEBOUNCE_MS),
        // `flowgate test` never swaps.
        rollback: None,
        config_file: None,
    })
}
