//! The control plane's keys and certificates, made fresh for each start: a
//! CA, kube-apiserver's serving certificate (valid for 127.0.0.1 and the
//! `kubernetes.default.svc` names pods use), the ServiceAccount token
//! signing key, and a random admin token.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot make a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Where the files were written.
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_pem: String,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_signing_key: PathBuf,
    pub sa_public_key: PathBuf,
    pub token_file: PathBuf,
    pub admin_token: String,
}

fn write(path: PathBuf, text: &str) -> Result<PathBuf, PkiError> {
    std::fs::write(&path, text).map_err(|source| PkiError::Write { path: path.clone(), source })?;
    Ok(path)
}

pub fn generate(dir: &Path) -> Result<Pki, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write { path: dir.to_path_buf(), source })?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "retl-test-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ])?;
    serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    for ip in [[127, 0, 0, 1], [10, 0, 0, 1]] {
        serving.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from(ip)));
    }
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    let sa_key = KeyPair::generate()?;
    let admin_token = uuid::Uuid::new_v4().simple().to_string();
    let ca_pem = ca_cert.pem();
    Ok(Pki {
        ca_cert: write(dir.join("ca.crt"), &ca_pem)?,
        ca_pem,
        serving_cert: write(dir.join("apiserver.crt"), &format!("{}{}", serving_cert.pem(), ca_cert.pem()))?,
        serving_key: write(dir.join("apiserver.key"), &serving_key.serialize_pem())?,
        sa_signing_key: write(dir.join("sa.key"), &sa_key.serialize_pem())?,
        sa_public_key: write(dir.join("sa.pub"), &sa_key.public_key_pem())?,
        // kube-apiserver's --token-auth-file: token,user,uid,"groups"
        token_file: write(dir.join("tokens.csv"), &format!("{admin_token},admin,admin,\"system:masters\"\n"))?,
        admin_token,
    })
}
