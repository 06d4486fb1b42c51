//! [`Backend`]: the narrow interface between the REST API and the agent, and
//! [`FakeBackend`], its in-memory fake for tests.
//!
//! The API holds Patroni's REST semantics (which status code for which state, the switchover
//! checks and messages, the polling); the backend only reports state and carries out the two
//! side effects the API has: probing candidate members and writing the `/failover` key.
//!
//! # Assumptions
//! Every method returns promptly: `status` runs one query with the agent's own timeout,
//! `read_cluster` and `write_failover` are bounded by the DCS `retry_timeout`. A backend that
//! stalls stalls only the requests waiting on it, never the HA loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use patroni_core::{Cluster, Failover, Leader, Member};
use serde_json::Value;

use crate::dynamic::GlobalFlags;
use crate::node::NodeStatus;

/// What the API asks of the agent.
pub trait Backend: Send + Sync + 'static {
    /// This member's status. `retry`: retry the status query on connection errors (Patroni
    /// retries for `GET /patroni` and `/readiness`, not for health checks).
    fn status(&self, retry: bool) -> impl Future<Output = NodeStatus> + Send;

    /// The HA loop's view of itself; no I/O.
    fn ha(&self) -> HaSnapshot;

    /// The cluster from the last successful DCS read, while still valid (`ttl`); `None` when
    /// the DCS view is unavailable. Health checks never read the DCS themselves.
    fn cached_cluster(&self) -> Option<Cluster>;

    /// Reads the cluster from the DCS now.
    ///
    /// # Errors
    /// [`BackendError::Dcs`] when the DCS cannot be read.
    fn read_cluster(&self) -> impl Future<Output = Result<Cluster, BackendError>> + Send;

    /// Whether any of `members` could take over now: its API answers `GET /patroni`, and it is
    /// neither tagged `nofailover` nor reporting `watchdog_failed` (Patroni's
    /// `fetch_nodes_statuses` + `failover_limitation`).
    fn probe_candidates(&self, members: Vec<Member>) -> impl Future<Output = bool> + Send;

    /// Writes the `/failover` key (all fields `None`: clears it), conditionally on `version`
    /// when given, then wakes the HA loop. `Ok(false)`: the write was refused (lost a
    /// compare-and-swap).
    ///
    /// # Errors
    /// [`BackendError::Dcs`] when the DCS cannot be written.
    fn write_failover(
        &self,
        key: FailoverKey,
        version: Option<String>,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Writes the dynamic configuration (`/config`), conditionally on `version` when given
    /// (`PATCH /config`), unconditionally otherwise (`PUT /config`), then wakes the HA loop
    /// so that the change applies at once. `Ok(false)`: the compare-and-swap was lost.
    ///
    /// # Errors
    /// [`BackendError::Dcs`] when the DCS cannot be written.
    fn write_config(
        &self,
        config: serde_json::Map<String, Value>,
        version: Option<String>,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Schedules a reload of the local configuration (Patroni's SIGHUP) for the next HA
    /// cycle and wakes the loop; returns at once (`POST /reload` answers 202).
    fn reload(&self) -> impl Future<Output = ()> + Send;

    /// Restarts PostgreSQL now if `request`'s conditions hold, returning when the restart is
    /// over (`POST /restart` without `schedule`).
    fn restart(&self, request: RestartRequest) -> impl Future<Output = RestartOutcome> + Send;

    /// Stores a scheduled restart (`request.schedule` is set) to be carried out by the HA
    /// loop at that time. `false`: another restart is already scheduled.
    fn schedule_restart(&self, request: RestartRequest) -> impl Future<Output = bool> + Send;

    /// Deletes the scheduled restart (`DELETE /restart`). `false`: none was scheduled.
    fn cancel_scheduled_restart(&self) -> impl Future<Output = bool> + Send;

    /// Starts reinitialising this member from a fresh base backup (`POST /reinitialize`) and
    /// returns once it has started.
    ///
    /// # Errors
    /// The refusal's text, answered with 503: `Cluster has no leader, can not reinitialize`,
    /// `I am the leader, can not reinitialize`, `<action> already in progress`.
    fn reinitialize(
        &self,
        request: ReinitializeRequest,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Records a primary's `POST /failsafe` call (failsafe mode is on; the API checked it):
    /// the caller counts as the leader for `ttl`. `Ok`: accepted, with this member's last
    /// received/replayed WAL position for the `lsn` header when known. No I/O.
    ///
    /// # Errors
    /// The refusal's text, answered with 500: `Running as a leader` when this member runs as
    /// a primary itself.
    fn failsafe(&self, call: FailsafeCall) -> Result<Option<u64>, String>;

    /// The current time, for validating scheduled times.
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    /// The backup schedule's state (`GET /backup`, `patroni_backup_*` metrics); `None` when
    /// the configuration has no `backup` section.
    fn backup_status(&self) -> Option<crate::backup::BackupStatus> {
        None
    }

    /// Starts a base backup now (`POST /backup`). No waiting: the backup runs on its own.
    fn start_backup(&self) -> crate::backup::BackupStart {
        crate::backup::BackupStart::NotConfigured
    }
}

/// What the HA loop knows about itself, for liveness, readiness and the leader checks.
#[derive(Debug, Clone, PartialEq)]
pub struct HaSnapshot {
    /// This member holds the leader lock (renewed within `ttl`): Patroni's `ha.is_leader()`.
    pub is_leader: bool,
    /// DCS failsafe mode is active on this member.
    pub failsafe_active: bool,
    /// The failsafe topology `{member: api_url}` as last read from the DCS or written with
    /// the lock (`GET /failsafe`); kept through a DCS outage.
    pub failsafe_topology: Option<BTreeMap<String, String>>,
    /// PostgreSQL runs as a primary (liveness tolerates `ttl` instead of `2 * ttl` then).
    pub running_as_primary: bool,
    /// How late the HA loop is: time since its next cycle was due to start; zero while it is
    /// on schedule. Liveness fails once this reaches the threshold.
    pub loop_overdue: Duration,
    /// The leader lock's `ttl`.
    pub ttl: Duration,
    /// The agent's last good dynamic configuration, used when a cluster view has none.
    pub global: GlobalFlags,
    /// Configured tags (not the temporary ones) as Patroni keeps them: custom tags always,
    /// the boolean ones (`clonefrom`, `nofailover`, `noloadbalance`, `nosync`, `nostream`) only
    /// when set (or paired with their `*_priority`). Matched by `?tag_<key>=` filters;
    /// `noloadbalance` here takes a member out of `/replica`.
    pub configured_tags: BTreeMap<String, Value>,
}

/// A `POST /failsafe` body: the primary that keeps running through a DCS outage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailsafeCall {
    /// Its member name.
    pub name: String,
    /// Its PostgreSQL URL.
    pub conn_url: Option<String>,
    /// Its REST API URL.
    pub api_url: Option<String>,
    /// Its replication slots `{name: lsn}`.
    pub slots: Option<BTreeMap<String, u64>>,
}

/// The content of the `/failover` key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailoverKey {
    /// The leader to switch away from (switchover).
    pub leader: Option<String>,
    /// The member to promote (`member` in the key).
    pub candidate: Option<String>,
    /// When, as `isoformat()`, for a scheduled switchover.
    pub scheduled_at: Option<String>,
}

/// A validated `POST /restart` body: the conditions under which the restart happens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartRequest {
    /// Restart only while this member runs in this role (`primary`, `standby_leader`,
    /// `replica`).
    pub role: Option<patroni_core::Role>,
    /// Restart only while the running server's version is lower than this one
    /// (`server_version` form, e.g. `150004`).
    pub postgres_version: Option<u32>,
    /// Restart only when a parameter change is pending a restart.
    pub restart_pending: bool,
    /// How long the start may take (overrides `primary_start_timeout` for this start).
    pub timeout: Option<Duration>,
    /// When, for a scheduled restart.
    pub schedule: Option<Timestamp>,
    /// The body as the client sent it (`postgres_version` and `schedule` normalised), as
    /// Patroni shows it under `scheduled_restart` in the status document and member key.
    pub document: serde_json::Map<String, Value>,
}

/// How an immediate restart ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartOutcome {
    /// 200 `restarted successfully`.
    Restarted,
    /// 503 `restart conditions are not satisfied`.
    ConditionsNotSatisfied,
    /// 503 `<action> already in progress`: the running action's name.
    InProgress(String),
    /// 503 `postgres is still starting`.
    StillStarting,
    /// 503 `restart failed`.
    Failed,
}

/// A `POST /reinitialize` body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReinitializeRequest {
    /// Cancel a running action first.
    pub force: bool,
    /// Take the base backup from the leader even if another member is tagged `clonefrom`.
    pub from_leader: bool,
}

/// A backend operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The DCS could not be read or written.
    #[error("DCS request failed")]
    Dcs(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// `e` and its sources on one line (`a: b: c`), for logging where the error is handled.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

// === impl HaSnapshot ===

impl HaSnapshot {
    /// A member that is not the leader, on schedule, with default configuration and no tags.
    pub fn new(ttl: Duration) -> Self {
        Self {
            is_leader: false,
            failsafe_active: false,
            failsafe_topology: None,
            running_as_primary: false,
            loop_overdue: Duration::ZERO,
            ttl,
            global: GlobalFlags::default(),
            configured_tags: BTreeMap::new(),
        }
    }

    /// Whether a configured `noloadbalance` tag is set (Patroni's truthy values).
    pub fn noloadbalance(&self) -> bool {
        self.configured_tags
            .get("noloadbalance")
            .and_then(crate::units::parse_bool)
            .unwrap_or(false)
    }
}

/// What the fake "HA loop" does when a failover key is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FakeReaction {
    /// Nothing: the key stays, the leader stays (the API's poll times out).
    #[default]
    Nothing,
    /// The candidate (or, without one, the first other member) takes the lock and the key is
    /// cleared.
    Promote,
    /// The named member takes the lock, whoever the candidate was, and the key is cleared.
    PromoteInstead(String),
    /// The key is cleared without a leader change (a failed switchover).
    Clear,
}

/// Everything [`FakeBackend`] reports and records; tests set and inspect it directly.
#[derive(Debug, Clone)]
pub struct FakeState {
    /// Returned by [`Backend::status`].
    pub status: NodeStatus,
    /// Returned by [`Backend::ha`].
    pub ha: HaSnapshot,
    /// Returned by [`Backend::cached_cluster`].
    pub cached: Option<Cluster>,
    /// The DCS content; `None` makes reads and writes fail.
    pub dcs: Option<Cluster>,
    /// Returned by [`Backend::probe_candidates`] (for a non-empty list).
    pub candidates_healthy: bool,
    /// Makes [`Backend::write_failover`] answer `Ok(false)`.
    pub refuse_writes: bool,
    /// What happens after a successful failover write.
    pub reaction: FakeReaction,
    /// Returned by [`Backend::now`].
    pub now: Timestamp,
    /// Every failover write, in order.
    pub failover_writes: Vec<(FailoverKey, Option<String>)>,
    /// Every probe, in order: the member names probed.
    pub probes: Vec<Vec<String>>,
    /// Every configuration write, in order, with the version it was conditional on.
    pub config_writes: Vec<(serde_json::Map<String, Value>, Option<String>)>,
    /// How many reloads were scheduled.
    pub reloads: usize,
    /// Every immediate restart asked for, in order.
    pub restarts: Vec<RestartRequest>,
    /// Returned by [`Backend::restart`].
    pub restart_outcome: RestartOutcome,
    /// The scheduled restart, if any.
    pub scheduled_restart: Option<RestartRequest>,
    /// Every reinitialisation asked for, in order.
    pub reinits: Vec<ReinitializeRequest>,
    /// Returned by [`Backend::reinitialize`].
    pub reinit_answer: Result<(), String>,
    /// Every failsafe call, in order.
    pub failsafe_calls: Vec<FailsafeCall>,
    /// Returned by [`Backend::failsafe`].
    pub failsafe_answer: Result<Option<u64>, String>,
}

/// An in-memory [`Backend`]: reports what its [`FakeState`] says and records what it is asked.
#[derive(Debug)]
pub struct FakeBackend {
    state: Mutex<FakeState>,
}

// === impl FakeBackend ===

impl FakeBackend {
    /// A backend reporting `status` and `ha`, with no cluster (DCS unreachable) until one is
    /// set with [`FakeBackend::with_cluster`].
    pub fn new(status: NodeStatus, ha: HaSnapshot) -> Self {
        Self {
            state: Mutex::new(FakeState {
                status,
                ha,
                cached: None,
                dcs: None,
                candidates_healthy: true,
                refuse_writes: false,
                reaction: FakeReaction::Nothing,
                now: Timestamp::UNIX_EPOCH,
                failover_writes: Vec::new(),
                probes: Vec::new(),
                config_writes: Vec::new(),
                reloads: 0,
                restarts: Vec::new(),
                restart_outcome: RestartOutcome::Restarted,
                scheduled_restart: None,
                reinits: Vec::new(),
                reinit_answer: Ok(()),
                failsafe_calls: Vec::new(),
                failsafe_answer: Ok(None),
            }),
        }
    }

    /// Sets both the cached view and the DCS content to `cluster`.
    pub fn with_cluster(self, cluster: Cluster) -> Self {
        self.update(|s| {
            s.cached = Some(cluster.clone());
            s.dcs = Some(cluster);
        });
        self
    }

    /// Changes the state.
    pub fn update(&self, f: impl FnOnce(&mut FakeState)) {
        f(&mut self.lock());
    }

    /// A copy of the state.
    pub fn snapshot(&self) -> FakeState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock has already failed; keep its state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The error the fake returns when its DCS is "down".
#[derive(Debug, thiserror::Error)]
#[error("fake DCS is unavailable")]
struct FakeDcsDown;

impl Backend for FakeBackend {
    async fn status(&self, _retry: bool) -> NodeStatus {
        self.lock().status.clone()
    }

    fn ha(&self) -> HaSnapshot {
        self.lock().ha.clone()
    }

    fn cached_cluster(&self) -> Option<Cluster> {
        self.lock().cached.clone()
    }

    async fn read_cluster(&self) -> Result<Cluster, BackendError> {
        self.lock()
            .dcs
            .clone()
            .ok_or_else(|| BackendError::Dcs(Box::new(FakeDcsDown)))
    }

    async fn probe_candidates(&self, members: Vec<Member>) -> bool {
        let mut s = self.lock();
        s.probes
            .push(members.iter().map(|m| m.name.clone()).collect());
        s.candidates_healthy && !members.is_empty()
    }

    async fn write_failover(
        &self,
        key: FailoverKey,
        version: Option<String>,
    ) -> Result<bool, BackendError> {
        let mut s = self.lock();
        s.failover_writes.push((key.clone(), version.clone()));
        let reaction = s.reaction.clone();
        let refuse = s.refuse_writes;
        let next_version = s.failover_writes.len().to_string();
        let Some(cluster) = s.dcs.as_mut() else {
            return Err(BackendError::Dcs(Box::new(FakeDcsDown)));
        };
        let current = cluster.failover.as_ref().map(|f| f.version.clone());
        if refuse || version.is_some_and(|v| Some(v) != current) {
            return Ok(false);
        }
        let clear = key == FailoverKey::default();
        cluster.failover = (!clear).then(|| Failover {
            version: next_version,
            leader: key.leader.clone(),
            candidate: key.candidate.clone(),
            scheduled_at: key.scheduled_at.clone(),
        });
        if !clear && key.scheduled_at.is_none() {
            react(cluster, &reaction, key.candidate.as_deref());
        }
        Ok(true)
    }

    async fn write_config(
        &self,
        config: serde_json::Map<String, Value>,
        version: Option<String>,
    ) -> Result<bool, BackendError> {
        let mut s = self.lock();
        s.config_writes.push((config.clone(), version.clone()));
        let refuse = s.refuse_writes;
        let next_version = format!("c{}", s.config_writes.len());
        let Some(cluster) = s.dcs.as_mut() else {
            return Err(BackendError::Dcs(Box::new(FakeDcsDown)));
        };
        let current = cluster.config.as_ref().map(|c| c.version.clone());
        if refuse || version.is_some_and(|v| Some(v) != current) {
            return Ok(false);
        }
        cluster.config = Some(patroni_core::ClusterConfig {
            version: next_version.clone(),
            modify_version: Some(next_version),
            data: config,
        });
        Ok(true)
    }

    async fn reload(&self) {
        self.lock().reloads += 1;
    }

    async fn restart(&self, request: RestartRequest) -> RestartOutcome {
        let mut s = self.lock();
        s.restarts.push(request);
        s.restart_outcome.clone()
    }

    async fn schedule_restart(&self, request: RestartRequest) -> bool {
        let mut s = self.lock();
        if s.scheduled_restart.is_some() {
            return false;
        }
        s.scheduled_restart = Some(request);
        true
    }

    async fn cancel_scheduled_restart(&self) -> bool {
        self.lock().scheduled_restart.take().is_some()
    }

    async fn reinitialize(&self, request: ReinitializeRequest) -> Result<(), String> {
        let mut s = self.lock();
        s.reinits.push(request);
        s.reinit_answer.clone()
    }

    fn failsafe(&self, call: FailsafeCall) -> Result<Option<u64>, String> {
        let mut s = self.lock();
        s.failsafe_calls.push(call);
        s.failsafe_answer.clone()
    }

    fn now(&self) -> Timestamp {
        self.lock().now
    }
}

/// Plays the HA loop's answer to a manual failover on the fake DCS.
fn react(cluster: &mut Cluster, reaction: &FakeReaction, candidate: Option<&str>) {
    match reaction {
        FakeReaction::Nothing => {}
        FakeReaction::Clear => cluster.failover = None,
        FakeReaction::Promote | FakeReaction::PromoteInstead(_) => {
            let old = cluster.leader_name().map(str::to_owned);
            let winner = match reaction {
                FakeReaction::PromoteInstead(name) => Some(name.as_str()),
                _ => candidate,
            };
            let new = winner.map(str::to_owned).or_else(|| {
                cluster
                    .members
                    .iter()
                    .map(|m| m.name.clone())
                    .find(|n| Some(n) != old.as_ref())
            });
            if let Some(name) = new {
                cluster.leader = Some(Leader {
                    version: "promoted".into(),
                    member: cluster.member(&name).cloned(),
                    name,
                });
            }
            cluster.failover = None;
        }
    }
}
