//! Candidate A's guest: a minimal SDK over the `batch` resource (each accessor is one call into the host) and
//! the shared transform logic (`../logic.rs`), chosen by the `logic` config key.

#[doc(hidden)]
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/a",
        world: "flowgate:transform/transformer",
        generate_all,
    });
}

// The SDK's own helpers, compiled in from its sources (depending on guest-sdk would link its 0.1.0 bindings).
#[path = "../../../../guest-sdk/src/config.rs"]
#[allow(dead_code)]
mod config;
#[path = "../../../../guest-sdk/src/glob.rs"]
#[allow(dead_code)]
mod glob;
// One source for both candidates: its `&field` and `&*field` are needed where A's accessors return owned strings.
#[path = "../../logic.rs"]
#[allow(clippy::needless_borrow, clippy::borrow_deref_ref)]
mod logic;
#[path = "../../../../guest-sdk/src/pseudonym.rs"]
mod pseudonym;

use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::Mutex;

use bindings::flowgate::transform::types::{
    Action, Annotations, Attribute, Batch, Body, Outcome, PolicyHit, Reporter, Severity, StringColumn, Value,
};
use config::Config;
use glob::Glob;
use pseudonym::pseudonymize;

fn counter_add(name: &str, delta: u64) {
    bindings::flowgate::transform::host::counter_add(name, delta);
}

/// One flow of the batch. Per flow (default), every accessor asks the host for that field of that flow; with
/// `access: columns`, the first read of a field fetches it for the whole batch ([`Columns`]).
pub struct Flow<'a> {
    batch: &'a Batch,
    i: u32,
    columns: Option<&'a Columns>,
}

/// The columns fetched so far in one `process` call.
#[derive(Default)]
pub struct Columns {
    source_name: OnceCell<StringColumn>,
    source_namespace: OnceCell<StringColumn>,
    dest_name: OnceCell<StringColumn>,
    dest_namespace: OnceCell<StringColumn>,
    dest_service_name: OnceCell<StringColumn>,
    proto: OnceCell<StringColumn>,
    action: OnceCell<Vec<Action>>,
    reporter: OnceCell<Vec<Reporter>>,
    dest_port: OnceCell<Vec<i64>>,
    bytes_in: OnceCell<Vec<i64>>,
    bytes_out: OnceCell<Vec<i64>>,
    packets_in: OnceCell<Vec<i64>>,
    packets_out: OnceCell<Vec<i64>>,
    start_time: OnceCell<Vec<i64>>,
    end_time: OnceCell<Vec<i64>>,
}

macro_rules! get_str {
    ($($name:ident / $column:ident),* $(,)?) => {
        $(pub fn $name(&self) -> Cow<'a, str> {
            match self.columns {
                Some(c) => {
                    let column = c.$name.get_or_init(|| self.batch.$column());
                    Cow::Borrowed(&column.values[column.at[self.i as usize] as usize])
                }
                None => Cow::Owned(self.batch.$name(self.i)),
            }
        })*
    };
}

macro_rules! get {
    ($($name:ident / $column:ident: $ty:ty),* $(,)?) => {
        $(pub fn $name(&self) -> $ty {
            match self.columns {
                Some(c) => c.$name.get_or_init(|| self.batch.$column())[self.i as usize],
                None => self.batch.$name(self.i),
            }
        })*
    };
}

impl<'a> Flow<'a> {
    get_str! {
        source_name / column_source_name, source_namespace / column_source_namespace,
        dest_name / column_dest_name, dest_namespace / column_dest_namespace,
        dest_service_name / column_dest_service_name, proto / column_proto,
    }
    get! {
        action / column_action: Action, reporter / column_reporter: Reporter, dest_port / column_dest_port: i64,
        bytes_in / column_bytes_in: i64, bytes_out / column_bytes_out: i64, packets_in / column_packets_in: i64,
        packets_out / column_packets_out: i64, start_time / column_start_time: i64, end_time / column_end_time: i64,
    }

    /// Whether logic that reads most fields should ask for the whole record (per-flow access) rather than read
    /// field by field (columns).
    pub fn reads_whole(&self) -> bool {
        self.columns.is_none()
    }

    /// (tier, name) of each named enforced policy (a per-flow list getter).
    pub fn enforced_tier_names(&self) -> impl Iterator<Item = (String, String)> + use<> {
        let hits = self.batch.enforced_policies(self.i);
        hits.into_iter().filter(|h| !h.name.is_empty()).map(|h| (h.tier, h.name))
    }

    pub fn source_labels(&self) -> Vec<String> {
        self.batch.source_labels(self.i)
    }
    pub fn dest_labels(&self) -> Vec<String> {
        self.batch.dest_labels(self.i)
    }

    pub fn set_source_labels(&mut self, v: Vec<String>) {
        self.batch.set_source_labels(self.i, &v);
    }
    pub fn set_dest_labels(&mut self, v: Vec<String>) {
        self.batch.set_dest_labels(self.i, &v);
    }

    /// A string field by its config name (redact's `pseudonymize` list).
    pub fn field(&self, name: &str) -> Cow<'a, str> {
        match name {
            "source_name" => self.source_name(),
            "source_namespace" => self.source_namespace(),
            "dest_name" => self.dest_name(),
            "dest_namespace" => self.dest_namespace(),
            _ => self.dest_service_name(),
        }
    }

    pub fn set_field(&mut self, name: &str, v: String) {
        match name {
            "source_name" => self.batch.set_source_name(self.i, &v),
            "source_namespace" => self.batch.set_source_namespace(self.i, &v),
            "dest_name" => self.batch.set_dest_name(self.i, &v),
            "dest_namespace" => self.batch.set_dest_namespace(self.i, &v),
            _ => self.batch.set_dest_service_name(self.i, &v),
        }
    }

    pub fn strip_policy_names(&mut self) {
        let strip = |mut hits: Vec<PolicyHit>| {
            for h in &mut hits {
                h.name.clear();
                if let Some(t) = &mut h.trigger {
                    t.name.clear();
                }
            }
            hits
        };
        self.batch.set_enforced_policies(self.i, &strip(self.batch.enforced_policies(self.i)));
        self.batch.set_pending_policies(self.i, &strip(self.batch.pending_policies(self.i)));
    }

    /// The whole flow as one typed record (one call): for logic that reads most fields.
    pub fn whole(&self) -> Whole {
        Whole(self.batch.record(self.i))
    }
}

/// A whole flow, read with the same accessors.
pub struct Whole(bindings::flowgate::transform::types::Flow);

macro_rules! field {
    ($($name:ident: $ty:ty),* $(,)?) => {
        $(pub fn $name(&self) -> $ty { self.0.$name })*
    };
}
macro_rules! field_str {
    ($($name:ident),* $(,)?) => {
        $(pub fn $name(&self) -> &str { &self.0.$name })*
    };
}

impl Whole {
    field! {
        dest_port: i64, reporter: Reporter, action: Action, bytes_in: i64, bytes_out: i64, packets_in: i64,
        packets_out: i64, start_time: i64, end_time: i64,
    }
    field_str! { source_name, source_namespace, dest_name, dest_namespace, dest_service_name, proto }

    /// (tier, name) of each named enforced policy.
    pub fn enforced_tier_names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.enforced_policies.iter().filter(|h| !h.name.is_empty()).map(|h| (h.tier.as_str(), h.name.as_str()))
    }
}

/// The transform's logic, and whether it reads by columns.
static STATE: Mutex<Option<(logic::Logic, bool)>> = Mutex::new(None);

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Export;

impl bindings::exports::flowgate::transform::transform::Guest for Export {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let config = Config::new(config);
        let columns = config.get("access") == Some("columns");
        *STATE.lock().map_err(|_| "poisoned")? = Some((logic::init(&config)?, columns));
        Ok(())
    }

    fn process(batch: &Batch) -> Vec<Outcome> {
        let mut guard = STATE.lock().expect("not poisoned");
        let (logic, columns) = guard.as_mut().expect("init before process");
        let cache = Columns::default();
        let columns = columns.then_some(&cache);
        (0..batch.len())
            .map(|i| match logic::run(logic, &mut Flow { batch, i, columns }) {
                logic::Answer::Keep => Outcome::Keep,
                logic::Answer::Drop => Outcome::Drop,
                logic::Answer::Annotate(a) => Outcome::Annotate(a),
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod export {
    use super::Export;
    crate::bindings::export!(Export with_types_in crate::bindings);
}
