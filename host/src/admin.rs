//! Admin HTTP: `/metrics` (Prometheus text), `/healthz` and `/` (the process runs), `/readyz` (stream up, exporter
//! not failing permanently), and, when `admin.tap.enabled`, the live tap: `/tap` (records after a stage) and
//! `/capture` (flows as Goldmane sent them, as a capture file), both under the redaction rule of
//! [`pipeline::tap`](crate::pipeline::tap).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::capture;
use crate::pipeline::ChainCell;
use crate::pipeline::tap::{Event, Filter, Point, Subscription, TapRefused};
use crate::telemetry::Metrics;

/// How often a tap reports the records it skipped.
const SKIPPED_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    chain: Arc<ChainCell>,
}

/// Serves until `shutdown` fires. `chain` is the chain the gateway serves (the tap looks into it).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    chain: Arc<ChainCell>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        // The old chart's helm-create probes ask for `/`: answer it, so old values files keep working.
        .route("/", get(|| async { "flowgate: /metrics /healthz /readyz /tap /capture\n" }))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/tap", get(tap))
        .route("/capture", get(capture))
        .with_state(Admin { metrics, chain });
    let stop = shutdown.clone();
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

async fn metrics_text(State(a): State<Admin>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], a.metrics.encode())
}

async fn ready(State(a): State<Admin>) -> impl IntoResponse {
    match a.metrics.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

/// The query's parameters, decoded.
fn params(query: Option<String>) -> Vec<(String, String)> {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The tap answers loopback clients unless `admin.tap.allow_remote`.
fn local(a: &Admin, peer: SocketAddr) -> Result<(), TapRefused> {
    let remote = a.chain.get().tap.rules().is_some_and(|r| r.allow_remote);
    let loopback = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        ip => ip.is_loopback(),
    };
    if loopback || remote { Ok(()) } else { Err(TapRefused::Remote) }
}

fn refused(e: TapRefused) -> Response {
    let status = match e {
        TapRefused::NoSuchPoint { .. } => StatusCode::NOT_FOUND,
        TapRefused::Disabled | TapRefused::Remote | TapRefused::BeforeRedaction { .. } => StatusCode::FORBIDDEN,
    };
    (status, format!("{e}\n")).into_response()
}

fn bad(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

fn number<T: std::str::FromStr>(params: &[(String, String)], key: &str) -> Result<Option<T>, String> {
    match params.iter().find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, v)) => v.parse().map(Some).map_err(|_| format!("{key}: {v:?} is not a whole number")),
    }
}

/// `GET /tap?after=<stage|source|end>&filter=<expr>&rate=<per second>` (`after` defaults to `end`): lines `record <json>` (as `flowgate test`
/// prints records) and, each second some were skipped, `skipped <n>`.
async fn tap(
    State(a): State<Admin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match local(&a, peer) {
        Ok(()) => params(query),
        Err(e) => return refused(e),
    };
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let filter = match get("filter").filter(|f| !f.trim().is_empty()).map(Filter::parse).transpose() {
        Ok(f) => f,
        Err(e) => return bad(e.to_string()),
    };
    let chain = a.chain.get();
    let point = Point::parse(get("after").unwrap_or(crate::pipeline::tap::END), &chain);
    let max = chain.tap.rules().map_or(1, |r| r.max_per_second);
    let rate = match number::<u32>(&params, "rate") {
        Ok(r) => r.unwrap_or(max),
        Err(e) => return bad(e),
    };
    let mut sub = match chain.tap.subscribe(&chain, point, filter, Some(rate)) {
        Ok(s) => s,
        Err(e) => return refused(e),
    };
    let stream = async_stream::stream! {
        let mut tick = tokio::time::interval(SKIPPED_EVERY);
        tick.tick().await;
        loop {
            let mut text = String::new();
            tokio::select! {
                event = sub.events.recv() => {
                    let Some(event) = event else { break };
                    line(&mut text, event);
                    while let Ok(event) = sub.events.try_recv() {
                        line(&mut text, event);
                    }
                }
                _ = tick.tick() => {
                    let skipped = sub.take_skipped();
                    if skipped > 0 {
                        text.push_str(&format!("skipped {skipped}\n"));
                    }
                }
            }
            if !text.is_empty() {
                yield Ok::<_, std::io::Error>(text);
            }
        }
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::from_stream(stream)).into_response()
}

fn line(text: &mut String, event: Event) {
    if let Event::Record(r) = event {
        text.push_str("record ");
        text.push_str(&r.to_string());
        text.push('\n');
    }
}

/// `GET /capture?count=&bytes=&duration_ms=`: a capture file of the flows the gateway receives from now, until a
/// bound is reached or the client hangs up.
async fn capture(
    State(a): State<Admin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match local(&a, peer) {
        Ok(()) => params(query),
        Err(e) => return refused(e),
    };
    let (count, bytes, duration_ms) =
        match (number::<u64>(&params, "count"), number::<u64>(&params, "bytes"), number::<u64>(&params, "duration_ms"))
        {
            (Ok(c), Ok(b), Ok(d)) => (c, b, d),
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return bad(e),
        };
    let chain = a.chain.get();
    let mut sub: Subscription = match chain.tap.subscribe(&chain, Point::Source, None, None) {
        Ok(s) => s,
        Err(e) => return refused(e),
    };
    let header = capture::Header {
        version: capture::VERSION,
        started_unix_ms: crate::pipeline::unix_nanos() / 1_000_000,
        source: "flowgate admin /capture".to_string(),
        writer: concat!("flowgate ", env!("CARGO_PKG_VERSION")).to_string(),
    };
    let started = Instant::now();
    let deadline = duration_ms.map(|d| tokio::time::Instant::now() + Duration::from_millis(d));
    let stream = async_stream::stream! {
        let mut w = match capture::Writer::new(Vec::new(), &header) {
            Ok(w) => w,
            Err(e) => { yield Err(e); return; }
        };
        yield Ok(std::mem::take(w.get_mut()));
        let full = |w: &capture::Writer<Vec<u8>>| {
            count.is_some_and(|c| w.records >= c) || bytes.is_some_and(|b| w.bytes >= b)
        };
        while !full(&w) {
            let event = match deadline {
                Some(d) => match tokio::time::timeout_at(d, sub.events.recv()).await {
                    Ok(e) => e,
                    Err(_) => break,
                },
                None => sub.events.recv().await,
            };
            let Some(mut event) = event else { break };
            loop {
                if let Event::Flow(flow) = event
                    && let Err(e) = w.write(started.elapsed().as_millis() as u64, &flow)
                {
                    yield Err(e);
                    return;
                }
                if full(&w) {
                    break;
                }
                match sub.events.try_recv() {
                    Ok(e) => event = e,
                    Err(_) => break,
                }
            }
            yield Ok(std::mem::take(w.get_mut()));
        }
        let skipped = sub.take_skipped();
        if skipped > 0 {
            tracing::warn!(skipped, "admin capture: the reader fell behind and flows were left out of the capture");
        }
    };
    ([(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(stream)).into_response()
}
