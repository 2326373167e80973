//! The gateway's own telemetry over OTLP/HTTP with the OpenTelemetry SDK (`telemetry`, `OTEL_METRICS_EXPORTER`,
//! `OTEL_TRACES_EXPORTER`): its health, not the flows (the data path keeps its own exporter).
//!
//! **Metrics** are the families `/metrics` serves, bridged: at startup every family of the registry becomes an
//! observable instrument of the same name (counters: monotonic sums named as in `# TYPE`, without `_total`;
//! gauges: gauges; histograms: the `_bucket` (with `le`), `_sum` and `_count` series as sums), whose callback reads
//! the registry when the SDK's periodic reader collects. Same values, same labels (as attributes).
//!
//! **Traces**: a span `flowgate.batch` per sampled chunk of flows (attributes `flowgate.flows`,
//! `flowgate.records`), from the moment the pipeline takes it to the moment its records are handed to the
//! batcher (event `queued`); inside it `flowgate.chain`, and inside that a `flowgate.transform` span per transform
//! (`flowgate.transform.name`, `flowgate.flows.in`, `flowgate.flows.out`).
//!
//! Nothing here waits on the network on the data path: finished spans go to a bounded queue
//! (`telemetry.traces.max_queue`) drained by a thread of its own; a full queue drops the span, counted in
//! `flowgate_telemetry_spans_dropped_total`. Requests go out through the gateway's tokio runtime with its
//! rustls client (no OpenSSL), with the main endpoint's TLS files.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor};

use super::Metrics;
use crate::config::{OtlpConfig, TelemetryConfig};

/// The instrumentation scope of the gateway's own telemetry.
pub const SCOPE: &str = "flowgate";
/// Spans per export request.
const SPAN_BATCH: usize = 512;
/// Longest a finished span waits for a partial batch.
const SPAN_DELAY: Duration = Duration::from_secs(1);
/// A registry snapshot serves every instrument's callback of one collection (they run within a few ms; the
/// shortest export interval is 100 ms).
const SNAPSHOT_FRESH: Duration = Duration::from_millis(50);

/// The running SDK providers; [`SelfTelemetry::shutdown`] flushes them.
pub struct SelfTelemetry {
    /// The provider, the registry's bridge and the task scanning it for new families.
    meters: Option<(SdkMeterProvider, Arc<Bridge>, tokio::task::JoinHandle<()>)>,
    tracers: Option<SdkTracerProvider>,
    tracer: Option<Tracing>,
}

/// Starts what `cfg` turns on, sending with `client` (built with the main endpoint's TLS files) under `resource`
/// (the flow records' resource attributes). Call from inside the tokio runtime the requests will use.
pub fn start(
    cfg: &TelemetryConfig,
    otlp: &OtlpConfig,
    resource: Vec<(String, String)>,
    client: reqwest::Client,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<SelfTelemetry> {
    let client = RuntimeClient {
        client,
        runtime: tokio::runtime::Handle::try_current().context("self-telemetry starts inside the runtime")?,
    };
    let resource =
        Resource::builder_empty().with_attributes(resource.into_iter().map(|(k, v)| KeyValue::new(k, v))).build();
    let headers: HashMap<String, String> = otlp.headers.iter().cloned().collect();
    let meters = match &cfg.metrics_endpoint {
        Some(url) => {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(client.clone())
                .with_endpoint(url.as_str())
                .with_timeout(otlp.timeout)
                .with_headers(headers.clone())
                .build()
                .context("the OTLP metrics exporter of the gateway's own telemetry")?;
            let reader = PeriodicReader::builder(exporter).with_interval(cfg.interval).build();
            let provider = SdkMeterProvider::builder().with_reader(reader).with_resource(resource.clone()).build();
            let bridge = Bridge::new(&provider, metrics);
            let scanner = bridge.clone();
            let period = cfg.interval / 2;
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tick.tick().await;
                    scanner.scan();
                }
            });
            Some((provider, bridge, task))
        }
        None => None,
    };
    let (tracers, tracer) = match &cfg.traces_endpoint {
        Some(url) => {
            let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(url.as_str())
                .with_timeout(otlp.timeout)
                .with_headers(headers)
                .build()
                .context("the OTLP span exporter of the gateway's own telemetry")?;
            exporter.set_resource(&resource);
            let provider = SdkTracerProvider::builder()
                .with_span_processor(QueueProcessor::start(exporter, cfg.max_queue, metrics.clone()))
                .with_sampler(Sampler::TraceIdRatioBased(cfg.sample_ratio))
                .with_resource(resource)
                .build();
            let tracer = opentelemetry::trace::TracerProvider::tracer_with_scope(
                &provider,
                opentelemetry::InstrumentationScope::builder(SCOPE).with_version(env!("CARGO_PKG_VERSION")).build(),
            );
            (Some(provider), Some(Tracing { tracer }))
        }
        None => (None, None),
    };
    Ok(SelfTelemetry { meters, tracers, tracer })
}

impl SelfTelemetry {
    /// What the pipeline traces batches with, when traces are on.
    pub fn tracing(&self) -> Option<Tracing> {
        self.tracer.clone()
    }

    /// A last export of both signals, then stop. Blocking (bounded by the exporters' timeouts): call it off the
    /// async threads.
    pub fn shutdown(self) {
        if let Some(p) = self.tracers
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "the gateway's own traces: last export failed");
        }
        if let Some((p, bridge, scanner)) = self.meters {
            scanner.abort();
            // Families that appeared since the last scan make the last export too.
            bridge.scan();
            if let Err(e) = p.shutdown() {
                tracing::warn!(error = %e, "the gateway's own metrics: last export failed");
            }
        }
    }
}

// ---- metrics: the registry, bridged ----------------------------------------------------------------------------

/// One series of the registry's text encoding.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Families as `# TYPE name kind`, and every sample.
fn parse(text: &str) -> (Vec<(String, String)>, Vec<Sample>) {
    let (mut families, mut samples) = (Vec::new(), Vec::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                families.push((name.to_string(), kind.to_string()));
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(s) = sample(line) {
            samples.push(s);
        }
    }
    (families, samples)
}

/// `name{k="v",…} value` (label values escaped with `\`).
fn sample(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse::<f64>().ok()?;
    let Some((name, rest)) = head.split_once('{') else {
        return Some(Sample { name: head.to_string(), labels: Vec::new(), value });
    };
    let mut labels = Vec::new();
    let mut chars = rest.strip_suffix('}')?.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    'n' => v.push('\n'),
                    other => v.push(other),
                },
                '"' => break,
                c => v.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_string(), v));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(Sample { name: name.to_string(), labels, value })
}

/// The registry, encoded at most every [`SNAPSHOT_FRESH`] for the instruments' callbacks.
struct Snapshot {
    metrics: Arc<Metrics>,
    last: Mutex<(Instant, Arc<Vec<Sample>>)>,
}

impl Snapshot {
    fn samples(&self) -> Arc<Vec<Sample>> {
        let mut last = self.last.lock().expect("snapshot lock");
        if last.0.elapsed() > SNAPSHOT_FRESH || last.1.is_empty() {
            *last = (Instant::now(), Arc::new(parse(&self.metrics.encode()).1));
        }
        last.1.clone()
    }

    fn observe(&self, sample_name: &str, mut each: impl FnMut(f64, &[KeyValue])) {
        for s in self.samples().iter().filter(|s| s.name == sample_name) {
            let attrs: Vec<KeyValue> = s.labels.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
            each(s.value, &attrs);
        }
    }
}

/// Registers an observable instrument for every family of the registry, as families appear: a labelled family
/// shows in the encoding once it has a series, so the registry is scanned again every half interval (and before
/// the last export). Counters are cumulative, so a family registered late loses nothing.
struct Bridge {
    meter: opentelemetry::metrics::Meter,
    snapshot: Arc<Snapshot>,
    registered: Mutex<std::collections::HashSet<String>>,
}

impl Bridge {
    fn new(provider: &SdkMeterProvider, metrics: &Arc<Metrics>) -> Arc<Self> {
        use opentelemetry::metrics::MeterProvider as _;
        let meter = provider.meter_with_scope(
            opentelemetry::InstrumentationScope::builder(SCOPE).with_version(env!("CARGO_PKG_VERSION")).build(),
        );
        let snapshot =
            Arc::new(Snapshot { metrics: metrics.clone(), last: Mutex::new((Instant::now(), Arc::default())) });
        let bridge = Arc::new(Bridge { meter, snapshot, registered: Mutex::default() });
        bridge.scan();
        bridge
    }

    fn scan(&self) {
        let (families, _) = parse(&self.snapshot.metrics.encode());
        let mut registered = self.registered.lock().expect("bridge lock");
        for (family, kind) in families {
            if registered.insert(family.clone()) {
                self.register(&family, &kind);
            }
        }
    }

    fn register(&self, family: &str, kind: &str) {
        let own = |suffix: &str| (format!("{family}{suffix}"), format!("{family}{suffix}"));
        let (sums, gauges) = match kind {
            "counter" => (vec![(family.to_string(), format!("{family}_total"))], Vec::new()),
            "histogram" => (vec![own("_bucket"), own("_sum"), own("_count")], Vec::new()),
            "info" => (Vec::new(), vec![own("_info")]),
            _ => (Vec::new(), vec![own("")]),
        };
        for (instrument, sample_name) in sums {
            let s = self.snapshot.clone();
            self.meter
                .f64_observable_counter(instrument)
                .with_callback(move |o| s.observe(&sample_name, |v, a| o.observe(v, a)))
                .build();
        }
        for (instrument, sample_name) in gauges {
            let s = self.snapshot.clone();
            self.meter
                .f64_observable_gauge(instrument)
                .with_callback(move |o| s.observe(&sample_name, |v, a| o.observe(v, a)))
                .build();
        }
    }
}

// ---- traces ----------------------------------------------------------------------------------------------------

/// Starts the spans of sampled batches. Cheap to clone.
#[derive(Clone)]
pub struct Tracing {
    tracer: SdkTracer,
}

/// Where a transform's time went in one batch (collected by the worker for a sampled batch only).
#[derive(Debug, Clone)]
pub struct TransformTiming {
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub flows_in: u64,
    pub flows_out: u64,
}

/// A sampled batch's span, open until its records are queued.
pub struct BatchTrace {
    tracer: SdkTracer,
    cx: Context,
}

impl Tracing {
    /// The span of a batch of `flows`, if the sampler keeps it.
    pub fn batch(&self, flows: usize) -> Option<BatchTrace> {
        let span = self
            .tracer
            .span_builder("flowgate.batch")
            .with_kind(SpanKind::Internal)
            .with_attributes([KeyValue::new("flowgate.flows", flows as i64)])
            .start(&self.tracer);
        if !span.span_context().is_sampled() {
            return None;
        }
        Some(BatchTrace { tracer: self.tracer.clone(), cx: Context::current_with_span(span) })
    }
}

impl BatchTrace {
    /// The chain's span over `start..end`, a span per transform inside.
    pub fn chain(&self, start: SystemTime, end: SystemTime, transforms: &[TransformTiming]) {
        let chain = self
            .tracer
            .span_builder("flowgate.chain")
            .with_start_time(start)
            .start_with_context(&self.tracer, &self.cx);
        let cx = self.cx.with_span(chain);
        for t in transforms {
            self.tracer
                .span_builder("flowgate.transform")
                .with_start_time(t.start)
                .with_attributes([
                    KeyValue::new("flowgate.transform.name", t.name.clone()),
                    KeyValue::new("flowgate.flows.in", t.flows_in as i64),
                    KeyValue::new("flowgate.flows.out", t.flows_out as i64),
                ])
                .start_with_context(&self.tracer, &cx)
                .end_with_timestamp(t.end);
        }
        cx.span().end_with_timestamp(end);
    }

    /// The batch's `records` are handed to the batcher: the span stays open, carried with them, until the request
    /// that holds them is exported ([`exported`]); dropped before that (a persistent queue keeps bytes, not
    /// spans), it ends there.
    pub fn queued(self, records: usize) -> Context {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("flowgate.records", records as i64));
        span.add_event("queued", Vec::new());
        self.cx.with_value(BatchTracer(self.tracer))
    }
}

/// The tracer a queued batch's context carries, for its export span.
#[derive(Debug)]
struct BatchTracer(SdkTracer);

/// The request holding (the first of) a sampled batch's records was delivered, or given up on, by an export
/// that began at `start`: a `flowgate.export` span inside the batch's, then the batch's span ends.
pub fn exported(cx: Context, start: SystemTime, records: usize) {
    if let Some(BatchTracer(tracer)) = cx.get::<BatchTracer>() {
        tracer
            .span_builder("flowgate.export")
            .with_start_time(start)
            .with_attributes([KeyValue::new("flowgate.records", records as i64)])
            .start_with_context(tracer, &cx)
            .end();
    }
    let span = cx.span();
    span.add_event("exported", Vec::new());
    span.end();
}

enum Message {
    Span(Box<SpanData>),
    Flush(SyncSender<()>),
}

/// A bounded queue of finished spans drained by its own thread: `on_end` never waits, and a full queue drops the
/// span, counted.
struct QueueProcessor {
    tx: Mutex<Option<SyncSender<Message>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for QueueProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueProcessor")
    }
}

impl QueueProcessor {
    fn start(exporter: opentelemetry_otlp::SpanExporter, max_queue: usize, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(max_queue);
        let m = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("flowgate-telemetry".into())
            .spawn(move || export_spans(exporter, rx, &m))
            .expect("spawning the telemetry thread");
        QueueProcessor { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), metrics }
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let tx = self.tx.lock().expect("span queue lock").clone();
        match tx.map(|tx| tx.try_send(Message::Span(Box::new(span)))) {
            Some(Ok(())) => {}
            Some(Err(TrySendError::Full(_))) | Some(Err(TrySendError::Disconnected(_))) | None => {
                self.metrics.telemetry_spans_dropped.inc();
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let tx = self.tx.lock().expect("span queue lock").clone();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
            if tx.send(Message::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(10));
            }
        }
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.force_flush()?;
        drop(self.tx.lock().expect("span queue lock").take());
        if let Some(thread) = self.thread.lock().expect("thread lock").take() {
            let deadline = Instant::now() + timeout;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

fn export_spans(exporter: opentelemetry_otlp::SpanExporter, rx: Receiver<Message>, metrics: &Metrics) {
    let mut batch: Vec<SpanData> = Vec::new();
    let mut since = Instant::now();
    loop {
        let (flush, done) = match rx.recv_timeout(SPAN_DELAY.saturating_sub(since.elapsed())) {
            Ok(Message::Span(s)) => {
                if batch.is_empty() {
                    since = Instant::now();
                }
                batch.push(*s);
                (batch.len() >= SPAN_BATCH, None)
            }
            Ok(Message::Flush(done)) => (true, Some(done)),
            Err(RecvTimeoutError::Timeout) => (true, None),
            Err(RecvTimeoutError::Disconnected) => {
                if !batch.is_empty() {
                    send_spans(&exporter, std::mem::take(&mut batch), metrics);
                }
                return;
            }
        };
        if flush && !batch.is_empty() {
            send_spans(&exporter, std::mem::take(&mut batch), metrics);
        }
        if flush {
            since = Instant::now();
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

fn send_spans(exporter: &opentelemetry_otlp::SpanExporter, batch: Vec<SpanData>, metrics: &Metrics) {
    let n = batch.len() as u64;
    if let Err(e) = futures::executor::block_on(exporter.export(batch)) {
        metrics.telemetry_spans_failed.inc_by(n);
        tracing::warn!(spans = n, error = %e, "the gateway's own traces: export failed; spans dropped");
    }
}

// ---- the HTTP client -------------------------------------------------------------------------------------------

/// The SDK's exporters send through the gateway's tokio runtime with its rustls client (the SDK's own reqwest
/// would bring a second version and TLS stack). Its readers and the span thread are not tokio threads: each request is
/// spawned on the runtime and awaited from there.
#[derive(Debug, Clone)]
struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let task = self.runtime.spawn(async move {
            let response = client.request(parts.method, url).headers(parts.headers).body(body).send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = task.await??;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_back_with_their_labels() {
        let text = "# TYPE flowgate_x counter\nflowgate_x_total{a=\"1\",b=\"q\\\"uote\"} 3\nflowgate_y 2.5\n# EOF\n";
        let (families, samples) = parse(text);
        assert_eq!(families, vec![("flowgate_x".to_string(), "counter".to_string())]);
        assert_eq!(
            samples,
            vec![
                Sample {
                    name: "flowgate_x_total".into(),
                    labels: vec![("a".into(), "1".into()), ("b".into(), "q\"uote".into())],
                    value: 3.0
                },
                Sample { name: "flowgate_y".into(), labels: vec![], value: 2.5 },
            ]
        );
    }
}
