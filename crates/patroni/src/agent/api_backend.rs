//! The REST API's view of the agent: [`Shared`] state the HA loop publishes after every cycle,
//! and the [`Backend`] the API server calls.
//!
//! # Who writes what
//! The HA loop is the only writer of [`Snapshot`] (once per cycle); API handlers only read it.
//! `write_failover` and `write_config` write the DCS directly and then wake the loop through
//! [`Shared::wake`]. Requests only the loop can carry out (reload, restart, reinitialise) are
//! queued as [`Command`]s; the loop takes them at the start of its next cycle and answers
//! through a oneshot channel. A scheduled restart is kept in [`Shared`] until the loop runs it.
//! A stalled loop shows as a growing `loop_overdue` (liveness) and a stale [`LoopStatus`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use patroni_api::{
    Backend, BackendError, FailoverKey, FailsafeCall, HaSnapshot, NodeStatus, ReinitializeRequest,
    RestartOutcome, RestartRequest,
};
use patroni_core::{Cluster, Member};
use patroni_dcs::{Dcs, FailoverRequest};
use serde_json::{Map, Value};
use tokio::sync::{Notify, oneshot};
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

/// A request from the API that only the HA loop can carry out.
#[derive(Debug)]
pub enum Command {
    /// Re-read the local configuration (`POST /reload`, SIGHUP).
    Reload,
    /// Restart PostgreSQL now if the request's conditions hold; the outcome is sent back.
    Restart {
        /// The validated request.
        request: RestartRequest,
        /// Where the outcome goes.
        reply: oneshot::Sender<RestartOutcome>,
    },
    /// Reinitialise this replica from a fresh base backup.
    Reinitialize(ReinitializeRequest),
}

/// A restart waiting for its time.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledRestart {
    /// The request, with `schedule` set.
    pub request: RestartRequest,
    /// `postmaster_start_time` when it was scheduled: a restart in between cancels it.
    pub postmaster_start_time: Option<String>,
}

// === impl ScheduledRestart ===

impl ScheduledRestart {
    /// The `scheduled_restart` document of the status and the member key: the request's
    /// body plus the `postmaster_start_time` it was scheduled at.
    pub fn document(&self) -> Map<String, Value> {
        let mut doc = self.request.document.clone();
        if let Some(start) = &self.postmaster_start_time {
            doc.insert("postmaster_start_time".into(), start.clone().into());
        }
        doc
    }
}

/// A primary's accepted `POST /failsafe` call, and when it came.
#[derive(Debug, Clone)]
pub struct HeardFailsafe {
    /// The call.
    pub call: FailsafeCall,
    /// When.
    pub at: Instant,
}

/// State shared by the HA loop and the API.
pub struct Shared {
    snapshot: Mutex<Snapshot>,
    commands: Mutex<Vec<Command>>,
    scheduled_restart: Mutex<Option<ScheduledRestart>>,
    failsafe_call: Mutex<Option<HeardFailsafe>>,
    /// Wakes the HA loop before its deadline (a switchover request, a command).
    pub wake: Notify,
}

// === impl Shared ===

impl Shared {
    /// Initial state.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot: Mutex::new(snapshot),
            commands: Mutex::new(Vec::new()),
            scheduled_restart: Mutex::new(None),
            failsafe_call: Mutex::new(None),
            wake: Notify::new(),
        }
    }

    /// Queues `command` for the loop and wakes it.
    pub fn send(&self, command: Command) {
        lock(&self.commands).push(command);
        self.wake.notify_one();
    }

    /// Takes every queued command, oldest first.
    pub fn take_commands(&self) -> Vec<Command> {
        std::mem::take(&mut *lock(&self.commands))
    }

    /// The scheduled restart, if any.
    pub fn scheduled_restart(&self) -> Option<ScheduledRestart> {
        lock(&self.scheduled_restart).clone()
    }

    /// Stores `restart` unless one is already scheduled; whether it was stored.
    pub fn schedule_restart(&self, restart: ScheduledRestart) -> bool {
        let mut slot = lock(&self.scheduled_restart);
        if slot.is_some() {
            return false;
        }
        *slot = Some(restart);
        true
    }

    /// Removes the scheduled restart; whether there was one.
    pub fn take_scheduled_restart(&self) -> Option<ScheduledRestart> {
        lock(&self.scheduled_restart).take()
    }

    /// The last accepted `POST /failsafe` call, if any.
    pub fn failsafe_call(&self) -> Option<HeardFailsafe> {
        lock(&self.failsafe_call).clone()
    }

    /// Records an accepted `POST /failsafe` call, now.
    pub fn record_failsafe_call(&self, call: FailsafeCall) {
        *lock(&self.failsafe_call) = Some(HeardFailsafe {
            call,
            at: Instant::now(),
        });
    }

    /// Forgets the last `POST /failsafe` call (this member promotes).
    pub fn take_failsafe_call(&self) -> Option<HeardFailsafe> {
        lock(&self.failsafe_call).take()
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

/// Locks `m`, keeping the state of a holder that panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long `POST /restart` waits for the loop beyond the start timeout.
const RESTART_REPLY_SLACK: Duration = Duration::from_secs(120);

/// The [`Backend`] of the agent's REST API.
pub struct AgentBackend<D> {
    shared: Arc<Shared>,
    dcs: Arc<D>,
    peers: PeerClient,
    backup: Option<Arc<super::backup::BackupJob>>,
}

// === impl AgentBackend ===

impl<D: Dcs + 'static> AgentBackend<D> {
    /// A backend over the loop's shared state and DCS.
    pub fn new(shared: Arc<Shared>, dcs: Arc<D>) -> Self {
        Self {
            shared,
            dcs,
            peers: PeerClient::new(),
            backup: None,
        }
    }

    /// Probes candidates with `peers` (TLS settings of the cluster).
    pub fn with_peers(mut self, peers: PeerClient) -> Self {
        self.peers = peers;
        self
    }

    /// Serves `GET/POST /backup` from `job` (the `backup` section).
    pub fn with_backup(mut self, job: Option<Arc<super::backup::BackupJob>>) -> Self {
        self.backup = job;
        self
    }
}

impl<D: Dcs + 'static> Backend for AgentBackend<D> {
    fn backup_status(&self) -> Option<patroni_api::BackupStatus> {
        self.backup.as_ref().map(|job| job.status())
    }

    fn start_backup(&self) -> patroni_api::BackupStart {
        match &self.backup {
            Some(job) => {
                let ha = self.shared.get().ha;
                job.request(ha.is_leader && ha.running_as_primary)
            }
            None => patroni_api::BackupStart::NotConfigured,
        }
    }

    async fn status(&self, _retry: bool) -> NodeStatus {
        let mut status = self.shared.get().status;
        // Scheduling is answered at once; the loop republishes only at its next cycle.
        status.scheduled_restart = self.shared.scheduled_restart().map(|s| s.document());
        status
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
                FailoverRequest::Request {
                    leader: key.leader.as_deref(),
                    candidate: key.candidate.as_deref(),
                    scheduled_at: key.scheduled_at.as_deref(),
                },
                version.as_deref(),
            )
            .await
            .map_err(|e| BackendError::Dcs(Box::new(e)))?;
        self.shared.wake.notify_one();
        Ok(written)
    }

    async fn write_config(
        &self,
        config: Map<String, Value>,
        version: Option<String>,
    ) -> Result<bool, BackendError> {
        let value = patroni_dcs::encoding::compact_json(&Value::Object(config));
        let written = self
            .dcs
            .set_config_value(&value, version.as_deref())
            .await
            .map_err(|e| BackendError::Dcs(Box::new(e)))?;
        self.shared.wake.notify_one();
        Ok(written)
    }

    async fn reload(&self) {
        self.shared.send(Command::Reload);
    }

    async fn restart(&self, request: RestartRequest) -> RestartOutcome {
        if let LoopStatus::Acting(task) = self.shared.get().loop_status {
            return RestartOutcome::InProgress(task);
        }
        let wait = request.timeout.unwrap_or_default() + RESTART_REPLY_SLACK;
        let (reply, outcome) = oneshot::channel();
        self.shared.send(Command::Restart { request, reply });
        match tokio::time::timeout(wait, outcome).await {
            Ok(Ok(outcome)) => outcome,
            _ => RestartOutcome::Failed,
        }
    }

    async fn schedule_restart(&self, request: RestartRequest) -> bool {
        let postmaster_start_time = self.shared.get().status.postmaster_start_time;
        let stored = self.shared.schedule_restart(ScheduledRestart {
            request,
            postmaster_start_time,
        });
        if stored {
            self.shared.wake.notify_one();
        }
        stored
    }

    async fn cancel_scheduled_restart(&self) -> bool {
        let cancelled = self.shared.take_scheduled_restart().is_some();
        if cancelled {
            self.shared.wake.notify_one();
        }
        cancelled
    }

    fn failsafe(&self, call: FailsafeCall) -> Result<Option<u64>, String> {
        let snap = self.shared.get();
        if snap.ha.running_as_primary {
            return Err("Running as a leader".into());
        }
        tracing::info!(primary = %call.name, "accepted a failsafe call");
        self.shared.record_failsafe_call(call);
        let lsn = snap
            .status
            .received_location()
            .max(snap.status.replayed_location());
        Ok((lsn > 0).then_some(lsn))
    }

    async fn reinitialize(&self, request: ReinitializeRequest) -> Result<(), String> {
        let snap = self.shared.get();
        let cluster = snap.cluster.map(|(c, _)| c);
        let leader = cluster
            .as_ref()
            .and_then(|c| c.leader_name().map(str::to_owned));
        let Some(leader) = leader else {
            return Err("Cluster has no leader, can not reinitialize".into());
        };
        if leader == snap.status.patroni.name {
            return Err("I am the leader, can not reinitialize".into());
        }
        if let LoopStatus::Acting(task) = snap.loop_status
            && !request.force
        {
            return Err(format!("{task} already in progress"));
        }
        self.shared.send(Command::Reinitialize(request));
        Ok(())
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

    /// Reload and reinitialise requests are queued for the loop, which is woken; one restart
    /// can be scheduled at a time and cancelled once; the status shows it at once.
    #[tokio::test(start_paused = true)]
    async fn commands_are_queued_and_one_restart_is_scheduled() {
        let store = MemoryStore::new();
        let dcs = Arc::new(store.member("m0", Duration::from_secs(30)));
        let shared = shared(Duration::from_secs(30));
        let mut cluster = dcs.get_cluster().await.expect("view");
        cluster.leader = Some(patroni_core::Leader {
            version: "1".into(),
            name: "m1".into(),
            member: None,
        });
        shared.update(|s| s.cluster = Some((cluster, Instant::now())));
        let backend = AgentBackend::new(Arc::clone(&shared), dcs);
        backend.reload().await;
        tokio::time::timeout(Duration::from_millis(10), shared.wake.notified())
            .await
            .expect("the loop was woken");
        assert_eq!(
            backend.reinitialize(ReinitializeRequest::default()).await,
            Ok(())
        );
        let commands = shared.take_commands();
        assert!(matches!(
            commands.as_slice(),
            [Command::Reload, Command::Reinitialize(_)]
        ));
        let mut document = Map::new();
        document.insert("schedule".into(), "2030-01-01T00:00:00+00:00".into());
        let request = RestartRequest {
            schedule: Some(jiff::Timestamp::UNIX_EPOCH),
            document,
            ..Default::default()
        };
        assert!(backend.schedule_restart(request.clone()).await);
        assert!(!backend.schedule_restart(request).await);
        let status = backend.status(false).await;
        assert_eq!(
            status.scheduled_restart.expect("shown")["schedule"],
            "2030-01-01T00:00:00+00:00"
        );
        assert!(backend.cancel_scheduled_restart().await);
        assert!(!backend.cancel_scheduled_restart().await);
    }

    /// Reinitialisation is refused on the leader and without a leader, as Patroni refuses it.
    #[tokio::test(start_paused = true)]
    async fn reinitialize_is_refused_on_the_leader_and_without_one() {
        let store = MemoryStore::new();
        let dcs = Arc::new(store.member("m0", Duration::from_secs(30)));
        let shared = shared(Duration::from_secs(30));
        let backend = AgentBackend::new(Arc::clone(&shared), Arc::clone(&dcs));
        assert_eq!(
            backend.reinitialize(ReinitializeRequest::default()).await,
            Err("Cluster has no leader, can not reinitialize".into())
        );
        let mut cluster = dcs.get_cluster().await.expect("view");
        cluster.leader = Some(patroni_core::Leader {
            version: "1".into(),
            name: "m0".into(),
            member: None,
        });
        shared.update(|s| s.cluster = Some((cluster, Instant::now())));
        assert_eq!(
            backend.reinitialize(ReinitializeRequest::default()).await,
            Err("I am the leader, can not reinitialize".into())
        );
        assert!(shared.take_commands().is_empty());
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
