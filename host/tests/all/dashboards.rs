//! The Grafana dashboards under `dashboards/` ask only for what the gateway exports: every Prometheus metric name
//! in a query is one `/metrics` serves, every Loki field is one the record body has.

use std::collections::HashSet;
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
    m.transform_flows("redact", "in", 1);
    m.transform_error("redact", "trap");
    m.transform_failure("redact", "fail-open");
    m.transform_calls("redact");
    m.transform_duration("redact", std::time::Duration::from_millis(1));
    m.transform_reload("swapped");
    m.transform_counter("redact", "redacted", 1);
    m.set_active_chain(&[("redact".into(), "sha256:00".into())]);
    m.flows_late("new", "list");
    m.reconcile_pass(true);
    let mut stats = flowgate::post::FlowStats::new(flowgate::config::FlowMetricsConfig {
        max_series: 5,
        namespaces: None,
        otlp: None,
    });
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
