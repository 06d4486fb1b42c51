//! `GET /patroni`: the status document of this member, always 200.
//!
//! Unlike the health checks, the status query is retried on connection errors (the backend
//! bounds how long), so a briefly busy PostgreSQL still gets a full document.

use axum::extract::State;
use axum::http::StatusCode;

use crate::backend::Backend;
use crate::model::StatusDocument;
use crate::reply::Reply;
use crate::server::AppState;

/// `GET /patroni`.
pub(crate) async fn get_patroni<B: Backend>(State(state): State<AppState<B>>) -> Reply {
    let status = state.backend.status(true).await;
    Reply::json(StatusCode::OK, &StatusDocument::from(&status))
}
