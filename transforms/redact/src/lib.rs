//! `redact`: drop labels by pattern, pseudonymise names and namespaces with a keyed hash, strip policy names.
//!
//! Config: `drop_labels` (globs over `key=value`, e.g. `pod-template-hash=*,*secret*`), `pseudonymize` (any of
//! `source_name,source_namespace,dest_name,dest_namespace,dest_service_name`), `key` (the secret for the
//! hash; required with `pseudonymize`), `strip_policy_names` (`true`: policy and tier names become empty).
//! The body the old exporter's users see is rendered from the redacted flow.

use std::collections::HashMap;

use flowgate_guest::{Config, Flow, Glob, Outcome, PolicyHit, StringField, Transform, pseudonymize};

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

/// `labels` without those matching a glob; `None` when none matched.
fn kept(labels: &[String], globs: &[Glob]) -> Option<Vec<String>> {
    let drop = |l: &String| globs.iter().any(|g| g.matches(l));
    labels.iter().any(drop).then(|| labels.iter().filter(|l| !drop(l)).cloned().collect())
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
        if !self.drop_labels.is_empty() {
            if let Some(labels) = kept(f.source_labels(), &self.drop_labels) {
                f.set_source_labels(labels);
            }
            if let Some(labels) = kept(f.dest_labels(), &self.drop_labels) {
                f.set_dest_labels(labels);
            }
        }
        for &field in &self.fields {
            let value = f.string(field);
            let hashed = match self.pseudonyms.get(value) {
                Some(p) => p.clone(),
                None => {
                    if self.pseudonyms.len() >= PSEUDONYM_CACHE {
                        self.pseudonyms.clear();
                    }
                    let p = pseudonymize(&self.key, value, "anon-");
                    self.pseudonyms.insert(value.to_string(), p.clone());
                    p
                }
            };
            f.set_string(field, hashed);
        }
        if self.strip_policy_names {
            if let Some(hits) = stripped(f.enforced_policies()) {
                f.set_enforced_policies(hits);
            }
            if let Some(hits) = stripped(f.pending_policies()) {
                f.set_pending_policies(hits);
            }
        }
        // The changes travel with `Keep`; an unchanged flow sends nothing back.
        Outcome::Keep
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
