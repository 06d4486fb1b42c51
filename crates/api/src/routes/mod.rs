//! Request handlers, one module per route group. Each handler gathers its input from the
//! request and the [`Backend`](crate::Backend), calls a pure function for the decision, and
//! returns a [`Reply`](crate::reply::Reply).

pub(crate) mod backup;
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod failsafe;
pub(crate) mod health;
pub(crate) mod member;
pub(crate) mod metrics;
pub(crate) mod restart;
pub(crate) mod status;
pub(crate) mod switchover;

use axum::http::{HeaderMap, StatusCode, header};
use patroni_core::Cluster;

use crate::backend::Backend;
use crate::reply::Reply;

/// Reads the cluster from the DCS now; a failure is logged and answered 503, as the other
/// handlers that need a fresh view answer it.
pub(crate) async fn fresh_cluster<B: Backend>(backend: &B) -> Result<Cluster, Reply> {
    backend.read_cluster().await.map_err(|e| {
        tracing::warn!(
            "failed to read the cluster from the DCS: {}",
            crate::backend::chain(&e)
        );
        Reply::Error(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("failed to read the cluster from the DCS".into()),
        )
    })
}

/// Whether the request says how long its body is (Patroni answers 411 otherwise).
pub(crate) fn has_length(headers: &HeaderMap) -> bool {
    headers.contains_key(header::CONTENT_LENGTH)
}
