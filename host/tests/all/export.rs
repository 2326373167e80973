//! The OTLP side in detail: TLS to the endpoint, headers, concurrency, an endpoint that is not there yet, and
//! what shutdown does with queued records.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flowgate::receiver::{Receiver, Reply, accept_all};
use flowgate::sim::{SimCerts, SimConfig};
use flowgate::telemetry::DropReason;
use flowgate::tls;
use tokio::net::TcpListener;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

fn sim_config(flows_per_bucket: usize) -> SimConfig {
    SimConfig { flows_per_bucket, time_scale: 30.0, seed: 77, ..SimConfig::default() }
}

/// An HTTPS receiver with its own PKI, requiring client certificates from that PKI.
async fn tls_receiver(pki: &SimCerts) -> Receiver {
    let config = tls::mtls_server_config(
        tls::load_certs("server certificate", &pki.server_cert).unwrap(),
        tls::load_key(&pki.server_key).unwrap(),
        tls::load_roots(&pki.ca_cert).unwrap(),
    )
    .unwrap();
    Receiver::start_tls(TcpListener::bind("127.0.0.1:0").await.unwrap(), accept_all(), config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_with_custom_ca_client_certificate_and_headers() {
    let (sim, dir) = simulator(sim_config(100)).await;
    let pki = SimCerts::generate(&dir.path().join("otlp-pki")).unwrap();
    let rx = tls_receiver(&pki).await;
    let mut raw = raw_config(&sim, &format!("https://localhost:{}", rx.addr.port()));
    raw.otlp.ca_cert_path = Some(pki.ca_cert.clone());
    raw.otlp.client_cert_path = Some(pki.client_cert.clone());
    raw.otlp.client_key_path = Some(pki.client_key.clone());
    raw.otlp.headers.insert("authorization".into(), "Bearer t0ken".into());
    raw.otlp.headers.insert("x-scope-orgid".into(), "tenant-1".into());
    raw.otlp.compression = Some("gzip".into());
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "two buckets over mTLS", || rx.body_count() >= 200 && settled(&sim, &gw)).await;
    gw.shutdown().await.unwrap();
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    assert_exactly_once(&sim, &rx.bodies(), first, last);
    let headers = rx.headers();
    assert_eq!(headers[0]["authorization"], "Bearer t0ken");
    assert_eq!(headers[0]["x-scope-orgid"], "tenant-1");
    assert_eq!(headers[0]["content-encoding"], "gzip");
    assert!(headers[0]["user-agent"].to_str().unwrap().starts_with("flowgate/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_refusing_our_client_certificate_is_retried_not_dropped() {
    let (sim, dir) = simulator(sim_config(50)).await;
    let pki = SimCerts::generate(&dir.path().join("otlp-pki")).unwrap();
    let rx = tls_receiver(&pki).await;
    let mut raw = raw_config(&sim, &format!("https://localhost:{}", rx.addr.port()));
    raw.otlp.ca_cert_path = Some(pki.ca_cert.clone());
    // No client certificate: the endpoint requires one, so no request ever gets through.
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "flows received and retried", || {
        gw.metrics.flows_received.get() >= 50
            && gw.metrics.retries_count("connect") + gw.metrics.retries_count("io") > 0
    })
    .await;
    assert_eq!(rx.requests(), 0);
    assert_eq!(gw.metrics.flows_exported.get(), 0);
    assert_eq!(gw.metrics.dropped_count(DropReason::Rejected), 0, "a TLS failure is not a permanent rejection");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_run_concurrently_up_to_max_in_flight() {
    let (sim, _dir) = simulator(sim_config(1_000)).await;
    let rx = receiver(Arc::new(|_, _| Reply::AcceptAfter(Duration::from_millis(300)))).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.otlp.max_in_flight = Some(3);
    raw.batch.max_records = Some(100);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "a burst exported", || gw.metrics.flows_exported.get() >= 1_000).await;
    gw.shutdown().await.unwrap();
    assert_eq!(rx.max_concurrent(), 3, "three requests in flight at once, never more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_not_up_yet_gets_everything_once_it_is() {
    let (sim, _dir) = simulator(sim_config(100)).await;
    // Reserve a port, then leave it closed for a while: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut gw = Gateway::start(resolve(raw_config(&sim, &format!("http://127.0.0.1:{port}")))).await;
    wait_until(WAIT, "connection errors retried", || gw.metrics.retries_count("connect") >= 3).await;
    let rx = receiver_on(port).await;
    wait_until(WAIT, "backlog exported", || settled(&sim, &gw) && gw.metrics.flows_exported.get() >= 300).await;
    gw.shutdown().await.unwrap();
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    assert_exactly_once(&sim, &rx.bodies(), first, last);
}

async fn receiver_on(port: u16) -> Receiver {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    Receiver::start(listener, accept_all(), None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_what_is_queued() {
    let (sim, _dir) = simulator(sim_config(300)).await;
    let (rx, down) = receiver_down_while().await;
    let mut gw = Gateway::start(resolve(raw_config(&sim, &rx.base_url()))).await;
    wait_until(WAIT, "records queued", || gw.metrics.queue_records.get() >= 600).await;
    // SIGTERM while everything is queued; the endpoint recovers during the grace period.
    down.store(false, Ordering::SeqCst);
    gw.shutdown().await.unwrap();
    let received = gw.metrics.flows_received.get();
    assert_eq!(gw.metrics.flows_exported.get(), received, "every flow read before SIGTERM was exported");
    assert_eq!(gw.metrics.dropped_count(DropReason::Shutdown), 0);
    assert_eq!(rx.bodies().len() as u64, received);
    assert_eq!(rx.body_count(), rx.bodies().len(), "the count the other tests poll is the bodies kept");
    let (first, last) = expected_buckets(&sim, &sim, &gw.metrics);
    assert_exactly_once(&sim, &rx.bodies(), first, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_after_the_grace_period_and_counts_the_loss() {
    let (sim, _dir) = simulator(sim_config(300)).await;
    let rx = receiver(Arc::new(|_, _| Reply::Status { code: 503, retry_after: None })).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.shutdown_grace_ms = Some(1_000);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "records queued", || gw.metrics.queue_records.get() >= 300).await;
    let started = Instant::now();
    gw.shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown honours the grace period: took {took:?}");
    let lost = gw.metrics.dropped_count(DropReason::Shutdown);
    assert_eq!(lost, gw.metrics.flows_received.get(), "everything still queued is counted as lost");
}
