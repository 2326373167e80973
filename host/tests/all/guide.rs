//! `docs/writing-a-transform.md` as a script: every `sh` block runs, in order, in one shell, against the simulator
//! (real gRPC over mTLS), a running gateway with the tap enabled, and an OTLP receiver; the `sh build` blocks are
//! checked to be what `make transforms` runs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flowgate::receiver::accept_all;
use flowgate::sim::SimConfig;

use crate::capture::{config_yaml, tapped_gateway};
use crate::support;

const GUIDE: &str = include_str!("../../../docs/writing-a-transform.md");
const MAKEFILE: &str = include_str!("../../../Makefile");

/// (info string, body) of every fenced block.
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_string(), String::new())),
            (Some(_), Some("")) => out.push(current.take().unwrap()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "an unclosed block in the guide");
    out
}

#[test]
fn the_build_commands_of_the_guide_are_what_make_transforms_runs() {
    let recipe: Vec<&str> = MAKEFILE
        .split("\ntransforms:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with('\t'))
        .map(str::trim)
        .collect();
    let builds: Vec<String> = blocks(GUIDE).into_iter().filter(|(i, _)| i == "sh build").map(|(_, b)| b).collect();
    assert!(!builds.is_empty());
    for line in builds.iter().flat_map(|b| b.lines()) {
        let ok = match line.split_once(" -p ") {
            // The crates are every transforms/*/Cargo.toml: the one named must be one of them.
            Some((cargo, krate)) => {
                recipe.iter().any(|r| r.starts_with(cargo))
                    && std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../transforms"))
                        .unwrap()
                        .filter_map(|d| std::fs::read_to_string(d.unwrap().path().join("Cargo.toml")).ok())
                        .any(|toml| toml.contains(&format!("name = \"{krate}\"")))
            }
            None => recipe.contains(&line),
        };
        assert!(ok, "the guide's build command {line:?} is not in the Makefile's transforms recipe: {recipe:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shell_block_of_the_guide_runs() {
    let script: String = blocks(GUIDE).into_iter().filter(|(i, _)| i == "sh").map(|(_, b)| b).collect();
    assert!(script.contains("flowgate capture") && script.contains("flowgate tap"), "the guide lost its loop");

    let (sim, _pki) =
        support::simulator(SimConfig { flows_per_bucket: 40, time_scale: 15.0, ..SimConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let config = config_yaml(&sim, dir.path());
    let gw_dir = dir.path().join("gateway");
    std::fs::create_dir(&gw_dir).unwrap();
    let mut gw = tapped_gateway(&sim, &gw_dir, true, true).await;
    let otlp = support::receiver(accept_all()).await;

    let bin = support::flowgate_binary(dir.path()).parent().unwrap().to_path_buf();
    let transforms = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/transform");
    let env = [
        ("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display())),
        ("HOME", dir.path().display().to_string()),
        ("FLOWGATE_CONFIG", config.display().to_string()),
        ("ADMIN", gw.admin.to_string()),
        ("TRANSFORMS", transforms.display().to_string()),
        ("OTLP_ENDPOINT", format!("{}/v1/logs", otlp.base_url())),
        ("FLOWGATE_LOG_FORMAT", "text".to_string()),
    ];
    let run = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(&work)
            .env_clear()
            .envs(env)
            .output()
            .unwrap()
    });
    let out = support::within(Duration::from_secs(300), "the guide's commands", run).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the guide failed:\n{}\n--- stdout:\n{stdout}", String::from_utf8_lossy(&out.stderr));
    // What the commands printed is what the guide says they do.
    assert!(stdout.contains("ok: "), "test --expected did not pass:\n{stdout}");
    assert!(stdout.contains("replayed 300 flows"), "{stdout}");
    assert!(stdout.contains("record 1:"), "the changed chain showed no difference:\n{stdout}");
    assert_eq!(otlp.records(), 200, "replay --otlp");
    gw.shutdown().await.unwrap();
}
