//! Health checks (rest-api.md §4): the generic check keyed on the request path, which is also
//! the fallback for every unrouted request, and `/liveness` and `/readiness`.
//!
//! The decisions are pure functions of the node status, the cached cluster view and the HA
//! snapshot ([`health_status`], [`liveness_status`], [`readiness_failure`]); the handlers only
//! gather those and shape the answer. Health checks never read the DCS: a stale view makes
//! leader checks fail, never hang.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use patroni_core::{Cluster, Role};
use serde_json::Value;

use crate::backend::{Backend, HaSnapshot};
use crate::dynamic::GlobalFlags;
use crate::model::StatusDocument;
use crate::node::NodeStatus;
use crate::reply::Reply;
use crate::server::AppState;
use crate::units::parse_bytes;

/// Query parameters as Python's `parse_qs` gives them to Patroni: the first value of each
/// key, blank values dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueryParams(BTreeMap<String, String>);

// === impl QueryParams ===

impl QueryParams {
    /// Parses a raw query string (`None`: no query).
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let mut params = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if !value.is_empty() {
                params
                    .entry(key.into_owned())
                    .or_insert_with(|| value.into_owned());
            }
        }
        Self(params)
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// `GET`/`HEAD`/`OPTIONS` on any path without a dedicated handler: the health check of that
/// path (status document for `GET`, status only otherwise). Any other method: 501.
pub(crate) async fn fallback<B: Backend>(
    State(state): State<AppState<B>>,
    method: Method,
    uri: Uri,
) -> Reply {
    let status_only = match method {
        Method::GET => false,
        Method::HEAD | Method::OPTIONS => true,
        other => {
            return Reply::Error(
                StatusCode::NOT_IMPLEMENTED,
                Some(format!("Unsupported method ('{other}')")),
            );
        }
    };
    let status = state.backend.status(false).await;
    let cluster = state.backend.cached_cluster();
    let ha = state.backend.ha();
    let query = QueryParams::parse(uri.query());
    let code = health_status(uri.path(), &query, &status, cluster.as_ref(), &ha);
    if status_only {
        Reply::StatusOnly(code)
    } else {
        Reply::json(code, &StatusDocument::from(&status))
    }
}

/// `GET /liveness`: status only.
pub(crate) async fn liveness<B: Backend>(State(state): State<AppState<B>>) -> Reply {
    Reply::StatusOnly(liveness_status(&state.backend.ha()))
}

/// `GET /readiness?lag=&mode=`: status only. The leader is ready without a status query.
pub(crate) async fn readiness<B: Backend>(State(state): State<AppState<B>>, uri: Uri) -> Reply {
    let ha = state.backend.ha();
    if ha.is_leader {
        return Reply::StatusOnly(StatusCode::OK);
    }
    let status = state.backend.status(true).await;
    let cluster = state.backend.cached_cluster();
    let query = QueryParams::parse(uri.query());
    match readiness_failure(&query, &status, cluster.as_ref(), &ha) {
        None => Reply::StatusOnly(StatusCode::OK),
        Some(reason) => {
            tracing::debug!("readiness check failure: {reason}");
            Reply::StatusOnly(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// Patroni's generic health check (`RestApiHandler.do_GET`) of `path`.
///
/// `cluster` is the cached DCS view (`None`: unavailable). Paths are matched by substring in
/// Patroni's precedence: standby leader, `leader`, primary (`master`, `primary`,
/// `read-write`, `/`), `replica`, `read-only`, `health`, then the exact sync/quorum/async
/// paths; anything else is 503. `?tag_<k>=<v>` filters apply to non-leader paths only.
pub(crate) fn health_status(
    path: &str,
    query: &QueryParams,
    status: &NodeStatus,
    cluster: Option<&Cluster>,
    ha: &HaSnapshot,
) -> StatusCode {
    let path = if path == "/" { "/primary" } else { path };
    let flags = GlobalFlags::resolve(cluster, &ha.global);
    let leader_optime = cluster
        .map_or(0, |c| c.status.last_lsn)
        .max(status.latest_end_lsn.unwrap_or(0));
    let max_lag = query.get("lag").and_then(parse_bytes).unwrap_or(i64::MAX);
    let is_lagging = leader_optime != 0
        && i128::from(leader_optime) > i128::from(status.replayed_location()) + i128::from(max_lag);
    let replication_state_matches = query
        .get("replication_state")
        .is_none_or(|wanted| status.replication_state.as_deref() == Some(wanted));
    let mut replica = !ha.noloadbalance()
        && !is_lagging
        && status.role == Role::Replica
        && status.is_running()
        && replication_state_matches;

    let (leader, primary, standby_leader) = if cluster.is_none() && status.pause {
        let is = |r| status.role == r;
        (
            is(Role::Primary) || is(Role::StandbyLeader),
            is(Role::Primary),
            is(Role::StandbyLeader),
        )
    } else if ha.is_leader {
        if flags.standby_cluster {
            replica = false;
            let role_ok = matches!(status.role, Role::Replica | Role::StandbyLeader);
            (true, false, role_ok)
        } else {
            (true, true, false)
        }
    } else {
        (false, false, false)
    };
    let leaderish = primary || standby_leader;

    let (ok, tags_apply) = if path.contains("standby_leader") || path.contains("standby-leader") {
        (standby_leader, false)
    } else if path.contains("leader") {
        (leader, false)
    } else if ["master", "primary", "read-write"]
        .iter()
        .any(|p| path.contains(p))
    {
        (primary, false)
    } else if path.contains("replica") {
        (replica, true)
    } else if path.contains("read-only") && !path.contains("sync") && !path.contains("quorum") {
        (leaderish || replica, true)
    } else if path.contains("health") {
        (status.is_running(), true)
    } else if cluster.is_some() {
        let (sync, quorum) = (status.sync_standby, status.quorum_standby);
        let ok = match path {
            "/sync" | "/synchronous" => sync && replica,
            "/quorum" => quorum && replica,
            "/async" | "/asynchronous" => !sync && !quorum && replica,
            "/read-only-quorum" => leaderish || (quorum && replica),
            "/read-only-sync" | "/read-only-synchronous" => leaderish || (sync && replica),
            _ => false,
        };
        (ok, true)
    } else {
        (false, true)
    };
    let ok = ok && (!tags_apply || tags_match(query, &ha.configured_tags));
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Whether every `?tag_<key>=<value>` names a configured tag with that value (non-strings
/// compared as Python's lower-cased `str()`: `true`, `1`).
fn tags_match(query: &QueryParams, tags: &BTreeMap<String, Value>) -> bool {
    query.0.iter().all(|(key, wanted)| {
        let Some(tag) = key.strip_prefix("tag_") else {
            return true;
        };
        match tags.get(tag) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => s == wanted,
            Some(other) => other.to_string().to_lowercase() == *wanted,
        }
    })
}

/// `GET /liveness`: 200 while paused, or while the HA loop is less than `ttl` (running
/// primary) or `2 * ttl` (otherwise) late.
pub(crate) fn liveness_status(ha: &HaSnapshot) -> StatusCode {
    let threshold = if ha.running_as_primary {
        ha.ttl
    } else {
        ha.ttl * 2
    };
    if ha.global.paused || ha.loop_overdue < threshold {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// `GET /readiness` for a member that does not hold the lock: `None` when ready, else why
/// not. Requires PostgreSQL running and streaming, a known leader position (DCS view or WAL
/// receiver; without either only failsafe mode makes it ready) and a lag within `?lag=`
/// (default `maximum_lag_on_failover`), measured on replay (`mode=apply`, default) or receipt
/// (`mode=write`).
pub(crate) fn readiness_failure(
    query: &QueryParams,
    status: &NodeStatus,
    cluster: Option<&Cluster>,
    ha: &HaSnapshot,
) -> Option<String> {
    if !status.is_running() {
        return Some("PostgreSQL is not running".into());
    }
    if status.replication_state.as_deref() != Some("streaming") {
        return Some("PostgreSQL replication state is not streaming".into());
    }
    let latest_end_lsn = status.latest_end_lsn.unwrap_or(0);
    if cluster.is_none() && latest_end_lsn == 0 {
        return (!ha.failsafe_active).then(|| "DCS is not accessible".into());
    }
    let leader_optime = cluster.map_or(0, |c| c.status.last_lsn).max(latest_end_lsn);
    let (mode, location) = if query.get("mode") == Some("write") {
        ("write", status.received_location())
    } else {
        ("apply", status.replayed_location())
    };
    let lag = i128::from(leader_optime) - i128::from(location);
    let max_lag = query
        .get("lag")
        .and_then(parse_bytes)
        .unwrap_or(ha.global.maximum_lag_on_failover);
    (lag > i128::from(max_lag))
        .then(|| format!("Replication {mode} lag {lag} exceeds maximum allowable {max_lag}"))
}
