//! The HA loop: one shape, observe → decide → act → wait (STYLE rule 4).
//!
//! Each cycle reads the DCS and the local Postgres, calls [`decide`] (performing its query
//! actions and deciding again within the cycle), carries out the final actions in order
//! (stopping at the first failure), publishes the member key and the API snapshot, and waits
//! until `loop_wait`, the decision's `next_cycle_at`, a DCS change or an API wake-up.
//!
//! Long actions (bootstrap, clone, start, promote, rewind) run inline: the loop blocks while
//! they run. The core never asks for one while this member must keep renewing the lock
//! (bootstrap happens before the lock is taken; clone only without data), so the lock is not
//! at risk; a start of a crashed primary is bounded by its timeout.
//!
//! The cycle's parts live beside it as `impl Runtime` blocks: the queries (`queries.rs`), the
//! effects (`execute.rs`), observing Postgres (`observe.rs`), publishing (`publish.rs`),
//! operator requests and the dynamic configuration (`operator.rs`, `ha_config.rs`).
//!
//! # What breaks if this stalls or panics
//! The lock holder stops renewing and its replicas take over after `ttl`; the API's liveness
//! check reports the loop overdue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use patroni_api::ParamChange;
use patroni_config::{Config, DynamicConfig, Environment};
use patroni_core::Tick;
use patroni_core::ha::{
    Action, AgentMemory, DcsView, HaConfig, LocalMember, MemberTags, Observation, PgRole, decide,
};
use patroni_dcs::Dcs;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::api_backend::{LoopStatus, Shared};
use super::callbacks::{CallbackRunner, CallbackState};
use super::ha_config::{ha_config, parse_dynamic};
use super::member_data::{Identity, PgState};
use super::observe::ServerFacts;
use super::operator::Reloader;
use super::peers::PeerClient;
use super::pgctl::PostgresCtl;
use super::publish::running_role;
use super::slots::SlotKeeper;
use super::sync::SyncMemory;

/// At most this many decide steps per cycle (the core needs at most four).
const MAX_STEPS: usize = 8;
/// How long the shutdown sequence may take before the agent gives up and exits.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(120);
/// A wake-up this much later than its deadline means the process was suspended (logged).
const LATE_WAKE: Duration = Duration::from_secs(1);
/// How long past `loop_wait` a DCS `watch` may keep the loop waiting before it runs a cycle
/// anyway (the backends' own extra wait for non-holders is 0.5 s).
const WATCH_OVERRUN: Duration = Duration::from_secs(1);
/// Pause between shutdown attempts whose actions failed.
const SHUTDOWN_RETRY: Duration = Duration::from_secs(1);

/// The agent must stop: continuing would be unsafe.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// The HA loop of one member and everything it remembers between cycles.
pub struct Runtime<D, P> {
    /// The local configuration.
    pub(super) config: Arc<Config>,
    /// How this member publishes itself.
    pub(super) id: Identity,
    /// The DCS.
    pub(super) dcs: Arc<D>,
    /// The local instance.
    pub(super) pg: P,
    /// Major version of the binaries.
    pub(super) major_version: u32,
    /// State shared with the API.
    pub(super) shared: Arc<Shared>,
    /// Client for other members' APIs.
    pub(super) peers: PeerClient,
    /// Base of the monotonic [`Tick`]s given to the core.
    start: Instant,
    /// What the core asks the runtime to remember.
    pub(super) memory: AgentMemory,
    /// The effective dynamic configuration (DCS `config`, else `patroni.dynamic.json`, else
    /// `bootstrap.dcs`).
    pub(super) dynamic: DynamicConfig,
    /// The same as the JSON document it was read from (what `patroni.dynamic.json` holds and
    /// a bootstrap writes to the DCS).
    pub(super) dynamic_raw: serde_json::Value,
    /// `dynamic_raw` changed since `patroni.dynamic.json` was last written.
    pub(super) cache_needs_saving: bool,
    /// The core's settings derived from it.
    pub(super) ha: HaConfig,
    /// The role the server last ran (or was started) in.
    pub(super) last_role: Option<PgRole>,
    /// Set when the postmaster exited by itself; cleared by the next start.
    pub(super) crashed_as: Option<PgRole>,
    /// Whom the recovery configuration points at, as last written.
    pub(super) upstream: Option<patroni_core::ha::Upstream>,
    /// When the server was first seen starting.
    pub(super) starting_since: Option<Tick>,
    /// The state a long action in progress reports.
    pub(super) state_override: Option<PgState>,
    /// `pg_stat_wal_receiver.status` of the last observation.
    pub(super) wal_receiver: Option<String>,
    /// Unix seconds of the last successful DCS read.
    pub(super) dcs_last_seen: u64,
    /// Which `postgresql.callbacks` the next events fire.
    pub(super) callback_state: CallbackState,
    /// Runs the callbacks.
    pub(super) callback_runner: CallbackRunner,
    /// Re-reads the local configuration on reload.
    pub(super) reloader: Option<Reloader>,
    /// The running server's configuration files are out of date (rewrite and reload).
    pub(super) reconfigure: bool,
    /// Parameters whose change waits for a restart.
    pub(super) pending_restart: BTreeMap<String, ParamChange>,
    /// What the last status query said beyond the core's view.
    pub(super) server_facts: ServerFacts,
    /// `pg_controldata`'s facts about a running postmaster, read once per postmaster.
    pub(super) control_facts: Option<super::observe::ControlFacts>,
    /// Replication slot state kept between cycles.
    pub(super) slots: SlotKeeper,
    /// Synchronous replication state kept between cycles.
    pub(super) sync: SyncMemory,
    /// The lease fence process, when the agent runs one ([`Runtime::with_fence`]).
    pub(super) fence: Option<crate::fence::FenceClient>,
    /// The message of the last cycle that decided nothing (`log.deduplicate_heartbeat_logs`).
    last_heartbeat: Option<String>,
    /// The member key as last published.
    pub(super) last_member_data: Option<patroni_core::MemberData>,
    /// The watchdog device, when armed (`agent::watchdog`).
    pub(super) watchdog: super::watchdog::Watchdog,
    /// Something since the cycle's observation of Postgres may have changed what the server
    /// reports: an action ran, or a step acted on the server (started, stopped, promoted,
    /// reloaded it, wrote WAL, ...). Cleared by the cycle just before it observes; set by
    /// [`Runtime::act_on_pg`] and for every action `execute_all` carries out. Publishing
    /// observes again when it is set, else it shows the cycle's observation (one status query
    /// per idle cycle instead of two).
    pub(super) pg_acted: bool,
}

/// How a cycle ended.
struct CycleEnd {
    /// Run the next cycle no later than this.
    next_cycle_at: Option<Tick>,
    /// Every final action succeeded.
    all_done: bool,
}

// === impl Runtime ===

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// A runtime that has not run a cycle yet.
    pub fn new(
        config: Arc<Config>,
        dcs: Arc<D>,
        pg: P,
        major_version: u32,
        shared: Arc<Shared>,
    ) -> Self {
        let (dynamic, dynamic_raw) = match super::dynamic_cache::load(&config.postgresql.data_dir) {
            Some(cached) => {
                tracing::info!("using the dynamic configuration cached in patroni.dynamic.json");
                (parse_dynamic(&cached, "patroni.dynamic.json"), cached)
            }
            None => (
                config.bootstrap.dcs.clone(),
                config.bootstrap.dcs_raw.clone(),
            ),
        };
        let ha = ha_config(&dynamic, &config);
        let id = Identity::from_config(&config);
        let callback_runner =
            CallbackRunner::new(config.postgresql.callbacks.clone(), &config.scope);
        Self {
            config,
            id,
            dcs,
            pg,
            major_version,
            shared,
            peers: PeerClient::new(),
            start: Instant::now(),
            memory: AgentMemory {
                first_cycle: true,
                ..Default::default()
            },
            dynamic,
            dynamic_raw,
            cache_needs_saving: true,
            ha,
            last_role: None,
            crashed_as: None,
            upstream: None,
            starting_since: None,
            state_override: None,
            wal_receiver: None,
            dcs_last_seen: 0,
            callback_state: CallbackState::default(),
            callback_runner,
            reloader: None,
            reconfigure: false,
            pending_restart: BTreeMap::new(),
            server_facts: ServerFacts::default(),
            control_facts: None,
            slots: SlotKeeper::default(),
            sync: SyncMemory::default(),
            last_heartbeat: None,
            last_member_data: None,
            fence: None,
            watchdog: super::watchdog::Watchdog::default(),
            pg_acted: false,
        }
    }

    /// Checks peers with `peers` (TLS settings of the cluster).
    pub fn with_peers(mut self, peers: PeerClient) -> Self {
        self.peers = peers;
        self
    }

    /// Runs callbacks without the agent's own `PATRONI_*` variables of `env` (the agent's
    /// one snapshot of its environment).
    pub fn with_environment(mut self, env: &Environment) -> Self {
        self.callback_runner =
            CallbackRunner::new(self.config.postgresql.callbacks.clone(), &self.config.scope)
                .stripping(env);
        self
    }

    /// Keeps `fence` armed with the leader lease while this member is, or becomes, the primary
    /// (`agent::lease_fence`).
    pub fn with_fence(mut self, fence: crate::fence::FenceClient) -> Self {
        self.fence = Some(fence);
        self
    }

    /// Re-reads the local configuration with `reloader` on `POST /reload` and SIGHUP.
    pub fn with_reloader(mut self, reloader: Reloader) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// The monotonic time given to the core.
    pub(super) fn tick(&self) -> Tick {
        self.start.elapsed()
    }

    /// The local instance, for a step that may change what the server reports (start, stop,
    /// promote, reload, rewind, a slot statement, WAL written, ...): the cycle's publishing
    /// then observes the server again instead of showing the observation it started with.
    /// Reads go through `self.pg`.
    pub(super) fn act_on_pg(&mut self) -> &mut P {
        self.pg_acted = true;
        &mut self.pg
    }

    /// The core's time of the instant `at`.
    pub(super) fn tick_at(&self, at: Instant) -> Tick {
        at.saturating_duration_since(self.start)
    }

    /// Runs cycles until `shutdown` is cancelled and the shutdown actions are done (or
    /// [`SHUTDOWN_DEADLINE`] passes).
    ///
    /// # Errors
    /// [`Fatal`] when the core says continuing is unsafe.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Fatal> {
        if self.pg.adopt() {
            tracing::info!("adopted a running postmaster");
        }
        let mut shutting_down_since: Option<Instant> = None;
        loop {
            let stopping = shutdown.is_cancelled();
            if stopping && shutting_down_since.is_none() {
                tracing::info!("shutdown requested");
                shutting_down_since = Some(Instant::now());
            }
            let role = self.last_role.map_or("none", |r| match r {
                PgRole::Primary => "primary",
                PgRole::Replica => "replica",
            });
            let span = tracing::info_span!(
                "ha_cycle",
                scope = %self.id.scope,
                member = %self.id.name,
                role
            );
            let end = self.cycle(stopping).instrument(span).await?;
            if let Some(since) = shutting_down_since {
                if end.all_done {
                    tracing::info!("shutdown actions done");
                    return Ok(());
                }
                if since.elapsed() > SHUTDOWN_DEADLINE {
                    tracing::warn!("shutdown deadline passed with actions still failing");
                    return Ok(());
                }
                tokio::time::sleep(SHUTDOWN_RETRY).await;
                continue;
            }
            self.wait(end.next_cycle_at, &shutdown).await;
        }
    }

    /// Waits until the next cycle: cancellation first, then the deadline, a DCS change, an
    /// API wake-up.
    ///
    /// A decision's `next_cycle_at` earlier than `loop_wait` is kept exactly. Otherwise the
    /// DCS's `watch` decides when `loop_wait` is over: each backend (Kubernetes, etcd3,
    /// ZooKeeper) lets a member that does not hold the lock wait 0.5 s longer, so that the
    /// leader's renewal, which wakes it, comes first and it runs one cycle per `loop_wait`,
    /// right after the leader's (as Patroni's Kubernetes `watch`); the Kubernetes one also
    /// ends just past the lock's expiry on this member's clock. `WATCH_OVERRUN` later the
    /// loop runs regardless.
    async fn wait(&mut self, next_cycle_at: Option<Tick>, shutdown: &CancellationToken) {
        let now = self.tick();
        let mut remaining = self.ha.loop_wait;
        let mut exact = false;
        if let Some(at) = next_cycle_at {
            let until = at.saturating_sub(now);
            if until < remaining {
                remaining = until;
                exact = true;
            }
        }
        let deadline =
            Instant::now() + remaining + if exact { Duration::ZERO } else { WATCH_OVERRUN };
        self.shared.update(|s| {
            s.next_due = deadline;
            s.loop_status = LoopStatus::Waiting;
        });
        let dcs = Arc::clone(&self.dcs);
        let shared = Arc::clone(&self.shared);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep_until(deadline) => {}
            _ = dcs.watch(remaining) => {}
            () = shared.wake.notified() => {}
        }
        let late = Instant::now().saturating_duration_since(deadline);
        if late > LATE_WAKE {
            // Only worth a warning: the next cycle reads the DCS after this wake-up, so its
            // view is newer than the suspension (the Kubernetes DCS confirms an expired lock).
            tracing::warn!(late = ?late, "this agent was suspended: woke up late");
        }
    }

    /// One cycle: observe, decide (with queries), act, publish.
    async fn cycle(&mut self, stopping: bool) -> Result<CycleEnd, Fatal> {
        self.shared.update(|s| s.loop_status = LoopStatus::Deciding);
        let (reinit, restarts) = self.take_commands();
        let now = self.tick();
        let view_read_at = now;
        let dcs = match self.dcs.get_cluster().await {
            Ok(cluster) => {
                self.dcs_last_seen = unix_now().as_secs();
                self.apply_dynamic(&cluster);
                DcsView::reachable(cluster)
            }
            Err(e) => {
                tracing::warn!(
                    "failed to read the cluster from the DCS: {:#}",
                    anyhow::Error::from(e)
                );
                DcsView::Unreachable
            }
        };
        self.pg_acted = false;
        let local = self.observe(now).await;
        // Whether it is the standby leader is judged at the end of the cycle; until then a
        // standby leader stays one.
        let standby_leader = self.callback_state.role() == Some(patroni_core::Role::StandbyLeader);
        self.callback_state
            .observed(running_role(&local, standby_leader));
        let mut memory = self.memory.clone();
        self.memory.finished = None;
        self.memory.first_cycle = false;
        self.update_memory_before(&dcs, &local, now, &mut memory);
        let mut obs = Observation::new(
            LocalMember {
                name: self.id.name.clone(),
                tags: MemberTags::from_json(&self.id.tags),
                api_url: Some(self.id.api_url.clone()),
            },
            dcs,
            local,
        );
        obs.paused = self.dynamic.pause.unwrap_or(false);
        obs.wall_clock = unix_now();
        obs.memory = memory;
        obs.requests.shutdown = stopping;
        obs.requests.reinit = reinit;
        obs.view_read_at = Some(view_read_at);
        obs.store_lease_limit = self.dcs.lease_limit();
        obs.watchdog = self.observe_watchdog();
        self.fence_for(&obs);
        self.watchdog_for(&mut obs);
        let mut steps = 0;
        let decision = loop {
            let d = decide(&obs, &self.ha, now);
            steps += 1;
            match d.query().cloned() {
                Some(q) if steps < MAX_STEPS => {
                    tracing::debug!(message = %d.message, query = ?q, "query");
                    self.query(q, &mut obs, now).await;
                }
                _ => break d,
            }
        };
        if decision.actions.is_empty() {
            // Patroni logs every cycle's message at INFO (its heartbeat), only the first of
            // identical ones in a row with `log.deduplicate_heartbeat_logs`.
            let repeated = self.config.log.deduplicate_heartbeat_logs
                && self.last_heartbeat.as_deref() == Some(decision.message.as_str());
            if !repeated {
                tracing::info!("{}", decision.message);
            }
            self.last_heartbeat = Some(decision.message.clone());
        } else {
            tracing::info!(actions = ?decision.actions, "{}", decision.message);
            self.last_heartbeat = None;
        }
        let all_done = self.execute_all(&decision.actions, &obs).await?;
        let busy = decision
            .actions
            .first()
            .map(Action::task_name)
            .or_else(|| stopping.then(|| "shutdown".to_owned()));
        if busy.is_none() && !stopping {
            self.apply_reconfigure().await;
            self.manage_sync(&obs).await;
        }
        self.answer_restarts(restarts, busy.clone(), &obs).await;
        let mut next_cycle_at = decision.next_cycle_at;
        if !stopping && let Some(due_in) = self.run_scheduled_restart(&obs, busy.is_some()).await {
            let due = now + due_in;
            next_cycle_at = Some(next_cycle_at.map_or(due, |t| t.min(due)));
        }
        self.publish(&obs, busy.is_none() && !stopping).await;
        Ok(CycleEnd {
            next_cycle_at,
            all_done,
        })
    }
}

/// Wall-clock time since the Unix epoch (zero if the clock is before it).
fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
