//! A transform's configuration: the string map from its chain entry or `<name>.yaml`.
//!
//! It remembers which keys the transform asked for, so that a key it never reads (a typo: `drop_namespace` for
//! `drop_namespaces`) refuses the configuration instead of silently doing nothing ([`Config::unread`]).

use std::cell::RefCell;
use std::collections::BTreeSet;

/// Configuration given to `init`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pairs: Vec<(String, String)>,
    /// Keys asked for, and prefixes read with [`Config::with_prefix`].
    read: RefCell<BTreeSet<String>>,
    prefixes: RefCell<BTreeSet<String>>,
}

impl Config {
    /// A configuration of these (key, value) pairs; a later pair wins over an earlier one with the same key.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Config { pairs, ..Config::default() }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.read.borrow_mut().insert(key.to_string());
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an init error naming it.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key).ok_or_else(|| format!("config key {key:?} is required"))
    }

    /// A comma-separated list (empty items dropped); empty when absent.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default()
    }

    /// `key` parsed, `default` when absent, an init error naming it when unparsable.
    pub fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| format!("config key {key:?}: {v:?} is not valid")),
        }
    }

    /// Every `prefix.<rest>` key, as (`rest`, value): maps written flat, e.g. `team.payments: billing`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.prefixes.borrow_mut().insert(prefix.to_string());
        self.pairs.iter().filter_map(move |(k, v)| {
            k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')).map(|rest| (rest, v.as_str()))
        })
    }
}

impl Config {
    /// Keys given that the transform never read, sorted.
    pub fn unread(&self) -> Vec<&str> {
        let (read, prefixes) = (self.read.borrow(), self.prefixes.borrow());
        let mut unread: Vec<&str> = self
            .pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !read.contains(*k))
            .filter(|k| !prefixes.iter().any(|p| k.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('.'))))
            .collect();
        unread.sort_unstable();
        unread.dedup();
        unread
    }

    /// An init error when a key was given that the transform never read, naming it and the keys it reads:
    /// `unknown config key "drop_namespace"; this transform reads: actions, drop_namespaces, ports`. The SDK
    /// calls it after `init`; every language's helper words it the same way.
    pub fn refuse_unread(&self) -> Result<(), String> {
        let unread = self.unread();
        if unread.is_empty() {
            return Ok(());
        }
        let quoted: Vec<String> = unread.iter().map(|k| format!("{k:?}")).collect();
        let known: Vec<String> = {
            let read = self.read.borrow();
            let prefixes = self.prefixes.borrow();
            read.iter()
                .cloned()
                .chain(prefixes.iter().map(|p| format!("{p}.*")))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let noun = if unread.len() == 1 { "key" } else { "keys" };
        let reads = if known.is_empty() { "reads no keys".to_string() } else { format!("reads: {}", known.join(", ")) };
        Err(format!("unknown config {noun} {}; this transform {reads}", quoted.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_lists_numbers_and_prefixed_maps() {
        let c = Config::new(vec![
            ("rate".into(), "0.25".into()),
            ("namespaces".into(), " a, b ,,c".into()),
            ("team.payments".into(), "billing".into()),
            ("team.checkout".into(), "shop".into()),
        ]);
        assert_eq!(c.parse("rate", 1.0).unwrap(), 0.25);
        assert_eq!(c.parse("absent", 7u32).unwrap(), 7);
        assert!(c.parse::<u32>("namespaces", 0).unwrap_err().contains("namespaces"));
        assert_eq!(c.list("namespaces"), vec!["a", "b", "c"]);
        assert_eq!(c.with_prefix("team").collect::<Vec<_>>(), vec![("payments", "billing"), ("checkout", "shop")]);
        assert!(c.require("key").unwrap_err().contains("\"key\""));
        assert_eq!(c.refuse_unread(), Ok(()));
    }

    #[test]
    fn keys_never_read_are_refused_by_name() {
        let c = Config::new(vec![
            ("actions".into(), "Deny".into()),
            ("drop_namespace".into(), "kube-*".into()),
            ("owner.payments".into(), "billing".into()),
        ]);
        c.list("actions");
        c.list("drop_namespaces");
        c.parse("ports", 0).unwrap();
        assert_eq!(c.unread(), vec!["drop_namespace", "owner.payments"]);
        let _ = c.with_prefix("owner").count();
        assert_eq!(
            c.refuse_unread().unwrap_err(),
            "unknown config key \"drop_namespace\"; this transform reads: actions, drop_namespaces, owner.*, ports"
        );
    }
}
