//! Integration tests, compiled into one binary. Every peer is real and on loopback: the Goldmane simulator
//! serves gRPC over mTLS, the receiver decodes OTLP protobuf over HTTP.

mod capture;
mod cli;
mod config;
mod dashboards;
mod dead_letters;
mod e2e;
mod export;
mod faults;
mod flowstats;
mod goldmane;
mod guide;
mod mappings;
mod modules;
mod otelcol;
mod reload;
mod support;
mod telemetry;
mod tls;
mod wasm;

/// The gateway's allocator, so the gateways these tests run in-process allocate as the binary does.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
