//! Flowgate: Calico Goldmane flows to OTLP/HTTP logs.
//!
//! # Layout
//!
//! The module tree follows the data path; each stage depends only on earlier stages and on leaves, never on a
//! later one (`tests/all/modules.rs` checks there is no import circle):
//!
//! ```text
//! Goldmane --mTLS gRPC--> source --------> pipeline --------------> batch --------> sink --> OTLP/HTTP endpoint
//!   Stream + List         resume, dedupe,  flow -> record;          count/bytes/    retry, split, dead-letter;
//!                         reconcile late   wasm chain (reload);     delay; memory   the flow metrics' OTLP
//!                         flows (ledger),  post: flow metrics,      or disk queue,  push (metrics_push)
//!                         cursor           aggregation              acks -> cursor
//! ```
//!
//! Leaves below the stages: [`otlp`] (the OTLP form: records, values, requests, compression), [`telemetry`]
//! (logs, metrics, error chains, and their OTLP export with the OpenTelemetry SDK), [`dead_letter`] (what the
//! stages offer dead letters to; `sink::dead_letter` sends them), [`config`], [`render`] and [`wire`] (from `flowgate-core`), [`tls`],
//! [`backoff`]. Beside them: [`wasm`] (the wasmtime host) and [`reload`] (hot reload of the chain), [`admin`]
//! (metrics, probes, and the live tap the pipeline offers: [`pipeline::tap`]), [`sim`] (a Goldmane simulator for tests and the demo), [`receiver`] (an OTLP test peer),
//! [`demo`], [`tools`] (`flowgate test`, `check`), [`capture_cli`] and [`replay`] (`flowgate capture`, `tap`,
//! `replay`, over the [`capture`] file format), and [`app`], which wires the stages together.

pub use flowgate_core::{capture, config, flowgen, protojson, render, wire};

pub mod admin;
pub mod app;
pub mod backoff;
pub mod batch;
pub mod capture_cli;
pub mod dead_letter;
pub mod demo;
pub mod otlp;
pub mod pipeline;
pub mod receiver;
pub mod reload;
pub mod replay;
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
