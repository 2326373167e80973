//! Flow-derived metrics and aggregation, end to end: simulator → gateway → receiver, counters checked against
//! totals computed by hand from what the receiver got (or what the simulator generated).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use flowgate::config::{AggregationLevel, RawEntry};
use flowgate::receiver::accept_all;
use flowgate::sim::SimConfig;
use serde_json::Value;

use crate::support::*;
use crate::wasm::component;

const WAIT: Duration = Duration::from_secs(60);

fn sim_config(flows_per_bucket: usize) -> SimConfig {
    SimConfig { flows_per_bucket, time_scale: 30.0, seed: 11, ..SimConfig::default() }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn int(v: &Value) -> f64 {
    v.as_str().map_or(0.0, |s| s.parse().unwrap())
}

fn name(v: &Value, zero: &str) -> String {
    v.as_str().map_or_else(|| zero.to_string(), str::to_string)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

#[derive(Default)]
struct Expected {
    policy_flows: HashMap<Labels, f64>,
    policy_bytes: HashMap<Labels, f64>,
    end_of_tier_flows: HashMap<Labels, f64>,
    traffic_flows: HashMap<Labels, f64>,
    traffic_bytes: HashMap<Labels, f64>,
    traffic_started: HashMap<Labels, f64>,
}

/// Totals by hand from the bodies (protojson), independent of the gateway's protobuf path.
fn expected(bodies: &[String]) -> Expected {
    let mut e = Expected::default();
    for b in bodies {
        let f: Value = serde_json::from_str(b).unwrap();
        let k = &f["Key"];
        let bytes = int(&f["bytesIn"]) + int(&f["bytesOut"]);
        for hit in k["policies"]["enforcedPolicies"].as_array().into_iter().flatten() {
            let kind = name(&hit["kind"], "KindUnspecified");
            let action = name(&hit["action"], "ActionUnspecified");
            if kind == "EndOfTier" {
                if action == "Deny" {
                    let l = labels(&[
                        ("tier", &text(&hit["tier"])),
                        ("dest_namespace", &text(&k["destNamespace"])),
                        ("dest_name", &text(&k["destName"])),
                    ]);
                    *e.end_of_tier_flows.entry(l).or_default() += 1.0;
                }
                continue;
            }
            let l = labels(&[
                ("kind", &kind),
                ("tier", &text(&hit["tier"])),
                ("namespace", &text(&hit["namespace"])),
                ("name", &text(&hit["name"])),
                ("action", &action),
            ]);
            *e.policy_flows.entry(l.clone()).or_default() += 1.0;
            *e.policy_bytes.entry(l).or_default() += bytes;
        }
        let t = labels(&[
            ("source_namespace", &text(&k["sourceNamespace"])),
            ("source_type", &name(&k["sourceType"], "EndpointTypeUnspecified")),
            ("dest_namespace", &text(&k["destNamespace"])),
            ("dest_type", &name(&k["destType"], "EndpointTypeUnspecified")),
            ("proto", &text(&k["proto"])),
            ("reporter", &name(&k["reporter"], "ReporterUnspecified")),
            ("action", &name(&k["action"], "ActionUnspecified")),
        ]);
        *e.traffic_flows.entry(t.clone()).or_default() += 1.0;
        *e.traffic_started.entry(t.clone()).or_default() += int(&f["numConnectionsStarted"]);
        for (dir, field) in [("in", "bytesIn"), ("out", "bytesOut")] {
            let mut d = t.clone();
            d.insert("direction".into(), dir.into());
            *e.traffic_bytes.entry(d).or_default() += int(&f[field]);
        }
    }
    e
}

/// Same series, same values (zero-valued series aside: Prometheus counters for them may exist).
fn assert_same(what: &str, got: &HashMap<Labels, f64>, want: &HashMap<Labels, f64>) {
    for (l, v) in want {
        assert_eq!(got.get(l), Some(v), "{what}{l:?}");
    }
    for (l, v) in got {
        assert!(want.contains_key(l) || *v == 0.0, "{what}: unexpected series {l:?} = {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_metrics_equal_totals_computed_by_hand_from_the_exported_flows() {
    let (sim, _dir) = simulator(sim_config(300)).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.flow_metrics.enabled = Some(true);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "three buckets exported", || rx.body_count() >= 900 && settled(&sim, &gw)).await;
    gw.shutdown().await.unwrap();

    let bodies = rx.bodies();
    // The bodies are the simulator's flows, each once, so totals from them are totals over its buckets.
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, flows) = assert_exactly_once(&sim, &bodies, first, last);
    assert!(buckets >= 3, "{buckets} buckets, {flows} flows");
    let e = expected(&bodies);
    assert!(!e.end_of_tier_flows.is_empty() && e.policy_flows.len() > 10, "the simulator denies some flows");

    let text = gw.metrics.encode();
    assert_same("policy_flows", &samples(&text, "flowgate_policy_flows_total"), &e.policy_flows);
    assert_same("policy_bytes", &samples(&text, "flowgate_policy_bytes_total"), &e.policy_bytes);
    assert_same("end_of_tier", &samples(&text, "flowgate_policy_end_of_tier_denied_flows_total"), &e.end_of_tier_flows);
    assert_same("traffic_flows", &samples(&text, "flowgate_traffic_flows_total"), &e.traffic_flows);
    assert_same("traffic_bytes", &samples(&text, "flowgate_traffic_bytes_total"), &e.traffic_bytes);
    assert_same(
        "connections_started",
        &samples(&text, "flowgate_traffic_connections_started_total"),
        &e.traffic_started,
    );
    let folded = samples(&text, "flowgate_flow_metrics_folded_flows_total");
    assert!(folded.values().all(|v| *v == 0.0), "nothing folded under the default bound: {folded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_bound_folds_the_rest_into_overflow_and_keeps_the_totals() {
    let (sim, _dir) = simulator(sim_config(300)).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.flow_metrics.enabled = Some(true);
    raw.flow_metrics.max_series = Some(5);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "two buckets exported", || rx.body_count() >= 600 && settled(&sim, &gw)).await;
    gw.shutdown().await.unwrap();

    let e = expected(&rx.bodies());
    let text = gw.metrics.encode();
    let policy = samples(&text, "flowgate_policy_flows_total");
    let own: Vec<_> = policy.keys().filter(|l| l["name"] != "__overflow__").collect();
    assert_eq!(own.len(), 5, "exactly max_series label sets keep their own series");
    let overflow: f64 = policy.iter().filter(|(l, _)| l["name"] == "__overflow__").map(|(_, v)| v).sum();
    let total: f64 = policy.values().sum();
    assert_eq!(total, e.policy_flows.values().sum::<f64>(), "folding loses no flow");
    let folded = samples(&text, "flowgate_flow_metrics_folded_flows_total");
    assert_eq!(folded[&labels(&[("group", "policy")])], overflow);
    let folded_series = samples(&text, "flowgate_flow_metrics_folded_series");
    assert_eq!(folded_series[&labels(&[("group", "policy")])] as usize, e.policy_flows.len() - 5);
    let traffic = samples(&text, "flowgate_traffic_flows_total");
    assert!(traffic.keys().filter(|l| l["source_namespace"] != "__overflow__").count() <= 5);
    assert_eq!(traffic.values().sum::<f64>(), e.traffic_flows.values().sum::<f64>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_are_computed_after_redaction() {
    let (sim, dir) = simulator(sim_config(200)).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.flow_metrics.enabled = Some(true);
    let mut entry = RawEntry {
        name: Some("redact".into()),
        path: Some(component("flowgate_transform_redact.wasm")),
        ..RawEntry::default()
    };
    for (k, v) in [
        ("pseudonymize", "source_namespace,dest_namespace,dest_name"),
        ("key", "0123456789abcdef0123"),
        ("strip_policy_names", "true"),
    ] {
        entry.config.insert(k.into(), serde_norway::Value::String(v.into()));
    }
    raw.transforms.chain = Some(vec![entry]);
    raw.transforms.provenance = Some(false);
    let _keep = dir;
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "two buckets exported", || rx.body_count() >= 400 && settled(&sim, &gw)).await;
    gw.shutdown().await.unwrap();

    let text = gw.metrics.encode();
    let generated = sim.flow_gen().bucket(0);
    for f in &generated {
        let k = f.key.as_ref().unwrap();
        // (Policy namespaces are not something `redact` pseudonymises, so only the flow's own fields are checked.)
        for (label, secret) in [
            ("source_namespace", &k.source_namespace),
            ("dest_namespace", &k.dest_namespace),
            ("dest_name", &k.dest_name),
        ] {
            assert!(
                secret.is_empty() || !text.contains(&format!("{label}=\"{secret}\"")),
                "{label} {secret:?} leaked into a metric label"
            );
        }
        for hit in &k.policies.as_ref().unwrap().enforced_policies {
            assert!(hit.name.is_empty() || !text.contains(&hit.name), "policy name {:?} leaked", hit.name);
        }
    }
    let traffic = samples(&text, "flowgate_traffic_flows_total");
    assert!(traffic.keys().any(|l| l["source_namespace"].starts_with("anon-")), "labels carry the pseudonyms");
    // And the counts are those of the redacted flows the endpoint got.
    assert_same("traffic_flows", &traffic, &expected(&rx.bodies()).traffic_flows);
}

/// Sums of every counter field, per bucket.
fn sums_by_bucket(flows: impl IntoIterator<Item = (i64, [i64; 6])>) -> BTreeMap<i64, [i64; 6]> {
    let mut out: BTreeMap<i64, [i64; 6]> = BTreeMap::new();
    for (bucket, v) in flows {
        let slot = out.entry(bucket).or_default();
        for (s, x) in slot.iter_mut().zip(v) {
            *s += x;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_conserves_every_sum_per_bucket_and_reduces_the_records() {
    for level in [AggregationLevel::Names, AggregationLevel::Namespaces] {
        let (sim, _dir) = simulator(sim_config(400)).await;
        let rx = receiver(accept_all()).await;
        let mut raw = raw_config(&sim, &rx.base_url());
        raw.aggregation.enabled = Some(true);
        raw.aggregation.level = Some(level);
        raw.aggregation.linger_ms = Some(200);
        let mut gw = Gateway::start(resolve(raw)).await;
        wait_until(WAIT, "four buckets aggregated", || gw.metrics.aggregation_flows_in.get() >= 1_600).await;
        gw.shutdown().await.unwrap();

        let bodies = rx.bodies();
        let got = sums_by_bucket(bodies.iter().map(|b| {
            let f: Value = serde_json::from_str(b).unwrap();
            let start: i64 = f["startTime"].as_str().unwrap().parse().unwrap();
            let end: i64 = f["endTime"].as_str().unwrap().parse().unwrap();
            assert_eq!(end - start, 15, "a merged record covers one bucket: {b}");
            let v =
                ["packetsIn", "packetsOut", "bytesIn", "bytesOut", "numConnectionsStarted", "numConnectionsCompleted"]
                    .map(|k| int(&f[k]) as i64);
            (start, v)
        }));
        let generator = sim.flow_gen();
        let buckets: Vec<i64> = got.keys().copied().collect();
        assert!(buckets.len() >= 4, "{level:?}: buckets {buckets:?}");
        for (n, start) in buckets.iter().enumerate() {
            let want = sums_by_bucket(generator.bucket(*start).into_iter().map(|f| {
                let v = [
                    f.packets_in,
                    f.packets_out,
                    f.bytes_in,
                    f.bytes_out,
                    f.num_connections_started,
                    f.num_connections_completed,
                ];
                (f.start_time, v)
            }));
            if n + 1 < buckets.len() {
                assert_eq!(got[start], want[start], "{level:?}: bucket {start} sums in = sums out");
            } else {
                // The newest bucket may have been cut by the shutdown: never more than was sent.
                assert!(got[start].iter().zip(want[start]).all(|(g, w)| *g <= w), "{level:?}: newest bucket");
            }
        }

        let m = &gw.metrics;
        assert_eq!(m.aggregation_flows_in.get(), m.flows_received.get(), "{level:?}: every flow went through");
        assert_eq!(m.aggregation_records_out.get(), bodies.len() as u64, "{level:?}: records out = records received");
        assert_eq!(m.flows_exported.get(), bodies.len() as u64);
        assert_eq!(m.in_gateway(), 0, "{level:?}: nothing unaccounted for");
        let ratio = m.aggregation_flows_in.get() as f64 / bodies.len() as f64;
        assert!(ratio > 1.0, "{level:?}: {ratio:.2} flows per record");
        let text = m.encode();
        assert!(text.contains("flowgate_aggregation_reduction_ratio "), "the ratio is exported");
        println!("{level:?}: {} flows -> {} records ({ratio:.2}x)", m.aggregation_flows_in.get(), bodies.len());
    }
}

/// Metric name → series → value, from one OTLP metrics request (Prometheus' view: the same label sets).
fn otlp_series(
    req: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
) -> HashMap<String, HashMap<Labels, f64>> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric::Data, number_data_point};
    let mut out: HashMap<String, HashMap<Labels, f64>> = HashMap::new();
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            assert_eq!(sm.scope.as_ref().unwrap().name, "flowgate.flow_metrics");
            for m in &sm.metrics {
                let Some(Data::Sum(sum)) = &m.data else { panic!("{} is not a sum", m.name) };
                assert!(sum.is_monotonic, "{}", m.name);
                assert_eq!(sum.aggregation_temporality, AggregationTemporality::Cumulative as i32);
                for p in &sum.data_points {
                    assert!(p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano);
                    let labels: Labels = p
                        .attributes
                        .iter()
                        .map(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(Any::StringValue(s)) => (kv.key.clone(), s.clone()),
                            other => panic!("attribute {} is {other:?}", kv.key),
                        })
                        .collect();
                    let Some(number_data_point::Value::AsInt(v)) = p.value else { panic!("{} not an int", m.name) };
                    let previous = out.entry(m.name.clone()).or_default().insert(labels, v as f64);
                    assert!(previous.is_none(), "{} has a series twice", m.name);
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_metrics_pushed_over_otlp_equal_prometheus_and_survive_a_failing_endpoint() {
    use flowgate::pipeline::post::metrics::*;
    let (sim, _dir) = simulator(sim_config(200)).await;
    let rx = receiver(accept_all()).await;
    // The metrics endpoint fails first: cumulative sums mean the pushes after it carry everything.
    rx.set_metrics_status(503);
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.flow_metrics.enabled = Some(true);
    raw.flow_metrics.otlp.enabled = Some(true);
    raw.flow_metrics.otlp.interval_ms = Some(200);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "two buckets exported, metrics pushes failing", || {
        rx.body_count() >= 400 && settled(&sim, &gw) && gw.metrics.flow.pushes("error") >= 2
    })
    .await;
    assert!(rx.metrics().is_empty());
    rx.set_metrics_status(200);
    wait_until(WAIT, "a push accepted", || gw.metrics.flow.pushes("ok") >= 2).await;
    gw.shutdown().await.unwrap();

    let pushes = rx.metrics();
    let last = otlp_series(pushes.last().unwrap());
    // The last push came after the drain: it is exactly what /metrics shows, series for series.
    let text = gw.metrics.encode();
    let families = [
        POLICY_FLOWS,
        POLICY_PACKETS,
        POLICY_BYTES,
        END_OF_TIER_FLOWS,
        END_OF_TIER_PACKETS,
        END_OF_TIER_BYTES,
        TRAFFIC_FLOWS,
        TRAFFIC_PACKETS,
        TRAFFIC_BYTES,
        TRAFFIC_STARTED,
        TRAFFIC_COMPLETED,
    ];
    for d in families {
        let prometheus = samples(&text, &format!("flowgate_{}_total", d.prometheus));
        assert!(!prometheus.is_empty(), "{}", d.prometheus);
        assert_eq!(last.get(d.name), Some(&prometheus), "{} vs flowgate_{}_total", d.name, d.prometheus);
    }
    assert_eq!(last.len(), families.len(), "no other metric: {:?}", last.keys().collect::<Vec<_>>());
    // And the totals by hand, from what the receiver got.
    let e = expected(&rx.bodies());
    assert_same("otlp policy flows", &last[POLICY_FLOWS.name], &e.policy_flows);
    assert_same("otlp traffic bytes", &last[TRAFFIC_BYTES.name], &e.traffic_bytes);
    assert_same("otlp end of tier", &last[END_OF_TIER_FLOWS.name], &e.end_of_tier_flows);
    // Cumulative: no series ever goes down from one accepted push to the next.
    for pair in pushes.windows(2) {
        let (a, b) = (otlp_series(&pair[0]), otlp_series(&pair[1]));
        for (metric, series) in &a {
            for (l, v) in series {
                assert!(b[metric][l] >= *v, "{metric}{l:?} went down");
            }
        }
    }
    let resource = pushes[0].resource_metrics[0].resource.as_ref().unwrap();
    assert!(resource.attributes.iter().any(|kv| kv.key == "service.name"), "the logs' resource");
    assert_eq!(gw.metrics.flow.otlp_points.get() as usize, last.values().map(HashMap::len).sum::<usize>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_pushes_the_final_flow_metrics_before_the_period_is_up() {
    let (sim, _dir) = simulator(sim_config(150)).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.flow_metrics.enabled = Some(true);
    raw.flow_metrics.otlp.enabled = Some(true);
    raw.flow_metrics.otlp.interval_ms = Some(600_000);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "two buckets exported", || rx.body_count() >= 300 && settled(&sim, &gw)).await;
    assert!(rx.metrics().is_empty(), "nothing pushed before the period");
    gw.shutdown().await.unwrap();
    let pushes = rx.metrics();
    assert_eq!(pushes.len(), 1, "one push, at shutdown");
    let last = otlp_series(&pushes[0]);
    let e = expected(&rx.bodies());
    assert_same("traffic flows", &last["flowgate.traffic.flows"], &e.traffic_flows);
    assert_same("policy bytes", &last["flowgate.policy.bytes"], &e.policy_bytes);
}
