//! `redact`: drop labels by pattern, pseudonymise names and namespaces with a keyed hash, strip policy names.
//!
//! Config: `drop_labels` (globs over `key=value`, e.g. `pod-template-hash=*,*secret*`), `pseudonymize` (any of
//! `source_name,source_namespace,dest_name,dest_namespace,dest_service_name`), `key` (the secret for the
//! hash; required with `pseudonymize`), `strip_policy_names` (`true`: policy and tier names become empty).
//! The body the old exporter's users see is rendered from the redacted flow.

use flowgate_guest::{Config, Flow, Glob, Outcome, PolicyHit, Transform, pseudonymize, replace};

const FIELDS: &[&str] = &["source_name", "source_namespace", "dest_name", "dest_namespace", "dest_service_name"];

pub struct Redact {
    drop_labels: Vec<Glob>,
    fields: Vec<String>,
    key: Vec<u8>,
    strip_policy_names: bool,
}

impl Redact {
    fn field<'a>(f: &'a mut Flow, name: &str) -> &'a mut String {
        match name {
            "source_name" => &mut f.source_name,
            "source_namespace" => &mut f.source_namespace,
            "dest_name" => &mut f.dest_name,
            "dest_namespace" => &mut f.dest_namespace,
            _ => &mut f.dest_service_name,
        }
    }
}

fn strip(hits: &mut [PolicyHit]) {
    for h in hits {
        h.name.clear();
        if let Some(t) = &mut h.trigger {
            t.name.clear();
        }
    }
}

impl Transform for Redact {
    fn init(c: &Config) -> Result<Self, String> {
        let fields = c.list("pseudonymize");
        if let Some(bad) = fields.iter().find(|f| !FIELDS.contains(&f.as_str())) {
            return Err(format!("pseudonymize: {bad:?} is not one of {}", FIELDS.join(", ")));
        }
        let key = c.get("key").unwrap_or_default().as_bytes().to_vec();
        if !fields.is_empty() && key.len() < 16 {
            return Err("key: pseudonymize needs a secret key of at least 16 bytes".into());
        }
        Ok(Redact {
            drop_labels: c.list("drop_labels").iter().map(|g| Glob::new(g)).collect(),
            fields,
            key,
            strip_policy_names: c.parse("strip_policy_names", false)?,
        })
    }

    fn process(&mut self, mut f: Flow) -> Outcome {
        let before = (f.source_labels.len(), f.dest_labels.len());
        let globs = &self.drop_labels;
        f.source_labels.retain(|l| !globs.iter().any(|g| g.matches(l)));
        f.dest_labels.retain(|l| !globs.iter().any(|g| g.matches(l)));
        let mut changed = before != (f.source_labels.len(), f.dest_labels.len());
        for name in &self.fields {
            let value = Redact::field(&mut f, name);
            let hashed = pseudonymize(&self.key, value, "anon-");
            changed |= hashed != *value;
            *value = hashed;
        }
        if self.strip_policy_names {
            strip(&mut f.enforced_policies);
            strip(&mut f.pending_policies);
            changed = true;
        }
        // Nothing changed: keep, so nothing crosses back.
        if changed { replace(f) } else { Outcome::Keep }
    }
}

flowgate_guest::export!(Redact);

#[cfg(test)]
mod tests {
    use flowgate_guest::sample_flow;

    use super::*;

    fn redact(pairs: &[(&str, &str)]) -> Redact {
        Redact::init(&Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())).unwrap()
    }

    fn replaced(o: Outcome) -> Flow {
        match o {
            Outcome::Replace(out) => out.flow,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn drops_labels_pseudonymises_and_strips_policy_names() {
        let mut r = redact(&[
            ("drop_labels", "team=*"),
            ("pseudonymize", "source_namespace,dest_name"),
            ("key", "0123456789abcdef"),
            ("strip_policy_names", "true"),
        ]);
        let f = replaced(r.process(sample_flow()));
        assert_eq!(f.source_labels, vec!["app=checkout-api"]);
        assert!(f.source_namespace.starts_with("anon-") && f.source_namespace.len() == 21);
        assert_ne!(f.dest_name, sample_flow().dest_name);
        assert_eq!(f.dest_namespace, "payments", "fields not listed are kept");
        assert!(f.enforced_policies.iter().all(|h| h.name.is_empty()));
        // Stable: the same input gives the same pseudonym (joins still work).
        assert_eq!(replaced(r.process(sample_flow())).source_namespace, f.source_namespace);
    }

    #[test]
    fn keeps_when_nothing_matches_and_refuses_bad_config() {
        assert!(matches!(redact(&[("drop_labels", "nope=*")]).process(sample_flow()), Outcome::Keep));
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
