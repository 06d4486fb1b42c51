//! The client-certificate check of the REST server: WebPKI's, plus the one case OpenSSL (and
//! so Patroni) accepts that WebPKI refuses: a self-signed certificate with `CA:TRUE` (what
//! `openssl req -x509` makes by default) that is itself listed in `restapi.cafile`. WebPKI
//! refuses any CA certificate as an end entity (`CaUsedAsEndEntity`); OpenSSL trusts a
//! certificate found in its trust store. Nothing else is relaxed (issue #12): the certificate
//! must be byte-identical to a configured one, WebPKI has already found it within its
//! validity period (checked before the basic constraints), and the handshake's signature
//! still proves the client holds its key.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// A client-certificate verifier that also accepts a configured self-signed CA certificate.
#[derive(Debug)]
pub struct TrustedSelfSigned {
    /// WebPKI's verifier over `restapi.cafile`.
    inner: Arc<dyn ClientCertVerifier>,
    /// The certificates of `restapi.cafile`, as read.
    anchors: Vec<CertificateDer<'static>>,
}

// === impl TrustedSelfSigned ===

impl TrustedSelfSigned {
    /// Wraps `inner`, built from `anchors`.
    pub fn new(inner: Arc<dyn ClientCertVerifier>, anchors: Vec<CertificateDer<'static>>) -> Self {
        Self { inner, anchors }
    }
}

/// Whether `e` is WebPKI's refusal of a CA certificate as an end entity.
fn ca_used_as_end_entity(e: &Error) -> bool {
    match e {
        Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

impl ClientCertVerifier for TrustedSelfSigned {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(e)
                if ca_used_as_end_entity(&e)
                    && self
                        .anchors
                        .iter()
                        .any(|a| a.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ClientCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
