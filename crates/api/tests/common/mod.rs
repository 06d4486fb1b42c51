//! Fixtures shared by the integration tests: node statuses, clusters and a way to send a
//! request through the router and read the answer.

#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use patroni_api::{
    ApiSettings, FakeBackend, HaSnapshot, NodeStatus, PatroniInfo, ReplicationRow, Xlog, router,
};
use patroni_core::{Cluster, ClusterConfig, Leader, LeaderStatus, Member, MemberData, Role};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The leader's WAL position in [`cluster`].
pub const LEADER_LSN: u64 = 100_000_000;

pub fn info(name: &str) -> PatroniInfo {
    PatroniInfo {
        version: "4.0.0".into(),
        scope: "demo".into(),
        name: name.into(),
    }
}

/// `pg-0` running as primary, with the example of rest-api.md §3.
pub fn primary_status() -> NodeStatus {
    let mut s = NodeStatus::minimal("running", Role::Primary, info("pg-0"));
    s.postmaster_start_time = Some("2024-08-28 19:39:26.352526+00:00".into());
    s.server_version = Some(160_004);
    s.xlog = Some(Xlog::Primary {
        location: 67_395_656,
    });
    s.timeline = Some(1);
    s.replication = vec![ReplicationRow {
        usename: Some("replicator".into()),
        application_name: "patroni2".into(),
        client_addr: Some("10.89.0.6".into()),
        state: "streaming".into(),
        sync_state: "async".into(),
        sync_priority: 0,
    }];
    s.dcs_last_seen = 1_692_356_718;
    s.tags = BTreeMap::from([("clonefrom".into(), json!(true))]);
    s.database_system_identifier = Some("7268616322854375442".into());
    s
}

/// `pg-1` running as a streaming replica that has replayed up to `replayed`.
pub fn replica_status(replayed: u64) -> NodeStatus {
    let mut s = NodeStatus::minimal("running", Role::Replica, info("pg-1"));
    s.postmaster_start_time = Some("2024-08-28 19:40:00.000001+00:00".into());
    s.server_version = Some(160_004);
    s.xlog = Some(Xlog::Replica {
        received_location: Some(replayed),
        replayed_location: Some(replayed),
        replayed_timestamp: None,
        paused: false,
    });
    s.timeline = Some(1);
    s.replication_state = Some("streaming".into());
    s.dcs_last_seen = 1_692_356_718;
    s.database_system_identifier = Some("7268616322854375442".into());
    s
}

/// An HA snapshot with `ttl: 30`.
pub fn ha(is_leader: bool) -> HaSnapshot {
    let mut ha = HaSnapshot::new(Duration::from_secs(30));
    ha.is_leader = is_leader;
    ha
}

pub fn member(name: &str, role: &str, data: Value) -> Member {
    let mut base = json!({
        "conn_url": format!("postgres://{name}.demo:5432/postgres"),
        "api_url": format!("http://{name}.demo:8008/patroni"),
        "state": "running",
        "role": role,
        "version": "4.0.0",
    });
    if let (Some(b), Some(extra)) = (base.as_object_mut(), data.as_object()) {
        b.extend(extra.clone());
    }
    Member {
        name: name.into(),
        version: "1".into(),
        data: serde_json::from_value::<MemberData>(base).expect("valid member data"),
    }
}

/// Three members, `pg-0` leading at [`LEADER_LSN`], with `config` as `/config`.
pub fn cluster_with(config: Value) -> Cluster {
    let members = vec![
        member(
            "pg-0",
            "primary",
            json!({"xlog_location": LEADER_LSN, "timeline": 1}),
        ),
        member(
            "pg-1",
            "replica",
            json!({"xlog_location": LEADER_LSN - 1000, "replay_lsn": LEADER_LSN - 1000,
                   "receive_lsn": LEADER_LSN - 10, "replication_state": "streaming", "timeline": 1}),
        ),
        member(
            "pg-2",
            "replica",
            json!({"state": "starting", "tags": {"nofailover": true}}),
        ),
    ];
    Cluster {
        initialize: Some("7268616322854375442".into()),
        config: Some(ClusterConfig {
            version: "1".into(),
            modify_version: Some("1".into()),
            data: config.as_object().cloned().unwrap_or_default(),
        }),
        leader: Some(Leader {
            version: "1".into(),
            name: "pg-0".into(),
            member: Some(members[0].clone()),
        }),
        status: LeaderStatus {
            last_lsn: LEADER_LSN,
            ..Default::default()
        },
        members,
        ..Default::default()
    }
}

pub fn cluster() -> Cluster {
    cluster_with(json!({"ttl": 30, "loop_wait": 10}))
}

/// The router over `backend` with default settings.
pub fn app(backend: &Arc<FakeBackend>) -> Router {
    router(Arc::clone(backend), ApiSettings::new("demo", "pg-0"))
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` through `app` as if from 127.0.0.1.
pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    send_from(app, request, SocketAddr::from(([127, 0, 0, 1], 40000))).await
}

/// Sends `request` through `app` as if from `client`.
pub async fn send_from(app: &Router, mut request: Request<Body>, client: SocketAddr) -> Answer {
    request.extensions_mut().insert(ConnectInfo(client));
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn request(method: Method, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("valid request")
}

/// A request with a JSON body and its `Content-Length`.
pub fn json_request(method: Method, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body.to_owned()))
        .expect("valid request")
}

pub async fn get(app: &Router, uri: &str) -> Answer {
    send(app, request(Method::GET, uri)).await
}
