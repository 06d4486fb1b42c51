//! `POST /switchover`, `POST /failover`, `DELETE /switchover`: Patroni's checks and messages,
//! the write and the poll, bad bodies, and access control (rest-api.md §2, §6).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode};
use common::*;
use patroni_api::{
    AccessPolicy, ApiSettings, FailoverKey, FakeBackend, FakeReaction, IpNet, router,
};
use patroni_config::BasicAuth;
use patroni_core::{Cluster, Failover, SyncState};
use serde_json::json;

/// The fake's "now": 2024-05-01T10:00:00Z.
fn now() -> jiff::Timestamp {
    "2024-05-01T10:00:00Z".parse().expect("valid timestamp")
}

/// A primary `pg-0` with the three-member cluster and `reaction` to failover writes.
fn backend(c: Cluster, reaction: FakeReaction) -> Arc<FakeBackend> {
    let backend = FakeBackend::new(primary_status(), ha(true)).with_cluster(c);
    backend.update(|s| {
        s.now = now();
        s.reaction = reaction;
    });
    Arc::new(backend)
}

async fn post(app: &Router, path: &str, body: &str) -> Answer {
    send(app, json_request(Method::POST, path, body)).await
}

/// Asserts each `(path, body) -> (status, message)`.
async fn expect(app: &Router, cases: &[(&str, &str, StatusCode, &str)]) {
    for (path, body, status, message) in cases {
        let answer = post(app, path, body).await;
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (*status, *message),
            "POST {path} {body}"
        );
    }
}

/// Request checks run in Patroni's order with Patroni's statuses and messages, before
/// anything is written.
#[tokio::test]
async fn request_checks_have_patronis_messages() {
    let b = backend(cluster(), FakeReaction::Promote);
    let app = app(&b);
    let bad = StatusCode::BAD_REQUEST;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    expect(
        &app,
        &[
            ("/switchover", r#"{"candidate":"pg-1"}"#, bad,
             "Switchover could be performed only from a specific leader"),
            ("/failover", r#"{"leader":"pg-0"}"#, bad,
             "Failover could be performed only to a specific candidate"),
            ("/failover", r#"{"candidate":"pg-1","scheduled_at":"2030-01-01T00:00Z"}"#, bad,
             "Failover can't be scheduled"),
            ("/switchover", r#"{"leader":"pg-0","scheduled_at":"2030-01-01T00:00"}"#, bad,
             "Timezone information is mandatory for the scheduled switchover"),
            ("/switchover", r#"{"leader":"pg-0","scheduled_at":"2020-01-01T00:00Z"}"#, unprocessable,
             "Cannot schedule switchover in the past"),
            ("/switchover", r#"{"leader":"pg-0","scheduled_at":"next tuesday"}"#, unprocessable,
             "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"),
            ("/switchover", r#"{"leader":"pg-0","candidate":"pg-0"}"#, bad,
             "Switchover target and source are the same"),
            ("/failover", r#"{"leader":"pg-0","member":"pg-0"}"#, bad,
             "Switchover target and source are the same"),
        ],
    )
    .await;
    assert!(b.snapshot().failover_writes.is_empty());
}

/// While paused, nothing is scheduled and a candidate is mandatory.
#[tokio::test(start_paused = true)]
async fn paused_cluster_needs_a_candidate_and_no_schedule() {
    let b = backend(cluster_with(json!({"pause": true})), FakeReaction::Promote);
    let app = app(&b);
    let bad = StatusCode::BAD_REQUEST;
    expect(
        &app,
        &[
            (
                "/switchover",
                r#"{"leader":"pg-0","scheduled_at":"2030-01-01T00:00Z"}"#,
                bad,
                "Can't schedule switchover in the paused state",
            ),
            (
                "/switchover",
                r#"{"leader":"pg-0"}"#,
                bad,
                "Switchover is possible only to a specific candidate in a paused state",
            ),
            (
                "/switchover",
                r#"{"leader":"pg-0","candidate":"pg-1"}"#,
                StatusCode::OK,
                "Successfully switched over to \"pg-1\"",
            ),
        ],
    )
    .await;
}

/// Feasibility failures are 412 with Patroni's messages.
#[tokio::test]
async fn infeasible_requests_are_412() {
    let pf = StatusCode::PRECONDITION_FAILED;
    let app_for = |c: Cluster| app(&backend(c, FakeReaction::Promote));
    expect(
        &app_for(cluster()),
        &[
            (
                "/switchover",
                r#"{"leader":"pg-9"}"#,
                pf,
                "leader name does not match",
            ),
            (
                "/switchover",
                r#"{"leader":"pg-0","candidate":"pg-9"}"#,
                pf,
                "candidate does not exists",
            ),
            (
                "/failover",
                r#"{"candidate":"pg-9"}"#,
                pf,
                "candidate does not exists",
            ),
        ],
    )
    .await;

    let mut sync = cluster_with(json!({"synchronous_mode": "on"}));
    sync.sync = SyncState {
        version: Some("1".into()),
        leader: Some("pg-0".into()),
        sync_standby: vec![],
        quorum: 0,
    };
    expect(
        &app_for(sync),
        &[
            (
                "/switchover",
                r#"{"leader":"pg-0","candidate":"pg-1"}"#,
                pf,
                "candidate name does not match with sync_standby",
            ),
            (
                "/switchover",
                r#"{"leader":"pg-0"}"#,
                pf,
                "switchover is not possible: can not find sync_standby",
            ),
        ],
    )
    .await;

    let mut alone = cluster();
    alone.members.truncate(1);
    expect(
        &app_for(alone),
        &[(
            "/switchover",
            r#"{"leader":"pg-0"}"#,
            pf,
            "switchover is not possible: cluster does not have members except leader",
        )],
    )
    .await;

    let b = backend(cluster(), FakeReaction::Promote);
    b.update(|s| s.candidates_healthy = false);
    expect(
        &app(&b),
        &[
            (
                "/switchover",
                r#"{"leader":"pg-0"}"#,
                pf,
                "switchover is not possible: no good candidates have been found",
            ),
            (
                "/failover",
                r#"{"candidate":"pg-2"}"#,
                pf,
                "failover is not possible: no good candidates have been found",
            ),
        ],
    )
    .await;
    assert_eq!(
        b.snapshot().probes,
        [
            vec!["pg-1".to_owned(), "pg-2".to_owned()],
            vec!["pg-2".to_owned()]
        ],
        "a switchover probes every other member with an API, a failover its candidate"
    );
}

/// An immediate switchover writes the key, then waits for the new leader.
#[tokio::test(start_paused = true)]
async fn switchover_waits_for_the_new_leader() {
    let b = backend(cluster(), FakeReaction::Promote);
    let answer = post(
        &app(&b),
        "/switchover",
        r#"{"leader":"pg-0","candidate":"pg-1"}"#,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "Successfully switched over to \"pg-1\"");
    assert_eq!(answer.headers["content-type"], "text/html");
    let writes = b.snapshot().failover_writes;
    assert_eq!(
        writes,
        [(
            FailoverKey {
                leader: Some("pg-0".into()),
                candidate: Some("pg-1".into()),
                scheduled_at: None
            },
            None
        )]
    );
}

/// Each way a wait can end has Patroni's answer.
#[tokio::test(start_paused = true)]
async fn every_poll_outcome_has_patronis_answer() {
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    for (reaction, path, body, status, message) in [
        (
            FakeReaction::Promote,
            "/failover",
            r#"{"candidate":"pg-1"}"#,
            StatusCode::OK,
            "Successfully failed over to \"pg-1\"",
        ),
        (
            FakeReaction::Promote,
            "/failover",
            r#"{"leader":"pg-0","candidate":"pg-1"}"#,
            StatusCode::OK,
            "Successfully switched over to \"pg-1\"",
        ),
        (
            FakeReaction::Promote,
            "/switchover",
            r#"{"leader":"pg-0"}"#,
            StatusCode::OK,
            "Successfully switched over to \"pg-1\"",
        ),
        (
            FakeReaction::PromoteInstead("pg-2".into()),
            "/switchover",
            r#"{"leader":"pg-0","candidate":"pg-1"}"#,
            StatusCode::OK,
            "Switched over to \"pg-2\" instead of \"pg-1\"",
        ),
        (
            FakeReaction::PromoteInstead("pg-2".into()),
            "/failover",
            r#"{"candidate":"pg-1"}"#,
            StatusCode::OK,
            "Failed over to \"pg-2\" instead of \"pg-1\"",
        ),
        (
            FakeReaction::Clear,
            "/switchover",
            r#"{"leader":"pg-0"}"#,
            unavailable,
            "Switchover failed",
        ),
        (
            FakeReaction::Clear,
            "/failover",
            r#"{"candidate":"pg-1"}"#,
            unavailable,
            "Failover failed",
        ),
        (
            FakeReaction::Nothing,
            "/switchover",
            r#"{"leader":"pg-0"}"#,
            unavailable,
            "Switchover status unknown after 20 seconds; operation may still be in progress",
        ),
    ] {
        let b = backend(cluster(), reaction.clone());
        let answer = post(&app(&b), path, body).await;
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (status, message),
            "{reaction:?} {body}"
        );
    }
}

/// The wait lasts `2 * max(10, loop_wait)` seconds.
#[tokio::test(start_paused = true)]
async fn wait_scales_with_loop_wait() {
    let b = backend(cluster(), FakeReaction::Nothing);
    b.update(|s| s.ha.global.loop_wait = 15);
    let started = tokio::time::Instant::now();
    let answer = post(&app(&b), "/failover", r#"{"candidate":"pg-1"}"#).await;
    assert_eq!(
        answer.text(),
        "Failover status unknown after 30 seconds; operation may still be in progress"
    );
    assert_eq!(started.elapsed().as_secs(), 30);
}

/// A scheduled switchover is written with its time in `isoformat()` and answered 202, with
/// no probe; `DELETE /switchover` then cancels it.
#[tokio::test]
async fn scheduled_switchover_is_written_then_cancelled() {
    let b = backend(cluster(), FakeReaction::Promote);
    let app = app(&b);
    let answer = post(
        &app,
        "/switchover",
        r#"{"leader":"pg-0","scheduled_at":"2024-05-01T14:00+02:00"}"#,
    )
    .await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (StatusCode::ACCEPTED, "Switchover scheduled")
    );
    let state = b.snapshot();
    assert!(state.probes.is_empty());
    assert_eq!(
        state.failover_writes[0].0.scheduled_at.as_deref(),
        Some("2024-05-01T14:00:00+02:00")
    );

    let answer = send(&app, request(Method::DELETE, "/switchover")).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (StatusCode::OK, "scheduled switchover deleted")
    );
    let state = b.snapshot();
    assert_eq!(
        state.failover_writes[1],
        (FailoverKey::default(), Some("1".into())),
        "compare-and-swap"
    );
    assert_eq!(state.dcs.and_then(|c| c.failover), None);

    let answer = send(&app, request(Method::DELETE, "/switchover")).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (StatusCode::NOT_FOUND, "no switchover is scheduled")
    );
}

/// A cancel that loses the compare-and-swap is 409; an immediate (unscheduled) key is not
/// cancellable.
#[tokio::test]
async fn cancel_conflict_is_409() {
    let mut c = cluster();
    c.failover = Some(Failover {
        version: "7".into(),
        leader: Some("pg-0".into()),
        candidate: None,
        scheduled_at: Some("2030-01-01T00:00:00+00:00".into()),
    });
    let b = backend(c.clone(), FakeReaction::Nothing);
    b.update(|s| s.refuse_writes = true);
    let answer = send(&app(&b), request(Method::DELETE, "/switchover")).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);

    c.failover = Some(Failover {
        scheduled_at: None,
        ..c.failover.clone().expect("set")
    });
    let b = backend(c, FakeReaction::Nothing);
    let answer = send(&app(&b), request(Method::DELETE, "/switchover")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

/// A refused or failed write, or an unreadable DCS, is 503.
#[tokio::test]
async fn dcs_failures_are_503() {
    let b = backend(cluster(), FakeReaction::Promote);
    b.update(|s| s.refuse_writes = true);
    expect(
        &app(&b),
        &[(
            "/switchover",
            r#"{"leader":"pg-0"}"#,
            StatusCode::SERVICE_UNAVAILABLE,
            "failed to write failover key into DCS",
        )],
    )
    .await;
    let b = backend(cluster(), FakeReaction::Promote);
    b.update(|s| s.dcs = None);
    let answer = post(&app(&b), "/switchover", r#"{"leader":"pg-0"}"#).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let answer = send(&app(&b), request(Method::DELETE, "/switchover")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Bodies that are missing, not JSON, not a non-empty object or of the wrong types are
/// refused with 411/400 and a reason; nothing panics and nothing is written.
#[tokio::test]
async fn bad_bodies_are_refused() {
    let b = backend(cluster(), FakeReaction::Promote);
    let app = app(&b);
    let chunked = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/switchover")
        .body(axum::body::Body::from("{\"leader\":\"pg-0\"}"))
        .expect("valid request");
    assert_eq!(
        send(&app, chunked).await.status,
        StatusCode::LENGTH_REQUIRED
    );
    for (body, reason) in [
        ("", "not valid JSON"),
        ("{\"leader\":", "not valid JSON"),
        ("[\"pg-0\"]", "non-empty JSON object"),
        ("{}", "non-empty JSON object"),
        ("\"pg-0\"", "non-empty JSON object"),
        ("{\"leader\": 5}", "invalid type"),
        (
            "{\"leader\":\"pg-0\",\"candidate\":[\"pg-1\"]}",
            "invalid type",
        ),
        (
            "{\"candidate\":\"pg-1\",\"scheduled_at\":false}",
            "invalid type",
        ),
    ] {
        for path in ["/switchover", "/failover"] {
            let answer = post(&app, path, body).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path} {body}");
            assert!(
                answer.text().contains(reason),
                "{path} {body}: {}",
                answer.text()
            );
        }
    }
    assert!(b.snapshot().failover_writes.is_empty());
}

/// With `authentication`, unsafe endpoints need the right basic credentials (checked before
/// the body); safe ones never do.
#[tokio::test]
async fn basic_auth_guards_unsafe_endpoints_only() {
    let b = backend(cluster(), FakeReaction::Promote);
    let auth = BasicAuth {
        username: "admin".into(),
        password: "secret".into(),
    };
    let settings =
        ApiSettings::new("demo", "pg-0").with_access(AccessPolicy::open().with_basic_auth(&auth));
    let app = router(Arc::clone(&b), settings);

    let answer = send(&app, request(Method::POST, "/switchover")).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "auth comes before the 411"
    );
    assert_eq!(
        answer.headers["www-authenticate"],
        "Basic realm=\"Patroni\""
    );
    assert_eq!(answer.text(), "no auth header received");

    let mut wrong = json_request(Method::POST, "/switchover", r#"{"leader":"pg-0"}"#);
    wrong.headers_mut().insert(
        "authorization",
        "Basic YWRtaW46d3Jvbmc=".parse().expect("ascii"),
    );
    let answer = send(&app, wrong).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (StatusCode::UNAUTHORIZED, "not authenticated")
    );

    // base64("admin:secret")
    let mut right = json_request(Method::POST, "/switchover", r#"{"candidate":"pg-1"}"#);
    right.headers_mut().insert(
        "authorization",
        "Basic YWRtaW46c2VjcmV0".parse().expect("ascii"),
    );
    let answer = send(&app, right).await;
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "authenticated, then validated"
    );

    let answer = send(&app, request(Method::DELETE, "/switchover")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&app, "/patroni").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/cluster").await.status, StatusCode::OK);
}

/// The allowlist admits listed networks, and members' API hosts when asked; others get 403.
#[tokio::test]
async fn allowlist_admits_listed_networks_and_members() {
    let mut c = cluster();
    for (i, m) in c.members.iter_mut().enumerate() {
        m.data.api_url = Some(format!("http://10.0.0.{}:8008/patroni", i + 1));
    }
    c.members.push(member(
        "pg-3",
        "replica",
        json!({"api_url": "http://10.0.0.5:8008/patroni"}),
    ));
    let b = backend(c, FakeReaction::Promote);
    let net: IpNet = "192.168.0.0/16".parse().expect("valid network");
    let app = router(
        Arc::clone(&b),
        ApiSettings::new("demo", "pg-0").with_access(AccessPolicy::open().with_allowlist([net])),
    );
    let from = |ip: [u8; 4]| SocketAddr::from((ip, 50000));
    let body = r#"{"candidate":"pg-1"}"#;
    let answer = send_from(
        &app,
        json_request(Method::POST, "/switchover", body),
        from([127, 0, 0, 1]),
    )
    .await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (StatusCode::FORBIDDEN, "Access is denied")
    );
    let answer = send_from(
        &app,
        json_request(Method::POST, "/switchover", body),
        from([192, 168, 3, 4]),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "allowed, then validated"
    );
    let answer = send_from(&app, request(Method::GET, "/patroni"), from([127, 0, 0, 1])).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "safe endpoints are not filtered"
    );

    let app = router(
        Arc::clone(&b),
        ApiSettings::new("demo", "pg-0")
            .with_access(AccessPolicy::open().with_members_allowed(true)),
    );
    let answer = send_from(
        &app,
        json_request(Method::POST, "/switchover", body),
        from([10, 0, 0, 5]),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "a member's API host is allowed"
    );
    let answer = send_from(
        &app,
        json_request(Method::POST, "/switchover", body),
        from([10, 0, 0, 6]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
}
