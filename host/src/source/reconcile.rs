//! Reconciliation: every flow Goldmane holds, exported once, including the ones it never streams live.
//!
//! Goldmane streams each 15 s bucket once, at its rollover. A flow that reaches it later (a Felix flush that
//! started near a bucket's end, every node's 5-minute replay after a Goldmane restart, a second node's report of a
//! key already streamed) is filed into a bucket already streamed and never sent to an open stream. Only `List`
//! and a new stream's backfill show it.
//!
//! So each bucket is listed again (`Flows/List` over its 15 s, paged) a few times after Goldmane streamed it
//! (by default 10 s, 60 s and 300 s later), and the whole window once more 20 s and 60 s after every reconnect
//! (a Goldmane restart is a reconnect). What Goldmane holds is compared with the [`Ledger`] of what was handed
//! on: a key not handed on is exported whole (`flowgate.reconciled=late`); a key whose counters grew is exported
//! as the difference (`flowgate.reconciled=delta`), so sums over records stay right. The stream's own flows go
//! through the same ledger, so a flow is never handed on twice, whichever path shows it first.
//!
//! Time is Goldmane's: estimated from the newest bucket streamed (it rolled over 30 s after its start), never
//! behind the local clock. A bucket is listed only once the stream has moved past it (or the stream is idle and
//! Goldmane must have streamed it), so a slow stream is never overtaken.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ledger::{Ledger, Verdict};
use super::{BUCKET_SECONDS, identity};
use crate::config::{GoldmaneConfig, Growth, ReconcileConfig};
use crate::proto::{Flow, FlowListRequest};
use crate::telemetry::Metrics;
use crate::wire::{Chunk, Counters, FlowBytes, Origin, RawFlow, Reader, WIRE_LEN, WIRE_VARINT, flow_of_result};

/// How often the schedule is looked at.
const TICK: Duration = Duration::from_millis(250);
/// Whole-window sweeps after a reconnect, in Goldmane seconds: Felix nodes come back on a 1-10 s backoff and
/// re-send their last 5 minutes.
const SWEEPS_AFTER_RECONNECT: [f64; 2] = [20.0, 60.0];
/// An idle stream this long means Goldmane has nothing buffered for us: its clock says what it streamed.
const IDLE: Duration = Duration::from_secs(1);
/// Margin past a rollover before an idle stream's bucket counts as streamed.
const ROLLOVER_MARGIN: f64 = 5.0;
/// An open stream with nothing at all for this long sets the ledger's floor from the clock.
const QUIET_FLOOR_AFTER: Duration = Duration::from_secs(30);

/// What the stream and reconciliation share: the ledger, and what the stream says of Goldmane's clock.
#[derive(Default)]
pub struct Shared {
    ledger: Mutex<Ledger>,
    timeline: Mutex<Timeline>,
    /// Off: the stream keeps no ledger (reconciliation disabled).
    enabled: bool,
}

#[derive(Default)]
struct Timeline {
    /// The newest bucket the stream delivered, and when it first did.
    newest: Option<(i64, Instant)>,
    /// The stream is open and waiting on Goldmane with nothing buffered, since.
    idle_since: Option<Instant>,
    /// When the current stream opened.
    opened: Option<Instant>,
    /// Whole-window sweeps asked for, in Goldmane time.
    sweeps: Vec<f64>,
}

fn align_down(t: i64) -> i64 {
    t.div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS
}

fn unix_now_f64() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Shared {
    pub fn new(enabled: bool) -> Arc<Self> {
        Arc::new(Shared { enabled, ..Shared::default() })
    }

    /// The ledger, when reconciliation is on.
    pub fn ledger(&self) -> Option<MutexGuard<'_, Ledger>> {
        self.enabled.then(|| self.ledger.lock().expect("ledger lock"))
    }

    fn timeline(&self) -> MutexGuard<'_, Timeline> {
        self.timeline.lock().expect("timeline lock")
    }

    /// Goldmane's clock, estimated: a bucket arrives live 30 s after its start.
    pub fn goldmane_now(&self) -> f64 {
        let local = unix_now_f64();
        match self.timeline().newest {
            Some((b, at)) => local.max((b + 2 * BUCKET_SECONDS) as f64 + at.elapsed().as_secs_f64()),
            None => local,
        }
    }

    /// The newest bucket the stream delivered.
    pub fn newest_delivered(&self) -> Option<i64> {
        self.timeline().newest.map(|(n, _)| n)
    }

    /// The stream delivered a flow of bucket `start`. Returns the bucket it had been on when it moved past it
    /// (the caller seals it in the ledger: its compact form).
    pub fn delivered(&self, start: i64) -> Option<i64> {
        let mut t = self.timeline();
        if t.newest.is_none_or(|(n, _)| start > n) {
            let previous = t.newest.map(|(n, _)| n);
            t.newest = Some((start, Instant::now()));
            return previous;
        }
        None
    }

    /// A stream opened (`first`: the gateway's first); `floor` is the first bucket it will deliver, when known.
    pub fn opened(&self, first: bool, floor: Option<i64>) {
        let now = self.goldmane_now();
        {
            let mut t = self.timeline();
            t.opened = Some(Instant::now());
            t.idle_since = None;
            if !first {
                t.sweeps.extend(SWEEPS_AFTER_RECONNECT.map(|d| now + d));
            }
        }
        if let Some(mut l) = self.ledger() {
            l.new_stream();
            if let Some(f) = floor {
                l.set_floor(f);
            }
        }
    }

    /// The stream is down.
    pub fn closed(&self) {
        let mut t = self.timeline();
        t.opened = None;
        t.idle_since = None;
    }

    /// The stream waits on Goldmane (`true`) or just got something (`false`).
    pub fn idle(&self, idle: bool) {
        let mut t = self.timeline();
        if !idle {
            t.idle_since = None;
        } else if t.idle_since.is_none() && t.opened.is_some() {
            t.idle_since = Some(Instant::now());
        }
    }

    /// Buckets before this one are complete as far as the stream goes: it moved past them, or it is idle and
    /// Goldmane has streamed them by its clock.
    fn streamed_before(&self, goldmane_now: f64) -> Option<i64> {
        let t = self.timeline();
        let by_stream = t.newest.map(|(n, _)| n);
        let idle = t.idle_since.is_some_and(|s| s.elapsed() >= IDLE);
        let by_clock =
            idle.then(|| align_down((goldmane_now - ROLLOVER_MARGIN) as i64) - 2 * BUCKET_SECONDS + BUCKET_SECONDS);
        by_stream.max(by_clock)
    }

    /// A stream open for a while with nothing at all: its first bucket is the clock's.
    fn quiet_floor(&self, goldmane_now: f64) -> Option<i64> {
        let t = self.timeline();
        (t.newest.is_none() && t.opened.is_some_and(|o| o.elapsed() >= QUIET_FLOOR_AFTER))
            .then(|| align_down(goldmane_now as i64) - BUCKET_SECONDS)
    }

    fn take_due_sweep(&self, goldmane_now: f64) -> bool {
        let mut t = self.timeline();
        let before = t.sweeps.len();
        t.sweeps.retain(|&s| s > goldmane_now);
        t.sweeps.len() < before
    }
}

/// Which buckets are due, pass by pass.
struct Schedule {
    passes: Vec<f64>,
    /// Passes done per bucket.
    done: BTreeMap<i64, usize>,
}

impl Schedule {
    /// Buckets in `[from, before)` with a pass due at `now` (a bucket streamed at start + 30).
    fn due(&mut self, from: i64, before: i64, now: f64, sweep: bool) -> Vec<i64> {
        self.done = self.done.split_off(&from);
        let mut due = Vec::new();
        let mut b = from;
        while b < before {
            let streamed = (b + 2 * BUCKET_SECONDS) as f64;
            let reached = self.passes.iter().filter(|&&p| streamed + p <= now).count();
            let done = self.done.entry(b).or_insert(0);
            if reached > *done || (sweep && streamed <= now) {
                *done = reached.max(*done);
                due.push(b);
            }
            b += BUCKET_SECONDS;
        }
        due
    }
}

/// Runs reconciliation until `shutdown`: lists due buckets and hands late flows and deltas on to `out`.
pub async fn run(
    cfg: GoldmaneConfig,
    rc: ReconcileConfig,
    shared: Arc<Shared>,
    out: mpsc::Sender<Chunk>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut schedule =
        Schedule { passes: rc.passes.iter().map(Duration::as_secs_f64).collect(), done: BTreeMap::new() };
    let window = rc.window.as_secs() as i64;
    let mut channel: Option<tonic::transport::Channel> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while shutdown.run_until_cancelled(tick.tick()).await.is_some() {
        let now = shared.goldmane_now();
        let from = {
            let Some(mut ledger) = shared.ledger() else { return };
            if ledger.floor().is_none()
                && let Some(f) = shared.quiet_floor(now)
            {
                ledger.set_floor(f);
            }
            let kept_from = align_down(now as i64 - window) + BUCKET_SECONDS;
            ledger.forget_before(kept_from);
            metrics.reconcile_ledger(ledger.entries(), ledger.bytes());
            match ledger.floor() {
                Some(f) => f.max(kept_from),
                None => continue,
            }
        };
        let Some(before) = shared.streamed_before(now) else { continue };
        let sweep = shared.take_due_sweep(now);
        for bucket in schedule.due(from, before, now, sweep) {
            if channel.is_none() {
                match super::connect(&cfg).await {
                    Ok(c) => channel = Some(c),
                    Err(e) => {
                        metrics.reconcile_pass(false);
                        tracing::debug!(error = %e, "reconciliation cannot reach Goldmane; next pass later");
                        break;
                    }
                }
            }
            let c = channel.clone().expect("connected above");
            let pass = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = reconcile_bucket(c, &cfg, &rc, bucket, &shared, &out, &metrics) => r,
            };
            match pass {
                Ok(found) => {
                    metrics.reconcile_pass(true);
                    if found > 0 {
                        tracing::info!(bucket, found, "reconciliation found flows Goldmane did not stream live");
                    }
                }
                Err(PassError::Closed) => return,
                Err(PassError::Status(s)) => {
                    metrics.reconcile_pass(false);
                    channel = None;
                    tracing::warn!(bucket, code = ?s.code(), message = s.message(), "reconciliation: Goldmane's List failed; the next pass tries again");
                    break;
                }
            }
        }
    }
}

enum PassError {
    /// The pipeline is gone (shutdown).
    Closed,
    Status(tonic::Status),
}

/// Lists one bucket page by page and hands on what the ledger does not have. Returns the flows handed on.
async fn reconcile_bucket(
    channel: tonic::transport::Channel,
    cfg: &GoldmaneConfig,
    rc: &ReconcileConfig,
    bucket: i64,
    shared: &Shared,
    out: &mpsc::Sender<Chunk>,
    metrics: &Metrics,
) -> Result<usize, PassError> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(super::MAX_MESSAGE_BYTES);
    let mut found = 0;
    // Pages count from zero, as Calico's own UI asks for them; a page past the last is not requested.
    let mut page = 0;
    loop {
        let request = FlowListRequest {
            start_time_gte: bucket,
            start_time_lt: bucket + BUCKET_SECONDS,
            page,
            page_size: rc.page_size as i64,
            sort_by: Vec::new(),
            filter: cfg.filter.as_ref().map(super::filter_proto),
            aggregation_interval: 0,
        };
        grpc.ready().await.map_err(|e| PassError::Status(tonic::Status::unavailable(e.to_string())))?;
        let path = http::uri::PathAndQuery::from_static("/goldmane.Flows/List");
        let answer = grpc
            .unary(tonic::Request::new(request), path, super::RawCodec::<FlowListRequest>::default())
            .await
            .map_err(PassError::Status)?
            .into_inner();
        let (pages, results) = split_list(&answer).map_err(|e| {
            PassError::Status(tonic::Status::internal(format!("a List answer that is not valid protobuf: {e}")))
        })?;
        metrics.reconcile_listed(results.len() as u64);
        let flows = judge(bucket, &results, shared, rc.growth, metrics);
        found += flows.len();
        if !flows.is_empty() {
            metrics.flows_received.inc_by(flows.len() as u64);
            let flows = flows.into_iter().map(FlowBytes::from).collect();
            out.send(Chunk { seq: 0, flows }).await.map_err(|_| PassError::Closed)?;
        }
        page += 1;
        if page >= pages {
            return Ok(found);
        }
    }
}

/// The flows of one `List` page the ledger does not have, as late flows and deltas.
fn judge(bucket: i64, results: &[Bytes], shared: &Shared, growth: Growth, metrics: &Metrics) -> Vec<RawFlow> {
    let Some(mut ledger) = shared.ledger() else { return Vec::new() };
    let mut flows = Vec::new();
    for result in results {
        let raw = match flow_of_result(result.clone()) {
            Ok(Some(raw)) => raw,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "Goldmane's List sent a flow that is not valid protobuf; skipped");
                continue;
            }
        };
        let raw = match in_bucket(raw, bucket) {
            Some(raw) => raw,
            None => continue,
        };
        let fp = identity(raw.key(), raw.start_time) as u64;
        if let Some(flow) = late(&mut ledger, raw, fp, growth, metrics, "list") {
            flows.push(flow);
        }
    }
    flows
}

/// Records a flow Goldmane shows for a bucket the ledger judges; returns what to hand on: the flow (late), its
/// difference (grown), or nothing. `None` also when the ledger does not judge the bucket.
pub(super) fn late(
    ledger: &mut Ledger,
    mut raw: RawFlow,
    fp: u64,
    growth: Growth,
    metrics: &Metrics,
    found_by: &'static str,
) -> Option<RawFlow> {
    match ledger.admit(raw.start_time, fp, &raw.counters)? {
        Verdict::Known => None,
        Verdict::New => {
            metrics.flows_late("new", found_by);
            raw.origin = Origin::Late;
            Some(raw)
        }
        Verdict::Grown(delta) => {
            metrics.flows_late("growth", found_by);
            match growth {
                Growth::Ignore => None,
                Growth::Delta => delta_flow(&raw, &delta),
            }
        }
    }
}

/// A listed flow as the stream would have sent it: its bucket's start and end. `List` sums over the window asked
/// for (one bucket); should a server report other times within it, they are set to the bucket's, so the flow's
/// identity and body match what the stream sends. A flow reaching outside the bucket is not comparable: `None`.
fn in_bucket(raw: RawFlow, bucket: i64) -> Option<RawFlow> {
    let end = bucket + BUCKET_SECONDS;
    if raw.start_time == bucket && raw.end_time == end {
        return Some(raw);
    }
    if raw.start_time < bucket || raw.end_time > end || raw.start_time >= end {
        return None;
    }
    let mut flow = Flow::decode(raw.wire.as_ref()).ok()?;
    (flow.start_time, flow.end_time) = (bucket, end);
    RawFlow::parse(Bytes::from(flow.encode_to_vec()), raw.origin).ok()
}

/// The flow with its counters replaced by `delta`.
fn delta_flow(raw: &RawFlow, delta: &Counters) -> Option<RawFlow> {
    let mut flow = Flow::decode(raw.wire.as_ref()).ok()?;
    [
        flow.packets_in,
        flow.packets_out,
        flow.bytes_in,
        flow.bytes_out,
        flow.num_connections_started,
        flow.num_connections_completed,
        flow.num_connections_live,
    ] = *delta;
    RawFlow::parse(Bytes::from(flow.encode_to_vec()), Origin::Delta).ok()
}

/// A `FlowListResult`'s page count and its `FlowResult`s as bytes (zero-copy).
fn split_list(answer: &Bytes) -> Result<(i64, Vec<Bytes>), crate::wire::WireError> {
    let mut pages = 0;
    let mut results = Vec::new();
    let mut r = Reader::new(answer);
    while !r.is_empty() {
        match r.tag()? {
            (1, WIRE_LEN) => {
                let mut meta = Reader::new(r.len_delimited()?);
                while !meta.is_empty() {
                    match meta.tag()? {
                        (1, WIRE_VARINT) => pages = meta.varint()? as i64,
                        (_, wire_type) => meta.skip(wire_type)?,
                    }
                }
            }
            (2, WIRE_LEN) => results.push(answer.slice_ref(r.len_delimited()?)),
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    Ok((pages, results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{FlowKey, FlowListResult, FlowResult, ListMetadata};

    #[test]
    fn passes_come_due_after_the_bucket_was_streamed_and_sweeps_take_every_bucket() {
        let mut s = Schedule { passes: vec![10.0, 60.0], done: BTreeMap::new() };
        // Bucket 1500 is streamed at 1530: first pass at 1540, second at 1590.
        assert_eq!(s.due(1500, 1530, 1539.0, false), Vec::<i64>::new());
        assert_eq!(s.due(1500, 1530, 1540.0, false), vec![1500]);
        assert_eq!(s.due(1500, 1530, 1570.0, false), vec![1515]);
        assert_eq!(s.due(1500, 1530, 1580.0, false), Vec::<i64>::new());
        // Overdue passes run once, not once each.
        assert_eq!(s.due(1500, 1530, 2000.0, false), vec![1500, 1515]);
        assert_eq!(s.due(1500, 1530, 2000.0, false), Vec::<i64>::new());
        // A sweep lists every streamed bucket again.
        assert_eq!(s.due(1500, 1545, 2001.0, true), vec![1500, 1515, 1530]);
    }

    #[test]
    fn a_list_answer_splits_without_decoding() {
        let flow = |n: &str| Flow {
            key: Some(FlowKey { source_name: n.into(), ..FlowKey::default() }),
            start_time: 1500,
            end_time: 1515,
            packets_in: 3,
            ..Flow::default()
        };
        let answer = FlowListResult {
            meta: Some(ListMetadata { total_pages: 4, total_results: 2 }),
            flows: vec![FlowResult { id: 1, flow: Some(flow("a")) }, FlowResult { id: 2, flow: Some(flow("b")) }],
        };
        let (pages, results) = split_list(&Bytes::from(answer.encode_to_vec())).unwrap();
        assert_eq!(pages, 4);
        let decoded: Vec<Flow> = results.iter().map(|r| FlowResult::decode(r.clone()).unwrap().flow.unwrap()).collect();
        assert_eq!(decoded, vec![flow("a"), flow("b")]);
    }

    #[test]
    fn a_listed_flow_takes_its_buckets_times_and_one_reaching_outside_is_skipped() {
        let f = Flow {
            key: Some(FlowKey { source_name: "a".into(), ..FlowKey::default() }),
            start_time: 1503,
            end_time: 1503,
            packets_in: 2,
            ..Flow::default()
        };
        let raw = |f: &Flow| {
            flow_of_result(Bytes::from(FlowResult { id: 1, flow: Some(f.clone()) }.encode_to_vec())).unwrap().unwrap()
        };
        let fixed = in_bucket(raw(&f), 1500).unwrap();
        let decoded = Flow::decode(fixed.wire.as_ref()).unwrap();
        assert_eq!((fixed.start_time, fixed.end_time, decoded.start_time, decoded.end_time), (1500, 1515, 1500, 1515));
        assert_eq!(decoded.packets_in, 2);
        assert_eq!(fixed.key(), raw(&f).key());
        let wide = Flow { start_time: 1500, end_time: 1530, ..f.clone() };
        assert!(in_bucket(raw(&wide), 1500).is_none());
        let exact = Flow { start_time: 1500, end_time: 1515, ..f };
        assert_eq!(in_bucket(raw(&exact), 1500).unwrap().wire, raw(&exact).wire, "already right: untouched");
    }

    #[test]
    fn a_grown_key_hands_on_its_difference_and_a_new_one_itself() {
        let metrics = Metrics::new();
        let mut ledger = Ledger::default();
        ledger.set_floor(1500);
        let f = Flow {
            key: Some(FlowKey { source_name: "a".into(), ..FlowKey::default() }),
            start_time: 1500,
            end_time: 1515,
            packets_in: 10,
            bytes_in: 1000,
            ..Flow::default()
        };
        let raw = |f: &Flow| {
            flow_of_result(Bytes::from(FlowResult { id: 1, flow: Some(f.clone()) }.encode_to_vec())).unwrap().unwrap()
        };
        let fp = identity(raw(&f).key(), 1500) as u64;
        let first = late(&mut ledger, raw(&f), fp, Growth::Delta, &metrics, "list").unwrap();
        assert_eq!(first.origin, Origin::Late);
        assert!(late(&mut ledger, raw(&f), fp, Growth::Delta, &metrics, "list").is_none(), "the same again: nothing");
        let grown = Flow { packets_in: 15, bytes_in: 1600, ..f.clone() };
        let delta = late(&mut ledger, raw(&grown), fp, Growth::Delta, &metrics, "list").unwrap();
        assert_eq!(delta.origin, Origin::Delta);
        let d = Flow::decode(delta.wire.as_ref()).unwrap();
        assert_eq!((d.packets_in, d.bytes_in, d.key, d.start_time), (5, 600, f.key.clone(), 1500));
        let more = Flow { packets_in: 16, ..grown };
        assert!(late(&mut ledger, raw(&more), fp, Growth::Ignore, &metrics, "list").is_none(), "ignore: counted only");
        assert_eq!(metrics.flows_late_count("growth"), 2);
        assert_eq!(metrics.flows_late_count("new"), 1);
    }
}
