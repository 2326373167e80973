//! Certificates for the simulator: a CA, a Goldmane server pair with Goldmane's SANs (plus loopback), and a
//! client pair, written as PEM files the way Kubernetes mounts them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::config::TlsFiles;

/// PEM files of one simulated PKI.
#[derive(Debug, Clone)]
pub struct SimCerts {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl SimCerts {
    /// Generates a fresh CA and both pairs into `dir` (created if needed).
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "flowgate-sim-ca");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

        let mut server = CertificateParams::new(vec![
            "goldmane".to_string(),
            "goldmane.calico-system".to_string(),
            "goldmane.calico-system.svc".to_string(),
            "goldmane.calico-system.svc.cluster.local".to_string(),
            "localhost".to_string(),
        ])?;
        server.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server.distinguished_name.push(DnType::CommonName, "goldmane");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &ca)?;

        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client.distinguished_name.push(DnType::CommonName, "flowgate");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate()?;
        let client_cert = client.signed_by(&client_key, &ca)?;

        let certs = SimCerts {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        std::fs::write(&certs.ca_cert, ca.pem())?;
        std::fs::write(&certs.ca_key, ca_key_pem)?;
        std::fs::write(&certs.server_cert, server_cert.pem())?;
        std::fs::write(&certs.server_key, server_key.serialize_pem())?;
        std::fs::write(&certs.client_cert, client_cert.pem())?;
        std::fs::write(&certs.client_key, client_key.serialize_pem())?;
        Ok(certs)
    }

    /// The files a Goldmane client uses.
    pub fn client_files(&self) -> TlsFiles {
        TlsFiles {
            ca_cert: Some(self.ca_cert.clone()),
            client_cert: Some(self.client_cert.clone()),
            client_key: Some(self.client_key.clone()),
        }
    }
}
