//! Flowgate: Calico Goldmane flows to OTLP/HTTP logs.
//!
//! # Layout
//!
//! The module tree follows the data path:
//!
//! ```text
//! Goldmane --mTLS gRPC--> source --> pipeline --> batch --> sink --> OTLP/HTTP endpoint
//!                         (resume,    (flow ->     (count/    (retry, split,
//!                          dedupe)     record)      bytes/     dead-letter)
//!                                                   delay)
//! ```
//!
//! Beside it: [`config`] (YAML + the old exporter's environment), [`tls`], [`telemetry`] (logs, metrics),
//! [`admin`] (metrics and probes), [`render`] (the old exporter's JSON body), [`sim`] (a Goldmane simulator
//! for tests and the demo), [`demo`], and [`app`], which wires the stages together.

pub use flowgate_core::{config, protojson, render, wire};

pub mod admin;
pub mod app;
pub mod backoff;
pub mod batch;
pub mod demo;
pub mod pipeline;
pub mod post;
pub mod receiver;
pub mod reload;
pub mod sim;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod wasm;

/// The Goldmane messages (from `flowgate-core`) and the gRPC client and server generated over them.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    pub use flowgate_core::proto::*;

    tonic::include_proto!("goldmane");
}
