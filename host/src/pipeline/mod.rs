//! The pipeline between source and batcher: flows in, OTLP log records out.
//!
//! With no transform chain (the default, and the old exporter's behaviour) each flow becomes one record whose
//! body is the old exporter's JSON, severity INFO and both timestamps the processing time.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tokio::sync::mpsc;

use crate::render;
use crate::sink::otlp::string_value;
use crate::telemetry::{DropReason, Metrics};
use crate::wire::RawFlow;

/// OTLP `SEVERITY_NUMBER_INFO`.
pub const SEVERITY_INFO: i32 = 9;

/// Runs until `input` closes; every chunk in gives one chunk out, so nothing is held back.
pub async fn run(mut input: mpsc::Receiver<Vec<RawFlow>>, output: mpsc::Sender<Vec<LogRecord>>, metrics: Arc<Metrics>) {
    while let Some(flows) = input.recv().await {
        let now = unix_nanos();
        let mut records = Vec::with_capacity(flows.len());
        for flow in &flows {
            match flow_record(&flow.wire, now) {
                Ok(record) => records.push(record),
                Err(e) => {
                    metrics.dropped(DropReason::Malformed, 1);
                    tracing::warn!(error = %e, "a flow from Goldmane could not be rendered; skipped");
                }
            }
        }
        if output.send(records).await.is_err() {
            return;
        }
    }
}

/// The old exporter's record for one encoded `goldmane.Flow`.
pub fn flow_record(wire: &[u8], now_unix_nanos: u64) -> Result<LogRecord, render::Malformed> {
    // Bodies run a little over twice the flow's wire size; one allocation in the common case.
    let mut body = String::with_capacity(wire.len() * 5 / 2 + 64);
    render::flow_json_from_wire(wire, &mut body)?;
    Ok(LogRecord {
        time_unix_nano: now_unix_nanos,
        observed_time_unix_nano: now_unix_nanos,
        severity_number: SEVERITY_INFO,
        severity_text: "INFO".to_string(),
        body: Some(string_value(body)),
        ..LogRecord::default()
    })
}

pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
