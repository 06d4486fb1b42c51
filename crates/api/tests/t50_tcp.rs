//! The server on a real TCP listener, called with a real HTTP client: it binds, serves, sees
//! the client address, and stops on its shutdown signal.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use patroni_api::{
    AccessPolicy, ApiSettings, FakeBackend, FakeReaction, IpNet, bind, router, serve,
};
use patroni_config::Address;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server: its address, its stop signal and its task.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(host: &str, settings: ApiSettings) -> Running {
    let backend = FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster());
    backend.update(|s| s.reaction = FakeReaction::Promote);
    let listener = bind(
        &Address {
            host: host.into(),
            port: 0,
        },
        5,
    )
    .await
    .expect("bind an ephemeral port");
    let port = listener.local_addr().expect("bound").port();
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(Arc::new(backend), settings);
    let task = tokio::spawn(serve(listener, app, async move {
        let _ = stopped.await;
    }));
    Running {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        stop,
        task,
    }
}

async fn call(addr: SocketAddr, method: Method, path: &str, body: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-length", body.len())
        .body(Body::from(body.to_owned()))
        .expect("valid request");
    let response = client.request(request).await.expect("server answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The API answers over TCP: status document, health checks, a switchover, then it stops.
#[tokio::test]
async fn serves_over_tcp_and_stops_on_signal() {
    let server = start("127.0.0.1", ApiSettings::new("demo", "pg-0")).await;
    {
        tracing::info!("--- GET endpoints");
        let (status, body) = call(server.addr, Method::GET, "/patroni", "").await;
        assert_eq!(status, StatusCode::OK);
        let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(doc["patroni"]["name"], "pg-0");
        assert_eq!(
            call(server.addr, Method::GET, "/primary", "").await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(server.addr, Method::GET, "/replica", "").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    {
        tracing::info!("--- a switchover");
        let (status, body) = call(
            server.addr,
            Method::POST,
            "/switchover",
            r#"{"leader":"pg-0","candidate":"pg-1"}"#,
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "Successfully switched over to \"pg-1\"")
        );
    }
    {
        tracing::info!("--- shutdown");
        server.stop.send(()).expect("server running");
        server
            .task
            .await
            .expect("no panic")
            .expect("clean shutdown");
        assert!(
            tokio::net::TcpStream::connect(server.addr).await.is_err(),
            "listener closed"
        );
    }
}

/// HAProxy-style checks over a raw socket get a status line and no body.
#[tokio::test]
async fn options_check_over_raw_socket_has_no_body() {
    let server = start("", ApiSettings::new("demo", "pg-0")).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"OPTIONS /primary HTTP/1.0\r\n\r\n")
        .await
        .expect("send");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("read until close");
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "no body: {answer:?}");
    let _ = server.stop.send(());
}

/// The allowlist sees the real peer address of the TCP connection.
#[tokio::test]
async fn allowlist_sees_the_real_peer_address() {
    let loopback: IpNet = "127.0.0.0/8".parse().expect("valid");
    let elsewhere: IpNet = "10.0.0.0/8".parse().expect("valid");
    let body = r#"{"leader":"pg-0","candidate":"pg-1"}"#;
    for (net, want) in [
        (loopback, StatusCode::OK),
        (elsewhere, StatusCode::FORBIDDEN),
    ] {
        let settings = ApiSettings::new("demo", "pg-0")
            .with_access(AccessPolicy::open().with_allowlist([net]));
        let server = start("127.0.0.1", settings).await;
        assert_eq!(
            call(server.addr, Method::POST, "/switchover", body).await.0,
            want,
            "{net:?}"
        );
        let _ = server.stop.send(());
    }
}
