//! Configuration: the old exporter's environment, OTLP spec precedence, YAML strictness, all problems at once.

use std::path::Path;
use std::time::Duration;

use flowgate::config::env::*;
use flowgate::config::{self, Compression, Env, RawConfig, resolve_with_env};

fn required() -> Vec<(&'static str, &'static str)> {
    vec![
        (ENV_GOLDMANE_HOST, "goldmane:7443"),
        (ENV_CA_CERT_PATH, "/etc/goldmane/ca-cert/tigera-ca-bundle.crt"),
        (ENV_PRIVATE_KEY_PATH, "/etc/goldmane/certs/tls.key"),
        (ENV_PUBLIC_CERT_PATH, "/etc/goldmane/certs/tls.crt"),
    ]
}

fn env(extra: &[(&'static str, &'static str)]) -> Env {
    let mut pairs = required();
    pairs.extend_from_slice(extra);
    Env::from_pairs(pairs)
}

#[test]
fn the_old_exporters_chart_environment_resolves_to_its_defaults() {
    let cfg = resolve_with_env(RawConfig::default(), &env(&[])).unwrap();
    assert_eq!(cfg.goldmane.host, "goldmane");
    assert_eq!(cfg.goldmane.port, 7443);
    assert_eq!(cfg.goldmane.server_name, "goldmane", "TLS server name is the host part of {ENV_GOLDMANE_HOST}");
    assert_eq!(cfg.goldmane.reconnect_initial, Duration::from_millis(5_000));
    assert_eq!(cfg.goldmane.start_time_gte, 0);
    assert_eq!(cfg.goldmane.keepalive_interval, None);
    assert_eq!(cfg.otlp.endpoint.as_str(), "http://localhost:4318/v1/logs");
    assert_eq!(cfg.otlp.compression, Compression::None);
    assert_eq!(cfg.otlp.timeout, Duration::from_secs(10));
    assert_eq!(cfg.batch.max_records, 512);
    assert_eq!(cfg.batch.delay, Duration::from_millis(1_000));
    assert!(cfg.queue.max_records >= 100_000, "a whole Goldmane burst fits by default");
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn missing_required_variables_are_named_in_one_message() {
    let err =
        resolve_with_env(RawConfig::default(), &Env::from_pairs([(ENV_GOLDMANE_HOST, "goldmane:7443")])).unwrap_err();
    let text = err.to_string();
    for name in [ENV_CA_CERT_PATH, ENV_PRIVATE_KEY_PATH, ENV_PUBLIC_CERT_PATH] {
        assert!(text.contains(name), "{name} not named in: {text}");
    }
    assert!(!text.contains(&format!("{ENV_GOLDMANE_HOST} (")), "{ENV_GOLDMANE_HOST} was set: {text}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = resolve_with_env(
        RawConfig::default(),
        &env(&[
            (ENV_GOLDMANE_HOST, "goldmane"),
            (ENV_OTEL_EXPORTER_OTLP_COMPRESSION, "brotli"),
            (ENV_OTEL_EXPORTER_OTLP_TIMEOUT, "ten"),
            (ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, "0"),
            (ENV_OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
        ]),
    )
    .unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    for f in [
        ENV_GOLDMANE_HOST,
        ENV_OTEL_EXPORTER_OTLP_COMPRESSION,
        ENV_OTEL_EXPORTER_OTLP_TIMEOUT,
        ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE,
        ENV_OTEL_EXPORTER_OTLP_PROTOCOL,
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
}

#[test]
fn unparsable_reconnect_wait_falls_back_to_the_default_with_a_warning() {
    let cfg =
        resolve_with_env(RawConfig::default(), &env(&[(ENV_RECONNECT_WAIT_TIME_IN_MILLISECONDS, "soon")])).unwrap();
    assert_eq!(cfg.goldmane.reconnect_initial, Duration::from_millis(5_000));
    assert!(cfg.warnings.iter().any(|w| w.contains(ENV_RECONNECT_WAIT_TIME_IN_MILLISECONDS)));
    let cfg =
        resolve_with_env(RawConfig::default(), &env(&[(ENV_RECONNECT_WAIT_TIME_IN_MILLISECONDS, "250")])).unwrap();
    assert_eq!(cfg.goldmane.reconnect_initial, Duration::from_millis(250));
}

#[test]
fn otlp_precedence_follows_the_spec() {
    // Generic endpoint: /v1/logs appended (with or without a trailing slash).
    let cfg = resolve_with_env(
        RawConfig::default(),
        &env(&[(ENV_OTEL_EXPORTER_OTLP_ENDPOINT, "https://otel.example:4318/")]),
    )
    .unwrap();
    assert_eq!(cfg.otlp.endpoint.as_str(), "https://otel.example:4318/v1/logs");
    // Signal-specific: used as is, and wins.
    let cfg = resolve_with_env(
        RawConfig::default(),
        &env(&[
            (ENV_OTEL_EXPORTER_OTLP_ENDPOINT, "http://generic:4318"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, "http://specific:9999/custom/path"),
            (ENV_OTEL_EXPORTER_OTLP_HEADERS, "x-generic=1"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_HEADERS, "authorization=Bearer%20abc,x-tenant=t1"),
            (ENV_OTEL_EXPORTER_OTLP_COMPRESSION, "gzip"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, "zstd"),
            (ENV_OTEL_EXPORTER_OTLP_TIMEOUT, "1000"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_TIMEOUT, "2500"),
            (ENV_OTEL_EXPORTER_OTLP_CERTIFICATE, "/generic/ca.crt"),
            (ENV_OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE, "/logs/ca.crt"),
            (ENV_OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, "/c.crt"),
            (ENV_OTEL_EXPORTER_OTLP_CLIENT_KEY, "/c.key"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.otlp.endpoint.as_str(), "http://specific:9999/custom/path");
    assert_eq!(
        cfg.otlp.headers,
        vec![("authorization".to_string(), "Bearer abc".to_string()), ("x-tenant".to_string(), "t1".to_string())]
    );
    assert_eq!(cfg.otlp.compression, Compression::Zstd);
    assert_eq!(cfg.otlp.timeout, Duration::from_millis(2_500));
    assert_eq!(cfg.otlp.tls.ca_cert.as_deref(), Some(Path::new("/logs/ca.crt")));
    assert_eq!(cfg.otlp.tls.client_cert.as_deref(), Some(Path::new("/c.crt")));
    assert_eq!(cfg.otlp.tls.client_key.as_deref(), Some(Path::new("/c.key")));
}

#[test]
fn batch_processor_variables_map_onto_batch_and_queue() {
    let cfg = resolve_with_env(
        RawConfig::default(),
        &env(&[
            (ENV_OTEL_BLRP_MAX_QUEUE_SIZE, "2048"),
            (ENV_OTEL_BLRP_SCHEDULE_DELAY, "250"),
            (ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, "128"),
            (ENV_OTEL_BLRP_EXPORT_TIMEOUT, "30000"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.queue.max_records, 2048);
    assert_eq!(cfg.batch.delay, Duration::from_millis(250));
    assert_eq!(cfg.batch.max_records, 128);
    assert!(cfg.warnings.iter().any(|w| w.contains("Goldmane burst")), "a small queue is warned about");
    assert!(cfg.warnings.iter().any(|w| w.contains(ENV_OTEL_BLRP_EXPORT_TIMEOUT)));
}

#[test]
fn resource_attributes_are_percent_decoded_and_service_name_can_be_overridden() {
    let cfg = resolve_with_env(
        RawConfig::default(),
        &env(&[
            (ENV_OTEL_RESOURCE_ATTRIBUTES, "k8s.cluster.name=prod%2Deu,team=net"),
            (ENV_OTEL_SERVICE_NAME, "flows"),
        ]),
    )
    .unwrap();
    let attrs = &cfg.otlp.resource_attributes;
    assert!(attrs.contains(&("k8s.cluster.name".into(), "prod-eu".into())));
    assert!(attrs.contains(&("service.name".into(), "flows".into())));
}

#[test]
fn yaml_is_strict_and_environment_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flowgate.yaml");
    std::fs::write(
        &path,
        "goldmane:\n  host: from-file:7443\n  keepalive_interval_ms: 300000\n  filter:\n    dest_namespaces: [{value: payments}]\n    actions: [Deny]\notlp:\n  compression: gzip\n  max_in_flight: 8\n",
    )
    .unwrap();
    let cfg = config::load(Some(&path), &env(&[(ENV_GOLDMANE_HOST, "from-env:7443")])).unwrap();
    assert_eq!(cfg.goldmane.host, "from-env");
    assert_eq!(cfg.goldmane.keepalive_interval, Some(Duration::from_secs(300)));
    assert_eq!(cfg.otlp.compression, Compression::Gzip);
    assert_eq!(cfg.otlp.max_in_flight, 8);
    assert_eq!(cfg.goldmane.filter.unwrap().actions, vec!["Deny".to_string()]);

    std::fs::write(&path, "otlp:\n  compresion: gzip\n").unwrap();
    let err = config::load(Some(&path), &env(&[])).unwrap_err().to_string();
    assert!(err.contains("compresion") && err.contains("flowgate.yaml"), "{err}");

    std::fs::write(&path, "goldmane:\n  keepalive_interval_ms: 1000\n  filter:\n    actions: [Block]\n").unwrap();
    let err = config::load(Some(&path), &env(&[])).unwrap_err();
    let fields: Vec<_> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert!(
        fields.contains(&"goldmane.keepalive_interval_ms") && fields.contains(&"goldmane.filter.actions"),
        "{fields:?}"
    );

    let err = config::load(Some(&dir.path().join("absent.yaml")), &env(&[])).unwrap_err().to_string();
    assert!(err.contains("absent.yaml") && err.contains("cannot read"), "{err}");
}

#[test]
fn flow_metrics_otlp_push_follows_the_logs_endpoint_or_the_metrics_variables() {
    let on = |extra: &[(&'static str, &'static str)], yaml: &str| {
        let mut raw = RawConfig::from_yaml(yaml, Path::new("t.yaml")).unwrap();
        raw.flow_metrics.enabled = Some(true);
        raw.flow_metrics.otlp.enabled = Some(true);
        resolve_with_env(raw, &env(extra))
    };
    // Derived from the logs URL, path prefix kept; the SDK's default period.
    let cfg = on(&[(ENV_OTEL_EXPORTER_OTLP_ENDPOINT, "https://collector:4318/otlp/")], "").unwrap();
    let push = cfg.flow_metrics.unwrap().otlp.unwrap();
    assert_eq!(push.endpoint.as_str(), "https://collector:4318/otlp/v1/metrics");
    assert_eq!(push.interval, Duration::from_secs(60));
    // The metrics variables win, as the OTLP exporter spec has them.
    let cfg = on(
        &[
            (ENV_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, "http://metrics:9000/in"),
            (ENV_OTEL_METRIC_EXPORT_INTERVAL, "15000"),
        ],
        "",
    )
    .unwrap();
    let push = cfg.flow_metrics.unwrap().otlp.unwrap();
    assert_eq!(push.endpoint.as_str(), "http://metrics:9000/in");
    assert_eq!(push.interval, Duration::from_secs(15));
    // A custom logs URL gives no metrics URL to derive: say so, naming the field.
    let err = on(&[(ENV_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, "http://c:4318/ingest")], "").unwrap_err().to_string();
    assert!(err.contains("flow_metrics.otlp.endpoint") && err.contains("/v1/logs"), "{err}");
    let err = on(&[], "flow_metrics:\n  otlp:\n    interval_ms: 5\n").unwrap_err().to_string();
    assert!(err.contains("flow_metrics.otlp.interval_ms"), "{err}");
    // Pushing needs counting.
    let mut raw = RawConfig::default();
    raw.flow_metrics.otlp.enabled = Some(true);
    let err = resolve_with_env(raw, &env(&[])).unwrap_err().to_string();
    assert!(err.contains("needs flow_metrics.enabled"), "{err}");
    // Off unless asked for, even with the metrics variables set.
    let mut raw = RawConfig::default();
    raw.flow_metrics.enabled = Some(true);
    let cfg = resolve_with_env(raw, &env(&[(ENV_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, "http://m:1/x")])).unwrap();
    assert_eq!(cfg.flow_metrics.unwrap().otlp, None);
}

#[test]
fn reconciliation_is_on_by_default_and_its_settings_are_checked() {
    let cfg = resolve_with_env(RawConfig::default(), &env(&[])).unwrap();
    let r = cfg.goldmane.reconcile.expect("on by default");
    assert_eq!(r.window, Duration::from_secs(330));
    assert_eq!(r.passes, [10, 60, 300].map(Duration::from_secs));
    assert_eq!(r.growth, config::Growth::Delta);
    assert_eq!(cfg.state_dir, None);

    let cfg = resolve_with_env(
        RawConfig::default(),
        &env(&[(ENV_FLOWGATE_RECONCILE, "false"), (ENV_FLOWGATE_STATE_DIR, "/s")]),
    )
    .unwrap();
    assert!(cfg.goldmane.reconcile.is_none());
    assert_eq!(cfg.state_dir.as_deref(), Some(Path::new("/s")));

    let yaml = "goldmane:\n  reconcile:\n    window_secs: 120\n    passes_secs: [60, 30, 200]\n    growth: sum\n";
    let err = serde_norway::from_str::<RawConfig>(yaml).unwrap_err().to_string();
    assert!(err.contains("growth") || err.contains("unknown variant"), "{err}");
    let yaml = "goldmane:\n  reconcile:\n    window_secs: 120\n    passes_secs: [60, 30, 200]\n    page_size: 0\n";
    let raw: RawConfig = serde_norway::from_str(yaml).unwrap();
    let text = resolve_with_env(raw, &env(&[(ENV_FLOWGATE_RECONCILE, "maybe")])).unwrap_err().to_string();
    for problem in [
        &format!("{ENV_FLOWGATE_RECONCILE}: \"maybe\" is not true or false"),
        "goldmane.reconcile.passes_secs: a pass 200 s after a bucket was streamed falls outside the 120 s window",
        "goldmane.reconcile.passes_secs: must be increasing",
        "goldmane.reconcile.page_size: must be at least 1",
    ] {
        assert!(text.contains(problem), "{problem:?} not in: {text}");
    }
}

#[test]
fn the_admin_listener_is_loopback_by_default_and_moved_by_flowgate_admin_listen() {
    let cfg = resolve_with_env(RawConfig::default(), &env(&[])).unwrap();
    assert_eq!(cfg.admin_listen.to_string(), "127.0.0.1:9090", "no unauthenticated port on every address by default");

    let cfg = resolve_with_env(RawConfig::default(), &env(&[(ENV_FLOWGATE_ADMIN_LISTEN, "0.0.0.0:9191")])).unwrap();
    assert_eq!(cfg.admin_listen.to_string(), "0.0.0.0:9191");
    let cfg = resolve_with_env(RawConfig::default(), &env(&[(ENV_FLOWGATE_ADMIN_LISTEN, "[::]:9090")])).unwrap();
    assert_eq!(cfg.admin_listen.to_string(), "[::]:9090");

    // The environment wins over the file, as every other variable does.
    let mut raw = RawConfig::default();
    raw.admin.listen = Some("127.0.0.1:7000".into());
    let cfg = resolve_with_env(raw.clone(), &env(&[])).unwrap();
    assert_eq!(cfg.admin_listen.to_string(), "127.0.0.1:7000");
    let cfg = resolve_with_env(raw, &env(&[(ENV_FLOWGATE_ADMIN_LISTEN, "0.0.0.0:9090")])).unwrap();
    assert_eq!(cfg.admin_listen.to_string(), "0.0.0.0:9090");
}

#[test]
fn a_malformed_flowgate_admin_listen_is_an_error_naming_the_variable() {
    for bad in ["9090", "0.0.0.0", "localhost:9090", "0.0.0.0:http"] {
        let err = resolve_with_env(RawConfig::default(), &env(&[(ENV_FLOWGATE_ADMIN_LISTEN, bad)])).unwrap_err();
        let problem = err.problems.iter().find(|p| p.field == ENV_FLOWGATE_ADMIN_LISTEN);
        let problem = problem.unwrap_or_else(|| panic!("{bad:?}: {ENV_FLOWGATE_ADMIN_LISTEN} not named in {err}"));
        assert!(problem.message.contains(&format!("{bad:?} is not addr:port")), "{bad:?}: {}", problem.message);
        assert!(!err.to_string().contains("admin.listen"), "the file was not at fault: {err}");
    }
}

/// The same bad value, once from the file and once from the environment: each problem names where it came from.
#[test]
fn otlp_compression_is_named_by_its_yaml_path_or_by_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flowgate.yaml");
    std::fs::write(&path, "otlp:\n  compression: brotli\n").unwrap();
    let err = config::load(Some(&path), &env(&[])).unwrap_err();
    assert!(err.to_string().contains("otlp.compression: \"brotli\" is not none, gzip or zstd"), "{err}");
    assert!(!err.to_string().contains(ENV_OTEL_EXPORTER_OTLP_COMPRESSION), "the environment was not at fault: {err}");

    std::fs::write(&path, "otlp:\n  compression: gzip\n").unwrap();
    for var in [ENV_OTEL_EXPORTER_OTLP_COMPRESSION, ENV_OTEL_EXPORTER_OTLP_LOGS_COMPRESSION] {
        let err = config::load(Some(&path), &env(&[(var, "brotli")])).unwrap_err();
        assert!(err.to_string().contains(&format!("{var}: \"brotli\" is not none, gzip or zstd")), "{err}");
        assert!(!err.to_string().contains("otlp.compression"), "the file was not at fault: {err}");
    }

    // A good variable over a bad file value: the variable wins, nothing to report.
    std::fs::write(&path, "otlp:\n  compression: brotli\n").unwrap();
    let cfg = config::load(Some(&path), &env(&[(ENV_OTEL_EXPORTER_OTLP_COMPRESSION, "zstd")])).unwrap();
    assert_eq!(cfg.otlp.compression, Compression::Zstd);
}

/// Every setting a variable maps onto and resolving can refuse: set badly in the file, the problem names the YAML
/// path; set badly by the variable, it names the variable.
#[test]
fn a_problem_names_the_variable_or_the_yaml_path_that_set_the_value() {
    // The required Goldmane settings, from the file, so that a case can set the host either way.
    let resolve = |yaml: &str, vars: &[(&'static str, &'static str)]| {
        let mut raw = RawConfig::from_yaml(yaml, Path::new("flowgate.yaml")).unwrap();
        let g = &mut raw.goldmane;
        g.host.get_or_insert_with(|| "goldmane:7443".into());
        g.ca_cert_path.get_or_insert_with(|| "/ca.crt".into());
        g.client_cert_path.get_or_insert_with(|| "/tls.crt".into());
        g.client_key_path.get_or_insert_with(|| "/tls.key".into());
        resolve_with_env(raw, &Env::from_pairs(vars.iter().copied())).unwrap_err()
    };
    let pushing = "flow_metrics:\n  enabled: true\n  otlp:\n    enabled: true\n";
    // (YAML path, the file setting it, variable, its value, the file the variable's case starts from, message)
    let cases = [
        ("goldmane.host", "goldmane:\n  host: goldmane\n", ENV_GOLDMANE_HOST, "goldmane", "", "is not host:port"),
        (
            "goldmane.host",
            "goldmane:\n  host: \"gold mane:7443\"\n",
            ENV_GOLDMANE_HOST,
            "gold mane:7443",
            "",
            "is not a valid TLS server name",
        ),
        (
            "otlp.endpoint",
            "otlp:\n  endpoint: ftp://c/v1/logs\n",
            ENV_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
            "ftp://c/v1/logs",
            "",
            "is not http or https",
        ),
        (
            "otlp.endpoint",
            "otlp:\n  endpoint: ftp://c/v1/logs\n",
            ENV_OTEL_EXPORTER_OTLP_ENDPOINT,
            "ftp://c",
            "",
            "is not http or https",
        ),
        (
            "otlp.compression",
            "otlp:\n  compression: brotli\n",
            ENV_OTEL_EXPORTER_OTLP_LOGS_COMPRESSION,
            "brotli",
            "",
            "is not none, gzip or zstd",
        ),
        (
            "otlp.client_cert_path",
            "otlp:\n  client_cert_path: /c.crt\n",
            ENV_OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
            "/c.crt",
            "",
            "go together",
        ),
        (
            "otlp.client_key_path",
            "otlp:\n  client_key_path: /c.key\n",
            ENV_OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY,
            "/c.key",
            "",
            "go together",
        ),
        (
            "otlp.headers",
            "otlp:\n  headers:\n    \"x tenant\": t1\n",
            ENV_OTEL_EXPORTER_OTLP_HEADERS,
            "x tenant=t1",
            "",
            "is not a valid header name",
        ),
        (
            "batch.max_records",
            "batch:\n  max_records: 0\n",
            ENV_OTEL_BLRP_MAX_EXPORT_BATCH_SIZE,
            "0",
            "",
            "must be at least 1",
        ),
        (
            "queue.max_records",
            "queue:\n  max_records: 10\n",
            ENV_OTEL_BLRP_MAX_QUEUE_SIZE,
            "10",
            "",
            "must hold at least one batch (512 records)",
        ),
        ("admin.listen", "admin:\n  listen: \"9090\"\n", ENV_FLOWGATE_ADMIN_LISTEN, "9090", "", "is not addr:port"),
        (
            "flow_metrics.otlp.endpoint",
            "flow_metrics:\n  enabled: true\n  otlp:\n    enabled: true\n    endpoint: ftp://m/v1/metrics\n",
            ENV_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
            "ftp://m/v1/metrics",
            pushing,
            "is not http or https",
        ),
        (
            "flow_metrics.otlp.interval_ms",
            "flow_metrics:\n  enabled: true\n  otlp:\n    enabled: true\n    interval_ms: 5\n",
            ENV_OTEL_METRIC_EXPORT_INTERVAL,
            "5",
            pushing,
            "must be at least 100",
        ),
    ];
    for (path, yaml, var, value, base, message) in cases {
        let named = |err: &config::ConfigError, label: &str| {
            err.problems.iter().any(|p| p.field == label && p.message.contains(message))
        };
        let err = resolve(yaml, &[]);
        assert!(named(&err, path), "{path} from the file: {message:?} not named {path}: {err}");
        assert!(!err.to_string().contains(var), "{path} from the file: {var} named: {err}");
        let err = resolve(base, &[(var, value)]);
        assert!(named(&err, var), "{path} from {var}: {message:?} not named {var}: {err}");
        assert!(err.problems.iter().all(|p| p.field != path), "{path} from {var}: the path named: {err}");
    }
    // Without the environment, a file's TLS server name is its own setting's problem.
    let err = resolve("goldmane:\n  server_name: \"gold mane\"\n", &[]);
    assert!(err.problems.iter().any(|p| p.field == "goldmane.server_name"), "{err}");
}

#[test]
fn a_small_queue_is_warned_about_under_the_name_that_set_it() {
    let cfg = resolve_with_env(RawConfig::default(), &env(&[(ENV_OTEL_BLRP_MAX_QUEUE_SIZE, "2048")])).unwrap();
    let warning = format!("{ENV_OTEL_BLRP_MAX_QUEUE_SIZE} is 2048: a Goldmane burst");
    assert!(cfg.warnings.iter().any(|w| w.starts_with(&warning)), "{:?}", cfg.warnings);
    let raw = RawConfig::from_yaml("queue:\n  max_records: 2048\n", Path::new("flowgate.yaml")).unwrap();
    let cfg = resolve_with_env(raw, &env(&[])).unwrap();
    assert!(
        cfg.warnings.iter().any(|w| w.starts_with("queue.max_records is 2048: a Goldmane burst")),
        "{:?}",
        cfg.warnings
    );
}

/// The settings a deployment commonly changes each have a variable, which wins over the file.
#[test]
fn flowgate_variables_set_the_commonly_changed_settings_over_the_file() {
    let yaml =
        "transforms:\n  workers: 8\n  provenance: true\n  rollback:\n    window_ms: 9000\nshutdown_grace_ms: 7000\n";
    let raw = RawConfig::from_yaml(yaml, Path::new("flowgate.yaml")).unwrap();
    let cfg = resolve_with_env(raw.clone(), &env(&[])).unwrap();
    assert_eq!((cfg.transforms.workers, cfg.transforms.provenance), (8, true));
    assert_eq!(cfg.shutdown_grace, Duration::from_millis(7_000));
    assert_eq!(cfg.transforms.rollback.unwrap().window, Duration::from_millis(9_000));
    assert!(cfg.flow_metrics.is_none() && cfg.aggregation.is_none());

    let cfg = resolve_with_env(
        raw.clone(),
        &env(&[
            (ENV_FLOWGATE_TRANSFORM_WORKERS, "3"),
            (ENV_FLOWGATE_PROVENANCE, "false"),
            (ENV_FLOWGATE_DEAD_LETTER_PATH, "/var/lib/flowgate/dead.jsonl"),
            (ENV_FLOWGATE_EXPORT_DEAD_LETTER_PATH, "/var/lib/flowgate/rejected.jsonl"),
            (ENV_FLOWGATE_MAX_IN_FLIGHT, "2"),
            (ENV_FLOWGATE_BATCH_MAX_BYTES, "65536"),
            (ENV_FLOWGATE_QUEUE_MAX_BYTES, "134217728"),
            (ENV_FLOWGATE_SHUTDOWN_GRACE_MS, "12000"),
            (ENV_FLOWGATE_FLOW_METRICS, "on"),
            (ENV_FLOWGATE_AGGREGATION, "1"),
            (ENV_FLOWGATE_AGGREGATION_LEVEL, "namespaces"),
            (ENV_FLOWGATE_ROLLBACK_WINDOW_MS, "30000"),
            (ENV_FLOWGATE_ROLLBACK_MAX_FAILURE_RATIO, "0.25"),
        ]),
    )
    .unwrap();
    let t = &cfg.transforms;
    assert_eq!((t.workers, t.provenance), (3, false));
    assert_eq!(t.dead_letter_path.as_deref(), Some(Path::new("/var/lib/flowgate/dead.jsonl")));
    assert_eq!(cfg.otlp.dead_letter_path.as_deref(), Some(Path::new("/var/lib/flowgate/rejected.jsonl")));
    assert_eq!(cfg.otlp.max_in_flight, 2);
    assert_eq!((cfg.batch.max_bytes, cfg.queue.max_bytes), (65_536, 134_217_728));
    assert_eq!(cfg.shutdown_grace, Duration::from_millis(12_000));
    assert!(cfg.flow_metrics.is_some());
    assert_eq!(cfg.aggregation.unwrap().level, config::AggregationLevel::Namespaces);
    let r = t.rollback.unwrap();
    assert_eq!((r.window, r.max_failure_ratio), (Duration::from_millis(30_000), 0.25));

    let cfg = resolve_with_env(raw, &env(&[(ENV_FLOWGATE_ROLLBACK, "off")])).unwrap();
    assert!(cfg.transforms.rollback.is_none());
}

/// A value that does not parse, or parses to something out of range, is a problem named by its variable.
#[test]
fn a_bad_flowgate_variable_is_a_problem_named_by_the_variable() {
    let cases = [
        (ENV_FLOWGATE_TRANSFORM_WORKERS, "four", "\"four\" is not a valid number"),
        (ENV_FLOWGATE_PROVENANCE, "yes please", "is not true or false"),
        (ENV_FLOWGATE_MAX_IN_FLIGHT, "0", "must be at least 1"),
        (ENV_FLOWGATE_BATCH_MAX_BYTES, "10", "must be at least 1024"),
        (ENV_FLOWGATE_SHUTDOWN_GRACE_MS, "-1", "is not a valid number"),
        (ENV_FLOWGATE_FLOW_METRICS, "2", "is not true or false"),
        (ENV_FLOWGATE_AGGREGATION_LEVEL, "pods", "is not none, names or namespaces"),
        (ENV_FLOWGATE_ROLLBACK_WINDOW_MS, "10", "too short"),
        (ENV_FLOWGATE_ROLLBACK_MAX_FAILURE_RATIO, "1.5", "is not above 0 and at most 1"),
    ];
    for (var, value, message) in cases {
        let err = resolve_with_env(RawConfig::default(), &env(&[(var, value)])).unwrap_err();
        let problem = err.problems.iter().find(|p| p.field == var).unwrap_or_else(|| panic!("{var} not named: {err}"));
        assert!(problem.message.contains(message), "{var}={value:?}: {}", problem.message);
    }
}

/// Dead letters go to the endpoint or to the files, never both; the `dead-letter` policy needs one of them; a
/// bad endpoint is named by where it was set.
#[test]
fn dead_letters_go_to_the_stream_or_the_files_and_the_policy_needs_one() {
    let fields = |raw: RawConfig, extra: &[(&'static str, &'static str)]| {
        let err = resolve_with_env(raw, &env(extra)).unwrap_err();
        err.problems.into_iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>()
    };
    let yaml = "transforms:\n  chain:\n    - {name: redact, path: /r.wasm, failure_policy: dead-letter}\n";
    let raw = RawConfig::from_yaml(yaml, Path::new("flowgate.yaml")).unwrap();
    assert_eq!(
        fields(raw.clone(), &[]),
        ["transforms.chain[0].failure_policy: dead-letter needs transforms.dead_letter_path or dead_letter.endpoint"]
    );
    let cfg =
        resolve_with_env(raw.clone(), &env(&[(ENV_FLOWGATE_DEAD_LETTER_ENDPOINT, "http://dl:4318/v1/logs")])).unwrap();
    let d = cfg.dead_letter.clone().unwrap();
    assert_eq!(d.endpoint.as_str(), "http://dl:4318/v1/logs");
    assert_eq!((d.max_records, d.timeout), (config::DEFAULT_DEAD_LETTER_MAX_RECORDS, cfg.otlp.timeout));
    assert!(cfg.to_string().contains("OTLP logs to http://dl:4318/v1/logs"));

    let both = [(ENV_FLOWGATE_DEAD_LETTER_ENDPOINT, "http://dl:4318/v1/logs"), (ENV_FLOWGATE_DEAD_LETTER_PATH, "/dl")];
    assert_eq!(
        fields(raw.clone(), &both),
        [format!(
            "{ENV_FLOWGATE_DEAD_LETTER_PATH}: dead letters go to {ENV_FLOWGATE_DEAD_LETTER_ENDPOINT}: set one or the other"
        )]
    );
    let problems = fields(raw.clone(), &[(ENV_FLOWGATE_DEAD_LETTER_ENDPOINT, "ftp://dl/")]);
    assert_eq!(problems, [format!("{ENV_FLOWGATE_DEAD_LETTER_ENDPOINT}: scheme \"ftp\" is not http or https")]);
    let mut raw = raw;
    raw.dead_letter.endpoint = Some("dl:4318".into());
    raw.dead_letter.max_records = Some(0);
    let problems = fields(raw, &[]);
    assert!(problems.iter().any(|p| p.starts_with("dead_letter.endpoint: ")), "{problems:?}");
    assert!(problems.contains(&"dead_letter.max_records: must be at least 1".to_string()), "{problems:?}");
}

/// The gateway's own telemetry is off by default; the SDK's variables turn each signal on, pick the sampler, and
/// a value they do not define is a problem named by the variable.
#[test]
fn self_telemetry_is_off_by_default_and_follows_the_sdks_variables() {
    assert!(resolve_with_env(RawConfig::default(), &env(&[])).unwrap().telemetry.is_none());
    let cfg = resolve_with_env(
        RawConfig::default(),
        &env(&[(ENV_OTEL_METRICS_EXPORTER, "otlp"), (ENV_OTEL_EXPORTER_OTLP_ENDPOINT, "https://col:4318/")]),
    )
    .unwrap();
    let t = cfg.telemetry.unwrap();
    assert_eq!(t.metrics_endpoint.unwrap().as_str(), "https://col:4318/v1/metrics");
    assert!(t.traces_endpoint.is_none());
    assert_eq!(t.interval, Duration::from_millis(config::DEFAULT_TELEMETRY_INTERVAL_MS));

    let traces = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = vec![(ENV_OTEL_TRACES_EXPORTER, "otlp")];
        pairs.extend_from_slice(extra);
        resolve_with_env(RawConfig::default(), &env(&pairs)).map(|c| c.telemetry.unwrap())
    };
    let t = traces(&[]).unwrap();
    assert_eq!(t.traces_endpoint.unwrap().as_str(), "http://localhost:4318/v1/traces");
    assert_eq!(t.sample_ratio, config::DEFAULT_TRACES_SAMPLE_RATIO);
    assert_eq!(traces(&[(ENV_OTEL_TRACES_SAMPLER, "parentbased_always_on")]).unwrap().sample_ratio, 1.0);
    assert_eq!(traces(&[(ENV_OTEL_TRACES_SAMPLER, "always_off")]).unwrap().sample_ratio, 0.0);
    assert_eq!(traces(&[(ENV_OTEL_TRACES_SAMPLER, "traceidratio")]).unwrap().sample_ratio, 1.0);
    let t = traces(&[(ENV_OTEL_TRACES_SAMPLER, "traceidratio"), (ENV_OTEL_TRACES_SAMPLER_ARG, "0.25")]).unwrap();
    assert_eq!(t.sample_ratio, 0.25);
    assert_eq!(traces(&[(ENV_OTEL_BSP_MAX_QUEUE_SIZE, "64")]).unwrap().max_queue, 64);

    let named = |extra: &[(&'static str, &'static str)], var: &str, message: &str| {
        let err = resolve_with_env(RawConfig::default(), &env(extra)).unwrap_err();
        let p = err.problems.iter().find(|p| p.field == var).unwrap_or_else(|| panic!("{var} not named: {err}"));
        assert!(p.message.contains(message), "{var}: {}", p.message);
    };
    named(&[(ENV_OTEL_METRICS_EXPORTER, "prometheus")], ENV_OTEL_METRICS_EXPORTER, "use otlp or none");
    named(&[(ENV_OTEL_TRACES_SAMPLER, "jaeger_remote")], ENV_OTEL_TRACES_SAMPLER, "is not always_on");
    named(
        &[(ENV_OTEL_TRACES_EXPORTER, "otlp"), (ENV_OTEL_TRACES_SAMPLER_ARG, "2")],
        ENV_OTEL_TRACES_SAMPLER_ARG,
        "is not between 0 and 1",
    );
}
