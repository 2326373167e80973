//! The Goldmane client: `Flows/Stream` over mTLS, reconnecting with backoff and resuming without loss.
//!
//! Flows leave in chunks over a bounded channel. When the pipeline behind is full, `send` waits, the stream is not
//! polled, and HTTP/2 flow control slows Goldmane down: backpressure, not loss.

pub mod cursor;
mod resume;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt as _;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

pub use resume::{BUCKET_SECONDS, HISTORY_SECONDS, Resume, identity};

use crate::backoff::{Backoff, Jitter};
use crate::config::{FilterConfig, GoldmaneConfig, MatchTypeConfig};
use crate::proto::{self, FlowStreamRequest};
use crate::telemetry::{DropReason, Metrics};
use crate::tls;
use crate::wire::{Chunk, RawFlow, flow_of_result};
pub use cursor::Progress;

/// Flows read per poll of the stream, at most; a chunk is whatever is already buffered.
const CHUNK: usize = 512;
/// A stream that stayed up this long resets the reconnect backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Largest gRPC message accepted (a flow with thousands of labels is still far below).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Why one stream attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot connect to Goldmane at {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("Goldmane refused the stream: {0}")]
    Open(tonic::Status),
    #[error("the Goldmane stream broke: {0}")]
    Broken(tonic::Status),
    #[error("Goldmane ended the stream")]
    Ended,
}

/// Runs the source until `shutdown` fires. Returns once the last chunk read has been handed on.
pub async fn run(
    cfg: GoldmaneConfig,
    out: mpsc::Sender<Chunk>,
    metrics: Arc<Metrics>,
    progress: Option<Arc<Progress>>,
    shutdown: CancellationToken,
) {
    let mut resume = Resume::default();
    if let Some(c) = progress.as_ref().and_then(|p| p.load()) {
        tracing::info!(
            bucket = c.bucket,
            flows_already_queued = c.seen.len(),
            "resuming the Goldmane stream where the persistent queue ends"
        );
        if let Some(p) = &progress {
            p.seed(&c);
        }
        resume = Resume::from_cursor(c.bucket, c.last_end, c.seen);
    }
    let mut backoff = Backoff::new(cfg.reconnect_initial, cfg.reconnect_max, Jitter::Equal);
    let mut first = true;
    while !shutdown.is_cancelled() {
        if !first {
            metrics.reconnects.inc();
        }
        first = false;
        let start_time_gte = resume.start_time_gte(unix_now(), cfg.start_time_gte);
        let opened = Instant::now();
        let outcome =
            stream_once(&cfg, start_time_gte, &mut resume, &out, &metrics, progress.as_deref(), &shutdown).await;
        metrics.stream_connected.set(0);
        match outcome {
            Ok(()) => return, // shutdown, or the pipeline closed
            Err(e) => {
                if opened.elapsed() >= HEALTHY_AFTER {
                    backoff.reset();
                }
                let wait = backoff.next_wait();
                tracing::warn!(
                    error = %e,
                    resume_from = resume.start_time_gte(unix_now(), cfg.start_time_gte),
                    retry_in_ms = wait.as_millis() as u64,
                    "Goldmane stream down; reconnecting"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// One connection: connect, open the stream, forward flows until it breaks or shutdown.
async fn stream_once(
    cfg: &GoldmaneConfig,
    start_time_gte: i64,
    resume: &mut Resume,
    out: &mpsc::Sender<Chunk>,
    metrics: &Metrics,
    progress: Option<&Progress>,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let channel = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        c = connect(cfg) => c?,
    };
    let request =
        FlowStreamRequest { start_time_gte, filter: cfg.filter.as_ref().map(filter_proto), aggregation_interval: 0 };
    let response = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = open_stream(channel, request) => r.map_err(StreamError::Open)?,
    };
    tracing::info!(target = %cfg.uri, start_time_gte, "Goldmane stream open");
    metrics.stream_connected.set(1);
    let mut chunks = response.ready_chunks(CHUNK);
    loop {
        let chunk = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            c = chunks.next() => c,
        };
        let Some(chunk) = chunk else {
            return Err(StreamError::Ended);
        };
        metrics.message_seen();
        let mut flows = Vec::with_capacity(chunk.len());
        let mut ids = Vec::new();
        let mut broken = None;
        for item in chunk {
            match item {
                Ok(result) => match admit(&result, resume) {
                    Ok(None) => {}
                    Ok(Some((raw, id, new))) => {
                        metrics.flows_received.inc();
                        if new {
                            if progress.is_some() {
                                ids.push((raw.start_time, id));
                            }
                            flows.push(raw);
                        } else {
                            metrics.duplicates_skipped.inc();
                        }
                    }
                    Err(e) => {
                        metrics.flows_received.inc();
                        metrics.dropped(DropReason::Malformed, 1);
                        tracing::warn!(error = %e, "Goldmane sent a FlowResult that is not valid protobuf; skipped");
                    }
                },
                Err(status) => broken = Some(status),
            }
        }
        // Hand on what arrived before any error: it is received, and resume state already counts it.
        if !flows.is_empty() {
            let seq = progress.map_or(0, |p| p.sent(&ids, resume));
            if out.send(Chunk { seq, flows }).await.is_err() {
                return Ok(());
            }
        }
        if let Some(status) = broken {
            return Err(StreamError::Broken(status));
        }
    }
}

/// The flow in an encoded `FlowResult`, its identity, and whether it is new (false: a duplicate after a resume).
fn admit(result: &Bytes, resume: &mut Resume) -> Result<Option<(RawFlow, u128, bool)>, crate::wire::WireError> {
    let Some(raw) = flow_of_result(result)? else { return Ok(None) };
    let id = identity(&raw.key, raw.start_time);
    let new = resume.admit_id(id, raw.start_time, raw.end_time);
    Ok(Some((raw, id, new)))
}

/// Connects and opens a stream once (live only), then hangs up: what `flowgate check --connect` and tests use to
/// prove the TLS material and the server work together.
pub async fn probe(cfg: &GoldmaneConfig) -> Result<(), StreamError> {
    let channel = connect(cfg).await?;
    let request =
        FlowStreamRequest { start_time_gte: 0, filter: cfg.filter.as_ref().map(filter_proto), aggregation_interval: 0 };
    open_stream(channel, request).await.map_err(StreamError::Open)?;
    Ok(())
}

/// `/goldmane.Flows/Stream`, yielding each `FlowResult` as its protobuf bytes: flows are rendered from the wire
/// without being decoded into structs (see `render`).
async fn open_stream(
    channel: tonic::transport::Channel,
    request: FlowStreamRequest,
) -> Result<tonic::Streaming<Bytes>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static("/goldmane.Flows/Stream");
    Ok(grpc.server_streaming(tonic::Request::new(request), path, RawCodec).await?.into_inner())
}

/// Encodes the request with prost; hands each response message on as bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = FlowStreamRequest;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = FlowStreamRequest;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Self::Error> {
        prost::Message::encode(&item, dst).map_err(|e| tonic::Status::internal(format!("encoding the request: {e}")))
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A gRPC channel over our own TLS connector: the PEM files are read at every attempt (rotation), and TLS
/// failures surface with their real cause instead of a generic transport error.
async fn connect(cfg: &GoldmaneConfig) -> Result<tonic::transport::Channel, StreamError> {
    let tls_config = tls::client_config(&cfg.tls, &[b"h2"])?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config));
    let server_name = ServerName::try_from(cfg.server_name.clone()).map_err(|e| StreamError::Connect {
        target: cfg.server_name.clone(),
        detail: format!("invalid TLS server name: {e}"),
    })?;
    let (host, port) = (cfg.host.clone(), cfg.port);
    let target = format!("{host}:{port}");
    let svc = tower::service_fn(move |_: http::Uri| {
        let (connector, server_name, host) = (connector.clone(), server_name.clone(), host.clone());
        async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    // The connector does TLS, so tonic must not: it dials an http:// URI, while requests still carry the https
    // origin Goldmane expects in :scheme and :authority.
    let dial = http::Uri::try_from(format!("http://{target}"))
        .map_err(|e| StreamError::Connect { target: target.clone(), detail: format!("invalid address: {e}") })?;
    let mut endpoint = Endpoint::from(dial).origin(cfg.uri.clone()).connect_timeout(Duration::from_secs(10));
    if let Some(interval) = cfg.keepalive_interval {
        endpoint = endpoint.http2_keep_alive_interval(interval).keep_alive_while_idle(true);
    }
    endpoint.connect_with_connector(svc).await.map_err(|e| {
        let mut detail = error_chain(&e);
        if detail.contains("invalid peer certificate") {
            detail.push_str(" (Goldmane's certificate must verify against CA_CERT_PATH and match the TLS server name)");
        }
        StreamError::Connect { target, detail }
    })
}

/// `e: cause: cause…`, skipping repeated messages, so TLS and socket errors are not hidden behind "transport error".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn filter_proto(f: &FilterConfig) -> proto::Filter {
    let matches = |ms: &[crate::config::StringMatchConfig]| {
        ms.iter()
            .map(|m| proto::StringMatch {
                value: m.value.clone(),
                r#type: match m.r#type {
                    MatchTypeConfig::Exact => proto::MatchType::Exact as i32,
                    MatchTypeConfig::Fuzzy => proto::MatchType::Fuzzy as i32,
                },
            })
            .collect()
    };
    let action = |a: &str| proto::Action::from_str_name(a).map_or(0, |a| a as i32);
    proto::Filter {
        source_names: matches(&f.source_names),
        source_namespaces: matches(&f.source_namespaces),
        dest_names: matches(&f.dest_names),
        dest_namespaces: matches(&f.dest_namespaces),
        protocols: matches(&f.protocols),
        dest_ports: f.dest_ports.iter().map(|&port| proto::PortMatch { port }).collect(),
        actions: f.actions.iter().map(|a| action(a)).collect(),
        reporter: f.reporter.as_deref().and_then(proto::Reporter::from_str_name).map_or(0, |r| r as i32),
        pending_actions: Vec::new(),
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
