//! `GET /cluster`, `/history` and `/config`: Patroni's `cluster_as_json`, field for field.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use patroni_api::FakeBackend;
use patroni_core::{Failover, History, SyncState};
use serde_json::json;

/// Members are listed by name with role, state, URLs, lags; the leader has no lag fields and
/// members that reported no position say `unknown`.
#[tokio::test]
async fn cluster_document_matches_cluster_as_json() {
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster()));
    let answer = get(&app(&backend), "/cluster").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(
        answer.json(),
        json!({
            "members": [
                {"name": "pg-0", "role": "leader", "state": "running",
                 "api_url": "http://pg-0.demo:8008/patroni", "host": "pg-0.demo", "port": 5432,
                 "timeline": 1},
                {"name": "pg-1", "role": "replica", "state": "streaming",
                 "api_url": "http://pg-1.demo:8008/patroni", "host": "pg-1.demo", "port": 5432,
                 "timeline": 1,
                 "receive_lsn": "0/5F5E0F6", "receive_lag": 10,
                 "replay_lsn": "0/5F5DD18", "replay_lag": 1000,
                 "lsn": "0/5F5DD18", "lag": 1000},
                {"name": "pg-2", "role": "replica", "state": "starting",
                 "api_url": "http://pg-2.demo:8008/patroni", "host": "pg-2.demo", "port": 5432,
                 "tags": {"nofailover": true},
                 "receive_lsn": "unknown", "receive_lag": "unknown",
                 "replay_lsn": "unknown", "replay_lag": "unknown",
                 "lsn": "unknown", "lag": "unknown"}
            ],
            "scope": "demo"
        })
    );
}

/// Sync and quorum standbys, the standby leader, pause and a scheduled switchover show up.
#[tokio::test]
async fn cluster_document_shows_sync_roles_pause_and_schedule() {
    let mut c = cluster_with(json!({"synchronous_mode": true, "pause": true}));
    c.sync = SyncState {
        version: Some("1".into()),
        leader: Some("pg-0".into()),
        sync_standby: vec!["pg-1".into()],
        quorum: 0,
    };
    c.failover = Some(Failover {
        version: "3".into(),
        leader: Some("pg-0".into()),
        candidate: None,
        scheduled_at: Some("2030-01-01T10:00Z".into()),
    });
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(c.clone()));
    let doc = get(&app(&backend), "/cluster").await.json();
    let roles: Vec<_> = doc["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["role"].clone())
        .collect();
    assert_eq!(
        roles,
        [json!("leader"), json!("sync_standby"), json!("replica")]
    );
    assert_eq!(doc["pause"], json!(true));
    assert_eq!(
        doc["scheduled_switchover"],
        json!({"at": "2030-01-01T10:00:00+00:00", "from": "pg-0"})
    );

    if let Some(config) = &mut c.config {
        config
            .data
            .insert("synchronous_mode".into(), json!("quorum"));
        config.data.remove("pause");
    }
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(c.clone()));
    let doc = get(&app(&backend), "/cluster").await.json();
    assert_eq!(doc["members"][1]["role"], "quorum_standby");
    assert!(doc.get("pause").is_none());

    let standby = cluster_with(json!({"standby_cluster": {"host": "10.0.0.9"}}));
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(standby));
    let doc = get(&app(&backend), "/cluster").await.json();
    assert_eq!(doc["members"][0]["role"], "standby_leader");
    assert_eq!(doc["members"][0]["state"], "running");
    assert!(
        doc["members"][0].get("lsn").is_none(),
        "the lock holder has no lag"
    );
}

/// `/cluster` reads the DCS; when it cannot, the answer is 503, not a hang or a panic.
#[tokio::test]
async fn cluster_is_503_when_dcs_is_down() {
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster()));
    backend.update(|s| s.dcs = None);
    let answer = get(&app(&backend), "/cluster").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// `/history` lists the timeline history, `[]` without one; cached view first, DCS second.
#[tokio::test]
async fn history_lists_lines_or_nothing() {
    let mut c = cluster();
    let lines = vec![
        json!([
            1,
            25_165_984,
            "no recovery target specified",
            "2024-05-01T10:00:00+00:00",
            "pg-1"
        ]),
        json!([2, 33_554_592, "no recovery target specified"]),
    ];
    c.history = Some(History {
        version: "1".into(),
        lines: lines.clone(),
    });
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(c));
    let answer = get(&app(&backend), "/history").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json(), json!(lines));

    backend.update(|s| {
        s.cached = None;
        if let Some(dcs) = &mut s.dcs {
            dcs.history = None;
        }
    });
    assert_eq!(get(&app(&backend), "/history").await.json(), json!([]));

    backend.update(|s| s.dcs = None);
    assert_eq!(
        get(&app(&backend), "/history").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// `/config` answers the dynamic configuration, or 502 when there is no valid one.
#[tokio::test]
async fn config_answers_dynamic_configuration_or_502() {
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster()));
    let answer = get(&app(&backend), "/config").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json(), json!({"ttl": 30, "loop_wait": 10}));

    backend.update(|s| {
        for c in [&mut s.cached, &mut s.dcs].into_iter().flatten() {
            if let Some(config) = &mut c.config {
                config.modify_version = None;
            }
        }
    });
    let answer = get(&app(&backend), "/config").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert!(answer.text().contains("Error code: 502"));
}
