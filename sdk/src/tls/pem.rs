//! Reading the PEM files TLS is configured with, each checked so that a bad one is an error
//! naming its flag, its file and what is wrong.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, RootCertStore};

use super::TlsError;

/// One file given with a flag.
#[derive(Clone, Copy)]
pub(super) struct Pem<'a> {
    pub flag: &'static str,
    pub path: &'a Path,
}

impl<'a> Pem<'a> {
    pub fn new(flag: &'static str, path: &'a Path) -> Self {
        Pem { flag, path }
    }

    /// An error about this file.
    pub fn problem(self, problem: impl ToString) -> TlsError {
        TlsError {
            flag: self.flag,
            path: self.path.to_owned(),
            problem: problem.to_string(),
        }
    }

    fn read(self) -> Result<Vec<u8>, TlsError> {
        std::fs::read(self.path).map_err(|e| self.problem(format!("cannot read it: {e}")))
    }

    /// The certificates in it, the first checked to be valid now.
    pub fn certs(self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = self.read()?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.problem(format!("is not a PEM certificate file: {e}")))?;
        let Some(first) = certs.first() else {
            return Err(self.problem("holds no PEM certificate"));
        };
        self.check_validity(first)?;
        Ok(certs)
    }

    pub fn key(self) -> Result<PrivateKeyDer<'static>, TlsError> {
        let pem = self.read()?;
        PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| self.problem(format!("holds no PEM private key: {e}")))
    }

    /// The CA certificates in it, as trust roots.
    pub fn roots(self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in self.certs()? {
            roots
                .add(cert)
                .map_err(|e| self.problem(format!("is not a usable CA certificate: {e}")))?;
        }
        Ok(roots)
    }

    /// A certificate chain (from `self`) and its private key (from `key`), checked to belong
    /// together.
    pub fn pair(
        self,
        key: Pem<'_>,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let chain = self.certs()?;
        let private_key = key.key()?;
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(private_key.clone_key())
            .map_err(|e| key.problem(format!("is not a usable private key: {e}")))?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
        certified.keys_match().map_err(|_| {
            key.problem(format!(
                "is not the key of the certificate in {} {}",
                self.flag,
                self.path.display()
            ))
        })?;
        Ok((chain, private_key))
    }

    /// Refuses a certificate that is expired or not valid yet, saying when.
    fn check_validity(self, cert: &CertificateDer<'_>) -> Result<(), TlsError> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)
            .map_err(|e| self.problem(format!("is not an X.509 certificate: {e}")))?;
        let validity = parsed.validity();
        let now = x509_parser::time::ASN1Time::now();
        if now > validity.not_after {
            return Err(self.problem(format!("the certificate expired on {}", validity.not_after)));
        }
        if now < validity.not_before {
            return Err(self.problem(format!(
                "the certificate is not valid before {}",
                validity.not_before
            )));
        }
        Ok(())
    }
}
