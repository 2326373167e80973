//! `filter`: keep or drop flows by action, namespace and destination port; keep a sample of allowed flows.
//!
//! Config (all optional): `actions` (keep only these: `Allow,Deny,Pass`), `drop_namespaces` (globs matched
//! against source and destination namespace), `ports` (keep only these destination ports), `allow_sample_rate`
//! (0.0–1.0 of allowed flows kept, chosen deterministically from the flow key so both reporters agree).

use flowgate_guest::{Action, Config, Filter, Filtered, Flow, Glob, counter_add};

pub struct FlowFilter {
    actions: Vec<Action>,
    drop_namespaces: Vec<Glob>,
    ports: Vec<i64>,
    /// Kept when hash(key) % 10_000 < this.
    allow_sample: u64,
}

fn action(name: &str) -> Result<Action, String> {
    match name {
        "Allow" => Ok(Action::Allow),
        "Deny" => Ok(Action::Deny),
        "Pass" => Ok(Action::Pass),
        other => Err(format!("actions: {other:?} is not Allow, Deny or Pass")),
    }
}

/// FNV-1a over the fields that identify a connection (not the reporter): stable and tiny.
fn key_hash(f: &Flow<'_>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for part in [f.source_namespace(), f.source_name(), f.dest_namespace(), f.dest_name(), f.proto()] {
        for b in part.bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h ^ (f.dest_port() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Filter for FlowFilter {
    fn init(config: &Config) -> Result<Self, String> {
        let rate: f64 = config.parse("allow_sample_rate", 1.0)?;
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("allow_sample_rate: {rate} is not between 0 and 1"));
        }
        Ok(FlowFilter {
            actions: config.list("actions").iter().map(|a| action(a)).collect::<Result<_, _>>()?,
            drop_namespaces: config.list("drop_namespaces").iter().map(|g| Glob::new(g)).collect(),
            ports: config
                .list("ports")
                .iter()
                .map(|p| p.parse().map_err(|_| format!("ports: {p:?}")))
                .collect::<Result<_, _>>()?,
            allow_sample: (rate * 10_000.0).round() as u64,
        })
    }

    fn keep(&mut self, f: &Flow<'_>) -> bool {
        let action = f.action();
        if !self.actions.is_empty() && !self.actions.contains(&action) {
            return false;
        }
        if self.drop_namespaces.iter().any(|g| g.matches(f.source_namespace()) || g.matches(f.dest_namespace())) {
            return false;
        }
        if !self.ports.is_empty() && !self.ports.contains(&f.dest_port()) {
            return false;
        }
        // With every allowed flow kept (the default), no hash: a transform pays only for the fields it reads.
        if action == Action::Allow && self.allow_sample < 10_000 && key_hash(f) % 10_000 >= self.allow_sample {
            counter_add("sampled_out", 1);
            return false;
        }
        true
    }
}

flowgate_guest::export!(Filtered<FlowFilter>);

#[cfg(test)]
mod tests {
    use flowgate_guest::{FlowRecord, sample_flow};

    use super::*;

    impl FlowFilter {
        fn keep_record(&mut self, record: &FlowRecord) -> bool {
            self.keep(&Flow::of(record))
        }
    }

    fn filter(pairs: &[(&str, &str)]) -> FlowFilter {
        FlowFilter::init(&Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())).unwrap()
    }

    #[test]
    fn keeps_by_action_namespace_and_port() {
        let mut f = filter(&[("actions", "Deny"), ("drop_namespaces", "kube-*")]);
        let mut flow = sample_flow();
        assert!(!f.keep_record(&flow), "an allowed flow is dropped when only Deny is kept");
        flow.action = Action::Deny;
        assert!(f.keep_record(&flow));
        flow.dest_namespace = "kube-system".into();
        assert!(!f.keep_record(&flow));
        let mut f = filter(&[("ports", "443,5432")]);
        assert!(f.keep_record(&sample_flow()));
    }

    /// Each option both ways: what it keeps and what it drops.
    #[test]
    fn each_option_keeps_what_it_names_and_drops_the_rest() {
        let with = |edit: &dyn Fn(&mut FlowRecord)| {
            let mut flow = sample_flow();
            edit(&mut flow);
            flow
        };
        // No option: everything kept.
        let mut none = filter(&[]);
        for a in [Action::Allow, Action::Deny, Action::Pass] {
            assert!(none.keep_record(&with(&|f| f.action = a)), "{a:?} kept with no option");
        }
        // actions: only the listed ones.
        let mut f = filter(&[("actions", "Deny,Pass")]);
        assert!(f.keep_record(&with(&|f| f.action = Action::Deny)));
        assert!(f.keep_record(&with(&|f| f.action = Action::Pass)));
        assert!(!f.keep_record(&with(&|f| f.action = Action::Allow)));
        // drop_namespaces: a match on either side drops; no match keeps.
        let mut f = filter(&[("drop_namespaces", "kube-*,monitoring")]);
        assert!(f.keep_record(&sample_flow()), "checkout -> payments matches no glob");
        assert!(!f.keep_record(&with(&|f| f.source_namespace = "kube-system".into())), "source side");
        assert!(!f.keep_record(&with(&|f| f.dest_namespace = "monitoring".into())), "destination side");
        assert!(f.keep_record(&with(&|f| f.dest_namespace = "monitoring-2".into())), "a glob matches whole names");
        // ports: only the listed destination ports.
        let mut f = filter(&[("ports", "443,5432")]);
        assert!(f.keep_record(&sample_flow()), "5432 is listed");
        assert!(f.keep_record(&with(&|f| f.dest_port = 443)));
        assert!(!f.keep_record(&with(&|f| f.dest_port = 80)), "80 is not listed");
        // allow_sample_rate 0: no allowed flow kept, denied flows untouched.
        let mut f = filter(&[("allow_sample_rate", "0")]);
        assert!(!f.keep_record(&sample_flow()));
        assert!(f.keep_record(&with(&|f| f.action = Action::Deny)));
    }

    #[test]
    fn bad_config_is_refused_with_the_key_named() {
        let err = FlowFilter::init(&Config::new(vec![("actions".into(), "Block".into())])).err().unwrap();
        assert!(err.contains("actions"));
        let err = FlowFilter::init(&Config::new(vec![("allow_sample_rate".into(), "2".into())])).err().unwrap();
        assert!(err.contains("allow_sample_rate"));
        let err = FlowFilter::init(&Config::new(vec![("ports".into(), "443,https".into())])).err().unwrap();
        assert!(err.contains("ports") && err.contains("https"), "{err}");
    }

    #[test]
    fn sampling_is_deterministic_per_connection() {
        let mut f = filter(&[("allow_sample_rate", "0.5")]);
        let kept: Vec<bool> = (0..200)
            .map(|i| {
                let mut flow = sample_flow();
                flow.source_name = format!("client-{i}-*");
                f.keep_record(&flow)
            })
            .collect();
        let n = kept.iter().filter(|k| **k).count();
        assert!((60..140).contains(&n), "about half kept: {n}");
        assert_eq!(flowgate_guest::native::counter("sampled_out"), 200 - n as u64);
        let mut flow = sample_flow();
        flow.source_name = "client-7-*".into();
        let first = f.keep_record(&flow);
        flow.reporter = flowgate_guest::Reporter::Dst;
        assert_eq!(f.keep_record(&flow), first, "both reporters of a connection agree");
    }
}
