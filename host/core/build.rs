//! Generates the Goldmane messages from `proto/` with protox (pure Rust: no `protoc` needed). The gRPC client
//! and server are generated in the `flowgate` crate, against these types.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> anyhow::Result<()> {
    // Read at run time: a compiled build script can be reused from another checkout of the same sources.
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let api = proto_root.join("goldmane/api.proto");
    println!("cargo:rerun-if-changed={}", api.display());

    let fds = protox::compile([&api], [&proto_root])?;
    // The descriptor set is kept for tests, which check the JSON renderer against an independent
    // protojson implementation (prost-reflect) driven by the same schema.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("goldmane.fds.bin"), fds.encode_to_vec())?;

    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
