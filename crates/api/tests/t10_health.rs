//! Health checks through the router: status codes by role, state, DCS view, query filters,
//! HEAD/OPTIONS, unsupported methods, liveness and readiness (rest-api.md §4).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use common::*;
use patroni_api::{FakeBackend, HaSnapshot, NodeStatus};
use patroni_core::{Cluster, Role};
use serde_json::json;

const OK: StatusCode = StatusCode::OK;
const NO: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

fn app_with(status: NodeStatus, ha: HaSnapshot, cluster: Option<Cluster>) -> Router {
    let backend = FakeBackend::new(status, ha);
    let backend = match cluster {
        Some(c) => backend.with_cluster(c),
        None => backend,
    };
    app(&Arc::new(backend))
}

/// Asserts the status code of `GET` on each path.
async fn expect(app: &Router, cases: &[(&str, StatusCode)]) {
    for (path, want) in cases {
        assert_eq!(get(app, path).await.status, *want, "GET {path}");
    }
}

/// The primary holding the lock passes every leader check and fails every replica check.
#[tokio::test]
async fn primary_with_lock_passes_leader_checks_only() {
    let app = app_with(primary_status(), ha(true), Some(cluster()));
    expect(
        &app,
        &[
            ("/", OK),
            ("/primary", OK),
            ("/master", OK),
            ("/leader", OK),
            ("/read-write", OK),
            ("/read-only", OK),
            ("/read-only-sync", OK),
            ("/read-only-quorum", OK),
            ("/health", OK),
            ("/replica", NO),
            ("/standby-leader", NO),
            ("/standby_leader", NO),
            ("/sync", NO),
            ("/async", NO),
            ("/anything-else", NO),
        ],
    )
    .await;
    let answer = get(&app, "/primary").await;
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.json()["role"], "primary");
}

/// A primary that does not hold the lock is not the primary.
#[tokio::test]
async fn primary_without_lock_fails_leader_checks() {
    let app = app_with(primary_status(), ha(false), Some(cluster()));
    expect(
        &app,
        &[
            ("/primary", NO),
            ("/leader", NO),
            ("/read-write", NO),
            ("/health", OK),
        ],
    )
    .await;
}

/// A streaming replica passes the replica checks, and the body is still the status document.
#[tokio::test]
async fn replica_passes_replica_checks_only() {
    let app = app_with(replica_status(LEADER_LSN), ha(false), Some(cluster()));
    expect(
        &app,
        &[
            ("/replica", OK),
            ("/read-only", OK),
            ("/async", OK),
            ("/asynchronous", OK),
            ("/health", OK),
            ("/", NO),
            ("/primary", NO),
            ("/leader", NO),
            ("/sync", NO),
            ("/synchronous", NO),
            ("/read-only-sync", NO),
            ("/quorum", NO),
        ],
    )
    .await;
    let answer = get(&app, "/primary").await;
    assert_eq!(answer.json()["role"], "replica");
}

/// Synchronous and quorum standbys answer their own paths, and not `/async`.
#[tokio::test]
async fn sync_and_quorum_standbys_answer_their_paths() {
    let mut sync = replica_status(LEADER_LSN);
    sync.sync_standby = true;
    let app = app_with(sync, ha(false), Some(cluster()));
    expect(
        &app,
        &[
            ("/sync", OK),
            ("/synchronous", OK),
            ("/read-only-sync", OK),
            ("/read-only-synchronous", OK),
            ("/async", NO),
            ("/quorum", NO),
            ("/replica", OK),
        ],
    )
    .await;

    let mut quorum = replica_status(LEADER_LSN);
    quorum.quorum_standby = true;
    let app = app_with(quorum, ha(false), Some(cluster()));
    expect(
        &app,
        &[
            ("/quorum", OK),
            ("/read-only-quorum", OK),
            ("/sync", NO),
            ("/async", NO),
        ],
    )
    .await;
}

/// `?lag=` takes bytes or units and compares the leader's position with the replayed one.
#[tokio::test]
async fn replica_lag_filter_accepts_bytes_and_units() {
    let app = app_with(
        replica_status(LEADER_LSN - 20_000),
        ha(false),
        Some(cluster()),
    );
    expect(
        &app,
        &[
            ("/replica", OK),
            ("/replica?lag=10000", NO),
            ("/replica?lag=20000", OK),
            ("/replica?lag=16kB", NO),
            ("/replica?lag=1MB", OK),
            ("/replica?lag=nonsense", OK),
            ("/replica?lag=", OK),
            ("/async?lag=10000", NO),
            ("/read-only?lag=1kB", NO),
        ],
    )
    .await;
}

/// The WAL receiver's `latest_end_lsn` counts as the leader's position when it is ahead.
#[tokio::test]
async fn wal_receiver_position_counts_as_leader_position() {
    let mut status = replica_status(LEADER_LSN);
    status.latest_end_lsn = Some(LEADER_LSN + 50_000);
    let app = app_with(status, ha(false), Some(cluster()));
    expect(
        &app,
        &[("/replica?lag=10000", NO), ("/replica?lag=1MB", OK)],
    )
    .await;
}

/// `?replication_state=` and `?tag_<k>=` filter replicas; leader checks ignore tags.
#[tokio::test]
async fn replication_state_and_tag_filters_apply_to_replicas() {
    let mut h = ha(false);
    h.configured_tags = BTreeMap::from([
        ("zone".into(), json!("a")),
        ("nofailover".into(), json!(true)),
        ("priority".into(), json!(3)),
    ]);
    let app = app_with(replica_status(LEADER_LSN), h.clone(), Some(cluster()));
    expect(
        &app,
        &[
            ("/replica?replication_state=streaming", OK),
            ("/replica?replication_state=in%20archive%20recovery", NO),
            ("/replica?tag_zone=a", OK),
            ("/replica?tag_zone=b", NO),
            ("/replica?tag_nofailover=true", OK),
            ("/replica?tag_nofailover=True", NO),
            ("/replica?tag_priority=3", OK),
            ("/replica?tag_missing=x", NO),
            ("/health?tag_zone=b", NO),
        ],
    )
    .await;
    h.is_leader = true;
    let app = app_with(primary_status(), h, Some(cluster()));
    expect(
        &app,
        &[("/primary?tag_zone=b", OK), ("/read-only?tag_zone=b", NO)],
    )
    .await;
}

/// `noloadbalance` takes a replica out of the replica checks but not out of `/health`.
#[tokio::test]
async fn noloadbalance_replica_is_not_a_replica_target() {
    let mut h = ha(false);
    h.configured_tags = BTreeMap::from([("noloadbalance".into(), json!("on"))]);
    let app = app_with(replica_status(LEADER_LSN), h, Some(cluster()));
    expect(
        &app,
        &[
            ("/replica", NO),
            ("/read-only", NO),
            ("/async", NO),
            ("/health", OK),
        ],
    )
    .await;
}

/// A stopped member fails every check and answers the minimal status document.
#[tokio::test]
async fn stopped_member_fails_everything_with_minimal_document() {
    let status = NodeStatus::minimal("stopped", Role::Replica, info("pg-1"));
    let app = app_with(status, ha(false), Some(cluster()));
    expect(
        &app,
        &[
            ("/health", NO),
            ("/replica", NO),
            ("/read-only", NO),
            ("/async", NO),
        ],
    )
    .await;
    let answer = get(&app, "/health").await;
    assert_eq!(
        answer.json(),
        json!({"state": "stopped", "role": "replica", "dcs_last_seen": 0,
               "patroni": {"version": "4.0.0", "scope": "demo", "name": "pg-1"}})
    );
}

/// In a standby cluster the lock holder is the standby leader, not a primary or a replica.
#[tokio::test]
async fn standby_leader_answers_standby_leader_checks() {
    let standby = cluster_with(json!({"standby_cluster": {"host": "10.0.0.9", "port": 5432}}));
    let mut status = replica_status(LEADER_LSN);
    status.role = Role::StandbyLeader;
    let app = app_with(status, ha(true), Some(standby.clone()));
    expect(
        &app,
        &[
            ("/standby-leader", OK),
            ("/standby_leader", OK),
            ("/leader", OK),
            ("/read-only", OK),
            ("/primary", NO),
            ("/replica", NO),
        ],
    )
    .await;

    // Still reporting `replica` from pg_is_in_recovery(): a lock holder, never a replica target.
    let app = app_with(replica_status(LEADER_LSN), ha(true), Some(standby));
    expect(
        &app,
        &[("/standby-leader", OK), ("/replica", NO), ("/async", NO)],
    )
    .await;
}

/// Without a DCS view, a paused cluster's checks go by role; otherwise leader checks fail and
/// sync checks (which need the view) fail.
#[tokio::test]
async fn without_dcs_view_only_paused_roles_count() {
    let mut status = primary_status();
    status.pause = true;
    status.cluster_unlocked = true;
    let app = app_with(status, ha(false), None);
    expect(
        &app,
        &[("/primary", OK), ("/leader", OK), ("/standby-leader", NO)],
    )
    .await;

    let app = app_with(primary_status(), ha(false), None);
    expect(&app, &[("/primary", NO), ("/leader", NO)]).await;

    let mut sync = replica_status(LEADER_LSN);
    sync.sync_standby = true;
    let app = app_with(sync, ha(false), None);
    expect(&app, &[("/sync", NO), ("/async", NO), ("/replica", OK)]).await;
}

/// HEAD and OPTIONS run the health check of the path and answer with the status only, even
/// on paths that have a GET handler.
#[tokio::test]
async fn head_and_options_answer_status_only() {
    let app = app_with(primary_status(), ha(true), Some(cluster()));
    for (method, path, want) in [
        (Method::HEAD, "/primary", OK),
        (Method::OPTIONS, "/primary", OK),
        (Method::HEAD, "/", OK),
        (Method::OPTIONS, "/replica", NO),
        (Method::HEAD, "/patroni", NO),
        (Method::HEAD, "/liveness", NO),
        (Method::OPTIONS, "/switchover", NO),
    ] {
        let answer = send(&app, request(method.clone(), path)).await;
        assert_eq!(answer.status, want, "{method} {path}");
        assert!(answer.body.is_empty(), "{method} {path} has no body");
        assert!(
            answer.headers.get("content-type").is_none(),
            "{method} {path}"
        );
    }
}

/// Methods without a handler are 501, as Python's server answers them; GET on an unsafe
/// endpoint is a health check of its path.
#[tokio::test]
async fn unsupported_methods_are_501() {
    let app = app_with(primary_status(), ha(true), Some(cluster()));
    for (method, path) in [
        (Method::PUT, "/primary"),
        (Method::PATCH, "/patroni"),
        (Method::POST, "/patroni"),
        (Method::DELETE, "/cluster"),
    ] {
        let answer = send(&app, request(method.clone(), path)).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_IMPLEMENTED,
            "{method} {path}"
        );
        assert!(
            answer
                .text()
                .contains(&format!("Unsupported method ('{method}')"))
        );
    }
    expect(&app, &[("/switchover", NO), ("/failover/x", NO)]).await;
}

/// Liveness tolerates `ttl` of HA-loop delay on a running primary, `2*ttl` elsewhere, and
/// anything while paused.
#[tokio::test]
async fn liveness_tolerates_ttl_on_primary_and_twice_elsewhere() {
    let case = |primary: bool, overdue: u64, paused: bool| {
        let mut h = ha(primary);
        h.running_as_primary = primary;
        h.loop_overdue = Duration::from_secs(overdue);
        h.global.paused = paused;
        h
    };
    for (h, want) in [
        (case(false, 0, false), OK),
        (case(false, 31, false), OK),
        (case(false, 60, false), NO),
        (case(true, 29, false), OK),
        (case(true, 31, false), NO),
        (case(true, 3600, true), OK),
    ] {
        let app = app_with(replica_status(LEADER_LSN), h.clone(), Some(cluster()));
        let answer = get(&app, "/liveness").await;
        assert_eq!(answer.status, want, "{h:?}");
        assert!(answer.body.is_empty());
    }
}

/// Readiness: the leader is ready; a replica must run, stream, know the leader's position and
/// be within the lag limit.
#[tokio::test]
async fn readiness_requires_a_streaming_replica_within_lag() {
    let app = app_with(
        NodeStatus::minimal("stopped", Role::Primary, info("pg-0")),
        ha(true),
        None,
    );
    assert_eq!(
        get(&app, "/readiness").await.status,
        OK,
        "the leader is ready"
    );

    let lagging = replica_status(LEADER_LSN - 2_000_000);
    let app = app_with(lagging.clone(), ha(false), Some(cluster()));
    expect(
        &app,
        &[
            ("/readiness", NO),
            ("/readiness?lag=10MB", OK),
            ("/readiness?lag=1000", NO),
            ("/readiness/anything", NO),
        ],
    )
    .await;

    let mut received = lagging.clone();
    if let Some(patroni_api::Xlog::Replica {
        received_location, ..
    }) = &mut received.xlog
    {
        *received_location = Some(LEADER_LSN);
    }
    let app = app_with(received, ha(false), Some(cluster()));
    expect(
        &app,
        &[("/readiness?mode=write", OK), ("/readiness?mode=apply", NO)],
    )
    .await;

    let app = app_with(replica_status(LEADER_LSN), ha(false), Some(cluster()));
    expect(&app, &[("/readiness", OK)]).await;

    let mut archive = replica_status(LEADER_LSN);
    archive.replication_state = Some("in archive recovery".into());
    let app = app_with(archive, ha(false), Some(cluster()));
    expect(&app, &[("/readiness", NO)]).await;

    let stopped = NodeStatus::minimal("stopped", Role::Replica, info("pg-1"));
    let app = app_with(stopped, ha(false), Some(cluster()));
    expect(&app, &[("/readiness", NO)]).await;
}

/// Without a DCS view or a WAL-receiver position, only failsafe mode makes a replica ready.
#[tokio::test]
async fn readiness_without_dcs_needs_failsafe() {
    let app = app_with(replica_status(LEADER_LSN), ha(false), None);
    expect(&app, &[("/readiness", NO)]).await;
    let mut h = ha(false);
    h.failsafe_active = true;
    let app = app_with(replica_status(LEADER_LSN), h, None);
    expect(&app, &[("/readiness", OK)]).await;
    let mut status = replica_status(LEADER_LSN);
    status.latest_end_lsn = Some(LEADER_LSN);
    let app = app_with(status, ha(false), None);
    expect(&app, &[("/readiness", OK)]).await;
}
