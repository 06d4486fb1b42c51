//! HTTPS for the REST server: [`TlsSettings`] (the TLS keys of `restapi`), the
//! [`TlsAcceptor`] built from them, and [`ClientCert`], what the handshake learnt about the
//! client's certificate, which `auth` checks for the unsafe endpoints.
//!
//! Patroni's settings and what they do here:
//! - `certfile` (TLS is on exactly when set), `keyfile` (defaults to `certfile`): PEM.
//! - `keyfile_password`: rustls cannot read encrypted keys. An encrypted key fails with
//!   [`TlsError::EncryptedKey`] naming the field; with a plain key the password is ignored
//!   with a warning.
//! - `cafile`, `verify_client`: `none` asks for no certificate; `optional` asks for one and
//!   verifies it against `cafile` when given, but lets clients without one in (the unsafe
//!   endpoints then answer 403 `client certificate required`); `required` refuses the
//!   handshake without a certificate signed by `cafile`. A self-signed client certificate
//!   marked as a CA (what `openssl req -x509` makes) is accepted when it is itself in
//!   `cafile`, as OpenSSL does ([`crate::client_verifier`]).
//! - `ciphers`: OpenSSL cipher strings mean nothing to rustls; ignored with a warning (rustls
//!   offers only modern AEAD suites, TLS 1.2 and 1.3).
//!
//! Everything is read once, when the acceptor is built; a certificate change needs a new
//! acceptor (and listener), as Patroni restarts its listener when `restapi` SSL settings
//! change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use patroni_config::RestApiConfig;
use patroni_config::model::restapi::VerifyClient;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS settings of a `restapi` section.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `restapi.certfile`: the server certificate chain (PEM).
    pub certfile: PathBuf,
    /// `restapi.keyfile`, or `certfile` when unset: the server's private key (PEM).
    pub keyfile: PathBuf,
    /// `restapi.keyfile_password`: only used to explain why an encrypted key is refused.
    pub keyfile_password: Option<String>,
    /// `restapi.cafile`: CAs that sign client certificates.
    pub cafile: Option<PathBuf>,
    /// `restapi.verify_client`.
    pub verify_client: VerifyClient,
    /// `restapi.ciphers`: ignored (module doc).
    pub ciphers: Option<String>,
}

/// Accepts TLS connections for the REST server; built by [`TlsSettings::acceptor`], used by
/// [`serve_tls`](crate::serve_tls).
#[derive(Clone)]
pub struct TlsAcceptor {
    /// The rustls acceptor.
    pub(crate) inner: tokio_rustls::TlsAcceptor,
    /// Whether a client certificate is asked for (`optional`/`required`).
    pub(crate) asks_client_cert: bool,
}

/// What the TLS layer learnt about the client's certificate; a request extension set by
/// [`serve_tls`](crate::serve_tls) on every request of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    /// No certificate was asked for (`verify_client: none`, or plain HTTP: no extension).
    NotAsked,
    /// The client presented a certificate that verified against `cafile`.
    Verified,
    /// A certificate was asked for (`optional`) and the client sent none.
    Missing,
}

/// A TLS setting that cannot be used. Each message names the `restapi` field at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("failed to read restapi.{field} {path:?}")]
    Read {
        /// The field naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file has no usable item of the kind expected, or is malformed.
    #[error("restapi.{field} {path:?} holds no usable {what} in PEM form")]
    Pem {
        /// The field naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
        /// The PEM error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The private key is encrypted; rustls cannot decrypt it.
    #[error(
        "restapi.keyfile {path:?} is encrypted{with_password}: encrypted private keys are not \
         supported (rustls cannot read them); decrypt it, e.g. `openssl pkey -in key.pem -out \
         plain.pem`, and remove restapi.keyfile_password"
    )]
    EncryptedKey {
        /// The key file.
        path: PathBuf,
        /// ` (restapi.keyfile_password is set)` or empty.
        with_password: &'static str,
    },
    /// `verify_client: required` but no `cafile` says who signs client certificates.
    #[error("restapi.verify_client is {mode} but restapi.cafile is not set")]
    NoCaFile {
        /// `optional` or `required`.
        mode: &'static str,
    },
    /// A CA certificate in `cafile` was refused.
    #[error("restapi.cafile {path:?} holds an unusable CA certificate")]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The client verifier could not be built from `cafile`.
    #[error("restapi.cafile {path:?} cannot verify client certificates")]
    Verifier {
        /// The CA file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The certificate and key were refused together (mismatch, unsupported key type).
    #[error("restapi.certfile {certfile:?} and restapi.keyfile {keyfile:?} are not a usable pair")]
    CertKey {
        /// The certificate file.
        certfile: PathBuf,
        /// The key file.
        keyfile: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

impl std::fmt::Debug for TlsSettings {
    /// Never prints the key password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .field(
                "keyfile_password",
                &self.keyfile_password.as_ref().map(|_| "<redacted>"),
            )
            .field("cafile", &self.cafile)
            .field("verify_client", &self.verify_client)
            .field("ciphers", &self.ciphers)
            .finish()
    }
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("asks_client_cert", &self.asks_client_cert)
            .finish_non_exhaustive()
    }
}

/// The acceptor of a `restapi` section: `Ok(None)` when TLS is off (no `certfile`).
///
/// # Errors
/// [`TlsError`] naming the field whose file or value cannot be used.
pub fn tls_acceptor(cfg: &RestApiConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    TlsSettings::from_config(cfg)
        .map(|settings| settings.acceptor())
        .transpose()
}

// === impl TlsSettings ===

impl TlsSettings {
    /// The TLS settings of a `restapi` section; `None` when `certfile` is not set.
    pub fn from_config(cfg: &RestApiConfig) -> Option<Self> {
        let certfile = cfg.certfile.clone()?;
        Some(Self {
            keyfile: cfg.keyfile.clone().unwrap_or_else(|| certfile.clone()),
            certfile,
            keyfile_password: cfg.keyfile_password.clone(),
            cafile: cfg.cafile.clone(),
            verify_client: cfg.verify_client,
            ciphers: cfg.ciphers.clone(),
        })
    }

    /// Reads the files and builds the acceptor.
    ///
    /// # Errors
    /// [`TlsError`] naming the field whose file or value cannot be used.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        if let Some(ciphers) = &self.ciphers {
            tracing::warn!(
                ciphers,
                "restapi.ciphers is ignored: rustls offers its own fixed set of modern cipher suites"
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = read_certs("certfile", &self.certfile)?;
        let key = self.read_key()?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|source| self.pair_error(source))?;
        let mode = match self.verify_client {
            VerifyClient::None => None,
            VerifyClient::Optional => Some("optional"),
            VerifyClient::Required => Some("required"),
        };
        let builder = match (mode, &self.cafile) {
            (None, _) => builder.with_no_client_auth(),
            (Some("optional"), None) => {
                // Patroni (OpenSSL, CERT_OPTIONAL without CAs) verifies no certificate, so
                // every unsafe request is refused; do the same without asking for one.
                tracing::warn!(
                    "restapi.verify_client is optional without restapi.cafile: unsafe \
                     endpoints will answer 403 to every client"
                );
                builder.with_no_client_auth()
            }
            (Some(mode), None) => return Err(TlsError::NoCaFile { mode }),
            (Some(_), Some(cafile)) => {
                let mut roots = RootCertStore::empty();
                let anchors = read_certs("cafile", cafile)?;
                for ca in anchors.iter().cloned() {
                    roots.add(ca).map_err(|source| TlsError::BadCa {
                        path: cafile.clone(),
                        source,
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.verify_client == VerifyClient::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|source| TlsError::Verifier {
                    path: cafile.clone(),
                    source,
                })?;
                let verifier = crate::client_verifier::TrustedSelfSigned::new(verifier, anchors);
                builder.with_client_cert_verifier(Arc::new(verifier))
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|source| self.pair_error(source))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            asks_client_cert: mode.is_some(),
        })
    }

    /// Reads the private key, refusing encrypted ones.
    fn read_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        let path = &self.keyfile;
        let pem = read("keyfile", path)?;
        if is_encrypted_key(&pem) {
            return Err(TlsError::EncryptedKey {
                path: path.clone(),
                with_password: if self.keyfile_password.is_some() {
                    " (restapi.keyfile_password is set)"
                } else {
                    ""
                },
            });
        }
        if self.keyfile_password.is_some() {
            tracing::warn!(
                keyfile = %path.display(),
                "restapi.keyfile_password is ignored: the key is not encrypted"
            );
        }
        PrivateKeyDer::from_pem_slice(&pem).map_err(|source| TlsError::Pem {
            field: "keyfile",
            path: path.clone(),
            what: "private key",
            source,
        })
    }

    fn pair_error(&self, source: rustls::Error) -> TlsError {
        TlsError::CertKey {
            certfile: self.certfile.clone(),
            keyfile: self.keyfile.clone(),
            source,
        }
    }
}

/// Reads a file named by `restapi.<field>`.
fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        field,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file; at least one.
fn read_certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(field, path)?;
    let pem_error = |source| TlsError::Pem {
        field,
        path: path.to_owned(),
        what: "certificate",
        source,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(pem_error(rustls_pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// Whether a PEM file holds an encrypted private key: PKCS#8 `ENCRYPTED PRIVATE KEY`, or a
/// legacy OpenSSL key with `Proc-Type: 4,ENCRYPTED`.
fn is_encrypted_key(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both forms of encrypted PEM keys are recognised; plain ones are not.
    #[test]
    fn encrypted_keys_are_recognised() {
        assert!(is_encrypted_key(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMII=\n-----END ENCRYPTED PRIVATE KEY-----\n"
        ));
        assert!(is_encrypted_key(
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMII=\n-----END RSA PRIVATE KEY-----\n"
        ));
        assert!(!is_encrypted_key(
            b"-----BEGIN PRIVATE KEY-----\nMII=\n-----END PRIVATE KEY-----\n"
        ));
    }
}
