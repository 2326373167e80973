//! rustls client (and test server) configuration from PEM files, with errors that name the file.
//!
//! Files are read each time a configuration is built, and the source builds one per connection attempt, so
//! certificates rotated in place (Kubernetes Secret updates) are used from the next reconnect on.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// A TLS setup problem, naming the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {error}")]
    Read { what: &'static str, path: PathBuf, error: io::Error },
    #[error("{what} {path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("{what} {path} is not valid PEM: {detail}")]
    BadPem { what: &'static str, path: PathBuf, detail: String },
    #[error("client key {path} holds no PKCS#1, PKCS#8 or SEC1 private key")]
    NoKey { path: PathBuf },
    #[error("CA bundle {path}: certificate {index} was rejected: {error}")]
    BadCa { path: PathBuf, index: usize, error: rustls::Error },
    #[error("client certificate {cert} and key {key} cannot be used together: {error}")]
    BadClientPair { cert: PathBuf, key: PathBuf, error: rustls::Error },
    #[error("a client certificate needs its key: set both files or neither")]
    HalfPair,
    #[error("cannot load the system's CA certificates: {0}")]
    NativeRoots(String),
    #[error("TLS setup failed: {0}")]
    Rustls(rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide rustls provider, for libraries that build TLS configs on their own (reqwest does,
/// even for a plain-http client). Idempotent.
pub fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read { what, path: path.to_path_buf(), error })
}

/// Every certificate in a PEM file; an error when there is none.
pub fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| TlsError::BadPem {
        what,
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what, path: path.to_path_buf() });
    }
    Ok(certs)
}

/// The first private key in a PEM file: PKCS#1 (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("client key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: path.to_path_buf() },
        other => TlsError::BadPem { what: "client key", path: path.to_path_buf(), detail: other.to_string() },
    })
}

/// A root store from a PEM bundle (several certificates allowed).
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in load_certs("CA bundle", path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|error| TlsError::BadCa { path: path.to_path_buf(), index, error })?;
    }
    Ok(roots)
}

fn native_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map(|e| e.to_string()).unwrap_or_else(|| "none found".to_string());
        return Err(TlsError::NativeRoots(why));
    }
    Ok(roots)
}

/// A client configuration: roots from the CA file (else the system's), an optional client certificate, and ALPN.
pub fn client_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
    let roots = match &files.ca_cert {
        Some(path) => load_roots(path)?,
        None => native_roots()?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots);
    let mut config = match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs("client certificate", cert)?;
            let pk = load_key(key)?;
            builder.with_client_auth_cert(chain, pk).map_err(|error| TlsError::BadClientPair {
                cert: cert.clone(),
                key: key.clone(),
                error,
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsError::HalfPair),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A server configuration requiring client certificates signed by `client_ca` (what Goldmane does).
pub fn mtls_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: RootCertStore,
) -> Result<rustls::ServerConfig, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(client_ca), provider())
        .build()
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
