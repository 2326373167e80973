//! The pipeline between source and batcher: flows in, OTLP log records out.
//!
//! With no transform chain (the default, and the old exporter's behaviour) each flow becomes one record whose
//! body is the old exporter's JSON, severity INFO and both timestamps the processing time.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tokio::sync::mpsc;

use crate::proto::Flow;
use crate::render;
use crate::sink::otlp::string_value;

/// OTLP `SEVERITY_NUMBER_INFO`.
pub const SEVERITY_INFO: i32 = 9;

/// Runs until `input` closes; every chunk in gives one chunk out, so nothing is held back.
pub async fn run(mut input: mpsc::Receiver<Vec<Flow>>, output: mpsc::Sender<Vec<LogRecord>>) {
    while let Some(flows) = input.recv().await {
        let now = unix_nanos();
        let records = flows.iter().map(|f| flow_record(f, now)).collect();
        if output.send(records).await.is_err() {
            return;
        }
    }
}

/// The old exporter's record for one flow.
pub fn flow_record(flow: &Flow, now_unix_nanos: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: now_unix_nanos,
        observed_time_unix_nano: now_unix_nanos,
        severity_number: SEVERITY_INFO,
        severity_text: "INFO".to_string(),
        body: Some(string_value(render::flow_json_string(flow))),
        ..LogRecord::default()
    }
}

pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
