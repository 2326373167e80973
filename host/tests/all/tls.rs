//! mTLS to Goldmane: key formats, CA bundles, and clear errors for missing or wrong certificates.

use std::path::{Path, PathBuf};
use std::process::Command;

use flowgate::config::env::ENV_CA_CERT_PATH;
use flowgate::config::{GoldmaneConfig, TlsFiles};
use flowgate::receiver::accept_all;
use flowgate::sim::{SimCerts, SimConfig, Simulator};
use flowgate::source;

use crate::support::*;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl CLI (Debian package openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn goldmane_config(sim: &Simulator, tls: TlsFiles) -> GoldmaneConfig {
    let rx = receiver(accept_all()).await;
    let mut raw = raw_config(sim, &rx.base_url());
    raw.goldmane.ca_cert_path = tls.ca_cert;
    raw.goldmane.client_cert_path = tls.client_cert;
    raw.goldmane.client_key_path = tls.client_key;
    resolve(raw).goldmane
}

fn with(sim: &Simulator, ca: &Path, cert: &Path, key: &Path) -> TlsFiles {
    let _ = sim;
    TlsFiles { ca_cert: Some(ca.into()), client_cert: Some(cert.into()), client_key: Some(key.into()) }
}

fn concat(dir: &Path, name: &str, parts: &[&Path]) -> PathBuf {
    let text: String = parts.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn pkcs8_sec1_and_pkcs1_client_keys_all_work() {
    let (sim, dir) = simulator(SimConfig::default()).await;
    let c = &sim.certs;
    // PKCS#8 (what the simulator writes).
    assert!(std::fs::read_to_string(&c.client_key).unwrap().contains("BEGIN PRIVATE KEY"));
    source::probe(&goldmane_config(&sim, c.client_files()).await).await.expect("PKCS#8 EC key");

    // SEC1: the same EC key in its traditional form.
    let sec1 = dir.path().join("sec1.key");
    openssl(&["ec", "-in", c.client_key.to_str().unwrap(), "-out", sec1.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&sec1).unwrap().contains("BEGIN EC PRIVATE KEY"));
    source::probe(&goldmane_config(&sim, with(&sim, &c.ca_cert, &c.client_cert, &sec1)).await).await.expect("SEC1 key");

    // PKCS#1: an RSA client pair signed by the same CA.
    let d = dir.path();
    let (rsa_key, csr, rsa_crt, ext) = (d.join("rsa.key"), d.join("rsa.csr"), d.join("rsa.crt"), d.join("ext.cnf"));
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(&["genrsa", "-traditional", "-out", rsa_key.to_str().unwrap(), "2048"]);
    assert!(std::fs::read_to_string(&rsa_key).unwrap().contains("BEGIN RSA PRIVATE KEY"));
    openssl(&[
        "req",
        "-new",
        "-key",
        rsa_key.to_str().unwrap(),
        "-subj",
        "/CN=rsa-client",
        "-out",
        csr.to_str().unwrap(),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        c.ca_cert.to_str().unwrap(),
        "-CAkey",
        c.ca_key.to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        rsa_crt.to_str().unwrap(),
    ]);
    source::probe(&goldmane_config(&sim, with(&sim, &c.ca_cert, &rsa_crt, &rsa_key)).await)
        .await
        .expect("PKCS#1 RSA key");
}

#[tokio::test]
async fn a_ca_bundle_with_several_certificates_is_accepted() {
    let (sim, dir) = simulator(SimConfig::default()).await;
    let other = SimCerts::generate(&dir.path().join("other")).unwrap();
    let bundle = concat(dir.path(), "bundle.crt", &[&other.ca_cert, &sim.certs.ca_cert]);
    let files = with(&sim, &bundle, &sim.certs.client_cert, &sim.certs.client_key);
    source::probe(&goldmane_config(&sim, files).await).await.expect("the second CA in the bundle signs the server");
}

#[tokio::test]
async fn a_wrong_ca_names_the_tls_problem() {
    let (sim, dir) = simulator(SimConfig::default()).await;
    let other = SimCerts::generate(&dir.path().join("other")).unwrap();
    let files = with(&sim, &other.ca_cert, &sim.certs.client_cert, &sim.certs.client_key);
    let err = source::probe(&goldmane_config(&sim, files).await).await.unwrap_err().to_string();
    // Both PKIs name their CA alike, so rustls finds the issuer and rejects its signature.
    assert!(err.contains("invalid peer certificate") && err.contains(ENV_CA_CERT_PATH), "{err}");
    assert!(err.contains(&sim.target()), "names the target: {err}");
}

#[tokio::test]
async fn a_client_certificate_goldmane_does_not_trust_is_refused() {
    let (sim, dir) = simulator(SimConfig::default()).await;
    let other = SimCerts::generate(&dir.path().join("other")).unwrap();
    let files = with(&sim, &sim.certs.ca_cert, &other.client_cert, &other.client_key);
    let err = source::probe(&goldmane_config(&sim, files).await).await.unwrap_err().to_string();
    // Goldmane checks the client certificate against its CA (named alike, so it finds the issuer) and rejects the
    // signature: its alert is what the gateway sees, after the TLS 1.3 handshake, when the stream is opened.
    assert!(err.starts_with("Goldmane refused the stream"), "{err}");
    assert!(err.contains("received fatal alert: DecryptError"), "{err}");
}

#[tokio::test]
async fn a_wrong_server_name_is_refused() {
    let (sim, _dir) = simulator(SimConfig::default()).await;
    let mut cfg = goldmane_config(&sim, sim.certs.client_files()).await;
    cfg.server_name = "not-goldmane.example".into();
    let err = source::probe(&cfg).await.unwrap_err().to_string();
    assert!(err.contains("not valid for name \"not-goldmane.example\""), "{err}");
}

#[tokio::test]
async fn missing_or_unusable_files_fail_startup_naming_the_file() {
    let (sim, dir) = simulator(SimConfig::default()).await;
    let rx = receiver(accept_all()).await;
    let missing = dir.path().join("no-such.key");
    let not_pem = dir.path().join("garbage.crt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    type Edit<'a> = Box<dyn Fn(&mut flowgate::config::RawConfig) + 'a>;
    let cases: Vec<(Edit<'_>, String)> = vec![
        (
            Box::new(|r| r.goldmane.client_key_path = Some(missing.clone())),
            format!("cannot read client key {}", missing.display()),
        ),
        (
            Box::new(|r| r.goldmane.ca_cert_path = Some(not_pem.clone())),
            format!("CA bundle {} holds no PEM certificate", not_pem.display()),
        ),
        (
            Box::new(|r| r.goldmane.client_cert_path = Some(not_pem.clone())),
            format!("client certificate {} holds no PEM certificate", not_pem.display()),
        ),
        (
            Box::new(|r| r.goldmane.client_key_path = Some(sim.certs.client_cert.clone())),
            format!("client key {} holds no", sim.certs.client_cert.display()),
        ),
    ];
    for (edit, expected) in cases {
        let mut raw = raw_config(&sim, &rx.base_url());
        edit(&mut raw);
        let mut gw = Gateway::start(resolve(raw)).await;
        let err = gw.shutdown().await.unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(&expected), "expected {expected:?} in {text:?}");
    }
}
