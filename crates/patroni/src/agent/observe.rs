//! Observing the local Postgres for the core: what the data directory holds (`pg_controldata`),
//! whether our postmaster runs or crashed, and what the server reports (`PgClient::status`).
//!
//! Observation never fails: what cannot be read shows as `Inaccessible`, an unknown control
//! state, or a server that is still `Starting`. Also the memory the race rules read (since when
//! the cluster has had no leader, when the server was last healthy).

use patroni_api::ReplicationRow;
use patroni_core::Tick;
use patroni_core::ha::{
    AgentMemory, ControlState, DataDirectory, DcsView, FailsafeLeader, LocalPostgres, PgRole,
    PgServer, PrimaryState, ReplicaState, SenderSyncState, Stopped, WalSender,
};
use patroni_dcs::Dcs;
use patroni_postgres::{DataDirState, ReplicationStat, ServerStatus};

use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

/// What the last status query said beyond the core's view, for the API and restarts.
#[derive(Debug, Clone, Default)]
pub(super) struct ServerFacts {
    /// `postmaster_start_time`.
    pub start_time: Option<String>,
    /// `server_version` (`150004`).
    pub version: Option<u32>,
    /// Every WAL sender, as `GET /patroni` lists them under `replication`.
    pub replication: Vec<ReplicationRow>,
}

/// What `pg_controldata` said about the data directory of one running postmaster.
#[derive(Debug, Clone)]
pub(super) struct ControlFacts {
    /// The postmaster it was read under.
    postmaster: Option<u32>,
    /// Database system identifier.
    sysid: String,
    /// `wal_log_hints` or data checksums.
    pg_rewind_usable: bool,
}

// === impl Runtime (observe) ===

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// The local data directory and server, as the core sees them.
    pub(super) async fn observe(&mut self, now: Tick) -> LocalPostgres {
        if self.pg.take_crash() {
            self.crashed_as = self.last_role.or(Some(PgRole::Replica));
            self.starting_since = None;
        }
        let state = match self.pg.data_dir_state() {
            Ok(s) => s,
            Err(e) => {
                return LocalPostgres::Inaccessible {
                    error: format!("{e:#}"),
                };
            }
        };
        match state {
            DataDirState::Missing | DataDirState::Empty => {
                self.wal_receiver = None;
                return LocalPostgres::Empty;
            }
            DataDirState::Unrecognized => {
                return LocalPostgres::Inaccessible {
                    error: "the data directory holds something without PG_VERSION".into(),
                };
            }
            DataDirState::Initialized { .. } => {}
        }
        let running = self.pg.is_running();
        let postmaster = running.then(|| self.pg.postmaster_pid()).flatten();
        let cached = self
            .control_facts
            .clone()
            .filter(|f| postmaster.is_some() && f.postmaster == postmaster);
        let (sysid, control, pg_rewind_usable) = match cached {
            // A running postmaster's system identifier and rewind prerequisites
            // (`wal_log_hints` needs a restart, checksums an offline `pg_checksums`) do not
            // change: one `pg_controldata` per postmaster, not two per cycle (idle CPU).
            Some(f) => (f.sysid, ControlState::Unknown, f.pg_rewind_usable),
            None => match self.pg.controldata().await {
                Ok(cd) => {
                    let sysid = cd
                        .system_identifier()
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    let pg_rewind_usable = cd.rewind_possible();
                    self.control_facts = postmaster.map(|p| ControlFacts {
                        postmaster: Some(p),
                        sysid: sysid.clone(),
                        pg_rewind_usable,
                    });
                    (
                        sysid,
                        ControlState::from_controldata(
                            cd.get("Database cluster state").unwrap_or_default(),
                        ),
                        pg_rewind_usable,
                    )
                }
                Err(e) => {
                    tracing::warn!("failed to {e:#}");
                    (String::new(), ControlState::Unknown, false)
                }
            },
        };
        let server = if running {
            self.running_server(now).await
        } else {
            self.wal_receiver = None;
            PgServer::Stopped(Stopped {
                control,
                crashed_as: self.crashed_as,
                recovery_signal: self.pg.has_standby_signal(),
                restored_from_backup: self.major_version >= 15 && self.pg.has_backup_label(),
            })
        };
        LocalPostgres::Data(DataDirectory {
            sysid,
            pg_rewind_usable,
            server,
        })
    }

    /// Keeps the race-related and failsafe memory up to date.
    pub(super) fn update_memory_before(
        &mut self,
        dcs: &DcsView,
        local: &LocalPostgres,
        now: Tick,
        memory: &mut AgentMemory,
    ) {
        if let DcsView::Reachable(c) = dcs {
            self.memory.failsafe_topology = c.failsafe.clone();
            if c.is_locked() {
                self.memory.unlocked_since = None;
            } else if self.memory.unlocked_since.is_none() {
                self.memory.unlocked_since = Some(now);
            }
        }
        if matches!(
            local.server(),
            Some(PgServer::Primary(_) | PgServer::Replica(_))
        ) {
            self.memory.last_healthy = Some(now);
        }
        self.memory.failsafe_leader = self.shared.failsafe_call().map(|heard| FailsafeLeader {
            name: heard.call.name,
            conn_url: heard.call.conn_url,
            api_url: heard.call.api_url,
            slots: heard.call.slots,
            heard_at: self.tick_at(heard.at),
        });
        memory.unlocked_since = self.memory.unlocked_since;
        memory.last_healthy = self.memory.last_healthy;
        memory.failsafe_topology = self.memory.failsafe_topology.clone();
        memory.failsafe_leader = self.memory.failsafe_leader.clone();
        self.memory.previous_wal = local.server().map(PgServer::wal_position);
    }

    /// A running postmaster: what it reports, or `Starting` while it does not answer.
    async fn running_server(&mut self, now: Tick) -> PgServer {
        let Some(st) = self.pg.status().await else {
            let role = self.last_role.unwrap_or(PgRole::Replica);
            let since = *self.starting_since.get_or_insert(now);
            return PgServer::Starting { role, since };
        };
        self.starting_since = None;
        self.crashed_as = None;
        self.wal_receiver = st.wal_receiver.clone();
        self.server_facts = ServerFacts {
            start_time: st.postmaster_start_time.clone(),
            version: st.server_version,
            replication: st.wal_senders.iter().map(replication_row).collect(),
        };
        self.note_pending_restart(&st.pending_restart);
        if st.in_recovery {
            self.last_role = Some(PgRole::Replica);
            PgServer::Replica(ReplicaState {
                upstream: self.upstream.clone(),
                receive_lsn: st.receive_lsn.map(|l| l.0),
                replay_lsn: st.replay_lsn.map_or(0, |l| l.0),
                timeline: Some(u64::from(st.timeline)).filter(|t| *t > 0),
                streaming: st.wal_receiver.as_deref() == Some("streaming"),
            })
        } else {
            self.last_role = Some(PgRole::Primary);
            PgServer::Primary(primary_state(&st))
        }
    }
}

/// What a running primary reports, as the core sees it.
pub(super) fn primary_state(st: &ServerStatus) -> PrimaryState {
    PrimaryState {
        wal_lsn: st.flush_lsn.map_or(0, |l| l.0),
        timeline: u64::from(st.timeline),
        wal_senders: st.wal_senders.iter().filter_map(wal_sender).collect(),
        synchronous_standby_names: st.synchronous_standby_names.clone(),
        synchronous_commit: st.synchronous_commit.clone(),
    }
}

/// The core's view of a WAL sender that streams (others do not confirm anything yet).
fn wal_sender(s: &ReplicationStat) -> Option<WalSender> {
    (s.state.as_deref() == Some("streaming")).then(|| WalSender {
        pid: s.pid,
        application_name: s.application_name.clone(),
        sync_state: SenderSyncState::parse(s.sync_state.as_deref().unwrap_or_default()),
        write_lsn: s.write_lsn.map_or(0, |l| l.0),
        flush_lsn: s.flush_lsn.map_or(0, |l| l.0),
        replay_lsn: s.replay_lsn.map_or(0, |l| l.0),
    })
}

/// A WAL sender as `GET /patroni` shows it.
fn replication_row(s: &ReplicationStat) -> ReplicationRow {
    ReplicationRow {
        usename: s.usename.clone(),
        application_name: s.application_name.clone(),
        client_addr: s.client_addr.clone(),
        state: s.state.clone().unwrap_or_default(),
        sync_state: s.sync_state.clone().unwrap_or_default(),
        sync_priority: s.sync_priority.unwrap_or_default(),
    }
}
