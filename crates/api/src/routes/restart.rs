//! `POST /restart` and `DELETE /restart` (rest-api.md §6.1): restarting PostgreSQL now, or
//! scheduling and cancelling a restart.
//!
//! # Guarantees
//! An immediate restart holds the request until the backend reports how it ended, as
//! Patroni does; if the client goes away the restart still runs to its end in the agent.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use crate::auth::Authorized;
use crate::backend::Backend;
use crate::body::read_object;
use crate::dynamic::GlobalFlags;
use crate::reply::Reply;
use crate::restart::validate;
use crate::routes::{fresh_cluster, has_length};
use crate::server::AppState;

/// `POST /restart`: body optional. 202 `Restart scheduled` / 409 with `schedule`; otherwise
/// the outcome of the restart (200 / 503); 400, 422, 500 for a refused body.
pub(crate) async fn post<B: Backend>(
    _: Authorized,
    State(state): State<AppState<B>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let body = match read_object(has_length(&headers), &body, true) {
        Ok(object) => object,
        Err(e) => return e.into(),
    };
    if !body.is_empty() {
        tracing::debug!(?body, "received restart request");
    }
    let cluster = match fresh_cluster(&*state.backend).await {
        Ok(cluster) => cluster,
        Err(reply) => return reply,
    };
    let backend = &*state.backend;
    let paused = GlobalFlags::resolve(Some(&cluster), &backend.ha().global).paused;
    let request = match validate(body, paused, backend.now()) {
        Ok(request) => request,
        Err(rejection) => return rejection.into(),
    };
    if request.schedule.is_some() {
        if backend.schedule_restart(request).await {
            tracing::info!("restart scheduled");
            Reply::text(StatusCode::ACCEPTED, "Restart scheduled")
        } else {
            Reply::text(StatusCode::CONFLICT, "Another restart is already scheduled")
        }
    } else {
        let outcome = backend.restart(request).await;
        tracing::info!(?outcome, "restart requested through the API");
        outcome.into()
    }
}

/// `DELETE /restart`: 200 `scheduled restart deleted` / 404 `no restarts are scheduled`.
pub(crate) async fn delete<B: Backend>(_: Authorized, State(state): State<AppState<B>>) -> Reply {
    if state.backend.cancel_scheduled_restart().await {
        tracing::info!("scheduled restart deleted");
        Reply::text(StatusCode::OK, "scheduled restart deleted")
    } else {
        Reply::text(StatusCode::NOT_FOUND, "no restarts are scheduled")
    }
}
