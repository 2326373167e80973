//! Against Goldmane as it was observed to behave (`shared/reference/goldmane.md`, "Observed against Goldmane"):
//! response headers only with the first message, flows that arrive after their bucket was streamed (never
//! streamed live), counters of a key growing after its bucket was streamed.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use flowgate::pipeline::RECONCILED_ATTRIBUTE;
use flowgate::proto::Flow;
use flowgate::receiver::{Receiver, accept_all};
use flowgate::render;
use flowgate::sim::{Model, SimConfig};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(90);

/// Every record the receiver took: (body, value of `flowgate.reconciled`).
pub fn records(rx: &Receiver) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for req in rx.accepted() {
        for rl in req.resource_logs {
            for sl in rl.scope_logs {
                for r in sl.log_records {
                    let body = match r.body.and_then(|b| b.value) {
                        Some(Any::StringValue(s)) => s,
                        other => panic!("a body that is not the flow's JSON: {other:?}"),
                    };
                    let reconciled = r.attributes.iter().find(|a| a.key == RECONCILED_ATTRIBUTE).map(|a| {
                        match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(Any::StringValue(s)) => s.clone(),
                            other => panic!("{RECONCILED_ATTRIBUTE} is not a string: {other:?}"),
                        }
                    });
                    out.push((body, reconciled));
                }
            }
        }
    }
    out
}

/// A body's counters, in field order (protojson writes int64 as strings and leaves zeros out).
fn counters(body: &str) -> [i64; 7] {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    [
        "packetsIn",
        "packetsOut",
        "bytesIn",
        "bytesOut",
        "numConnectionsStarted",
        "numConnectionsCompleted",
        "numConnectionsLive",
    ]
    .map(|k| v[k].as_str().map_or(0, |s| s.parse().unwrap()))
}

/// Records of the buckets in `buckets`, by identity: (body, value of `flowgate.reconciled`).
type ByIdentity<'a> = HashMap<(String, i64), Vec<(&'a String, Option<&'a str>)>>;

fn by_identity<'a>(records: &'a [(String, Option<String>)], buckets: &RangeInclusive<i64>) -> ByIdentity<'a> {
    let mut got = ByIdentity::new();
    for (body, rec) in records {
        let id = identity(body);
        if buckets.contains(&id.1) {
            got.entry(id).or_default().push((body, rec.as_deref()));
        }
    }
    got
}

/// Counters summed over records.
fn summed(recs: &[(&String, Option<&str>)]) -> [i64; 7] {
    recs.iter().fold([0i64; 7], |mut acc, (b, _)| {
        for (a, c) in acc.iter_mut().zip(counters(b)) {
            *a += c;
        }
        acc
    })
}

fn counters_of(f: &Flow) -> [i64; 7] {
    [
        f.packets_in,
        f.packets_out,
        f.bytes_in,
        f.bytes_out,
        f.num_connections_started,
        f.num_connections_completed,
        f.num_connections_live,
    ]
}

/// What each bucket should show at the receiver, from the simulator's model: per key, the record streamed
/// live (if any part of it was there when its bucket was streamed), and whether a late record or a delta must
/// follow.
pub struct Expected {
    pub flows: usize,
    pub late: usize,
    pub grown: usize,
}

/// Asserts that, for every bucket of `buckets`, every flow the model finally holds reached the receiver exactly
/// once (or once plus one delta for a key that grew), with the right attribute and sums equal to what Goldmane
/// finally holds; and nothing else of those buckets arrived. `live_at(i, bucket)` is the flow as it was streamed
/// (None: late). Returns the counts.
pub fn assert_every_held_flow_once(
    models: &[Model],
    keys: usize,
    buckets: RangeInclusive<i64>,
    records: &[(String, Option<String>)],
    live_at: impl Fn(usize, i64) -> Option<Flow>,
) -> Expected {
    let got = by_identity(records, &buckets);
    let mut expected = Expected { flows: 0, late: 0, grown: 0 };
    let mut seen = 0;
    let mut per_bucket = BTreeMap::new();
    for bucket in buckets.clone().step_by(15) {
        for i in 0..keys {
            let Some(full) = models.iter().find_map(|m| m.held(i, bucket, f64::INFINITY)) else { continue };
            let id = identity(&render::flow_json_string(&full));
            let recs = got.get(&id).unwrap_or_else(|| panic!("bucket {bucket}: key {i} never arrived"));
            seen += 1;
            expected.flows += 1;
            *per_bucket.entry(bucket).or_insert(0) += 1;
            let sum = summed(recs);
            assert_eq!(sum, counters_of(&full), "bucket {bucket} key {i}: counters over its records {recs:?}");
            let plain: Vec<_> = recs.iter().filter(|(_, r)| *r != Some("delta")).collect();
            assert_eq!(plain.len(), 1, "bucket {bucket} key {i}: one record besides deltas: {recs:?}");
            match live_at(i, bucket) {
                None => {
                    expected.late += 1;
                    assert_eq!(recs.len(), 1, "bucket {bucket} key {i}: late, so one record: {recs:?}");
                    assert_eq!(recs[0].1, Some("late"), "bucket {bucket} key {i}: a late flow is marked");
                    assert_eq!(*recs[0].0, render::flow_json_string(&full));
                }
                Some(live) if live == full => {
                    assert_eq!(recs.len(), 1, "bucket {bucket} key {i}: {recs:?}");
                    assert_eq!(*recs[0].0, render::flow_json_string(&full));
                }
                Some(live) => {
                    expected.grown += 1;
                    assert_eq!(recs.len(), 2, "bucket {bucket} key {i}: the live part and one delta: {recs:?}");
                    assert_eq!(*plain[0].0, render::flow_json_string(&live), "bucket {bucket} key {i}: live part");
                    assert_eq!(plain[0].1, None);
                }
            }
        }
    }
    assert_eq!(seen, got.len(), "records of flows Goldmane never held: {} identities, {seen} expected", got.len());
    println!("per bucket: {per_bucket:?}");
    expected
}

/// For every bucket of `buckets` and every key some simulator finally holds: exactly one record besides deltas,
/// deltas marked as such, counters summed over its records equal to what Goldmane holds, and no record of a key
/// no simulator holds. Returns (flows, records marked late, delta records, duplicates).
pub fn assert_sums_once(
    models: &[Model],
    keys: usize,
    buckets: RangeInclusive<i64>,
    records: &[(String, Option<String>)],
) -> (usize, usize, usize, usize) {
    let mut got = by_identity(records, &buckets);
    let (mut flows, mut late, mut deltas, mut dups) = (0, 0, 0, 0);
    let mut missing = Vec::new();
    for bucket in buckets.clone().step_by(15) {
        for i in 0..keys {
            let Some(full) = models.iter().find_map(|m| m.held(i, bucket, f64::INFINITY)) else { continue };
            flows += 1;
            let id = identity(&render::flow_json_string(&full));
            let Some(recs) = got.remove(&id) else {
                missing.push((bucket, i));
                continue;
            };
            let plain = recs.iter().filter(|(_, r)| *r != Some("delta")).count();
            dups += plain.saturating_sub(1);
            assert!(plain >= 1, "bucket {bucket} key {i}: only deltas: {recs:?}");
            late += recs.iter().filter(|(_, r)| *r == Some("late")).count();
            deltas += recs.len() - plain;
            let sum = summed(&recs);
            if plain == 1 {
                assert_eq!(sum, counters_of(&full), "bucket {bucket} key {i}: counters over its records {recs:?}");
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {flows} flows missing (bucket, key): {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(got.is_empty(), "records of flows Goldmane never held: {:?}", got.keys().take(5).collect::<Vec<_>>());
    (flows, late, deltas, dups)
}

fn sim_config(flows_per_bucket: usize, seed: u64) -> SimConfig {
    SimConfig {
        flows_per_bucket,
        time_scale: 30.0,
        seed,
        late_fraction: 0.05,
        growth_fraction: 0.05,
        ..SimConfig::default()
    }
}

/// Goldmane sends response headers with its first message; a quiet cluster (or a filter matching nothing) sends
/// none for a long time. The gateway is ready once the connection is up and the request drew no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_within_two_seconds_of_a_server_that_has_sent_nothing_and_through_silence() {
    // No flow keys: the simulator never has a message, so never sends headers.
    let (sim, _dir) = simulator(SimConfig { flows_per_bucket: 0, ..SimConfig::default() }).await;
    let rx = receiver(accept_all()).await;
    let gw = Gateway::start(resolve(raw_config(&sim, &rx.base_url()))).await;
    let started = Instant::now();
    loop {
        let (status, body) = gw.admin_get("/readyz").await;
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "not ready 2 s after start: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("ready {} ms after start, no message sent", started.elapsed().as_millis());
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(gw.admin_get("/readyz").await.0, 200, "ready through silence");
    }
    assert_eq!(sim.sent(), 0, "the server sent nothing, headers included");
    assert_eq!(sim.requests().len(), 1, "one stream, never re-opened");
    assert_eq!(gw.metrics.stream_connected.get(), 1);
    assert_eq!(gw.metrics.reconnects.get(), 0);
}

/// Steady state as measured against Goldmane: 5% of flows reach it after their bucket was streamed, 5% of keys
/// get a second node's report late. Every flow is exported once, late ones marked, grown keys as one delta
/// record each, sums equal to what Goldmane finally holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_flows_and_grown_keys_are_exported_once_with_sums_right() {
    let cfg = sim_config(400, 21);
    let (sim, _dir) = simulator(cfg).await;
    let rx = receiver(accept_all()).await;
    let mut gw = Gateway::start(resolve(raw_config(&sim, &rx.base_url()))).await;
    wait_until(WAIT, "a first live bucket", || !rx.bodies().is_empty()).await;
    let first = rx.bodies().iter().map(|b| identity(b).1).min().unwrap();
    let last = first + 8 * 15;
    let model = sim.model();
    let late_expected: usize =
        (first..=last).step_by(15).map(|b| (0..400).filter(|&i| model.is_late(i, b)).count()).sum();
    assert!(late_expected > 8 * 20, "the simulator makes late flows: {late_expected}");
    wait_until(WAIT, "every late flow and delta of the buckets reconciled", || {
        records(&rx).iter().filter(|(b, r)| r.is_some() && (first..=last).contains(&identity(b).1)).count()
            >= late_expected
    })
    .await;
    // One more pass for each of those buckets must find nothing new.
    sim.wait_for_bucket(last + 5 * 15).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.shutdown().await.unwrap();
    let records = records(&rx);
    let e =
        assert_every_held_flow_once(&[model], 400, first..=last, &records, |i, b| model.held(i, b, (b + 30) as f64));
    let m = &gw.metrics;
    println!(
        "late flows: {} flows in 9 buckets, {} late, {} grown; ledger passes {}; {} listed",
        e.flows,
        e.late,
        e.grown,
        m.reconcile_passes_count(true),
        sim.listed()
    );
    assert_eq!(e.late + e.grown, late_expected);
    assert!(e.late > 0 && e.grown > 0);
    assert!(m.flows_late_count("new") >= e.late as u64);
    assert!(m.flows_late_count("growth") >= e.grown as u64);
    assert_eq!(m.reconcile_passes_count(false), 0, "no List failed");
    assert!(!sim.list_requests().is_empty());
    for r in sim.list_requests() {
        assert_eq!(r.start_time_lt - r.start_time_gte, 15, "one bucket at a time: {r:?}");
    }
}

/// `growth: ignore` counts a grown key without a delta record (records users see stay one per key and bucket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growth_ignore_counts_without_a_delta_record() {
    let cfg = SimConfig { late_fraction: 0.0, growth_fraction: 0.1, ..sim_config(300, 22) };
    let (sim, _dir) = simulator(cfg).await;
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(&sim, &rx.base_url());
    raw.goldmane.reconcile.growth = Some(flowgate::config::Growth::Ignore);
    let mut gw = Gateway::start(resolve(raw)).await;
    wait_until(WAIT, "a first live bucket", || !rx.bodies().is_empty()).await;
    let first = rx.bodies().iter().map(|b| identity(b).1).min().unwrap();
    let model = sim.model();
    let grown: u64 =
        (first..=first + 45).step_by(15).map(|b| (0..300).filter(|&i| model.is_late(i, b)).count() as u64).sum();
    assert!(grown > 0);
    wait_until(WAIT, "growth counted for four buckets", || gw.metrics.flows_late_count("growth") >= grown).await;
    gw.shutdown().await.unwrap();
    assert!(records(&rx).iter().all(|(_, r)| r.is_none()), "no delta record, no late record");
    let mut ids = std::collections::HashSet::new();
    for b in rx.bodies() {
        assert!(ids.insert(identity(&b)), "one record per key and bucket: {b}");
    }
}
