//! A transform's configuration: the string map from its chain entry or `<name>.yaml`.

/// Configuration given to `init`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Config { pairs }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
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
        self.pairs.iter().filter_map(move |(k, v)| {
            k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')).map(|rest| (rest, v.as_str()))
        })
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
    }
}
