//! Candidate A's host: the batch is a resource; getters answer from the index, setters record changes.

use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store};

use crate::apply::Change;
use bytes::Bytes;

use crate::index::{self, text};
use std::collections::HashMap;
use std::time::Instant;

use crate::{Live, Stage, State, Times, b};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/a",
        world: "flowgate:transform/transformer",
        imports: { default: trappable },
        with: { "flowgate:transform/types.batch": super::LabBatch },
    });
}

use bindings::flowgate::transform::types::{
    self as t, Action, EndpointType, Flow, PolicyHit, PolicyKind, PolicyTrigger, Reporter,
};

crate::apply::convert!(crate::a::bindings::flowgate::transform::types);

/// The batch a guest holds a handle to during one `process` call: the flows' bytes, indexed lazily (a flow's
/// scalars and strings on the first getter that touches it; its lists only for a list getter or `record`).
pub struct LabBatch {
    wires: Vec<Bytes>,
    shallow: Vec<Option<b::types::FlowView>>,
    /// Full index of the flows a list getter or `record` asked for, and where each flow is in it.
    index: b::types::Batch,
    deep_at: Vec<u32>,
    /// (flow, change) in the order the guest made them.
    changes: Vec<(u32, Change)>,
}

type R<T> = wasmtime::Result<T>;

fn out_of_range(i: u32) -> wasmtime::Error {
    wasmtime::format_err!("flow {i} is not in the batch")
}

impl LabBatch {
    fn new(live: &[Live]) -> Self {
        let n = live.len();
        LabBatch {
            wires: live.iter().map(|l| l.wire.clone()).collect(),
            shallow: live.iter().map(|l| l.view).collect(),
            index: index::batch(0),
            deep_at: vec![u32::MAX; n],
            changes: Vec::new(),
        }
    }

    /// The flow's scalars and string spans (relative to its own bytes), and its bytes.
    fn shallow(&mut self, i: u32) -> R<(b::types::FlowView, &[u8])> {
        let wire = self.wires.get(i as usize).ok_or_else(|| out_of_range(i))?;
        let slot = &mut self.shallow[i as usize];
        let v = match slot {
            Some(v) => *v,
            None => *slot.insert(index::shallow(wire)?),
        };
        Ok((v, wire))
    }

    /// The flow fully indexed (spans into `self.index.bytes`).
    fn flow(&mut self, i: u32) -> R<b::types::FlowView> {
        let wire = self.wires.get(i as usize).ok_or_else(|| out_of_range(i))?;
        if self.deep_at[i as usize] == u32::MAX {
            self.deep_at[i as usize] = self.index.flows.len() as u32;
            index::push(&mut self.index, wire)?;
        }
        Ok(self.index.flows[self.deep_at[i as usize] as usize])
    }

    fn str(&self, s: b::types::Span) -> String {
        text(&self.index.bytes, s).to_string()
    }

    fn labels(&self, run: b::types::Run) -> Vec<String> {
        let l = &self.index.labels[run.start as usize..(run.start + run.len) as usize];
        l.iter().map(|s| self.str(*s)).collect()
    }

    fn hit(&self, at: usize) -> PolicyHit {
        let h = &self.index.hits[at];
        PolicyHit {
            kind: kind(h.kind),
            namespace: self.str(h.namespace),
            name: self.str(h.name),
            tier: self.str(h.tier),
            action: action(h.action),
            policy_index: h.policy_index,
            rule_index: h.rule_index,
            trigger: h.trigger.map(|i| {
                let t = self.hit(i as usize);
                PolicyTrigger {
                    kind: t.kind,
                    namespace: t.namespace,
                    name: t.name,
                    tier: t.tier,
                    action: t.action,
                    policy_index: t.policy_index,
                    rule_index: t.rule_index,
                }
            }),
        }
    }
    fn hits(&self, run: b::types::Run) -> Vec<PolicyHit> {
        (run.start..run.start + run.len).map(|i| self.hit(i as usize)).collect()
    }
}

// The two candidates' enums are the same WIT enums, generated twice: same case order.
fn action(a: b::types::Action) -> Action {
    match a {
        b::types::Action::Unspecified => Action::Unspecified,
        b::types::Action::Allow => Action::Allow,
        b::types::Action::Deny => Action::Deny,
        b::types::Action::Pass => Action::Pass,
        b::types::Action::Unknown => Action::Unknown,
    }
}
fn reporter(r: b::types::Reporter) -> Reporter {
    match r {
        b::types::Reporter::Unspecified => Reporter::Unspecified,
        b::types::Reporter::Src => Reporter::Src,
        b::types::Reporter::Dst => Reporter::Dst,
        b::types::Reporter::Unknown => Reporter::Unknown,
    }
}
fn endpoint(e: b::types::EndpointType) -> EndpointType {
    match e {
        b::types::EndpointType::Unspecified => EndpointType::Unspecified,
        b::types::EndpointType::WorkloadEndpoint => EndpointType::WorkloadEndpoint,
        b::types::EndpointType::HostEndpoint => EndpointType::HostEndpoint,
        b::types::EndpointType::NetworkSet => EndpointType::NetworkSet,
        b::types::EndpointType::Network => EndpointType::Network,
        b::types::EndpointType::Unknown => EndpointType::Unknown,
    }
}
fn kind(k: b::types::PolicyKind) -> PolicyKind {
    use b::types::PolicyKind as K;
    match k {
        K::Unspecified => PolicyKind::Unspecified,
        K::CalicoNetworkPolicy => PolicyKind::CalicoNetworkPolicy,
        K::GlobalNetworkPolicy => PolicyKind::GlobalNetworkPolicy,
        K::StagedNetworkPolicy => PolicyKind::StagedNetworkPolicy,
        K::StagedGlobalNetworkPolicy => PolicyKind::StagedGlobalNetworkPolicy,
        K::StagedKubernetesNetworkPolicy => PolicyKind::StagedKubernetesNetworkPolicy,
        K::NetworkPolicy => PolicyKind::NetworkPolicy,
        K::AdminNetworkPolicy => PolicyKind::AdminNetworkPolicy,
        K::BaselineAdminNetworkPolicy => PolicyKind::BaselineAdminNetworkPolicy,
        K::Profile => PolicyKind::Profile,
        K::EndOfTier => PolicyKind::EndOfTier,
        K::ClusterNetworkPolicy => PolicyKind::ClusterNetworkPolicy,
        K::Unknown => PolicyKind::Unknown,
    }
}

impl t::Host for State {}

/// Getters answered from the flow's shallow index: `|bytes, view| value`.
macro_rules! getters {
    ($($name:ident: $ty:ty = |$w:ident, $f:ident| $e:expr;)*) => {
        $(fn $name(&mut self, this: Resource<LabBatch>, flow: u32) -> R<$ty> {
            let ($f, $w) = self.table.get_mut(&this)?.shallow(flow)?;
            let _ = $w;
            Ok($e)
        })*
    };
}

/// Column getters from the flows' shallow indexes: `|bytes, view| value` for each flow.
macro_rules! columns {
    ($($name:ident: $ty:ty = |$w:ident, $f:ident| $e:expr;)*) => {
        $(fn $name(&mut self, this: Resource<LabBatch>) -> R<Vec<$ty>> {
            let b = self.table.get_mut(&this)?;
            (0..b.wires.len() as u32)
                .map(|i| {
                    let ($f, $w) = b.shallow(i)?;
                    let _ = $w;
                    Ok($e)
                })
                .collect()
        })*
    };
}

/// String column getters, each distinct value once: `|view| span`.
macro_rules! string_columns {
    ($($name:ident = |$f:ident| $e:expr;)*) => {
        $(fn $name(&mut self, this: Resource<LabBatch>) -> R<t::StringColumn> {
            let b = self.table.get_mut(&this)?;
            let spans = (0..b.wires.len() as u32)
                .map(|i| b.shallow(i).map(|($f, _)| $e))
                .collect::<R<Vec<_>>>()?;
            let mut seen: HashMap<&[u8], u32> = HashMap::new();
            let mut values = Vec::new();
            let mut at = Vec::with_capacity(b.wires.len());
            for (wire, s) in b.wires.iter().zip(spans) {
                let bytes = &wire[s.start as usize..(s.start + s.len) as usize];
                let next = values.len() as u32;
                let n = *seen.entry(bytes).or_insert(next);
                if n == next {
                    values.push(String::from_utf8_lossy(bytes).into_owned());
                }
                at.push(n);
            }
            Ok(t::StringColumn { values, at })
        })*
    };
}

/// Getters that need the flow's lists: `|batch, view| value`.
macro_rules! deep_getters {
    ($($name:ident: $ty:ty = |$b:ident, $f:ident| $e:expr;)*) => {
        $(fn $name(&mut self, this: Resource<LabBatch>, flow: u32) -> R<$ty> {
            let $b = self.table.get_mut(&this)?;
            let $f = $b.flow(flow)?;
            Ok($e)
        })*
    };
}

macro_rules! setters {
    ($($name:ident: $ty:ty = |$v:ident| $change:expr;)*) => {
        $(fn $name(&mut self, this: Resource<LabBatch>, flow: u32, $v: $ty) -> R<()> {
            let b = self.table.get_mut(&this)?;
            if flow as usize >= b.wires.len() {
                return Err(out_of_range(flow));
            }
            b.changes.push((flow, $change));
            Ok(())
        })*
    };
}

impl t::HostBatch for State {
    fn len(&mut self, this: Resource<LabBatch>) -> R<u32> {
        Ok(self.table.get(&this)?.wires.len() as u32)
    }

    deep_getters! {
        record: Flow = |b, f| Flow {
            source_name: b.str(f.source_name),
            source_namespace: b.str(f.source_namespace),
            source_type: endpoint(f.source_type),
            dest_name: b.str(f.dest_name),
            dest_namespace: b.str(f.dest_namespace),
            dest_type: endpoint(f.dest_type),
            dest_port: f.dest_port,
            dest_service_name: b.str(f.dest_service_name),
            dest_service_namespace: b.str(f.dest_service_namespace),
            dest_service_port_name: b.str(f.dest_service_port_name),
            dest_service_port: f.dest_service_port,
            proto: b.str(f.proto),
            reporter: reporter(f.reporter),
            action: action(f.action),
            enforced_policies: b.hits(f.enforced_policies),
            pending_policies: b.hits(f.pending_policies),
            start_time: f.start_time,
            end_time: f.end_time,
            source_labels: b.labels(f.source_labels),
            dest_labels: b.labels(f.dest_labels),
            packets_in: f.packets_in,
            packets_out: f.packets_out,
            bytes_in: f.bytes_in,
            bytes_out: f.bytes_out,
            num_connections_started: f.num_connections_started,
            num_connections_completed: f.num_connections_completed,
            num_connections_live: f.num_connections_live,
        };
        enforced_policies: Vec<PolicyHit> = |b, f| b.hits(f.enforced_policies);
        pending_policies: Vec<PolicyHit> = |b, f| b.hits(f.pending_policies);
        source_labels: Vec<String> = |b, f| b.labels(f.source_labels);
        dest_labels: Vec<String> = |b, f| b.labels(f.dest_labels);
    }

    getters! {
        source_name: String = |w, f| text(w, f.source_name).to_string();
        source_namespace: String = |w, f| text(w, f.source_namespace).to_string();
        source_type: EndpointType = |w, f| endpoint(f.source_type);
        dest_name: String = |w, f| text(w, f.dest_name).to_string();
        dest_namespace: String = |w, f| text(w, f.dest_namespace).to_string();
        dest_type: EndpointType = |w, f| endpoint(f.dest_type);
        dest_port: i64 = |w, f| f.dest_port;
        dest_service_name: String = |w, f| text(w, f.dest_service_name).to_string();
        dest_service_namespace: String = |w, f| text(w, f.dest_service_namespace).to_string();
        dest_service_port_name: String = |w, f| text(w, f.dest_service_port_name).to_string();
        dest_service_port: i64 = |w, f| f.dest_service_port;
        proto: String = |w, f| text(w, f.proto).to_string();
        reporter: Reporter = |w, f| reporter(f.reporter);
        action: Action = |w, f| action(f.action);
        start_time: i64 = |w, f| f.start_time;
        end_time: i64 = |w, f| f.end_time;
        packets_in: i64 = |w, f| f.packets_in;
        packets_out: i64 = |w, f| f.packets_out;
        bytes_in: i64 = |w, f| f.bytes_in;
        bytes_out: i64 = |w, f| f.bytes_out;
        num_connections_started: i64 = |w, f| f.num_connections_started;
        num_connections_completed: i64 = |w, f| f.num_connections_completed;
        num_connections_live: i64 = |w, f| f.num_connections_live;
    }

    string_columns! {
        column_source_name = |f| f.source_name;
        column_source_namespace = |f| f.source_namespace;
        column_dest_name = |f| f.dest_name;
        column_dest_namespace = |f| f.dest_namespace;
        column_dest_service_name = |f| f.dest_service_name;
        column_proto = |f| f.proto;
    }

    columns! {
        column_action: Action = |w, f| action(f.action);
        column_reporter: Reporter = |w, f| reporter(f.reporter);
        column_dest_port: i64 = |w, f| f.dest_port;
        column_bytes_in: i64 = |w, f| f.bytes_in;
        column_bytes_out: i64 = |w, f| f.bytes_out;
        column_packets_in: i64 = |w, f| f.packets_in;
        column_packets_out: i64 = |w, f| f.packets_out;
        column_start_time: i64 = |w, f| f.start_time;
        column_end_time: i64 = |w, f| f.end_time;
    }

    setters! {
        set_source_name: String = |v| Change::Str(1, v);
        set_source_namespace: String = |v| Change::Str(2, v);
        set_dest_name: String = |v| Change::Str(4, v);
        set_dest_namespace: String = |v| Change::Str(5, v);
        set_dest_service_name: String = |v| Change::Str(8, v);
        set_dest_service_namespace: String = |v| Change::Str(9, v);
        set_dest_service_port_name: String = |v| Change::Str(10, v);
        set_proto: String = |v| Change::Str(12, v);
        set_source_labels: Vec<String> = |v| Change::Labels(4, v);
        set_dest_labels: Vec<String> = |v| Change::Labels(5, v);
        set_enforced_policies: Vec<PolicyHit> = |v| Change::Policies(1, hits(v));
        set_pending_policies: Vec<PolicyHit> = |v| Change::Policies(2, hits(v));
    }

    fn drop(&mut self, this: Resource<LabBatch>) -> R<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl bindings::flowgate::transform::host::Host for State {
    fn log(&mut self, _: bindings::flowgate::transform::host::Level, _: String) -> R<()> {
        Ok(())
    }
    fn counter_add(&mut self, _: String, delta: u64) -> R<()> {
        self.counted += delta;
        Ok(())
    }
}

/// A candidate-A instance.
pub struct Instance {
    store: Store<State>,
    guest: bindings::Transformer,
}

pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    bindings::Transformer::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

impl Instance {
    pub fn new(engine: &Engine, linker: &Linker<State>, component: &Component, config: &[(&str, &str)]) -> Self {
        let mut store = crate::store(engine);
        let guest = bindings::Transformer::instantiate(&mut store, component, linker).expect("instantiates");
        let config: Vec<(String, String)> = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        guest.flowgate_transform_transform().call_init(&mut store, &config).expect("init runs").expect("init accepts");
        Instance { store, guest }
    }
}

impl Stage for Instance {
    fn eager_index(&self) -> bool {
        false
    }

    fn process(&mut self, _: &mut b::types::Batch, live: &mut [Live], times: &mut Times) -> bool {
        let t = Instant::now();
        let table: &mut ResourceTable = &mut self.store.data_mut().table;
        let handle = table.push(LabBatch::new(live)).expect("table has room");
        let borrowed = Resource::new_borrow(handle.rep());
        let outcomes =
            self.guest.flowgate_transform_transform().call_process(&mut self.store, borrowed).expect("no trap");
        let LabBatch { changes, shallow, .. } = self.store.data_mut().table.delete(handle).expect("still there");
        for (l, v) in live.iter_mut().zip(shallow) {
            l.view = v;
        }
        times.call += t.elapsed();
        let t = Instant::now();
        assert_eq!(outcomes.len(), live.len());
        let mut changed = !changes.is_empty();
        let mut pending: Vec<Vec<Change>> = Vec::new();
        if changed {
            pending.resize_with(live.len(), Vec::new);
            for (i, c) in changes {
                pending[i as usize].push(c);
            }
        }
        for (i, (l, o)) in live.iter_mut().zip(outcomes).enumerate() {
            match o {
                t::Outcome::Keep => {}
                t::Outcome::Drop => {
                    l.dropped = true;
                    changed = true;
                }
                t::Outcome::Annotate(a) => annotate(&mut l.ann, a),
                t::Outcome::Error(_) => {
                    l.dropped = true;
                    changed = true;
                }
            }
            if !l.dropped && pending.get(i).is_some_and(|p| !p.is_empty()) {
                l.wire = crate::apply::apply(&l.wire, std::mem::take(&mut pending[i]));
                l.view = None;
            }
        }
        times.apply += t.elapsed();
        changed
    }
}
