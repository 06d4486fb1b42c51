//! The JSON documents the API answers with, built with `From` from what the agent reports:
//! [`StatusDocument`] (rest-api.md §3, from a [`NodeStatus`]) and [`ClusterDocument`]
//! (`GET /cluster`, §5, Patroni's `cluster_as_json`, from a [`ClusterView`]).
//!
//! Field names and the rule "absent fields are omitted, not null" follow Patroni exactly; the
//! golden tests in `tests/` compare whole documents.

use std::collections::BTreeMap;

use patroni_core::{Cluster, Member};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::dynamic::{GlobalFlags, sync_matches};
use crate::node::{NodeStatus, ParamChange, PatroniInfo, ReplicationRow, Xlog};
use crate::schedule;
use crate::units::{format_lsn, parse_int};

/// PostgreSQL's default port, used when a member's `conn_url` names none.
const DEFAULT_POSTGRES_PORT: u16 = 5432;

/// The status document: body of `GET /patroni` and of every health check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusDocument<'a> {
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    postmaster_start_time: Option<&'a str>,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xlog: Option<&'a Xlog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sync_standby: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quorum_standby: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replication_state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<&'a [ReplicationRow]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pause: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_unlocked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failsafe_mode_is_active: Option<bool>,
    dcs_last_seen: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_system_identifier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_restart: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_restart_reason: Option<&'a BTreeMap<String, ParamChange>>,
    patroni: &'a PatroniInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_restart: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    watchdog_failed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logger_queue_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logger_records_lost: Option<u64>,
}

/// `Some(true)` for a set flag, `None` (omitted) otherwise.
fn flag(set: bool) -> Option<bool> {
    set.then_some(true)
}

impl<'a> From<&'a NodeStatus> for StatusDocument<'a> {
    fn from(s: &'a NodeStatus) -> Self {
        let pending = !s.pending_restart_reason.is_empty();
        Self {
            state: &s.state,
            postmaster_start_time: s.postmaster_start_time.as_deref(),
            role: s.role.as_str(),
            server_version: s.server_version,
            xlog: s.xlog.as_ref(),
            sync_standby: flag(s.sync_standby),
            quorum_standby: flag(s.quorum_standby),
            timeline: s.timeline,
            replication_state: s.replication_state.as_deref(),
            replication: (!s.replication.is_empty()).then_some(s.replication.as_slice()),
            pause: flag(s.pause),
            cluster_unlocked: flag(s.cluster_unlocked),
            failsafe_mode_is_active: flag(s.failsafe_mode_is_active),
            dcs_last_seen: s.dcs_last_seen,
            tags: (!s.tags.is_empty()).then_some(&s.tags),
            database_system_identifier: s.database_system_identifier.as_deref(),
            pending_restart: flag(pending),
            pending_restart_reason: pending.then_some(&s.pending_restart_reason),
            patroni: &s.patroni,
            scheduled_restart: s.scheduled_restart.as_ref(),
            watchdog_failed: flag(s.watchdog_failed),
            logger_queue_size: s.logger_queue_size,
            logger_records_lost: s.logger_records_lost,
        }
    }
}

/// What `GET /cluster` is built from: a fresh cluster view, the dynamic configuration to read
/// it with, and this cluster's name.
#[derive(Debug, Clone, Copy)]
pub struct ClusterView<'a> {
    /// The cluster as just read from the DCS.
    pub cluster: &'a Cluster,
    /// Flags of the configuration in force (see [`GlobalFlags::resolve`]).
    pub flags: &'a GlobalFlags,
    /// `scope`.
    pub scope: &'a str,
}

/// Body of `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterDocument {
    /// Every member, sorted by name.
    pub members: Vec<MemberDocument>,
    /// `true` when the cluster is paused; omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
    /// The pending scheduled switchover, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_switchover: Option<ScheduledSwitchover>,
    /// Cluster name.
    pub scope: String,
}

/// `scheduled_switchover` of [`ClusterDocument`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledSwitchover {
    /// When, as `isoformat()`.
    pub at: String,
    /// The leader to switch away from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// One member in [`ClusterDocument`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberDocument {
    /// Member name.
    pub name: String,
    /// `leader`, `standby_leader`, `sync_standby`, `quorum_standby` or `replica`.
    pub role: &'static str,
    /// Non-leaders: `replication_state` when reported, else `state`; the leader: `state`.
    pub state: String,
    /// REST API URL (`null` when the member published none).
    pub api_url: Option<String>,
    /// PostgreSQL host from `conn_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// PostgreSQL port from `conn_url` (5432 when not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Timeline, when published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u64>,
    /// `pending_restart`, when published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_restart: Option<Value>,
    /// `pending_restart_reason`, when published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Value>,
    /// `scheduled_restart`, when published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<Value>,
    /// Tags, when published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Value>>,
    /// Non-leaders: received LSN (`X/Y`) or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<Reported>,
    /// Non-leaders: bytes the received LSN is behind the leader, or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_lag: Option<Reported>,
    /// Non-leaders: replayed LSN or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<Reported>,
    /// Non-leaders: replay lag in bytes or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lag: Option<Reported>,
    /// Non-leaders: current WAL position or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsn: Option<Reported>,
    /// Non-leaders: lag of `lsn` in bytes or `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<Reported>,
}

/// A position or lag a member reported, or the string `unknown` when it reported none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// An LSN, written `X/Y`.
    Lsn(u64),
    /// A lag in bytes, written as a number.
    Lag(u64),
    /// Not reported: `"unknown"`.
    Unknown,
}

impl Serialize for Reported {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Reported::Lsn(lsn) => s.serialize_str(&format_lsn(*lsn)),
            Reported::Lag(lag) => s.serialize_u64(*lag),
            Reported::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl From<ClusterView<'_>> for ClusterDocument {
    fn from(view: ClusterView<'_>) -> Self {
        let mut members: Vec<MemberDocument> = view
            .cluster
            .members
            .iter()
            .map(|m| member_document(view.cluster, view.flags, m))
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let scheduled_switchover = view.cluster.failover.as_ref().and_then(|f| {
            let at = f.scheduled_at.as_deref().filter(|s| !s.is_empty())?;
            Some(ScheduledSwitchover {
                at: schedule::normalize(at),
                from: f.leader.clone().filter(|s| !s.is_empty()),
                to: f.candidate.clone().filter(|s| !s.is_empty()),
            })
        });
        Self {
            members,
            pause: flag(view.flags.paused),
            scheduled_switchover,
            scope: view.scope.to_owned(),
        }
    }
}

/// One member as Patroni's `cluster_as_json` shows it.
fn member_document(cluster: &Cluster, flags: &GlobalFlags, m: &Member) -> MemberDocument {
    let is_leader = cluster.leader_name() == Some(m.name.as_str());
    let role = if is_leader {
        if flags.standby_cluster {
            "standby_leader"
        } else {
            "leader"
        }
    } else if flags.is_synchronous_mode() && sync_matches(&cluster.sync, &m.name) {
        if flags.is_quorum_commit_mode() {
            "quorum_standby"
        } else {
            "sync_standby"
        }
    } else {
        "replica"
    };
    let d = &m.data;
    let replication_state = if role == "leader" {
        None
    } else {
        d.replication_state.as_deref().filter(|s| !s.is_empty())
    };
    let state = replication_state
        .or(d.state.as_deref())
        .unwrap_or_default()
        .to_owned();
    let (host, port) = conn_host_port(m).unzip();
    let extra = |key: &str| d.extra.get(key).cloned();
    let mut doc = MemberDocument {
        name: m.name.clone(),
        role,
        state,
        api_url: d.api_url.clone(),
        host,
        port,
        timeline: d.timeline,
        pending_restart: extra("pending_restart"),
        pending_restart_reason: extra("pending_restart_reason"),
        scheduled_restart: extra("scheduled_restart"),
        tags: d.tags.clone(),
        receive_lsn: None,
        receive_lag: None,
        replay_lsn: None,
        replay_lag: None,
        lsn: None,
        lag: None,
    };
    if !is_leader {
        let optime = cluster.status.last_lsn;
        let pair = |lsn: Option<u64>| match lsn.filter(|l| *l != 0) {
            None => (Some(Reported::Unknown), Some(Reported::Unknown)),
            Some(lsn) => (
                Some(Reported::Lsn(lsn)),
                Some(Reported::Lag(optime.saturating_sub(lsn))),
            ),
        };
        (doc.receive_lsn, doc.receive_lag) = pair(d.receive_lsn);
        (doc.replay_lsn, doc.replay_lag) = pair(d.replay_lsn);
        (doc.lsn, doc.lag) = pair(d.xlog_location);
    }
    doc
}

/// Host and port of a member's PostgreSQL: from `conn_kwargs` when published, else parsed
/// from `conn_url` (`postgres://[user@]host[:port]/db`), lower-cased like Python's `urlparse`.
fn conn_host_port(m: &Member) -> Option<(String, u16)> {
    if let Some(kw) = m.data.extra.get("conn_kwargs").and_then(Value::as_object) {
        let host = kw.get("host").and_then(Value::as_str)?.to_owned();
        let port = kw
            .get("port")
            .and_then(parse_int)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(DEFAULT_POSTGRES_PORT);
        return Some((host, port));
    }
    let (host, port) = crate::url::host_port(m.data.conn_url.as_deref()?)?;
    Some((host, port.unwrap_or(DEFAULT_POSTGRES_PORT)))
}
