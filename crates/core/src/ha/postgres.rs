//! What the agent saw of its local PostgreSQL this cycle.
//!
//! The runtime fills these from the data directory, `pg_controldata`,
//! `postmaster.pid` and a few queries; the decision only reads them. Every
//! LSN is a byte position (`pg_wal_lsn_diff(lsn, '0/0')`), as Patroni
//! publishes it.

use crate::Tick;

/// The local data directory and the server running on it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LocalPostgres {
    /// The data directory is missing or empty: the member bootstraps a new
    /// cluster or clones a replica, and nothing else.
    #[default]
    Empty,
    /// The data directory exists but cannot be read (permissions, I/O error).
    Inaccessible {
        /// What failed, for the status message.
        error: String,
    },
    /// The data directory holds a database cluster.
    Data(DataDirectory),
}

/// A data directory that holds a database cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct DataDirectory {
    /// `Database system identifier` from `pg_controldata`; invalid (not ten
    /// or more digits) when the directory is broken.
    pub sysid: String,
    /// Whether `pg_rewind` could run on this directory: the binary works and
    /// `pg_controldata` shows `wal_log_hints` on or data checksums. Whether it
    /// *may* run is [`HaConfig::use_pg_rewind`](super::HaConfig::use_pg_rewind).
    pub pg_rewind_usable: bool,
    /// The server.
    pub server: PgServer,
}

/// The PostgreSQL server on a data directory.
#[derive(Debug, Clone, PartialEq)]
pub enum PgServer {
    /// No postmaster is running.
    Stopped(Stopped),
    /// A postmaster runs but does not accept connections yet (startup or
    /// crash recovery).
    Starting {
        /// The role it was started in.
        role: PgRole,
        /// When the runtime started it (or first saw it starting).
        since: Tick,
    },
    /// Running and not in recovery.
    Primary(PrimaryState),
    /// Running in recovery (a replica, or a primary being promoted).
    Replica(ReplicaState),
}

/// A data directory without a running server.
#[derive(Debug, Clone, PartialEq)]
pub struct Stopped {
    /// `Database cluster state` from `pg_controldata`.
    pub control: ControlState,
    /// `Some(role)` when the agent saw the server running in `role` and it
    /// stopped without being asked to (Patroni's state `crashed`); `None`
    /// when it was never seen running or the agent stopped it.
    pub crashed_as: Option<PgRole>,
    /// Whether `standby.signal`/`recovery.signal` (or `recovery.conf`)
    /// exists, i.e. the server would start in recovery.
    pub recovery_signal: bool,
    /// Whether `backup_label` exists (PostgreSQL 15+): the data directory is a base backup
    /// that has not finished its recovery, so it looks crashed (`in production`) but must
    /// be started as it is, never recovered in single-user mode.
    pub restored_from_backup: bool,
}

/// `Database cluster state` as `pg_controldata` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlState {
    /// `starting up`.
    StartingUp,
    /// `shut down`: a primary stopped cleanly.
    ShutDown,
    /// `shut down in recovery`: a replica stopped cleanly.
    ShutDownInRecovery,
    /// `shutting down`: stopped while shutting down (unclean).
    ShuttingDown,
    /// `in crash recovery`: stopped during crash recovery (unclean).
    InCrashRecovery,
    /// `in archive recovery`: a replica that did not stop cleanly.
    InArchiveRecovery,
    /// `in production`: a primary that did not stop cleanly.
    InProduction,
    /// Anything else, or `pg_controldata` failed.
    Unknown,
}

/// What a running primary reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrimaryState {
    /// `pg_current_wal_flush_lsn()`.
    pub wal_lsn: u64,
    /// Current timeline.
    pub timeline: u64,
    /// The standbys streaming from it (`pg_stat_replication` rows in state `streaming`), by
    /// `application_name`.
    pub wal_senders: Vec<WalSender>,
    /// `synchronous_standby_names` as the server applies it.
    pub synchronous_standby_names: String,
    /// `synchronous_commit` as the server applies it (which standby position a commit waits
    /// for).
    pub synchronous_commit: String,
}

/// A standby streaming WAL from the primary (a `pg_stat_replication` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSender {
    /// The WAL sender's backend pid.
    pub pid: i32,
    /// The standby's `application_name` (its member name for Patroni standbys).
    pub application_name: String,
    /// Whether its confirmation makes a commit durable.
    pub sync_state: SenderSyncState,
    /// Position the standby wrote.
    pub write_lsn: u64,
    /// Position the standby flushed.
    pub flush_lsn: u64,
    /// Position the standby replayed.
    pub replay_lsn: u64,
}

/// `pg_stat_replication.sync_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderSyncState {
    /// Asynchronous (also any value PostgreSQL may add).
    Async,
    /// Would become synchronous if a synchronous one left.
    Potential,
    /// Synchronous (priority-based `FIRST n`).
    Sync,
    /// A candidate of quorum commit (`ANY n`).
    Quorum,
}

// === impl SenderSyncState ===

impl SenderSyncState {
    /// Reads PostgreSQL's spelling; anything else is `Async`.
    pub fn parse(s: &str) -> Self {
        match s {
            "potential" => Self::Potential,
            "sync" => Self::Sync,
            "quorum" => Self::Quorum,
            _ => Self::Async,
        }
    }
}

/// What a running replica reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaState {
    /// Whom the recovery configuration (`primary_conninfo`) points at, as
    /// the runtime last wrote it; `None` when it streams from nobody.
    pub upstream: Option<Upstream>,
    /// `pg_last_wal_receive_lsn()`, if a WAL receiver ever ran.
    pub receive_lsn: Option<u64>,
    /// `pg_last_wal_replay_lsn()`.
    pub replay_lsn: u64,
    /// The timeline being received (or replayed); `None` when unknown.
    pub timeline: Option<u64>,
    /// Whether the WAL receiver is streaming right now.
    pub streaming: bool,
}

/// The role a server runs (or ran, or starts) in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgRole {
    /// Read-write, not in recovery.
    Primary,
    /// In recovery.
    Replica,
}

/// A member to replicate or clone from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its member name (also the replication slot and `application_name` key).
    pub member: String,
    /// Its `conn_url` (`postgres://host:port/dbname`); empty for a remote primary known only
    /// by its `restore_command`.
    pub conn_url: String,
    /// The remote primary of a standby cluster (`standby_cluster`), not a member of this
    /// cluster: the runtime takes its address, slot (`primary_slot_name`, none when unset),
    /// replica creation methods and archive settings from the `standby_cluster` section.
    pub remote: bool,
}

// === impl LocalPostgres ===

impl LocalPostgres {
    /// The data directory, when it holds a cluster.
    pub fn data(&self) -> Option<&DataDirectory> {
        match self {
            LocalPostgres::Data(d) => Some(d),
            _ => None,
        }
    }

    /// The server, when there is a data directory.
    pub fn server(&self) -> Option<&PgServer> {
        self.data().map(|d| &d.server)
    }

    /// Whether a postmaster runs (starting, primary or replica).
    pub fn is_running(&self) -> bool {
        self.server()
            .is_some_and(|s| !matches!(s, PgServer::Stopped(_)))
    }

    /// Whether it runs as a primary.
    pub fn is_primary(&self) -> bool {
        matches!(self.server(), Some(PgServer::Primary(_)))
    }
}

// === impl PgServer ===

impl PgServer {
    /// This member's WAL position as the leader race compares it: the flush
    /// LSN of a primary, the furthest of received and replayed on a replica,
    /// 0 when not running.
    pub fn wal_position(&self) -> u64 {
        match self {
            PgServer::Primary(p) => p.wal_lsn,
            PgServer::Replica(r) => r.wal_position(),
            PgServer::Starting { .. } | PgServer::Stopped(_) => 0,
        }
    }

    /// The timeline a running server is on; `None` when unknown or stopped.
    pub fn timeline(&self) -> Option<u64> {
        match self {
            PgServer::Primary(p) => Some(p.timeline),
            PgServer::Replica(r) => r.timeline,
            PgServer::Starting { .. } | PgServer::Stopped(_) => None,
        }
    }
}

// === impl Upstream ===

impl Upstream {
    /// The member name Patroni gives a standby cluster's remote primary (it appends a UUID).
    pub const REMOTE_NAME: &'static str = "remote_member";

    /// A member of this cluster.
    pub fn member(member: impl Into<String>, conn_url: impl Into<String>) -> Self {
        Self {
            member: member.into(),
            conn_url: conn_url.into(),
            remote: false,
        }
    }

    /// The remote primary of a standby cluster at `host:port` (`None` when only a
    /// `restore_command` is configured).
    pub fn remote(address: Option<(&str, u16)>) -> Self {
        let conn_url = address.map_or_else(String::new, |(host, port)| {
            if host.contains(':') {
                format!("postgres://[{host}]:{port}/postgres")
            } else {
                format!("postgres://{host}:{port}/postgres")
            }
        });
        Self {
            member: Self::REMOTE_NAME.to_owned(),
            conn_url,
            remote: true,
        }
    }
}

// === impl ReplicaState ===

impl ReplicaState {
    /// The furthest of received and replayed WAL.
    pub fn wal_position(&self) -> u64 {
        self.receive_lsn.unwrap_or(0).max(self.replay_lsn)
    }
}

// === impl ControlState ===

impl ControlState {
    /// Reads `Database cluster state` as `pg_controldata` prints it.
    pub fn from_controldata(state: &str) -> Self {
        match state.trim() {
            "starting up" => ControlState::StartingUp,
            "shut down" => ControlState::ShutDown,
            "shut down in recovery" => ControlState::ShutDownInRecovery,
            "shutting down" => ControlState::ShuttingDown,
            "in crash recovery" => ControlState::InCrashRecovery,
            "in archive recovery" => ControlState::InArchiveRecovery,
            "in production" => ControlState::InProduction,
            _ => ControlState::Unknown,
        }
    }

    /// Whether the directory was last a primary's (clean or not): the
    /// states in which Patroni restarts a crashed lock holder as primary.
    pub fn was_primary(self) -> bool {
        matches!(
            self,
            ControlState::InProduction
                | ControlState::InCrashRecovery
                | ControlState::ShuttingDown
                | ControlState::ShutDown
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every state `pg_controldata` prints maps to its variant; the rest is unknown.
    #[test]
    fn controldata_states_are_recognised() {
        assert_eq!(
            ControlState::from_controldata("shut down in recovery"),
            ControlState::ShutDownInRecovery
        );
        assert_eq!(
            ControlState::from_controldata(" in production\n"),
            ControlState::InProduction
        );
        assert_eq!(
            ControlState::from_controldata("bogus"),
            ControlState::Unknown
        );
        assert!(ControlState::ShutDown.was_primary());
        assert!(!ControlState::ShutDownInRecovery.was_primary());
    }

    /// A replica's position is the furthest of received and replayed WAL.
    #[test]
    fn replica_position_is_the_furthest_of_receive_and_replay() {
        let r = ReplicaState {
            receive_lsn: Some(90),
            replay_lsn: 80,
            ..Default::default()
        };
        assert_eq!(r.wal_position(), 90);
        let r = ReplicaState {
            receive_lsn: None,
            replay_lsn: 80,
            ..Default::default()
        };
        assert_eq!(r.wal_position(), 80);
    }
}
