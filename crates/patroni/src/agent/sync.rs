//! Synchronous replication on the primary: performs the steps of `patroni_core::sync` (write
//! `/sync`, set `synchronous_standby_names` and reload, wait for a standby to confirm) after
//! the cycle's own actions, and what a member writes just before it promotes.
//!
//! The rules and their order are the core's; this module observes (the server's WAL senders
//! and applied settings, re-read after each change), performs one step at a time and stops at
//! the first refusal, as Patroni's `_process_multisync_replication` does.

use std::time::Duration;

use patroni_core::ha::{LockOutcome, Observation, PgServer, PrimaryState, SynchronousMode};
use patroni_core::sync::quorum::Transition;
use patroni_core::sync::{
    CommitLevel, QuorumPlan, SyncCandidates, SyncStep, SyncTracker, SyncType, current_state,
    next_step, prepromote, quorum_plan, quorum_prepromote, render, when_off,
};
use patroni_core::{Cluster, SyncState};
use patroni_dcs::Dcs;

use super::observe::primary_state;
use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

/// Steps one cycle may take (Patroni's sequence needs at most five).
const MAX_STEPS: usize = 8;
/// How long a reload of `synchronous_standby_names` is given before observing again
/// (Patroni: 0.1 s).
const RELOAD_PAUSE: Duration = Duration::from_millis(100);
/// How long newly listed standbys are given to be reported synchronous (Patroni: 2 s).
const CONFIRM_PAUSE: Duration = Duration::from_secs(2);
/// Before observing again after the quorum resolver asked for a restart (Patroni: 1 s).
const RESTART_PAUSE: Duration = Duration::from_secs(1);

// === impl Runtime (synchronous replication) ===

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// Keeps `/sync` and `synchronous_standby_names` in line on the lock holder running as
    /// primary; empties `/sync` when synchronous mode was turned off.
    pub(super) async fn manage_sync(&mut self, obs: &Observation) {
        let Some(cluster) = obs.cluster() else {
            return;
        };
        let primary = match obs.postgres.server() {
            Some(PgServer::Primary(p)) => p,
            Some(PgServer::Replica(_)) => {
                // A replica lists nobody (its next configuration write says so) and a later
                // promotion starts from a fresh memory.
                self.sync.names = None;
                self.sync.tracker = SyncTracker::default();
                return;
            }
            _ => return,
        };
        if !obs.cycle.lock.is_some_and(LockOutcome::holds) {
            return;
        }
        match self.ha.synchronous_mode {
            SynchronousMode::Off => {
                if when_off(&cluster.sync).is_some() {
                    self.disable_sync(&cluster.sync).await;
                }
                // Every cycle, as Patroni's `disable_synchronous_replication`: the configured
                // value applies again (a list left from synchronous mode would hold commits).
                let configured = self.parameters(false);
                let configured = configured
                    .get("synchronous_standby_names")
                    .unwrap_or_default();
                if primary.synchronous_standby_names != configured {
                    tracing::info!(
                        "setting synchronous_standby_names back to the configured {configured:?}"
                    );
                    self.write_config().await;
                }
                return;
            }
            SynchronousMode::Quorum | SynchronousMode::On => {}
        }
        if self.sync.names.is_none() && !primary.synchronous_standby_names.is_empty() {
            // A primary found running (an agent restart): keep what it lists until the steps
            // change it, so no configuration write drops a standby `/sync` may name.
            self.sync.names = Some(primary.synchronous_standby_names.clone());
        }
        if self.ha.synchronous_mode == SynchronousMode::Quorum {
            self.manage_quorum(cluster, primary).await;
            return;
        }
        let settings = self.ha.sync_settings();
        let me = self.id.name.clone();
        let mut view: Cluster = cluster.clone();
        let mut primary: PrimaryState = primary.clone();
        let mut waited = false;
        for _ in 0..MAX_STEPS {
            let now = self.candidates(&me, &view, &primary).await;
            match next_step(&me, &view.sync, &now, settings, waited) {
                SyncStep::WriteSync { standbys } => {
                    match self.write_sync(&view.sync, &me, &standbys, None).await {
                        Some(written) => view.sync = written,
                        None => return,
                    }
                }
                SyncStep::DeleteSync => {
                    self.disable_sync(&view.sync).await;
                    return;
                }
                SyncStep::SetNames { standbys, num } => {
                    let value = render(&standbys, num, false).unwrap_or_default();
                    if value == primary.synchronous_standby_names {
                        return;
                    }
                    match self.list_and_observe(value).await {
                        Some(p) => primary = p,
                        None => return,
                    }
                }
                SyncStep::WaitForConfirmation => {
                    waited = true;
                    tokio::time::sleep(CONFIRM_PAUSE).await;
                    match self.pg.status().await {
                        Some(st) if !st.in_recovery => primary = primary_state(&st),
                        _ => return,
                    }
                }
                SyncStep::Done { strict_waiting } => {
                    if strict_waiting && !self.sync.strict_warned {
                        tracing::warn!(
                            "No active replication connections from Patroni members and synchronous_mode_strict is requested. Commits will be delayed."
                        );
                    }
                    self.sync.strict_warned = strict_waiting;
                    return;
                }
            }
        }
    }

    /// Quorum commit: carries out the resolver's transitions in order (`/sync` written by
    /// compare-and-swap, `ANY n (...)` listed), observing again after a restart, within
    /// `loop_wait` (Patroni's `_process_quorum_replication`).
    async fn manage_quorum(&mut self, cluster: &Cluster, primary: &PrimaryState) {
        let started = tokio::time::Instant::now();
        let settings = self.ha.sync_settings();
        let me = self.id.name.clone();
        let mut view: Cluster = cluster.clone();
        let mut primary: PrimaryState = primary.clone();
        if view.sync.leader.as_deref().is_none_or(str::is_empty) {
            match self.write_sync(&view.sync, &me, &[], Some(0)).await {
                Some(written) => view.sync = written,
                None => return,
            }
        }
        for _ in 0..MAX_STEPS {
            let now = self.candidates(&me, &view, &primary).await;
            let plan = match quorum_plan(&me, &view.sync, &now, settings) {
                Ok(plan) => plan,
                Err(e) => {
                    tracing::warn!("{e}");
                    return;
                }
            };
            let resolution = match plan {
                QuorumPlan::Strict { set } => {
                    if let Some((standbys, num)) = set {
                        let value = render(&standbys, Some(num), true).unwrap_or_default();
                        tracing::info!("Assigning synchronous_standby_names to {value}");
                        self.set_sync_names(Some(value)).await;
                    }
                    if !self.sync.strict_warned {
                        tracing::warn!(
                            "No active replication connections from Patroni members and synchronous_mode_strict is requested. Commits will be delayed."
                        );
                    }
                    self.sync.strict_warned = true;
                    return;
                }
                QuorumPlan::Transitions {
                    clear_first,
                    resolution,
                } => {
                    self.sync.strict_warned = false;
                    if clear_first {
                        self.set_sync_names(Some(String::new())).await;
                    }
                    resolution
                }
            };
            if let Some(w) = &resolution.warning {
                tracing::warn!("{w}");
            }
            let mut last = None;
            for t in resolution.transitions {
                if started.elapsed() >= self.ha.loop_wait {
                    return;
                }
                match &t {
                    Transition::Quorum {
                        leader,
                        quorum,
                        voters,
                    } => {
                        tracing::info!(
                            "Setting leader to {leader}, quorum to {quorum} of ({})",
                            voters.join(", ")
                        );
                        match self
                            .write_sync(&view.sync, leader, voters, Some(*quorum))
                            .await
                        {
                            Some(written) => view.sync = written,
                            None => return,
                        }
                    }
                    Transition::Sync { num, names } => {
                        let value = render(names, Some(*num), true).unwrap_or_default();
                        tracing::info!("Assigning synchronous_standby_names to {value}");
                        if !self.set_sync_names(Some(value)).await {
                            return;
                        }
                    }
                    Transition::Restart => {}
                }
                last = Some(t);
            }
            if last.is_none() && now.sync_type != SyncType::Quorum && !now.sync.is_empty() {
                // FIRST -> ANY.
                let value = render(&now.sync, Some(now.numsync), true).unwrap_or_default();
                if value != primary.synchronous_standby_names {
                    tracing::info!("Assigning synchronous_standby_names to {value}");
                    self.set_sync_names(Some(value)).await;
                }
            }
            if last != Some(Transition::Restart)
                || started.elapsed() + RESTART_PAUSE >= self.ha.loop_wait
            {
                return;
            }
            // Standbys just listed may take a moment to report: observe again soon.
            tokio::time::sleep(RESTART_PAUSE).await;
            match self.pg.status().await {
                Some(st) if !st.in_recovery => primary = primary_state(&st),
                _ => return,
            }
        }
    }

    /// The synchronous standbys now, as the core judges them from `primary` and `view`; after
    /// a change of the applied list, a little WAL first so standbys report progress.
    async fn candidates(
        &mut self,
        me: &str,
        view: &Cluster,
        primary: &PrimaryState,
    ) -> SyncCandidates {
        let (changed, problem) = self
            .sync
            .tracker
            .note_applied(&primary.synchronous_standby_names, primary.wal_lsn);
        if let Some(problem) = problem {
            tracing::warn!("{problem}");
        }
        if changed && let Err(e) = self.act_on_pg().nudge_wal().await {
            tracing::warn!("failed to {e:#}");
        }
        current_state(
            me,
            view,
            &primary.wal_senders,
            CommitLevel::parse(&primary.synchronous_commit),
            primary.wal_lsn,
            self.ha.sync_settings(),
            &mut self.sync.tracker,
        )
    }

    /// Lists `value`, reloads, and observes the primary again.
    async fn list_and_observe(&mut self, value: String) -> Option<PrimaryState> {
        tracing::info!("Assigning synchronous_standby_names to {value}");
        if !self.set_sync_names(Some(value)).await {
            return None;
        }
        tokio::time::sleep(RELOAD_PAUSE).await;
        match self.pg.status().await {
            Some(st) if !st.in_recovery => Some(primary_state(&st)),
            _ => None,
        }
    }

    /// Before promoting in synchronous mode: `/sync` names this member (keeping the former
    /// synchronous set in strict mode) and `synchronous_standby_names` follows; with it off,
    /// `/sync` is emptied. False when `/sync` was changed by someone else (the promotion
    /// waits for the next cycle, as Patroni's).
    pub(super) async fn sync_before_promote(&mut self, cluster: &Cluster) -> bool {
        match self.ha.synchronous_mode {
            SynchronousMode::On => {}
            SynchronousMode::Off => {
                if when_off(&cluster.sync).is_some() {
                    self.disable_sync(&cluster.sync).await;
                }
                return true;
            }
            SynchronousMode::Quorum => {
                let (standbys, num) =
                    quorum_prepromote(&self.id.name, &cluster.sync, self.ha.sync_settings());
                self.set_sync_names(render(&standbys, Some(num), true))
                    .await;
                return true;
            }
        }
        let (standbys, num) = prepromote(&self.id.name, &cluster.sync, self.ha.sync_settings());
        let me = self.id.name.clone();
        if self
            .write_sync(&cluster.sync, &me, &standbys, None)
            .await
            .is_none()
        {
            return false;
        }
        self.set_sync_names(render(&standbys, num, false)).await;
        true
    }

    /// Writes `/sync` as `(leader, standbys, quorum)` over `seen`; the state written, `None`
    /// when refused or failed (logged).
    async fn write_sync(
        &self,
        seen: &SyncState,
        leader: &str,
        standbys: &[String],
        quorum: Option<u32>,
    ) -> Option<SyncState> {
        let result = self
            .dcs
            .write_sync_state(Some(leader), standbys, quorum, seen.version.as_deref())
            .await;
        match result {
            Ok(Some(written)) => {
                if seen.leader.as_deref().is_none_or(str::is_empty) {
                    tracing::info!("Enabled synchronous replication");
                } else {
                    tracing::info!("Synchronous standby status assigned to {standbys:?}");
                }
                Some(written)
            }
            Ok(None) => {
                tracing::info!("Synchronous replication key updated by someone else");
                None
            }
            Err(e) => {
                tracing::warn!(
                    "failed to update the sync state: {:#}",
                    anyhow::Error::from(e)
                );
                None
            }
        }
    }

    /// Empties `/sync` and lists nobody (the configured `synchronous_standby_names` applies).
    async fn disable_sync(&mut self, seen: &SyncState) {
        match self.dcs.delete_sync_state(seen.version.as_deref()).await {
            Ok(true) => tracing::info!("Disabled synchronous replication"),
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(
                    "failed to delete the sync state: {:#}",
                    anyhow::Error::from(e)
                );
                return;
            }
        }
        self.sync.names = None;
        self.write_config().await;
    }

    /// Makes `value` the agent's `synchronous_standby_names` (`None`: nobody in synchronous
    /// mode, the configured value otherwise), rewrites the configuration and reloads a running
    /// server; false when that failed.
    async fn set_sync_names(&mut self, value: Option<String>) -> bool {
        if self.sync.names == value {
            return true;
        }
        self.sync.names = value;
        self.write_config().await
    }

    /// Rewrites the configuration files and reloads a running server; false when that failed
    /// (logged).
    async fn write_config(&mut self) -> bool {
        match self.rewrite_config().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("failed to set synchronous_standby_names: {e:#}");
                false
            }
        }
    }
}

/// What the agent remembers about synchronous replication between cycles.
#[derive(Debug, Default)]
pub(super) struct SyncMemory {
    /// The `synchronous_standby_names` the agent sets in synchronous mode (`None`: nobody).
    pub names: Option<String>,
    /// Which listed standbys caught up since the list changed.
    pub tracker: SyncTracker,
    /// Strict mode's "commits will be delayed" was logged.
    pub strict_warned: bool,
}
