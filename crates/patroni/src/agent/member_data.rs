//! What this member publishes about itself: the member key's data (`touch_member`) and the
//! `GET /patroni` status document, both built by pure functions from the latest observation.
//!
//! Nothing here does I/O; the runtime calls these after every cycle.

use std::collections::BTreeMap;

use patroni_api::{NodeStatus, PatroniInfo, Xlog};
use patroni_config::{Config, Tags};
use patroni_core::ha::{LocalPostgres, PgRole, PgServer, SynchronousMode};
use patroni_core::{MemberData, Role};
use serde_json::Value;

/// The Patroni version this agent advertises in its member key and status document.
///
/// Python Patroni peers and `patronictl` gate behaviour on the dotted version of other
/// members (e.g. which keys they understand), so we claim the Patroni release whose
/// behaviour patroni-rs follows rather than our own crate version.
pub const ADVERTISED_PATRONI_VERSION: &str = "4.1.5";

/// Who this member is, as it publishes itself. Fixed for the agent's lifetime.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Cluster name.
    pub scope: String,
    /// Member name.
    pub name: String,
    /// `postgres://<postgresql.connect_address>/<database>`.
    pub conn_url: String,
    /// `http(s)://<restapi.connect_address>/patroni` (`https` when `restapi.certfile` is set).
    pub api_url: String,
    /// Configured tags as Patroni publishes them (only the set ones).
    pub tags: BTreeMap<String, Value>,
}

/// Patroni's PostgreSQL state strings, as the runtime last saw or set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgState {
    /// Running and answering.
    Running,
    /// A postmaster runs but does not answer yet.
    Starting,
    /// Not running, stopped by the agent or never started.
    Stopped,
    /// Exited without being asked to.
    Crashed,
    /// A base backup is being taken into the empty data directory.
    CreatingReplica,
    /// `initdb` and the post-bootstrap work run.
    InitializingNewCluster,
    /// A custom bootstrap method (`bootstrap.method`) runs.
    RunningCustomBootstrap,
    /// `pg_rewind` runs.
    Rewinding,
    /// A requested restart runs.
    Restarting,
    /// The data directory is empty and nothing happens yet.
    Uninitialized,
}

// === impl Identity ===

impl Identity {
    /// From the local configuration.
    pub fn from_config(config: &Config) -> Self {
        let pg = &config.postgresql;
        Self {
            scope: config.scope.clone(),
            name: config.name.clone(),
            conn_url: format!(
                "postgres://{}:{}/{}",
                pg.connect_address.host, pg.connect_address.port, pg.database
            ),
            api_url: format!(
                "{}://{}:{}/patroni",
                if config.restapi.certfile.is_some() {
                    "https"
                } else {
                    "http"
                },
                config.restapi.connect_address.host,
                config.restapi.connect_address.port
            ),
            tags: tags_json(&config.tags),
        }
    }
}

// === impl PgState ===

impl PgState {
    /// The string Patroni uses.
    pub fn as_str(self) -> &'static str {
        match self {
            PgState::Running => "running",
            PgState::Starting => "starting",
            PgState::Stopped => "stopped",
            PgState::Crashed => "crashed",
            PgState::CreatingReplica => "creating replica",
            PgState::InitializingNewCluster => "initializing new cluster",
            PgState::RunningCustomBootstrap => "running custom bootstrap script",
            PgState::Rewinding => "rewinding",
            PgState::Restarting => "restarting",
            PgState::Uninitialized => "stopped",
        }
    }

    /// The state an observation shows when no long action runs.
    pub fn observed(local: &LocalPostgres) -> Self {
        match local.server() {
            None => PgState::Uninitialized,
            Some(PgServer::Stopped(s)) if s.crashed_as.is_some() => PgState::Crashed,
            Some(PgServer::Stopped(_)) => PgState::Stopped,
            Some(PgServer::Starting { .. }) => PgState::Starting,
            Some(PgServer::Primary(_) | PgServer::Replica(_)) => PgState::Running,
        }
    }
}

/// The configured tags as Patroni publishes them: custom tags always, the others only when set.
pub fn tags_json(tags: &Tags) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = tags.custom.clone();
    if let Some(v) = tags.nofailover {
        out.insert("nofailover".into(), v.into());
    }
    if let Some(v) = tags.failover_priority {
        out.insert("failover_priority".into(), v.into());
    }
    if tags.clonefrom {
        out.insert("clonefrom".into(), true.into());
    }
    if tags.noloadbalance {
        out.insert("noloadbalance".into(), true.into());
    }
    if let Some(v) = &tags.replicatefrom {
        out.insert("replicatefrom".into(), v.clone().into());
    }
    if let Some(v) = tags.nosync {
        out.insert("nosync".into(), v.into());
    }
    if let Some(v) = tags.sync_priority {
        out.insert("sync_priority".into(), v.into());
    }
    if tags.nostream {
        out.insert("nostream".into(), true.into());
    }
    out
}

/// The role this member reports: from the running server, else what the data directory says.
pub fn role_of(local: &LocalPostgres, demoted: bool) -> Role {
    match local.server() {
        None => Role::Uninitialized,
        Some(PgServer::Primary(_)) => Role::Primary,
        Some(PgServer::Replica(_)) => Role::Replica,
        Some(PgServer::Starting { role, .. }) => match role {
            PgRole::Primary => Role::Primary,
            PgRole::Replica => Role::Replica,
        },
        Some(PgServer::Stopped(_)) if demoted => Role::Demoted,
        Some(PgServer::Stopped(s)) if s.recovery_signal => Role::Replica,
        Some(PgServer::Stopped(_)) => Role::Demoted,
    }
}

/// The member key's data for this cycle.
pub fn member_data(
    id: &Identity,
    local: &LocalPostgres,
    state: PgState,
    wal_receiver: Option<&str>,
) -> MemberData {
    let mut data = MemberData {
        conn_url: Some(id.conn_url.clone()),
        api_url: Some(id.api_url.clone()),
        state: Some(state.as_str().to_owned()),
        role: Some(role_of(local, false).as_str().to_owned()),
        version: Some(ADVERTISED_PATRONI_VERSION.to_owned()),
        tags: (!id.tags.is_empty()).then(|| id.tags.clone()),
        ..Default::default()
    };
    match local.server() {
        Some(PgServer::Primary(p)) => {
            data.xlog_location = Some(p.wal_lsn);
            data.timeline = Some(p.timeline);
        }
        Some(PgServer::Replica(r)) => {
            data.xlog_location = Some(r.wal_position());
            data.replay_lsn = Some(r.replay_lsn);
            data.receive_lsn = r.receive_lsn;
            data.timeline = r.timeline;
            data.replication_state = Some(
                if r.streaming {
                    "streaming"
                } else {
                    wal_receiver.unwrap_or("in archive recovery")
                }
                .to_owned(),
            );
        }
        _ => {}
    }
    data
}

/// Inputs of [`node_status`] beyond the observation.
#[derive(Debug, Clone, Default)]
pub struct StatusExtras {
    /// The cluster is paused.
    pub paused: bool,
    /// Nobody holds the lock, or the DCS is unreachable.
    pub cluster_unlocked: bool,
    /// Unix seconds of the last successful DCS read.
    pub dcs_last_seen: u64,
    /// The data directory's system identifier.
    pub sysid: Option<String>,
    /// Synchronous replication in effect (`Off` in a standby cluster, as Patroni's
    /// `global_config.is_synchronous_mode`).
    pub synchronous_mode: SynchronousMode,
    /// `/sync` (with a leader) lists this member.
    pub listed_in_sync: bool,
}

/// The `GET /patroni` document for this observation.
pub fn node_status(
    id: &Identity,
    local: &LocalPostgres,
    state: PgState,
    extras: &StatusExtras,
) -> NodeStatus {
    let info = PatroniInfo {
        version: ADVERTISED_PATRONI_VERSION.to_owned(),
        scope: id.scope.clone(),
        name: id.name.clone(),
    };
    let mut status = NodeStatus::minimal(state.as_str(), role_of(local, false), info);
    status.tags = id.tags.clone();
    status.pause = extras.paused;
    status.cluster_unlocked = extras.cluster_unlocked;
    status.dcs_last_seen = extras.dcs_last_seen;
    status.database_system_identifier = extras.sysid.clone();
    match local.server() {
        Some(PgServer::Primary(p)) => {
            status.xlog = Some(Xlog::Primary {
                location: p.wal_lsn,
            });
            status.timeline = Some(p.timeline);
        }
        Some(PgServer::Replica(r)) => {
            // Patroni's `get_postgresql_status`: a running replica `/sync` lists is a
            // synchronous (or quorum) standby; health checks (`GET /sync`) and patronictl
            // read this flag.
            if extras.listed_in_sync {
                match extras.synchronous_mode {
                    SynchronousMode::On => status.sync_standby = true,
                    SynchronousMode::Quorum => status.quorum_standby = true,
                    SynchronousMode::Off => {}
                }
            }
            status.xlog = Some(Xlog::Replica {
                received_location: Some(r.receive_lsn.unwrap_or(r.replay_lsn)),
                replayed_location: Some(r.replay_lsn),
                replayed_timestamp: None,
                paused: false,
            });
            status.timeline = r.timeline;
            status.replication_state = Some(
                if r.streaming {
                    "streaming"
                } else {
                    "in archive recovery"
                }
                .to_owned(),
            );
        }
        _ => {}
    }
    status
}

#[cfg(test)]
mod tests {
    use patroni_core::ha::{ControlState, DataDirectory, PrimaryState, ReplicaState, Stopped};

    use super::*;

    fn id() -> Identity {
        Identity {
            scope: "demo".into(),
            name: "pg-0".into(),
            conn_url: "postgres://10.0.0.1:5432/postgres".into(),
            api_url: "http://10.0.0.1:8008/patroni".into(),
            tags: BTreeMap::new(),
        }
    }

    fn data(server: PgServer) -> LocalPostgres {
        LocalPostgres::Data(DataDirectory {
            sysid: "7000000000000000001".into(),
            pg_rewind_usable: false,
            server,
        })
    }

    /// A primary publishes its flush position and timeline, with the advertised version.
    #[test]
    fn primary_member_data_carries_position_and_timeline() {
        let local = data(PgServer::Primary(PrimaryState {
            wal_lsn: 1234,
            timeline: 2,
            ..Default::default()
        }));
        let d = member_data(&id(), &local, PgState::Running, None);
        assert_eq!(d.role.as_deref(), Some("primary"));
        assert_eq!(d.state.as_deref(), Some("running"));
        assert_eq!(d.xlog_location, Some(1234));
        assert_eq!(d.timeline, Some(2));
        assert_eq!(d.version.as_deref(), Some(ADVERTISED_PATRONI_VERSION));
        assert_eq!(d.api_url.as_deref(), Some("http://10.0.0.1:8008/patroni"));
        assert!(d.replication_state.is_none());
    }

    /// A streaming replica publishes the furthest of received and replayed WAL and its state.
    #[test]
    fn replica_member_data_carries_receive_and_replay() {
        let local = data(PgServer::Replica(ReplicaState {
            upstream: None,
            receive_lsn: Some(900),
            replay_lsn: 800,
            timeline: Some(1),
            streaming: true,
        }));
        let d = member_data(&id(), &local, PgState::Running, Some("streaming"));
        assert_eq!(d.role.as_deref(), Some("replica"));
        assert_eq!(d.xlog_location, Some(900));
        assert_eq!(d.replay_lsn, Some(800));
        assert_eq!(d.receive_lsn, Some(900));
        assert_eq!(d.replication_state.as_deref(), Some("streaming"));
    }

    /// An empty data directory is an uninitialized member without positions.
    #[test]
    fn empty_member_is_uninitialized() {
        let d = member_data(&id(), &LocalPostgres::Empty, PgState::CreatingReplica, None);
        assert_eq!(d.role.as_deref(), Some("uninitialized"));
        assert_eq!(d.state.as_deref(), Some("creating replica"));
        assert_eq!(d.xlog_location, None);
    }

    /// A postmaster that exited by itself shows as crashed.
    #[test]
    fn crashed_server_is_reported_crashed() {
        let local = data(PgServer::Stopped(Stopped {
            control: ControlState::InProduction,
            crashed_as: Some(PgRole::Primary),
            recovery_signal: false,
            restored_from_backup: false,
        }));
        assert_eq!(PgState::observed(&local), PgState::Crashed);
        let status = node_status(&id(), &local, PgState::Crashed, &StatusExtras::default());
        assert_eq!(status.state, "crashed");
        assert!(status.xlog.is_none());
    }

    /// A running replica that `/sync` lists is a `sync_standby` (a `quorum_standby` in quorum
    /// mode) in its status document, as in Patroni's; not with synchronous mode off, nor when
    /// not listed, nor on a primary.
    #[test]
    fn replica_listed_in_sync_is_a_synchronous_standby() {
        let replica = data(PgServer::Replica(ReplicaState {
            upstream: None,
            receive_lsn: Some(900),
            replay_lsn: 800,
            timeline: Some(1),
            streaming: true,
        }));
        let primary = data(PgServer::Primary(PrimaryState::default()));
        let status = |local: &LocalPostgres, mode, listed_in_sync| {
            let extras = StatusExtras {
                synchronous_mode: mode,
                listed_in_sync,
                ..Default::default()
            };
            let s = node_status(&id(), local, PgState::Running, &extras);
            (s.sync_standby, s.quorum_standby)
        };
        assert_eq!(status(&replica, SynchronousMode::On, true), (true, false));
        assert_eq!(
            status(&replica, SynchronousMode::Quorum, true),
            (false, true)
        );
        assert_eq!(status(&replica, SynchronousMode::Off, true), (false, false));
        assert_eq!(status(&replica, SynchronousMode::On, false), (false, false));
        assert_eq!(status(&primary, SynchronousMode::On, true), (false, false));
    }

    /// Only set tags are published, custom ones always.
    #[test]
    fn tags_publish_only_what_is_set() {
        let tags = Tags {
            nofailover: Some(true),
            custom: BTreeMap::from([("zone".into(), "a".into())]),
            ..Default::default()
        };
        let json = tags_json(&tags);
        assert_eq!(json.get("nofailover"), Some(&Value::Bool(true)));
        assert_eq!(json.get("zone"), Some(&Value::from("a")));
        assert!(!json.contains_key("clonefrom"));
    }
}
