//! A small OTLP/HTTP receiver: the demo's endpoint, and the peer integration tests export to.
//!
//! It decodes real protobuf (`application/x-protobuf`, gzip or zstd), answers what its [`Responder`] says
//! (to script 503s, 429 with `Retry-After`, 413 or 400), and keeps the requests it accepted. Metrics
//! (`/v1/metrics`, the flow metrics' push) are kept too, answered with a status set by
//! [`Receiver::set_metrics_status`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Compression;
use crate::otlp::decompress;

/// What the receiver answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 200, optionally reporting some records rejected in `partial_success`.
    Accept { rejected: i64 },
    /// Any other status, with an optional `Retry-After` value.
    Status { code: u16, retry_after: Option<String> },
    /// Accept, after holding the request this long (a slow endpoint).
    AcceptAfter(std::time::Duration),
    /// Close the connection without answering (a reset mid-request; nothing is kept).
    Reset,
}

/// Marks a response that must not be sent: the connection is dropped instead.
#[derive(Clone, Copy)]
struct ResetMarker;

#[derive(Debug, thiserror::Error)]
#[error("scripted connection reset")]
struct ResetError;

/// Decides the reply to each request (`n` counts requests from 0; `records` is how many it carries).
pub type Responder = Arc<dyn Fn(u64, usize) -> Reply + Send + Sync>;

/// Always accept.
pub fn accept_all() -> Responder {
    Arc::new(|_, _| Reply::Accept { rejected: 0 })
}

struct Shared {
    responder: Responder,
    requests: AtomicU64,
    /// Log records accepted.
    records: AtomicU64,
    /// Of those kept, the records with a string body: [`Receiver::body_count`].
    bodies: AtomicU64,
    /// Keep accepted requests (tests); off, only count them (benchmarks).
    keep: bool,
    accepted: Mutex<Vec<ExportLogsServiceRequest>>,
    headers: Mutex<Vec<HeaderMap>>,
    times: Mutex<Vec<Instant>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    notify: Option<mpsc::UnboundedSender<ExportLogsServiceRequest>>,
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    /// Status answered to metrics requests; 200 keeps them.
    metrics_status: AtomicU16,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Receiver {
    /// Serves plain HTTP on `listener`; accepted requests are also sent to `notify` when given.
    pub fn start(
        listener: TcpListener,
        responder: Responder,
        notify: Option<mpsc::UnboundedSender<ExportLogsServiceRequest>>,
    ) -> std::io::Result<Self> {
        Self::serve(listener, responder, notify, None, true)
    }

    /// Serves plain HTTP, accepting everything and keeping only the count of records (for benchmarks: memory
    /// stays flat however many arrive).
    pub fn start_counting(listener: TcpListener) -> std::io::Result<Self> {
        Self::serve(listener, accept_all(), None, None, false)
    }

    /// Log records accepted so far.
    pub fn records(&self) -> u64 {
        self.shared.records.load(Ordering::SeqCst)
    }

    /// Serves HTTPS (HTTP/1.1 and h2 by ALPN) with `tls`, e.g. requiring client certificates.
    pub fn start_tls(listener: TcpListener, responder: Responder, tls: rustls::ServerConfig) -> std::io::Result<Self> {
        Self::serve(listener, responder, None, Some(tls), true)
    }

    fn serve(
        listener: TcpListener,
        responder: Responder,
        notify: Option<mpsc::UnboundedSender<ExportLogsServiceRequest>>,
        tls: Option<rustls::ServerConfig>,
        keep: bool,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            responder,
            requests: AtomicU64::new(0),
            records: AtomicU64::new(0),
            bodies: AtomicU64::new(0),
            keep,
            accepted: Mutex::new(Vec::new()),
            headers: Mutex::new(Vec::new()),
            times: Mutex::new(Vec::new()),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            notify,
            metrics: Mutex::new(Vec::new()),
            metrics_status: AtomicU16::new(200),
        });
        let stop = CancellationToken::new();
        let app =
            Router::new().route("/v1/logs", post(logs)).route("/v1/metrics", post(metrics)).with_state(shared.clone());
        let token = stop.clone();
        let acceptor = tls.map(|mut tls| {
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(tls))
        });
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                let (acceptor, app, token) = (acceptor.clone(), app.clone(), token.clone());
                tokio::spawn(async move {
                    match acceptor {
                        // A client that fails the handshake (wrong CA, no certificate) just gets no connection.
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(tcp).await else { return };
                            serve_connection(stream, app, token).await;
                        }
                        None => serve_connection(tcp, app, token).await,
                    }
                });
            }
        });
        Ok(Receiver { addr, shared, stop })
    }

    /// `http://addr` (append `/v1/logs` for the logs endpoint).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received, answered or not.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Copies of the requests that were accepted.
    pub fn accepted(&self) -> Vec<ExportLogsServiceRequest> {
        self.shared.accepted.lock().expect("receiver lock").clone()
    }

    /// Headers of every request received.
    pub fn headers(&self) -> Vec<HeaderMap> {
        self.shared.headers.lock().expect("receiver lock").clone()
    }

    /// The most requests ever being handled at once.
    pub fn max_concurrent(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// When each request arrived.
    pub fn request_times(&self) -> Vec<Instant> {
        self.shared.times.lock().expect("receiver lock").clone()
    }

    /// The string bodies of every accepted record, in arrival order.
    pub fn bodies(&self) -> Vec<String> {
        bodies(&self.accepted())
    }

    /// Records with a string body accepted and kept so far: `bodies().len()` without copying them (0 for a
    /// counting receiver, which keeps none). Tests poll it every 20 ms; `bodies()` copied every request each time
    /// (~120 MB near the end of a 100,000-flow burst).
    pub fn body_count(&self) -> usize {
        self.shared.bodies.load(Ordering::SeqCst) as usize
    }

    /// The metrics requests accepted.
    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.shared.metrics.lock().expect("receiver lock").clone()
    }

    /// Answers later metrics requests with `code` (200 accepts and keeps them).
    pub fn set_metrics_status(&self, code: u16) {
        self.shared.metrics_status.store(code, Ordering::SeqCst);
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// The string bodies of the records in `requests`.
pub fn bodies(requests: &[ExportLogsServiceRequest]) -> Vec<String> {
    requests.iter().flat_map(string_bodies).map(str::to_string).collect()
}

fn string_bodies(request: &ExportLogsServiceRequest) -> impl Iterator<Item = &str> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    request.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records).filter_map(|r| {
        match r.body.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// Serves one connection; a [`Reply::Reset`] aborts it, as a crashing or overloaded endpoint would.
async fn serve_connection<S>(stream: S, app: Router, stop: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt as _;
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            let response = app.oneshot(req.map(axum::body::Body::new)).await.unwrap_or_else(|e| match e {});
            if response.extensions().get::<ResetMarker>().is_some() { Err(ResetError) } else { Ok(response) }
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = stop.cancelled() => {}
    }
}

fn record_count(r: &ExportLogsServiceRequest) -> usize {
    r.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum()
}

/// The request in `body`, undoing `Content-Encoding`; or the status and message refusing it.
fn decode_request<M: prost::Message + Default>(headers: &HeaderMap, body: &[u8]) -> Result<M, (StatusCode, String)> {
    let compression = match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        None | Some("identity") => Compression::None,
        Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => {
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("encoding {other}")));
        }
    };
    decompress(compression, body, body.len() * 4)
        .map_err(|e| e.to_string())
        .and_then(|raw| M::decode(raw.as_slice()).map_err(|e| e.to_string()))
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("undecodable request: {e}")))
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let request: ExportMetricsServiceRequest = match decode_request(&headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let code = shared.metrics_status.load(Ordering::SeqCst);
    if code != 200 {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, format!("scripted {code}")).into_response();
    }
    shared.metrics.lock().expect("receiver lock").push(request);
    let response = ExportMetricsServiceResponse { partial_success: None };
    ([(header::CONTENT_TYPE, "application/x-protobuf")], response.encode_to_vec()).into_response()
}

async fn logs(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    shared.times.lock().expect("receiver lock").push(Instant::now());
    shared.headers.lock().expect("receiver lock").push(headers.clone());
    let request: ExportLogsServiceRequest = match decode_request(&headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let mut reply = (shared.responder)(n, record_count(&request));
    if let Reply::AcceptAfter(delay) = reply {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        reply = Reply::Accept { rejected: 0 };
    }
    match reply {
        Reply::AcceptAfter(_) => unreachable!("replaced above"),
        Reply::Reset => {
            let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            response.extensions_mut().insert(ResetMarker);
            response
        }
        Reply::Accept { rejected } => {
            if let Some(tx) = &shared.notify {
                let _ = tx.send(request.clone());
            }
            shared.records.fetch_add(record_count(&request) as u64, Ordering::SeqCst);
            if shared.keep {
                shared.bodies.fetch_add(string_bodies(&request).count() as u64, Ordering::SeqCst);
                shared.accepted.lock().expect("receiver lock").push(request);
            }
            let response = ExportLogsServiceResponse {
                partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: "rejected by the test receiver".into(),
                }),
            };
            ([(header::CONTENT_TYPE, "application/x-protobuf")], response.encode_to_vec()).into_response()
        }
        Reply::Status { code, retry_after } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, format!("scripted {code}")).into_response();
            if let Some(v) = retry_after.and_then(|v| v.parse().ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
    }
}
