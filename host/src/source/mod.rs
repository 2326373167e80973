//! The Goldmane client: `Flows/Stream` over mTLS, reconnecting with backoff and resuming without loss, and
//! reconciliation (`Flows/List`) for the flows Goldmane holds but never streams live.
//!
//! Flows leave in chunks over a bounded channel. When the pipeline behind is full, `send` waits, the stream is not
//! polled, and HTTP/2 flow control slows Goldmane down: backpressure, not loss.
//!
//! The stream counts as open once the connection (TLS, HTTP/2) is up and the request drew no error within
//! [`OPEN_GRACE`]: Goldmane (grpc-go) sends its response headers only with the first message, which a quiet
//! cluster or a filter matching nothing may never send.

pub mod cursor;
mod grpc;
pub mod ledger;
pub mod reconcile;
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
use crate::config::env::ENV_CA_CERT_PATH;
use crate::config::{FilterConfig, GoldmaneConfig, Growth, MatchTypeConfig};
use crate::proto::{self, FlowStreamRequest};
use crate::telemetry::{DropReason, Metrics, error_chain};
use crate::tls;
use crate::wire::{Chunk, FlowBytes, RawFlow, flow_of_result};
pub use cursor::Progress;
pub use reconcile::Shared;

/// Flows handed on together, at most: a batch's worth, so a chunk's records become one request whole.
const CHUNK: usize = 512;
/// How long a chunk waits for more flows once its first has arrived. Goldmane sends a bucket in one burst, whose
/// TLS records hold 20 to 30 flows each: without the wait most chunks were a record's worth, each its own
/// hand-off, worker wake-up and copy into the batch. Records wait in the batcher up to a second anyway.
const CHUNK_WAIT: Duration = Duration::from_millis(5);
/// A stream that stayed up this long resets the reconnect backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Largest gRPC message accepted (a flow with thousands of labels is still far below; a `List` page of 5,000
/// flows is ~2.5 MB).
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// A stream request that drew no error this long after it was sent counts as open, headers or not.
pub const OPEN_GRACE: Duration = Duration::from_millis(500);

/// Why one stream attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot connect to Goldmane at {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("Goldmane refused the stream: {}", brief(.0))]
    Open(tonic::Status),
    #[error("the Goldmane stream broke: {}", brief(.0))]
    Broken(tonic::Status),
    #[error("Goldmane ended the stream")]
    Ended,
}

/// Runs the source until `shutdown` fires. Returns once the last chunk read has been handed on (reconciliation
/// included).
pub async fn run(
    cfg: GoldmaneConfig,
    out: mpsc::Sender<Chunk>,
    metrics: Arc<Metrics>,
    progress: Option<Arc<Progress>>,
    shutdown: CancellationToken,
) {
    let shared = reconcile::Shared::new(cfg.reconcile.is_some());
    let mut resume = Resume::default();
    if let Some(c) = progress.as_ref().and_then(|p| p.load()) {
        tracing::info!(
            bucket = c.bucket,
            flows_already_handed_on = c.seen.len(),
            "resuming the Goldmane stream where the last run's safe data ends (queued on disk, or acknowledged by the endpoint)"
        );
        if let Some(p) = &progress {
            p.seed(&c);
        }
        if let Some(mut ledger) = shared.ledger() {
            // Those flows were exported, their counters unknown: a late key of that bucket is still found.
            ledger.set_floor(c.bucket);
            for id in &c.seen {
                ledger.record_unknown(c.bucket, *id as u64);
            }
        }
        resume = Resume::from_cursor(c.bucket, c.last_end, c.seen);
    }
    let stop_reconciler = shutdown.child_token();
    let reconciler = cfg.reconcile.clone().map(|rc| {
        let (cfg, shared, out, metrics, stop) =
            (cfg.clone(), shared.clone(), out.clone(), metrics.clone(), stop_reconciler.clone());
        tokio::spawn(reconcile::run(cfg, rc, shared, out, metrics, stop))
    });
    let stream = Stream { cfg: &cfg, out: &out, metrics: &metrics, progress: progress.as_deref(), shared: &shared };
    stream.run(&mut resume, &shutdown).await;
    if let Some(r) = reconciler {
        // It ends with shutdown; a pipeline gone early ends it too.
        stop_reconciler.cancel();
        let _ = r.await;
    }
}

/// The stream side of the source.
struct Stream<'a> {
    cfg: &'a GoldmaneConfig,
    out: &'a mpsc::Sender<Chunk>,
    metrics: &'a Metrics,
    progress: Option<&'a Progress>,
    shared: &'a reconcile::Shared,
}

impl Stream<'_> {
    /// Connects, streams, reconnects with backoff, until shutdown or the pipeline closes.
    async fn run(&self, resume: &mut Resume, shutdown: &CancellationToken) {
        let (cfg, metrics) = (self.cfg, self.metrics);
        let mut backoff = Backoff::new(cfg.reconnect_initial, cfg.reconnect_max, Jitter::Equal);
        let mut first = true;
        while !shutdown.is_cancelled() {
            if !first {
                metrics.reconnects.inc();
            }
            let start_time_gte = resume.start_time_gte(unix_now(), cfg.start_time_gte);
            let opened = Instant::now();
            let outcome = self.once(start_time_gte, first, resume, shutdown).await;
            first = false;
            metrics.stream_connected.set(0);
            self.shared.closed();
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
    async fn once(
        &self,
        start_time_gte: i64,
        first: bool,
        resume: &mut Resume,
        shutdown: &CancellationToken,
    ) -> Result<(), StreamError> {
        let (cfg, metrics) = (self.cfg, self.metrics);
        let channel = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            c = connect(cfg) => c?,
        };
        let request = FlowStreamRequest {
            start_time_gte,
            filter: cfg.filter.as_ref().map(filter_proto),
            aggregation_interval: 0,
        };
        // Goldmane sends headers with its first message: a request that drew no error within the grace is open.
        let mut opening = Box::pin(open_stream(channel, request));
        let early = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = &mut opening => Some(r.map_err(StreamError::Open)?),
            () = tokio::time::sleep(OPEN_GRACE) => None,
        };
        tracing::info!(goldmane = %cfg.uri, start_time_gte, "Goldmane stream open");
        metrics.stream_connected.set(1);
        self.shared.opened(first, first_bucket(resume));
        let mut response = match early {
            Some(r) => r,
            None => {
                self.shared.idle(true);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    r = opening => r.map_err(StreamError::Open)?,
                }
            }
        };
        let growth = cfg.reconcile.as_ref().map_or(Growth::Delta, |r| r.growth);
        // One read's messages, reused from read to read.
        let mut messages = Vec::with_capacity(CHUNK);
        loop {
            self.shared.idle(true);
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                c = response.next() => c,
            };
            self.shared.idle(false);
            let Some(first) = first else {
                return Err(StreamError::Ended);
            };
            let broken = fill_chunk(&mut response, first, &mut messages).await;
            metrics.message_seen();
            let (flows, ids) = self.take(&mut messages, resume, growth);
            // Hand on what arrived before any error: it is received, and resume state already counts it.
            if !flows.is_empty() {
                let seq = self.progress.map_or(0, |p| p.sent(&ids, resume));
                if self.out.send(Chunk { seq, flows }).await.is_err() {
                    return Ok(());
                }
            }
            if let Some(status) = broken {
                return Err(StreamError::Broken(status));
            }
        }
    }

    /// The flows of one read's messages (taken out of `messages`) to hand on, live, late or deltas, and the
    /// cursor's identities of the fresh ones.
    fn take(
        &self,
        messages: &mut Vec<Bytes>,
        resume: &mut Resume,
        growth: Growth,
    ) -> (Vec<FlowBytes>, Vec<(i64, u128)>) {
        let metrics = self.metrics;
        let mut flows = Vec::with_capacity(messages.len());
        let mut ids = Vec::new();
        let mut ledger = self.shared.ledger();
        let mut newest = self.shared.newest_delivered();
        for result in messages.drain(..) {
            let raw = match flow_of_result(result) {
                Ok(Some(raw)) => raw,
                Ok(None) => continue,
                Err(e) => {
                    metrics.flows_received.inc();
                    metrics.dropped(DropReason::Malformed, 1);
                    tracing::warn!(error = %e, "Goldmane sent a FlowResult that is not valid protobuf; skipped");
                    continue;
                }
            };
            metrics.flows_received.inc();
            let start = raw.start_time;
            let id = identity(raw.key(), start);
            // Where the ledger judges the bucket and no cursor needs the identities, it finds re-sent flows itself
            // (it holds every flow handed on of those buckets): the resume set would repeat its lookup.
            let judged = self.progress.is_none() && ledger.as_deref().is_some_and(|l| l.judges(start));
            let fresh =
                if judged { resume.advance(start, raw.end_time) } else { resume.admit_id(id, start, raw.end_time) };
            // The timeline moves once a bucket: look at it only when this flow's bucket is newer than the last.
            if newest.is_none_or(|n| start > n) {
                newest = Some(start);
                if let (Some(previous), Some(l)) = (self.shared.delivered(start), ledger.as_deref_mut()) {
                    l.seal(previous);
                }
            }
            // The flow is judged by reference and moved once, into the chunk (it is 144 bytes: moving it through
            // the judgement and back was a tenth of the source's time).
            let handed = match ledger.as_deref_mut() {
                None if fresh => Handed::Keep,
                None => Handed::Skip,
                Some(l) => admit(l, &raw, id, fresh, growth, metrics),
            };
            let flow = match handed {
                Handed::Keep => raw.into(),
                Handed::Other(flow) => flow.into(),
                Handed::Skip => {
                    metrics.duplicates_skipped.inc();
                    continue;
                }
            };
            if fresh && self.progress.is_some() {
                ids.push((start, id));
            }
            flows.push(flow);
        }
        drop(ledger);
        (flows, ids)
    }
}

/// What to hand on of a streamed flow, with the ledger: `fresh` says the resume state had not seen it (for a bucket
/// the ledger judges without a cursor, only that its bucket is not older than the newest: the ledger tells the rest).
fn admit(l: &mut ledger::Ledger, raw: &RawFlow, id: u128, fresh: bool, growth: Growth, metrics: &Metrics) -> Handed {
    let start = raw.start_time;
    if l.floor().is_none() && fresh {
        // The first flow of a live-only stream says where the ledger starts.
        l.set_floor(start);
    }
    if !l.judges(start) {
        return if fresh { Handed::Keep } else { Handed::Skip };
    }
    if fresh && l.record_if_new(start, id as u64, &raw.counters) {
        return Handed::Keep;
    }
    // A bucket the stream had moved past, one received before a reconnect, or found first by reconciliation:
    // late, grown or a duplicate.
    match reconcile::late(l, raw.clone(), id as u64, growth, metrics, "stream") {
        Some(flow) => Handed::Other(flow),
        None => Handed::Skip,
    }
}

/// What becomes of a streamed flow.
enum Handed {
    /// Handed on as it came.
    Keep,
    /// Handed on as another flow: late, or the growth of one exported before.
    Other(RawFlow),
    /// A duplicate (or growth not exported).
    Skip,
}

/// A read: `first`, then what the stream yields within [`CHUNK_WAIT`], up to [`CHUNK`] messages, appended to
/// `messages`. It ends early at an error, returned to be handed on at once, or at the stream's end (the next read
/// sees it).
async fn fill_chunk<S>(
    stream: &mut S,
    first: Result<Bytes, tonic::Status>,
    messages: &mut Vec<Bytes>,
) -> Option<tonic::Status>
where
    S: futures::Stream<Item = Result<Bytes, tonic::Status>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + CHUNK_WAIT;
    let mut next = Some(first);
    while let Some(item) = next.take() {
        match item {
            Ok(message) => messages.push(message),
            Err(status) => return Some(status),
        }
        if messages.len() >= CHUNK {
            break;
        }
        // What is buffered already is taken without a timer.
        next = match futures::FutureExt::now_or_never(stream.next()) {
            Some(next) => next,
            None => tokio::time::timeout_at(deadline, stream.next()).await.ok().flatten(),
        };
    }
    None
}

/// The first bucket a stream delivers, when it is known before it does: a resumed stream's. Otherwise the first
/// flow delivered says where the ledger starts (the server's clock, not ours, decides what a relative or live-only
/// start means; a floor before it would make reconciliation export buckets the stream was never asked for).
fn first_bucket(resume: &Resume) -> Option<i64> {
    resume.position().map(|(newest, _)| newest)
}

/// Connects and opens a stream once (live only), then hangs up: what `flowgate check --connect` and tests use to
/// prove the TLS material and the server work together.
pub async fn probe(cfg: &GoldmaneConfig) -> Result<(), StreamError> {
    let channel = connect(cfg).await?;
    let request =
        FlowStreamRequest { start_time_gte: 0, filter: cfg.filter.as_ref().map(filter_proto), aggregation_interval: 0 };
    // As the stream: no error within the grace is success (headers come with the first message).
    match tokio::time::timeout(OPEN_GRACE, open_stream(channel, request)).await {
        Ok(r) => r.map(drop).map_err(StreamError::Open),
        Err(_) => Ok(()),
    }
}

/// `/goldmane.Flows/Stream`, yielding each `FlowResult` as its protobuf bytes, a slice of the DATA frame it came
/// in: flows are rendered from the wire without being decoded into structs (see `render`).
async fn open_stream(
    channel: tonic::transport::Channel,
    request: FlowStreamRequest,
) -> Result<grpc::Messages, tonic::Status> {
    grpc::server_streaming(channel, "/goldmane.Flows/Stream", &request, MAX_MESSAGE_BYTES).await
}

/// Encodes the request with prost; hands each response message on as bytes (`Flows/List`).
struct RawCodec<T>(std::marker::PhantomData<fn(T)>);

impl<T> Default for RawCodec<T> {
    fn default() -> Self {
        RawCodec(std::marker::PhantomData)
    }
}

impl<T: prost::Message + Send + 'static> tonic::codec::Codec for RawCodec<T> {
    type Encode = T;
    type Decode = Bytes;
    type Encoder = RawCodec<T>;
    type Decoder = RawCodec<T>;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec::default()
    }
}

impl<T: prost::Message> tonic::codec::Encoder for RawCodec<T> {
    type Item = T;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst).map_err(|e| tonic::Status::internal(format!("encoding the request: {e}")))
    }
}

impl<T: Send + 'static> tonic::codec::Decoder for RawCodec<T> {
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
    let mut endpoint = Endpoint::from(dial)
        .origin(cfg.uri.clone())
        .connect_timeout(Duration::from_secs(10))
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(STREAM_WINDOW_BYTES);
    if let Some(interval) = cfg.keepalive_interval {
        endpoint = endpoint.http2_keep_alive_interval(interval).keep_alive_while_idle(true);
    }
    endpoint.connect_with_connector(svc).await.map_err(|e| {
        let mut detail = error_chain(&e);
        if detail.contains("invalid peer certificate") {
            detail.push_str(&format!(
                " (Goldmane's certificate must verify against {ENV_CA_CERT_PATH} and match the TLS server name)"
            ));
        }
        StreamError::Connect { target, detail }
    })
}

/// HTTP/2 flow-control window for the stream: HTTP/2's default (64 KiB) has Goldmane wait for a window update
/// every ~130 flows, each a wake-up and a write on both sides; 1 MiB bounds what the connection buffers.
const STREAM_WINDOW_BYTES: u32 = 1 << 20;

/// A gRPC status in one sentence: its code and message, or what its transport cause means (a Goldmane restart
/// otherwise shows as a hyper/rustls chain ending in a documentation link).
fn brief(status: &tonic::Status) -> String {
    let chain = error_chain(status);
    let cause = if chain.contains("close_notify") || chain.contains("UnexpectedEof") {
        Some("Goldmane closed the connection abruptly (it exited or restarted)")
    } else if chain.contains("Connection reset") || chain.contains("connection reset") {
        Some("the connection was reset")
    } else if chain.contains("GOAWAY") || chain.contains("go away") {
        Some("Goldmane sent GOAWAY (it is shutting down or refused our pings)")
    } else {
        None
    };
    // The innermost cause says what happened (a TLS alert, a refused connection), without its documentation link.
    let mut root = None;
    let mut next = std::error::Error::source(status);
    while let Some(e) = next {
        root = Some(e.to_string());
        next = e.source();
    }
    let root = root.map(|r| r.split(": http").next().unwrap_or_default().to_string());
    match (cause, root) {
        (Some(c), _) => format!("{c} ({:?})", status.code()),
        (None, Some(r)) if r != status.message() => format!("{:?}: {}: {r}", status.code(), status.message()),
        (None, _) if status.message().is_empty() => format!("{:?}", status.code()),
        (None, _) => format!("{:?}: {}", status.code(), status.message()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk takes what is buffered up to a batch's worth, ends at an error, and waits for more only briefly
    /// (on tokio's paused clock, so the machine's load cannot move the timings).
    #[tokio::test(start_paused = true)]
    async fn a_chunk_fills_to_a_batch_ends_at_an_error_and_waits_only_briefly() {
        let ok = |i: u32| Ok(Bytes::from(i.to_be_bytes().to_vec()));
        let mut buffered = futures::stream::iter((0..1_200).map(ok));
        let first = buffered.next().await.unwrap();
        let mut messages = Vec::new();
        assert!(fill_chunk(&mut buffered, first, &mut messages).await.is_none());
        assert_eq!(messages.len(), CHUNK);
        let first = buffered.next().await.unwrap();
        messages.clear();
        fill_chunk(&mut buffered, first, &mut messages).await;
        assert_eq!(messages[0], Bytes::from((CHUNK as u32).to_be_bytes().to_vec()), "none lost between reads");

        let items = (0..10).map(|i| if i == 3 { Err(tonic::Status::internal("broken")) } else { ok(i) });
        let mut broken = futures::stream::iter(items);
        let first = broken.next().await.unwrap();
        messages.clear();
        let status = fill_chunk(&mut broken, first, &mut messages).await;
        assert_eq!(messages.len(), 3, "handed on at the error");
        assert_eq!(status.map(|s| s.message().to_string()).as_deref(), Some("broken"));

        // Two flows now, one more within the wait, one long after it: the chunk holds three.
        let (tx, rx) = mpsc::channel(8);
        let mut trickle = tokio_stream::wrappers::ReceiverStream::new(rx);
        tx.send(ok(0)).await.unwrap();
        tx.send(ok(1)).await.unwrap();
        let late = tokio::spawn(async move {
            tokio::time::sleep(CHUNK_WAIT / 5).await;
            tx.send(ok(2)).await.unwrap();
            tokio::time::sleep(CHUNK_WAIT * 40).await;
            tx.send(ok(3)).await.unwrap();
        });
        let first = trickle.next().await.unwrap();
        let started = tokio::time::Instant::now();
        messages.clear();
        assert!(fill_chunk(&mut trickle, first, &mut messages).await.is_none());
        assert_eq!(messages.len(), 3);
        assert_eq!(started.elapsed(), CHUNK_WAIT, "it waited the chunk's wait, no longer");
        late.await.unwrap();
        assert_eq!(trickle.next().await.map(|r| r.unwrap()), Some(Bytes::from(3u32.to_be_bytes().to_vec())));
    }

    #[test]
    fn a_goldmane_restart_is_one_sentence_not_a_transport_chain() {
        let eof = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
        );
        let status = tonic::Status::from_error(Box::new(eof));
        let text = StreamError::Broken(status).to_string();
        assert_eq!(
            text,
            "the Goldmane stream broke: Goldmane closed the connection abruptly (it exited or restarted) (Unknown)"
        );
        let refused = StreamError::Open(tonic::Status::resource_exhausted("too many streams")).to_string();
        assert_eq!(refused, "Goldmane refused the stream: ResourceExhausted: too many streams");
    }
}
