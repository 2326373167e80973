//! The live tap: what passes a point of the pipeline, shown to whoever asked through the admin port (`flowgate
//! tap`, `flowgate capture --admin`), filtered and rate-limited, never slowing the data path.
//!
//! Points: `source` (flows as Goldmane sent them, before the chain) and after each stage of the chain, by name.
//! The workers call [`Hub::source`] and [`Hub::after`]; with nobody tapping each is one atomic load.
//!
//! The redaction rule: a point some redaction stage comes after is refused unless `admin.tap.before_redaction`
//! allows it, checked when a tap starts and again at every batch (a reload may put a redaction after a point being
//! tapped). Points at or after the last redaction show only what it let through.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::chain::{Chain, Entry};
use super::worker::{self, Item};
use crate::config::TapConfig;
use crate::wire::FlowBytes;

pub mod filter;

pub use filter::Filter;

/// Events a tap buffers before the workers skip (and count) what it cannot take.
const TAP_BUFFER: usize = 1024;
/// Flows a capture buffers before the workers skip (and count) what it cannot take.
const CAPTURE_BUFFER: usize = 16_384;

/// Where a tap looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    /// Flows as Goldmane sent them, before the chain.
    Source,
    /// What leaves the named stage of the chain.
    After(String),
}

/// The point after the chain's last stage (the source when there is no chain): what is exported, and the
/// default, so a plain `flowgate tap` works on a chain with a redaction in it.
pub const END: &str = "end";

impl Point {
    /// `source`, `end` (resolved against `chain` now) or a stage's name.
    pub fn parse(text: &str, chain: &Chain) -> Point {
        match text {
            "source" => Point::Source,
            END => chain.entries.last().map_or(Point::Source, |e| Point::After(e.spec.name.clone())),
            name => Point::After(name.to_string()),
        }
    }

    fn index(&self, chain: &Chain) -> Option<Option<usize>> {
        match self {
            Point::Source => Some(None),
            Point::After(name) => chain.entries.iter().position(|e| e.spec.name == *name).map(Some),
        }
    }
}

/// What a tap receives.
#[derive(Debug)]
pub enum Event {
    /// A record as `flowgate test` prints it.
    Record(Value),
    /// A flow's bytes as Goldmane sent them (captures).
    Flow(Bytes),
}

/// Why a tap was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TapRefused {
    #[error("the tap is off: set admin.tap.enabled: true in the gateway's config")]
    Disabled,
    #[error("the tap answers loopback clients only (use kubectl port-forward, or set admin.tap.allow_remote: true)")]
    Remote,
    #[error("no stage {name:?} in the chain (points: {points})")]
    NoSuchPoint { name: String, points: String },
    #[error(
        "{point} comes before the redaction {redaction:?}: tapping there would show what it removes; set admin.tap.before_redaction: true to allow it"
    )]
    BeforeRedaction { point: String, redaction: String },
}

/// The workers' side of the tap, shared by every chain the gateway serves (a reload keeps it). The default hub is
/// inert: nobody can tap it.
#[derive(Clone, Default)]
pub struct Hub(Option<Arc<Inner>>);

struct Inner {
    rules: TapConfig,
    active: AtomicUsize,
    taps: Mutex<Vec<Arc<Tap>>>,
    next: AtomicU64,
}

struct Tap {
    id: u64,
    point: Point,
    filter: Option<Filter>,
    /// `None` for a capture: every flow, as bytes.
    limit: Option<Mutex<Bucket>>,
    tx: mpsc::Sender<Event>,
    skipped: AtomicU64,
}

/// A running tap; dropping it stops it.
pub struct Subscription {
    pub events: mpsc::Receiver<Event>,
    tap: Arc<Tap>,
    hub: Arc<Inner>,
}

impl Subscription {
    /// Flows that matched but were not shown (over the rate, or the reader was behind), since the last call.
    pub fn take_skipped(&self) -> u64 {
        self.tap.skipped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut taps = self.hub.taps.lock().expect("tap lock");
        taps.retain(|t| t.id != self.tap.id);
        self.hub.active.store(taps.len(), Ordering::Release);
    }
}

/// A token bucket: `rate` a second, bursts of up to `rate`.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        Bucket { rate: f64::from(rate), tokens: f64::from(rate), at: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Hub {
    pub fn new(rules: TapConfig) -> Hub {
        Hub(Some(Arc::new(Inner {
            rules,
            active: AtomicUsize::new(0),
            taps: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
        })))
    }

    /// The rules this hub enforces (`None`: an inert hub).
    pub fn rules(&self) -> Option<&TapConfig> {
        self.0.as_ref().map(|i| &i.rules)
    }

    /// Starts a tap of records at `point` (after checking it against `chain`), at most `rate` a second (capped by
    /// `admin.tap.max_per_second`), or a capture of flows (`rate` `None`, `point` must be the source).
    pub fn subscribe(
        &self,
        chain: &Chain,
        point: Point,
        filter: Option<Filter>,
        rate: Option<u32>,
    ) -> Result<Subscription, TapRefused> {
        let inner = self.0.as_ref().filter(|i| i.rules.enabled).ok_or(TapRefused::Disabled)?;
        permitted(&inner.rules, chain, &point)?;
        let (tx, events) = mpsc::channel(if rate.is_some() { TAP_BUFFER } else { CAPTURE_BUFFER });
        let limit = rate.map(|r| Mutex::new(Bucket::new(r.clamp(1, inner.rules.max_per_second.max(1)))));
        let tap = Arc::new(Tap {
            id: inner.next.fetch_add(1, Ordering::Relaxed),
            point,
            filter,
            limit,
            tx,
            skipped: AtomicU64::new(0),
        });
        let mut taps = inner.taps.lock().expect("tap lock");
        taps.push(tap.clone());
        inner.active.store(taps.len(), Ordering::Release);
        Ok(Subscription { events, tap, hub: inner.clone() })
    }

    /// The taps looking at `point`, when any may (one atomic load when nobody taps).
    fn looking(&self, chain: &Chain, point: &Point) -> Vec<Arc<Tap>> {
        let Some(inner) = self.0.as_ref() else { return Vec::new() };
        if inner.active.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let taps: Vec<Arc<Tap>> =
            inner.taps.lock().expect("tap lock").iter().filter(|t| t.point == *point).cloned().collect();
        // A reload may have put a redaction after this point since the tap started.
        if taps.is_empty() || permitted(&inner.rules, chain, point).is_err() {
            return Vec::new();
        }
        taps
    }

    /// The hook before the chain: flows as Goldmane sent them.
    pub fn source(&self, chain: &Chain, flows: &[FlowBytes]) {
        let taps = self.looking(chain, &Point::Source);
        if taps.is_empty() {
            return;
        }
        let now = super::unix_nanos();
        for tap in &taps {
            for flow in flows {
                if tap.limit.is_none() {
                    tap.offer(Event::Flow(flow.wire.clone()));
                    continue;
                }
                if let Ok(record) = worker::record(Item::from_wire(flow.wire.clone()), now, None) {
                    tap.show(describe(&record));
                }
            }
        }
    }

    /// The hook after stage `i` of `chain`: what left it.
    pub fn after(&self, chain: &Chain, i: usize, items: &[Item]) {
        let Some(entry) = chain.entries.get(i) else { return };
        let taps = self.looking(chain, &Point::After(entry.spec.name.clone()));
        if taps.is_empty() {
            return;
        }
        let now = super::unix_nanos();
        for tap in &taps {
            for item in items {
                if let Ok(record) = worker::record(item.clone(), now, None) {
                    tap.show(describe(&record));
                }
            }
        }
    }
}

impl Tap {
    /// A record: filtered, then rate-limited.
    fn show(&self, record: Value) {
        if self.filter.as_ref().is_some_and(|f| !f.matches(&record)) {
            return;
        }
        if let Some(limit) = &self.limit
            && !limit.lock().expect("tap bucket").take()
        {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.offer(Event::Record(record));
    }

    /// Never waits: a reader that is behind loses events, counted.
    fn offer(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A stage counts as a redaction when `admin.tap.redactions` names it, or its name or file name says `redact`.
pub fn is_redaction(rules: &TapConfig, entry: &Entry) -> bool {
    let file = entry.spec.path.file_name().map(|f| f.to_string_lossy().to_lowercase()).unwrap_or_default();
    rules.redactions.contains(&entry.spec.name)
        || entry.spec.name.to_lowercase().contains("redact")
        || file.contains("redact")
}

/// Whether `point` may be tapped in `chain` under `rules`.
pub fn permitted(rules: &TapConfig, chain: &Chain, point: &Point) -> Result<(), TapRefused> {
    let Some(at) = point.index(chain) else {
        let mut points = vec!["source".to_string()];
        points.extend(chain.entries.iter().map(|e| e.spec.name.clone()));
        points.push(END.to_string());
        let name = match point {
            Point::After(n) => n.clone(),
            Point::Source => "source".to_string(),
        };
        return Err(TapRefused::NoSuchPoint { name, points: points.join(", ") });
    };
    if rules.before_redaction {
        return Ok(());
    }
    let later = chain.entries.iter().skip(at.map_or(0, |i| i + 1));
    if let Some(r) = later.into_iter().find(|e| is_redaction(rules, e)) {
        let point = match at {
            None => "the source (flows before the chain)".to_string(),
            Some(i) => format!("the output of {:?}", chain.entries[i].spec.name),
        };
        return Err(TapRefused::BeforeRedaction { point, redaction: r.spec.name.clone() });
    }
    Ok(())
}

/// A record as `flowgate test`, `replay` and `tap` show it: severity, attributes, body (JSON bodies parsed). No
/// timestamps.
pub fn describe(r: &LogRecord) -> Value {
    let attributes: serde_json::Map<String, Value> =
        r.attributes.iter().map(|kv| (kv.key.clone(), any(kv.value.as_ref()))).collect();
    let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        _ => any(r.body.as_ref()),
    };
    json!({ "severity": r.severity_text, "attributes": attributes, "body": body })
}

fn any(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(|v| any(Some(v))).collect()),
        Some(any_value::Value::KvlistValue(kv)) => {
            Value::Object(kv.values.iter().map(|kv| (kv.key.clone(), any(kv.value.as_ref()))).collect())
        }
        Some(any_value::Value::BytesValue(b)) => json!(b),
        Some(other) => Value::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(enabled: bool) -> TapConfig {
        TapConfig { enabled, before_redaction: false, redactions: Vec::new(), allow_remote: false, max_per_second: 10 }
    }

    #[test]
    fn a_bucket_gives_a_burst_of_its_rate_then_refills_at_it() {
        let mut b = Bucket::new(5);
        assert_eq!((0..10).filter(|_| b.take()).count(), 5);
        // A fifth of a second later: one more.
        b.at -= std::time::Duration::from_millis(210);
        assert!(b.take());
        assert!(!b.take());
    }

    #[test]
    fn taps_are_off_unless_enabled_and_leave_when_dropped() {
        let chain = Chain::default();
        assert_eq!(Hub::default().subscribe(&chain, Point::Source, None, Some(1)).err(), Some(TapRefused::Disabled));
        assert_eq!(
            Hub::new(rules(false)).subscribe(&chain, Point::Source, None, Some(1)).err(),
            Some(TapRefused::Disabled)
        );
        let hub = Hub::new(rules(true));
        assert_eq!(Point::parse(END, &chain), Point::Source, "no chain: the end is the source");
        let missing = hub.subscribe(&chain, Point::parse("redact", &chain), None, Some(1)).err().unwrap();
        assert_eq!(missing, TapRefused::NoSuchPoint { name: "redact".into(), points: "source, end".into() });
        let sub = hub.subscribe(&chain, Point::Source, None, Some(100)).unwrap();
        // The rate asked for is capped by the configured maximum.
        assert_eq!(sub.tap.limit.as_ref().unwrap().lock().unwrap().rate, 10.0);
        assert_eq!(hub.looking(&chain, &Point::Source).len(), 1);
        drop(sub);
        assert!(hub.looking(&chain, &Point::Source).is_empty());
        assert_eq!(hub.0.as_ref().unwrap().active.load(Ordering::Acquire), 0);
    }
}
