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
                if e.failure_policy == Some(FailurePolicy::DeadLetter) && self.dead_letter_path.is_none() {
                    p.at(&at("failure_policy"), "dead-letter needs transforms.dead_letter_path");
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
        config_file: None,
    })
}
