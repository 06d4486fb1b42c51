//! `PATCH /config` and `PUT /config` (rest-api.md §6): changing the dynamic configuration in
//! the DCS. `GET /config` is in `routes::cluster`.
//!
//! # Guarantees
//! `PATCH` writes conditionally on the version it read, so two concurrent patches never lose
//! one another's change silently: the loser gets 409 and may retry. Nothing is written when
//! the result equals what is stored (values compared as Patroni compares them, by `str()`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use crate::auth::Authorized;
use crate::backend::Backend;
use crate::body::read_object;
use crate::patch::{deep_compare, patch_config};
use crate::reply::Reply;
use crate::routes::{fresh_cluster, has_length};
use crate::server::AppState;

/// `PATCH /config`: deep-merges the body into the stored configuration. 503 when there is no
/// valid configuration in the DCS, 409 when the write loses its compare-and-swap (or fails,
/// as Patroni's Kubernetes DCS reports both as a refused write); 200 with the whole new
/// configuration.
pub(crate) async fn patch<B: Backend>(
    _: Authorized,
    State(state): State<AppState<B>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let patch = match read_object(has_length(&headers), &body, false) {
        Ok(object) => object.into_map(),
        Err(e) => return e.into(),
    };
    let cluster = match fresh_cluster(&*state.backend).await {
        Ok(cluster) => cluster,
        Err(reply) => return reply,
    };
    let Some(config) = cluster.config.filter(|c| c.modify_version.is_some()) else {
        return Reply::Error(StatusCode::SERVICE_UNAVAILABLE, None);
    };
    let mut data = config.data;
    if patch_config(&mut data, patch) {
        match state
            .backend
            .write_config(data.clone(), Some(config.version))
            .await
        {
            Ok(true) => tracing::info!("patched the dynamic configuration"),
            Ok(false) => return Reply::Error(StatusCode::CONFLICT, None),
            Err(e) => {
                tracing::warn!(
                    "failed to write the dynamic configuration: {}",
                    crate::backend::chain(&e)
                );
                return Reply::Error(StatusCode::CONFLICT, None);
            }
        }
    }
    Reply::json(StatusCode::OK, &data)
}

/// `PUT /config`: replaces the stored configuration with the body unless they are equal.
/// 502 when the write fails; 200 echoing the body.
pub(crate) async fn put<B: Backend>(
    _: Authorized,
    State(state): State<AppState<B>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let new = match read_object(has_length(&headers), &body, false) {
        Ok(object) => object.into_map(),
        Err(e) => return e.into(),
    };
    let cluster = match fresh_cluster(&*state.backend).await {
        Ok(cluster) => cluster,
        Err(reply) => return reply,
    };
    let same = cluster
        .config
        .as_ref()
        .is_some_and(|c| deep_compare(&new, &c.data));
    if !same {
        match state.backend.write_config(new.clone(), None).await {
            Ok(true) => tracing::info!("replaced the dynamic configuration"),
            Ok(false) => return Reply::Error(StatusCode::BAD_GATEWAY, None),
            Err(e) => {
                tracing::warn!(
                    "failed to write the dynamic configuration: {}",
                    crate::backend::chain(&e)
                );
                return Reply::Error(StatusCode::BAD_GATEWAY, None);
            }
        }
    }
    Reply::json(StatusCode::OK, &new)
}
