//! `POST /reload` and `POST /reinitialize` (rest-api.md §6): actions on this member that the
//! agent carries out in its HA loop.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use crate::auth::Authorized;
use crate::backend::{Backend, ReinitializeRequest};
use crate::body::read_object;
use crate::reply::Reply;
use crate::routes::has_length;
use crate::server::AppState;
use crate::units::parse_bool;

/// `POST /reload`: schedules a reload of the local configuration; always 202.
pub(crate) async fn post_reload<B: Backend>(
    _: Authorized,
    State(state): State<AppState<B>>,
) -> Reply {
    state.backend.reload().await;
    tracing::info!("reload scheduled through the API");
    Reply::text(StatusCode::ACCEPTED, "reload scheduled")
}

/// `POST /reinitialize`: body optional, `force` and `from_leader` read with Patroni's
/// `parse_bool` (`true`, `"on"`, `"yes"`, `1`). 200 `reinitialize started`, or 503 with the
/// backend's refusal.
///
/// Unlike Patroni, an unusable body is only answered 400: Patroni answers 400 and then
/// reinitialises anyway with both flags off, writing a second response.
pub(crate) async fn post_reinitialize<B: Backend>(
    _: Authorized,
    State(state): State<AppState<B>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let body = match read_object(has_length(&headers), &body, true) {
        Ok(object) => object.into_map(),
        Err(e) => return e.into(),
    };
    let flag = |key: &str| body.get(key).and_then(parse_bool).unwrap_or(false);
    let request = ReinitializeRequest {
        force: flag("force"),
        from_leader: flag("from_leader"),
    };
    match state.backend.reinitialize(request).await {
        Ok(()) => {
            tracing::info!(?request, "reinitialize started through the API");
            Reply::text(StatusCode::OK, "reinitialize started")
        }
        Err(refusal) => Reply::text(StatusCode::SERVICE_UNAVAILABLE, refusal),
    }
}
