//! Replication slots on this member, each cycle nothing else runs: reads what exists, asks
//! `patroni_core::slots` what must exist and how to get there, and carries the plan out.
//!
//! Besides the plan's statements this module owns what Patroni's `SlotsHandler` remembers:
//! the member slots the leader retains for absent members, the slots it publishes with its
//! lock, the background advance of logical slots on replicas (it may take long: it never
//! blocks the loop), and whether `hot_standby_feedback` must be on. Copying a logical slot
//! to a replica restarts the replica (the slot's state file is written while it is stopped),
//! as Patroni does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use patroni_core::ha::{LocalPostgres, MemberTags, PgServer, StartRole};
use patroni_core::slots::{
    DropReason, PermanentSlot, PlanInput, RetainedSlots, SlotKind, SlotRole, SlotStep, SlotView,
    Wanted, desired_slots, needs_hot_standby_feedback, parse_ignore_slots, permanent_slots, plan,
    published_slots, slot_name_from_member_name,
};
use patroni_core::{Cluster, Tick};
use patroni_dcs::Dcs;
use patroni_postgres::{DropOutcome, StopMode};
use tokio::task::JoinHandle;

use super::execute::parse_conn_url;
use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

/// What the slot handling remembers between cycles.
#[derive(Debug, Default)]
pub struct SlotKeeper {
    /// Member slots the leader keeps for absent members.
    retained: RetainedSlots,
    /// The slots this member must have, as last computed.
    desired: BTreeMap<String, Wanted>,
    /// Logical slots being advanced in the background.
    advancing: Option<JoinHandle<()>>,
    /// `hot_standby_feedback` must be on (a logical slot here or downstream).
    pub(super) hot_standby_feedback: bool,
    /// Configuration problems already logged (each once).
    reported: BTreeSet<String>,
}

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// Brings this member's slots to what the cluster asks for. Only with a dynamic
    /// configuration in the DCS and a server that answers; `promoting` skips copying.
    pub(super) async fn sync_slots(
        &mut self,
        cluster: &Cluster,
        local: &LocalPostgres,
        paused: bool,
    ) {
        if cluster.config.is_none() {
            return;
        }
        let (role, replay_lsn) = match local.server() {
            Some(PgServer::Primary(_)) => (SlotRole::Primary, None),
            Some(PgServer::Replica(r)) => (SlotRole::Replica, Some(r.replay_lsn)),
            _ => return,
        };
        let empty = serde_json::Map::new();
        let raw = self.dynamic_raw.as_object().unwrap_or(&empty);
        let permanent = permanent_slots(raw);
        let (ignore, mut problems) = parse_ignore_slots(raw);
        let tags = MemberTags::from_json(&self.id.tags);
        let view = SlotView {
            cluster,
            me: &self.id.name,
            tags: &tags,
            role,
            standby_cluster: self.dynamic.standby_cluster.is_some(),
            use_slots: self.dynamic.postgresql.use_slots,
            member_slots_ttl: self.dynamic.member_slots_ttl,
            permanent: &permanent,
        };
        let desired = desired_slots(&view);
        let feedback = needs_hot_standby_feedback(&view);
        if feedback != self.slots.hot_standby_feedback {
            tracing::info!(
                hot_standby_feedback = feedback,
                "permanent logical slots change hot_standby_feedback"
            );
            self.slots.hot_standby_feedback = feedback;
            self.reconfigure = true;
        }
        problems.extend(desired.problems);
        for p in problems {
            if self.slots.reported.insert(p.clone()) {
                tracing::error!("{p}");
            }
        }
        let existing = match self.pg.slot_states(self.server_version()).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("failed to read replication slots: {e:#}");
                return;
            }
        };
        let leader = cluster.leader_name();
        let plan = plan(&PlanInput {
            desired: &desired.slots,
            existing: &existing,
            ignore: &ignore,
            is_primary: role == SlotRole::Primary,
            paused,
            clean_inactive_physical: cluster.is_locked()
                && (leader != Some(self.id.name.as_str()) || role == SlotRole::Primary),
            replay_lsn,
        });
        let mut advance = Vec::new();
        for step in plan.steps {
            match step {
                SlotStep::AdvanceLogical {
                    name,
                    database,
                    lsn,
                } => advance.push((database, name, lsn)),
                step => self.slot_step(&step).await,
            }
        }
        self.advance_in_background(advance);
        self.slots.desired = desired.slots;
        if !plan.copy_from_primary.is_empty() && role == SlotRole::Replica {
            self.copy_logical_slots(cluster, &plan.copy_from_primary)
                .await;
        }
    }

    /// `slots` and `retain_slots` the leader publishes with its lock (see
    /// `patroni_core::slots::publish`).
    pub(super) async fn leader_slots(
        &mut self,
        cluster: Option<&Cluster>,
        last_lsn: u64,
        now: Tick,
    ) -> (Option<BTreeMap<String, u64>>, Option<Vec<String>>) {
        if !self.dynamic.postgresql.use_slots {
            return (None, None);
        }
        let existing = match self.pg.slot_states(self.server_version()).await {
            Ok(slots) => slots,
            Err(e) => {
                tracing::debug!("failed to read replication slots: {e:#}");
                Vec::new()
            }
        };
        let ttl = self.dynamic.member_slots_ttl;
        let own = slot_name_from_member_name(&self.id.name);
        let published = published_slots(&self.slots.desired, &existing, &own, last_lsn, ttl);
        let Some(cluster) = cluster else {
            return (published, None);
        };
        let empty = serde_json::Map::new();
        let permanent_physical: BTreeSet<String> =
            permanent_slots(self.dynamic_raw.as_object().unwrap_or(&empty))
                .into_iter()
                .filter(|(_, s)| matches!(s, PermanentSlot::Physical { .. }))
                .map(|(n, _)| n)
                .collect();
        let (retain, expired) = self.slots.retained.update(
            cluster,
            &self.id.name,
            published.as_ref(),
            &permanent_physical,
            Duration::from_secs(ttl),
            now,
        );
        for name in expired {
            tracing::info!(
                "Replication slot '{name}' for absent cluster member is expired after {ttl} sec."
            );
        }
        (published, retain)
    }

    /// `server_version_num` of the running server, else of the binaries.
    fn server_version(&self) -> u32 {
        self.server_facts
            .version
            .unwrap_or(self.major_version * 10_000)
    }

    /// One statement of the plan, logged as Patroni logs it; failures are logged and the
    /// next cycle plans again.
    async fn slot_step(&mut self, step: &SlotStep) {
        if let SlotStep::Drop { name, reason } = step {
            match reason {
                DropReason::Unknown => {
                    tracing::info!("Trying to drop unknown replication slot '{name}'")
                }
                DropReason::WalLost => {
                    tracing::info!("Trying to drop replication slot '{name}' with wal_status=lost");
                }
                DropReason::Changed => {
                    tracing::info!(
                        "Trying to drop replication slot '{name}' because its type, database or plugin is changing"
                    );
                }
                DropReason::InactiveXmin => {
                    tracing::warn!(
                        "Dropping physical replication slot {name} because of its xmin value"
                    );
                }
                DropReason::NoRestartLsn => tracing::warn!(
                    "Dropping physical replication slot {name} because it has no restart_lsn. This slot was probably not created by Patroni, but by an external agent."
                ),
            }
        }
        match (step, self.act_on_pg().slot_step(step).await) {
            (SlotStep::Drop { name, .. }, Ok(Some(DropOutcome::Dropped))) => {
                tracing::info!("Dropped replication slot '{name}'");
            }
            (SlotStep::Drop { name, .. }, Ok(Some(DropOutcome::Active))) => {
                tracing::warn!("Unable to drop replication slot '{name}', slot is active");
            }
            (SlotStep::Drop { name, .. }, Ok(_)) => {
                tracing::error!("Failed to drop replication slot '{name}'");
            }
            (SlotStep::CreatePhysical { name }, Ok(_)) => {
                tracing::info!(slot = %name, "created physical replication slot");
            }
            (SlotStep::CreateLogical { name, plugin, .. }, Ok(_)) => {
                tracing::info!(slot = %name, %plugin, "created logical replication slot");
            }
            (_, Ok(_)) => {}
            (SlotStep::CreatePhysical { name }, Err(e)) => {
                tracing::error!("Failed to create physical replication slot '{name}': {e:#}");
            }
            (SlotStep::CreateLogical { name, plugin, .. }, Err(e)) => {
                tracing::error!(
                    "Failed to create logical replication slot '{name}' plugin='{plugin}': {e:#}"
                );
            }
            (SlotStep::AdvancePhysical { name, lsn }, Err(e)) => tracing::error!(
                "Error while advancing replication slot {name} to position '{}': {e:#}",
                patroni_postgres::Lsn(*lsn)
            ),
            (step, Err(e)) => tracing::error!(?step, "replication slot statement failed: {e:#}"),
        }
    }

    /// Advances logical slots `(database, slot, lsn)` in a background task, unless the
    /// previous round still runs (then the next cycle plans again).
    fn advance_in_background(&mut self, advance: Vec<(String, String, u64)>) {
        if advance.is_empty()
            || self
                .slots
                .advancing
                .as_ref()
                .is_some_and(|h| !h.is_finished())
        {
            return;
        }
        self.slots.advancing = Some(tokio::spawn(
            self.act_on_pg().advance_logical_slots(advance),
        ));
    }

    /// Copies the logical slots `names` from the leader: reads their state files over a
    /// PostgreSQL connection, stops this replica, writes them into `pg_replslot` and starts it
    /// again (Patroni's `copy_logical_slots`).
    async fn copy_logical_slots(&mut self, cluster: &Cluster, names: &[String]) {
        let Some(leader) = cluster.leader.as_ref().and_then(|l| l.member.as_ref()) else {
            return;
        };
        let Some(source) = leader.data.conn_url.as_deref().and_then(parse_conn_url) else {
            return;
        };
        let files = match self
            .pg
            .leader_logical_slot_files(&source, names, self.server_version())
            .await
        {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(
                    "Failed to copy logical slots from the {} via postgresql connection: {e:#}",
                    leader.name
                );
                return;
            }
        };
        let files: Vec<_> = files
            .into_iter()
            .filter(|f| {
                let kind = SlotKind::Logical {
                    database: f.database.clone(),
                    plugin: f.plugin.clone(),
                };
                let fits = self.slots.desired.get(&f.name).is_some_and(|w| w.kind == kind);
                if !fits {
                    tracing::warn!(
                        "Will not copy the logical slot \"{}\" due to the configuration mismatch: slot on the primary is in database {} with plugin {}",
                        f.name, f.database, f.plugin
                    );
                }
                fits
            })
            .collect();
        if files.is_empty() {
            return;
        }
        let copied: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        tracing::info!("Copying logical slots {copied:?} from the primary");
        if let Some(h) = self.slots.advancing.take() {
            h.abort();
        }
        if let Err(e) = self.stop(StopMode::Fast).await {
            tracing::error!("failed to stop postgres to copy logical slots: {e:#}");
            return;
        }
        if let Err(e) = self.act_on_pg().install_logical_slots(&files).await {
            tracing::error!("failed to write the logical slots: {e:#}");
        }
        let upstream = self.upstream.clone();
        let started = self.start(&StartRole::Replica { upstream }, None).await;
        self.state_override = None;
        if let Err(e) = started {
            tracing::error!("failed to start postgres after copying logical slots: {e:#}");
        }
    }
}
