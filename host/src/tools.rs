//! Tools for transform authors: `flowgate test` (run a chain over flows from a file and compare with expected
//! records) and the chain part of `flowgate check`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use crate::config::TransformsConfig;
pub use crate::pipeline::tap::describe;
use crate::pipeline::{Worker, chain, worker};
use crate::protojson::flow_from_json;
use crate::reload::chain_specs;
use crate::telemetry::Metrics;
use crate::wasm::Runtime;

/// Stdout's reader went away (`flowgate demo | head`): the command stops quietly, as Unix tools do.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed by its reader")]
pub struct StdoutClosed;

/// Writes `text` to stdout. A closed pipe is [`StdoutClosed`] (the caller stops; `main` exits 0), where
/// `print!` would panic.
pub fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        result => Ok(result?),
    }
}

/// Builds the configured chain (compile, instantiate, init, self-test) and describes each component.
pub fn check_chain(cfg: &TransformsConfig) -> anyhow::Result<String> {
    let specs = chain_specs(cfg).map_err(anyhow::Error::msg)?;
    let mut out = String::new();
    if specs.is_empty() {
        let _ = writeln!(out, "transforms: none (records are the old exporter's, unchanged)");
        return Ok(out);
    }
    let runtime = Runtime::new()?;
    let chain = chain::build(&runtime, specs, 1)?;
    let _ =
        writeln!(out, "transforms: {} in the chain, all compiled, initialised and self-tested", chain.entries.len());
    for e in chain.entries.iter() {
        let _ = writeln!(
            out,
            "  {}  {}  policy {}  deadline {} ms  memory {} MiB  ({})",
            e.provenance(),
            e.spec.path.display(),
            e.spec.policy.as_str(),
            e.spec.limits.deadline.as_millis(),
            e.spec.limits.memory_bytes >> 20,
            if e.spec.config.is_empty() {
                "no config".to_string()
            } else {
                format!("{} config keys", e.spec.config.len())
            }
        );
    }
    Ok(out)
}

/// Builds the chain `cfg` names, for `test` and `replay` (none: the old exporter's records).
pub fn build_chain(cfg: &TransformsConfig) -> anyhow::Result<chain::Chain> {
    let specs = chain_specs(cfg).map_err(anyhow::Error::msg)?;
    Ok(if specs.is_empty() { chain::Chain::default() } else { chain::build(&Runtime::new()?, specs, 1)? })
}

/// The outcome of `flowgate test`.
pub struct TestReport {
    /// One JSON line per output record.
    pub outputs: Vec<Value>,
    /// Readable differences from the expected records; empty when they match (or none were given).
    pub diff: String,
}

/// Runs the chain over every flow of `input` (a capture, or protojson lines); compares with `expected` (JSON lines) when given.
pub fn test_chain(cfg: &TransformsConfig, input: &Path, expected: Option<&Path>) -> anyhow::Result<TestReport> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    // A capture (`flowgate capture`) holds the flows' bytes as Goldmane sent them: they go in untouched.
    let items: Vec<worker::Item> = if crate::capture::is_capture(&bytes) {
        let (_, records) = crate::capture::read(&bytes.into()).with_context(|| format!("{}", input.display()))?;
        records.into_iter().map(|r| worker::Item::from_wire(r.flow)).collect()
    } else {
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{}: neither a capture nor JSON lines", input.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| flow_from_json(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", input.display(), n + 1)))
            .map(|f| f.map(worker::Item::new))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let chain = build_chain(cfg)?;
    let mut w = Worker::new(Metrics::new(), None);
    let items = if chain.is_empty() { items } else { w.run_items(&chain, items) };
    let outputs: Vec<Value> =
        items.into_iter().map(|i| worker::record(i, 0, None).map(|r| describe(&r))).collect::<Result<_, _>>()?;
    let mut diff = String::new();
    if let Some(path) = expected {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let wanted = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str::<Value>(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if wanted.len() != outputs.len() {
            let _ = writeln!(diff, "expected {} records, got {}", wanted.len(), outputs.len());
        }
        for (n, (want, got)) in wanted.iter().zip(&outputs).enumerate() {
            let (w, g) = (flatten(want), flatten(got));
            let keys: std::collections::BTreeSet<&String> = w.keys().chain(g.keys()).collect();
            let mut lines = String::new();
            for k in keys {
                match (w.get(k), g.get(k)) {
                    (Some(a), Some(b)) if a == b => {}
                    (a, b) => {
                        let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), Value::to_string);
                        let _ = writeln!(lines, "  {k}:\n    - expected {}\n    + got      {}", show(a), show(b));
                    }
                }
            }
            if !lines.is_empty() {
                let _ = write!(diff, "record {}:\n{lines}", n + 1);
            }
        }
    }
    Ok(TestReport { outputs, diff })
}

/// `a.b[2].c` -> leaf, for a readable diff.
fn flatten(v: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: String, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(o) if !o.is_empty() => {
                for (k, v) in o {
                    walk(if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for (i, v) in a.iter().enumerate() {
                    walk(format!("{prefix}[{i}]"), v, out);
                }
            }
            leaf => {
                out.insert(prefix, leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(String::new(), v, &mut out);
    out
}
