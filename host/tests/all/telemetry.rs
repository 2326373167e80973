//! The gateway's own telemetry never holds the data path: with its endpoint down and its span queue tiny, every
//! flow is still exported once, and the spans that did not fit are counted.

use std::time::Duration;

use flowgate::config::RawEntry;
use flowgate::config::env::*;
use flowgate::receiver::accept_all;
use flowgate::sim::SimConfig;

use crate::support::*;
use crate::wasm::component;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_span_queue_drops_spans_counted_and_the_flows_go_on() {
    let (sim, _dir) =
        simulator(SimConfig { flows_per_bucket: 300, time_scale: 30.0, seed: 31, ..SimConfig::default() }).await;
    let rx = receiver(accept_all()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.telemetry.endpoint = Some(format!("http://{closed}"));
    raw.transforms.chain = Some(vec![RawEntry {
        name: Some("chaos".into()),
        path: Some(component("flowgate_test_guest_chaos.wasm")),
        ..RawEntry::default()
    }]);
    let env = flowgate::config::Env::from_pairs([
        (ENV_OTEL_TRACES_EXPORTER, "otlp"),
        (ENV_OTEL_METRICS_EXPORTER, "otlp"),
        (ENV_OTEL_METRIC_EXPORT_INTERVAL, "200"),
        (ENV_OTEL_TRACES_SAMPLER, "always_on"),
        (ENV_OTEL_BSP_MAX_QUEUE_SIZE, "1"),
    ]);
    let mut gw = Gateway::start(flowgate::config::resolve_with_env(raw, &env).unwrap()).await;
    wait_until(Duration::from_secs(60), "three buckets exported", || rx.body_count() >= 900).await;
    gw.shutdown().await.unwrap();

    let m = &gw.metrics;
    assert!(m.telemetry_spans_dropped.get() > 0, "a queue of one overflowed");
    assert!(m.telemetry_spans_failed.get() > 0, "the spans that fit could not be sent");
    let (first, last) = expected_buckets(&sim, &sim, m);
    let (buckets, flows) = assert_exactly_once(&sim, &rx.bodies(), first, last);
    assert!(buckets >= 3, "{buckets} buckets, {flows} flows");
}
