//! `PATCH`/`PUT /config`, `POST`/`DELETE /restart`, `POST /reload`, `POST /reinitialize`,
//! `GET`/`POST /failsafe`:
//! Patroni's statuses and messages, what reaches the backend, bad bodies, and access control
//! (rest-api.md §2, §6).

mod common;

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode};
use common::*;
use patroni_api::{
    AccessPolicy, ApiSettings, FakeBackend, ReinitializeRequest, RestartOutcome, router,
};
use patroni_config::BasicAuth;
use patroni_core::Role;
use serde_json::json;

/// The fake's "now": 2024-05-01T10:00:00Z.
fn now() -> jiff::Timestamp {
    "2024-05-01T10:00:00Z".parse().expect("valid timestamp")
}

fn backend() -> Arc<FakeBackend> {
    let backend = FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster_with(
        json!({"ttl": 30, "loop_wait": 10, "postgresql": {"parameters": {"max_connections": 100}}}),
    ));
    backend.update(|s| s.now = now());
    Arc::new(backend)
}

async fn call(app: &Router, method: Method, path: &str, body: &str) -> Answer {
    send(app, json_request(method, path, body)).await
}

/// PATCH merges into the stored configuration with a compare-and-swap on its version and
/// answers the whole new configuration.
#[tokio::test]
async fn patch_config_merges_and_writes_conditionally() {
    let b = backend();
    let app = app(&b);
    {
        tracing::info!("--- a real change is written against the version read");
        let a = call(
            &app,
            Method::PATCH,
            "/config",
            r#"{"ttl": null, "loop_wait": 5, "postgresql": {"parameters": {"work_mem": "8MB"}}}"#,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let want = json!({"loop_wait": 5,
            "postgresql": {"parameters": {"max_connections": 100, "work_mem": "8MB"}}});
        assert_eq!(a.json(), want);
        assert_eq!(a.headers["content-type"], "application/json");
        let writes = b.snapshot().config_writes;
        assert_eq!(writes.len(), 1);
        assert_eq!(serde_json::Value::Object(writes[0].0.clone()), want);
        assert_eq!(writes[0].1.as_deref(), Some("1"));
    }
    {
        tracing::info!("--- values equal as strings change nothing and write nothing");
        let a = call(&app, Method::PATCH, "/config", r#"{"loop_wait": "5"}"#).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json()["loop_wait"], 5);
        assert_eq!(b.snapshot().config_writes.len(), 1);
    }
    {
        tracing::info!("--- a lost compare-and-swap is 409");
        b.update(|s| s.refuse_writes = true);
        let a = call(&app, Method::PATCH, "/config", r#"{"loop_wait": 7}"#).await;
        assert_eq!(a.status, StatusCode::CONFLICT);
    }
}

/// PATCH needs a valid configuration in the DCS and a readable DCS.
#[tokio::test]
async fn patch_config_without_configuration_is_503() {
    let b = backend();
    b.update(|s| {
        if let Some(c) = s.dcs.as_mut().and_then(|c| c.config.as_mut()) {
            c.modify_version = None;
        }
    });
    let app = app(&b);
    let a = call(&app, Method::PATCH, "/config", r#"{"ttl": 20}"#).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    b.update(|s| s.dcs = None);
    let a = call(&app, Method::PATCH, "/config", r#"{"ttl": 20}"#).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(b.snapshot().config_writes.is_empty());
}

/// PUT replaces unconditionally when different, echoes the body, and is 502 when the write
/// fails.
#[tokio::test]
async fn put_config_replaces_when_different() {
    let b = backend();
    let app = app(&b);
    let same = r#"{"ttl": "30", "loop_wait": 10, "postgresql": {"parameters": {"max_connections": "100"}}}"#;
    let a = call(&app, Method::PUT, "/config", same).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["ttl"], "30", "the body is echoed");
    assert!(
        b.snapshot().config_writes.is_empty(),
        "equal by str(): no write"
    );
    let a = call(&app, Method::PUT, "/config", r#"{"ttl": 20}"#).await;
    assert_eq!((a.status, a.json()), (StatusCode::OK, json!({"ttl": 20})));
    assert_eq!(
        b.snapshot().config_writes.last().map(|w| w.1.clone()),
        Some(None)
    );
    b.update(|s| s.refuse_writes = true);
    let a = call(&app, Method::PUT, "/config", r#"{"ttl": 21}"#).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    b.update(|s| s.dcs = None);
    let a = call(&app, Method::PUT, "/config", r#"{"ttl": 22}"#).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Unusable bodies get 411 or 400 with a reason, and never reach the backend.
#[tokio::test]
async fn bad_bodies_get_411_or_400_with_a_reason() {
    let b = backend();
    let app = app(&b);
    for method in [Method::PATCH, Method::PUT] {
        let a = send(&app, request(method.clone(), "/config")).await;
        assert_eq!(a.status, StatusCode::LENGTH_REQUIRED, "{method}");
        for body in ["", "{}", "[1]", "nonsense", "{\"a\":", "null"] {
            let a = call(&app, method.clone(), "/config", body).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{method} {body:?}");
            assert!(a.text().contains("Message: the body"), "{}", a.text());
        }
    }
    for path in ["/restart", "/reinitialize"] {
        for body in ["[1]", "nonsense", "\"x\""] {
            let a = call(&app, Method::POST, path, body).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path} {body:?}");
        }
    }
    let s = b.snapshot();
    assert!(s.config_writes.is_empty() && s.restarts.is_empty() && s.reinits.is_empty());
}

/// An immediate restart passes the filters to the backend and answers its outcome.
#[tokio::test]
async fn immediate_restart_answers_the_backends_outcome() {
    let b = backend();
    let app = app(&b);
    let a = send(&app, request(Method::POST, "/restart")).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::OK, "restarted successfully")
    );
    let a = call(&app, Method::POST, "/restart",
        r#"{"role": "primary", "postgres_version": "16.5", "timeout": "2min", "restart_pending": true}"#).await;
    assert_eq!(a.status, StatusCode::OK);
    let last = b.snapshot().restarts.pop().expect("a restart");
    assert_eq!(last.role, Some(Role::Primary));
    assert_eq!(last.postgres_version, Some(160_005));
    assert_eq!(last.timeout, Some(std::time::Duration::from_secs(120)));
    assert!(last.restart_pending && last.schedule.is_none());
    for (outcome, message) in [
        (
            RestartOutcome::ConditionsNotSatisfied,
            "restart conditions are not satisfied",
        ),
        (
            RestartOutcome::InProgress("reinitialize".into()),
            "reinitialize already in progress",
        ),
        (RestartOutcome::StillStarting, "postgres is still starting"),
        (RestartOutcome::Failed, "restart failed"),
    ] {
        b.update(|s| s.restart_outcome = outcome.clone());
        let a = call(&app, Method::POST, "/restart", "{}").await;
        assert_eq!(
            (a.status, a.text().as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, message)
        );
    }
}

/// A scheduled restart is stored once with Patroni's document; a second one is 409; DELETE
/// removes it, then finds none.
#[tokio::test]
async fn scheduled_restart_is_stored_once_and_deleted() {
    let b = backend();
    let app = app(&b);
    let body =
        r#"{"schedule": "2024-05-01 12:00+02:00", "timeout": 30, "postgres_version": "15.4"}"#;
    let a = call(&app, Method::POST, "/restart", body).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::ACCEPTED, "Restart scheduled")
    );
    let stored = b.snapshot().scheduled_restart.expect("stored");
    assert_eq!(
        serde_json::Value::Object(stored.document),
        json!({"schedule": "2024-05-01T12:00:00+02:00", "timeout": 30, "postgres_version": "15.4"})
    );
    let a = call(&app, Method::POST, "/restart", body).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::CONFLICT, "Another restart is already scheduled")
    );
    let a = send(&app, request(Method::DELETE, "/restart")).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::OK, "scheduled restart deleted")
    );
    let a = send(&app, request(Method::DELETE, "/restart")).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::NOT_FOUND, "no restarts are scheduled")
    );
    assert!(b.snapshot().restarts.is_empty(), "nothing restarted now");
}

/// Restart filters are refused with Patroni's statuses and messages, in key order; a paused
/// cluster (read fresh from the DCS) refuses schedules.
#[tokio::test]
async fn restart_refusals_have_patronis_messages() {
    let b = backend();
    let app = app(&b);
    for (body, status, message) in [
        (
            r#"{"role": "master"}"#,
            StatusCode::BAD_REQUEST,
            "PostgreSQL role should be either primary, standby_leader, or replica",
        ),
        (
            r#"{"postgres_version": "9.6"}"#,
            StatusCode::BAD_REQUEST,
            "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6",
        ),
        (
            r#"{"postgres_version": "x.y"}"#,
            StatusCode::BAD_REQUEST,
            "Invalid PostgreSQL version: x.y",
        ),
        (
            r#"{"timeout": -1}"#,
            StatusCode::BAD_REQUEST,
            "Timeout should be a positive number of seconds",
        ),
        (
            r#"{"when": 1, "role": "x"}"#,
            StatusCode::BAD_REQUEST,
            "Unknown filter for the scheduled restart: when",
        ),
        (
            r#"{"schedule": "2030-01-01T00:00"}"#,
            StatusCode::BAD_REQUEST,
            "Timezone information is mandatory for the scheduled restart",
        ),
        (
            r#"{"schedule": "2020-01-01T00:00Z"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot schedule restart in the past",
        ),
    ] {
        let a = call(&app, Method::POST, "/restart", body).await;
        assert_eq!((a.status, a.text().as_str()), (status, message), "{body}");
    }
    b.update(|s| {
        if let Some(c) = s.dcs.as_mut().and_then(|c| c.config.as_mut()) {
            c.data.insert("pause".into(), json!(true));
        }
    });
    let a = call(
        &app,
        Method::POST,
        "/restart",
        r#"{"schedule": "2030-01-01T00:00Z"}"#,
    )
    .await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Can't schedule restart in the paused state"
        )
    );
    let s = b.snapshot();
    assert!(s.restarts.is_empty() && s.scheduled_restart.is_none());
}

/// Reload is always 202; reinitialize parses Patroni's booleans and answers the backend's
/// refusal with 503.
#[tokio::test]
async fn reload_and_reinitialize() {
    let b = backend();
    let app = app(&b);
    let a = send(&app, request(Method::POST, "/reload")).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::ACCEPTED, "reload scheduled")
    );
    assert_eq!(b.snapshot().reloads, 1);
    let a = send(&app, request(Method::POST, "/reinitialize")).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::OK, "reinitialize started")
    );
    let a = call(
        &app,
        Method::POST,
        "/reinitialize",
        r#"{"force": "on", "from_leader": "true"}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(
        &app,
        Method::POST,
        "/reinitialize",
        r#"{"force": "maybe", "from_leader": 1}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        b.snapshot().reinits,
        vec![
            ReinitializeRequest::default(),
            ReinitializeRequest {
                force: true,
                from_leader: true
            },
            ReinitializeRequest {
                force: false,
                from_leader: true
            },
        ]
    );
    b.update(|s| s.reinit_answer = Err("I am the leader, can not reinitialize".into()));
    let a = call(&app, Method::POST, "/reinitialize", "{}").await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "I am the leader, can not reinitialize"
        )
    );
}

/// With basic auth configured, every new unsafe endpoint answers 401 without credentials
/// and does nothing; with them it runs.
#[tokio::test]
async fn unauthenticated_unsafe_requests_get_401() {
    let b = backend();
    let auth = BasicAuth {
        username: "u".into(),
        password: "p".into(),
    };
    let app = router(
        Arc::clone(&b),
        ApiSettings::new("demo", "pg-0").with_access(AccessPolicy::open().with_basic_auth(&auth)),
    );
    let cases = [
        (Method::PATCH, "/config", r#"{"ttl": 20}"#),
        (Method::PUT, "/config", r#"{"ttl": 20}"#),
        (Method::POST, "/restart", "{}"),
        (Method::DELETE, "/restart", ""),
        (Method::POST, "/reload", ""),
        (Method::POST, "/reinitialize", "{}"),
    ];
    for (method, path, body) in &cases {
        let a = call(&app, method.clone(), path, body).await;
        assert_eq!(
            (a.status, a.text().as_str()),
            (StatusCode::UNAUTHORIZED, "no auth header received"),
            "{method} {path}"
        );
        assert_eq!(a.headers["www-authenticate"], "Basic realm=\"Patroni\"");
    }
    let s = b.snapshot();
    assert!(s.config_writes.is_empty() && s.restarts.is_empty() && s.reinits.is_empty());
    assert_eq!(s.reloads, 0);
    for (method, path, body) in &cases {
        let mut r = json_request(method.clone(), path, body);
        r.headers_mut()
            .insert("authorization", "Basic dTpw".parse().expect("valid"));
        let a = send(&app, r).await;
        assert_ne!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(b.snapshot().reloads, 1);
}

/// `POST /failsafe`: 502 without failsafe mode; with it, a primary's call reaches the backend
/// and is answered 200 `Accepted` with the `lsn` header, or 500 with the refusal; a bad body
/// names the field. `GET /failsafe`: the topology, 502 without one. The members' hosts are
/// not checked for this call (the DCS listing them is away when it comes).
#[tokio::test]
async fn failsafe_calls_and_topology() {
    let call_body = r#"{"name": "pg-1", "conn_url": "postgres://10.0.0.2:5432/postgres",
        "api_url": "http://10.0.0.2:8008/patroni", "slots": {"pg_0": 100}}"#;
    let b = backend();
    let app = app(&b);
    {
        tracing::info!("--- without failsafe mode: 502 for both");
        let a = call(&app, Method::POST, "/failsafe", call_body).await;
        assert_eq!(a.status, StatusCode::BAD_GATEWAY);
        assert_eq!(get(&app, "/failsafe").await.status, StatusCode::BAD_GATEWAY);
        assert!(b.snapshot().failsafe_calls.is_empty());
    }
    b.update(|s| {
        s.cached = Some(cluster_with(json!({"failsafe_mode": true})));
        s.ha.failsafe_topology = Some(
            [
                ("pg-0", "http://10.0.0.1:8008/patroni"),
                ("pg-1", "http://10.0.0.2:8008/patroni"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        s.failsafe_answer = Ok(Some(12345));
    });
    {
        tracing::info!("--- accepted, with the WAL position");
        let a = call(&app, Method::POST, "/failsafe", call_body).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.text(), "Accepted");
        assert_eq!(a.headers["lsn"], "12345");
        let calls = b.snapshot().failsafe_calls;
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "pg-1");
        assert_eq!(
            calls[0].slots.as_ref().and_then(|s| s.get("pg_0")),
            Some(&100)
        );
        let topology = get(&app, "/failsafe").await;
        assert_eq!(topology.status, StatusCode::OK);
        assert_eq!(topology.json()["pg-1"], "http://10.0.0.2:8008/patroni");
    }
    {
        tracing::info!("--- refused by a member running as primary: 500 with the reason");
        b.update(|s| s.failsafe_answer = Err("Running as a leader".into()));
        let a = call(&app, Method::POST, "/failsafe", call_body).await;
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(a.text(), "Running as a leader");
    }
    {
        tracing::info!("--- a body without api_url is 400 naming it");
        let a = call(
            &app,
            Method::POST,
            "/failsafe",
            r#"{"name": "pg-1", "conn_url": "x"}"#,
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(a.text().contains("api_url is required"), "{}", a.text());
    }
    {
        tracing::info!("--- allowlist_include_members: the call passes from any host");
        let app = router(
            Arc::clone(&b),
            ApiSettings::new("demo", "pg-0")
                .with_access(AccessPolicy::open().with_members_allowed(true)),
        );
        let from = std::net::SocketAddr::from(([192, 0, 2, 9], 40000));
        let a = send_from(
            &app,
            json_request(Method::POST, "/failsafe", call_body),
            from,
        )
        .await;
        assert_eq!(
            a.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "reached the backend"
        );
        let reload = send_from(&app, json_request(Method::POST, "/reload", "{}"), from).await;
        assert_eq!(reload.status, StatusCode::FORBIDDEN);
    }
}
