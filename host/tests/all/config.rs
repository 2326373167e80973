//! Configuration: the old exporter's environment, OTLP spec precedence, YAML strictness, all problems at once.

use std::path::Path;
use std::time::Duration;

use flowgate::config::{self, Compression, Env, RawConfig, resolve_with_env};

fn required() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GOLDMANE_HOST", "goldmane:7443"),
        ("CA_CERT_PATH", "/etc/goldmane/ca-cert/tigera-ca-bundle.crt"),
        ("PRIVATE_KEY_PATH", "/etc/goldmane/certs/tls.key"),
        ("PUBLIC_CERT_PATH", "/etc/goldmane/certs/tls.crt"),
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
    assert_eq!(cfg.goldmane.server_name, "goldmane", "TLS server name is the host part of GOLDMANE_HOST");
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
        resolve_with_env(RawConfig::default(), &Env::from_pairs([("GOLDMANE_HOST", "goldmane:7443")])).unwrap_err();
    let text = err.to_string();
    for name in ["CA_CERT_PATH", "PRIVATE_KEY_PATH", "PUBLIC_CERT_PATH"] {
        assert!(text.contains(name), "{name} not named in: {text}");
    }
    assert!(!text.contains("GOLDMANE_HOST ("), "GOLDMANE_HOST was set: {text}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = resolve_with_env(
        RawConfig::default(),
        &env(&[
            ("GOLDMANE_HOST", "goldmane"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "ten"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "0"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]),
    )
    .unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    for f in [
        "GOLDMANE_HOST",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "batch.max_records (OTEL_BLRP_MAX_EXPORT_BATCH_SIZE)",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
}

#[test]
fn unparsable_reconnect_wait_falls_back_to_the_default_with_a_warning() {
    let cfg = resolve_with_env(RawConfig::default(), &env(&[("RECONNECT_WAIT_TIME_IN_MILLISECONDS", "soon")])).unwrap();
    assert_eq!(cfg.goldmane.reconnect_initial, Duration::from_millis(5_000));
    assert!(cfg.warnings.iter().any(|w| w.contains("RECONNECT_WAIT_TIME_IN_MILLISECONDS")));
    let cfg = resolve_with_env(RawConfig::default(), &env(&[("RECONNECT_WAIT_TIME_IN_MILLISECONDS", "250")])).unwrap();
    assert_eq!(cfg.goldmane.reconnect_initial, Duration::from_millis(250));
}

#[test]
fn otlp_precedence_follows_the_spec() {
    // Generic endpoint: /v1/logs appended (with or without a trailing slash).
    let cfg =
        resolve_with_env(RawConfig::default(), &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318/")]))
            .unwrap();
    assert_eq!(cfg.otlp.endpoint.as_str(), "https://otel.example:4318/v1/logs");
    // Signal-specific: used as is, and wins.
    let cfg = resolve_with_env(
        RawConfig::default(),
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://specific:9999/custom/path"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-generic=1"),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "authorization=Bearer%20abc,x-tenant=t1"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic/ca.crt"),
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/logs/ca.crt"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/c.crt"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/c.key"),
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
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "2048"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "250"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "128"),
            ("OTEL_BLRP_EXPORT_TIMEOUT", "30000"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.queue.max_records, 2048);
    assert_eq!(cfg.batch.delay, Duration::from_millis(250));
    assert_eq!(cfg.batch.max_records, 128);
    assert!(cfg.warnings.iter().any(|w| w.contains("Goldmane burst")), "a small queue is warned about");
    assert!(cfg.warnings.iter().any(|w| w.contains("OTEL_BLRP_EXPORT_TIMEOUT")));
}

#[test]
fn resource_attributes_are_percent_decoded_and_service_name_can_be_overridden() {
    let cfg = resolve_with_env(
        RawConfig::default(),
        &env(&[("OTEL_RESOURCE_ATTRIBUTES", "k8s.cluster.name=prod%2Deu,team=net"), ("OTEL_SERVICE_NAME", "flows")]),
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
    let cfg = config::load(Some(&path), &env(&[("GOLDMANE_HOST", "from-env:7443")])).unwrap();
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
    let cfg = on(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318/otlp/")], "").unwrap();
    let push = cfg.flow_metrics.unwrap().otlp.unwrap();
    assert_eq!(push.endpoint.as_str(), "https://collector:4318/otlp/v1/metrics");
    assert_eq!(push.interval, Duration::from_secs(60));
    // The metrics variables win, as the OTLP exporter spec has them.
    let cfg = on(
        &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:9000/in"), ("OTEL_METRIC_EXPORT_INTERVAL", "15000")],
        "",
    )
    .unwrap();
    let push = cfg.flow_metrics.unwrap().otlp.unwrap();
    assert_eq!(push.endpoint.as_str(), "http://metrics:9000/in");
    assert_eq!(push.interval, Duration::from_secs(15));
    // A custom logs URL gives no metrics URL to derive: say so, naming the field.
    let err = on(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://c:4318/ingest")], "").unwrap_err().to_string();
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
    let cfg = resolve_with_env(raw, &env(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:1/x")])).unwrap();
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

    let cfg =
        resolve_with_env(RawConfig::default(), &env(&[("FLOWGATE_RECONCILE", "false"), ("FLOWGATE_STATE_DIR", "/s")]))
            .unwrap();
    assert!(cfg.goldmane.reconcile.is_none());
    assert_eq!(cfg.state_dir.as_deref(), Some(Path::new("/s")));

    let yaml = "goldmane:\n  reconcile:\n    window_secs: 120\n    passes_secs: [60, 30, 200]\n    growth: sum\n";
    let err = serde_norway::from_str::<RawConfig>(yaml).unwrap_err().to_string();
    assert!(err.contains("growth") || err.contains("unknown variant"), "{err}");
    let yaml = "goldmane:\n  reconcile:\n    window_secs: 120\n    passes_secs: [60, 30, 200]\n    page_size: 0\n";
    let raw: RawConfig = serde_norway::from_str(yaml).unwrap();
    let text = resolve_with_env(raw, &env(&[("FLOWGATE_RECONCILE", "maybe")])).unwrap_err().to_string();
    for problem in [
        "FLOWGATE_RECONCILE: \"maybe\" is not true or false",
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

    let cfg = resolve_with_env(RawConfig::default(), &env(&[("FLOWGATE_ADMIN_LISTEN", "0.0.0.0:9191")])).unwrap();
    assert_eq!(cfg.admin_listen.to_string(), "0.0.0.0:9191");
    let cfg = resolve_with_env(RawConfig::default(), &env(&[("FLOWGATE_ADMIN_LISTEN", "[::]:9090")])).unwrap();
    assert_eq!(cfg.admin_listen.to_string(), "[::]:9090");

    // The environment wins over the file, as every other variable does.
    let mut raw = RawConfig::default();
    raw.admin.listen = Some("127.0.0.1:7000".into());
    let cfg = resolve_with_env(raw.clone(), &env(&[])).unwrap();
    assert_eq!(cfg.admin_listen.to_string(), "127.0.0.1:7000");
    let cfg = resolve_with_env(raw, &env(&[("FLOWGATE_ADMIN_LISTEN", "0.0.0.0:9090")])).unwrap();
    assert_eq!(cfg.admin_listen.to_string(), "0.0.0.0:9090");
}

#[test]
fn a_malformed_flowgate_admin_listen_is_an_error_naming_the_variable() {
    for bad in ["9090", "0.0.0.0", "localhost:9090", "0.0.0.0:http"] {
        let err = resolve_with_env(RawConfig::default(), &env(&[("FLOWGATE_ADMIN_LISTEN", bad)])).unwrap_err();
        let problem = err.problems.iter().find(|p| p.field == "FLOWGATE_ADMIN_LISTEN");
        let problem = problem.unwrap_or_else(|| panic!("{bad:?}: FLOWGATE_ADMIN_LISTEN not named in {err}"));
        assert!(problem.message.contains(&format!("{bad:?} is not addr:port")), "{bad:?}: {}", problem.message);
        assert!(!err.to_string().contains("admin.listen"), "the file was not at fault: {err}");
    }
}
