//! A Goldmane simulator: serves `/goldmane.Flows/Stream` and `/goldmane.Flows/List` over mTLS the way
//! `shared/reference/goldmane.md` describes the real server, unkind parts included.
//!
//! - Buckets are 15 s wide and aligned to multiples of 15 on a simulated clock that can run faster than real
//!   time (`time_scale`); at each rollover T the bucket [T-30, T-15) goes to every stream as one burst, holding
//!   the flows that reached the simulator by T.
//! - Response headers go out with the first message, as grpc-go sends them: a stream with nothing to send yet
//!   shows the client no headers at all.
//! - Late flows: `late_fraction` of the flows reach it after their bucket was streamed (0.1–7 s late, as
//!   Felix's flushes near a bucket's end do) and `growth_fraction` are reported by a second node whose share
//!   arrives that late: those are never streamed live; only `List` and a new stream's backfill show them.
//! - `restarted`: a Goldmane that just started holds nothing from before; every Felix node re-sends its last
//!   5 minutes after its own 1–10 s backoff, into buckets already past, and the first rollover after start
//!   streams whatever arrived by then.
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

use futures::{Stream, StreamExt as _};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

pub use certs::SimCerts;
pub use flows::FlowGen;

use crate::proto::flows_server::{Flows, FlowsServer};
use crate::proto::{Flow, FlowListRequest, FlowListResult, FlowResult, FlowStreamRequest, ListMetadata};
use crate::source::BUCKET_SECONDS;

/// Buckets Goldmane keeps.
pub const RING_BUCKETS: i64 = 242;
/// Goldmane's per-stream output buffer, in flows.
const STREAM_BUFFER: usize = 484;
/// What Felix keeps and re-sends when it reconnects, in seconds.
pub const FELIX_REPLAY_SECONDS: f64 = 300.0;

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
    /// Share of flows (by key and bucket) that reach Goldmane after their bucket was streamed.
    pub late_fraction: f64,
    /// Share of flows reported by two nodes, the second share late: the key's counters grow after the bucket
    /// was streamed.
    pub growth_fraction: f64,
    /// Goldmane just (re)started: it holds nothing from before `origin_unix`; Felix nodes re-send their last
    /// 5 minutes after their own backoff. Without it the simulator has been running for the whole history.
    pub restarted: bool,
    /// Felix nodes; flow key `i` is reported by node `i % nodes`, and each node replays on its own backoff.
    pub nodes: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            flows_per_bucket: 100,
            time_scale: 1.0,
            seed: 1,
            stall_timeout: Duration::from_secs(60),
            origin_unix: None,
            late_fraction: 0.0,
            growth_fraction: 0.0,
            restarted: false,
            nodes: 10,
        }
    }
}

impl SimConfig {
    /// What the real Goldmane was measured doing in steady state: 4.8% of flows late, and some keys growing.
    pub fn realistic(mut self) -> Self {
        self.late_fraction = 0.048;
        self.growth_fraction = 0.02;
        self
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

/// A uniform number in [0, 1) from `parts`, the same every time.
fn unit(parts: &[u64]) -> f64 {
    let mut z = 0x9e37_79b9_7f4a_7c15u64;
    for p in parts {
        z = (z ^ p).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Which share of a flow's counters one report carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Share {
    Whole,
    /// Half of every counter (rounded down), on time.
    First,
    /// The rest, late.
    Second,
}

/// When and what Goldmane holds: a pure function of the settings, so tests can recompute it.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub flow_gen: FlowGen,
    late_fraction: f64,
    growth_fraction: f64,
    /// Start of this Goldmane process (simulated Unix seconds) when it is a restart.
    restarted_at: Option<f64>,
    nodes: usize,
}

impl Model {
    pub fn new(cfg: &SimConfig, origin: f64) -> Self {
        Model {
            flow_gen: FlowGen { seed: cfg.seed, keys: cfg.flows_per_bucket },
            late_fraction: cfg.late_fraction,
            growth_fraction: cfg.growth_fraction,
            restarted_at: cfg.restarted.then_some(origin),
            nodes: cfg.nodes.max(1),
        }
    }

    /// The reports of key `i` in the bucket at `start`, with when each reaches this Goldmane (`None`: never).
    fn reports(&self, i: usize, start: i64) -> [(Share, Option<f64>); 2] {
        let seed = self.flow_gen.seed;
        let key = [seed, i as u64, start as u64];
        let on_time = start as f64 + 15.0 + 0.5 * unit(&[seed, i as u64, start as u64, 1]);
        let late = start as f64 + 30.0 + 0.1 + 6.9 * unit(&[seed, i as u64, start as u64, 2]);
        let draw = unit(&key);
        let (first, second) = if draw < self.late_fraction {
            ((Share::Whole, Some(late)), (Share::Whole, None))
        } else if draw < self.late_fraction + self.growth_fraction {
            ((Share::First, Some(on_time)), (Share::Second, Some(late)))
        } else {
            ((Share::Whole, Some(on_time)), (Share::Whole, None))
        };
        [first, second].map(|(share, at)| (share, at.and_then(|t| self.arrival(i, t))))
    }

    /// When a report sent at `sent` reaches this process: after a restart, what was sent before it comes again
    /// when the node reconnects (if Felix still keeps it), or never.
    fn arrival(&self, i: usize, sent: f64) -> Option<f64> {
        let Some(r) = self.restarted_at else { return Some(sent) };
        if sent >= r {
            return Some(sent);
        }
        if sent < r - FELIX_REPLAY_SECONDS {
            return None;
        }
        let node = (i % self.nodes) as u64;
        Some(r + 1.0 + 9.0 * unit(&[self.flow_gen.seed, node, 3]))
    }

    /// Key `i` of the bucket at `start` as Goldmane holds it at simulated time `at`, if it holds it at all.
    pub fn held(&self, i: usize, start: i64, at: f64) -> Option<Flow> {
        let reports = self.reports(i, start);
        let arrived: Vec<Share> = reports.iter().filter(|(_, t)| t.is_some_and(|t| t <= at)).map(|(s, _)| *s).collect();
        if arrived.is_empty() {
            return None;
        }
        let full = self.flow_gen.flow(i, start);
        if arrived.contains(&Share::Whole) || arrived.len() == 2 {
            return Some(full);
        }
        let half = |v: i64| v / 2;
        let first = Flow {
            packets_in: half(full.packets_in),
            packets_out: half(full.packets_out),
            bytes_in: half(full.bytes_in),
            bytes_out: half(full.bytes_out),
            num_connections_started: half(full.num_connections_started),
            num_connections_completed: half(full.num_connections_completed),
            num_connections_live: half(full.num_connections_live),
            ..full.clone()
        };
        Some(match arrived[0] {
            Share::First => first,
            _ => Flow {
                packets_in: full.packets_in - first.packets_in,
                packets_out: full.packets_out - first.packets_out,
                bytes_in: full.bytes_in - first.bytes_in,
                bytes_out: full.bytes_out - first.bytes_out,
                num_connections_started: full.num_connections_started - first.num_connections_started,
                num_connections_completed: full.num_connections_completed - first.num_connections_completed,
                num_connections_live: full.num_connections_live - first.num_connections_live,
                ..full
            },
        })
    }

    /// Whether key `i` of bucket `start` is ever held by this process at all.
    pub fn ever_held(&self, i: usize, start: i64) -> bool {
        self.held(i, start, f64::INFINITY).is_some()
    }

    /// Whether key `i` of the bucket at `start` is late: not (wholly) there when the bucket is streamed live.
    pub fn is_late(&self, i: usize, start: i64) -> bool {
        let live = start as f64 + 2.0 * BUCKET_SECONDS as f64;
        self.held(i, start, live) != self.held(i, start, f64::INFINITY)
    }
}

struct State {
    cfg: SimConfig,
    model: Model,
    clock: Clock,
    /// Start of the newest bucket emitted.
    newest: watch::Sender<i64>,
    /// Oldest bucket this process can hold anything for.
    floor: i64,
    /// Flows left before every stream is cut; negative = no cut pending.
    cut_after: AtomicI64,
    sent: AtomicU64,
    stalled: AtomicU64,
    listed: AtomicU64,
    requests: Mutex<Vec<FlowStreamRequest>>,
    list_requests: Mutex<Vec<FlowListRequest>>,
    /// The first bucket each stream was served from, in the order of `requests`.
    first_buckets: Mutex<Vec<i64>>,
}

impl State {
    /// The first bucket a new stream gets, from its `start_time_gte`.
    fn first_bucket(&self, start_time_gte: i64) -> i64 {
        let newest = *self.newest.borrow();
        let oldest = (newest - (RING_BUCKETS - 1) * BUCKET_SECONDS).max(self.floor);
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

    /// The flows of the bucket at `start` held now, in key order.
    fn bucket_now(&self, start: i64) -> Vec<(usize, Flow)> {
        self.bucket_at(start, self.clock.now())
    }

    fn bucket_at(&self, start: i64, at: f64) -> Vec<(usize, Flow)> {
        (0..self.cfg.flows_per_bucket).filter_map(|i| Some((i, self.model.held(i, start, at)?))).collect()
    }

    /// What a stream gets of the bucket at `start`: at its rollover, the bucket as it was then (the burst goes
    /// out within moments; the simulated clock may have moved a little while the sender ran); later (a
    /// backfill), as it is now.
    fn bucket_streamed(&self, start: i64) -> Vec<(usize, Flow)> {
        let (now, rollover) = (self.clock.now(), (start + 2 * BUCKET_SECONDS) as f64);
        self.bucket_at(start, if now < rollover + 1.0 { rollover } else { now })
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
        let floor = if cfg.restarted {
            (origin - FELIX_REPLAY_SECONDS - BUCKET_SECONDS as f64) as i64 / BUCKET_SECONDS * BUCKET_SECONDS
        } else {
            i64::MIN
        };
        let state = Arc::new(State {
            model: Model::new(&cfg, origin),
            cfg,
            clock,
            newest,
            floor,
            cut_after: AtomicI64::new(-1),
            sent: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            listed: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            list_requests: Mutex::new(Vec::new()),
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
        self.state.model.flow_gen
    }

    /// When and what this process holds, to recompute what it streamed and what it finally holds.
    pub fn model(&self) -> Model {
        self.state.model
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

    /// Flows answered to `List` calls so far.
    pub fn listed(&self) -> u64 {
        self.state.listed.load(Ordering::SeqCst)
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

    /// Every `List` request received, in order.
    pub fn list_requests(&self) -> Vec<FlowListRequest> {
        self.state.list_requests.lock().expect("sim lock").clone()
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
        let (tx, mut rx) = mpsc::channel(STREAM_BUFFER);
        let first = self.state.first_bucket(req.start_time_gte);
        self.state.first_buckets.lock().expect("sim lock").push(first);
        self.state.requests.lock().expect("sim lock").push(req.clone());
        tokio::spawn(feed(self.state.clone(), first, tx, self.stop.clone()));
        // grpc-go sends the response headers with the first message: hold the response until there is one.
        let Some(head) = rx.recv().await else {
            return Err(Status::unavailable("goldmane simulator shutting down"));
        };
        let rest = ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(futures::stream::once(async move { head }).chain(rest))))
    }

    async fn list(&self, request: Request<FlowListRequest>) -> Result<Response<FlowListResult>, Status> {
        let req = request.into_inner();
        self.state.list_requests.lock().expect("sim lock").push(req.clone());
        let newest = *self.state.newest.borrow();
        let lt = if req.start_time_lt > 0 { req.start_time_lt } else { i64::MAX };
        // One flow per key, summed over the window's buckets (those rolled over or in progress).
        let mut by_key: Vec<Option<Flow>> = vec![None; self.state.cfg.flows_per_bucket];
        let first = req.start_time_gte.div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS;
        let first = if first < req.start_time_gte { first + BUCKET_SECONDS } else { first };
        let first = first.max(self.state.floor).max(newest - (RING_BUCKETS - 1) * BUCKET_SECONDS);
        let mut start = first;
        while start < lt && start <= newest + 2 * BUCKET_SECONDS {
            for (i, f) in self.state.bucket_now(start) {
                by_key[i] = Some(match by_key[i].take() {
                    None => f,
                    Some(acc) => sum(acc, &f),
                });
            }
            start += BUCKET_SECONDS;
        }
        let flows: Vec<FlowResult> = by_key
            .into_iter()
            .enumerate()
            .filter_map(|(i, f)| Some(FlowResult { id: i as i64 + 1, flow: Some(f?) }))
            .collect();
        let total = flows.len() as i64;
        let (page, size) = (req.page.max(0), req.page_size.max(0));
        let (pages, flows) = if size == 0 {
            (i64::from(total > 0), flows)
        } else {
            let pages = (total + size - 1) / size;
            (pages, flows.into_iter().skip((page * size) as usize).take(size as usize).collect())
        };
        self.state.listed.fetch_add(flows.len() as u64, Ordering::SeqCst);
        Ok(Response::new(FlowListResult {
            meta: Some(ListMetadata { total_pages: pages, total_results: total }),
            flows,
        }))
    }
}

/// Two flows of one key summed, as Goldmane aggregates over a window.
fn sum(mut acc: Flow, f: &Flow) -> Flow {
    acc.start_time = acc.start_time.min(f.start_time);
    acc.end_time = acc.end_time.max(f.end_time);
    acc.packets_in += f.packets_in;
    acc.packets_out += f.packets_out;
    acc.bytes_in += f.bytes_in;
    acc.bytes_out += f.bytes_out;
    acc.num_connections_started += f.num_connections_started;
    acc.num_connections_completed += f.num_connections_completed;
    acc.num_connections_live += f.num_connections_live;
    acc
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

/// One bucket's burst: the flows held now. False when the stream is over (client gone, or cut).
async fn send_bucket(state: &State, start: i64, tx: &mpsc::Sender<Result<FlowResult, Status>>) -> bool {
    let flows = state.bucket_streamed(start);
    let total = flows.len();
    for (n, (i, flow)) in flows.into_iter().enumerate() {
        if state.cut_after.load(Ordering::SeqCst) == 0 {
            state.cut_after.store(-1, Ordering::SeqCst);
            let _ = tx.send(Err(Status::unavailable("simulated stream cut"))).await;
            return false;
        }
        let result = FlowResult { id: i as i64 + 1, flow: Some(flow) };
        match tx.send_timeout(Ok(result), state.cfg.stall_timeout).await {
            Ok(()) => {
                state.sent.fetch_add(1, Ordering::SeqCst);
                let _ = state.cut_after.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n > 0).then(|| n - 1));
            }
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                let lost = (total - n) as u64;
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
        let cfg = SimConfig { flows_per_bucket: 1, ..SimConfig::default() };
        State {
            model: Model::new(&cfg, now as f64),
            cfg,
            clock,
            newest: watch::channel(last_rollover - 2 * BUCKET_SECONDS).0,
            floor: i64::MIN,
            cut_after: AtomicI64::new(-1),
            sent: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            listed: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            list_requests: Mutex::new(Vec::new()),
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

    #[test]
    fn late_and_growing_flows_are_missing_live_and_held_later() {
        let cfg =
            SimConfig { flows_per_bucket: 2_000, late_fraction: 0.05, growth_fraction: 0.05, ..SimConfig::default() };
        let m = Model::new(&cfg, 0.0);
        let start = 1_800_000_000;
        let live = start as f64 + 30.0;
        let (mut late, mut grown) = (0, 0);
        for i in 0..cfg.flows_per_bucket {
            let full = m.flow_gen.flow(i, start);
            assert_eq!(m.held(i, start, live + 7.1).as_ref(), Some(&full), "everything is held 7.1 s after rollover");
            match m.held(i, start, live) {
                None => late += 1,
                Some(f) if f != full => {
                    grown += 1;
                    assert!(f.packets_in <= full.packets_in && f.bytes_out <= full.bytes_out);
                }
                Some(_) => assert!(!m.is_late(i, start)),
            }
        }
        // About 5% each, from a deterministic draw.
        assert!((60..140).contains(&late), "{late} late");
        assert!((60..140).contains(&grown), "{grown} grown");
    }

    #[test]
    fn a_restarted_goldmane_holds_only_what_felix_replays() {
        let cfg = SimConfig { flows_per_bucket: 50, restarted: true, nodes: 5, ..SimConfig::default() };
        let r = 1_800_000_007.0;
        let m = Model::new(&cfg, r);
        // Sent 10 minutes before the restart: gone for good.
        assert!((0..50).all(|i| !m.ever_held(i, 1_800_000_007 - 600 - 7)));
        // Sent 2 minutes before: back once the node replays, 1-10 s after the start; nothing before that.
        let b = 1_800_000_000 - 120;
        assert!((0..50).all(|i| m.held(i, b, r + 0.5).is_none()));
        assert!((0..50).all(|i| m.held(i, b, r + 10.0).as_ref() == Some(&m.flow_gen.flow(i, b))));
        // Nodes come back at different times.
        let back: std::collections::BTreeSet<u64> =
            (0..50).filter(|&i| m.held(i, b, r + 4.0).is_some()).map(|i| (i % 5) as u64).collect();
        assert!(!back.is_empty() && back.len() < 5, "some nodes back after 4 s, not all: {back:?}");
    }
}
