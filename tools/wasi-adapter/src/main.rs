//! `flowgate-wasi-adapter OUT`: writes the wasi_snapshot_preview1 reactor adapter that turns a C (wasi-libc)
//! core module into a WASI preview 2 component, matching the wasmtime version the host embeds.

fn main() -> std::io::Result<()> {
    let out = std::env::args_os().nth(1).ok_or_else(|| std::io::Error::other("usage: flowgate-wasi-adapter OUT"))?;
    std::fs::write(out, wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
}
