//! `enrich`: static attributes, namespace owners, severity from action, derived totals.
//!
//! Config: `attr.<key>: value` (static attributes, e.g. `attr.k8s.cluster.name: prod`), `owner.<namespace>:
//! team` (adds `flowgate.source.owner` / `flowgate.dest.owner`), `deny_severity` (`warn` by default; `info`
//! keeps denies at INFO). Always adds `flowgate.bytes.total` and `flowgate.packets.total`. The flow itself is
//! never sent back: the outcome is an annotation.

use flowgate_guest::{
    Action, Annotations, Config, Flow, Flows, IntField, Outcome, Severity, StringColumn, StringField, Transform,
};

pub struct Enrich {
    attributes: Vec<(String, String)>,
    owners: Vec<(String, String)>,
    deny_severity: Option<Severity>,
}

impl Enrich {
    fn owner(&self, namespace: &str) -> Option<&str> {
        self.owners.iter().find(|(ns, _)| ns == namespace).map(|(_, team)| team.as_str())
    }

    /// The owners of a namespace column: each distinct namespace looked up once; no attribute without an owner.
    fn owners_of(&self, namespaces: &StringColumn) -> StringColumn {
        let mut values = Vec::new();
        let found: Vec<u32> = namespaces
            .values
            .iter()
            .map(|ns| match self.owner(ns) {
                Some(team) => {
                    values.push(team.to_string());
                    values.len() as u32 - 1
                }
                None => u32::MAX,
            })
            .collect();
        StringColumn { values, at: namespaces.at.iter().map(|&i| found[i as usize]).collect() }
    }
}

impl Transform for Enrich {
    fn init(c: &Config) -> Result<Self, String> {
        let deny_severity = match c.get("deny_severity").unwrap_or("warn") {
            "info" => None,
            "warn" => Some(Severity::Warn),
            "error" => Some(Severity::Error),
            other => return Err(format!("deny_severity: {other:?} is not info, warn or error")),
        };
        let pairs = |p| c.with_prefix(p).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Ok(Enrich { attributes: pairs("attr"), owners: pairs("owner"), deny_severity })
    }

    fn process(&mut self, f: &mut Flow<'_>) -> Outcome {
        let mut a = Annotations::none();
        for (k, v) in &self.attributes {
            a = a.attr(k.as_str(), v.as_str());
        }
        if let Some(team) = self.owner(f.source_namespace()) {
            a = a.attr("flowgate.source.owner", team);
        }
        if let Some(team) = self.owner(f.dest_namespace()) {
            a = a.attr("flowgate.dest.owner", team);
        }
        if f.action() == Action::Deny
            && let Some(s) = self.deny_severity
        {
            a = a.severity(s);
        }
        a = a.attr("flowgate.bytes.total", f.bytes_in().saturating_add(f.bytes_out()));
        a = a.attr("flowgate.packets.total", f.packets_in().saturating_add(f.packets_out()));
        Outcome::Annotate(a)
    }

    fn process_batch(&mut self, flows: &mut Flows<'_>) -> Vec<Outcome> {
        self.batch(flows)
    }
}

impl Enrich {
    /// The batch path: every attribute is a batch annotation, so a flow answers `keep` (or `annotate` with only a
    /// severity, when denied).
    pub fn batch(&mut self, flows: &mut Flows<'_>) -> Vec<Outcome> {
        let n = flows.len();
        for (k, v) in &self.attributes {
            flows.annotate_strings(k, StringColumn { values: vec![v.clone()], at: vec![0; n] });
        }
        if !self.owners.is_empty() {
            let source = self.owners_of(flows.strings(StringField::SourceNamespace));
            let dest = self.owners_of(flows.strings(StringField::DestNamespace));
            flows.annotate_strings("flowgate.source.owner", source);
            flows.annotate_strings("flowgate.dest.owner", dest);
        }
        let sum = |flows: &Flows<'_>, a, b| -> Vec<i64> {
            flows.ints(a).iter().zip(flows.ints(b)).map(|(x, y)| x.saturating_add(*y)).collect()
        };
        let bytes = sum(flows, IntField::BytesIn, IntField::BytesOut);
        let packets = sum(flows, IntField::PacketsIn, IntField::PacketsOut);
        flows.annotate_ints("flowgate.bytes.total", bytes);
        flows.annotate_ints("flowgate.packets.total", packets);
        flows
            .actions()
            .iter()
            .map(|a| match self.deny_severity {
                Some(s) if *a == Action::Deny => Outcome::Annotate(Annotations::none().severity(s)),
                _ => Outcome::Keep,
            })
            .collect()
    }
}

flowgate_guest::export!(Enrich);

#[cfg(test)]
mod tests {
    use flowgate_guest::{FlowRecord, Value, sample_flow};

    use super::*;

    fn annotations(c: &[(&str, &str)], f: FlowRecord) -> Annotations {
        let mut e =
            Enrich::init(&Config::new(c.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())).unwrap();
        match e.process(&mut Flow::of(&f)) {
            Outcome::Annotate(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn attr<'a>(a: &'a Annotations, key: &str) -> Option<&'a Value> {
        a.attributes.iter().find(|x| x.key == key).map(|x| &x.value)
    }

    #[test]
    fn adds_static_attributes_owners_and_totals() {
        let a = annotations(&[("attr.k8s.cluster.name", "prod"), ("owner.payments", "billing")], sample_flow());
        assert_eq!(attr(&a, "k8s.cluster.name"), Some(&Value::Str("prod".into())));
        assert_eq!(attr(&a, "flowgate.dest.owner"), Some(&Value::Str("billing".into())));
        assert_eq!(attr(&a, "flowgate.source.owner"), None);
        assert_eq!(attr(&a, "flowgate.bytes.total"), Some(&Value::Int(957 + 1226)));
        assert_eq!(a.severity, None, "allowed flows keep INFO");
    }

    /// The batch path gives every flow what the per-flow path gives it.
    #[test]
    fn the_batch_path_equals_the_per_flow_path() {
        let c = [("attr.k8s.cluster.name", "prod"), ("owner.payments", "billing"), ("owner.checkout", "shop")];
        let mut records = vec![sample_flow(); 3];
        records[1].action = Action::Deny;
        records[2].dest_namespace = "elsewhere".into();
        let mut e =
            Enrich::init(&Config::new(c.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())).unwrap();
        let mut flows = Flows::of(&records);
        let outcomes = e.batch(&mut flows);
        for (i, (record, outcome)) in records.iter().zip(outcomes).enumerate() {
            let want = annotations(&c, record.clone());
            let (mut got, severity) = match outcome {
                Outcome::Keep => (Vec::new(), None),
                Outcome::Annotate(a) => (a.attributes, a.severity),
                other => panic!("{other:?}"),
            };
            got.splice(0..0, flows.annotations_of(i));
            let sorted = |mut v: Vec<flowgate_guest::Attribute>| {
                v.sort_by(|a, b| a.key.cmp(&b.key));
                v
            };
            assert_eq!(sorted(got), sorted(want.attributes), "flow {i}");
            assert_eq!(severity, want.severity, "flow {i}");
        }
    }

    #[test]
    fn denied_flows_are_warnings_unless_configured_otherwise() {
        let mut f = sample_flow();
        f.action = Action::Deny;
        assert_eq!(annotations(&[], f.clone()).severity, Some(Severity::Warn));
        assert_eq!(annotations(&[("deny_severity", "info")], f).severity, None);
        assert!(Enrich::init(&Config::new(vec![("deny_severity".into(), "loud".into())])).is_err());
    }
}
