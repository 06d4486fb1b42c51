//! An in-memory DCS for tests of the agent: several members share one
//! [`MemoryStore`], each through its own [`MemoryDcs`] handle.
//!
//! It keeps Patroni's semantics where the HA loop can tell: the lock
//! expires `ttl` after its last write (on tokio's clock, so tests can pause
//! and advance time), compare-and-swap on versions, `transitions` counting,
//! and a watch woken by lock and config changes.
//!
//! Faults: [`MemoryStore::set_reachable`] (the whole store, for everyone),
//! [`MemoryStore::partition`] (one member cut off: its every operation is
//! [`Error::Unreachable`] and its watch hears nothing, the others carry on),
//! [`MemoryStore::fail_next`] (one [`Op`] of one member fails once, as a
//! [`Fault`]), and [`MemoryStore::freeze_after_read`] (a member suspended
//! right after a read).

mod fault;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use patroni_core::{
    Cluster, ClusterConfig, Failover, History, Leader, LeaderStatus, Member, MemberData, SyncState,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use self::fault::Injected;
pub use self::fault::{Fault, Op};
use crate::dcs::{Dcs, FailoverRequest, LeaderStatusUpdate, written_sync_state};
use crate::{Error, Result};

/// The shared state of one in-memory cluster.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug, Default)]
struct StoreInner {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    version: u64,
    reachable_denied: bool,
    leader: Option<LockState>,
    leader_version: u64,
    transitions: u64,
    status: LeaderStatus,
    initialize: Option<String>,
    config: Option<(u64, String)>,
    history: Option<String>,
    failover: Option<Failover>,
    sync: Option<SyncState>,
    /// The failsafe topology the leader last published.
    failsafe: Option<BTreeMap<String, String>>,
    members: BTreeMap<String, (u64, MemberData)>,
    /// Members whose next `get_cluster` returns a view taken before a pause this long.
    frozen: BTreeMap<String, Duration>,
    /// Members that tried to take the lock from a view older than its last change.
    stale_attempts: Vec<String>,
    /// Members cut off from the store ([`MemoryStore::partition`]).
    partitioned: BTreeSet<String>,
    /// One pending failure per member and operation ([`MemoryStore::fail_next`]).
    faults: BTreeMap<(String, Op), Fault>,
}

#[derive(Debug, Clone)]
struct LockState {
    holder: String,
    expires: Instant,
}

/// One member's handle on a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryDcs {
    store: MemoryStore,
    name: String,
    /// What a lock write promises; shared by the clones of this handle, changed by
    /// [`Dcs::set_timing`].
    ttl: Arc<Mutex<Duration>>,
}

// === impl MemoryStore ===

impl MemoryStore {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle for member `name`, whose lock writes last `ttl`.
    pub fn member(&self, name: &str, ttl: Duration) -> MemoryDcs {
        MemoryDcs {
            store: self.clone(),
            name: name.to_string(),
            ttl: Arc::new(Mutex::new(ttl)),
        }
    }

    /// Makes every operation fail as unreachable (`false`) or work again.
    pub fn set_reachable(&self, reachable: bool) {
        self.lock().reachable_denied = !reachable;
    }

    /// Cuts member `name` off from the store (`true`) or reconnects it (`false`): while cut
    /// off, its every operation fails as [`Error::Unreachable`] and its watch hears no change;
    /// the other members go on as usual (and see its lock expire).
    pub fn partition(&self, name: &str, partitioned: bool) {
        let mut s = self.lock();
        if partitioned {
            s.partitioned.insert(name.to_string());
        } else {
            s.partitioned.remove(name);
        }
    }

    /// Makes member `name`'s next `op` fail as `fault`, once; the one after works again. A
    /// second call for the same member and operation replaces the first.
    pub fn fail_next(&self, name: &str, op: Op, fault: Fault) {
        self.lock().faults.insert((name.to_string(), op), fault);
    }

    /// Failures set with [`fail_next`](Self::fail_next) that have not happened yet.
    pub fn pending_faults(&self) -> Vec<(String, Op, Fault)> {
        self.lock()
            .faults
            .iter()
            .map(|((n, op), f)| (n.clone(), *op, *f))
            .collect()
    }

    /// Simulates member `name`'s process being suspended right after it reads the DCS: its
    /// next `get_cluster` takes the view, then sleeps `pause` (tokio's clock) before returning
    /// it, so the member decides from a view `pause` old.
    pub fn freeze_after_read(&self, name: &str, pause: Duration) {
        self.lock().frozen.insert(name.to_string(), pause);
    }

    /// Members that tried to take the lock from a view older than the lock's last change
    /// (refused, but a decision made from a stale view), in order.
    pub fn stale_acquire_attempts(&self) -> Vec<String> {
        self.lock().stale_attempts.clone()
    }

    /// Who holds the lock now, and the version of the leader entry.
    pub fn holder(&self) -> (Option<String>, u64) {
        let s = self.lock();
        (s.holder(Instant::now()).map(String::from), s.leader_version)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.inner.changed.notify_waiters();
    }
}

// === impl State ===

impl State {
    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn holder(&self, now: Instant) -> Option<&str> {
        self.leader
            .as_ref()
            .filter(|l| l.expires >= now)
            .map(|l| l.holder.as_str())
    }

    fn view(&self, now: Instant) -> Cluster {
        let members: Vec<Member> = self
            .members
            .iter()
            .map(|(n, (v, d))| Member {
                name: n.clone(),
                version: v.to_string(),
                data: d.clone(),
            })
            .collect();
        let name = self.holder(now).unwrap_or("").to_string();
        let leader = (self.leader_version > 0).then(|| Leader {
            version: self.leader_version.to_string(),
            member: members
                .iter()
                .find(|m| !name.is_empty() && m.name == name)
                .cloned(),
            name,
        });
        let config = self.config.as_ref().map(|(v, text)| {
            let data = match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => Default::default(),
            };
            ClusterConfig {
                version: v.to_string(),
                modify_version: Some(v.to_string()),
                data,
            }
        });
        let history = self.history.as_ref().map(|h| History {
            version: self.version.to_string(),
            lines: serde_json::from_str(h).unwrap_or_default(),
        });
        Cluster {
            initialize: self.initialize.clone(),
            config,
            leader,
            status: self.status.clone(),
            members,
            failover: self.failover.clone(),
            sync: self.sync.clone().unwrap_or_default(),
            history,
            failsafe: self.failsafe.clone(),
        }
    }
}

// === impl MemoryDcs ===

impl MemoryDcs {
    /// What a lock write promises now.
    fn ttl(&self) -> Duration {
        *self
            .ttl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The store, for `op`: an error when the store is unreachable, this member partitioned
    /// or `op` due to fail as unreachable; `None` when `op` is due to be refused.
    fn guard(&self, op: Op) -> Result<Option<MutexGuard<'_, State>>> {
        let mut s = self.store.lock();
        if s.reachable_denied {
            return Err(Error::NotReady(Duration::ZERO));
        }
        let unreachable = |why| Error::Unreachable {
            what: format!("{op:?} of {}", self.name),
            source: Box::new(Injected(why)),
        };
        if s.partitioned.contains(&self.name) {
            return Err(unreachable("partitioned from the store"));
        }
        match s.faults.remove(&(self.name.clone(), op)) {
            None => Ok(Some(s)),
            Some(Fault::Unreachable) => Err(unreachable("unreachable once")),
            Some(Fault::Refused) => Ok(None),
        }
    }

    fn partitioned(&self) -> bool {
        self.store.lock().partitioned.contains(&self.name)
    }

    /// The sync state write, compare-and-swap on `version`; `None` when that lost.
    fn write_sync(
        &self,
        mut s: MutexGuard<'_, State>,
        leader: Option<&str>,
        sync_standby: &[String],
        quorum: Option<u32>,
        version: Option<&str>,
    ) -> Option<SyncState> {
        let current = s.sync.as_ref().and_then(|c| c.version.clone());
        if version.is_some_and(|want| current.as_deref() != Some(want)) {
            return None;
        }
        let state = written_sync_state(s.bump().to_string(), leader, sync_standby, quorum);
        s.sync = Some(state.clone());
        drop(s);
        self.store.changed();
        Some(state)
    }
}

impl Dcs for MemoryDcs {
    async fn get_cluster(&self) -> Result<Cluster> {
        let (view, pause) = {
            let Some(mut s) = self.guard(Op::GetCluster)? else {
                return Err(Error::Refused {
                    what: format!("GetCluster of {}", self.name),
                    source: Box::new(Injected("refused once")),
                });
            };
            (s.view(Instant::now()), s.frozen.remove(&self.name))
        };
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        Ok(view)
    }

    async fn attempt_to_acquire_leader(&self, seen: Option<&str>) -> Result<bool> {
        let now = Instant::now();
        let Some(mut s) = self.guard(Op::AttemptToAcquireLeader)? else {
            return Ok(false);
        };
        let current = (s.leader_version > 0).then(|| s.leader_version.to_string());
        if seen != current.as_deref() {
            s.stale_attempts.push(self.name.clone());
            return Ok(false);
        }
        if s.holder(now).is_some() {
            return Ok(false);
        }
        let previous = s.leader.as_ref().map(|l| l.holder.clone());
        if s.leader_version > 0 && previous.as_deref() != Some(self.name.as_str()) {
            s.transitions += 1;
        }
        s.leader = Some(LockState {
            holder: self.name.clone(),
            expires: now + self.ttl(),
        });
        s.leader_version = s.bump();
        drop(s);
        self.store.changed();
        Ok(true)
    }

    async fn update_leader(&self, status: &LeaderStatusUpdate) -> Result<bool> {
        let now = Instant::now();
        let Some(mut s) = self.guard(Op::UpdateLeader)? else {
            return Ok(false);
        };
        if s.holder(now) != Some(self.name.as_str()) {
            return Ok(false);
        }
        s.leader = Some(LockState {
            holder: self.name.clone(),
            expires: now + self.ttl(),
        });
        if let Some(lsn) = status.last_lsn.filter(|l| *l > 0) {
            s.status.last_lsn = lsn;
            s.status.slots = status.slots.clone().filter(|x| !x.is_empty());
            s.status.retain_slots = status.retain_slots.clone().unwrap_or_default();
        }
        if let Some(topology) = &status.failsafe {
            // As Patroni on Kubernetes: an empty topology removes the annotation.
            s.failsafe = Some(topology.clone()).filter(|t| !t.is_empty());
        }
        s.leader_version = s.bump();
        drop(s);
        self.store.changed();
        Ok(true)
    }

    async fn delete_leader(&self, last_lsn: Option<u64>) -> Result<bool> {
        let now = Instant::now();
        let Some(mut s) = self.guard(Op::DeleteLeader)? else {
            return Ok(false);
        };
        if s.holder(now) != Some(self.name.as_str()) {
            return Ok(false);
        }
        s.leader = None;
        if let Some(lsn) = last_lsn.filter(|l| *l > 0) {
            s.status.last_lsn = lsn;
        }
        s.leader_version = s.bump();
        drop(s);
        self.store.changed();
        Ok(true)
    }

    async fn touch_member(&self, data: &MemberData) -> Result<bool> {
        let Some(mut s) = self.guard(Op::TouchMember)? else {
            return Ok(false);
        };
        let v = s.bump();
        s.members.insert(self.name.clone(), (v, data.clone()));
        Ok(true)
    }

    async fn initialize(&self, sysid: &str) -> Result<bool> {
        let Some(mut s) = self.guard(Op::Initialize)? else {
            return Ok(false);
        };
        // The race: only the first empty claim wins; the winner then records the sysid.
        if sysid.is_empty() && s.initialize.is_some() {
            return Ok(false);
        }
        s.initialize = Some(sysid.to_string());
        s.bump();
        Ok(true)
    }

    async fn cancel_initialization(&self) -> Result<bool> {
        let Some(mut s) = self.guard(Op::CancelInitialization)? else {
            return Ok(false);
        };
        s.initialize = None;
        s.bump();
        Ok(true)
    }

    async fn set_config_value(&self, value: &str, version: Option<&str>) -> Result<bool> {
        let Some(mut s) = self.guard(Op::SetConfigValue)? else {
            return Ok(false);
        };
        if let (Some(want), Some((have, _))) = (version, &s.config)
            && want != have.to_string()
        {
            return Ok(false);
        }
        let v = s.bump();
        s.config = Some((v, value.to_string()));
        drop(s);
        self.store.changed();
        Ok(true)
    }

    async fn set_history_value(&self, value: &str) -> Result<bool> {
        let Some(mut s) = self.guard(Op::SetHistoryValue)? else {
            return Ok(false);
        };
        s.history = Some(value.to_string());
        s.bump();
        Ok(true)
    }

    async fn manual_failover(
        &self,
        request: FailoverRequest<'_>,
        version: Option<&str>,
    ) -> Result<bool> {
        let (leader, candidate, scheduled_at) = request.parts();
        let Some(mut s) = self.guard(Op::ManualFailover)? else {
            return Ok(false);
        };
        if let (Some(want), Some(have)) = (version, &s.failover)
            && want != have.version
        {
            return Ok(false);
        }
        let v = s.bump();
        s.failover = Some(Failover {
            version: v.to_string(),
            leader: leader.map(String::from),
            candidate: candidate.map(String::from),
            scheduled_at: scheduled_at.map(String::from),
        });
        Ok(true)
    }

    async fn write_sync_state(
        &self,
        leader: Option<&str>,
        sync_standby: &[String],
        quorum: Option<u32>,
        version: Option<&str>,
    ) -> Result<Option<SyncState>> {
        let Some(s) = self.guard(Op::WriteSyncState)? else {
            return Ok(None);
        };
        Ok(self.write_sync(s, leader, sync_standby, quorum, version))
    }

    async fn delete_sync_state(&self, version: Option<&str>) -> Result<bool> {
        let Some(s) = self.guard(Op::DeleteSyncState)? else {
            return Ok(false);
        };
        Ok(self.write_sync(s, None, &[], None, version).is_some())
    }

    async fn delete_cluster(&self) -> Result<bool> {
        let Some(mut s) = self.guard(Op::DeleteCluster)? else {
            return Ok(false);
        };
        // The cluster's state goes; members' records and the fault switches stay.
        let kept = State {
            version: s.version,
            reachable_denied: s.reachable_denied,
            members: std::mem::take(&mut s.members),
            frozen: std::mem::take(&mut s.frozen),
            stale_attempts: std::mem::take(&mut s.stale_attempts),
            partitioned: std::mem::take(&mut s.partitioned),
            faults: std::mem::take(&mut s.faults),
            ..State::default()
        };
        *s = kept;
        drop(s);
        self.store.changed();
        Ok(true)
    }

    async fn watch(&self, timeout: Duration) -> bool {
        if self.partitioned() {
            // Cut off: no change can reach this member.
            tokio::time::sleep(timeout).await;
            return false;
        }
        tokio::time::timeout(timeout, self.store.inner.changed.notified())
            .await
            .is_ok()
    }

    fn set_timing(&self, ttl: Duration, _retry_timeout: Duration) {
        *self
            .ttl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ttl;
    }
}

#[cfg(test)]
mod tests;
