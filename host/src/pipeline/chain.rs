//! A transform chain: components in order, each with its configuration, failure policy and limits, built and
//! validated to the side before it may serve.

use std::path::PathBuf;
use std::sync::Arc;

use super::health::TransformHealth;
pub use crate::config::FailurePolicy;
use crate::flowgen::FlowGen;
use crate::wasm::{GuestFailure, Limits, LoadError, LoadedComponent, Outcome, Runtime};

/// One chain entry as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct EntrySpec {
    /// From config or the file name; used in metrics and logs (never from flow data).
    pub name: String,
    pub path: PathBuf,
    pub config: Vec<(String, String)>,
    pub policy: FailurePolicy,
    pub limits: Limits,
}

/// A loaded, validated entry.
#[derive(Clone)]
pub struct Entry {
    pub spec: EntrySpec,
    pub component: LoadedComponent,
    /// Shared by every worker running this chain (and only this chain: a new build starts afresh).
    pub health: Arc<TransformHealth>,
}

impl Entry {
    /// `name@sha256:<12 hex digits>`.
    pub fn provenance(&self) -> String {
        format!("{}@sha256:{}", self.spec.name, &self.component.digest[..12])
    }
}

/// A chain ready to serve. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Chain {
    pub entries: Arc<Vec<Entry>>,
    /// Changes whenever the chain does: workers re-instantiate when they see a new one.
    pub generation: u64,
    /// The provenance attribute value: every entry's `name@sha256:…`, comma-separated.
    pub provenance: Arc<str>,
    /// The live tap, called before the chain and after each stage (the gateway's; kept across reloads by
    /// [`ChainCell::set`](super::ChainCell::set)).
    pub tap: super::tap::Hub,
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The same components serving again as `generation` (a rollback): fresh instances, health and quarantine.
    pub fn renewed(&self, generation: u64) -> Chain {
        let entries = self.entries.iter().map(|e| Entry { health: Arc::default(), ..e.clone() }).collect();
        Chain { entries: Arc::new(entries), generation, ..self.clone() }
    }
}

/// Why a new chain was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{name}: cannot read {path}: {detail}")]
    Read { name: String, path: PathBuf, detail: String },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Guest(#[from] GuestFailure),
    #[error("{name}: self-test failed: {detail}")]
    SelfTest { name: String, detail: String },
}

impl ChainError {
    /// A bounded label for the reload metric.
    pub fn kind(&self) -> &'static str {
        match self {
            ChainError::Read { .. } => "read",
            ChainError::Load(LoadError::NotAComponent { .. }) => "not_a_component",
            ChainError::Load(LoadError::WrongWorld { .. }) => "wrong_world",
            ChainError::Guest(GuestFailure::InitRefused { .. }) => "init",
            ChainError::Guest(GuestFailure::Trap { .. }) => "trap",
            ChainError::SelfTest { .. } => "self_test",
        }
    }
}

/// Flows every component must process without trapping before its chain serves.
const SELF_TEST_FLOWS: usize = 32;

/// Compiles every entry, instantiates it, runs `init` and a self-test batch of sample flows. Any failure refuses
/// the whole chain (the running one stays).
pub fn build(runtime: &Runtime, specs: Vec<EntrySpec>, generation: u64) -> Result<Chain, ChainError> {
    Ok(build_reusing(runtime, specs, generation, &Chain::default())?.0)
}

/// As [`build`], taking the compiled code of `previous`'s components whose bytes did not change (each entry is
/// still instantiated with its configuration and self-tested). Answers how many components it compiled.
pub fn build_reusing(
    runtime: &Runtime,
    specs: Vec<EntrySpec>,
    generation: u64,
    previous: &Chain,
) -> Result<(Chain, usize), ChainError> {
    let samples: Vec<_> = FlowGen { seed: 0x5e1f, keys: SELF_TEST_FLOWS }.bucket(1_764_970_845);
    let mut entries = Vec::with_capacity(specs.len());
    let mut compiled = 0;
    for spec in specs {
        let bytes = crate::wasm::read_component(&spec.path).map_err(|e| ChainError::Read {
            name: spec.name.clone(),
            path: spec.path.clone(),
            detail: format!("{e:#}"),
        })?;
        let (component, fresh) =
            runtime.load_reusing(&spec.name, &bytes, previous.entries.iter().map(|e| &e.component))?;
        compiled += usize::from(fresh);
        let mut instance = component.instantiate(&spec.config, spec.limits, None)?;
        let outcomes = instance.process_flows(&samples)?;
        if let Some(bad) = outcomes.iter().find_map(|o| match o {
            Outcome::Expand(outs) if outs.len() > 1024 => Some("expands one flow into more than 1024"),
            _ => None,
        }) {
            return Err(ChainError::SelfTest { name: spec.name.clone(), detail: bad.to_string() });
        }
        entries.push(Entry { spec, component, health: Arc::default() });
    }
    let provenance = entries.iter().map(Entry::provenance).collect::<Vec<_>>().join(",");
    let chain = Chain {
        entries: Arc::new(entries),
        generation,
        provenance: provenance.into(),
        tap: super::tap::Hub::default(),
    };
    Ok((chain, compiled))
}
