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

pub mod admin;
pub mod app;
pub mod backoff;
pub mod batch;
pub mod config;
pub mod demo;
pub mod pipeline;
pub mod post;
pub mod protojson;
pub mod receiver;
pub mod reload;
pub mod render;
pub mod sim;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod wasm;
pub mod wire;

/// Types generated from `proto/goldmane/api.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("goldmane");

    /// The encoded `FileDescriptorSet` of the Goldmane API (for reflection-based tools and tests).
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/goldmane.fds.bin"));
}
