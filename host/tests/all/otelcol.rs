//! Against the real OpenTelemetry Collector (OTLP/HTTP receiver -> file exporter), built by
//! `tools/otelcol/build.sh`: every flow arrives intact, with gzip and zstd, the flow metrics' OTLP push is
//! accepted as the sums it claims to be, and the gateway's own metrics and traces arrive as documented.
//!
//! The binary is looked up at `$FLOWGATE_OTELCOL`, else `target/otelcol/otelcol-flowgate` (`make otelcol`). Without
//! it these tests fail, unless `FLOWGATE_SKIP_OTELCOL=1` says to skip them (and they say so on stderr).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flowgate::sim::SimConfig;
use serde_json::Value;

use crate::support::*;

/// The explicit opt-out: set, the Collector tests pass without running.
const SKIP_VAR: &str = "FLOWGATE_SKIP_OTELCOL";

fn collector_binary() -> Option<PathBuf> {
    if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
        #[allow(clippy::print_stderr)] // the test harness shows a skipped test's stderr
        {
            eprintln!("SKIPPED: {SKIP_VAR}=1: the real OpenTelemetry Collector tests did not run");
        }
        return None;
    }
    let path = std::env::var_os("FLOWGATE_OTELCOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/otelcol/otelcol-flowgate")));
    assert!(
        path.exists(),
        "the OpenTelemetry Collector is missing at {}: build it with `make otelcol` (tools/otelcol/build.sh), \
         or set {SKIP_VAR}=1 to skip these tests",
        path.display()
    );
    Some(path)
}

struct Collector {
    child: Child,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_collector(bin: &PathBuf, dir: &std::path::Path, out: &std::path::Path) -> (Collector, u16) {
    let port = free_port();
    let config = dir.join("otelcol.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\n\
             exporters:\n  file:\n    path: {}\n    flush_interval: 100ms\n\
             service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [file]\n\
             \x20   metrics:\n      receivers: [otlp]\n      exporters: [file]\n\
             \x20   traces:\n      receivers: [otlp]\n      exporters: [file]\n",
            out.display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("otelcol.log")).unwrap())
        .spawn()
        .expect("start the collector");
    let collector = Collector { child };
    wait_until(Duration::from_secs(30), "collector listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    (collector, port)
}

/// Every log record the file exporter wrote (OTLP JSON, one request a line): (resource attrs, scope, record).
fn records(out: &std::path::Path) -> Vec<(Value, Value, Value)> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut all = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        for rl in v["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    all.push((rl["resource"]["attributes"].clone(), sl["scope"].clone(), r.clone()));
                }
            }
        }
    }
    all
}

async fn through_the_collector(compression: &str) {
    let Some(bin) = collector_binary() else { return };
    let (sim, dir) =
        simulator(SimConfig { flows_per_bucket: 150, time_scale: 30.0, seed: 5, ..SimConfig::default() }).await;
    let out = dir.path().join("logs.json");
    let (_collector, port) = start_collector(&bin, dir.path(), &out).await;

    let mut raw = raw_config(&sim, &format!("http://127.0.0.1:{port}"));
    raw.otlp.compression = Some(compression.to_string());
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(Duration::from_secs(60), "three buckets in the collector's file", || {
        records(&out).len() >= 450 && gw.metrics.flows_exported.get() == gw.metrics.flows_received.get()
    })
    .await;
    gw.shutdown().await.unwrap();
    // The file exporter flushes every 100 ms.
    wait_until(Duration::from_secs(10), "file flushed", || {
        records(&out).len() as u64 == gw.metrics.flows_exported.get()
    })
    .await;

    let recs = records(&out);
    let bodies: Vec<String> =
        recs.iter().map(|(_, _, r)| r["body"]["stringValue"].as_str().unwrap().to_string()).collect();
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, _) = assert_exactly_once(&sim, &bodies, first, last);
    assert!(buckets >= 3);
    for (attrs, scope, r) in &recs {
        let service = attrs
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "service.name")
            .map(|a| a["value"]["stringValue"].clone());
        assert_eq!(service, Some(Value::from("calico-flow-logs-otlphttp-exporter")));
        assert_eq!(scope["name"], "calico-flow-logs-otlphttp-exporter");
        assert_eq!(r["severityNumber"], 9);
        assert_eq!(r["severityText"], "INFO");
        assert_eq!(r["timeUnixNano"], r["observedTimeUnixNano"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_arrives_intact_in_the_real_collector_gzip() {
    through_the_collector("gzip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_arrives_intact_in_the_real_collector_zstd() {
    through_the_collector("zstd").await;
}

/// The data points of `metric` in the last metrics request the file exporter wrote: attributes -> value.
fn last_metric(out: &std::path::Path, metric: &str) -> Vec<(Value, i64)> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let Some(last) = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("resourceMetrics").is_some())
    else {
        return Vec::new();
    };
    let mut points = Vec::new();
    for rm in last["resourceMetrics"].as_array().into_iter().flatten() {
        for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
            for m in sm["metrics"].as_array().into_iter().flatten().filter(|m| m["name"] == metric) {
                assert_eq!(m["sum"]["isMonotonic"], true, "{m}");
                assert_eq!(m["sum"]["aggregationTemporality"], 2, "cumulative: {m}");
                for p in m["sum"]["dataPoints"].as_array().into_iter().flatten() {
                    points.push((p["attributes"].clone(), p["asInt"].as_str().unwrap().parse().unwrap()));
                }
            }
        }
    }
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_collector_takes_the_flow_metrics_push() {
    let Some(bin) = collector_binary() else { return };
    let (sim, dir) =
        simulator(SimConfig { flows_per_bucket: 120, time_scale: 30.0, seed: 9, ..SimConfig::default() }).await;
    let out = dir.path().join("telemetry.json");
    let (_collector, port) = start_collector(&bin, dir.path(), &out).await;

    let mut raw = raw_config(&sim, &format!("http://127.0.0.1:{port}"));
    raw.otlp.compression = Some("gzip".into());
    raw.flow_metrics.enabled = Some(true);
    raw.flow_metrics.otlp.enabled = Some(true);
    raw.flow_metrics.otlp.interval_ms = Some(300);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(Duration::from_secs(60), "two buckets through the collector", || {
        records(&out).len() >= 240 && gw.metrics.flows_exported.get() == gw.metrics.flows_received.get()
    })
    .await;
    gw.shutdown().await.unwrap();
    let flows = gw.metrics.flows_exported.get() as i64;
    // The final push follows the drain; the file exporter flushes every 100 ms.
    wait_until(Duration::from_secs(10), "the final push in the collector's file", || {
        last_metric(&out, "flowgate.traffic.flows").iter().map(|(_, v)| v).sum::<i64>() == flows
    })
    .await;
    assert_eq!(gw.metrics.flow.pushes("error"), 0, "the collector refused a push");
    let text = gw.metrics.encode();
    let bytes = last_metric(&out, "flowgate.traffic.bytes");
    let prometheus: f64 = samples(&text, "flowgate_traffic_bytes_total").values().sum();
    assert_eq!(bytes.iter().map(|(_, v)| *v as f64).sum::<f64>(), prometheus);
    assert!(bytes.iter().all(|(attrs, _)| attrs.as_array().unwrap().iter().any(|a| a["key"] == "direction")));
}

/// Every line of the file exporter's output that holds `key` (`resourceMetrics`, `resourceSpans`).
fn requests(out: &std::path::Path, key: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get(key).is_some()).collect()
}

/// The value of the gateway's own `metric` in the last request holding it (summed over its data points).
fn own_metric(out: &std::path::Path, metric: &str) -> Option<f64> {
    requests(out, "resourceMetrics").iter().rev().find_map(|v| {
        let mut found = None;
        for rm in v["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten().filter(|sm| sm["scope"]["name"] == "flowgate")
            {
                for m in sm["metrics"].as_array().into_iter().flatten().filter(|m| m["name"] == metric) {
                    let data = if m.get("sum").is_some() { &m["sum"] } else { &m["gauge"] };
                    let sum: f64 = data["dataPoints"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| p["asDouble"].as_f64().unwrap())
                        .sum();
                    found = Some(found.unwrap_or(0.0) + sum);
                }
            }
        }
        found
    })
}

/// Every span the file exporter wrote, with its attributes as a map.
fn spans(out: &std::path::Path) -> Vec<(Value, std::collections::HashMap<String, Value>)> {
    let mut all = Vec::new();
    for v in requests(out, "resourceSpans") {
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let attrs = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
                        .collect();
                    all.push((s.clone(), attrs));
                }
            }
        }
    }
    all
}

/// `OTEL_METRICS_EXPORTER=otlp` and `OTEL_TRACES_EXPORTER=otlp` (every batch sampled): the Collector receives the
/// `/metrics` families with the same values, and a `flowgate.batch` span per chunk holding a `flowgate.chain`
/// span holding a `flowgate.transform` span for the transform, and a `flowgate.export` span for the request its
/// records went out in, all under the scope `flowgate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_collector_receives_the_gateways_own_metrics_and_traces() {
    use flowgate::config::env::*;
    let Some(bin) = collector_binary() else { return };
    let (sim, dir) =
        simulator(SimConfig { flows_per_bucket: 120, time_scale: 30.0, seed: 12, ..SimConfig::default() }).await;
    let out = dir.path().join("telemetry.json");
    let (_collector, port) = start_collector(&bin, dir.path(), &out).await;

    let mut raw = raw_config(&sim, &format!("http://127.0.0.1:{port}"));
    raw.transforms.chain = Some(vec![flowgate::config::RawEntry {
        name: Some("chaos".into()),
        path: Some(crate::wasm::component("flowgate_test_guest_chaos.wasm")),
        ..Default::default()
    }]);
    let env = flowgate::config::Env::from_pairs([
        (ENV_OTEL_METRICS_EXPORTER, "otlp"),
        (ENV_OTEL_TRACES_EXPORTER, "otlp"),
        (ENV_OTEL_TRACES_SAMPLER, "always_on"),
        (ENV_OTEL_METRIC_EXPORT_INTERVAL, "300"),
    ]);
    let cfg = flowgate::config::resolve_with_env(raw, &env).unwrap();
    assert!(cfg.telemetry.as_ref().is_some_and(|t| t.sample_ratio == 1.0));
    let mut gw = Gateway::start(cfg).await;
    wait_until(Duration::from_secs(60), "two buckets through the collector", || {
        records(&out).len() >= 240 && gw.metrics.flows_exported.get() == gw.metrics.flows_received.get()
    })
    .await;
    gw.shutdown().await.unwrap();
    let exported = gw.metrics.flows_exported.get() as f64;
    wait_until(Duration::from_secs(10), "the last metrics in the collector's file", || {
        own_metric(&out, "flowgate_flows_exported") == Some(exported)
    })
    .await;
    let prometheus = gw.metrics.encode();
    let received: f64 = samples(&prometheus, "flowgate_flows_received_total").values().sum();
    assert_eq!(own_metric(&out, "flowgate_flows_received"), Some(received));
    assert!(own_metric(&out, "flowgate_queue_records").is_some(), "gauges arrive too");
    assert!(own_metric(&out, "flowgate_export_duration_seconds_count").is_some_and(|n| n > 0.0));
    let calls: f64 = samples(&prometheus, "flowgate_transform_calls_total").values().sum();
    assert_eq!(own_metric(&out, "flowgate_transform_calls"), Some(calls), "labelled families, every series");

    let into_chain = gw.metrics.transform_flows_count("chaos", flowgate::telemetry::TransformEvent::In);
    wait_until(Duration::from_secs(10), "every batch's span in the collector's file", || {
        let batches = spans(&out).into_iter().filter(|(s, _)| s["name"] == "flowgate.batch");
        batches.map(|(_, a)| a["flowgate.flows"]["intValue"].as_str().unwrap().parse::<u64>().unwrap()).sum::<u64>()
            == into_chain
    })
    .await;
    assert_eq!(gw.metrics.telemetry_spans_dropped.get(), 0);
    let all = spans(&out);
    let id = |s: &Value, k: &str| s[k].as_str().unwrap_or_default().to_string();
    let batches: std::collections::HashMap<String, &std::collections::HashMap<String, Value>> =
        all.iter().filter(|(s, _)| s["name"] == "flowgate.batch").map(|(s, a)| (id(s, "spanId"), a)).collect();
    let chains: std::collections::HashMap<String, String> = all
        .iter()
        .filter(|(s, _)| s["name"] == "flowgate.chain")
        .map(|(s, _)| (id(s, "spanId"), id(s, "parentSpanId")))
        .collect();
    assert_eq!(chains.len(), batches.len(), "a chain span per batch");
    assert!(chains.values().all(|parent| batches.contains_key(parent)));
    let transforms: Vec<_> = all.iter().filter(|(s, _)| s["name"] == "flowgate.transform").collect();
    assert_eq!(transforms.len(), batches.len());
    for (s, a) in transforms {
        assert!(chains.contains_key(&id(s, "parentSpanId")), "a transform span sits in its chain span");
        assert_eq!(a["flowgate.transform.name"]["stringValue"], "chaos");
        assert_eq!(a["flowgate.flows.in"], a["flowgate.flows.out"], "chaos keeps every flow");
    }
    assert!(batches.values().all(|a| a.contains_key("flowgate.records")));
    // Each batch's span lasts until its records are exported: a `flowgate.export` span inside every batch that
    // had records.
    let exports: Vec<_> = all.iter().filter(|(s, _)| s["name"] == "flowgate.export").collect();
    let with_records = batches.values().filter(|a| a["flowgate.records"]["intValue"] != "0").count();
    assert!(with_records > 0);
    assert_eq!(exports.len(), with_records, "an export span per batch with records");
    for (s, a) in exports {
        assert!(batches.contains_key(&id(s, "parentSpanId")), "an export span sits in its batch's span");
        assert!(a["flowgate.records"]["intValue"].as_str().is_some_and(|n| n != "0"));
    }
}
