//! Write Flowgate transforms in Rust.
//!
//! A transform implements [`Transform`] (or one of the shortcuts [`Filter`], [`Map`], [`FilterMap`],
//! [`FlatMap`], wrapped in [`Filtered`], [`Mapped`], [`FilterMapped`], [`FlatMapped`]) and exports it with
//! [`export!`]. It builds to a component with `cargo build --target wasm32-wasip2`, and unit-tests natively with
//! plain `cargo test`: nothing here needs a WebAssembly runtime to run.
//!
//! ```ignore
//! use flowgate_guest::{Config, Filter, Filtered, Flow, Action};
//!
//! struct DenyOnly;
//! impl Filter for DenyOnly {
//!     fn init(_: &Config) -> Result<Self, String> { Ok(DenyOnly) }
//!     fn keep(&mut self, flow: &Flow) -> bool { flow.action == Action::Deny }
//! }
//! flowgate_guest::export!(Filtered<DenyOnly>);
//! ```
//!
//! Instance reuse: one instance handles batch after batch, but the host may replace it at any time (and runs
//! several side by side). Keep state only as a cache.

#![forbid(unsafe_code)]

mod config;
mod glob;
mod pseudonym;

/// The generated bindings. Transform authors use the re-exports below, not this module.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "flowgate:transform/transformer",
        pub_export_macro: true,
        default_bindings_module: "flowgate_guest::bindings",
        generate_all,
        additional_derives: [PartialEq],
    });
}

pub use bindings::flowgate::transform::host::Level;
pub use bindings::flowgate::transform::types::{
    Action, Annotations, Attribute, Body, EndpointType, Flow, Outcome, Output, PolicyHit, PolicyKind, PolicyTrigger,
    Reporter, Severity, Value,
};
pub use config::Config;
pub use glob::{Glob, glob_match};
pub use pseudonym::pseudonymize;

/// Writes to the gateway's log, attributed to this transform (rate-limited by the host). In native unit tests
/// the line is kept in [`native::logged`].
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::flowgate::transform::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    native::LOGGED.with(|l| l.borrow_mut().push((level, message.to_string())));
}

/// Adds to the named counter (`flowgate_transform_counter_total{transform, name}`; at most 32 names). In native
/// unit tests the sum is kept in [`native::counter`].
pub fn counter_add(name: &str, delta: u64) {
    #[cfg(target_arch = "wasm32")]
    bindings::flowgate::transform::host::counter_add(name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    native::COUNTERS.with(|c| *c.borrow_mut().entry(name.to_string()).or_default() += delta);
}

/// What the host imports record when a transform runs natively (its unit tests), per thread.
#[cfg(not(target_arch = "wasm32"))]
pub mod native {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::Level;

    thread_local! {
        pub(crate) static LOGGED: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
        pub(crate) static COUNTERS: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
    }

    /// Lines logged on this thread.
    pub fn logged() -> Vec<(Level, String)> {
        LOGGED.with(|l| l.borrow().clone())
    }

    /// A counter's total on this thread.
    pub fn counter(name: &str) -> u64 {
        COUNTERS.with(|c| c.borrow().get(name).copied().unwrap_or(0))
    }
}

/// A transform: one outcome per flow.
pub trait Transform: Sized + Send + 'static {
    /// Called once per instance with the transform's configuration. An error refuses the component.
    fn init(config: &Config) -> Result<Self, String>;
    /// What becomes of `flow`. Return [`Outcome::Keep`] when nothing changed: nothing crosses back.
    fn process(&mut self, flow: Flow) -> Outcome;
}

/// Keep or drop.
pub trait Filter: Sized + Send + 'static {
    fn init(config: &Config) -> Result<Self, String>;
    fn keep(&mut self, flow: &Flow) -> bool;
}

/// Rewrite every flow.
pub trait Map: Sized + Send + 'static {
    fn init(config: &Config) -> Result<Self, String>;
    fn map(&mut self, flow: Flow) -> Flow;
}

/// Rewrite or drop.
pub trait FilterMap: Sized + Send + 'static {
    fn init(config: &Config) -> Result<Self, String>;
    fn filter_map(&mut self, flow: Flow) -> Option<Flow>;
}

/// Zero, one or several flows from one.
pub trait FlatMap: Sized + Send + 'static {
    fn init(config: &Config) -> Result<Self, String>;
    fn flat_map(&mut self, flow: Flow) -> Vec<Flow>;
}

macro_rules! adapter {
    ($wrapper:ident, $trait:ident, |$t:ident, $flow:ident| $body:expr) => {
        #[doc = concat!("A [`", stringify!($trait), "`] as a [`Transform`].")]
        pub struct $wrapper<T>(pub T);

        impl<T: $trait> Transform for $wrapper<T> {
            fn init(config: &Config) -> Result<Self, String> {
                T::init(config).map($wrapper)
            }
            fn process(&mut self, $flow: Flow) -> Outcome {
                let $t = &mut self.0;
                $body
            }
        }
    };
}

adapter!(Filtered, Filter, |t, flow| if t.keep(&flow) { Outcome::Keep } else { Outcome::Drop });
adapter!(Mapped, Map, |t, flow| replace(t.map(flow)));
adapter!(FilterMapped, FilterMap, |t, flow| t.filter_map(flow).map_or(Outcome::Drop, replace));
adapter!(FlatMapped, FlatMap, |t, flow| Outcome::Expand(
    t.flat_map(flow).into_iter().map(|flow| Output { flow, annotations: Annotations::none() }).collect()
));

/// `flow` rewritten, with no annotations.
pub fn replace(flow: Flow) -> Outcome {
    Outcome::Replace(Output { flow, annotations: Annotations::none() })
}

impl Annotations {
    /// Nothing added: attributes empty, severity and body as they were.
    pub fn none() -> Self {
        Annotations { attributes: Vec::new(), severity: None, body: None }
    }

    /// Adds an attribute.
    pub fn attr(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.push(Attribute { key: key.into(), value: value.into() });
        self
    }

    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }

    pub fn body(mut self, body: Body) -> Self {
        self.body = Some(body);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.severity.is_none() && self.body.is_none()
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}
impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::StrList(v)
    }
}

/// Runs `init` for the exported type (used by [`export!`]).
#[doc(hidden)]
pub fn __init<T: Transform>(slot: &std::sync::Mutex<Option<T>>, config: Vec<(String, String)>) -> Result<(), String> {
    let t = T::init(&Config::new(config))?;
    *slot.lock().map_err(|_| "transform state poisoned".to_string())? = Some(t);
    Ok(())
}

/// Runs `process` for the exported type (used by [`export!`]).
#[doc(hidden)]
pub fn __process<T: Transform>(slot: &std::sync::Mutex<Option<T>>, batch: Vec<Flow>) -> Vec<Outcome> {
    let mut guard = slot.lock().expect("transform state poisoned");
    let t = guard.as_mut().expect("the host calls init before process");
    batch.into_iter().map(|flow| t.process(flow)).collect()
}

/// Exports a [`Transform`] as the component's `flowgate:transform/transform` interface.
#[macro_export]
macro_rules! export {
    ($t:ty) => {
        static __FLOWGATE_STATE: ::std::sync::Mutex<Option<$t>> = ::std::sync::Mutex::new(None);
        struct __FlowgateExport;
        impl $crate::bindings::exports::flowgate::transform::transform::Guest for __FlowgateExport {
            fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> Result<(), ::std::string::String> {
                $crate::__init::<$t>(&__FLOWGATE_STATE, config)
            }
            fn process(batch: ::std::vec::Vec<$crate::Flow>) -> ::std::vec::Vec<$crate::Outcome> {
                $crate::__process::<$t>(&__FLOWGATE_STATE, batch)
            }
        }
        // Only a component exports; a native build (unit tests) keeps the exports out of its symbol table.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(__FlowgateExport with_types_in $crate::bindings);
    };
}

/// A realistic flow for unit tests of transforms.
pub fn sample_flow() -> Flow {
    Flow {
        source_name: "checkout-api-7d9f8b6c4-*".into(),
        source_namespace: "checkout".into(),
        source_type: EndpointType::WorkloadEndpoint,
        dest_name: "postgres-0-*".into(),
        dest_namespace: "payments".into(),
        dest_type: EndpointType::WorkloadEndpoint,
        dest_port: 5432,
        dest_service_name: "postgres".into(),
        dest_service_namespace: "payments".into(),
        dest_service_port_name: "pg".into(),
        dest_service_port: 5432,
        proto: "tcp".into(),
        reporter: Reporter::Src,
        action: Action::Allow,
        enforced_policies: vec![PolicyHit {
            kind: PolicyKind::CalicoNetworkPolicy,
            namespace: "payments".into(),
            name: "allow-checkout".into(),
            tier: "default".into(),
            action: Action::Allow,
            policy_index: 0,
            rule_index: 1,
            trigger: None,
        }],
        pending_policies: vec![],
        start_time: 1_764_970_845,
        end_time: 1_764_970_860,
        source_labels: vec!["app=checkout-api".into(), "team=shop".into()],
        dest_labels: vec!["app=postgres".into()],
        packets_in: 11,
        packets_out: 14,
        bytes_in: 957,
        bytes_out: 1226,
        num_connections_started: 1,
        num_connections_completed: 1,
        num_connections_live: 0,
    }
}
