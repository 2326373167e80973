//! Write Flowgate transforms in Rust.
//!
//! A transform implements [`Transform`] (one [`Outcome`] per flow) or [`Filter`] (keep or drop, wrapped in
//! [`Filtered`]) and exports it with [`export!`]. It builds to a component with
//! `cargo build --target wasm32-wasip2`, and unit-tests natively with plain `cargo test`: nothing here needs a
//! WebAssembly runtime to run.
//!
//! ```ignore
//! use flowgate_guest::{Action, Config, Filter, Filtered, Flow};
//!
//! struct DenyOnly;
//! impl Filter for DenyOnly {
//!     fn init(_: &Config) -> Result<Self, String> { Ok(DenyOnly) }
//!     fn keep(&mut self, flow: &Flow<'_>) -> bool { flow.action() == Action::Deny }
//! }
//! flowgate_guest::export!(Filtered<DenyOnly>);
//! ```
//!
//! A [`Flow`] reads like a struct and costs only what is read: the first read of a field by any flow of a
//! batch fetches that field for the whole batch from the host in one call (strings once per distinct value), and
//! later reads are local. Setting a field (`flow.set_source_name(..)`) is seen by later reads of that flow and
//! sent to the host once the flow's outcome is known. Reading everything at once is [`Flow::record`].
//!
//! Instance reuse: one instance handles batch after batch, but the host may replace it at any time (and runs
//! several side by side). Keep state only as a cache.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod glob;
pub mod network;
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
    Action, Annotations, Attribute, Body, EndpointField, EndpointType, Flow as FlowRecord, IntField, LabelsField,
    Outcome, Output, PoliciesField, PolicyHit, PolicyKind, PolicyTrigger, Reporter, Severity, StringField, Value,
};
pub use bindings::flowgate::transform::types::{LabelsColumn, PoliciesColumn, StringColumn};
pub use config::Config;
pub use flow::{Flow, Flows};
pub use glob::{Glob, glob_match};
pub use pseudonym::pseudonymize;

mod flow;

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
    /// Called once per instance with the transform's configuration. An error refuses the component; so does a
    /// key the transform never read (see [`Config::refuse_unread`]).
    fn init(config: &Config) -> Result<Self, String>;
    /// What becomes of `flow`. Fields set on it pass on with [`Outcome::Keep`] and [`Outcome::Annotate`]; return
    /// `Keep` when nothing else is to be said: nothing crosses back.
    fn process(&mut self, flow: &mut Flow<'_>) -> Outcome;

    /// One outcome per flow of a batch. The default runs [`Transform::process`] on each flow; a transform that
    /// maps or decides by column overrides it, using [`Flows`]'s columns and batch annotations (one call a batch
    /// for an attribute of every flow).
    fn process_batch(&mut self, flows: &mut Flows<'_>) -> Vec<Outcome> {
        (0..flows.len()).map(|i| flows.run(i, |flow| self.process(flow))).collect()
    }
}

/// Keep or drop.
pub trait Filter: Sized + Send + 'static {
    /// As [`Transform::init`].
    fn init(config: &Config) -> Result<Self, String>;
    /// Whether `flow` is exported.
    fn keep(&mut self, flow: &Flow<'_>) -> bool;
}

/// A [`Filter`] as a [`Transform`].
pub struct Filtered<T>(pub T);

impl<T: Filter> Transform for Filtered<T> {
    fn init(config: &Config) -> Result<Self, String> {
        T::init(config).map(Filtered)
    }
    fn process(&mut self, flow: &mut Flow<'_>) -> Outcome {
        if self.0.keep(flow) { Outcome::Keep } else { Outcome::Drop }
    }
}

/// A mapping onto another schema: each flow's fields as attributes, by flow and by column. Wrapped in [`Mapped`],
/// it becomes a transform configured by `body`: `structured` (the default: the attributes are also the record's
/// body, sent once) or `json` (the old exporter's JSON body stays; only the attributes are added).
pub trait Mapping: Send + 'static {
    /// The attributes of one flow.
    fn mapped(flow: &Flow<'_>) -> Vec<Attribute>;
    /// The same for a whole batch, column by column (batch annotations), with each flow's outcome: `Keep`, or
    /// `Annotate` with what could not go by column and, when `structured_body`, [`Body::Attributes`]. Its tests
    /// check that every flow gets exactly [`Mapping::mapped`].
    fn map_batch(flows: &mut Flows<'_>, structured_body: bool) -> Vec<Outcome>;
}

/// A [`Mapping`] as a [`Transform`].
pub struct Mapped<M> {
    structured_body: bool,
    mapping: std::marker::PhantomData<fn() -> M>,
}

impl<M: Mapping> Transform for Mapped<M> {
    fn init(c: &Config) -> Result<Self, String> {
        let structured_body = match c.get("body").unwrap_or("structured") {
            "structured" => true,
            "json" => false,
            other => return Err(format!("body: {other:?} is not structured or json")),
        };
        Ok(Mapped { structured_body, mapping: std::marker::PhantomData })
    }

    fn process(&mut self, flow: &mut Flow<'_>) -> Outcome {
        let body = self.structured_body.then_some(Body::Attributes);
        Outcome::Annotate(Annotations { attributes: M::mapped(flow), severity: None, body })
    }

    fn process_batch(&mut self, flows: &mut Flows<'_>) -> Vec<Outcome> {
        M::map_batch(flows, self.structured_body)
    }
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

    /// Sets the record's severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }

    /// Sets the record's body.
    pub fn body(mut self, body: Body) -> Self {
        self.body = Some(body);
        self
    }

    /// Whether nothing is added.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.severity.is_none() && self.body.is_none()
    }
}

impl StringColumn {
    /// A column of one value per flow, each distinct value stored once; `None` gives that flow no value (an index
    /// past the end of `values`: no attribute from [`Flows::annotate_strings`], no change from
    /// [`Flows::set_strings`]).
    pub fn collect<'s>(per_flow: impl IntoIterator<Item = Option<&'s str>>) -> Self {
        // Columns mostly hold a few captions: the previous flow's value, then a scan of the few seen, cost less a
        // flow than hashing every value (SipHash in wasm); past `SCAN` distinct values, a map takes over.
        const SCAN: usize = 16;
        let mut values: Vec<String> = Vec::new();
        let mut seen: Vec<&'s str> = Vec::new();
        let mut map: std::collections::HashMap<&'s str, u32> = std::collections::HashMap::new();
        let mut last: Option<(&'s str, u32)> = None;
        let at = per_flow
            .into_iter()
            .map(|v| {
                let Some(v) = v else { return u32::MAX };
                if let Some((l, n)) = last
                    && l == v
                {
                    return n;
                }
                let found = if map.is_empty() {
                    seen.iter().position(|s| *s == v).map(|p| p as u32)
                } else {
                    map.get(v).copied()
                };
                let n = found.unwrap_or_else(|| {
                    let n = values.len() as u32;
                    values.push(v.to_string());
                    if map.is_empty() && seen.len() < SCAN {
                        seen.push(v);
                    } else {
                        map.extend(seen.drain(..).enumerate().map(|(i, s)| (s, i as u32)));
                        map.insert(v, n);
                    }
                    n
                });
                last = Some((v, n));
                n
            })
            .collect();
        StringColumn { values, at }
    }

    /// The same value for each of `n` flows.
    pub fn constant(value: &str, n: usize) -> Self {
        StringColumn { values: vec![value.to_string()], at: vec![0; n] }
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

/// Runs `init` for the exported type (used by [`export!`]), refusing keys it never read.
#[doc(hidden)]
pub fn __init<T: Transform>(slot: &std::sync::Mutex<Option<T>>, config: Vec<(String, String)>) -> Result<(), String> {
    let config = Config::new(config);
    let t = T::init(&config)?;
    config.refuse_unread()?;
    *slot.lock().map_err(|_| "transform state poisoned".to_string())? = Some(t);
    Ok(())
}

/// Runs `process` for the exported type over a batch (used by [`export!`]).
#[doc(hidden)]
pub fn __process<T: Transform>(
    slot: &std::sync::Mutex<Option<T>>,
    batch: &bindings::flowgate::transform::types::Batch,
) -> Vec<Outcome> {
    let mut guard = slot.lock().expect("transform state poisoned");
    let t = guard.as_mut().expect("the host calls init before process");
    t.process_batch(&mut Flows::batch(batch))
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
            fn process(batch: &$crate::bindings::flowgate::transform::types::Batch) -> ::std::vec::Vec<$crate::Outcome> {
                $crate::__process::<$t>(&__FLOWGATE_STATE, batch)
            }
        }
        // Only a component exports; a native build (unit tests) keeps the exports out of its symbol table.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(__FlowgateExport with_types_in $crate::bindings);
    };
}

/// A realistic flow for unit tests of transforms: read it through [`Flow::of`].
pub fn sample_flow() -> FlowRecord {
    FlowRecord {
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

/// Flows of every shape the contract allows a mapping to meet, for unit tests of mappings: [`sample_flow`] under
/// every action, reporter, endpoint type at either end, a few protocols (one without an IANA number, one in
/// upper case), with and without a service, and enforced policies of every shape (none, unnamed, named, an
/// end-of-tier hit naming its policy, a cluster-wide policy).
pub fn sample_flows() -> Vec<FlowRecord> {
    let actions = [Action::Allow, Action::Deny, Action::Pass, Action::Unknown, Action::Unspecified];
    let reporters = [Reporter::Src, Reporter::Dst, Reporter::Unknown];
    let types = [
        EndpointType::WorkloadEndpoint,
        EndpointType::HostEndpoint,
        EndpointType::NetworkSet,
        EndpointType::Network,
        EndpointType::Unspecified,
    ];
    let protos = ["tcp", "UDP", "icmp", "sctp", "gre"];
    let base = sample_flow();
    let named = base.enforced_policies[0].clone();
    let end_of_tier = PolicyHit {
        kind: PolicyKind::EndOfTier,
        namespace: String::new(),
        name: String::new(),
        tier: "security".into(),
        action: Action::Deny,
        policy_index: 1,
        rule_index: -1,
        trigger: Some(PolicyTrigger {
            kind: PolicyKind::CalicoNetworkPolicy,
            namespace: "payments".into(),
            name: "default-deny".into(),
            tier: "security".into(),
            action: Action::Deny,
            policy_index: 1,
            rule_index: -1,
        }),
    };
    let global = PolicyHit { kind: PolicyKind::GlobalNetworkPolicy, namespace: String::new(), ..named.clone() };
    let unnamed = PolicyHit { name: String::new(), ..named.clone() };
    let policies = [vec![], vec![unnamed], vec![named.clone()], vec![named, end_of_tier], vec![global]];
    let mut out = Vec::new();
    let mut i = 0i64;
    for action in actions {
        for reporter in reporters {
            for source_type in types {
                for dest_type in types {
                    for proto in protos {
                        i += 1;
                        let p = (i as usize) % policies.len();
                        out.push(FlowRecord {
                            action,
                            reporter,
                            source_type,
                            dest_type,
                            proto: proto.into(),
                            dest_name: if dest_type == EndpointType::Network {
                                "pub".into()
                            } else {
                                base.dest_name.clone()
                            },
                            dest_namespace: if dest_type == EndpointType::Network {
                                String::new()
                            } else {
                                base.dest_namespace.clone()
                            },
                            dest_service_name: ["postgres", "-", ""][(i % 3) as usize].into(),
                            enforced_policies: policies[p].clone(),
                            start_time: base.start_time + 15 * (i % 4),
                            end_time: base.end_time + 15 * (i % 4),
                            bytes_in: base.bytes_in + i,
                            packets_out: base.packets_out + i % 7,
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each distinct value once, in first-seen order, whichever way it is found (the previous flow's, the scan,
    /// the map past 16 values); `None` points past the values.
    #[test]
    fn a_collected_column_holds_each_value_once_in_first_seen_order() {
        let names: Vec<String> = (0..40).map(|i| format!("v{}", i % 23)).collect();
        let per_flow: Vec<Option<&str>> = names
            .iter()
            .enumerate()
            .flat_map(|(i, n)| [Some(n.as_str()), Some(n.as_str()), (i % 5 == 0).then_some("v3"), None])
            .collect();
        let column = StringColumn::collect(per_flow.iter().copied());
        let mut expected: Vec<String> = Vec::new();
        for v in per_flow.iter().flatten() {
            if !expected.iter().any(|e| e == v) {
                expected.push(v.to_string());
            }
        }
        assert_eq!(column.values, expected);
        assert_eq!(column.values.len(), 23, "more than the scan holds");
        let back: Vec<Option<&str>> =
            column.at.iter().map(|&i| column.values.get(i as usize).map(String::as_str)).collect();
        assert_eq!(back, per_flow);
    }
}
