//! HTTPS on a real TCP listener with certificates made at test time: the server's chain,
//! `verify_client: required` at the handshake, `optional` in the access check of unsafe
//! endpoints (rest-api.md §2), and the configuration errors that name their field.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use patroni_api::{
    ApiSettings, ClientTls, FakeBackend, TlsAcceptor, TlsError, TlsSettings, bind, router,
    serve_tls, tls_acceptor,
};
use patroni_config::model::restapi::VerifyClient;
use patroni_config::{Address, RestApiConfig};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::oneshot;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, written to a tempdir.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |sans: Vec<String>, usage| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(sans).expect("leaf params");
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("leaf cert");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert_pem, client_key_pem) =
            leaf(vec!["pg-1".into()], ExtendedKeyUsagePurpose::ClientAuth);
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Self {
            dir,
            ca_pem: ca_cert.pem(),
            client_cert_pem,
            client_key_pem,
        };
        std::fs::write(pki.path("ca.pem"), &pki.ca_pem).expect("write CA");
        std::fs::write(pki.path("server.crt"), server_cert).expect("write cert");
        std::fs::write(pki.path("server.key"), server_key).expect("write key");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn settings(&self, verify_client: VerifyClient) -> TlsSettings {
        TlsSettings {
            certfile: self.path("server.crt"),
            keyfile: self.path("server.key"),
            keyfile_password: None,
            cafile: Some(self.path("ca.pem")),
            verify_client,
            ciphers: None,
        }
    }
}

/// A running HTTPS server.
struct Running {
    addr: SocketAddr,
    backend: Arc<FakeBackend>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(acceptor: TlsAcceptor) -> Running {
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster()));
    let listener = bind(
        &Address {
            host: "127.0.0.1".into(),
            port: 0,
        },
        5,
    )
    .await
    .expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(Arc::clone(&backend), ApiSettings::new("demo", "pg-0"));
    let task = tokio::spawn(serve_tls(listener, acceptor, app, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        backend,
        stop,
        task,
    }
}

/// Calls the server over TLS trusting `ca_pem`, with the client certificate if given.
async fn call(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    method: Method,
    path: &str,
) -> Result<(StatusCode, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())?
        }
    };
    call_with(config, "127.0.0.1", addr, method, path).await
}

/// Calls the server over TLS with `config`, asking for the server name `name`.
async fn call_with(
    config: rustls::ClientConfig,
    name: &str,
    addr: SocketAddr,
    method: Method,
    path: &str,
) -> Result<(StatusCode, String), String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-length", 0)
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// HTTPS with the server's CA works; a client trusting another CA fails the handshake; the
/// server stops on its signal.
#[tokio::test]
async fn https_serves_with_the_ca_and_stops() {
    let pki = Pki::new();
    let acceptor = pki
        .settings(VerifyClient::None)
        .acceptor()
        .expect("acceptor");
    let server = start(acceptor).await;
    {
        tracing::info!("--- GET and an unsafe POST without client certificates");
        let (status, body) = call(server.addr, &pki.ca_pem, None, Method::GET, "/patroni")
            .await
            .expect("HTTPS works");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"name\":\"pg-0\""), "{body}");
        let (status, body) = call(server.addr, &pki.ca_pem, None, Method::POST, "/reload")
            .await
            .expect("HTTPS works");
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::ACCEPTED, "reload scheduled")
        );
    }
    {
        tracing::info!("--- a client that does not trust the server's CA");
        let other = Pki::new();
        let result = call(server.addr, &other.ca_pem, None, Method::GET, "/patroni").await;
        assert!(result.is_err(), "{result:?}");
    }
    {
        tracing::info!("--- shutdown");
        server.stop.send(()).expect("server running");
        server
            .task
            .await
            .expect("no panic")
            .expect("clean shutdown");
        assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
    }
}

/// `verify_client: required` refuses a client without a certificate (or with one from
/// another CA) at the handshake, for every endpoint, and serves one with a good certificate.
#[tokio::test]
async fn required_client_certificates_are_enforced_at_handshake() {
    let pki = Pki::new();
    let acceptor = pki
        .settings(VerifyClient::Required)
        .acceptor()
        .expect("acceptor");
    let server = start(acceptor).await;
    let client = Some((pki.client_cert_pem.as_str(), pki.client_key_pem.as_str()));
    let result = call(server.addr, &pki.ca_pem, None, Method::GET, "/patroni").await;
    assert!(result.is_err(), "no certificate must fail: {result:?}");
    let stranger = Pki::new();
    let foreign = Some((
        stranger.client_cert_pem.as_str(),
        stranger.client_key_pem.as_str(),
    ));
    let result = call(server.addr, &pki.ca_pem, foreign, Method::GET, "/patroni").await;
    assert!(
        result.is_err(),
        "a certificate from another CA must fail: {result:?}"
    );
    let (status, _) = call(server.addr, &pki.ca_pem, client, Method::GET, "/patroni")
        .await
        .expect("a good certificate is served");
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(server.addr, &pki.ca_pem, client, Method::POST, "/reload")
        .await
        .expect("a good certificate is served");
    assert_eq!(status, StatusCode::ACCEPTED);
    let _ = server.stop.send(());
}

/// `verify_client: optional` serves safe endpoints without a certificate, but unsafe ones
/// answer 403 `client certificate required` unless a verified certificate was presented.
#[tokio::test]
async fn optional_client_certificates_guard_unsafe_endpoints() {
    let pki = Pki::new();
    let acceptor = pki
        .settings(VerifyClient::Optional)
        .acceptor()
        .expect("acceptor");
    let server = start(acceptor).await;
    let client = Some((pki.client_cert_pem.as_str(), pki.client_key_pem.as_str()));
    let (status, _) = call(server.addr, &pki.ca_pem, None, Method::GET, "/patroni")
        .await
        .expect("served without a certificate");
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(server.addr, &pki.ca_pem, None, Method::POST, "/reload")
        .await
        .expect("served without a certificate");
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, "client certificate required")
    );
    assert_eq!(server.backend.snapshot().reloads, 0);
    let (status, body) = call(server.addr, &pki.ca_pem, client, Method::POST, "/reload")
        .await
        .expect("served with a certificate");
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::ACCEPTED, "reload scheduled")
    );
    assert_eq!(server.backend.snapshot().reloads, 1);
    let _ = server.stop.send(());
}

/// Unusable settings fail with an error naming the `restapi` field.
#[tokio::test]
async fn bad_settings_name_their_field() {
    let pki = Pki::new();
    let message = |settings: TlsSettings| match settings.acceptor() {
        Ok(_) => String::from("accepted"),
        Err(e) => e.to_string(),
    };
    {
        tracing::info!("--- an encrypted key, with and without a password");
        std::fs::write(
            pki.path("enc.key"),
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .expect("write key");
        let mut settings = pki.settings(VerifyClient::None);
        settings.keyfile = pki.path("enc.key");
        settings.keyfile_password = Some("secret".into());
        let text = message(settings.clone());
        assert!(
            text.contains("restapi.keyfile") && text.contains("keyfile_password"),
            "{text}"
        );
        assert!(
            !text.contains("secret"),
            "the password is never shown: {text}"
        );
        settings.keyfile_password = None;
        assert!(matches!(
            settings.acceptor(),
            Err(TlsError::EncryptedKey { .. })
        ));
    }
    {
        tracing::info!("--- missing files, wrong contents, required without a CA");
        let mut settings = pki.settings(VerifyClient::None);
        settings.certfile = pki.path("missing.crt");
        assert!(message(settings).contains("restapi.certfile"));
        let mut settings = pki.settings(VerifyClient::None);
        settings.keyfile = pki.path("server.crt");
        assert!(message(settings).contains("restapi.keyfile"));
        let mut settings = pki.settings(VerifyClient::Required);
        settings.cafile = Some(pki.path("server.key"));
        assert!(message(settings).contains("restapi.cafile"));
        let mut settings = pki.settings(VerifyClient::Required);
        settings.cafile = None;
        assert!(message(settings).contains("restapi.cafile"));
        let mut settings = pki.settings(VerifyClient::None);
        settings.keyfile = Pki::new().path("server.key");
        std::fs::write(
            pki.path("other.key"),
            KeyPair::generate().expect("key").serialize_pem(),
        )
        .expect("write key");
        settings.keyfile = pki.path("other.key");
        let text = message(settings);
        assert!(
            text.contains("restapi.certfile") && text.contains("restapi.keyfile"),
            "{text}"
        );
    }
}

/// Without `certfile` TLS is off; with it, a key inside the certificate file is found when
/// `keyfile` is unset, as with Patroni.
#[test]
fn tls_follows_the_restapi_section() {
    let pki = Pki::new();
    let address = Address {
        host: "127.0.0.1".into(),
        port: 8008,
    };
    let mut cfg = RestApiConfig {
        listen: address.clone(),
        connect_address: address,
        authentication: None,
        certfile: None,
        keyfile: None,
        keyfile_password: None,
        cafile: None,
        ciphers: Some("HIGH:!aNULL".into()),
        verify_client: VerifyClient::None,
        allowlist: Vec::new(),
        allowlist_include_members: false,
        http_extra_headers: Default::default(),
        https_extra_headers: Default::default(),
        request_queue_size: 5,
        server_tokens: Default::default(),
    };
    assert!(matches!(tls_acceptor(&cfg), Ok(None)));
    let both = format!(
        "{}{}",
        std::fs::read_to_string(pki.path("server.crt")).expect("cert"),
        std::fs::read_to_string(pki.path("server.key")).expect("key")
    );
    std::fs::write(pki.path("both.pem"), both).expect("write");
    cfg.certfile = Some(pki.path("both.pem"));
    assert!(matches!(tls_acceptor(&cfg), Ok(Some(_))));
    let settings = TlsSettings::from_config(&cfg).expect("TLS on");
    assert_eq!(settings.keyfile, pki.path("both.pem"));
    // Distinctive: a random temporary path may well contain a short word such as "pw".
    cfg.keyfile_password = Some("Unlikely-Secret-7315".into());
    let settings = TlsSettings::from_config(&cfg).expect("TLS on");
    assert!(
        !format!("{settings:?}").contains("Unlikely-Secret-7315"),
        "Debug hides the password"
    );
}

/// The agent's peer client (`ClientTls` without host name checks, as Patroni's daemon) accepts
/// a server whose certificate is signed by the CA but names another host, and presents its
/// client certificate; a client checking host names refuses the same server; an insecure one
/// accepts it; one trusting another CA refuses it.
#[tokio::test]
async fn peer_client_verifies_the_chain_but_not_the_host_name() {
    let pki = Pki::new();
    std::fs::write(pki.path("client.crt"), &pki.client_cert_pem).expect("write client cert");
    std::fs::write(pki.path("client.key"), &pki.client_key_pem).expect("write client key");
    let acceptor = pki
        .settings(VerifyClient::Required)
        .acceptor()
        .expect("acceptor");
    let server = start(acceptor).await;
    let peer = ClientTls {
        insecure: false,
        verify_hostname: false,
        cacert: Some(pki.path("ca.pem")),
        certfile: Some(pki.path("client.crt")),
        keyfile: Some(pki.path("client.key")),
    };
    let config = peer.client_config().expect("client config");
    let (status, _) = call_with(config, "10.0.0.9", server.addr, Method::GET, "/patroni")
        .await
        .expect("served despite the name mismatch");
    assert_eq!(status, StatusCode::OK);
    let strict = ClientTls {
        verify_hostname: true,
        ..peer.clone()
    };
    let config = strict.client_config().expect("client config");
    let refused = call_with(config, "10.0.0.9", server.addr, Method::GET, "/patroni").await;
    assert!(refused.is_err(), "{refused:?}");
    let insecure = ClientTls {
        insecure: true,
        cacert: None,
        ..peer.clone()
    };
    let config = insecure.client_config().expect("client config");
    assert!(
        call_with(config, "10.0.0.9", server.addr, Method::GET, "/patroni")
            .await
            .is_ok()
    );
    let other = Pki::new();
    let wrong_ca = ClientTls {
        cacert: Some(other.path("ca.pem")),
        ..peer
    };
    let config = wrong_ca.client_config().expect("client config");
    let refused = call_with(config, "10.0.0.9", server.addr, Method::GET, "/patroni").await;
    assert!(refused.is_err(), "{refused:?}");
    let _ = server.stop.send(());
}

/// A self-signed client certificate marked as a CA (`openssl req -x509` makes them) is
/// accepted when it is itself in `cafile`, as OpenSSL (Patroni) accepts it; one that is not
/// in `cafile` is refused.
#[tokio::test]
async fn self_signed_ca_client_certificate_listed_in_cafile_is_accepted() {
    let self_signed = || {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["admin".to_string()]).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    };
    let pki = Pki::new();
    let (cert, key) = self_signed();
    std::fs::write(pki.path("ca.pem"), format!("{}{cert}", pki.ca_pem)).expect("write cafile");
    let acceptor = pki
        .settings(VerifyClient::Required)
        .acceptor()
        .expect("acceptor");
    let server = start(acceptor).await;
    let (status, _) = call(
        server.addr,
        &pki.ca_pem,
        Some((&cert, &key)),
        Method::POST,
        "/reload",
    )
    .await
    .expect("the listed self-signed certificate is served");
    assert_eq!(status, StatusCode::ACCEPTED);
    let (other_cert, other_key) = self_signed();
    let result = call(
        server.addr,
        &pki.ca_pem,
        Some((&other_cert, &other_key)),
        Method::GET,
        "/patroni",
    )
    .await;
    assert!(
        result.is_err(),
        "an unlisted self-signed certificate: {result:?}"
    );
    let _ = server.stop.send(());
}
