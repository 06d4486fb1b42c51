//! [`NodeStatus`]: what this member knows about itself at one moment, as the agent hands it to
//! the API. It is the input of every health check and the content of the status document
//! (`GET /patroni`, rest-api.md §3); [`StatusDocument`](crate::StatusDocument) is its JSON form.
//!
//! The agent fills it from one status query on the local PostgreSQL plus its own in-memory
//! state (effective tags, sysid, pending restart, the cached DCS view). When PostgreSQL is not
//! running (or the query failed), only `state`, `role` and the Patroni-level fields are set,
//! exactly as Patroni's minimal document.

use std::collections::BTreeMap;

use patroni_core::Role;
use serde::Serialize;
use serde_json::{Map, Value};

/// A snapshot of this member's PostgreSQL and Patroni state.
///
/// Written by the agent (the [`Backend`](crate::Backend)) on each request; the API only reads
/// it. Fields that are `None`/`false`/empty are left out of the JSON, as Patroni omits them.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    /// PostgreSQL state string (`running`, `starting`, `stopped`, `creating replica`, …), or
    /// `unknown` when PostgreSQL is `running` but the status query failed.
    pub state: String,
    /// `pg_postmaster_start_time()` as Python prints it (`2024-08-28 19:39:26.352526+00:00`);
    /// `None` when PostgreSQL is down.
    pub postmaster_start_time: Option<String>,
    /// `primary`/`replica` from `pg_is_in_recovery()`; in a standby cluster the local role
    /// (`standby_leader` or `replica`); when PostgreSQL is down, the agent's internal role
    /// (`demoted`, `uninitialized`, …).
    pub role: Role,
    /// `server_version` as an integer (`160004`); `None` when PostgreSQL is down.
    pub server_version: Option<u32>,
    /// WAL positions; `None` when PostgreSQL is down.
    pub xlog: Option<Xlog>,
    /// This replica is listed in `/sync` while `synchronous_mode: on`.
    pub sync_standby: bool,
    /// This replica is listed in `/sync` while `synchronous_mode: quorum`.
    pub quorum_standby: bool,
    /// Primary: from the current WAL file name; replica: cached from the replication
    /// connection. `None` when unknown.
    pub timeline: Option<u64>,
    /// Replicas on PostgreSQL 9.6+: `streaming` or `in archive recovery`.
    pub replication_state: Option<String>,
    /// One row per WAL sender (`pg_stat_replication`).
    pub replication: Vec<ReplicationRow>,
    /// The cluster is paused (maintenance mode).
    pub pause: bool,
    /// Nobody holds the leader lock, or the DCS view is unavailable.
    pub cluster_unlocked: bool,
    /// DCS failsafe mode is active on this member.
    pub failsafe_mode_is_active: bool,
    /// Unix time (seconds) of the last successful DCS read; 0 if never.
    pub dcs_last_seen: u64,
    /// Effective tags: configured plus temporary ones (`nosync`, `sync_priority: 0`).
    pub tags: BTreeMap<String, Value>,
    /// PostgreSQL system identifier, once known.
    pub database_system_identifier: Option<String>,
    /// Parameters whose change needs a restart `{name: change}`; non-empty means
    /// `pending_restart: true`.
    pub pending_restart_reason: BTreeMap<String, ParamChange>,
    /// The pending scheduled restart: `{schedule: ISO 8601, ...filters}`.
    pub scheduled_restart: Option<Map<String, Value>>,
    /// The watchdog is required but unhealthy.
    pub watchdog_failed: bool,
    /// Log queue length, only when longer than normal.
    pub logger_queue_size: Option<u64>,
    /// Log records lost while the queue was full, only when any were.
    pub logger_records_lost: Option<u64>,
    /// Version, scope and name of this agent.
    pub patroni: PatroniInfo,
    /// `latest_end_lsn` of the WAL receiver (replicas): the leader's position as last reported
    /// over replication. Used by health checks as a lower bound of the leader's optime when
    /// the DCS is stale; never serialised.
    pub latest_end_lsn: Option<u64>,
}

/// WAL positions, by role.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Xlog {
    /// A primary: `{location}`.
    Primary {
        /// `pg_current_wal_flush_lsn()` in bytes.
        location: u64,
    },
    /// A replica: `{received_location, replayed_location, replayed_timestamp, paused}`; `None`
    /// values are JSON `null`, as Patroni writes them.
    Replica {
        /// Written LSN (PG13+), else received LSN, else replayed LSN, in bytes.
        received_location: Option<u64>,
        /// `pg_last_wal_replay_lsn()` in bytes.
        replayed_location: Option<u64>,
        /// `pg_last_xact_replay_timestamp()` as Python prints it.
        replayed_timestamp: Option<String>,
        /// `pg_is_wal_replay_paused()`.
        paused: bool,
    },
}

/// One WAL sender of this member (`pg_stat_replication` joined with `pg_stat_activity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicationRow {
    /// Role the standby connected as.
    pub usename: Option<String>,
    /// The standby's `application_name` (its member name).
    pub application_name: String,
    /// The standby's address; `null` for Unix sockets.
    pub client_addr: Option<String>,
    /// Sender state (`streaming`, `catchup`, …).
    pub state: String,
    /// `async`, `potential`, `sync` or `quorum`.
    pub sync_state: String,
    /// Priority in `synchronous_standby_names`.
    pub sync_priority: i32,
}

/// The old and new value of a parameter waiting for a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamChange {
    /// The value PostgreSQL runs with.
    pub old_value: String,
    /// The configured value.
    pub new_value: String,
}

/// `patroni: {version, scope, name}` of the status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatroniInfo {
    /// The Patroni version this agent reports (dotted numbers).
    pub version: String,
    /// Cluster name (`scope`).
    pub scope: String,
    /// This member's name.
    pub name: String,
}

// === impl NodeStatus ===

impl NodeStatus {
    /// The minimal status of a member whose PostgreSQL is not running: `state`, `role` and the
    /// Patroni fields, everything else empty.
    pub fn minimal(state: impl Into<String>, role: Role, patroni: PatroniInfo) -> Self {
        Self {
            state: state.into(),
            postmaster_start_time: None,
            role,
            server_version: None,
            xlog: None,
            sync_standby: false,
            quorum_standby: false,
            timeline: None,
            replication_state: None,
            replication: Vec::new(),
            pause: false,
            cluster_unlocked: false,
            failsafe_mode_is_active: false,
            dcs_last_seen: 0,
            tags: BTreeMap::new(),
            database_system_identifier: None,
            pending_restart_reason: BTreeMap::new(),
            scheduled_restart: None,
            watchdog_failed: false,
            logger_queue_size: None,
            logger_records_lost: None,
            patroni,
            latest_end_lsn: None,
        }
    }

    /// Whether PostgreSQL is `running`.
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// `replayed_location` for replicas; 0 otherwise (Patroni's default in lag checks).
    pub fn replayed_location(&self) -> u64 {
        match &self.xlog {
            Some(Xlog::Replica {
                replayed_location, ..
            }) => replayed_location.unwrap_or(0),
            _ => 0,
        }
    }

    /// `received_location` for replicas; 0 otherwise.
    pub fn received_location(&self) -> u64 {
        match &self.xlog {
            Some(Xlog::Replica {
                received_location, ..
            }) => received_location.unwrap_or(0),
            _ => 0,
        }
    }
}
