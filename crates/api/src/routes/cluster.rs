//! Cluster-wide information: `GET /cluster` (members, roles and lags, from a fresh DCS
//! read), `GET /history` (timeline history) and `GET /config` (dynamic configuration).
//!
//! `/history` and `/config` answer from the cached view when it is valid and read the DCS
//! otherwise, as Patroni does. When the DCS cannot be read, Patroni drops the connection;
//! here the answer is a 503 error page.

use axum::extract::State;
use axum::http::StatusCode;
use patroni_core::Cluster;
use serde_json::Value;

use crate::backend::{Backend, BackendError};
use crate::dynamic::GlobalFlags;
use crate::model::{ClusterDocument, ClusterView};
use crate::reply::Reply;
use crate::server::AppState;

/// `GET /cluster`.
pub(crate) async fn get_cluster<B: Backend>(State(state): State<AppState<B>>) -> Reply {
    match state.backend.read_cluster().await {
        Ok(cluster) => {
            let flags = GlobalFlags::resolve(Some(&cluster), &state.backend.ha().global);
            let view = ClusterView {
                cluster: &cluster,
                flags: &flags,
                scope: &state.settings.scope,
            };
            Reply::json(StatusCode::OK, &ClusterDocument::from(view))
        }
        Err(e) => dcs_unavailable(&e),
    }
}

/// `GET /history`: `[[timeline, lsn, reason, timestamp, new_leader], ...]`, `[]` if none.
pub(crate) async fn get_history<B: Backend>(State(state): State<AppState<B>>) -> Reply {
    match cached_or_read(&*state.backend).await {
        Ok(cluster) => {
            let lines: Vec<Value> = cluster.history.map(|h| h.lines).unwrap_or_default();
            Reply::json(StatusCode::OK, &lines)
        }
        Err(e) => dcs_unavailable(&e),
    }
}

/// `GET /config`: the `/config` document when valid (`modify_version` set), else 502.
pub(crate) async fn get_config<B: Backend>(State(state): State<AppState<B>>) -> Reply {
    match cached_or_read(&*state.backend).await {
        Ok(Cluster {
            config: Some(config),
            ..
        }) if config.modify_version.is_some() => Reply::json(StatusCode::OK, &config.data),
        Ok(_) => Reply::Error(StatusCode::BAD_GATEWAY, None),
        Err(e) => dcs_unavailable(&e),
    }
}

/// The cached view, or a fresh read when there is none.
async fn cached_or_read<B: Backend>(backend: &B) -> Result<Cluster, BackendError> {
    match backend.cached_cluster() {
        Some(cluster) => Ok(cluster),
        None => backend.read_cluster().await,
    }
}

/// The answer when the DCS cannot be read; logged here, where it is handled.
fn dcs_unavailable(e: &BackendError) -> Reply {
    tracing::warn!(
        "failed to read the cluster from the DCS: {}",
        crate::backend::chain(e)
    );
    Reply::Error(
        StatusCode::SERVICE_UNAVAILABLE,
        Some("failed to read the cluster from the DCS".into()),
    )
}
