//! Generates the Goldmane gRPC client and server from `proto/` with protox (pure Rust: no `protoc` needed), over
//! the messages of `flowgate-core`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    // Read at run time: a compiled build script can be reused from another checkout of the same sources.
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let api = proto_root.join("goldmane/api.proto");
    println!("cargo:rerun-if-changed={}", api.display());

    let fds = protox::compile([&api], [&proto_root])?;

    // `flowgate --version` names the revision: FLOWGATE_GIT_REV (set by image builds), else git, else "unknown".
    println!("cargo:rerun-if-env-changed=FLOWGATE_GIT_REV");
    for git_file in ["../.git/HEAD", "../.git/refs/heads"] {
        if std::path::Path::new(git_file).exists() {
            println!("cargo:rerun-if-changed={git_file}");
        }
    }
    let rev = std::env::var("FLOWGATE_GIT_REV").ok().filter(|r| !r.is_empty()).or_else(git_rev);
    println!("cargo:rustc-env=FLOWGATE_GIT_REV={}", rev.as_deref().unwrap_or("unknown"));

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".goldmane", "::flowgate_core::proto")
        .compile_fds(fds)?;
    Ok(())
}

fn git_rev() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
