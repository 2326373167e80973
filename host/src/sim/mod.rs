//! A Goldmane simulator: serves `/goldmane.Flows/Stream` over mTLS the way `shared/reference/goldmane.md`
//! describes it, for tests and `flowgate demo`.
//!
//! - Buckets are 15 s wide and aligned to multiples of 15 on a simulated clock that can run faster than real
//!   time (`time_scale`); at each rollover T the bucket [T-30, T-15) goes to every stream as one burst.
//! - `start_time_gte`: 0 = live only; < 0 = relative; > 0 = absolute. Backfill covers every kept bucket from
//!   there (242 buckets of history); a start older than the history gets no backfill; a start later than the
//!   newest end time replays the whole ring (Goldmane's quirk).
//! - A stream that cannot take a flow for `stall_timeout` loses the rest of that bucket (as Goldmane 3.31+).
//! - Flow ids are stable per key. `cut_after(n)` breaks every stream with UNAVAILABLE after n more flows.

pub mod certs;
pub use flowgate_core::flowgen as flows;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::Stream;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

pub use certs::SimCerts;
pub use flows::FlowGen;

use crate::proto::flows_server::{Flows, FlowsServer};
use crate::proto::{FlowResult, FlowStreamRequest};
use crate::source::BUCKET_SECONDS;

/// Buckets Goldmane keeps.
pub const RING_BUCKETS: i64 = 242;
/// Goldmane's per-stream output buffer, in flows.
const STREAM_BUFFER: usize = 484;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Distinct flow keys, all active in every bucket.
    pub flows_per_bucket: usize,
    /// Simulated seconds per real second (15 = a bucket a second).
    pub time_scale: f64,
    pub seed: u64,
    /// How long a stream may refuse a flow before the rest of the bucket is dropped for it.
    pub stall_timeout: Duration,
    /// Simulated Unix time at start; default: now. A restarted simulator passes its predecessor's `now()`.
    pub origin_unix: Option<f64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            flows_per_bucket: 100,
            time_scale: 1.0,
            seed: 1,
            stall_timeout: Duration::from_secs(60),
            origin_unix: None,
        }
    }
}

struct Clock {
    origin_unix: f64,
    started: Instant,
    scale: f64,
}

impl Clock {
    fn now(&self) -> f64 {
        self.origin_unix + self.started.elapsed().as_secs_f64() * self.scale
    }
}

struct State {
    cfg: SimConfig,
    flow_gen: FlowGen,
    clock: Clock,
    /// Start of the newest bucket emitted.
    newest: watch::Sender<i64>,
    /// Flows left before every stream is cut; negative = no cut pending.
    cut_after: AtomicI64,
    sent: AtomicU64,
    stalled: AtomicU64,
    requests: Mutex<Vec<FlowStreamRequest>>,
    /// The first bucket each stream was served from, in the order of `requests`.
    first_buckets: Mutex<Vec<i64>>,
}

impl State {
    /// The first bucket a new stream gets, from its `start_time_gte`.
    fn first_bucket(&self, start_time_gte: i64) -> i64 {
        let newest = *self.newest.borrow();
        let oldest = newest - (RING_BUCKETS - 1) * BUCKET_SECONDS;
        let now = self.clock.now() as i64;
        let start = match start_time_gte {
            0 => return newest + BUCKET_SECONDS,
            s if s < 0 => now + s,
            s => s,
        };
        if start < now - 3600 {
            // Older than the kept history: Goldmane swallows the error and backfills nothing.
            return newest + BUCKET_SECONDS;
        }
        if start > newest + BUCKET_SECONDS {
            // Later than the last bucket streamed: Goldmane replays its whole ring.
            return oldest;
        }
        let aligned = start.div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS;
        let first = if aligned < start { aligned + BUCKET_SECONDS } else { aligned };
        first.max(oldest)
    }
}

/// A running simulator.
#[derive(Clone)]
pub struct Simulator {
    pub addr: SocketAddr,
    pub certs: SimCerts,
    state: Arc<State>,
    stop: CancellationToken,
}

impl Simulator {
    /// Starts serving on `listener` with mTLS from `certs`.
    pub fn start(cfg: SimConfig, certs: SimCerts, listener: TcpListener) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let origin = match cfg.origin_unix {
            Some(o) => o,
            None => SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64(),
        };
        let clock = Clock { origin_unix: origin, started: Instant::now(), scale: cfg.time_scale.max(0.001) };
        let now = clock.now() as i64;
        // History: the bucket that rolled over last, [T-30, T-15) for the last rollover T <= now.
        let last_rollover = now.div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS;
        let (newest, _) = watch::channel(last_rollover - 2 * BUCKET_SECONDS);
        let state = Arc::new(State {
            flow_gen: FlowGen { seed: cfg.seed, keys: cfg.flows_per_bucket },
            cfg,
            clock,
            newest,
            cut_after: AtomicI64::new(-1),
            sent: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            first_buckets: Mutex::new(Vec::new()),
        });
        let stop = CancellationToken::new();
        tokio::spawn(rollovers(state.clone(), stop.clone()));

        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(std::fs::read(&certs.server_cert)?, std::fs::read(&certs.server_key)?))
            .client_ca_root(Certificate::from_pem(std::fs::read(&certs.ca_cert)?));
        let server = Server::builder()
            .tls_config(tls)?
            .add_service(FlowsServer::new(Service { state: state.clone(), stop: stop.clone() }));
        let token = stop.clone();
        tokio::spawn(async move {
            let incoming = TcpListenerStream::new(listener);
            if let Err(e) = server.serve_with_incoming_shutdown(incoming, token.cancelled()).await {
                tracing::error!(error = %e, "simulator server failed");
            }
        });
        Ok(Simulator { addr, certs, state, stop })
    }

    /// The simulated Unix time now.
    pub fn now(&self) -> f64 {
        self.state.clock.now()
    }

    /// `127.0.0.1:port`-style target for `GOLDMANE_HOST` (use with server name `localhost` or `goldmane`).
    pub fn target(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// The flow generator, to recompute what a bucket holds.
    pub fn flow_gen(&self) -> FlowGen {
        self.state.flow_gen
    }

    /// Start of the newest bucket emitted.
    pub fn newest_bucket(&self) -> i64 {
        *self.state.newest.borrow()
    }

    /// Waits until the bucket starting at `start` has been emitted.
    pub async fn wait_for_bucket(&self, start: i64) {
        let mut rx = self.state.newest.subscribe();
        let _ = rx.wait_for(|newest| *newest >= start).await;
    }

    /// Flows handed to streams so far.
    pub fn sent(&self) -> u64 {
        self.state.sent.load(Ordering::SeqCst)
    }

    /// Flows dropped because a stream stalled longer than `stall_timeout`.
    pub fn stalled(&self) -> u64 {
        self.state.stalled.load(Ordering::SeqCst)
    }

    /// `start_time_gte` of every stream request received, in order.
    pub fn requests(&self) -> Vec<i64> {
        self.state.requests.lock().expect("sim lock").iter().map(|r| r.start_time_gte).collect()
    }

    /// Every stream request received, in order.
    pub fn stream_requests(&self) -> Vec<FlowStreamRequest> {
        self.state.requests.lock().expect("sim lock").clone()
    }

    /// The first bucket each stream was (or is being) served from, in the order of [`Simulator::requests`]: what a
    /// test expects the gateway's first delivered bucket to be.
    pub fn first_buckets(&self) -> Vec<i64> {
        self.state.first_buckets.lock().expect("sim lock").clone()
    }

    /// Breaks every stream with UNAVAILABLE after `n` more flows are sent.
    pub fn cut_after(&self, n: i64) {
        self.state.cut_after.store(n, Ordering::SeqCst);
    }

    /// Stops serving; open streams end.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// Emits a bucket at every rollover of the simulated clock.
async fn rollovers(state: Arc<State>, stop: CancellationToken) {
    loop {
        let now = state.clock.now();
        let next = ((now / BUCKET_SECONDS as f64).floor() as i64 + 1) * BUCKET_SECONDS;
        let wait = Duration::from_secs_f64(((next as f64 - now) / state.clock.scale).max(0.0));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        state.newest.send_replace(next - 2 * BUCKET_SECONDS);
    }
}

struct Service {
    state: Arc<State>,
    stop: CancellationToken,
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<FlowResult, Status>> + Send>>;

#[tonic::async_trait]
impl Flows for Service {
    type StreamStream = FlowStream;

    async fn stream(&self, request: Request<FlowStreamRequest>) -> Result<Response<FlowStream>, Status> {
        let req = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let first = self.state.first_bucket(req.start_time_gte);
        self.state.first_buckets.lock().expect("sim lock").push(first);
        self.state.requests.lock().expect("sim lock").push(req.clone());
        tokio::spawn(feed(self.state.clone(), first, tx, self.stop.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Sends every bucket from `next` on, as they are emitted, until the client goes away or a cut.
async fn feed(state: Arc<State>, mut next: i64, tx: mpsc::Sender<Result<FlowResult, Status>>, stop: CancellationToken) {
    let mut newest_rx = state.newest.subscribe();
    loop {
        let newest = *newest_rx.borrow_and_update();
        while next <= newest {
            if !send_bucket(&state, next, &tx).await {
                return;
            }
            next += BUCKET_SECONDS;
        }
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = tx.send(Err(Status::unavailable("goldmane simulator shutting down"))).await;
                return;
            }
            _ = tx.closed() => return,
            changed = newest_rx.changed() => if changed.is_err() { return },
        }
    }
}

/// One bucket's burst. False when the stream is over (client gone, or cut).
async fn send_bucket(state: &State, start: i64, tx: &mpsc::Sender<Result<FlowResult, Status>>) -> bool {
    for i in 0..state.cfg.flows_per_bucket {
        if state.cut_after.load(Ordering::SeqCst) == 0 {
            state.cut_after.store(-1, Ordering::SeqCst);
            let _ = tx.send(Err(Status::unavailable("simulated stream cut"))).await;
            return false;
        }
        let result = FlowResult { id: i as i64 + 1, flow: Some(state.flow_gen.flow(i, start)) };
        match tx.send_timeout(Ok(result), state.cfg.stall_timeout).await {
            Ok(()) => {
                state.sent.fetch_add(1, Ordering::SeqCst);
                let _ = state.cut_after.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n > 0).then(|| n - 1));
            }
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                let lost = (state.cfg.flows_per_bucket - i) as u64;
                state.stalled.fetch_add(lost, Ordering::SeqCst);
                tracing::warn!(bucket = start, lost, "simulator: stream stalled; rest of bucket dropped");
                return true;
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_at(now: i64) -> State {
        let clock = Clock { origin_unix: now as f64, started: Instant::now(), scale: 0.001 };
        let last_rollover = now.div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS;
        State {
            cfg: SimConfig::default(),
            flow_gen: FlowGen { seed: 1, keys: 1 },
            clock,
            newest: watch::channel(last_rollover - 2 * BUCKET_SECONDS).0,
            cut_after: AtomicI64::new(-1),
            sent: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            first_buckets: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn start_time_gte_follows_goldmane() {
        let now = 1_800_000_007; // 7 s after a rollover at ...000
        let s = state_at(now);
        let newest = 1_800_000_000 - 30;
        assert_eq!(s.first_bucket(0), newest + 15, "0: live only");
        assert_eq!(s.first_bucket(-44), 1_799_999_970, "relative, aligned up to a bucket start");
        assert_eq!(s.first_bucket(newest), newest, "a bucket start: that bucket again");
        assert_eq!(s.first_bucket(newest + 15), newest + 15, "the last end time: nothing replayed");
        assert_eq!(s.first_bucket(now - 3601), newest + 15, "older than the history: no backfill at all");
        let oldest = newest - (RING_BUCKETS - 1) * BUCKET_SECONDS;
        assert_eq!(s.first_bucket(newest + 16), oldest, "later than the last end: the whole ring again");
    }
}
