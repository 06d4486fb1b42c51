//! `GET /metrics`: Prometheus text from [`render_metrics`](crate::render_metrics).

use axum::extract::State;
use axum::http::StatusCode;

use crate::backend::Backend;
use crate::metrics::render_metrics;
use crate::reply::Reply;
use crate::server::AppState;

/// `GET /metrics`: always 200, `text/plain`. The status query is retried, as Patroni's.
pub(crate) async fn get_metrics<B: Backend>(State(state): State<AppState<B>>) -> Reply {
    let status = state.backend.status(true).await;
    let ha = state.backend.ha();
    let cluster = state.backend.cached_cluster();
    let mut text = render_metrics(&status, &ha, cluster.as_ref());
    if let Some(backup) = state.backend.backup_status() {
        let labels = format!(
            "{{scope=\"{}\",name=\"{}\"}}",
            crate::metrics::escape(&status.patroni.scope),
            crate::metrics::escape(&status.patroni.name)
        );
        text.push_str(&crate::backup::render(&backup, &labels));
    }
    Reply::Plain(StatusCode::OK, text)
}
