//! `redact`: drop labels by pattern, pseudonymise names and namespaces with a keyed hash, strip policy names.
//!
//! Config: `drop_labels` (globs over `key=value`, e.g. `pod-template-hash=*,*secret*`), `pseudonymize` (any of
//! `source_name,source_namespace,dest_name,dest_namespace,dest_service_name`), `key` (the secret for the
//! hash; required with `pseudonymize`), `strip_policy_names` (`true`: policy and tier names become empty).
//! The body the old exporter's users see is rendered from the redacted flow.

use std::collections::HashMap;

use flowgate_guest::{
    Config, Flow, Flows, Glob, Outcome, PolicyHit, StringColumn, StringField, Transform, pseudonymize,
};

const FIELDS: &[(&str, StringField)] = &[
    ("source_name", StringField::SourceName),
    ("source_namespace", StringField::SourceNamespace),
    ("dest_name", StringField::DestName),
    ("dest_namespace", StringField::DestNamespace),
    ("dest_service_name", StringField::DestServiceName),
];

pub struct Redact {
    drop_labels: Vec<Glob>,
    fields: Vec<StringField>,
    key: Vec<u8>,
    strip_policy_names: bool,
    /// Pseudonyms by value: flows of a batch share names and namespaces, and each costs two HMAC-SHA256s. A
    /// cache, as the instance-reuse contract allows: cleared when full.
    pseudonyms: HashMap<String, String>,
}

/// Values whose pseudonyms are kept.
const PSEUDONYM_CACHE: usize = 4096;

/// The hits with policy and tier names emptied; `None` when there was nothing to strip.
fn stripped(hits: &[PolicyHit]) -> Option<Vec<PolicyHit>> {
    let named = |h: &PolicyHit| !h.name.is_empty() || h.trigger.as_ref().is_some_and(|t| !t.name.is_empty());
    if !hits.iter().any(named) {
        return None;
    }
    let mut hits = hits.to_vec();
    for h in &mut hits {
        h.name.clear();
        if let Some(t) = &mut h.trigger {
            t.name.clear();
        }
    }
    Some(hits)
}

impl Transform for Redact {
    fn init(c: &Config) -> Result<Self, String> {
        let fields = c
            .list("pseudonymize")
            .iter()
            .map(|name| {
                FIELDS.iter().find(|(n, _)| n == name).map(|(_, f)| *f).ok_or_else(|| {
                    let names: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
                    format!("pseudonymize: {name:?} is not one of {}", names.join(", "))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key = c.get("key").unwrap_or_default().as_bytes().to_vec();
        if !fields.is_empty() && key.len() < 16 {
            return Err("key: pseudonymize needs a secret key of at least 16 bytes".into());
        }
        Ok(Redact {
            drop_labels: c.list("drop_labels").iter().map(|g| Glob::new(g)).collect(),
            fields,
            key,
            strip_policy_names: c.parse("strip_policy_names", false)?,
            pseudonyms: HashMap::new(),
        })
    }

    fn process(&mut self, f: &mut Flow<'_>) -> Outcome {
        for field in self.fields.clone() {
            let hashed = self.pseudonym(f.string(field));
            f.set_string(field, hashed);
        }
        self.labels_and_policies(f);
        // The changes travel with `Keep`; an unchanged flow sends nothing back.
        Outcome::Keep
    }

    /// The same for a whole batch, pseudonyms by column: each distinct value is hashed (or found in the cache)
    /// once a batch and set for every flow in one call; labels and policies per flow.
    fn process_batch(&mut self, flows: &mut Flows<'_>) -> Vec<Outcome> {
        for field in self.fields.clone() {
            let column = flows.strings(field);
            let at = column.at.clone();
            let values: Vec<String> = column.values.clone();
            let values = values.iter().map(|v| self.pseudonym(v)).collect();
            flows.set_strings(field, StringColumn { values, at });
        }
        (0..flows.len())
            .map(|i| {
                flows.run(i, |f| {
                    self.labels_and_policies(f);
                    Outcome::Keep
                })
            })
            .collect()
    }
}

impl Redact {
    /// `value`'s pseudonym, from the cache when it has it.
    fn pseudonym(&mut self, value: &str) -> String {
        if let Some(p) = self.pseudonyms.get(value) {
            return p.clone();
        }
        if self.pseudonyms.len() >= PSEUDONYM_CACHE {
            self.pseudonyms.clear();
        }
        let p = pseudonymize(&self.key, value, "anon-");
        self.pseudonyms.insert(value.to_string(), p.clone());
        p
    }

    fn labels_and_policies(&self, f: &mut Flow<'_>) {
        if !self.drop_labels.is_empty() {
            let globs = &self.drop_labels;
            f.retain_source_labels(|l| !globs.iter().any(|g| g.matches(l)));
            f.retain_dest_labels(|l| !globs.iter().any(|g| g.matches(l)));
        }
        if self.strip_policy_names {
            if let Some(hits) = stripped(f.enforced_policies()) {
                f.set_enforced_policies(hits);
            }
            if let Some(hits) = stripped(f.pending_policies()) {
                f.set_pending_policies(hits);
            }
        }
    }
}

flowgate_guest::export!(Redact);

#[cfg(test)]
mod tests {
    use flowgate_guest::{FlowRecord, sample_flow};

    use super::*;

    fn redact(pairs: &[(&str, &str)]) -> Redact {
        Redact::init(&Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())).unwrap()
    }

    /// The flow as the transform left it.
    fn redacted(r: &mut Redact, record: &FlowRecord) -> (Outcome, FlowRecord, bool) {
        let mut f = Flow::of(record);
        let outcome = r.process(&mut f);
        (outcome, f.record(), f.is_changed())
    }

    #[test]
    fn drops_labels_pseudonymises_and_strips_policy_names() {
        let mut r = redact(&[
            ("drop_labels", "team=*"),
            ("pseudonymize", "source_namespace,dest_name"),
            ("key", "0123456789abcdef"),
            ("strip_policy_names", "true"),
        ]);
        let (outcome, f, changed) = redacted(&mut r, &sample_flow());
        assert!(matches!(outcome, Outcome::Keep) && changed);
        assert_eq!(f.source_labels, vec!["app=checkout-api"]);
        assert!(f.source_namespace.starts_with("anon-") && f.source_namespace.len() == 21);
        assert_ne!(f.dest_name, sample_flow().dest_name);
        assert_eq!(f.dest_namespace, "payments", "fields not listed are kept");
        assert!(f.enforced_policies.iter().all(|h| h.name.is_empty()));
        // Stable: the same input gives the same pseudonym (joins still work).
        assert_eq!(redacted(&mut r, &sample_flow()).1.source_namespace, f.source_namespace);
    }

    /// The batch path pseudonymises by column exactly as the per-flow path does, flow by flow.
    #[test]
    fn the_batch_path_equals_the_per_flow_path() {
        let config = [("pseudonymize", "source_namespace,dest_name"), ("key", "0123456789abcdef")];
        let mut records = vec![sample_flow(); 3];
        records[1].source_namespace = "other".into();
        records[2].dest_name = String::new();
        let mut r = redact(&config);
        let mut flows = Flows::of(&records);
        let outcomes = r.process_batch(&mut flows);
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Keep)));
        for (i, record) in records.iter().enumerate() {
            let (_, want, _) = redacted(&mut redact(&config), record);
            assert_eq!(flows.set_of(i, StringField::SourceNamespace), Some(want.source_namespace.as_str()));
            assert_eq!(flows.set_of(i, StringField::DestName), Some(want.dest_name.as_str()));
        }
    }

    #[test]
    fn changes_nothing_when_nothing_matches_and_refuses_bad_config() {
        let (outcome, f, changed) = redacted(&mut redact(&[("drop_labels", "nope=*")]), &sample_flow());
        assert!(matches!(outcome, Outcome::Keep) && !changed);
        assert_eq!(f, sample_flow());
        assert!(
            Redact::init(&Config::new(vec![("pseudonymize".into(), "source_name".into())]))
                .err()
                .unwrap()
                .contains("key")
        );
        assert!(
            Redact::init(&Config::new(vec![("pseudonymize".into(), "labels".into())]))
                .err()
                .unwrap()
                .contains("labels")
        );
    }
}
