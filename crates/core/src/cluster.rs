//! The cluster as one member observed it in the DCS at one moment.
//!
//! A [`Cluster`] is a plain value: the DCS builds it from its caches, the HA
//! logic decides from it, nobody mutates it. Its JSON form is also what the
//! compatibility tests compare against Patroni's own view of the same
//! objects, field by field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Member;

/// A snapshot of the whole cluster state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// `None`: nobody has started a bootstrap. `Some("")`: a member won the
    /// bootstrap race and is initialising. `Some(sysid)`: the cluster's
    /// PostgreSQL system identifier.
    pub initialize: Option<String>,
    /// The dynamic configuration, if the config object exists.
    pub config: Option<ClusterConfig>,
    /// The leader lock as observed; `None` when no leader object exists.
    pub leader: Option<Leader>,
    /// What the leader last published besides the lock.
    pub status: LeaderStatus,
    /// Every member, sorted by name.
    pub members: Vec<Member>,
    /// A pending manual failover or switchover.
    pub failover: Option<Failover>,
    /// Synchronous replication state.
    pub sync: SyncState,
    /// Timeline history, if recorded.
    pub history: Option<History>,
    /// Failsafe topology `{member: api_url}` published by the leader.
    pub failsafe: Option<BTreeMap<String, String>>,
}

/// The dynamic configuration object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Version of the object (for compare-and-swap writes).
    pub version: String,
    /// Version at which `config` was last set; `None` when the object has
    /// no (valid) configuration (REST `PATCH /config` then answers 503).
    pub modify_version: Option<String>,
    /// The configuration document (a JSON object; `{}` when invalid).
    pub data: serde_json::Map<String, Value>,
}

/// The leader lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leader {
    /// Version of the leader object (for compare-and-swap writes).
    pub version: String,
    /// Lock holder; empty when the lock is free or expired.
    pub name: String,
    /// The holder's member entry, if it is a member.
    pub member: Option<Member>,
}

/// What the leader publishes with each renewal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaderStatus {
    /// The leader's last known WAL position (`optime`), 0 when unknown.
    pub last_lsn: u64,
    /// Replication slots of the primary `{name: lsn}`.
    pub slots: Option<BTreeMap<String, u64>>,
    /// Member slots to keep (`retain_slots`).
    pub retain_slots: Vec<String>,
}

/// A requested failover (no `leader`) or switchover (`leader` set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    /// Version of the failover object.
    pub version: String,
    /// The leader to switch away from.
    pub leader: Option<String>,
    /// The candidate (annotation `member`).
    pub candidate: Option<String>,
    /// When to do it (ISO 8601 with offset), if scheduled.
    pub scheduled_at: Option<String>,
}

/// Synchronous replication state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// Version of the sync object; `None` when it does not exist.
    pub version: Option<String>,
    /// The primary that owns the state.
    pub leader: Option<String>,
    /// Synchronous standbys, sorted.
    pub sync_standby: Vec<String>,
    /// Quorum (0 unless both `leader` and `quorum` are set).
    pub quorum: u32,
}

/// Timeline history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Version of the object holding it.
    pub version: String,
    /// `[timeline, switch_lsn, reason(, timestamp, new_leader)]` per line.
    pub lines: Vec<Value>,
}

// === impl Failover ===

impl Failover {
    /// Whether the key names a leader to switch away from or a candidate.
    pub fn is_requested(&self) -> bool {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        set(&self.leader) || set(&self.candidate)
    }
}

// === impl Cluster ===

impl Cluster {
    /// Whether someone holds the lock.
    pub fn is_locked(&self) -> bool {
        self.leader.as_ref().is_some_and(|l| !l.name.is_empty())
    }

    /// Name of the lock holder, if any.
    pub fn leader_name(&self) -> Option<&str> {
        self.leader
            .as_ref()
            .map(|l| l.name.as_str())
            .filter(|n| !n.is_empty())
    }

    /// The failover key, if it requests something. A cleared key (all
    /// values removed, the object left in place) is no request: Patroni's
    /// `Failover` is falsy without a leader and a candidate.
    pub fn pending_failover(&self) -> Option<&Failover> {
        self.failover.as_ref().filter(|f| f.is_requested())
    }

    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}
