//! The real binary's commands as a shell pipeline uses them: a reader that stops early (`flowgate demo | head`)
//! ends the command quietly, without a panic.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Waits for `child` (killing it after `timeout`); returns its exit status and stderr.
fn finish(mut child: std::process::Child, timeout: Duration) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            panic!("still running {timeout:?} after its stdout closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

fn flowgate(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn demo_piped_into_a_reader_that_stops_after_one_line_exits_quietly() {
    // Runs until Ctrl-C: only the closed pipe can end it.
    let mut child = flowgate(&["demo", "--duration-secs", "0", "--flows-per-bucket", "5", "--time-scale", "30"]);
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap(); // `head -1`, then the pipe closes
    assert_eq!(first, "flowgate demo\n");
    let (status, stderr) = finish(child, Duration::from_secs(30));
    assert!(!stderr.contains("panicked"), "a panic on the broken pipe:\n{stderr}");
    assert!(!stderr.contains("Broken pipe"), "the broken pipe is not an error to report:\n{stderr}");
    assert_eq!(status.code(), Some(0), "{status:?}\n{stderr}");
}

#[test]
fn check_and_test_with_stdout_already_closed_exit_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowgate.yaml");
    std::fs::write(
        &config,
        "goldmane:\n  host: goldmane:7443\n  ca_cert_path: /ca.crt\n  client_cert_path: /tls.crt\n  client_key_path: /tls.key\n",
    )
    .unwrap();
    let input = dir.path().join("flows.jsonl");
    let bodies: Vec<String> = flowgate::sim::FlowGen { seed: 2, keys: 2_000 }
        .bucket(1_800_000_000)
        .iter()
        .map(flowgate::render::flow_json_string)
        .collect();
    std::fs::write(&input, bodies.join("\n")).unwrap();
    for args in [
        vec!["check", "--config-only", "--config", config.to_str().unwrap()],
        vec!["test", "--input", input.to_str().unwrap()],
    ] {
        let mut child = flowgate(&args);
        drop(child.stdout.take()); // the reader is gone before the first write
        let (status, stderr) = finish(child, Duration::from_secs(30));
        assert!(!stderr.contains("panicked"), "{args:?}: a panic on the broken pipe:\n{stderr}");
        assert_eq!(status.code(), Some(0), "{args:?}: {status:?}\n{stderr}");
    }
}

/// The allocator settings `flowgate run` logs as it starts (one line a process image that got that far), with
/// `env` added to an otherwise empty environment; and its stderr.
fn allocator_settings(env: &[(&str, &str)]) -> (Vec<serde_json::Value>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["run", "--config", "/nonexistent/flowgate.yaml"])
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "a missing config file is still an error");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let settings = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("allocator settings")))
        .collect();
    (settings, stderr)
}

#[test]
fn run_starts_the_allocator_with_the_gateway_settings_unless_told_otherwise() {
    // jemalloc's own defaults are no background thread and 10 s before freed pages go back: the settings below
    // can only come from the process executing itself with them.
    let (settings, stderr) = allocator_settings(&[]);
    assert_eq!(settings.len(), 1, "one image got as far as logging, the one executed with the settings:\n{stderr}");
    let s = &settings[0];
    assert_eq!(
        (&s["background_thread"], &s["narenas"], &s["dirty_decay_ms"], &s["muzzy_decay_ms"]),
        (&serde_json::json!(true), &serde_json::json!(1), &serde_json::json!(300), &serde_json::json!(0)),
        "{stderr}"
    );
    assert!(stderr.contains("cannot read the config file"), "{stderr}");

    let (settings, stderr) = allocator_settings(&[("_RJEM_MALLOC_CONF", "dirty_decay_ms:7")]);
    assert_eq!(settings.len(), 1, "{stderr}");
    assert_eq!(settings[0]["dirty_decay_ms"], 7, "a value set by the user is kept:\n{stderr}");
    assert_eq!(settings[0]["background_thread"], false, "and nothing else is added to it:\n{stderr}");
}
