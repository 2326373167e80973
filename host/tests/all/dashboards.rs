//! The Grafana dashboards under `dashboards/` ask only for what the gateway exports: every Prometheus metric name
//! in a query is one `/metrics` serves, every Loki field is one the record body has.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use flowgate::config::SERVICE_NAME;
use flowgate::sim::FlowGen;
use flowgate::telemetry::Metrics;
use serde_json::Value;

fn dashboards() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// (datasource type, expr) of every query.
fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push((t["datasource"]["type"].as_str().unwrap().to_string(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

fn words(expr: &str, starts: impl Fn(&str) -> bool) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| starts(w)).map(str::to_string).collect()
}

/// Metrics with every family holding a series (labelled families appear once they count something).
fn populated() -> String {
    let m = Metrics::new();
    m.dropped(flowgate::telemetry::DropReason::Transform, 1);
    m.retry("503");
    m.transform_flows("redact", flowgate::telemetry::TransformEvent::In, 1);
    m.transform_error("redact", flowgate::telemetry::TransformError::Trap);
    m.transform_failure("redact", flowgate::config::FailurePolicy::FailOpen);
    m.transform_calls("redact");
    m.transform_duration("redact", std::time::Duration::from_millis(1));
    m.transform_reload("swapped");
    m.transform_rollback("redact");
    m.dead_letter_stream(flowgate::telemetry::StreamOutcome::Exported, 1);
    m.transform_counter("redact", "redacted", 1);
    m.set_active_chain(&[("redact".into(), "sha256:00".into())]);
    m.flows_late("new", "list");
    m.reconcile_pass(true);
    let mut stats = flowgate::pipeline::post::FlowStats::new(flowgate::config::FlowMetricsConfig {
        max_series: 5,
        namespaces: None,
        otlp: None,
    });
    // A flow denied by a policy rule (the simulator's denials are all end-of-tier), seen first so that its series
    // is kept whole.
    let mut denied = (FlowGen { seed: 5, keys: 1 }).flow(0, 1_800_000_000);
    let key = denied.key.as_mut().unwrap();
    key.action = flowgate::proto::Action::Deny as i32;
    let hit = &mut key.policies.as_mut().unwrap().enforced_policies[0];
    (hit.kind, hit.action) = (flowgate::proto::PolicyKind::CalicoNetworkPolicy as i32, key.action);
    stats.observe(&denied, &m.flow);
    for f in (FlowGen { seed: 5, keys: 200 }).bucket(1_800_000_000) {
        stats.observe(&f, &m.flow);
    }
    m.encode()
}

#[test]
fn prometheus_queries_name_only_metrics_the_gateway_exports() {
    let text = populated();
    let mut names = HashSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => ["_bucket", "_sum", "_count"].iter().all(|s| names.insert(format!("{name}{s}"))),
            _ => names.insert(name.to_string()),
        };
    }
    let mut checked = 0;
    for (file, d) in dashboards() {
        for (ds, expr) in queries(&d) {
            if ds != "prometheus" {
                continue;
            }
            let used = words(&expr, |w| w.starts_with("flowgate_"));
            assert!(!used.is_empty(), "{file}: a query with no flowgate metric: {expr}");
            for m in used {
                assert!(names.contains(&m), "{file}: {m} is not exported by the gateway ({expr})");
                checked += 1;
            }
        }
    }
    assert!(checked >= 36, "{checked} metric references checked");
}

/// Each metric's label names, with the values seen, in a Prometheus text exposition.
fn labels_by_metric(text: &str) -> HashMap<String, HashMap<String, HashSet<String>>> {
    let mut out: HashMap<String, HashMap<String, HashSet<String>>> = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else { continue };
        let labels = out.entry(name.to_string()).or_default();
        let (pairs, _) = rest.rsplit_once("} ").unwrap();
        for pair in pairs.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap();
            labels.entry(k.to_string()).or_default().insert(v.trim_end_matches('"').to_string());
        }
    }
    out
}

/// The label names in `by (...)` and `without (...)` clauses of a query.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for clause in ["by (", "without ("] {
        for (i, _) in expr.match_indices(clause) {
            let inner = &expr[i + clause.len()..];
            let inner = &inner[..inner.find(')').unwrap()];
            out.extend(inner.split(',').map(|l| l.trim().to_string()));
        }
    }
    out
}

/// (metric, label, `Some(value)` for an equality matcher) of every label matcher `metric{label op "value"}`.
fn matchers(expr: &str) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    for (i, _) in expr.match_indices('{') {
        let metric = words(&expr[..i], |w| w.starts_with("flowgate_")).pop().unwrap();
        assert!(expr[..i].ends_with(&metric), "a selector not right after a metric name: {expr}");
        let inner = &expr[i + 1..];
        for m in inner[..inner.find('}').unwrap()].split(',') {
            let at = m.find(['=', '!']).unwrap();
            let (label, rest) = m.split_at(at);
            let value = rest.strip_prefix('=').filter(|v| !v.starts_with('~')).map(|v| v.trim_matches('"').to_string());
            out.push((metric.clone(), label.trim().to_string(), value));
        }
    }
    out
}

#[test]
fn prometheus_queries_use_only_labels_and_values_the_gateway_exports() {
    let exported = labels_by_metric(&populated());
    let mut checked = 0;
    for (file, d) in dashboards() {
        for (ds, expr) in queries(&d) {
            if ds != "prometheus" {
                continue;
            }
            let used = words(&expr, |w| w.starts_with("flowgate_"));
            for label in grouping_labels(&expr) {
                let known = used.iter().any(|m| exported.get(m).is_some_and(|l| l.contains_key(&label)));
                assert!(known, "{file}: no metric of the query has the label {label:?}: {expr}");
                checked += 1;
            }
            for (metric, label, value) in matchers(&expr) {
                let values = exported.get(&metric).and_then(|l| l.get(&label));
                let values = values.unwrap_or_else(|| panic!("{file}: {metric} has no label {label:?}: {expr}"));
                if let Some(v) = value {
                    assert!(values.contains(&v), "{file}: {metric}{{{label}}} is never {v:?} (seen: {values:?})");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "{checked} label references checked");
}

/// The body as Loki's `| json` flattens it: nested keys joined with `_`.
fn flatten(prefix: &str, v: &Value, out: &mut HashSet<String>) {
    if let Value::Object(m) = v {
        for (k, v) in m {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}_{k}") };
            flatten(&key, v, out);
            out.insert(key);
        }
    }
}

#[test]
fn loki_queries_select_the_old_service_name_and_existing_body_fields() {
    let mut fields = HashSet::new();
    for f in (FlowGen { seed: 5, keys: 200 }).bucket(1_800_000_000) {
        let body: Value = serde_json::from_str(&flowgate::render::flow_json_string(&f)).unwrap();
        flatten("", &body, &mut fields);
    }
    let mut loki = 0;
    for (file, d) in dashboards() {
        for (ds, expr) in queries(&d) {
            if ds != "loki" {
                continue;
            }
            loki += 1;
            assert!(expr.contains(&format!("{{service_name=\"{SERVICE_NAME}\"}}")), "{file}: {expr}");
            let used = words(&expr, |w| {
                w.starts_with("Key_") || ["bytesIn", "bytesOut", "packetsIn", "packetsOut"].contains(&w)
            });
            for field in used {
                assert!(fields.contains(&field), "{file}: {field} is not a field of the body ({expr})");
            }
        }
    }
    assert!(loki >= 7, "{loki} Loki queries");
}
