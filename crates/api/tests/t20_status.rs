//! `GET /patroni`: the status document, field for field, and the headers every answer gets.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use common::*;
use patroni_api::{ApiSettings, FakeBackend, ParamChange, router};
use patroni_config::model::restapi::ServerTokens;
use serde_json::{Map, json};

/// A primary's document is rest-api.md §3's example, field for field.
#[tokio::test]
async fn primary_document_matches_patronis_example() {
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster()));
    let answer = get(&app(&backend), "/patroni").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(
        answer.json(),
        json!({"state":"running","postmaster_start_time":"2024-08-28 19:39:26.352526+00:00",
               "role":"primary","server_version":160004,"xlog":{"location":67395656},"timeline":1,
               "replication":[{"usename":"replicator","application_name":"patroni2",
                               "client_addr":"10.89.0.6","state":"streaming","sync_state":"async",
                               "sync_priority":0}],
               "dcs_last_seen":1692356718,"tags":{"clonefrom":true},
               "database_system_identifier":"7268616322854375442",
               "patroni":{"version":"4.0.0","scope":"demo","name":"pg-0"}})
    );
}

/// A replica's document has the replica `xlog` shape (nulls kept) and every optional flag
/// when set.
#[tokio::test]
async fn replica_document_has_replica_xlog_and_optional_flags() {
    let mut status = replica_status(LEADER_LSN);
    status.sync_standby = true;
    status.pause = true;
    status.cluster_unlocked = true;
    status.failsafe_mode_is_active = true;
    status.watchdog_failed = true;
    status.pending_restart_reason = BTreeMap::from([(
        "max_connections".into(),
        ParamChange {
            old_value: "100".into(),
            new_value: "200".into(),
        },
    )]);
    let mut schedule = Map::new();
    schedule.insert("schedule".into(), json!("2024-05-01T12:00:00+00:00"));
    schedule.insert("role".into(), json!("replica"));
    status.scheduled_restart = Some(schedule);
    status.logger_queue_size = Some(1500);
    status.logger_records_lost = Some(7);
    status.latest_end_lsn = Some(LEADER_LSN);
    let backend = Arc::new(FakeBackend::new(status, ha(false)).with_cluster(cluster()));
    let answer = get(&app(&backend), "/patroni").await;
    assert_eq!(
        answer.json(),
        json!({"state":"running","postmaster_start_time":"2024-08-28 19:40:00.000001+00:00",
               "role":"replica","server_version":160004,
               "xlog":{"received_location":LEADER_LSN,"replayed_location":LEADER_LSN,
                       "replayed_timestamp":null,"paused":false},
               "sync_standby":true,"timeline":1,"replication_state":"streaming",
               "pause":true,"cluster_unlocked":true,"failsafe_mode_is_active":true,
               "dcs_last_seen":1692356718,"database_system_identifier":"7268616322854375442",
               "pending_restart":true,
               "pending_restart_reason":{"max_connections":{"old_value":"100","new_value":"200"}},
               "patroni":{"version":"4.0.0","scope":"demo","name":"pg-1"},
               "scheduled_restart":{"schedule":"2024-05-01T12:00:00+00:00","role":"replica"},
               "watchdog_failed":true,"logger_queue_size":1500,"logger_records_lost":7})
    );
}

/// Everything below `/patroni` is `/patroni`, as Patroni routes by the first segment.
#[tokio::test]
async fn paths_below_patroni_are_patroni() {
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(false)));
    let app = app(&backend);
    for path in ["/patroni/", "/patroni/x/y", "/patroni?verbose=1"] {
        let answer = get(&app, path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.json()["role"], "primary", "{path}");
    }
}

/// `server_tokens` sets the `Server` header; extra headers go on written answers only.
#[tokio::test]
async fn server_header_and_extra_headers_follow_settings() {
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster()));
    let plain = app(&backend);
    assert!(
        get(&plain, "/patroni")
            .await
            .headers
            .get("server")
            .is_none(),
        "original"
    );

    let settings = ApiSettings::new("demo", "pg-0")
        .with_server_tokens(ServerTokens::Minimal, "4.0.0")
        .with_extra_headers(vec![(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("SAMEORIGIN"),
        )]);
    let app = router(Arc::clone(&backend), settings);
    let answer = get(&app, "/patroni").await;
    assert_eq!(answer.headers["server"], "Patroni/4.0.0");
    assert_eq!(answer.headers["x-frame-options"], "SAMEORIGIN");

    let answer = send(&app, request(Method::HEAD, "/primary")).await;
    assert!(
        answer.headers.get("server").is_none(),
        "status-only answers carry no headers"
    );
    assert!(answer.headers.get("x-frame-options").is_none());

    let answer = send(&app, request(Method::PUT, "/primary")).await;
    assert_eq!(
        answer.headers["server"], "Patroni/4.0.0",
        "error pages name the server"
    );
    assert!(answer.headers.get("x-frame-options").is_none());

    let product =
        ApiSettings::new("demo", "pg-0").with_server_tokens(ServerTokens::ProductOnly, "4.0.0");
    let app = router(backend, product);
    assert_eq!(get(&app, "/health").await.headers["server"], "Patroni");
}

/// Settings are read from a `restapi` section: tokens, headers, authentication.
#[tokio::test]
async fn settings_come_from_the_restapi_section() {
    let env = patroni_config::Environment::new()
        .with_var("PATRONI_NAME", "pg-0")
        .with_var("PATRONI_SCOPE", "demo")
        .with_var("PATRONI_KUBERNETES_LABELS", "{application: patroni}")
        .with_var("PATRONI_RESTAPI_LISTEN", "127.0.0.1:8008")
        .with_var("PATRONI_RESTAPI_CONNECT_ADDRESS", "127.0.0.1:8008")
        .with_var("PATRONI_RESTAPI_USERNAME", "admin")
        .with_var("PATRONI_RESTAPI_PASSWORD", "secret")
        .with_var("PATRONI_RESTAPI_ALLOWLIST", "[127.0.0.0/8, localhost]")
        .with_var("PATRONI_POSTGRESQL_LISTEN", "0.0.0.0:5432")
        .with_var("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "127.0.0.1:5432")
        .with_var("PATRONI_POSTGRESQL_DATA_DIR", "/var/lib/postgresql/data")
        .with_var("PATRONI_SUPERUSER_USERNAME", "postgres")
        .with_var("PATRONI_REPLICATION_USERNAME", "standby");
    let loaded = patroni_config::load(None, &env).expect("valid configuration");
    let mut restapi = loaded.config.restapi.clone();
    restapi.server_tokens = ServerTokens::ProductOnly;
    restapi
        .http_extra_headers
        .insert("X-Test".into(), "1".into());
    let settings = ApiSettings::try_from_config(&restapi, "4.0.0", "demo", "pg-0")
        .await
        .expect("valid headers");
    assert_eq!(
        settings.server_header.as_ref().map(|h| h.as_bytes()),
        Some(&b"Patroni"[..])
    );
    assert_eq!(settings.extra_headers.len(), 1);

    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster()));
    let app = router(backend, settings);
    let answer = send(&app, json_request(Method::DELETE, "/switchover", "")).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "authentication is on"
    );

    restapi
        .http_extra_headers
        .insert("bad header".into(), "x".into());
    assert!(
        ApiSettings::try_from_config(&restapi, "4.0.0", "demo", "pg-0")
            .await
            .is_err()
    );
}
