//! Dead letters as an OTLP logs stream to a second endpoint (`dead_letter.endpoint`): the flows the `dead-letter`
//! failure policy sets aside and the records the main endpoint rejects, each once, with why as attributes; an
//! endpoint that is down costs dead letters (counted), never the data path.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use flowgate::config::{FailurePolicy, RawEntry};
use flowgate::dead_letter::{
    DIGEST_ATTRIBUTE, ERROR_ATTRIBUTE, REASON_ATTRIBUTE, STATUS_ATTRIBUTE, TRANSFORM_ATTRIBUTE,
};
use flowgate::receiver::{Reply, accept_all};
use flowgate::sim::SimConfig;
use flowgate::telemetry::{DropReason, StreamOutcome};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use crate::support::*;
use crate::wasm::component;

const WAIT: Duration = Duration::from_secs(60);
/// Chaos answers `error` for flows to this port (about one in seven of the simulator's).
const PORT: &str = "443";

fn body(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("not a string body: {other:?}"),
    }
}

fn attributes(r: &LogRecord) -> BTreeMap<String, String> {
    r.attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn dest_port(body: &str) -> i64 {
    let flow: serde_json::Value = serde_json::from_str(body).unwrap();
    flow["Key"]["destPort"].as_i64().unwrap_or_else(|| flow["Key"]["destPort"].as_str().unwrap().parse().unwrap())
}

/// A chain of chaos failing on [`PORT`] under the `dead-letter` policy.
fn chain() -> Vec<RawEntry> {
    let mut entry = RawEntry {
        name: Some("chaos".into()),
        path: Some(component("flowgate_test_guest_chaos.wasm")),
        failure_policy: Some(FailurePolicy::DeadLetter),
        ..RawEntry::default()
    };
    entry.config.insert("error_on_port".into(), serde_norway::Value::String(PORT.into()));
    vec![entry]
}

fn chaos_digest() -> String {
    use sha2::Digest as _;
    let bytes = std::fs::read(component("flowgate_test_guest_chaos.wasm")).unwrap();
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The dead-letter endpoint answers 503 to its first request (retried), then accepts. It receives exactly the
/// flows the policy routed (every flow to the port, no other), each once, with the original body, the error,
/// the transform and its digest; the main endpoint gets every other flow; together, every flow once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_streams_exactly_the_flows_it_routed_with_their_attributes() {
    let (sim, _dir) =
        simulator(SimConfig { flows_per_bucket: 300, time_scale: 30.0, seed: 21, ..SimConfig::default() }).await;
    let main = receiver(accept_all()).await;
    let dead = receiver(Arc::new(|n, _| {
        if n == 0 { Reply::Status { code: 503, retry_after: None } } else { Reply::Accept { rejected: 0 } }
    }))
    .await;
    let mut raw = raw_config(&sim, &main.base_url());
    raw.transforms.chain = Some(chain());
    raw.transforms.workers = Some(2);
    raw.dead_letter.endpoint = Some(format!("{}/v1/logs", dead.base_url()));
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "dead letters and exports", || {
        crate::support::log_records(&dead).len() >= 200 && main.body_count() >= 1_500
    })
    .await;
    gw.shutdown().await.unwrap();

    let letters = crate::support::log_records(&dead);
    let routed = gw.metrics.transform_failures_count("chaos", FailurePolicy::DeadLetter);
    assert_eq!(letters.len() as u64, routed, "every flow the policy routed arrived, once");
    assert_eq!(gw.metrics.dead_letter_stream_count(StreamOutcome::Exported), routed);
    assert_eq!(gw.metrics.dead_letter_stream_count(StreamOutcome::QueueFull), 0);
    assert!(gw.metrics.dead_letter_stream_retries.get() >= 1, "the 503 was retried");
    let digest = chaos_digest();
    for r in &letters {
        let a = attributes(r);
        assert_eq!(a[REASON_ATTRIBUTE], "transform");
        assert_eq!(a[ERROR_ATTRIBUTE], format!("chaos cannot handle port {PORT}"));
        assert_eq!(a[TRANSFORM_ATTRIBUTE], "chaos");
        assert_eq!(a[DIGEST_ATTRIBUTE], digest);
        assert_eq!(dest_port(&body(r)).to_string(), PORT);
    }
    let exported = main.bodies();
    assert!(exported.iter().all(|b| dest_port(b).to_string() != PORT), "no routed flow was exported");
    let all: Vec<String> = exported.into_iter().chain(letters.iter().map(body)).collect();
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, flows) = assert_exactly_once(&sim, &all, first, last);
    assert!(buckets >= 2, "{buckets} buckets, {flows} flows");
}

/// Records the main endpoint rejects permanently (its first request gets a 400) go to the dead-letter endpoint
/// with their own body, the status and the reason; nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_rejections_go_to_the_dead_letter_endpoint() {
    let (sim, _dir) =
        simulator(SimConfig { flows_per_bucket: 50, time_scale: 30.0, seed: 22, ..SimConfig::default() }).await;
    let main = receiver(Arc::new(|n, _| {
        if n == 0 { Reply::Status { code: 400, retry_after: None } } else { Reply::Accept { rejected: 0 } }
    }))
    .await;
    let dead = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &main.base_url());
    raw.otlp.max_in_flight = Some(1);
    raw.dead_letter.endpoint = Some(format!("{}/v1/logs", dead.base_url()));
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "later batches accepted", || main.body_count() >= 100).await;
    gw.shutdown().await.unwrap();

    let rejected = gw.metrics.dropped_count(DropReason::Rejected);
    assert!(rejected > 0);
    let letters = crate::support::log_records(&dead);
    assert_eq!(letters.len() as u64, rejected, "every rejected record is a dead letter");
    assert_eq!(gw.metrics.dead_letter_stream_count(StreamOutcome::Exported), rejected);
    for r in &letters {
        let a = attributes(r);
        assert_eq!(a[REASON_ATTRIBUTE], "rejected");
        assert_eq!(a[STATUS_ATTRIBUTE], "400");
        assert!(!a.contains_key(TRANSFORM_ATTRIBUTE));
    }
    let accepted: HashSet<_> = main.bodies().iter().map(|b| identity(b)).collect();
    assert!(letters.iter().all(|r| !accepted.contains(&identity(&body(r)))), "a rejected flow was also exported");
    let all: Vec<String> = main.bodies().into_iter().chain(letters.iter().map(body)).collect();
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    assert_exactly_once(&sim, &all, first, last);
}

/// A dead-letter endpoint nobody listens on: the export goes on at full pace, the dead letters beyond the
/// channel's 20 (and the batch being retried) are dropped as they are offered, and every one is accounted for (queue full, or lost at shutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_endpoint_that_is_down_never_holds_the_data_path() {
    let (sim, _dir) =
        simulator(SimConfig { flows_per_bucket: 300, time_scale: 30.0, seed: 23, ..SimConfig::default() }).await;
    let main = receiver(accept_all()).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut raw = raw_config(&sim, &main.base_url());
    raw.transforms.chain = Some(chain());
    raw.dead_letter.endpoint = Some(format!("http://{closed}/v1/logs"));
    raw.dead_letter.max_records = Some(20);
    raw.dead_letter.timeout_ms = Some(500);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "exports past many dead letters", || main.body_count() >= 2_000).await;
    assert!(gw.metrics.dead_letter_stream_count(StreamOutcome::QueueFull) > 0);
    gw.shutdown().await.unwrap();

    let m = &gw.metrics;
    let routed = m.transform_failures_count("chaos", FailurePolicy::DeadLetter);
    assert!(routed > 100, "{routed}");
    assert_eq!(m.dead_letter_stream_count(StreamOutcome::Exported), 0);
    let (full, shutdown) =
        (m.dead_letter_stream_count(StreamOutcome::QueueFull), m.dead_letter_stream_count(StreamOutcome::Shutdown));
    assert_eq!(
        full + shutdown,
        routed,
        "every dead letter accounted for: {full} dropped as full, {shutdown} at shutdown"
    );
    // The channel's worth, and the batch the export task held, retrying.
    assert!(shutdown > 0 && shutdown <= 2 * 20, "lost at shutdown: {shutdown}");
    assert!(main.bodies().iter().all(|b| dest_port(b).to_string() != PORT));
}
