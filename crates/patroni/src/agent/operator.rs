//! What an operator asks of the HA loop through the REST API (or SIGHUP): reload the local
//! configuration, restart PostgreSQL now or at a scheduled time, reinitialise; and keeping
//! the running server's configuration in line with the dynamic configuration (switch to a
//! changed DCS `config`, rewrite and reload when `postgresql.parameters` change, report what
//! waits for a restart).
//!
//! The loop takes the queued [`Command`]s at the start of a cycle ([`Runtime::take_commands`]):
//! a reinitialise becomes a request of this cycle's observation, reloads happen at once, and
//! restarts run after the cycle's own actions, only when the decision had none (otherwise the
//! answer is `<action> already in progress`), as Patroni refuses a restart while an async
//! action runs. A restart runs inline: the loop does not renew the lock while it runs, so the
//! start timeout of a restart on the leader is capped below `ttl`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use patroni_api::{ParamChange, RestartOutcome, RestartRequest};
use patroni_config::{Config, DynamicConfig};
use patroni_core::Cluster;
use patroni_core::ha::restart::{
    Dropped, RestartConditions, RestartFacts, RestartVerdict, ScheduledRestart, ScheduledVerdict,
    restart_verdict, scheduled_restart_verdict,
};
use patroni_core::ha::{Observation, PgRole, ReinitRequest, StartRole};
use patroni_dcs::Dcs;
use serde_json::Value;
use tokio::sync::oneshot;

use super::api_backend::{Command, LoopStatus};
use super::callbacks::PgEvent;
use super::ha_config::{ha_config, parse_dynamic};
use super::member_data::{Identity, PgState};
use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

/// Re-reads the local configuration (file and environment) on reload.
pub type Reloader = Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// Restarts asked for in this cycle, answered after its actions.
pub(super) type PendingRestarts = Vec<(RestartRequest, oneshot::Sender<RestartOutcome>)>;

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// Takes the queued commands: reloads now, the reinitialise request into the returned
    /// request, restarts into the returned list.
    pub(super) fn take_commands(&mut self) -> (Option<ReinitRequest>, PendingRestarts) {
        let mut reinit = None;
        let mut restarts = Vec::new();
        for command in self.shared.take_commands() {
            match command {
                Command::Reload => self.reload_local_config(),
                Command::Restart { request, reply } => restarts.push((request, reply)),
                Command::Reinitialize(r) => {
                    tracing::info!(from_leader = r.from_leader, "reinitialize requested");
                    reinit = Some(ReinitRequest {
                        from_leader: r.from_leader,
                    });
                }
            }
        }
        (reinit, restarts)
    }

    /// Re-reads the local configuration and applies what can change without a restart of the
    /// agent: tags, PostgreSQL parameters, authentication, callbacks, `pg_hba`. A change of
    /// `scope` or `name` is refused (Patroni needs a restart for those too).
    pub(super) fn reload_local_config(&mut self) {
        let Some(reloader) = &self.reloader else {
            tracing::warn!("reload requested, but this agent has no configuration source");
            return;
        };
        let config = match reloader() {
            Ok(config) => config,
            Err(e) => {
                tracing::error!("failed to reload the configuration: {e:#}");
                return;
            }
        };
        if config.scope != self.config.scope || config.name != self.config.name {
            tracing::error!("failed to reload the configuration: scope and name cannot change");
            return;
        }
        if config == *self.config {
            tracing::info!("reload: no changes in the configuration");
            return;
        }
        tracing::info!("reloaded the configuration");
        let config = Arc::new(config);
        self.id = Identity::from_config(&config);
        self.callback_runner = self
            .callback_runner
            .with_commands(config.postgresql.callbacks.clone(), &config.scope);
        self.pg.set_config(Arc::clone(&config));
        self.config = config;
        self.ha = ha_config(&self.dynamic, &self.config);
        self.reconfigure = true;
    }

    /// Switches to the DCS `config` when present and valid.
    pub(super) fn apply_dynamic(&mut self, cluster: &Cluster) {
        let Some(config) = &cluster.config else {
            return;
        };
        if config.data.is_empty() {
            return;
        }
        let raw = serde_json::Value::Object(config.data.clone());
        if raw == self.dynamic_raw {
            return;
        }
        let dynamic = parse_dynamic(&raw, "the DCS `config`");
        self.dynamic_raw = raw;
        self.cache_needs_saving = true;
        if dynamic != self.dynamic {
            tracing::info!("applying the dynamic configuration from the DCS");
            let ha = ha_config(&dynamic, &self.config);
            if (ha.ttl, ha.retry_timeout) != (self.ha.ttl, self.ha.retry_timeout) {
                self.dcs.set_timing(ha.ttl, ha.retry_timeout);
            }
            self.ha = ha;
            let old = std::mem::replace(&mut self.dynamic, dynamic.clone());
            self.dynamic_changed(&old, &dynamic);
        }
    }

    /// Notes a change of the dynamic configuration that the running server must see.
    pub(super) fn dynamic_changed(&mut self, old: &DynamicConfig, new: &DynamicConfig) {
        if old.postgresql.parameters != new.postgresql.parameters
            || old.postgresql.use_slots != new.postgresql.use_slots
            || old.synchronous_mode != new.synchronous_mode
        {
            self.reconfigure = true;
        }
    }

    /// Rewrites the configuration files of the running server and reloads it, if the
    /// configuration changed since it was written.
    pub(super) async fn apply_reconfigure(&mut self) {
        if !self.reconfigure {
            return;
        }
        match self.rewrite_config().await {
            Ok(true) => {
                self.reconfigure = false;
                tracing::info!("postgres configuration reloaded");
                self.callback(PgEvent::Reloaded);
            }
            Ok(false) => {} // Not running: written again once it runs.
            Err(e) => tracing::warn!("failed to reload the postgres configuration: {e:#}"),
        }
    }

    /// Rewrites the configuration files of the running server (recovery settings too when it
    /// is a standby) and reloads it; false when no server runs (its next start writes them).
    ///
    /// # Errors
    /// The recovery settings cannot be rendered, or writing or reloading failed.
    pub(super) async fn rewrite_config(&mut self) -> anyhow::Result<bool> {
        let recovery = match self.pg.status().await {
            None => return Ok(false),
            Some(s) if s.in_recovery => Some(
                self.recovery(self.upstream.as_ref())
                    .context("render the recovery settings")?,
            ),
            Some(_) => None,
        };
        let params = self.server_parameters();
        self.act_on_pg()
            .reconfigure(&params, recovery.as_ref())
            .await?;
        Ok(true)
    }

    /// Records which parameters wait for a restart, as the last status query reported them
    /// (`name`, value in effect), with the configured value each waits for.
    pub(super) fn note_pending_restart(&mut self, rows: &[(String, String)]) {
        if rows.is_empty() {
            self.pending_restart.clear();
            return;
        }
        let params = self.server_parameters();
        self.pending_restart = rows
            .iter()
            .map(|(name, old)| {
                let change = ParamChange {
                    old_value: old.clone(),
                    new_value: params.get(name).unwrap_or_default().to_owned(),
                };
                (name.clone(), change)
            })
            .collect();
    }

    /// Answers this cycle's restart requests: `busy` names the action the cycle carried out,
    /// if any (then the restart is refused as Patroni refuses it during an async action).
    pub(super) async fn answer_restarts(
        &mut self,
        restarts: PendingRestarts,
        busy: Option<String>,
        obs: &Observation,
    ) {
        for (request, reply) in restarts {
            let outcome = match &busy {
                Some(task) => RestartOutcome::InProgress(task.clone()),
                None => self.restart(&request, obs).await,
            };
            tracing::info!(?outcome, "restart request answered");
            let _ = reply.send(outcome);
        }
    }

    /// Runs the scheduled restart when the core says its time has come, drops it when the
    /// core says so; how long until it is due otherwise (when known).
    pub(super) async fn run_scheduled_restart(
        &mut self,
        obs: &Observation,
        busy: bool,
    ) -> Option<Duration> {
        let scheduled = self.shared.scheduled_restart()?;
        let Some(at) = scheduled.request.schedule else {
            self.shared.take_scheduled_restart();
            return None;
        };
        let plan = ScheduledRestart {
            at: Duration::try_from(at.duration_since(jiff::Timestamp::UNIX_EPOCH))
                .unwrap_or_default(),
            start_time_then: scheduled.postmaster_start_time.clone(),
        };
        let start_time_now = self.shared.get().status.postmaster_start_time;
        let verdict =
            scheduled_restart_verdict(&plan, start_time_now.as_deref(), busy, obs, &self.ha);
        match verdict {
            ScheduledVerdict::Wait { due_in } => return due_in,
            ScheduledVerdict::Drop(Dropped::RestartedSince) => tracing::info!(
                "cancelling the scheduled restart: postgres restart has already happened"
            ),
            ScheduledVerdict::Drop(Dropped::Stale) => {
                tracing::warn!(schedule = %at, "found a stale scheduled restart, cleaning up");
            }
            ScheduledVerdict::Run => {
                tracing::info!(schedule = %at, "running the scheduled restart");
                let outcome = self.restart(&scheduled.request, obs).await;
                tracing::info!(?outcome, "scheduled restart done");
            }
        }
        self.shared.take_scheduled_restart();
        None
    }

    /// Restarts PostgreSQL in its current role if `request`'s conditions hold.
    async fn restart(&mut self, request: &RestartRequest, obs: &Observation) -> RestartOutcome {
        let conditions = RestartConditions {
            role: request.role,
            postgres_version: request.postgres_version,
            restart_pending: request.restart_pending,
            timeout: request.timeout,
        };
        let facts = RestartFacts {
            last_role: self.last_role,
            server_version: self.shared.get().status.server_version,
            pending_restart: !self.pending_restart.is_empty(),
            pg_ctl_timeout: Duration::from_secs(self.config.postgresql.pg_ctl_timeout),
        };
        let (role, timeout) = match restart_verdict(&conditions, &facts, obs, &self.ha) {
            RestartVerdict::StillStarting => return RestartOutcome::StillStarting,
            RestartVerdict::NotSatisfied(reason) => {
                tracing::info!("not proceeding with the restart: {reason}");
                return RestartOutcome::ConditionsNotSatisfied;
            }
            RestartVerdict::Restart { role, timeout } => (role, timeout),
        };
        let start = match role {
            PgRole::Primary => StartRole::Primary,
            PgRole::Replica => StartRole::Replica {
                upstream: self.upstream.clone(),
            },
        };
        self.shared
            .update(|s| s.loop_status = LoopStatus::Acting("restart".into()));
        tracing::info!(?role, "restarting postgres");
        self.release_sync_standby(obs).await;
        self.state_override = Some(PgState::Restarting);
        let result = async {
            self.stop(patroni_postgres::StopMode::Fast).await?;
            self.start(&start, Some(timeout)).await
        }
        .await;
        self.state_override = None;
        match result {
            Ok(()) => {
                self.pending_restart.clear();
                self.callback(PgEvent::Restarted);
                RestartOutcome::Restarted
            }
            Err(e) => {
                tracing::error!("failed to restart postgres: {e:#}");
                RestartOutcome::Failed
            }
        }
    }

    /// The `scheduled_restart` document published in the status and the member key.
    pub(super) fn scheduled_restart_document(&self) -> Option<serde_json::Map<String, Value>> {
        self.shared.scheduled_restart().map(|s| s.document())
    }

    /// `pending_restart_reason` as published.
    pub(super) fn pending_restart_reason(&self) -> BTreeMap<String, ParamChange> {
        self.pending_restart.clone()
    }
}
