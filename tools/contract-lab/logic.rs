// The transforms' logic, written once against the flow accessors both lab SDKs offer (`guest-a/src/lib.rs`,
// `guest-b/src/lib.rs` include this file as a module, so `super::` is the candidate's own types). It is the logic
// of transforms/{filter,redact,enrich,semconv} read through accessors instead of a whole owned `Flow`, plus
// `keep`, which reads the action and keeps every flow. Chosen by the `logic` config key.

use super::{Action, Annotations, Attribute, Body, Config, Flow, Glob, Reporter, Severity, Value, counter_add};

/// What `run` decides; changes are made through the flow's setters.
pub enum Answer {
    Keep,
    Drop,
    Annotate(Annotations),
}

pub struct Filter {
    actions: Vec<Action>,
    drop_namespaces: Vec<Glob>,
    ports: Vec<i64>,
    allow_sample: u64,
}

pub struct Redact {
    drop_labels: Vec<Glob>,
    fields: Vec<String>,
    key: Vec<u8>,
    strip_policy_names: bool,
    /// Lab-only `cache: true`: pseudonyms kept by value (instance state as a cache, as the contract allows),
    /// to show the chain's cost once redact stops hashing the same names again and again.
    cache: Option<std::collections::HashMap<String, String>>,
}

/// Most pseudonyms a cache keeps before it starts again.
const CACHE_ENTRIES: usize = 4096;

pub struct Enrich {
    attributes: Vec<(String, String)>,
    owners: Vec<(String, String)>,
    deny_severity: Option<Severity>,
}

pub enum Logic {
    Filter(Filter),
    Redact(Redact),
    Enrich(Enrich),
    SemConv { structured_body: bool },
    Keep,
}

const FIELDS: &[&str] = &["source_name", "source_namespace", "dest_name", "dest_namespace", "dest_service_name"];

fn action(name: &str) -> Result<Action, String> {
    match name {
        "Allow" => Ok(Action::Allow),
        "Deny" => Ok(Action::Deny),
        "Pass" => Ok(Action::Pass),
        other => Err(format!("actions: {other:?} is not Allow, Deny or Pass")),
    }
}

pub fn init(c: &Config) -> Result<Logic, String> {
    Ok(match c.get("logic").unwrap_or("keep") {
        "filter" => {
            let rate: f64 = c.parse("allow_sample_rate", 1.0)?;
            Logic::Filter(Filter {
                actions: c.list("actions").iter().map(|a| action(a)).collect::<Result<_, _>>()?,
                drop_namespaces: c.list("drop_namespaces").iter().map(|g| Glob::new(g)).collect(),
                ports: c
                    .list("ports")
                    .iter()
                    .map(|p| p.parse().map_err(|_| format!("ports: {p:?}")))
                    .collect::<Result<_, _>>()?,
                allow_sample: (rate * 10_000.0).round() as u64,
            })
        }
        "redact" => {
            let fields = c.list("pseudonymize");
            if let Some(bad) = fields.iter().find(|f| !FIELDS.contains(&f.as_str())) {
                return Err(format!("pseudonymize: {bad:?} is not one of {}", FIELDS.join(", ")));
            }
            Logic::Redact(Redact {
                drop_labels: c.list("drop_labels").iter().map(|g| Glob::new(g)).collect(),
                fields,
                key: c.get("key").unwrap_or_default().as_bytes().to_vec(),
                strip_policy_names: c.parse("strip_policy_names", false)?,
                cache: c.parse("cache", false)?.then(std::collections::HashMap::new),
            })
        }
        "enrich" => {
            let pairs = |p| c.with_prefix(p).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Logic::Enrich(Enrich {
                attributes: pairs("attr"),
                owners: pairs("owner"),
                deny_severity: Some(Severity::Warn),
            })
        }
        "semconv" => Logic::SemConv { structured_body: c.get("body").unwrap_or("structured") == "structured" },
        "keep" => Logic::Keep,
        other => return Err(format!("logic: {other:?}")),
    })
}

/// FNV-1a over the fields that identify a connection, as transforms/filter.
fn key_hash(f: &Flow<'_>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for part in [f.source_namespace(), f.source_name(), f.dest_namespace(), f.dest_name(), f.proto()] {
        for b in part.bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h ^ (f.dest_port() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

pub fn run(logic: &mut Logic, f: &mut Flow<'_>) -> Answer {
    match logic {
        Logic::Filter(s) => {
            let keep = filter(s, f);
            if keep { Answer::Keep } else { Answer::Drop }
        }
        Logic::Redact(r) => {
            redact(r, f);
            Answer::Keep
        }
        Logic::Enrich(e) => Answer::Annotate(enrich(e, f)),
        Logic::SemConv { structured_body } => {
            let attributes = semconv(f);
            let body = structured_body.then(|| Body::Structured(attributes.clone()));
            Answer::Annotate(Annotations { attributes, severity: None, body })
        }
        Logic::Keep => {
            std::hint::black_box(f.action());
            Answer::Keep
        }
    }
}

fn filter(s: &Filter, f: &Flow<'_>) -> bool {
    let action = f.action();
    if !s.actions.is_empty() && !s.actions.contains(&action) {
        return false;
    }
    if !s.drop_namespaces.is_empty() {
        let (src, dst) = (f.source_namespace(), f.dest_namespace());
        if s.drop_namespaces.iter().any(|g| g.matches(&src) || g.matches(&dst)) {
            return false;
        }
    }
    if !s.ports.is_empty() && !s.ports.contains(&f.dest_port()) {
        return false;
    }
    // transforms/filter hashes every allowed flow; at rate 1.0 no hash can sample a flow out, so it is skipped.
    if s.allow_sample < 10_000 && action == Action::Allow && key_hash(f) % 10_000 >= s.allow_sample {
        counter_add("sampled_out", 1);
        return false;
    }
    true
}

/// The labels no glob matches, or `None` when none was dropped.
fn without<S: AsRef<str>>(globs: &[Glob], labels: impl IntoIterator<Item = S>) -> Option<Vec<String>> {
    let mut dropped = false;
    let kept = labels
        .into_iter()
        .filter(|l| {
            let drop = globs.iter().any(|g| g.matches(l.as_ref()));
            dropped |= drop;
            !drop
        })
        .map(|l| l.as_ref().to_string())
        .collect();
    dropped.then_some(kept)
}

fn redact(r: &mut Redact, f: &mut Flow<'_>) {
    if !r.drop_labels.is_empty() {
        if let Some(kept) = without(&r.drop_labels, f.source_labels()) {
            f.set_source_labels(kept);
        }
        if let Some(kept) = without(&r.drop_labels, f.dest_labels()) {
            f.set_dest_labels(kept);
        }
    }
    for name in &r.fields {
        let value = f.field(name);
        let hashed = match &mut r.cache {
            None => super::pseudonymize(&r.key, &value, "anon-"),
            Some(cache) => match cache.get(&*value) {
                Some(p) => p.clone(),
                None => {
                    let p = super::pseudonymize(&r.key, &value, "anon-");
                    if cache.len() >= CACHE_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(value.to_string(), p.clone());
                    p
                }
            },
        };
        if hashed != *value {
            f.set_field(name, hashed);
        }
    }
    if r.strip_policy_names {
        f.strip_policy_names();
    }
}

fn enrich(e: &Enrich, f: &Flow<'_>) -> Annotations {
    let mut a = Annotations { attributes: Vec::new(), severity: None, body: None };
    let attr =
        |a: &mut Annotations, key: &str, value: Value| a.attributes.push(Attribute { key: key.to_string(), value });
    for (k, v) in &e.attributes {
        attr(&mut a, k, Value::Str(v.clone()));
    }
    let owner = |ns: &str| e.owners.iter().find(|(n, _)| n == ns).map(|(_, team)| team.clone());
    if !e.owners.is_empty() {
        if let Some(team) = owner(&f.source_namespace()) {
            attr(&mut a, "flowgate.source.owner", Value::Str(team));
        }
        if let Some(team) = owner(&f.dest_namespace()) {
            attr(&mut a, "flowgate.dest.owner", Value::Str(team));
        }
    }
    if f.action() == Action::Deny {
        a.severity = e.deny_severity;
    }
    attr(&mut a, "flowgate.bytes.total", Value::Int(f.bytes_in().saturating_add(f.bytes_out())));
    attr(&mut a, "flowgate.packets.total", Value::Int(f.packets_in().saturating_add(f.packets_out())));
    a
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Pass => "pass",
        _ => "unknown",
    }
}

/// transforms/semconv's mapping. It reads 16 fields: per flow, through the whole record (`whole`, one call);
/// by columns or in place, field by field.
fn semconv(f: &Flow<'_>) -> Vec<Attribute> {
    if f.reads_whole() { semconv_of!(f.whole()) } else { semconv_of!(f) }
}

/// The mapping over any reader with the flow accessors (a macro: the readers are different types).
macro_rules! semconv_of {
    ($w:expr) => {{
        let w = $w;
        let s = |v: &str| Value::Str(v.to_string());
        let policies: Vec<String> = w.enforced_tier_names().map(|(tier, name)| format!("{tier}/{name}")).collect();
        let mut out = vec![
            ("source.address", s(&w.source_name())),
            ("destination.address", s(&w.dest_name())),
            ("destination.port", Value::Int(w.dest_port())),
            ("network.transport", s(&w.proto().to_ascii_lowercase())),
            ("network.io.direction", s(if w.reporter() == Reporter::Dst { "receive" } else { "transmit" })),
            ("k8s.source.namespace.name", s(&w.source_namespace())),
            ("k8s.destination.namespace.name", s(&w.dest_namespace())),
            ("calico.action", s(action_name(w.action()))),
            ("calico.policies", Value::StrList(policies)),
            ("network.io.bytes.received", Value::Int(w.bytes_in())),
            ("network.io.bytes.transmitted", Value::Int(w.bytes_out())),
            ("network.io.packets.received", Value::Int(w.packets_in())),
            ("network.io.packets.transmitted", Value::Int(w.packets_out())),
            ("event.start", Value::Int(w.start_time())),
            ("event.end", Value::Int(w.end_time())),
        ];
        let service = w.dest_service_name();
        if !service.is_empty() && service != "-" {
            out.push(("k8s.service.name", s(&service)));
        }
        out.into_iter().map(|(key, value)| Attribute { key: key.to_string(), value }).collect()
    }};
}
use semconv_of;
