//! Certificates for tests: a CA made with rcgen that issues PEM files into a directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A certificate authority that issues into a directory of PEM files.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), cert.pem()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// Issues `file`.pem and `file`.key for localhost and 127.0.0.1, for `purpose`.
    pub fn issue(&self, file: &str, purpose: ExtendedKeyUsagePurpose) -> (PathBuf, PathBuf) {
        self.issue_with(file, purpose, |_| {})
    }

    pub fn issue_with(
        &self,
        file: &str,
        purpose: ExtendedKeyUsagePurpose,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![purpose];
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_file, key_file) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The flags of a process that serves and calls over mutual TLS, with certificates of `ca`.
pub fn mutual_tls(ca: &Ca, cert: &Path, key: &Path, client: &(PathBuf, PathBuf)) -> Vec<String> {
    [
        "--tls-cert",
        path(cert),
        "--tls-key",
        path(key),
        "--tls-client-ca",
        path(&ca.ca_file()),
        "--tls-ca",
        path(&ca.ca_file()),
        "--tls-client-cert",
        path(&client.0),
        "--tls-client-key",
        path(&client.1),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A client channel over TLS trusting `ca_file`, presenting `identity` if given.
pub fn channel(url: &str, ca_file: &Path, identity: Option<&(PathBuf, PathBuf)>) -> Channel {
    let ca = Certificate::from_pem(std::fs::read(ca_file).unwrap());
    let mut config = ClientTlsConfig::new().ca_certificate(ca);
    if let Some((cert, key)) = identity {
        let identity =
            Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap());
        config = config.identity(identity);
    }
    Endpoint::from_shared(url.to_owned())
        .unwrap()
        .tls_config(config)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}
