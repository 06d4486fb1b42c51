//! `POST /switchover`, `POST /failover` and `DELETE /switchover` (rest-api.md §6.2).
//!
//! A request is checked ([`crate::failover`]), candidates are probed, the `/failover` key is
//! written and, unless scheduled, the DCS is polled once a second for
//! `2 * max(10, loop_wait)` seconds until the lock moves or the key disappears.
//!
//! # Guarantees
//! The poll only observes: if the client goes away mid-poll the request is dropped, the key
//! stays written and the HA loop still acts on it, as with Patroni.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};

use crate::auth::Authorized;
use crate::backend::{Backend, FailoverKey};
use crate::dynamic::GlobalFlags;
use crate::failover::{self, Action, Outcome};
use crate::reply::Reply;
use crate::server::AppState;

/// Interval between two reads of the DCS while waiting for the new leader (Patroni's 1 s).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The wait for a new leader is `2 * max(MIN_POLL_LOOP_WAIT, loop_wait)` seconds.
const MIN_POLL_LOOP_WAIT: u64 = 10;

/// `POST /switchover`.
pub(crate) async fn post_switchover<B: Backend>(
    _: Authorized,
    State(state): State<AppState<B>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    manual_failover(&*state.backend, Action::Switchover, &headers, &body)
        .await
        .into()
}

/// `POST /failover`.
pub(crate) async fn post_failover<B: Backend>(
    _: Authorized,
    State(state): State<AppState<B>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    manual_failover(&*state.backend, Action::Failover, &headers, &body)
        .await
        .into()
}

/// `DELETE /switchover`: cancels a scheduled switchover (compare-and-swap on the key).
pub(crate) async fn delete_switchover<B: Backend>(
    _: Authorized,
    State(state): State<AppState<B>>,
) -> Reply {
    let cluster = match state.backend.read_cluster().await {
        Ok(cluster) => cluster,
        Err(e) => {
            tracing::warn!(
                "failed to read the cluster from the DCS: {}",
                crate::backend::chain(&e)
            );
            return Outcome::DcsUnavailable.into();
        }
    };
    let scheduled = cluster
        .failover
        .filter(|f| f.scheduled_at.as_deref().is_some_and(|s| !s.is_empty()));
    let Some(failover) = scheduled else {
        return Reply::text(StatusCode::NOT_FOUND, "no switchover is scheduled");
    };
    match state
        .backend
        .write_failover(FailoverKey::default(), Some(failover.version))
        .await
    {
        Ok(true) => {
            tracing::info!("scheduled switchover deleted");
            Reply::text(StatusCode::OK, "scheduled switchover deleted")
        }
        Ok(false) => Reply::Error(StatusCode::CONFLICT, None),
        Err(e) => {
            tracing::warn!(
                "failed to clear the failover key: {}",
                crate::backend::chain(&e)
            );
            Reply::Error(StatusCode::SERVICE_UNAVAILABLE, None)
        }
    }
}

/// Runs a switchover or failover request to its [`Outcome`].
async fn manual_failover<B: Backend>(
    backend: &B,
    action: Action,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    let body = match failover::parse_body(headers.contains_key(header::CONTENT_LENGTH), body) {
        Ok(body) => body,
        Err(e) => return Outcome::BadBody(e),
    };
    tracing::info!(
        action = action.name(),
        leader = ?body.leader,
        candidate = ?body.candidate.as_ref().or(body.member.as_ref()),
        scheduled_at = ?body.scheduled_at,
        "received manual failover request"
    );
    let cluster = match backend.read_cluster().await {
        Ok(cluster) => cluster,
        Err(e) => {
            tracing::warn!(
                "failed to read the cluster from the DCS: {}",
                crate::backend::chain(&e)
            );
            return Outcome::DcsUnavailable;
        }
    };
    let ha = backend.ha();
    let flags = GlobalFlags::resolve(Some(&cluster), &ha.global);
    let plan = match failover::validate(action, body, flags.paused, backend.now()) {
        Ok(plan) => plan,
        Err(r) => return Outcome::Rejected(r),
    };
    if plan.schedule.is_none() {
        let members = match failover::candidates(&plan, &cluster, &flags) {
            Ok(members) => members,
            Err(r) => return Outcome::Rejected(r),
        };
        if !backend.probe_candidates(members).await {
            return Outcome::Rejected(failover::no_good_candidates(plan.action));
        }
    }
    let key = FailoverKey {
        leader: plan.leader.clone(),
        candidate: plan.candidate.clone(),
        scheduled_at: plan.schedule.as_ref().map(|s| s.iso.clone()),
    };
    match backend.write_failover(key, None).await {
        Ok(true) => {}
        Ok(false) => return Outcome::WriteFailed,
        Err(e) => {
            tracing::warn!(
                "failed to write the failover key: {}",
                crate::backend::chain(&e)
            );
            return Outcome::WriteFailed;
        }
    }
    if plan.schedule.is_some() {
        return Outcome::Scheduled(plan.action);
    }
    let old_leader = cluster.leader_name().map(str::to_owned);
    poll_result(
        backend,
        old_leader,
        plan.candidate,
        plan.action,
        ha.global.loop_wait,
    )
    .await
}

/// Patroni's `poll_failover_result`: waits for the lock to move away from `old_leader`.
async fn poll_result<B: Backend>(
    backend: &B,
    old_leader: Option<String>,
    candidate: Option<String>,
    action: Action,
    loop_wait: u64,
) -> Outcome {
    let seconds = 2 * loop_wait.max(MIN_POLL_LOOP_WAIT);
    for _ in 0..seconds {
        tokio::time::sleep(POLL_INTERVAL).await;
        let cluster = match backend.read_cluster().await {
            Ok(cluster) => cluster,
            Err(e) => {
                tracing::debug!(
                    "failed to poll the {} result: {}",
                    action.name(),
                    crate::backend::chain(&e)
                );
                continue;
            }
        };
        if let Some(new_leader) = cluster.leader_name()
            && Some(new_leader) != old_leader.as_deref()
        {
            let instead_of = candidate.filter(|c| c != new_leader);
            return Outcome::Done {
                action,
                new_leader: new_leader.to_owned(),
                instead_of,
            };
        }
        if cluster.failover.is_none() {
            return Outcome::Failed(action);
        }
    }
    Outcome::Unknown { action, seconds }
}
