//! Everything wasmtime: the engine, compiled transform components, and instances that process batches.
//!
//! Bounds every guest runs inside (style: limits are documented where they are defined):
//! - an epoch deadline per call, driven by one ticker thread ([`EpochTicker`]), started with the first component;
//! - a linear-memory cap per instance ([`wasmtime::StoreLimits`]);
//! - WASI preview 2 with nothing granted: no preopened directories, no network, no environment, no arguments;
//!   stdout/stderr go to the host log, line by line, rate-limited.
//!
//! A WIT-level failure (`outcome::error`, `init` returning an error) is an expected outcome; a trap (panic,
//! deadline, memory cap, a broken contract) kills the Store and is recovered by instantiating again from the
//! [`wasmtime::component::InstancePre`], which costs tens of microseconds.

mod attr;
mod batch;
mod bindings;
mod convert;
mod guest_io;
mod host;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use attr::{Attr, AttrKey, AttrValue};
pub use batch::{BatchAnnotation, BatchFlow, BatchValues, Change, FlowBatch, FlowIndex, apply, splice};
pub use bindings::types::{Annotations, Attribute, Body, Outcome, Output, Severity, Value};
pub use convert::{flow_from_wit, flow_to_wit};

use crate::proto::Flow;
use crate::telemetry::Metrics;

/// How often the epoch advances: the granularity of guest deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Default time one `process` call may take.
pub const DEFAULT_DEADLINE_MS: u64 = 200;
/// Default linear-memory cap of one instance.
pub const DEFAULT_MEMORY_MB: u64 = 64;

/// Why a component could not be loaded: returned by [`Runtime::load`], before any guest code runs.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{name}: not a WebAssembly component ({detail})")]
    NotAComponent { name: String, detail: String },
    #[error("{name}: does not implement the flowgate:transform/transformer world: {detail}")]
    WrongWorld { name: String, detail: String },
}

/// Why a guest failed: returned by [`LoadedComponent::instantiate`] and [`Instance::process`].
#[derive(Debug, thiserror::Error)]
pub enum GuestFailure {
    #[error("{name}: init refused the configuration: {message}")]
    InitRefused { name: String, message: String },
    #[error("{name}: trapped: {detail}")]
    Trap { name: String, kind: TrapKind, detail: String },
}

impl GuestFailure {
    /// The bounded label of the transform-error metric.
    pub fn event(&self) -> crate::telemetry::TransformError {
        use crate::telemetry::TransformError as E;
        match self {
            GuestFailure::InitRefused { .. } => E::Init,
            GuestFailure::Trap { kind: TrapKind::Deadline, .. } => E::Deadline,
            GuestFailure::Trap { kind: TrapKind::Memory, .. } => E::Memory,
            GuestFailure::Trap { kind: TrapKind::Trap, .. } => E::Trap,
        }
    }
}

/// Why a guest call trapped. A bounded set, used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrapKind {
    /// The per-call deadline passed.
    Deadline,
    /// The memory cap was hit.
    Memory,
    /// Anything else: a panic, `unreachable`, a broken contract.
    Trap,
}

impl TrapKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrapKind::Deadline => "deadline",
            TrapKind::Memory => "memory",
            TrapKind::Trap => "trap",
        }
    }
}

/// The one engine, shared by every component, with the ticker that drives deadlines.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<GuestState>>,
    /// Started with the first component: a gateway without transforms has no thread waking 200 times a second.
    ticker: Arc<OnceLock<EpochTicker>>,
}

impl Runtime {
    pub fn new() -> anyhow::Result<Self> {
        let mut config = Config::new();
        // Measured: an empty call costs 122 ns instead of 439 ns without the component-model-async machinery.
        config.concurrency_support(false);
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // Keep each instance's reservation small: memories grow under the StoreLimits cap.
        config.memory_reservation(1 << 30);
        config.memory_guard_size(64 << 10);
        // Compilation runs on the calling thread: on rayon's pool, its threads kept the compiler's memory for the
        // life of the process (the chain's idle RSS 54 -> 38 MiB, peak 119-130 -> 94 MiB in `make bench-e2e`).
        // Compiling takes longer (off the data path: at startup, and beside the serving chain on reload).
        config.parallel_compilation(false);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // The batch resource needs the Store's resource table; the host functions only their own state.
        bindings::types::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s: &mut GuestState| s)?;
        bindings::host::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s: &mut GuestState| {
            &mut s.host
        })?;
        Ok(Runtime { engine, linker: Arc::new(linker), ticker: Arc::default() })
    }

    /// Compiles `bytes` (never a precompiled artifact) and links it against the world.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedComponent, LoadError> {
        self.compile(name, bytes, hex::encode(Sha256::digest(bytes)))
    }

    /// As [`Runtime::load`], but takes the compiled code of one of `compiled` with the same bytes instead of
    /// compiling them again (a reload where this component did not change: compiling a Python or JavaScript
    /// component takes half a minute of a core). Answers whether it compiled.
    pub fn load_reusing<'a>(
        &self,
        name: &str,
        bytes: &[u8],
        compiled: impl IntoIterator<Item = &'a LoadedComponent>,
    ) -> Result<(LoadedComponent, bool), LoadError> {
        let digest = hex::encode(Sha256::digest(bytes));
        let same = compiled.into_iter().find(|c| c.digest == digest && Engine::same(&c.engine, &self.engine));
        match same {
            Some(c) => Ok((LoadedComponent { name: name.to_string(), ..c.clone() }, false)),
            None => Ok((self.compile(name, bytes, digest)?, true)),
        }
    }

    fn compile(&self, name: &str, bytes: &[u8], digest: String) -> Result<LoadedComponent, LoadError> {
        self.ticker.get_or_init(|| EpochTicker::start(self.engine.clone()));
        let component = Component::new(&self.engine, bytes).map_err(|e| {
            let detail = format!("{e:#}");
            LoadError::NotAComponent { name: name.to_string(), detail }
        })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::TransformerPre::new)
            .map_err(|e| LoadError::WrongWorld { name: name.to_string(), detail: format!("{e:#}") })?;
        Ok(LoadedComponent { name: name.to_string(), digest, pre, engine: self.engine.clone() })
    }

    /// Reads and loads a `.wasm` or `.wasm.gz` file.
    pub fn load_file(&self, name: &str, path: &Path) -> anyhow::Result<LoadedComponent> {
        let bytes = read_component(path)?;
        Ok(self.load(name, &bytes)?)
    }
}

/// A component file's bytes; `.wasm.gz` is decompressed (more fits in a 1 MiB ConfigMap).
pub fn read_component(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    use std::io::Read as _;
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::with_capacity(raw.len() * 3);
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("{} is not valid gzip", path.display()))?;
        return Ok(out);
    }
    Ok(raw)
}

/// One thread advancing the engine's epoch every [`EPOCH_TICK`]; stops when dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("flowgate-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A compiled component, ready to instantiate many times.
#[derive(Clone)]
pub struct LoadedComponent {
    pub name: String,
    /// sha256 of the component bytes, hex.
    pub digest: String,
    pre: bindings::TransformerPre<GuestState>,
    engine: Engine,
}

/// Per-instance limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub deadline: Duration,
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(DEFAULT_DEADLINE_MS),
            memory_bytes: (DEFAULT_MEMORY_MB << 20) as usize,
        }
    }
}

/// What a Store carries for its guest.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    host: host::HostState,
}

/// The Store's limits, remembering whether it refused memory: a trap after a refusal is the memory cap whatever its
/// text says, and one without is not, whatever its text says (a guest's own message may mention memory). Spin's
/// limiter records it at the same moment.
struct Limiter {
    limits: StoreLimits,
    memory_refused: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_refused = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A live instance: a Store and the guest's exports. Not shared between threads.
pub struct Instance {
    store: Store<GuestState>,
    guest: bindings::Transformer,
    limits: Limits,
    name: String,
}

impl LoadedComponent {
    /// A fresh instance, `init` called with `config`.
    pub fn instantiate(
        &self,
        config: &[(String, String)],
        limits: Limits,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Instance, GuestFailure> {
        let wasi = {
            let mut b = wasmtime_wasi::WasiCtxBuilder::new();
            b.stdout(guest_io::GuestLog::new(&self.name, "stdout"));
            b.stderr(guest_io::GuestLog::new(&self.name, "stderr"));
            b.build()
        };
        let state = GuestState {
            wasi,
            table: ResourceTable::new(),
            limits: Limiter {
                limits: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .instances(64)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_refused: false,
            },
            host: host::HostState::new(&self.name, metrics),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(limits.deadline));
        let guest = self.pre.instantiate(&mut store).map_err(|e| trap(&self.name, e, &store))?;
        let mut instance = Instance { store, guest, limits, name: self.name.clone() };
        instance.init(config)?;
        Ok(instance)
    }
}

/// Epoch ticks for `deadline`. The `+ 1`: the deadline is set between two ticks, so the first tick can come at
/// once; one more keeps a call from being cut short (it may run up to one [`EPOCH_TICK`] longer, never shorter).
fn ticks(deadline: Duration) -> u64 {
    (deadline.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64 + 1
}

fn trap(name: &str, e: wasmtime::Error, store: &Store<GuestState>) -> GuestFailure {
    classify(name, e, store.data().limits.memory_refused)
}

/// A guest failure's kind: the deadline by wasmtime's own trap code, the memory cap by the limiter's flag.
fn classify(name: &str, e: wasmtime::Error, memory_refused: bool) -> GuestFailure {
    let detail = format!("{e:#}");
    let kind = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => TrapKind::Deadline,
        _ if memory_refused => TrapKind::Memory,
        _ => TrapKind::Trap,
    };
    GuestFailure::Trap { name: name.to_string(), kind, detail }
}

impl Instance {
    fn init(&mut self, config: &[(String, String)]) -> Result<(), GuestFailure> {
        self.store.set_epoch_deadline(ticks(self.limits.deadline));
        let result = self.guest.flowgate_transform_transform().call_init(&mut self.store, config);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(GuestFailure::InitRefused { name: self.name.clone(), message }),
            Err(e) => Err(trap(&self.name, e, &self.store)),
        }
    }

    /// One outcome per flow, and the changes the transform made (by position in `flows`), with the flows handed
    /// back. A trap poisons this instance: drop it and instantiate again.
    pub fn process(&mut self, flows: Vec<BatchFlow>) -> (Vec<BatchFlow>, Result<Processed, GuestFailure>) {
        self.store.set_epoch_deadline(ticks(self.limits.deadline));
        let n = flows.len();
        let table = &mut self.store.data_mut().table;
        let handle = match table.push(FlowBatch::new(flows)) {
            Ok(h) => h,
            Err(e) => {
                let detail = format!("the batch does not fit the resource table: {e}");
                return (Vec::new(), Err(GuestFailure::Trap { name: self.name.clone(), kind: TrapKind::Trap, detail }));
            }
        };
        let borrowed = wasmtime::component::Resource::<FlowBatch>::new_borrow(handle.rep());
        let result = self.guest.flowgate_transform_transform().call_process(&mut self.store, borrowed);
        // Taken back whatever happened: the flows go on (or to the next bisection) without a copy.
        let taken = self.store.data_mut().table.delete(handle);
        let (flows, changes, annotations) = match taken {
            Ok(batch) => batch.finish(),
            Err(e) => {
                let detail = format!("the batch resource was lost: {e}");
                return (Vec::new(), Err(GuestFailure::Trap { name: self.name.clone(), kind: TrapKind::Trap, detail }));
            }
        };
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(e) => return (flows, Err(trap(&self.name, e, &self.store))),
        };
        if outcomes.len() != n {
            let detail = format!("returned {} outcomes for {n} flows", outcomes.len());
            return (flows, Err(GuestFailure::Trap { name: self.name.clone(), kind: TrapKind::Trap, detail }));
        }
        (flows, Ok(Processed { outcomes, changes, annotations }))
    }

    /// Encodes and processes prost flows (tests and tools): the outcomes, changes applied where they pass.
    pub fn process_flows(&mut self, flows: &[Flow]) -> Result<Vec<Outcome>, GuestFailure> {
        use prost::Message as _;
        let batch: Vec<BatchFlow> = flows
            .iter()
            .map(|f| {
                let wire = bytes::Bytes::from(f.encode_to_vec());
                let index = FlowIndex::new(&wire).expect("prost encodes a valid flow");
                BatchFlow { wire, index }
            })
            .collect();
        Ok(self.process(batch).1?.outcomes)
    }
}

/// What one `process` call answered.
pub struct Processed {
    pub outcomes: Vec<Outcome>,
    /// (position in the batch, change), in the order the transform made them.
    pub changes: Vec<(u32, Change)>,
    /// Attributes for every flow of the batch.
    pub annotations: Vec<BatchAnnotation>,
}

/// The WIT flow type.
pub type WitFlow = bindings::types::Flow;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cap_is_the_limiters_word_not_the_traps_text() {
        let kind = |e: wasmtime::Error, refused| match classify("t", e, refused) {
            GuestFailure::Trap { kind, .. } => kind,
            other => panic!("{other:?}"),
        };
        // A guest's own failure that talks about memory limits is a trap, not the cap.
        let text = || wasmtime::Error::msg("guest panicked: cache memory limit reached, cannot grow");
        assert_eq!(kind(text(), false), TrapKind::Trap);
        // Whatever the text, a trap after the limiter refused growth is the cap.
        assert_eq!(kind(wasmtime::Error::msg("wasm trap: unreachable"), true), TrapKind::Memory);
        assert_eq!(kind(wasmtime::Error::new(wasmtime::Trap::Interrupt), true), TrapKind::Deadline);
    }
}
