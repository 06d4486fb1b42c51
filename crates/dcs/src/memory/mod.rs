//! An in-memory DCS for tests of the agent: several members share one
//! [`MemoryStore`], each through its own [`MemoryDcs`] handle.
//!
//! It keeps Patroni's semantics where the HA loop can tell: the lock
//! expires `ttl` after its last write (on tokio's clock, so tests can pause
//! and advance time), compare-and-swap on versions, `transitions` counting,
//! and a watch woken by lock and config changes. Faults are injected with
//! [`MemoryStore::set_reachable`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use patroni_core::{
    Cluster, ClusterConfig, Failover, History, Leader, LeaderStatus, Member, MemberData, SyncState,
};
use tokio::sync::Notify;
use tokio::time::Instant;

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
    members: BTreeMap<String, (u64, MemberData)>,
    /// Members whose next `get_cluster` returns a view taken before a pause this long.
    frozen: BTreeMap<String, Duration>,
    /// Members that tried to take the lock from a view older than its last change.
    stale_attempts: Vec<String>,
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
            ..Default::default()
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

    fn guard(&self) -> Result<MutexGuard<'_, State>> {
        let s = self.store.lock();
        if s.reachable_denied {
            return Err(Error::NotReady(Duration::ZERO));
        }
        Ok(s)
    }
}

impl Dcs for MemoryDcs {
    async fn get_cluster(&self) -> Result<Cluster> {
        let (view, pause) = {
            let mut s = self.guard()?;
            (s.view(Instant::now()), s.frozen.remove(&self.name))
        };
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        Ok(view)
    }

    async fn attempt_to_acquire_leader(&self, seen: Option<&str>) -> Result<bool> {
        let now = Instant::now();
        let mut s = self.guard()?;
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
        let mut s = self.guard()?;
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
        s.leader_version = s.bump();
        drop(s);
        self.store.changed();
        Ok(true)
    }

    async fn delete_leader(&self, last_lsn: Option<u64>) -> Result<bool> {
        let now = Instant::now();
        let mut s = self.guard()?;
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
        let mut s = self.guard()?;
        let v = s.bump();
        s.members.insert(self.name.clone(), (v, data.clone()));
        Ok(true)
    }

    async fn initialize(&self, sysid: &str) -> Result<bool> {
        let mut s = self.guard()?;
        // The race: only the first empty claim wins; the winner then records the sysid.
        if sysid.is_empty() && s.initialize.is_some() {
            return Ok(false);
        }
        s.initialize = Some(sysid.to_string());
        s.bump();
        Ok(true)
    }

    async fn cancel_initialization(&self) -> Result<bool> {
        let mut s = self.guard()?;
        s.initialize = None;
        s.bump();
        Ok(true)
    }

    async fn set_config_value(&self, value: &str, version: Option<&str>) -> Result<bool> {
        let mut s = self.guard()?;
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
        let mut s = self.guard()?;
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
        let mut s = self.guard()?;
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
        let mut s = self.guard()?;
        let current = s.sync.as_ref().and_then(|c| c.version.clone());
        if version.is_some_and(|want| current.as_deref() != Some(want)) {
            return Ok(None);
        }
        let state = written_sync_state(s.bump().to_string(), leader, sync_standby, quorum);
        s.sync = Some(state.clone());
        drop(s);
        self.store.changed();
        Ok(Some(state))
    }

    async fn delete_sync_state(&self, version: Option<&str>) -> Result<bool> {
        self.write_sync_state(None, &[], None, version)
            .await
            .map(|s| s.is_some())
    }

    async fn delete_cluster(&self) -> Result<bool> {
        let mut s = self.guard()?;
        // The cluster's state goes; members' records and the fault switches stay.
        let kept = State {
            version: s.version,
            members: std::mem::take(&mut s.members),
            frozen: std::mem::take(&mut s.frozen),
            stale_attempts: std::mem::take(&mut s.stale_attempts),
            ..State::default()
        };
        *s = kept;
        drop(s);
        self.store.changed();
        Ok(true)
    }

    async fn watch(&self, timeout: Duration) -> bool {
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
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    /// The leader version in `m`'s current view.
    async fn seen(m: &MemoryDcs) -> Option<String> {
        m.get_cluster().await.expect("ok").leader.map(|l| l.version)
    }

    /// A decision made from a view older than the lock's last change never takes the lock,
    /// even once the lock is free again.
    #[tokio::test(start_paused = true)]
    async fn acquire_from_an_old_view_is_refused() {
        let store = MemoryStore::new();
        let (a, b) = (store.member("a", TTL), store.member("b", TTL));
        assert!(a.attempt_to_acquire_leader(None).await.expect("ok"));
        let old = seen(&b).await;
        assert!(
            a.update_leader(&LeaderStatusUpdate::default())
                .await
                .expect("ok")
        );
        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        assert!(
            !b.attempt_to_acquire_leader(old.as_deref())
                .await
                .expect("ok")
        );
        assert!(
            b.attempt_to_acquire_leader(seen(&b).await.as_deref())
                .await
                .expect("ok")
        );
    }

    /// A frozen read returns the view as it was before the pause.
    #[tokio::test(start_paused = true)]
    async fn freeze_after_read_returns_the_old_view() {
        let store = MemoryStore::new();
        let (a, b) = (store.member("a", TTL), store.member("b", TTL));
        store.freeze_after_read("b", Duration::from_secs(10));
        let (view, taken) = tokio::join!(b.get_cluster(), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            a.attempt_to_acquire_leader(None).await
        });
        assert!(taken.expect("ok"));
        assert!(
            !view.expect("ok").is_locked(),
            "the view predates the acquisition"
        );
        assert!(b.get_cluster().await.expect("ok").is_locked());
    }

    /// The sync state is a compare-and-swap on its version; deleting the cluster empties the
    /// state and keeps the members.
    #[tokio::test(start_paused = true)]
    async fn sync_state_and_cluster_deletion() {
        let store = MemoryStore::new();
        let a = store.member("a", TTL);
        let standbys = ["c".to_string(), "b".to_string()];
        let written = a
            .write_sync_state(Some("a"), &standbys, Some(1), None)
            .await
            .expect("reachable")
            .expect("written");
        assert_eq!(written.sync_standby, ["b", "c"]);
        assert_eq!(written.quorum, 1);
        assert_eq!(a.get_cluster().await.expect("ok").sync, written);
        assert!(
            a.write_sync_state(Some("a"), &[], None, Some("stale"))
                .await
                .expect("reachable")
                .is_none(),
            "a write from an old version is refused"
        );
        assert!(
            a.delete_sync_state(written.version.as_deref())
                .await
                .expect("ok")
        );
        let emptied = a.get_cluster().await.expect("ok").sync;
        assert_eq!((emptied.leader, emptied.quorum), (None, 0));
        assert!(emptied.sync_standby.is_empty());

        a.touch_member(&MemberData::default()).await.expect("ok");
        assert!(a.initialize("7").await.expect("ok"));
        assert!(a.attempt_to_acquire_leader(None).await.expect("ok"));
        assert!(a.delete_cluster().await.expect("ok"));
        let c = a.get_cluster().await.expect("ok");
        assert_eq!(c.initialize, None);
        assert!(!c.is_locked());
        assert_eq!(c.members.len(), 1);
    }

    /// A changed `ttl` (the dynamic configuration) holds from the next lock write.
    #[tokio::test(start_paused = true)]
    async fn set_timing_changes_what_the_next_write_promises() {
        let store = MemoryStore::new();
        let (a, b) = (store.member("a", TTL), store.member("b", TTL));
        a.set_timing(Duration::from_secs(5), Duration::from_secs(2));
        assert!(a.attempt_to_acquire_leader(None).await.expect("reachable"));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(
            !b.get_cluster().await.expect("ok").is_locked(),
            "the lock written after set_timing lasts the new ttl"
        );
    }

    /// Exactly one of several members takes a free lock; it expires ttl
    /// after the last renewal and then counts a transition.
    #[tokio::test(start_paused = true)]
    async fn one_winner_then_expiry_after_ttl() {
        let store = MemoryStore::new();
        let (a, b) = (store.member("a", TTL), store.member("b", TTL));
        assert!(a.attempt_to_acquire_leader(None).await.expect("reachable"));
        assert!(!b.attempt_to_acquire_leader(None).await.expect("reachable"));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(
            a.update_leader(&LeaderStatusUpdate {
                last_lsn: Some(7),
                ..Default::default()
            })
            .await
            .expect("ok")
        );
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(b.get_cluster().await.expect("ok").leader_name(), Some("a"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!b.get_cluster().await.expect("ok").is_locked());
        assert!(
            !a.update_leader(&LeaderStatusUpdate::default())
                .await
                .expect("ok"),
            "expired lock cannot be renewed"
        );
        assert!(
            b.attempt_to_acquire_leader(seen(&b).await.as_deref())
                .await
                .expect("ok")
        );
        let s = store.lock();
        assert_eq!((s.transitions, s.status.last_lsn), (1, 7));
    }

    /// Release frees the lock at once; an unreachable store fails as a DCS error.
    #[tokio::test(start_paused = true)]
    async fn release_and_unreachable() {
        let store = MemoryStore::new();
        let (a, b) = (store.member("a", TTL), store.member("b", TTL));
        assert!(a.attempt_to_acquire_leader(None).await.expect("ok"));
        assert!(
            !b.delete_leader(None).await.expect("ok"),
            "only the holder releases"
        );
        assert!(a.delete_leader(Some(9)).await.expect("ok"));
        assert!(
            b.attempt_to_acquire_leader(seen(&b).await.as_deref())
                .await
                .expect("ok")
        );
        store.set_reachable(false);
        assert!(
            b.get_cluster()
                .await
                .expect_err("unreachable")
                .is_unreachable()
        );
    }

    /// Lock changes wake watchers.
    #[tokio::test(start_paused = true)]
    async fn lock_changes_wake_watchers() {
        let store = MemoryStore::new();
        let (a, b) = (store.member("a", TTL), store.member("b", TTL));
        let (woke, _) = tokio::join!(b.watch(Duration::from_secs(10)), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            a.attempt_to_acquire_leader(None).await
        });
        assert!(woke);
        assert!(!b.watch(Duration::from_secs(10)).await, "nothing changed");
    }
}
