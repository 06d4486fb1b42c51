//! Observing the local Postgres for the core: what the data directory holds (`pg_controldata`),
//! whether our postmaster runs or crashed, and what the server reports (`PgClient::status`).
//!
//! Observation never fails: what cannot be read shows as `Inaccessible`, an unknown control
//! state, or a server that is still `Starting`.

use patroni_core::Tick;
use patroni_core::ha::{
    ControlState, DataDirectory, LocalPostgres, PgRole, PgServer, PrimaryState, ReplicaState,
    Stopped,
};
use patroni_dcs::Dcs;
use patroni_postgres::DataDirState;

use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

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
        let (sysid, control, pg_rewind_usable) = match self.pg.controldata().await {
            Ok(cd) => (
                cd.system_identifier()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                ControlState::from_controldata(
                    cd.get("Database cluster state").unwrap_or_default(),
                ),
                cd.rewind_possible(),
            ),
            Err(e) => {
                tracing::warn!("failed to {e:#}");
                (String::new(), ControlState::Unknown, false)
            }
        };
        let server = if self.pg.is_running() {
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
        self.server_facts = (st.postmaster_start_time.clone(), st.server_version);
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
            PgServer::Primary(PrimaryState {
                wal_lsn: st.flush_lsn.map_or(0, |l| l.0),
                timeline: u64::from(st.timeline),
            })
        }
    }
}
