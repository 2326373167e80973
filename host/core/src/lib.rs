//! Flowgate's engine-free core: what reads and writes flows, and the configuration, with no runtime behind it.
//!
//! - [`proto`]: the Goldmane messages, generated from `proto/goldmane/api.proto`;
//! - [`wire`]: a zero-copy reader of `FlowResult` bytes off the stream;
//! - [`capture`]: the capture file (flows as Goldmane sent them, for `flowgate replay` and `test`);
//! - [`render`]: the old exporter's JSON body, straight from the wire or from a decoded flow;
//! - [`protojson`]: that JSON read back into a flow (tests, tools);
//! - [`config`]: the YAML file and the old exporter's environment, resolved and checked;
//! - [`flowgen`]: deterministic, realistic flows for tests, the simulator and benchmarks.
//!
//! The `flowgate` crate re-exports every module; this split keeps sanitizer (fuzz) builds free of wasmtime.

pub mod capture;
pub mod config;
pub mod flowgen;
pub mod protojson;
pub mod render;
pub mod wire;

/// Messages generated from `proto/goldmane/api.proto` (the gRPC service lives in `flowgate::proto`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/goldmane.rs"));

    /// The encoded `FileDescriptorSet` of the Goldmane API (for reflection-based tools and tests).
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/goldmane.fds.bin"));
}
