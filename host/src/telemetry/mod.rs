//! The gateway's own telemetry: JSON logs through `tracing`, and Prometheus metrics.

pub mod allocator;
pub mod flow;
mod metrics;
pub mod otel;

pub use metrics::{DropReason, Metrics, StreamOutcome, TransformError, TransformEvent};

use tracing_subscriber::EnvFilter;

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line (the default: what log stacks parse).
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global subscriber, writing to stderr. `RUST_LOG` overrides the default filter (`info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
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
