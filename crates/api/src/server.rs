//! The REST API server: the router, the per-request middleware, binding and serving.
//!
//! # Routing
//! As Patroni: the method and the *first path segment* pick a dedicated handler
//! (`GET /patroni/anything` is `GET /patroni`). Every other `GET`, `HEAD` or `OPTIONS` is a
//! health check of the whole path; any other method without a handler is 501.
//! `HEAD` and `OPTIONS` always run the health check, even on paths with a `GET` handler
//! (`HEAD /patroni` is the health check of `/patroni`, so 503), and answer with the status only.
//!
//! # Endpoints
//! | request | handler | answer |
//! |---|---|---|
//! | `GET /`, `/primary`, `/master`, `/read-write` | `routes::health` | 200 if this member is the primary holding the lock, else 503; body: status document |
//! | `GET /leader` | `routes::health` | 200 if this member holds the lock (primary or standby leader) |
//! | `GET /standby-leader`, `/standby_leader` | `routes::health` | 200 if this member holds the lock in a standby cluster |
//! | `GET /replica?lag=&replication_state=&tag_k=v` | `routes::health` | 200 if a running replica, not `noloadbalance`, within `lag`, matching the filters |
//! | `GET /read-only` | `routes::health` | 200 if leader (primary or standby leader), else as `/replica` |
//! | `GET /synchronous`, `/sync` | `routes::health` | 200 if a synchronous standby, as `/replica` |
//! | `GET /read-only-sync`, `/read-only-synchronous` | `routes::health` | 200 if leader, else as `/sync` |
//! | `GET /quorum`, `/read-only-quorum` | `routes::health` | as `/sync`, `/read-only-sync`, for quorum standbys |
//! | `GET /asynchronous`, `/async` | `routes::health` | 200 if neither sync nor quorum standby, as `/replica` |
//! | `GET /health` | `routes::health` | 200 if PostgreSQL is running |
//! | `GET` any other path | `routes::health` | 503 with the status document |
//! | `HEAD`, `OPTIONS` any path | `routes::health` | the health check's status, no body |
//! | `GET /liveness` | `routes::health` | status only: 200 while the HA loop is on time (`ttl` on a running primary, `2*ttl` otherwise) or paused |
//! | `GET /readiness?lag=&mode=apply\|write` | `routes::health` | status only: 200 if leader, or a streaming replica within `lag` (default `maximum_lag_on_failover`) |
//! | `GET /patroni` | `routes::status` | 200 + status document |
//! | `GET /cluster` | `routes::cluster` | 200 + members, roles, lags (fresh DCS read; 503 if it fails) |
//! | `GET /history` | `routes::cluster` | 200 + timeline history (`[]` if none) |
//! | `GET /config` | `routes::cluster` | 200 + dynamic configuration; 502 if there is no valid one |
//! | `PATCH /config` | `routes::config` | deep-merges the body into `/config` (CAS): 200 + new configuration; 503 no valid configuration; 409 lost CAS |
//! | `PUT /config` | `routes::config` | replaces `/config` unless equal: 200 + body; 502 if the write fails |
//! | `GET /metrics` | `routes::metrics` | 200 + Prometheus text (`crate::metrics`) |
//! | `POST /restart` | `routes::restart` | restart now (200 / 503) or scheduled (202, 409 if one is); 400/422/500 for refused filters |
//! | `DELETE /restart` | `routes::restart` | cancels the scheduled restart: 200, 404 if none |
//! | `POST /reload` | `routes::member` | 202 `reload scheduled` |
//! | `POST /reinitialize` | `routes::member` | 200 `reinitialize started`; 503 with the agent's refusal |
//! | `POST /switchover` | `routes::switchover` | switchover now (200 after the leader changed) or scheduled (202); 400/412/422/503 with Patroni's messages |
//! | `POST /failover` | `routes::switchover` | failover to a candidate, as `/switchover` |
//! | `DELETE /switchover` | `routes::switchover` | cancels a scheduled switchover: 200, 404 if none, 409 on conflict |
//! | `GET /failsafe` | `routes::failsafe` | 200 + failsafe topology `{member: api_url}`; 502 if none |
//! | `POST /failsafe` | `routes::failsafe` | a primary's call through a DCS outage: 200 `Accepted` (+ `lsn` header), 500 `Running as a leader`, 502 without failsafe mode |
//! | any other method and path | `routes::health` | 501 `Unsupported method` |
//!
//! Unsafe endpoints (`POST`, `PATCH`, `PUT`, `DELETE`) pass [`AccessPolicy`] first: 403 / 401.
//! `POST /failsafe` leaves the members' hosts out of the allowlist check, as Patroni does.
//! Not served yet (501 here, unlike Patroni): `POST /mpp`, `POST /sigterm`.
//!
//! # Guarantees
//! Every request runs in its own `api` span carrying `scope`, `member`, `method`, `path` and,
//! once known, `status`. Nothing reachable from a request panics; a stalled backend call
//! stalls only its request.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use patroni_config::model::restapi::ServerTokens;
use patroni_config::{Address, RestApiConfig};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt as _;
use tracing::Instrument as _;

use crate::auth::AccessPolicy;
use crate::backend::Backend;
use crate::reply::ReplyKind;
use crate::routes::{
    backup, cluster, config, failsafe, health, member, metrics, restart, status, switchover,
};
use crate::tls::{ClientCert, TlsAcceptor};

/// How the server presents itself and whom it lets in.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Cluster name (span field, `/cluster` `scope`).
    pub scope: String,
    /// This member's name (span field).
    pub member: String,
    /// `Server` header value; `None` sends none (`server_tokens: original`).
    pub server_header: Option<HeaderValue>,
    /// `restapi.http_extra_headers`, added to every written answer.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Who may call the unsafe endpoints.
    pub access: AccessPolicy,
}

/// An invalid `http_extra_headers` or `https_extra_headers` entry.
#[derive(Debug, thiserror::Error)]
#[error("invalid http_extra_headers/https_extra_headers entry {name:?}")]
pub struct InvalidHeader {
    /// The header's configured name.
    pub name: String,
}

/// What every handler gets: the backend and the settings.
pub(crate) struct AppState<B> {
    /// The agent.
    pub backend: Arc<B>,
    /// The server settings.
    pub settings: Arc<ApiSettings>,
}

impl<B> Clone for AppState<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
            settings: Arc::clone(&self.settings),
        }
    }
}

// === impl ApiSettings ===

impl ApiSettings {
    /// Settings with no `Server` header, no extra headers and open access.
    pub fn new(scope: impl Into<String>, member: impl Into<String>) -> Self {
        Self {
            scope: scope.into(),
            member: member.into(),
            server_header: None,
            extra_headers: Vec::new(),
            access: AccessPolicy::open(),
        }
    }

    /// The settings of a `restapi` section; `version` is the Patroni version reported (for
    /// `server_tokens: minimal`). Resolves allowlist host names. With TLS on (`certfile`),
    /// `https_extra_headers` follow `http_extra_headers`.
    ///
    /// # Errors
    /// [`InvalidHeader`] when an `http_extra_headers` name or value is not valid HTTP.
    pub async fn try_from_config(
        cfg: &RestApiConfig,
        version: &str,
        scope: impl Into<String>,
        member: impl Into<String>,
    ) -> Result<Self, InvalidHeader> {
        // Patroni adds `https_extra_headers` after the HTTP ones when TLS is on.
        let https = cfg.certfile.is_some().then_some(&cfg.https_extra_headers);
        let extra_headers = cfg
            .http_extra_headers
            .iter()
            .chain(https.into_iter().flatten())
            .map(|(name, value)| {
                let invalid = || InvalidHeader { name: name.clone() };
                Ok((
                    HeaderName::try_from(name.as_str()).map_err(|_| invalid())?,
                    HeaderValue::try_from(value.as_str()).map_err(|_| invalid())?,
                ))
            })
            .collect::<Result<_, InvalidHeader>>()?;
        Ok(Self::new(scope, member)
            .with_server_tokens(cfg.server_tokens, version)
            .with_extra_headers(extra_headers)
            .with_access(AccessPolicy::from_config(cfg).await))
    }

    /// Sets the `Server` header as `restapi.server_tokens` says: `original` sends none,
    /// `productonly` sends `Patroni`, `minimal` sends `Patroni/<version>`.
    pub fn with_server_tokens(mut self, tokens: ServerTokens, version: &str) -> Self {
        self.server_header = match tokens {
            ServerTokens::Original => None,
            ServerTokens::ProductOnly => Some(HeaderValue::from_static("Patroni")),
            ServerTokens::Minimal => HeaderValue::try_from(format!("Patroni/{version}")).ok(),
        };
        self
    }

    /// Sets the headers added to every written answer.
    pub fn with_extra_headers(mut self, headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        self.extra_headers = headers;
        self
    }

    /// Sets the access policy of the unsafe endpoints.
    pub fn with_access(mut self, access: AccessPolicy) -> Self {
        self.access = access;
        self
    }
}

/// The API as an axum router, every endpoint of the module doc, with the per-request span and
/// response headers.
pub fn router<B: Backend>(backend: Arc<B>, settings: ApiSettings) -> Router {
    let settings = Arc::new(settings);
    let state = AppState {
        backend,
        settings: Arc::clone(&settings),
    };
    let routes = Router::new();
    let routes = group(routes, "patroni", get(status::get_patroni::<B>));
    let routes = group(routes, "cluster", get(cluster::get_cluster::<B>));
    let routes = group(routes, "history", get(cluster::get_history::<B>));
    let routes = group(
        routes,
        "config",
        get(cluster::get_config::<B>)
            .patch(config::patch::<B>)
            .put(config::put::<B>),
    );
    let routes = group(routes, "metrics", get(metrics::get_metrics::<B>));
    let routes = group(
        routes,
        "restart",
        post(restart::post::<B>).delete(restart::delete::<B>),
    );
    let routes = group(routes, "reload", post(member::post_reload::<B>));
    let routes = group(routes, "reinitialize", post(member::post_reinitialize::<B>));
    let routes = group(routes, "liveness", get(health::liveness::<B>));
    let routes = group(routes, "readiness", get(health::readiness::<B>));
    let routes = group(
        routes,
        "switchover",
        post(switchover::post_switchover::<B>).delete(switchover::delete_switchover::<B>),
    );
    let routes = group(routes, "failover", post(switchover::post_failover::<B>));
    let routes = group(
        routes,
        "backup",
        get(backup::get::<B>).post(backup::post::<B>),
    );
    let routes = group(
        routes,
        "failsafe",
        get(failsafe::get::<B>).post(failsafe::post::<B>),
    );
    routes
        .fallback(health::fallback::<B>)
        .with_state(state)
        .layer(middleware::from_fn_with_state(settings, observe))
}

/// Routes `/{segment}` and everything below it to `methods`; `HEAD`, `OPTIONS` and methods
/// without a handler go to the health-check fallback, as in Patroni.
fn group<B: Backend>(
    routes: Router<AppState<B>>,
    segment: &str,
    methods: MethodRouter<AppState<B>>,
) -> Router<AppState<B>> {
    // `get` also answers HEAD unless HEAD has its own handler, set after it.
    let methods = methods
        .head(health::fallback::<B>)
        .fallback(health::fallback::<B>);
    routes
        .route(&format!("/{segment}"), methods.clone())
        .route(&format!("/{segment}/"), methods.clone())
        .route(&format!("/{segment}/{{*rest}}"), methods)
}

/// Runs each request in its own span and adds the configured headers to its response.
async fn observe(
    State(settings): State<Arc<ApiSettings>>,
    request: Request,
    next: Next,
) -> Response {
    let span = tracing::info_span!(
        "api",
        scope = %settings.scope,
        member = %settings.member,
        method = %request.method(),
        path = %request.uri().path(),
        status = tracing::field::Empty,
    );
    async move {
        let mut response = next.run(request).await;
        let kind = response.extensions().get::<ReplyKind>().copied();
        let headers = response.headers_mut();
        if kind == Some(ReplyKind::Written) {
            for (name, value) in &settings.extra_headers {
                headers.append(name.clone(), value.clone());
            }
        }
        if kind != Some(ReplyKind::StatusOnly)
            && let Some(server) = &settings.server_header
        {
            headers.insert(header::SERVER, server.clone());
        }
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        tracing::debug!(status, "handled request");
        response
    }
    .instrument(span)
    .await
}

/// Binds `restapi.listen` with `backlog` (`request_queue_size`). An empty host or `*` means
/// every interface, dual-stack when the system allows, else IPv4.
///
/// # Errors
/// The I/O error of the last address tried, or `AddrNotAvailable` if the host resolves to
/// nothing.
pub async fn bind(listen: &Address, backlog: u32) -> io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = if listen.host.is_empty() || listen.host == "*" {
        vec![
            SocketAddr::from(([0u16; 8], listen.port)),
            SocketAddr::from(([0u8; 4], listen.port)),
        ]
    } else {
        tokio::net::lookup_host((listen.host.as_str(), listen.port))
            .await?
            .collect()
    };
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to bind");
    for addr in addrs {
        match bind_one(addr, backlog) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Binds one address (reusing it, close-on-exec as Rust sockets always are).
fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `app` over plain HTTP on `listener` until `shutdown` completes, then finishes the
/// requests in flight. Handlers see the client address (for the allowlist). See
/// [`serve_tls`] for HTTPS.
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves `app` over HTTPS on `listener` until `shutdown` completes, then lets the requests in
/// flight finish and returns once every connection is closed. The same router as [`serve`]:
/// handlers see the client address and, as a [`ClientCert`] extension, whether the client
/// presented a verified certificate (for `verify_client: optional`).
///
/// A client whose handshake fails or takes longer than [`HANDSHAKE_TIMEOUT`] is dropped and
/// logged at DEBUG; it never affects other connections. Connections speak HTTP/1.x.
///
/// # Errors
/// None today (accept errors are logged and retried); `io::Result` mirrors [`serve`].
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` returns `None` once all are gone.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("failed to accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let connection = TlsConnection {
            acceptor: acceptor.clone(),
            app: app.clone(),
            stop: stop_rx.clone(),
            _open: open_tx.clone(),
        };
        tokio::spawn(connection.serve(tcp, peer));
    }
    drop(listener);
    // No receiver left is fine: then no connection is open.
    let _ = stop_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
    Ok(())
}

/// Longest a TLS handshake may take (a client that connects and says nothing).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (e.g. `EMFILE`) before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// One accepted TCP connection of [`serve_tls`].
struct TlsConnection {
    acceptor: TlsAcceptor,
    app: Router,
    /// Becomes `true` when the server shuts down.
    stop: watch::Receiver<bool>,
    /// Dropped when the connection ends; [`serve_tls`] waits for all of them.
    _open: mpsc::Sender<()>,
}

// === impl TlsConnection ===

impl TlsConnection {
    /// Handshakes, then serves HTTP/1 on the stream until the client closes it or the server
    /// stops (then gracefully: the request in flight finishes).
    async fn serve(mut self, tcp: tokio::net::TcpStream, peer: SocketAddr) {
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.inner.accept(tcp));
        let tls = tokio::select! {
            () = stopped(&mut self.stop) => return,
            result = handshake => match result {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
        };
        let cert = if !self.acceptor.asks_client_cert {
            ClientCert::NotAsked
        } else if tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|certs| !certs.is_empty())
        {
            ClientCert::Verified
        } else {
            ClientCert::Missing
        };
        let app = self.app;
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(cert);
            app.clone().oneshot(request)
        });
        let connection =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
        let mut connection = std::pin::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stopped(&mut self.stop) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, "HTTPS connection ended with an error: {e}");
        }
    }
}

/// Completes once the server shuts down (or can no longer tell, which means it has).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}
