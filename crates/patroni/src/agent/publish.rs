//! What each cycle shows the world: the member key in the DCS, the REST API's snapshot
//! (status, cluster view, global flags), the callbacks a role change calls for, the cached
//! `patroni.dynamic.json`; then, when the member is idle, the replication slots.

use patroni_core::Role;
use patroni_core::ha::{
    LocalPostgres, LockOutcome, Observation, PgRole, PgServer, SynchronousMode, failsafe,
};
use patroni_core::sync::sync_lists;
use patroni_dcs::Dcs;
use tokio::time::Instant;

use super::callbacks::PgEvent;
use super::member_data::{PgState, StatusExtras, member_data, node_status};
use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// Publishes the member key (when the DCS answered) and the API snapshot; with `idle`
    /// (no action runs, no shutdown) then brings the replication slots in line.
    ///
    /// Shows the cycle's observation of the server (`obs.postgres`) unless something acted on
    /// the server since (`pg_acted`): then it observes again, so the member key and the API
    /// show a promotion, a demotion, a restart or a reload in the cycle that did it.
    pub(super) async fn publish(&mut self, obs: &Observation, idle: bool) {
        let observed_again;
        let local = if self.pg_acted {
            observed_again = self.observe(self.tick()).await;
            &observed_again
        } else {
            &obs.postgres
        };
        if self.cache_needs_saving && local.data().is_some() {
            // As Patroni, once a data directory exists.
            match super::dynamic_cache::save(&self.config.postgresql.data_dir, &self.dynamic_raw) {
                Ok(()) => self.cache_needs_saving = false,
                Err(e) => tracing::warn!("failed to save patroni.dynamic.json: {e:#}"),
            }
        }
        let standby_leader = self.is_standby_leader(obs, local);
        if let Some(cb) = self
            .callback_state
            .cycle_end(running_role(local, standby_leader))
        {
            self.callback_runner.fire(cb);
        }
        let state = match self
            .state_override
            .unwrap_or_else(|| PgState::observed(local))
        {
            // In pause nothing restarts a postmaster that died: Patroni reports it `stopped`.
            PgState::Crashed if obs.paused => PgState::Stopped,
            state => state,
        };
        let cluster = obs.cluster().cloned();
        let reachable = cluster.is_some();
        let standby_leader = self.is_standby_leader(obs, local);
        if reachable {
            let mut data = member_data(&self.id, local, state, self.wal_receiver.as_deref());
            if standby_leader {
                data.role = Some(Role::StandbyLeader.as_str().to_owned());
            }
            if obs.paused {
                data.extra.insert("pause".into(), true.into());
            }
            if !self.pending_restart.is_empty() {
                data.extra.insert("pending_restart".into(), true.into());
                data.extra.insert(
                    "pending_restart_reason".into(),
                    serde_json::to_value(&self.pending_restart).unwrap_or_default(),
                );
            }
            if let Some(doc) = self.scheduled_restart_document() {
                data.extra
                    .insert("scheduled_restart".into(), serde_json::Value::Object(doc));
            }
            match self.dcs.touch_member(&data).await {
                Ok(_) => self.last_member_data = Some(data),
                Err(e) => tracing::warn!(
                    "failed to publish the member key: {:#}",
                    anyhow::Error::from(e)
                ),
            }
        }
        let global = patroni_api::GlobalFlags::from_dynamic(&self.dynamic);
        let extras = StatusExtras {
            paused: obs.paused,
            cluster_unlocked: cluster.as_ref().is_none_or(|c| !c.is_locked()),
            dcs_last_seen: self.dcs_last_seen,
            sysid: local.data().map(|d| d.sysid.clone()),
            synchronous_mode: if global.is_synchronous_mode() {
                global.synchronous_mode
            } else {
                SynchronousMode::Off
            },
            listed_in_sync: cluster
                .as_ref()
                .is_some_and(|c| sync_lists(&c.sync, &self.id.name)),
        };
        let mut status = node_status(&self.id, local, state, &extras);
        if standby_leader {
            status.role = Role::StandbyLeader;
        }
        status.pending_restart_reason = self.pending_restart_reason();
        if running_role(local, false).is_some() {
            status.postmaster_start_time = self.server_facts.start_time.clone();
            status.server_version = self.server_facts.version;
            status.replication = self.server_facts.replication.clone();
        }
        status.scheduled_restart = self.scheduled_restart_document();
        status.watchdog_failed = !patroni_core::ha::watchdog::healthy(obs, &self.ha);
        // Failsafe mode: the primary that its members accepted through a DCS outage is the
        // leader (Patroni's `set_is_leader(True)`); a replica shows it active for `ttl` after
        // the last call it accepted.
        let failsafe_primary = local.is_primary() && failsafe::keeps_primary(obs, &self.ha);
        let failsafe_active = failsafe_primary
            || (self.ha.failsafe_mode
                && self
                    .memory
                    .failsafe_leader
                    .as_ref()
                    .is_some_and(|l| self.tick() < l.heard_at.saturating_add(self.ha.ttl)));
        status.failsafe_mode_is_active = failsafe_active;
        let is_leader = failsafe_primary
            || (cluster
                .as_ref()
                .is_some_and(|c| c.leader_name() == Some(self.id.name.as_str()))
                && obs.cycle.lock.is_some_and(LockOutcome::holds));
        let failsafe_topology = self.memory.failsafe_topology.clone();
        let ttl = self.ha.ttl;
        let tags = self.id.tags.clone();
        self.shared.update(|s| {
            s.status = status;
            s.ha.is_leader = is_leader;
            s.ha.failsafe_active = failsafe_active;
            s.ha.failsafe_topology = failsafe_topology;
            s.ha.running_as_primary = local.is_primary();
            s.ha.ttl = ttl;
            s.ha.configured_tags = tags;
            s.ha.global = global;
            if let Some(c) = cluster {
                s.cluster = Some((c, Instant::now()));
            }
        });
        // Last: the API already shows this cycle's view while the slots are brought in line.
        if idle && let Some(c) = obs.cluster() {
            self.sync_slots(c, local, obs.paused).await;
        }
    }

    /// Whether this member is the standby leader: it holds the lock of a standby cluster and
    /// its server runs (or starts) in recovery. Patroni's role `standby_leader`, which the
    /// member key, `GET /patroni` and the pod's role label (`standby_leader_label_value`)
    /// show.
    fn is_standby_leader(&self, obs: &Observation, local: &LocalPostgres) -> bool {
        let holds = match obs.cycle.lock {
            Some(outcome) => outcome.holds(),
            None => obs
                .cluster()
                .is_some_and(|c| c.leader_name() == Some(self.id.name.as_str())),
        };
        let in_recovery = matches!(
            local.server(),
            Some(
                PgServer::Replica(_)
                    | PgServer::Starting {
                        role: PgRole::Replica,
                        ..
                    }
            )
        );
        self.ha.standby_cluster.is_some() && holds && in_recovery
    }

    /// Fires the callback `event` calls for, if any (in the background).
    pub(super) fn callback(&mut self, event: PgEvent) {
        if let Some(cb) = self.callback_state.on(event) {
            self.callback_runner.fire(cb);
        }
    }
}

/// The role of a server that runs and answers, for the callbacks: a replica is the
/// `standby_leader` when `standby_leader` says it is.
pub(super) fn running_role(local: &LocalPostgres, standby_leader: bool) -> Option<Role> {
    match local.server()? {
        PgServer::Primary(_) => Some(Role::Primary),
        PgServer::Replica(_) if standby_leader => Some(Role::StandbyLeader),
        PgServer::Replica(_) => Some(Role::Replica),
        _ => None,
    }
}
