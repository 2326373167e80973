//! End to end: simulated Goldmane --mTLS gRPC--> gateway --OTLP/HTTP--> receiver decoding real protobuf.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowgate::receiver::{Reply, accept_all};
use flowgate::sim::SimConfig;
use flowgate::telemetry::DropReason;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

fn sim_config(flows_per_bucket: usize) -> SimConfig {
    // A bucket every half second.
    SimConfig { flows_per_bucket, time_scale: 30.0, seed: 42, ..SimConfig::default() }
}

/// Goldmane's 60 s stall timeout at the simulator's speed (a bucket every half second instead of 15 s) is 2 s:
/// a stream held back that long would lose flows, and a test waiting longer can see it.
const STALL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_arrives_once_with_the_old_exporters_record_shape() {
    let (sim, _dir) = simulator(sim_config(200)).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.otlp.resource_attributes.insert("k8s.cluster.name".into(), "test".into());
    let mut gw = Gateway::start(resolve(raw)).await;

    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    wait_until(WAIT, "three whole buckets exported", || rx.body_count() >= 600 && settled(&sim, &gw)).await;
    let (status, ready) = gw.admin_get("/readyz").await;
    assert_eq!((status, ready.as_str()), (200, "ready\n"));
    gw.shutdown().await.unwrap();

    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, flows) = assert_exactly_once(&sim, &rx.bodies(), first, last);
    assert!(buckets >= 3 && flows >= 600, "{buckets} buckets, {flows} flows");

    let requests = rx.accepted();
    for req in &requests {
        assert_eq!(req.resource_logs.len(), 1, "one ResourceLogs a request");
        let rl = &req.resource_logs[0];
        let attrs: std::collections::HashMap<_, _> = rl
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => (kv.key.clone(), s.clone()),
                other => panic!("resource attribute {} is not a string: {other:?}", kv.key),
            })
            .collect();
        assert_eq!(attrs["service.name"], "calico-flow-logs-otlphttp-exporter");
        assert_eq!(attrs["k8s.cluster.name"], "test");
        assert!(attrs.contains_key("service.version") && attrs.contains_key("telemetry.sdk.language"));
        assert_eq!(rl.scope_logs.len(), 1);
        assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "calico-flow-logs-otlphttp-exporter");
        for r in &rl.scope_logs[0].log_records {
            assert_eq!((r.severity_number, r.severity_text.as_str()), (9, "INFO"));
            assert!(r.attributes.is_empty());
            assert_eq!(r.time_unix_nano, r.observed_time_unix_nano);
            assert!(r.time_unix_nano >= before, "timestamps are processing time, not flow time");
        }
    }
    let headers = rx.headers();
    assert_eq!(headers[0]["content-type"], "application/x-protobuf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_mid_bucket_resumes_with_no_loss_and_no_duplicate() {
    let (sim, _dir) = simulator(sim_config(300)).await;
    let rx = receiver(accept_all()).await;
    let mut gw = Gateway::start(resolve(raw_config(&sim, &rx.base_url()))).await;

    wait_until(WAIT, "first bucket exported", || rx.body_count() >= 300 && settled(&sim, &gw)).await;
    // Break the stream half-way through the next burst.
    sim.cut_after(150);
    wait_until(WAIT, "reconnected", || sim.requests().len() >= 2).await;
    let resumed_from = sim.requests()[1];
    let received_before = rx.body_count();
    wait_until(WAIT, "two more buckets after the cut", || {
        rx.body_count() >= received_before + 600 && settled(&sim, &gw)
    })
    .await;
    gw.shutdown().await.unwrap();

    assert_eq!(sim.requests()[0], 0, "the first connection starts from now, as the old exporter");
    assert!(resumed_from > 0 && resumed_from % 15 == 0, "resumed at a bucket start, got {resumed_from}");
    let m = &gw.metrics;
    assert_eq!(m.duplicates_skipped.get(), 150, "the half-bucket sent before the cut came again and was skipped");
    assert!(m.reconnects.get() >= 1);
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, _) = assert_exactly_once(&sim, &rx.bodies(), first, last);
    assert!(buckets >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_503_for_30_seconds_then_recovers_with_nothing_lost() {
    let (sim, _dir) = simulator(SimConfig { stall_timeout: STALL, ..sim_config(100) }).await;
    let (rx, failing) = receiver_down_while().await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.otlp.retry_max_ms = Some(2_000);
    let mut gw = Gateway::start(resolve(raw)).await;

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(sim.stalled(), 0, "Goldmane never had to drop a bucket for us (stall timeout {STALL:?})");
    let held = gw.metrics.flows_received.get();
    assert!(held >= 100 * 50, "the stream kept being read while the endpoint failed: {held} flows");
    assert_eq!(gw.metrics.flows_exported.get(), 0);
    assert!(gw.metrics.retries_count("503") > 0);
    failing.store(false, Ordering::SeqCst);

    wait_until(WAIT, "backlog exported", || settled(&sim, &gw) && rx.body_count() % 100 == 0).await;
    gw.shutdown().await.unwrap();
    for reason in [DropReason::Rejected, DropReason::Shutdown, DropReason::TooLarge] {
        assert_eq!(gw.metrics.dropped_count(reason), 0, "{reason:?}");
    }
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, _) = assert_exactly_once(&sim, &rx.bodies(), first, last);
    assert!(buckets >= 50, "{buckets}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_429_is_honoured() {
    let (sim, _dir) = simulator(sim_config(50)).await;
    let rx = receiver(Arc::new(|n, _| {
        if n == 0 { Reply::Status { code: 429, retry_after: Some("2".into()) } } else { Reply::Accept { rejected: 0 } }
    }))
    .await;
    let mut raw = raw_config(&sim, &rx.base_url());
    // One request at a time, so the second request is the retry.
    raw.otlp.max_in_flight = Some(1);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "retry accepted", || !rx.accepted().is_empty()).await;
    let times = rx.request_times();
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_millis(1_950), "Retry-After: 2 but retried after {gap:?}");
    assert!(gap < Duration::from_secs(4), "retried only after {gap:?}");
    assert_eq!(gw.metrics.retries_count("429"), 1);
    wait_until(WAIT, "settled", || settled(&sim, &gw)).await;
    gw.shutdown().await.unwrap();
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    assert_exactly_once(&sim, &rx.bodies(), first, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_too_large_splits_the_batch_until_it_fits() {
    let (sim, _dir) = simulator(sim_config(400)).await;
    let largest_accepted = Arc::new(AtomicU64::new(0));
    let l = largest_accepted.clone();
    let rx = receiver(Arc::new(move |_, records| {
        if records > 100 {
            Reply::Status { code: 413, retry_after: None }
        } else {
            l.fetch_max(records as u64, Ordering::SeqCst);
            Reply::Accept { rejected: 0 }
        }
    }))
    .await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.batch.delay_ms = Some(1_000);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "two buckets exported", || rx.body_count() >= 800).await;
    // Then nothing more is sent, so the gateway can be seen caught up: with a bucket every half second and each
    // request split twice, a loaded machine may never catch up between two buckets.
    sim.stop();
    wait_until(WAIT, "everything sent exported", || settled(&sim, &gw)).await;
    gw.shutdown().await.unwrap();
    assert!(gw.metrics.retries_count("413") > 0);
    assert_eq!(gw.metrics.dropped_count(DropReason::TooLarge), 0);
    assert!(largest_accepted.load(Ordering::SeqCst) > 50, "halves, not single records");
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    assert_exactly_once(&sim, &rx.bodies(), first, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_400_goes_to_the_dead_letter_file_and_export_continues() {
    let (sim, dir) = simulator(sim_config(50)).await;
    let rx = receiver(Arc::new(|n, _| {
        if n == 0 { Reply::Status { code: 400, retry_after: None } } else { Reply::Accept { rejected: 0 } }
    }))
    .await;
    let dead_letter = dir.path().join("dead-letter.jsonl");
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.otlp.max_in_flight = Some(1);
    raw.otlp.dead_letter_path = Some(dead_letter.clone());
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "later batches accepted", || rx.body_count() >= 100).await;
    gw.shutdown().await.unwrap();

    let rejected = gw.metrics.dropped_count(DropReason::Rejected);
    assert!(rejected > 0);
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&dead_letter).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, rejected, "every rejected record is in the dead-letter file");
    assert_eq!(gw.metrics.dead_lettered.get(), rejected);
    for l in &lines {
        assert_eq!(l["status"], 400);
        let body: serde_json::Value = serde_json::from_str(l["body"].as_str().unwrap()).unwrap();
        assert!(body["Key"].is_object(), "the original body is kept: {body}");
    }
    // Nothing rejected ever reached the receiver, everything else did, once: the two sets are disjoint and
    // together hold every flow the gateway read, each once.
    let accepted = rx.bodies();
    let rejected_bodies: Vec<String> = lines.iter().map(|l| l["body"].as_str().unwrap().to_string()).collect();
    let accepted_ids: std::collections::HashSet<_> = accepted.iter().map(|b| identity(b)).collect();
    for b in &rejected_bodies {
        assert!(!accepted_ids.contains(&identity(b)), "a rejected flow reached the receiver: {b}");
    }
    let all: Vec<String> = accepted.into_iter().chain(rejected_bodies).collect();
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    assert_exactly_once(&sim, &all, first, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_rejections_are_counted() {
    let (sim, _dir) = simulator(sim_config(50)).await;
    let rx = receiver(Arc::new(|n, _| Reply::Accept { rejected: if n == 0 { 3 } else { 0 } })).await;
    let mut gw = Gateway::start(resolve(raw_config(&sim, &rx.base_url()))).await;
    wait_until(WAIT, "two requests", || rx.accepted().len() >= 2).await;
    gw.shutdown().await.unwrap();
    assert_eq!(gw.metrics.dropped_count(DropReason::PartialSuccess), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_stops_the_stream_instead_of_dropping() {
    // The endpoint refuses everything for 8 buckets (4 s), holding the stream back that long on purpose; the
    // simulator drops flows for a stream held back 10 s, so reading must resume soon after the endpoint does.
    let stall_timeout = Duration::from_secs(10);
    let (sim, _dir) = simulator(SimConfig { stall_timeout, ..sim_config(2_000) }).await;
    let (rx, blocked) = receiver_down_while().await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.queue.max_records = Some(500);
    raw.batch.max_records = Some(50);
    let mut gw = Gateway::start(resolve(raw)).await;

    // 4,000 flows a second are offered while the endpoint refuses everything.
    let first = sim.newest_bucket();
    sim.wait_for_bucket(first + 8 * 15).await;
    let received = gw.metrics.flows_received.get();
    let queued = gw.metrics.queue_records.get();
    assert!(queued <= 500, "the queue bound holds: {queued}");
    // What may be held: the queue (500), a partial batch (50), 4 chunks in each of two stage channels and one
    // chunk in hand in each of three stages (chunks are at most 512 flows): 6,182 flows. 16,000 were offered.
    assert!(received <= 6_182, "the gateway kept reading into memory: {received} flows received");
    blocked.store(false, Ordering::SeqCst);
    // A stall loses the rest of a bucket, so whole buckets would never arrive: stop waiting and say so. Caught up
    // is the eight buckets offered while blocked at least: between two buckets of that backlog, everything the
    // simulator has sent so far can be exported already.
    wait_until(WAIT, "caught up", || {
        sim.stalled() > 0 || (settled(&sim, &gw) && rx.body_count() >= 8 * 2_000 && rx.body_count() % 2_000 == 0)
    })
    .await;
    assert_eq!(sim.stalled(), 0, "backpressure never outlasted the stall timeout ({stall_timeout:?})");
    gw.shutdown().await.unwrap();
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, _) = assert_exactly_once(&sim, &rx.bodies(), first, last);
    assert!(buckets >= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_metrics_and_probes() {
    let (sim, _dir) = simulator(sim_config(50)).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    // First point at a port where nothing listens: alive, not ready.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    raw.goldmane.host = Some(format!("localhost:{closed}"));
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "a failed connection attempt", || gw.metrics.reconnects.get() >= 1).await;
    assert_eq!(gw.admin_get("/healthz").await.0, 200);
    // The old chart's probes ask for `/`.
    assert_eq!(gw.admin_get("/").await.0, 200);
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!((status, body.as_str()), (503, "not ready: Goldmane stream not established\n"));
    gw.shutdown().await.unwrap();

    let mut gw = Gateway::start(resolve(raw_config(&sim, &rx.base_url()))).await;
    wait_until(WAIT, "a bucket exported", || gw.metrics.flows_exported.get() >= 50).await;
    assert_eq!(gw.admin_get("/readyz").await.0, 200);
    let (status, text) = gw.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    assert!(value("flowgate_flows_received_total") >= 50.0);
    assert!(value("flowgate_flows_exported_total") >= 50.0);
    assert_eq!(value("flowgate_source_connected"), 1.0);
    assert!(value("flowgate_source_last_message_age_seconds") < 30.0);
    assert!(value("flowgate_export_duration_seconds_count") >= 1.0);
    for name in [
        "flowgate_flows_duplicate_total",
        "flowgate_queue_records",
        "flowgate_queue_bytes",
        "flowgate_source_reconnects_total",
        "flowgate_build_info",
    ] {
        value(name);
    }
    // The allocator's accounting (this test binary runs on the gateway's allocator): live bytes sit in active
    // pages, which sit in resident ones.
    let bytes = |kind: &str| value(&format!("flowgate_allocator_bytes{{kind=\"{kind}\"}}"));
    let (allocated, active, resident) = (bytes("allocated"), bytes("active"), bytes("resident"));
    assert!(allocated > 0.0 && allocated <= active && active <= resident, "{allocated} {active} {resident}");
    assert!(bytes("metadata") > 0.0);
    bytes("retained");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn check_describes_the_config_and_redacts_header_values() {
    let (sim, _dir) = simulator(sim_config(10)).await;
    let mut raw = raw_config(&sim, "http://127.0.0.1:4318");
    raw.otlp.headers.insert("authorization".into(), "Bearer s3cr3t-token".into());
    let report = flowgate::app::check(&resolve(raw)).unwrap();
    assert!(report.starts_with("configuration OK"), "{report}");
    assert!(report.contains("authorization: <redacted>"), "{report}");
    assert!(!report.contains("s3cr3t"), "a secret leaked into check output:\n{report}");
    assert!(report.contains(&sim.certs.ca_cert.display().to_string()));
    // Without a state directory or the persistent queue, a restart starts from now: say so.
    assert!(report.contains("state:     none: a restart starts the stream from now"), "{report}");
    assert!(report.contains("reconcile        on: List each bucket 10/60/300 s after it was streamed"), "{report}");
    let mut raw = raw_config(&sim, "http://127.0.0.1:4318");
    raw.state_dir = Some("/var/lib/flowgate/state".into());
    raw.goldmane.reconcile.enabled = Some(false);
    let report = flowgate::app::describe(&resolve(raw));
    assert!(
        report.contains("stream cursor in /var/lib/flowgate/state (moves with the endpoint's acknowledgements)"),
        "{report}"
    );
    assert!(report.contains("reconcile        off"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_queue_absorbs_a_100k_flow_burst_while_the_endpoint_is_down() {
    // A bucket every 3 s; Goldmane would drop the rest of a bucket for a stream stalled 60 s: here, 10 s.
    let sim_cfg = SimConfig {
        flows_per_bucket: 100_000,
        time_scale: 5.0,
        seed: 8,
        stall_timeout: Duration::from_secs(10),
        ..SimConfig::default()
    };
    let (sim, _dir) = simulator(sim_cfg).await;
    let (rx, down) = receiver_down_while().await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.otlp.compression = Some("zstd".into());
    let mut gw = Gateway::start(resolve(raw)).await; // default queue and batch sizes
    wait_until(Duration::from_secs(120), "the whole burst read", || gw.metrics.flows_received.get() >= 100_000).await;
    let queued = gw.metrics.queue_records.get() as u64;
    assert!(queued + 5_000 >= 100_000, "the burst sits in the queue, not in the stream: {queued} queued");
    assert_eq!(gw.metrics.flows_exported.get(), 0);
    assert_eq!(sim.stalled(), 0, "Goldmane never had to drop part of the burst");
    down.store(false, Ordering::SeqCst);
    wait_until(Duration::from_secs(120), "the burst exported", || gw.metrics.flows_exported.get() >= 100_000).await;
    gw.shutdown().await.unwrap();
    assert_eq!(sim.stalled(), 0);
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    let (buckets, flows) = assert_exactly_once(&sim, &rx.bodies(), first, last);
    assert!(flows >= 100_000, "{buckets} buckets, {flows} flows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_filter_reaches_goldmane() {
    use flowgate::config::{FilterConfig, MatchTypeConfig, StringMatchConfig};
    let (sim, _dir) = simulator(sim_config(10)).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.goldmane.filter = Some(FilterConfig {
        dest_namespaces: vec![StringMatchConfig { value: "pay".into(), r#type: MatchTypeConfig::Fuzzy }],
        dest_ports: vec![443, 8443],
        actions: vec!["Deny".into()],
        reporter: Some("Dst".into()),
        ..FilterConfig::default()
    });
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "stream opened", || !sim.stream_requests().is_empty()).await;
    gw.shutdown().await.unwrap();
    let filter = sim.stream_requests()[0].filter.clone().expect("a filter was sent");
    assert_eq!(filter.dest_namespaces.len(), 1);
    assert_eq!(filter.dest_namespaces[0].value, "pay");
    assert_eq!(filter.dest_namespaces[0].r#type, flowgate::proto::MatchType::Fuzzy as i32);
    assert_eq!(filter.dest_ports.iter().map(|p| p.port).collect::<Vec<_>>(), vec![443, 8443]);
    assert_eq!(filter.actions, vec![flowgate::proto::Action::Deny as i32]);
    assert_eq!(filter.reporter, flowgate::proto::Reporter::Dst as i32);
    // With no filter configured, none is sent (the old exporter's all-zero request).
    let (sim2, _dir2) = simulator(sim_config(10)).await;
    let mut gw = Gateway::start(resolve(raw_config(&sim2, &rx.base_url()))).await;
    wait_until(WAIT, "stream opened", || !sim2.stream_requests().is_empty()).await;
    gw.shutdown().await.unwrap();
    assert_eq!(sim2.stream_requests()[0], flowgate::proto::FlowStreamRequest::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_start_backfills_history_then_continues_live() {
    let (sim, _dir) = simulator(sim_config(40)).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    // The last two minutes: Goldmane's newest bucket ends 15-30 s ago, so six or seven buckets of history.
    raw.goldmane.start_time_gte = Some(-120);
    let live_from = sim.newest_bucket() + 15;
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "history and two live buckets", || {
        let bodies = rx.bodies();
        bodies.iter().filter(|b| identity(b).1 >= live_from + 15).count() >= 40 && settled(&sim, &gw)
    })
    .await;
    gw.shutdown().await.unwrap();
    let bodies = rx.bodies();
    let history = bodies.iter().filter(|b| identity(b).1 < live_from).count();
    assert!(history >= 6 * 40, "backfilled {history} flows from before the connection");
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    assert_exactly_once(&sim, &bodies, first, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_beyond_the_request_timeout_holds_the_batch() {
    let (sim, _dir) = simulator(sim_config(50)).await;
    let rx = receiver(Arc::new(|n, _| {
        if n == 0 { Reply::Status { code: 503, retry_after: Some("3".into()) } } else { Reply::Accept { rejected: 0 } }
    }))
    .await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.otlp.max_in_flight = Some(1);
    // Retry-After (3 s) is three request timeouts.
    raw.otlp.timeout_ms = Some(1_000);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "retry accepted", || !rx.accepted().is_empty()).await;
    let times = rx.request_times();
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_millis(2_950), "Retry-After: 3 but retried after {gap:?}");
    assert!(gap < Duration::from_secs(5), "retried only after {gap:?}");
    assert_eq!(gw.metrics.retries_count("503"), 1);
    wait_until(WAIT, "settled", || settled(&sim, &gw)).await;
    gw.shutdown().await.unwrap();
    for reason in [DropReason::Rejected, DropReason::Shutdown, DropReason::TooLarge] {
        assert_eq!(gw.metrics.dropped_count(reason), 0, "{reason:?}: the held batch was never dropped");
    }
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    assert_exactly_once(&sim, &rx.bodies(), first, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_not_ready_while_the_endpoint_rejects_everything() {
    let (sim, _dir) = simulator(sim_config(50)).await;
    let rejecting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = rejecting.clone();
    let rx = receiver(Arc::new(move |_, _| {
        if r.load(Ordering::SeqCst) {
            Reply::Status { code: 400, retry_after: None }
        } else {
            Reply::Accept { rejected: 0 }
        }
    }))
    .await;
    let mut gw = Gateway::start(resolve(raw_config(&sim, &rx.base_url()))).await;
    wait_until(WAIT, "a batch rejected", || gw.metrics.dropped_count(DropReason::Rejected) > 0).await;
    assert_eq!(gw.metrics.stream_connected.get(), 1, "the stream is up: only the endpoint makes it not ready");
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!((status, body.as_str()), (503, "not ready: OTLP endpoint rejects every request permanently\n"));
    rejecting.store(false, Ordering::SeqCst);
    wait_until(WAIT, "a batch accepted", || gw.metrics.flows_exported.get() > 0).await;
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    gw.shutdown().await.unwrap();
}
