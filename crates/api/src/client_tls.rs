//! TLS for clients of member REST APIs: the agent's peer checks and `patronictl`. Builds a
//! rustls [`ClientConfig`](rustls::ClientConfig) from Patroni's `ctl`/`restapi` settings:
//! a CA bundle (else the system's roots), an optional client certificate, host name checks
//! on or off (Patroni's daemon verifies only the chain of its peers), and an insecure mode
//! that accepts any server certificate (`-k`; the daemon talks to its peers this way unless
//! `ctl.certfile` is set) while still checking handshake signatures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What a client presents and trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Accept any server certificate.
    pub insecure: bool,
    /// Check that the server certificate names the host (patronictl); Patroni's daemon
    /// verifies only the chain when talking to its peers.
    pub verify_hostname: bool,
    /// CA bundle to verify servers with (else the system's roots).
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM).
    pub certfile: Option<PathBuf>,
    /// Its key (defaults to `certfile`).
    pub keyfile: Option<PathBuf>,
}

/// A TLS client setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("failed to read {field} {path}")]
    Read {
        /// The setting naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the certificates or key.
    #[error("failed to use {field} {path}")]
    Rustls {
        /// The setting naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

// === impl ClientTls ===

impl ClientTls {
    /// The client configuration (ring provider, TLS 1.2 and 1.3).
    ///
    /// # Errors
    /// [`ClientTlsError`] naming the setting whose file is unusable.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, ClientTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|source| ClientTlsError::Rustls {
                field: "protocol versions",
                path: PathBuf::new(),
                source,
            })?;
        let builder = match (&self.cacert, self.insecure) {
            (_, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LaxVerifier {
                    provider,
                    chain: None,
                })),
            (cacert, false) => {
                let mut roots = rustls::RootCertStore::empty();
                match cacert {
                    Some(cacert) => {
                        for cert in read_certs("ctl.cacert", cacert)? {
                            roots.add(cert).map_err(|source| ClientTlsError::Rustls {
                                field: "ctl.cacert",
                                path: cacert.clone(),
                                source,
                            })?;
                        }
                    }
                    None => {
                        for cert in rustls_native_certs::load_native_certs().certs {
                            let _ = roots.add(cert);
                        }
                    }
                }
                let cacert = cacert.clone().unwrap_or_default();
                if self.verify_hostname {
                    builder.with_root_certificates(roots)
                } else {
                    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                        Arc::new(roots),
                        Arc::clone(&provider),
                    )
                    .build()
                    .map_err(|e| ClientTlsError::Rustls {
                        field: "ctl.cacert",
                        path: cacert.clone(),
                        source: rustls::Error::General(e.to_string()),
                    })?;
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(LaxVerifier {
                            provider,
                            chain: Some(webpki),
                        }))
                }
            }
        };
        match &self.certfile {
            Some(certfile) => {
                let certs = read_certs("ctl.certfile", certfile)?;
                let keyfile = self.keyfile.as_ref().unwrap_or(certfile);
                let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|source| {
                    ClientTlsError::Read {
                        field: "ctl.keyfile",
                        path: keyfile.clone(),
                        source,
                    }
                })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|source| ClientTlsError::Rustls {
                        field: "ctl.certfile",
                        path: certfile.clone(),
                        source,
                    })
            }
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// Every certificate of a PEM file.
fn read_certs(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
    let read = |source| ClientTlsError::Read {
        field,
        path: path.to_path_buf(),
        source,
    };
    CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)
}

/// Verifies the server's chain against the CA (`chain`) but not the name it is for, or, without
/// a CA, accepts any certificate; the handshake's signatures are always checked.
#[derive(Debug)]
struct LaxVerifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
}

impl ServerCertVerifier for LaxVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain first; a name mismatch is reported only for a good chain.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
