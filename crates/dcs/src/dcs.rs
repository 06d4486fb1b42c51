//! The DCS as the HA loop and patronictl see it: one narrow trait, implemented by every
//! backend module ([`AnyDcs`](crate::AnyDcs) delegates to whichever was opened) and by
//! an in-memory fake for tests of the agent.
//!
//! Results follow Patroni's conventions: `Ok(false)` (`Ok(None)` for the sync state) is a
//! refused operation (someone else holds the lock, a compare-and-swap lost, the store
//! said no). An [`Error`](crate::Error) that [`is_unreachable`](crate::Error::is_unreachable)
//! means the DCS could not be reached within `retry_timeout` (the HA loop treats it as
//! "DCS is not accessible"). The other errors ([`Conflict`](crate::Error::Conflict),
//! [`Refused`](crate::Error::Refused)) come only from operations that have no `false` to
//! answer with (reading the cluster) or from a backend's internal read; nothing here names
//! a backend.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use patroni_core::{Cluster, MemberData, SyncState};

use crate::Result;

/// What a lock holder publishes with a renewal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaderStatusUpdate {
    /// Current WAL position; `None` renews the lock only.
    pub last_lsn: Option<u64>,
    /// Replication slots `{name: lsn}`.
    pub slots: Option<BTreeMap<String, u64>>,
    /// Member slots to retain.
    pub retain_slots: Option<Vec<String>>,
    /// Failsafe topology `{member: api_url}` (only with failsafe mode).
    pub failsafe: Option<BTreeMap<String, String>>,
}

/// The sync state as a write of `(leader, sync_standby, quorum)` at `version` leaves it:
/// standbys sorted, the quorum kept only with a leader (what every backend reports back).
pub(crate) fn written_sync_state(
    version: String,
    leader: Option<&str>,
    sync_standby: &[String],
    quorum: Option<u32>,
) -> SyncState {
    let mut standbys = sync_standby.to_vec();
    standbys.sort();
    SyncState {
        version: Some(version),
        leader: leader.map(String::from),
        sync_standby: standbys,
        quorum: leader.and(quorum).unwrap_or(0),
    }
}

/// What a write of the failover key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverRequest<'a> {
    /// Switch over from `leader` (a failover when `None`) to `candidate` (any healthy member
    /// when `None`), now or at `scheduled_at`.
    Request {
        /// The member to switch over from.
        leader: Option<&'a str>,
        /// The member to switch over or fail over to.
        candidate: Option<&'a str>,
        /// When (ISO 8601), for a scheduled switchover.
        scheduled_at: Option<&'a str>,
    },
    /// No request: the last one was carried out or cancelled.
    Clear,
}

impl<'a> FailoverRequest<'a> {
    /// `(leader, candidate, scheduled_at)`, an empty leader or candidate read as absent (as
    /// Patroni clears the key by writing `''`).
    pub fn parts(self) -> (Option<&'a str>, Option<&'a str>, Option<&'a str>) {
        match self {
            Self::Request {
                leader,
                candidate,
                scheduled_at,
            } => (
                leader.filter(|s| !s.is_empty()),
                candidate.filter(|s| !s.is_empty()),
                scheduled_at,
            ),
            Self::Clear => (None, None, None),
        }
    }
}

/// The operations of a DCS the HA loop uses.
pub trait Dcs: Send + Sync {
    /// The current cluster view.
    ///
    /// # Guarantees
    /// A lock reported free because it expired comes from a read of the store made after
    /// this call started, never only from a cache that may be stale (a suspended process,
    /// a lagging watch): deciding to race for the lock needs a fresh judgement.
    fn get_cluster(&self) -> impl Future<Output = Result<Cluster>> + Send;
    /// Tries to take the free leader lock, conditionally on the leader object being where
    /// `seen` says (its [`Leader::version`](patroni_core::Leader) in the view the decision was
    /// made from; `None` when that view had no leader object). A lock renewed or taken since
    /// that view is never overwritten: `Ok(false)`.
    fn attempt_to_acquire_leader(
        &self,
        seen: Option<&str>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Renews the lock this member holds.
    fn update_leader(
        &self,
        status: &LeaderStatusUpdate,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Releases the lock this member holds.
    fn delete_leader(&self, last_lsn: Option<u64>) -> impl Future<Output = Result<bool>> + Send;
    /// Publishes this member's data.
    fn touch_member(&self, data: &MemberData) -> impl Future<Output = Result<bool>> + Send;
    /// Bootstrap race (empty `sysid`) or records the system id.
    fn initialize(&self, sysid: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Cancels a failed bootstrap.
    fn cancel_initialization(&self) -> impl Future<Output = Result<bool>> + Send;
    /// Writes the dynamic configuration, conditionally on `version`.
    fn set_config_value(
        &self,
        value: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Writes the timeline history.
    fn set_history_value(&self, value: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Writes the failover key (a switchover/failover request, or none), conditionally on
    /// `version` when given.
    fn manual_failover(
        &self,
        request: FailoverRequest<'_>,
        version: Option<&str>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Writes the synchronous replication state: the primary `leader` and its synchronous
    /// standbys (`quorum` in quorum mode), conditionally on `version`; the state as written,
    /// `None` when refused.
    fn write_sync_state(
        &self,
        leader: Option<&str>,
        sync_standby: &[String],
        quorum: Option<u32>,
        version: Option<&str>,
    ) -> impl Future<Output = Result<Option<SyncState>>> + Send;
    /// Empties the synchronous replication state, conditionally on `version`; false when
    /// refused.
    fn delete_sync_state(&self, version: Option<&str>)
    -> impl Future<Output = Result<bool>> + Send;
    /// Deletes the cluster's state (`patronictl remove`), as Patroni does on each backend:
    /// on Kubernetes the members' pods stay, on etcd the whole prefix goes, members included.
    fn delete_cluster(&self) -> impl Future<Output = Result<bool>> + Send;
    /// Waits up to `timeout` for a change that matters; true if one came.
    fn watch(&self, timeout: Duration) -> impl Future<Output = bool> + Send;
    /// Takes the timings of a changed dynamic configuration: `ttl`, what the next leader
    /// write promises, and `retry_timeout`, how long one operation may retry.
    fn set_timing(&self, ttl: Duration, retry_timeout: Duration);
    /// How long the store keeps this member's lock after it last heard from it, when that is
    /// shorter than the `ttl` asked for (ZooKeeper's server may negotiate a shorter session
    /// timeout). The lease fence counts with it (`patroni_core::ha::lease`).
    fn lease_limit(&self) -> Option<Duration> {
        None
    }
}
