//! Carrying out the core's final actions, in order, stopping at the first failure.
//!
//! Each action re-checks what it needs (the `Postgres` methods refuse to start twice or to
//! initdb over data), so a cycle cut short is simply decided again. Long actions run inline
//! and are reported to the next cycle through `AgentMemory::finished`.

use std::time::Duration;

use anyhow::Context;
use patroni_core::Role;
use patroni_core::ha::lease::{self, Fence};
use patroni_core::ha::{
    Action, CloneSource, ControlState, DemoteMode, Finished, Observation, PgRole, ReleaseLsn,
    StartRole, StopMode, SynchronousMode, TimelineCheck, TimelineVerdict, Upstream,
};
use patroni_dcs::{Dcs, FailoverRequest};
use patroni_postgres::{
    FollowSpec, RecoveryConf, ServerParameters, ServerParametersInput, StopMode as PgStopMode,
    UpstreamAddress,
};

use super::api_backend::LoopStatus;
use super::callbacks::PgEvent;
use super::hooks;
use super::member_data::PgState;
use super::pgctl::PostgresCtl;
use super::runtime::{Fatal, Runtime};

// === impl Runtime (execute) ===

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// Carries out `actions` in order; returns whether all succeeded.
    ///
    /// # Errors
    /// [`Fatal`] for [`Action::Fatal`].
    pub(super) async fn execute_all(
        &mut self,
        actions: &[Action],
        obs: &Observation,
    ) -> Result<bool, Fatal> {
        for action in actions {
            if let Action::Fatal { reason } = action {
                tracing::error!("stopping the agent: {reason}");
                return Err(Fatal(reason.clone()));
            }
            let name = action.task_name();
            // Whatever it is, publishing observes the server again: an action is never the
            // idle path, and what the member key shows right after it must be current.
            self.pg_acted = true;
            self.shared
                .update(|s| s.loop_status = LoopStatus::Acting(name.clone()));
            let result = self.execute(action, obs).await;
            self.state_override = None;
            // Whatever the action did to the server, the next observation reads
            // `pg_controldata` again.
            self.control_facts = None;
            if is_long(action) {
                self.memory.finished = Some(Finished {
                    action: action.clone(),
                    succeeded: result.is_ok(),
                });
            }
            if let Err(e) = result {
                tracing::error!(action = %name, "failed to {e:#}");
                return Ok(false);
            }
            self.fence_after(action, obs);
            if matches!(action, Action::Demote { .. } | Action::StopPostgres { .. }) {
                // Patroni disables its watchdog once the server stops (`on_safepoint`);
                // nothing of this member accepts writes any more.
                self.disable_watchdog();
                // Peers woken by the lock release that may follow must not
                // see a running primary in our REST status: that would keep
                // them from racing until a whole loop later.
                self.shared.update(|s| {
                    s.status.state = "stopped".into();
                    s.status.role = patroni_core::Role::Demoted;
                    s.status.xlog = None;
                    s.ha.running_as_primary = false;
                });
            }
        }
        Ok(true)
    }

    /// Carries out one effect.
    async fn execute(&mut self, action: &Action, obs: &Observation) -> anyhow::Result<()> {
        let dcs = std::sync::Arc::clone(&self.dcs);
        match action {
            Action::WriteInitializeKey { sysid } => {
                refused(dcs.initialize(sysid).await, "write the initialize key")
            }
            Action::DeleteInitializeKey => refused(
                dcs.cancel_initialization().await,
                "delete the initialize key",
            ),
            Action::WriteConfig => {
                let value =
                    serde_json::to_string(&self.dynamic_raw).context("render bootstrap.dcs")?;
                refused(
                    dcs.set_config_value(&value, None).await,
                    "write the dynamic configuration",
                )
            }
            Action::ReleaseLeader { last_lsn } => {
                let lsn = match last_lsn {
                    ReleaseLsn::Unchanged => None,
                    ReleaseLsn::ShutdownCheckpoint => self
                        .pg
                        .controldata()
                        .await
                        .ok()
                        .and_then(|cd| cd.checkpoint_lsn().ok())
                        .map(|l| l.0),
                };
                refused(dcs.delete_leader(lsn).await, "release the leader lock")?;
                tracing::info!("released the leader lock");
                Ok(())
            }
            Action::ClearFailover { version } => refused(
                dcs.manual_failover(FailoverRequest::Clear, version.as_deref())
                    .await,
                "clear the failover key",
            ),
            Action::RetargetFailover {
                candidate,
                scheduled_at,
                version,
            } => refused(
                dcs.manual_failover(
                    FailoverRequest::Request {
                        leader: None,
                        candidate: Some(candidate),
                        scheduled_at: scheduled_at.as_deref(),
                    },
                    Some(version),
                )
                .await,
                "rewrite the failover key",
            ),
            Action::Bootstrap => {
                self.bootstrap().await?;
                self.callback(PgEvent::Bootstrapped);
                Ok(())
            }
            Action::CloneReplica { source } => self.clone_replica(source, obs).await,
            Action::BootstrapStandby { remote } => {
                // Patroni's `bootstrap_standby_leader`: clone from the remote, then follow it.
                tracing::info!(remote = %remote.conn_url, "bootstrapping a new standby leader");
                self.clone_replica(&CloneSource::Remote(remote.clone()), obs)
                    .await?;
                let role = StartRole::Replica {
                    upstream: Some(remote.clone()),
                };
                let result = self.start(&role, None).await;
                self.callback(PgEvent::Started {
                    role: Role::Replica,
                    ok: result.is_ok(),
                });
                result
            }
            Action::StartPostgres { role, timeout } => {
                let result = self.start(role, *timeout).await;
                let role = match role {
                    StartRole::Primary => Role::Primary,
                    StartRole::Replica { upstream } => self.replica_role(obs, upstream.as_ref()),
                };
                self.callback(PgEvent::Started {
                    role,
                    ok: result.is_ok(),
                });
                result
            }
            Action::StopPostgres { mode } => {
                let mode = match mode {
                    StopMode::Fast => PgStopMode::Fast,
                    StopMode::Immediate => PgStopMode::Immediate,
                };
                if obs.requests.shutdown {
                    self.release_sync_standby(obs).await;
                }
                self.stop_with_callback(mode).await
            }
            Action::Promote => {
                if let Some(cluster) = obs.cluster()
                    && !self.sync_before_promote(cluster).await
                {
                    anyhow::bail!(
                        "Postponing promotion because synchronous replication state was updated by somebody else"
                    );
                }
                if !self.pre_promote().await {
                    self.memory.pre_promote_failed_at = Some(self.tick());
                    anyhow::bail!("the pre_promote script failed: not promoting");
                }
                tracing::info!("promoting");
                // As Patroni: a primary that called during a DCS outage is nobody's leader now.
                self.shared.take_failsafe_call();
                self.memory.failsafe_leader = None;
                // Never past the lease: the loop (and its renewals) waits for the promotion,
                // and a server the fence kills meanwhile would keep `pg_ctl promote` waiting
                // for the whole timeout (the killed postmaster is not reaped before it returns).
                let mut wait = self.start_timeout(None);
                if let Fence::Armed { until } = lease::holder_fence(obs, &self.ha) {
                    wait = wait
                        .min(until.saturating_sub(self.tick()))
                        .max(Duration::from_secs(1));
                }
                self.promote_keeping_watchdog(wait).await?;
                // Right away, as Patroni's `ensure_checkpoint_after_promote`: until the first
                // checkpoint on the new timeline, `pg_control` names the old one, and a crash
                // now would leave a data directory that looks in sync with its successor.
                if let Err(e) = self.act_on_pg().checkpoint().await {
                    tracing::warn!("failed to run CHECKPOINT after the promotion: {e:#}");
                }
                self.callback(PgEvent::Promoted);
                self.last_role = Some(PgRole::Primary);
                self.upstream = None;
                self.memory.timeline_check = None;
                if let Some(cluster) = obs.cluster() {
                    // Slots before the replicas reconnect, not a cycle later.
                    let local = self.observe(self.tick()).await;
                    self.sync_slots(cluster, &local, obs.paused).await;
                }
                self.publish_history(obs).await;
                Ok(())
            }
            Action::Demote { mode, .. } => {
                self.demote(*mode).await?;
                self.callback(PgEvent::Demoted);
                Ok(())
            }
            Action::FollowLeader { upstream } => {
                self.follow(upstream.as_ref()).await?;
                let role = self.replica_role(obs, upstream.as_ref());
                self.callback(PgEvent::Followed { role });
                Ok(())
            }
            Action::Rewind { from } => {
                let leader_timeline = obs_leader_timeline(obs.cluster(), &from.member);
                self.rewind(from, leader_timeline).await
            }
            Action::RecoverCrash => {
                self.state_override = Some(PgState::Stopped);
                tracing::info!("doing crash recovery in a single user mode");
                self.act_on_pg().recover_crash().await?;
                self.crashed_as = None;
                self.memory.timeline_check = None;
                Ok(())
            }
            Action::RemoveDataDirectory { reason } => {
                tracing::info!(?reason, "removing the data directory");
                self.act_on_pg().remove_data().await?;
                self.callback(PgEvent::DataRemoved);
                self.memory.timeline_check = None;
                self.crashed_as = None;
                Ok(())
            }
            Action::MoveDataDirectoryAside => self.act_on_pg().move_aside().await,
            Action::CancelAsync => Ok(()),
            Action::Fatal { reason } => Err(anyhow::anyhow!("{reason}")),
            query => Err(anyhow::anyhow!("{query:?} is a query, not an effect")),
        }
    }

    /// The role a replica started or re-pointed at `upstream` runs as, for the callbacks:
    /// `standby_leader` for the lock holder of a standby cluster following the remote (or
    /// nobody, with `nostream`), else `replica`.
    fn replica_role(&self, obs: &Observation, upstream: Option<&Upstream>) -> Role {
        let holds = match obs.cycle.lock {
            Some(outcome) => outcome.holds(),
            None => obs
                .cluster()
                .is_some_and(|c| c.leader_name() == Some(self.id.name.as_str())),
        };
        if self.ha.standby_cluster.is_some() && holds && upstream.is_none_or(|u| u.remote) {
            Role::StandbyLeader
        } else {
            Role::Replica
        }
    }

    /// `initdb`, `pg_hba`, start as primary, roles, `post_bootstrap`.
    async fn bootstrap(&mut self) -> anyhow::Result<()> {
        self.state_override = Some(if self.config.bootstrap.method_config.is_some() {
            PgState::RunningCustomBootstrap
        } else {
            PgState::InitializingNewCluster
        });
        tracing::info!("bootstrapping a new cluster");
        self.last_role = Some(PgRole::Primary);
        let params = self.server_parameters();
        let timeout = self.start_timeout(None);
        self.act_on_pg().bootstrap(&params, timeout).await?;
        tracing::info!("bootstrap done");
        Ok(())
    }

    /// A base backup from `source` into the empty data directory.
    async fn clone_replica(
        &mut self,
        source: &CloneSource,
        obs: &Observation,
    ) -> anyhow::Result<()> {
        self.state_override = Some(PgState::CreatingReplica);
        if obs.cluster().is_some() {
            // Tell the others what we are doing while the (long) clone runs.
            let data = super::member_data::member_data(
                &self.id,
                &obs.postgres,
                PgState::CreatingReplica,
                None,
            );
            let _ = self.dcs.touch_member(&data).await;
        }
        let upstream = match source {
            CloneSource::Leader(u) | CloneSource::Replica(u) | CloneSource::Remote(u) => Some(u),
            CloneSource::WithoutLeader => None,
        };
        let address = match upstream {
            Some(u) => self.upstream_address(u)?,
            None => None,
        };
        tracing::info!(source = ?upstream.map(|u| &u.member), "cloning a replica");
        let methods = super::ha_config::replica_method_names(&self.dynamic, &self.config);
        let method = self.pg.clone_from(address.as_ref(), &methods).await?;
        tracing::info!(%method, "replica created");
        self.memory.timeline_check = None;
        self.crashed_as = None;
        self.last_role = Some(PgRole::Replica);
        Ok(())
    }

    /// Starts Postgres in `role`.
    pub(super) async fn start(
        &mut self,
        role: &StartRole,
        timeout: Option<Duration>,
    ) -> anyhow::Result<()> {
        self.state_override = Some(PgState::Starting);
        let params = self.server_parameters();
        let timeout = self.start_timeout(timeout);
        self.crashed_as = None;
        match role {
            StartRole::Primary => {
                tracing::info!("starting postgres as primary");
                self.last_role = Some(PgRole::Primary);
                self.act_on_pg().start(&params, None, timeout).await?;
            }
            StartRole::Replica { upstream } => {
                tracing::info!(upstream = ?upstream.as_ref().map(|u| &u.member), "starting postgres as replica");
                self.last_role = Some(PgRole::Replica);
                let recovery = self.recovery(upstream.as_ref())?;
                self.upstream = upstream.clone();
                self.act_on_pg()
                    .start(&params, Some(&recovery), timeout)
                    .await?;
            }
        }
        Ok(())
    }

    /// Stops Postgres; `on_stop` when a postmaster ran.
    async fn stop_with_callback(&mut self, mode: PgStopMode) -> anyhow::Result<()> {
        let was_running = self.pg.is_running();
        self.stop(mode).await?;
        self.callback(PgEvent::Stopped { was_running });
        Ok(())
    }

    /// Runs the `pre_promote` script, if any: whether the promotion may go on (it exited 0).
    async fn pre_promote(&mut self) -> bool {
        let Some(command) = self.config.postgresql.pre_promote.clone() else {
            return true;
        };
        hooks::run(
            "pre_promote",
            &command,
            self.callback_runner.stripped(),
            self.hook_limit(),
        )
        .await
        .succeeded()
    }

    /// How long a hook may run inline in the loop: half the `ttl`, so that a lock renewed at
    /// the start of the cycle is still this member's when the hook is done.
    fn hook_limit(&self) -> Duration {
        self.ha.ttl / 2
    }

    pub(super) async fn stop(&mut self, mode: PgStopMode) -> anyhow::Result<()> {
        if self.pg.is_running()
            && let Some(command) = self.config.postgresql.before_stop.clone()
        {
            // Patroni logs its exit code and stops anyway.
            hooks::run(
                "before_stop",
                &command,
                self.callback_runner.stripped(),
                self.hook_limit(),
            )
            .await;
        }
        tracing::info!(?mode, "stopping postgres");
        self.act_on_pg().stop(mode).await?;
        self.crashed_as = None;
        Ok(())
    }

    async fn demote(&mut self, mode: DemoteMode) -> anyhow::Result<()> {
        tracing::info!(?mode, "demoting");
        match mode {
            DemoteMode::Graceful => {
                if let Err(e) = self.act_on_pg().checkpoint().await {
                    tracing::warn!("failed to checkpoint before the stop: {e:#}");
                }
                self.stop_with_callback(PgStopMode::Fast).await
            }
            DemoteMode::Offline => self.stop_with_callback(PgStopMode::Fast).await,
            DemoteMode::Immediate | DemoteMode::ImmediateNoLock => {
                self.stop_with_callback(PgStopMode::Immediate).await
            }
        }
    }

    /// Points the running replica at `upstream` and reloads.
    async fn follow(&mut self, upstream: Option<&Upstream>) -> anyhow::Result<()> {
        tracing::info!(upstream = ?upstream.map(|u| &u.member), "following a new upstream");
        let params = self.server_parameters();
        let recovery = self.recovery(upstream)?;
        self.act_on_pg().follow(&params, &recovery).await?;
        self.upstream = upstream.cloned();
        Ok(())
    }

    /// `pg_rewind` from the leader, once the leader has checkpointed since its promotion
    /// (else `pg_rewind` reads the old timeline from its `pg_control` and finds nothing to do;
    /// not being able to make sure of that is no failed rewind: it is tried again). The
    /// target must be shut down cleanly: a running server is stopped fast, one that crashed
    /// is first recovered in single-user mode (never a server that accepts connections).
    async fn rewind(&mut self, from: &Upstream, leader_timeline: u64) -> anyhow::Result<()> {
        self.state_override = Some(PgState::Rewinding);
        let address = parse_conn_url(&from.conn_url)
            .with_context(|| format!("parse conn_url {:?}", from.conn_url))?;
        self.pg
            .leader_checkpointed(&address)
            .await
            .with_context(|| format!("prepare pg_rewind from {}", from.member))?;
        if self.pg.is_running() {
            self.stop_with_callback(PgStopMode::Fast).await?;
        } else if !self.shut_down_cleanly().await {
            tracing::info!("doing crash recovery in a single user mode before pg_rewind");
            self.act_on_pg().recover_crash().await?;
        }
        tracing::info!(leader = %from.member, "running pg_rewind");
        let result = self.act_on_pg().rewind_from(&address).await;
        let verdict = if result.is_ok() {
            TimelineVerdict::InSync
        } else {
            TimelineVerdict::RewindFailed
        };
        self.memory.timeline_check = Some(TimelineCheck {
            leader: from.member.clone(),
            leader_timeline,
            verdict,
            checked_at: self.tick(),
        });
        result
    }

    /// Whether `pg_controldata` says the data directory was shut down cleanly.
    async fn shut_down_cleanly(&self) -> bool {
        self.pg.controldata().await.is_ok_and(|cd| {
            matches!(
                ControlState::from_controldata(
                    cd.get("Database cluster state").unwrap_or_default()
                ),
                ControlState::ShutDown | ControlState::ShutDownInRecovery
            )
        })
    }

    /// Server parameters from the local and dynamic configuration; a rejected value is logged.
    pub(super) fn server_parameters(&self) -> ServerParameters {
        self.parameters(true)
    }

    /// Server parameters; rejected values logged when `log`.
    pub(super) fn parameters(&self, log: bool) -> ServerParameters {
        let (mut params, warnings) = ServerParameters::build(&ServerParametersInput {
            scope: &self.config.scope,
            listen: &self.config.postgresql.listen,
            major_version: self.major_version,
            config_dir: self.pg.config_dir(),
            local: &self.config.postgresql.parameters,
            dynamic: &self.dynamic.postgresql.parameters,
        });
        for w in warnings.iter().filter(|_| log) {
            tracing::warn!(
                "postgresql parameter {}={} failed validation, defaulting to {}",
                w.name,
                w.rejected,
                w.used
            );
        }
        if self.ha.synchronous_mode != SynchronousMode::Off {
            // The agent owns it in synchronous mode (Patroni: nobody listed on a replica).
            params.set(
                "synchronous_standby_names",
                self.sync.names.clone().unwrap_or_default(),
            );
        }
        if self.slots.hot_standby_feedback {
            // Permanent logical slots here or downstream need it (Patroni enforces it too).
            params.set("hot_standby_feedback", "on");
        }
        params
    }

    /// Where `upstream` listens: a member's `conn_url`; the remote primary's `host`/`port` from
    /// `standby_cluster` (`None` when only its `restore_command` is configured).
    fn upstream_address(&self, upstream: &Upstream) -> anyhow::Result<Option<UpstreamAddress>> {
        if upstream.remote && upstream.conn_url.is_empty() {
            return Ok(None);
        }
        parse_conn_url(&upstream.conn_url)
            .with_context(|| format!("parse conn_url {:?}", upstream.conn_url))
            .map(Some)
    }

    /// Recovery settings following `upstream`. In a standby cluster every member also gets
    /// the section's `restore_command` and `archive_cleanup_command`; the standby leader
    /// (following the remote) its `recovery_min_apply_delay` and slot `primary_slot_name`
    /// (no slot when unset), as Patroni's `RemoteMember`.
    pub(super) fn recovery(&self, upstream: Option<&Upstream>) -> anyhow::Result<RecoveryConf> {
        let address = match upstream {
            Some(u) => self.upstream_address(u)?,
            None => None,
        };
        let pg = &self.config.postgresql;
        let mut extra = pg.recovery_conf.clone();
        let remote = upstream.is_some_and(|u| u.remote);
        let standby = self
            .dynamic
            .standby_cluster
            .as_ref()
            .filter(|_| super::ha_config::is_standby_cluster(&self.dynamic));
        let mut use_slots = self.dynamic.postgresql.use_slots;
        let mut slot_name = None;
        if let Some(sc) = standby {
            let mut set = |key: &str, value: &Option<String>| {
                if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                    extra.insert(key.to_owned(), serde_json::Value::String(v.clone()));
                }
            };
            set("restore_command", &sc.restore_command);
            set("archive_cleanup_command", &sc.archive_cleanup_command);
            if remote {
                set("recovery_min_apply_delay", &sc.recovery_min_apply_delay);
                slot_name = sc.primary_slot_name.as_deref().filter(|s| !s.is_empty());
                use_slots = slot_name.is_some();
            }
        }
        Ok(RecoveryConf::build(&FollowSpec {
            member_name: &self.id.name,
            upstream: address.as_ref(),
            replication: &pg.authentication.replication,
            passfile: self.pg.pgpass(),
            use_slots,
            slot_name,
            extra: &extra,
            major_version: self.major_version,
            krbsrvname: pg.krbsrvname.as_deref(),
        }))
    }

    /// The start timeout: the decision's, else `pg_ctl_timeout`.
    fn start_timeout(&self, timeout: Option<Duration>) -> Duration {
        timeout.unwrap_or(Duration::from_secs(
            self.config.postgresql.pg_ctl_timeout.max(1),
        ))
    }
}

/// Whether the core expects to hear about `action` in `AgentMemory::finished`.
fn is_long(action: &Action) -> bool {
    matches!(
        action,
        Action::Bootstrap
            | Action::BootstrapStandby { .. }
            | Action::CloneReplica { .. }
            | Action::StartPostgres { .. }
            | Action::Promote
            | Action::Demote { .. }
            | Action::Rewind { .. }
            | Action::RecoverCrash
    )
}

// === impl Runtime: history ===

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// After a promotion, publishes the timeline history as Patroni's leader
    /// does: the lines of the new timeline's history file as
    /// `[timeline, switch_lsn, reason]`, keeping the promotion time and new
    /// leader already recorded for earlier lines, and adding them (now, this
    /// member) for the switch that just happened. Failures are logged: the
    /// history is informational.
    async fn publish_history(&self, obs: &Observation) {
        let Some(timeline) = self.pg.status().await.map(|s| s.timeline) else {
            return;
        };
        let lines = match self.pg.timeline_history(timeline).await {
            Ok(lines) => lines,
            Err(e) => return tracing::warn!("failed to read the timeline history: {e:#}"),
        };
        let known: std::collections::BTreeMap<u64, Vec<serde_json::Value>> = obs
            .cluster()
            .and_then(|c| c.history.as_ref())
            .map(|h| {
                h.lines
                    .iter()
                    .filter_map(|l| l.as_array())
                    .filter_map(|a| Some((a.first()?.as_u64()?, a.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let last = lines.last().map(|l| l.timeline);
        let now = patroni_dcs::encoding::isoformat(jiff::Timestamp::now());
        let doc: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| {
                let mut line = vec![
                    serde_json::json!(l.timeline),
                    serde_json::json!(l.switch_lsn.0),
                    serde_json::json!(l.reason),
                ];
                match known.get(&u64::from(l.timeline)) {
                    Some(old) if old.len() > 3 => line.extend(old.iter().skip(3).cloned()),
                    _ if Some(l.timeline) == last => {
                        line.push(serde_json::json!(now));
                        line.push(serde_json::json!(self.id.name));
                    }
                    _ => {}
                }
                serde_json::Value::Array(line)
            })
            .collect();
        let value = patroni_dcs::encoding::compact_json(&doc);
        if let Err(e) = refused(
            self.dcs.set_history_value(&value).await,
            "write the timeline history",
        ) {
            tracing::warn!("failed to {e:#}");
        }
    }
}

/// A DCS write that must not be refused.
fn refused(result: patroni_dcs::Result<bool>, what: &str) -> anyhow::Result<()> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(anyhow::anyhow!("{what}: refused by the DCS")),
        Err(e) => Err(anyhow::Error::from(e).context(what.to_owned())),
    }
}

/// `host` and `port` of a member's `conn_url` (`postgres://host:port/db`; `[v6]:port`).
pub fn parse_conn_url(url: &str) -> Option<UpstreamAddress> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 5432,
    };
    Some(UpstreamAddress {
        host: host.to_owned(),
        port,
    })
}

/// The timeline `member` published, as seen in `cluster` (0 when unknown).
fn obs_leader_timeline(cluster: Option<&patroni_core::Cluster>, member: &str) -> u64 {
    cluster
        .and_then(|c| c.member(member))
        .and_then(|m| m.data.timeline)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// conn_urls as Patroni writes them give host and port; junk gives nothing.
    #[test]
    fn conn_urls_are_parsed() {
        let a = parse_conn_url("postgres://10.0.0.1:5433/postgres").expect("valid");
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.1", 5433));
        let b = parse_conn_url("postgresql://db.example/postgres").expect("valid");
        assert_eq!((b.host.as_str(), b.port), ("db.example", 5432));
        let c = parse_conn_url("postgres://[fe80::1]:6000/x").expect("valid");
        assert_eq!((c.host.as_str(), c.port), ("fe80::1", 6000));
        assert!(parse_conn_url("http://x:1/").is_none());
        assert!(parse_conn_url("postgres://:5432/x").is_none());
        assert!(parse_conn_url("postgres://h:notaport/x").is_none());
    }

    /// Long actions are the ones reported through `finished`; DCS writes are not.
    #[test]
    fn long_actions_are_reported_when_finished() {
        assert!(is_long(&Action::Bootstrap));
        assert!(is_long(&Action::Promote));
        assert!(is_long(&Action::StartPostgres {
            role: StartRole::Primary,
            timeout: None
        }));
        assert!(!is_long(&Action::WriteConfig));
        assert!(!is_long(&Action::ReleaseLeader {
            last_lsn: ReleaseLsn::Unchanged
        }));
    }

    /// A refused DCS write is a failure that stops the rest of the decision.
    #[test]
    fn refused_writes_fail() {
        assert!(refused(Ok(true), "x").is_ok());
        let e = refused(Ok(false), "release the leader lock").expect_err("refused");
        assert!(format!("{e:#}").contains("refused"));
    }
}
