//! Candidate B's host: the batch (bytes + typed offset records) is passed whole; edits come back typed.

use std::time::Instant;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

use crate::apply::Change;
use crate::{Live, Stage, State, Times};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/b",
        world: "flowgate:transform/transformer",
    });
}

pub use bindings::flowgate::transform::types;
use types::{Edit, Outcome};

crate::apply::convert!(crate::b::bindings::flowgate::transform::types);

impl types::Host for State {}

impl bindings::flowgate::transform::host::Host for State {
    fn log(&mut self, _: bindings::flowgate::transform::host::Level, _: String) {}
    fn counter_add(&mut self, _: String, delta: u64) {
        self.counted += delta;
    }
}

fn change(e: Edit) -> Change {
    match e {
        Edit::SourceName(v) => Change::Str(1, v),
        Edit::SourceNamespace(v) => Change::Str(2, v),
        Edit::DestName(v) => Change::Str(4, v),
        Edit::DestNamespace(v) => Change::Str(5, v),
        Edit::DestServiceName(v) => Change::Str(8, v),
        Edit::DestServiceNamespace(v) => Change::Str(9, v),
        Edit::DestServicePortName(v) => Change::Str(10, v),
        Edit::Proto(v) => Change::Str(12, v),
        Edit::SourceLabels(v) => Change::Labels(4, v),
        Edit::DestLabels(v) => Change::Labels(5, v),
        Edit::EnforcedPolicies(v) => Change::Policies(1, hits(v)),
        Edit::PendingPolicies(v) => Change::Policies(2, hits(v)),
    }
}

/// A candidate-B instance.
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
    fn process(&mut self, batch: &mut types::Batch, live: &mut [Live], times: &mut Times) -> bool {
        let t = Instant::now();
        let outcomes = self.guest.flowgate_transform_transform().call_process(&mut self.store, batch).expect("no trap");
        times.call += t.elapsed();
        let t = Instant::now();
        assert_eq!(outcomes.len(), live.len());
        let mut changed = false;
        for (l, o) in live.iter_mut().zip(outcomes) {
            match o {
                Outcome::Keep => {}
                Outcome::Drop | Outcome::Error(_) => {
                    l.dropped = true;
                    changed = true;
                }
                Outcome::Annotate(a) => annotate(&mut l.ann, a),
                Outcome::Edit((edits, a)) => {
                    annotate(&mut l.ann, a);
                    if !edits.is_empty() {
                        l.wire = crate::apply::apply(&l.wire, edits.into_iter().map(change).collect());
                        changed = true;
                    }
                }
            }
        }
        times.apply += t.elapsed();
        changed
    }
}
