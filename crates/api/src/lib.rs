//! The member REST API of patroni-rs: Patroni 4.x's health checks, status document, cluster
//! information, metrics, and the unsafe endpoints (switchover/failover, `/config` changes,
//! restart, reload, reinitialize), with Patroni's paths, status codes, JSON and messages,
//! served with axum over HTTP or HTTPS.
//!
//! The agent implements [`Backend`] (status snapshot, cached and fresh cluster views, candidate
//! probe, writes of `/failover` and `/config`, restart, reload, reinitialize) and serves
//! [`router`] on `restapi.listen` with [`bind`] and [`serve`], or, when `restapi.certfile` is
//! set, with [`serve_tls`] and the acceptor of [`tls_acceptor`]. Which endpoints exist and
//! what each answers is listed in the `server` module doc; [`FakeBackend`] is the in-memory
//! backend for tests.
//!
//! ```no_run
//! # async fn example(status: patroni_api::NodeStatus) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use patroni_api::{ApiSettings, FakeBackend, HaSnapshot, bind, router, serve};
//!
//! let backend = Arc::new(FakeBackend::new(status, HaSnapshot::new(Duration::from_secs(30))));
//! let app = router(backend, ApiSettings::new("demo", "pg-0"));
//! let listen = patroni_config::Address { host: "127.0.0.1".into(), port: 8008 };
//! serve(bind(&listen, 5).await?, app, std::future::pending()).await
//! # }
//! ```

mod auth;
mod backend;
mod backup;
mod body;
mod client_tls;
mod client_verifier;
mod dynamic;
mod failover;
mod metrics;
mod model;
mod node;
mod patch;
mod reply;
mod restart;
mod routes;
mod schedule;
mod server;
mod tls;
mod units;
mod url;

pub use auth::{AccessPolicy, Denied, IpNet, ParseIpNetError};
pub use backup::{BackupRun, BackupStart, BackupStatus};
pub use backend::{
    Backend, BackendError, FailoverKey, FailsafeCall, FakeBackend, FakeReaction, FakeState,
    HaSnapshot, ReinitializeRequest, RestartOutcome, RestartRequest,
};
pub use client_tls::{ClientTls, ClientTlsError};
pub use dynamic::{DEFAULT_LOOP_WAIT, DEFAULT_MAXIMUM_LAG_ON_FAILOVER, GlobalFlags};
pub use metrics::render_metrics;
pub use model::{
    ClusterDocument, ClusterView, MemberDocument, Reported, ScheduledSwitchover, StatusDocument,
};
pub use node::{NodeStatus, ParamChange, PatroniInfo, ReplicationRow, Xlog};
pub use server::{ApiSettings, HANDSHAKE_TIMEOUT, InvalidHeader, bind, router, serve, serve_tls};
pub use tls::{ClientCert, TlsAcceptor, TlsError, TlsSettings, tls_acceptor};
