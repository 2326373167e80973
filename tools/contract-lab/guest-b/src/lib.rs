//! Candidate B's guest: a minimal SDK reading the batch's typed offset records and borrowing strings from its
//! bytes (zero-copy), collecting changes as typed edits, and the shared transform logic (`../logic.rs`).

#[doc(hidden)]
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/b",
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

use std::sync::Mutex;

use bindings::flowgate::transform::types::{
    Action, Annotations, Attribute, Batch, Body, Edit, FlowView, HitView, Outcome, PolicyHit, PolicyTrigger, Reporter,
    Run, Severity, Span, Value,
};
use config::Config;
use glob::Glob;
use pseudonym::pseudonymize;

fn counter_add(name: &str, delta: u64) {
    bindings::flowgate::transform::host::counter_add(name, delta);
}

/// One flow of the batch, read in place; setters collect edits.
pub struct Flow<'a> {
    batch: &'a Batch,
    v: &'a FlowView,
    edits: Vec<Edit>,
}

macro_rules! str_field {
    ($($name:ident),* $(,)?) => {
        $(pub fn $name(&self) -> &'a str { self.str(self.v.$name) })*
    };
}
macro_rules! field {
    ($($name:ident: $ty:ty),* $(,)?) => {
        $(pub fn $name(&self) -> $ty { self.v.$name })*
    };
}

/// The string a span points at (empty if the host sent bytes that are not UTF-8).
fn text(bytes: &[u8], s: Span) -> &str {
    let end = s.start as usize + s.len as usize;
    bytes.get(s.start as usize..end).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
}

impl<'a> Flow<'a> {
    fn str(&self, s: Span) -> &'a str {
        text(&self.batch.bytes, s)
    }

    fn labels(&self, run: Run) -> impl ExactSizeIterator<Item = &'a str> + use<'a> {
        let bytes = &self.batch.bytes;
        self.batch.labels[run.start as usize..(run.start + run.len) as usize].iter().map(move |s| text(bytes, *s))
    }

    str_field! { source_name, source_namespace, dest_name, dest_namespace, dest_service_name, proto }
    field! {
        action: Action, dest_port: i64, reporter: Reporter, bytes_in: i64, bytes_out: i64, packets_in: i64,
        packets_out: i64, start_time: i64, end_time: i64,
    }

    pub fn source_labels(&self) -> impl ExactSizeIterator<Item = &'a str> + use<'a> {
        self.labels(self.v.source_labels)
    }
    pub fn dest_labels(&self) -> impl ExactSizeIterator<Item = &'a str> + use<'a> {
        self.labels(self.v.dest_labels)
    }
    pub fn set_source_labels(&mut self, v: Vec<String>) {
        self.edits.push(Edit::SourceLabels(v));
    }
    pub fn set_dest_labels(&mut self, v: Vec<String>) {
        self.edits.push(Edit::DestLabels(v));
    }

    /// A string field by its config name (redact's `pseudonymize` list).
    pub fn field(&self, name: &str) -> &'a str {
        match name {
            "source_name" => self.source_name(),
            "source_namespace" => self.source_namespace(),
            "dest_name" => self.dest_name(),
            "dest_namespace" => self.dest_namespace(),
            _ => self.dest_service_name(),
        }
    }

    pub fn set_field(&mut self, name: &str, v: String) {
        self.edits.push(match name {
            "source_name" => Edit::SourceName(v),
            "source_namespace" => Edit::SourceNamespace(v),
            "dest_name" => Edit::DestName(v),
            "dest_namespace" => Edit::DestNamespace(v),
            _ => Edit::DestServiceName(v),
        });
    }

    fn owned_hit(&self, h: &HitView) -> PolicyHit {
        PolicyHit {
            kind: h.kind,
            namespace: self.str(h.namespace).to_string(),
            name: String::new(),
            tier: self.str(h.tier).to_string(),
            action: h.action,
            policy_index: h.policy_index,
            rule_index: h.rule_index,
            trigger: h.trigger.map(|t| {
                let t = &self.batch.hits[t as usize];
                PolicyTrigger {
                    kind: t.kind,
                    namespace: self.str(t.namespace).to_string(),
                    name: String::new(),
                    tier: self.str(t.tier).to_string(),
                    action: t.action,
                    policy_index: t.policy_index,
                    rule_index: t.rule_index,
                }
            }),
        }
    }

    /// Both policy lists, names emptied (owned hits are built only here, where they are sent back).
    pub fn strip_policy_names(&mut self) {
        let hits = |run: Run| -> Vec<PolicyHit> {
            self.batch.hits[run.start as usize..(run.start + run.len) as usize]
                .iter()
                .map(|h| self.owned_hit(h))
                .collect()
        };
        let (enforced, pending) = (hits(self.v.enforced_policies), hits(self.v.pending_policies));
        self.edits.push(Edit::EnforcedPolicies(enforced));
        self.edits.push(Edit::PendingPolicies(pending));
    }

    /// Reading in place costs nothing more for the whole flow: never ask for a record.
    pub fn reads_whole(&self) -> bool {
        false
    }

    /// Never called (see `reads_whole`); present so the shared logic compiles for both candidates.
    pub fn whole(&self) -> &Self {
        self
    }

    /// (tier, name) of each named enforced policy.
    pub fn enforced_tier_names(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        let run = self.v.enforced_policies;
        let bytes = &self.batch.bytes;
        self.batch.hits[run.start as usize..(run.start + run.len) as usize]
            .iter()
            .filter(|h| h.name.len > 0)
            .map(move |h| (text(bytes, h.tier), text(bytes, h.name)))
    }
}

static STATE: Mutex<Option<logic::Logic>> = Mutex::new(None);

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Export;

impl bindings::exports::flowgate::transform::transform::Guest for Export {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        *STATE.lock().map_err(|_| "poisoned")? = Some(logic::init(&Config::new(config))?);
        Ok(())
    }

    fn process(batch: Batch) -> Vec<Outcome> {
        let mut guard = STATE.lock().expect("not poisoned");
        let logic = guard.as_mut().expect("init before process");
        let none = || Annotations { attributes: Vec::new(), severity: None, body: None };
        batch
            .flows
            .iter()
            .map(|v| {
                let mut f = Flow { batch: &batch, v, edits: Vec::new() };
                let answer = logic::run(logic, &mut f);
                match (answer, f.edits.is_empty()) {
                    (logic::Answer::Keep, true) => Outcome::Keep,
                    (logic::Answer::Drop, _) => Outcome::Drop,
                    (logic::Answer::Annotate(a), true) => Outcome::Annotate(a),
                    (logic::Answer::Keep, false) => Outcome::Edit((f.edits, none())),
                    (logic::Answer::Annotate(a), false) => Outcome::Edit((f.edits, a)),
                }
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
