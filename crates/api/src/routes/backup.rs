//! `GET /backup` and `POST /backup` (patroni-rs only, docs/backups.md): the leader's scheduled
//! base backups, and starting one now.

use axum::extract::State;
use axum::http::StatusCode;

use crate::auth::Authorized;
use crate::backend::Backend;
use crate::backup::BackupStart;
use crate::reply::Reply;
use crate::server::AppState;

const NOT_CONFIGURED: &str = "backups are not configured (no backup section)";

/// `GET /backup`: 200 with the schedule's state, 503 without a `backup` section.
pub(crate) async fn get<B: Backend>(State(state): State<AppState<B>>) -> Reply {
    match state.backend.backup_status() {
        Some(status) => Reply::json(StatusCode::OK, &status),
        None => Reply::text(StatusCode::SERVICE_UNAVAILABLE, NOT_CONFIGURED),
    }
}

/// `POST /backup`: 202 `backup started`; 503 when this member is not the leader or backups are
/// not configured; 409 while one runs.
pub(crate) async fn post<B: Backend>(_: Authorized, State(state): State<AppState<B>>) -> Reply {
    match state.backend.start_backup() {
        BackupStart::Started => {
            tracing::info!("base backup started through the API");
            Reply::text(StatusCode::ACCEPTED, "backup started")
        }
        BackupStart::NotLeader => Reply::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not the leader: base backups run on the leader",
        ),
        BackupStart::Running(since) => Reply::text(
            StatusCode::CONFLICT,
            format!("a backup is running since {since}"),
        ),
        BackupStart::NotConfigured => Reply::text(StatusCode::SERVICE_UNAVAILABLE, NOT_CONFIGURED),
    }
}
