//! The REST API's view of the agent: [`Shared`] state the HA loop publishes after every cycle,
//! and the [`Backend`] the API server calls.
//!
//! # Who writes what
//! The HA loop is the only writer of [`Snapshot`] (once per cycle); API handlers only read it.
//! `write_failover` writes the DCS directly and then wakes the loop through [`Shared::wake`].
//! A stalled loop shows as a growing `loop_overdue` (liveness) and a stale [`LoopStatus`].

use std::sync::{Arc, Mutex};

use patroni_api::{Backend, BackendError, FailoverKey, HaSnapshot, NodeStatus};
use patroni_core::{Cluster, Member};
use patroni_dcs::Dcs;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::peers::PeerClient;

/// What the HA loop is doing now (STYLE rule 4), shown in the logs and kept for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopStatus {
    /// Starting up, no cycle ran yet.
    Starting,
    /// Observing and deciding.
    Deciding,
    /// Carrying out an action (its Patroni task name).
    Acting(String),
    /// Waiting for the next cycle.
    Waiting,
    /// Shutting down.
    ShuttingDown,
}

/// What the loop published after its last cycle.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The status document.
    pub status: NodeStatus,
    /// The HA view.
    pub ha: HaSnapshot,
    /// The cluster as last read, and when.
    pub cluster: Option<(Cluster, Instant)>,
    /// When the next cycle is due.
    pub next_due: Instant,
    /// What the loop does.
    pub loop_status: LoopStatus,
}

/// State shared by the HA loop and the API.
pub struct Shared {
    snapshot: Mutex<Snapshot>,
    /// Wakes the HA loop before its deadline (a switchover request).
    pub wake: Notify,
}

// === impl Shared ===

impl Shared {
    /// Initial state.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot: Mutex::new(snapshot),
            wake: Notify::new(),
        }
    }

    /// A copy of the current snapshot.
    pub fn get(&self) -> Snapshot {
        match self.snapshot.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Changes the snapshot.
    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        match self.snapshot.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// The [`Backend`] of the agent's REST API.
pub struct AgentBackend<D> {
    shared: Arc<Shared>,
    dcs: Arc<D>,
    peers: PeerClient,
}

// === impl AgentBackend ===

impl<D: Dcs + 'static> AgentBackend<D> {
    /// A backend over the loop's shared state and DCS.
    pub fn new(shared: Arc<Shared>, dcs: Arc<D>) -> Self {
        Self {
            shared,
            dcs,
            peers: PeerClient::new(),
        }
    }
}

impl<D: Dcs + 'static> Backend for AgentBackend<D> {
    async fn status(&self, _retry: bool) -> NodeStatus {
        self.shared.get().status
    }

    fn ha(&self) -> HaSnapshot {
        let snap = self.shared.get();
        let mut ha = snap.ha;
        ha.loop_overdue = Instant::now().saturating_duration_since(snap.next_due);
        ha
    }

    fn cached_cluster(&self) -> Option<Cluster> {
        let snap = self.shared.get();
        let ttl = snap.ha.ttl;
        snap.cluster
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(c, _)| c)
    }

    async fn read_cluster(&self) -> Result<Cluster, BackendError> {
        self.dcs
            .get_cluster()
            .await
            .map_err(|e| BackendError::Dcs(Box::new(e)))
    }

    async fn probe_candidates(&self, members: Vec<Member>) -> bool {
        for m in members {
            let Some(url) = m.data.api_url.as_deref() else {
                continue;
            };
            if let Some(body) = self.peers.get_json(url).await
                && let Some(reply) = patroni_core::ha::PeerReply::from_patroni_json(&body)
                && !reply.tags.nofailover()
                && !reply.watchdog_failed
            {
                return true;
            }
        }
        false
    }

    async fn write_failover(
        &self,
        key: FailoverKey,
        version: Option<String>,
    ) -> Result<bool, BackendError> {
        let written = self
            .dcs
            .manual_failover(
                key.leader.as_deref(),
                key.candidate.as_deref(),
                key.scheduled_at.as_deref(),
                version.as_deref(),
            )
            .await
            .map_err(|e| BackendError::Dcs(Box::new(e)))?;
        self.shared.wake.notify_one();
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use patroni_api::{HaSnapshot, NodeStatus, PatroniInfo};
    use patroni_core::Role;
    use patroni_dcs::MemoryStore;

    use super::*;

    fn shared(ttl: Duration) -> Arc<Shared> {
        let info = PatroniInfo {
            version: "4.1.5".into(),
            scope: "demo".into(),
            name: "m0".into(),
        };
        Arc::new(Shared::new(Snapshot {
            status: NodeStatus::minimal("running", Role::Replica, info),
            ha: HaSnapshot::new(ttl),
            cluster: None,
            next_due: Instant::now(),
            loop_status: LoopStatus::Starting,
        }))
    }

    /// A switchover request is written to the DCS and wakes the HA loop.
    #[tokio::test(start_paused = true)]
    async fn write_failover_writes_the_key_and_wakes_the_loop() {
        let store = MemoryStore::new();
        let dcs = Arc::new(store.member("m0", Duration::from_secs(30)));
        let shared = shared(Duration::from_secs(30));
        let backend = AgentBackend::new(Arc::clone(&shared), Arc::clone(&dcs));
        let key = FailoverKey {
            leader: Some("m0".into()),
            candidate: Some("m1".into()),
            scheduled_at: None,
        };
        assert!(backend.write_failover(key, None).await.expect("written"));
        let failover = dcs
            .get_cluster()
            .await
            .expect("view")
            .failover
            .expect("a failover key");
        assert_eq!(failover.candidate.as_deref(), Some("m1"));
        tokio::time::timeout(Duration::from_millis(10), shared.wake.notified())
            .await
            .expect("the loop was woken");
    }

    /// The cached cluster is served only while younger than the ttl; the loop's lateness
    /// shows as `loop_overdue`.
    #[tokio::test(start_paused = true)]
    async fn cached_cluster_expires_after_ttl_and_lateness_is_reported() {
        let store = MemoryStore::new();
        let dcs = Arc::new(store.member("m0", Duration::from_secs(30)));
        let shared = shared(Duration::from_secs(30));
        let cluster = dcs.get_cluster().await.expect("view");
        shared.update(|s| s.cluster = Some((cluster, Instant::now())));
        let backend = AgentBackend::new(Arc::clone(&shared), dcs);
        assert!(backend.cached_cluster().is_some());
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(backend.cached_cluster().is_none());
        assert!(backend.ha().loop_overdue >= Duration::from_secs(31));
    }
}
