//! An in-memory [`PostgresCtl`] for tests of the HA loop: no processes, no files.
//!
//! Every member's fake server lives in one shared [`FakeWorld`], keyed by the host of its
//! `conn_url`, so a clone copies the source's system identifier and timeline, and a test can
//! crash a server or check that two primaries never run at once. All members report the same
//! WAL position, so nobody lags.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use patroni_core::ha::PgRole;
use patroni_core::slots::{ExistingSlot, SlotKind, SlotStep};
use patroni_postgres::{
    ControlData, DataDirState, DropOutcome, HistoryLine, LogicalSlotFile, Lsn, RecoveryConf,
    ServerParameters, ServerStatus, StopMode, UpstreamAddress,
};

use super::pgctl::PostgresCtl;

/// The WAL position every fake server reports.
const FAKE_LSN: u64 = 0x0300_0000;
/// First fake system identifier; each bootstrap takes the next one.
const FIRST_SYSID: u64 = 7_000_000_000_000_000_001;

/// The fake servers of one test, by host.
#[derive(Debug, Clone, Default)]
pub struct FakeWorld {
    inner: Arc<Mutex<WorldState>>,
}

#[derive(Debug, Default)]
struct WorldState {
    servers: BTreeMap<String, FakeServer>,
    bootstraps: u64,
    /// Status queries so far, by host.
    status_queries: BTreeMap<String, u64>,
}

/// One member's data directory and server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeServer {
    /// The cluster in the data directory; `None` when it is empty.
    pub data: Option<FakeData>,
    /// The role it runs in; `None` when stopped.
    pub running: Option<PgRole>,
    /// It exited by itself and the agent has not noticed yet.
    pub crashed: bool,
    /// `standby.signal` exists.
    pub standby_signal: bool,
    /// Replication slots.
    pub slots: Vec<ExistingSlot>,
}

/// A fake database cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeData {
    /// System identifier.
    pub sysid: u64,
    /// Current timeline.
    pub timeline: u32,
    /// `Database cluster state` while stopped.
    pub stopped_state: &'static str,
}

/// A member's handle on its fake server.
#[derive(Debug, Clone)]
pub struct FakePostgres {
    world: FakeWorld,
    host: String,
    dir: PathBuf,
}

// === impl FakeWorld ===

impl FakeWorld {
    /// No servers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle of the member whose `conn_url` host is `host`.
    pub fn member(&self, host: &str) -> FakePostgres {
        self.lock().servers.entry(host.to_owned()).or_default();
        FakePostgres {
            world: self.clone(),
            host: host.to_owned(),
            dir: PathBuf::from("/nonexistent/fake").join(host),
        }
    }

    /// A copy of every server, by host.
    pub fn servers(&self) -> BTreeMap<String, FakeServer> {
        self.lock().servers.clone()
    }

    /// The hosts running as primary.
    pub fn primaries(&self) -> Vec<String> {
        self.lock()
            .servers
            .iter()
            .filter(|(_, s)| s.running == Some(PgRole::Primary))
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// How many status queries `host`'s agent has made so far.
    pub fn status_queries(&self, host: &str) -> u64 {
        self.lock().status_queries.get(host).copied().unwrap_or(0)
    }

    /// Kills `host`'s postmaster (no shutdown checkpoint).
    pub fn crash(&self, host: &str) {
        if let Some(s) = self.lock().servers.get_mut(host)
            && let Some(role) = s.running.take()
        {
            s.crashed = true;
            if let Some(d) = &mut s.data {
                d.stopped_state = match role {
                    PgRole::Primary => "in production",
                    PgRole::Replica => "in archive recovery",
                };
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, WorldState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl FakePostgres ===

impl FakePostgres {
    fn with<T>(&self, f: impl FnOnce(&mut FakeServer) -> T) -> T {
        let mut world = self.world.lock();
        f(world.servers.entry(self.host.clone()).or_default())
    }
}

impl PostgresCtl for FakePostgres {
    fn adopt(&mut self) -> bool {
        self.with(|s| s.running.is_some())
    }

    fn take_crash(&mut self) -> bool {
        self.with(|s| std::mem::take(&mut s.crashed))
    }

    fn is_running(&mut self) -> bool {
        self.with(|s| s.running.is_some())
    }

    fn postmaster_pid(&self) -> Option<u32> {
        // No process to fence: the agent-loop tests run no fence.
        None
    }

    fn data_dir_state(&self) -> anyhow::Result<DataDirState> {
        Ok(self.with(|s| match s.data {
            Some(_) => DataDirState::Initialized { major_version: 15 },
            None => DataDirState::Empty,
        }))
    }

    async fn controldata(&self) -> anyhow::Result<ControlData> {
        let (data, running) = self.with(|s| (s.data.clone(), s.running));
        let data = data.ok_or_else(|| anyhow::anyhow!("no data directory"))?;
        let state = match running {
            Some(PgRole::Primary) => "in production",
            Some(PgRole::Replica) => "in archive recovery",
            None => data.stopped_state,
        };
        Ok(ControlData::parse(&format!(
            "Database system identifier:           {}\n\
             Database cluster state:               {state}\n\
             Latest checkpoint location:           0/3000028\n\
             Latest checkpoint's TimeLineID:       {}\n\
             wal_log_hints setting:                on\n",
            data.sysid, data.timeline
        )))
    }

    async fn status(&self) -> Option<ServerStatus> {
        *self
            .world
            .lock()
            .status_queries
            .entry(self.host.clone())
            .or_default() += 1;
        let (data, running) = self.with(|s| (s.data.clone(), s.running));
        let timeline = data?.timeline;
        Some(match running? {
            PgRole::Primary => ServerStatus {
                in_recovery: false,
                flush_lsn: Some(Lsn(FAKE_LSN)),
                receive_lsn: None,
                replay_lsn: None,
                timeline,
                replay_paused: false,
                wal_receiver: None,
                postmaster_start_time: None,
                server_version: Some(150_000),
                pending_restart: Vec::new(),
                synchronous_standby_names: String::new(),
                synchronous_commit: "on".into(),
                wal_senders: Vec::new(),
            },
            PgRole::Replica => ServerStatus {
                in_recovery: true,
                flush_lsn: None,
                receive_lsn: Some(Lsn(FAKE_LSN)),
                replay_lsn: Some(Lsn(FAKE_LSN)),
                timeline,
                replay_paused: false,
                wal_receiver: Some("streaming".into()),
                postmaster_start_time: None,
                server_version: Some(150_000),
                pending_restart: Vec::new(),
                synchronous_standby_names: String::new(),
                synchronous_commit: "on".into(),
                wal_senders: Vec::new(),
            },
        })
    }

    async fn bootstrap(&mut self, _: &ServerParameters, _: Duration) -> anyhow::Result<()> {
        let mut world = self.world.lock();
        let sysid = FIRST_SYSID + world.bootstraps;
        world.bootstraps += 1;
        let s = world.servers.entry(self.host.clone()).or_default();
        anyhow::ensure!(s.data.is_none(), "initdb over existing data");
        s.data = Some(FakeData {
            sysid,
            timeline: 1,
            stopped_state: "shut down",
        });
        s.running = Some(PgRole::Primary);
        s.standby_signal = false;
        Ok(())
    }

    async fn clone_from(
        &mut self,
        source: Option<&UpstreamAddress>,
        _methods: &[&str],
    ) -> anyhow::Result<String> {
        let source = source.ok_or_else(|| anyhow::anyhow!("no source to clone from"))?;
        let mut world = self.world.lock();
        let data = world
            .servers
            .get(&source.host)
            .filter(|s| s.running.is_some())
            .and_then(|s| s.data.clone())
            .ok_or_else(|| anyhow::anyhow!("{} does not answer", source.host))?;
        let s = world.servers.entry(self.host.clone()).or_default();
        anyhow::ensure!(s.data.is_none(), "clone over existing data");
        s.data = Some(FakeData {
            stopped_state: "in archive recovery",
            ..data
        });
        s.standby_signal = true;
        Ok("basebackup".into())
    }

    async fn start(
        &mut self,
        _: &ServerParameters,
        recovery: Option<&RecoveryConf>,
        _: Duration,
    ) -> anyhow::Result<()> {
        self.with(|s| {
            anyhow::ensure!(s.data.is_some(), "no data directory");
            anyhow::ensure!(s.running.is_none(), "already running");
            s.running = Some(if recovery.is_some() {
                PgRole::Replica
            } else {
                PgRole::Primary
            });
            s.standby_signal = recovery.is_some();
            Ok(())
        })
    }

    async fn stop(&mut self, _: StopMode) -> anyhow::Result<()> {
        self.with(|s| {
            if let (Some(role), Some(d)) = (s.running.take(), &mut s.data) {
                d.stopped_state = match role {
                    PgRole::Primary => "shut down",
                    PgRole::Replica => "shut down in recovery",
                };
            }
        });
        Ok(())
    }

    async fn promote(&mut self, _: Duration) -> anyhow::Result<()> {
        self.with(|s| {
            anyhow::ensure!(s.running == Some(PgRole::Replica), "not a running standby");
            s.running = Some(PgRole::Primary);
            s.standby_signal = false;
            if let Some(d) = &mut s.data {
                d.timeline += 1;
            }
            Ok(())
        })
    }

    async fn checkpoint(&self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn nudge_wal(&self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn timeline_history(&self, _timeline: u32) -> anyhow::Result<Vec<HistoryLine>> {
        Ok(Vec::new())
    }

    async fn follow(&mut self, _: &ServerParameters, _: &RecoveryConf) -> anyhow::Result<()> {
        self.with(|s| {
            anyhow::ensure!(s.running.is_some(), "not running");
            Ok(())
        })
    }

    async fn rewind_from(&mut self, source: &UpstreamAddress) -> anyhow::Result<()> {
        let mut world = self.world.lock();
        let timeline = world
            .servers
            .get(&source.host)
            .and_then(|s| s.data.as_ref())
            .map(|d| d.timeline)
            .ok_or_else(|| anyhow::anyhow!("{} has no data", source.host))?;
        let s = world.servers.entry(self.host.clone()).or_default();
        if let Some(d) = &mut s.data {
            d.timeline = timeline;
            d.stopped_state = "in archive recovery";
        }
        Ok(())
    }

    async fn leader_checkpointed(&self, _: &UpstreamAddress) -> anyhow::Result<()> {
        Ok(())
    }

    async fn leader_timeline(&self, source: &UpstreamAddress) -> anyhow::Result<Option<u64>> {
        let world = self.world.lock();
        let server = world
            .servers
            .get(&source.host)
            .ok_or_else(|| anyhow::anyhow!("{} is unknown", source.host))?;
        Ok((server.running == Some(PgRole::Primary))
            .then(|| server.data.as_ref().map(|d| u64::from(d.timeline)))
            .flatten())
    }

    async fn leader_timeline_history(
        &self,
        _: &UpstreamAddress,
        _timeline: u32,
    ) -> anyhow::Result<Vec<HistoryLine>> {
        Ok(Vec::new())
    }

    async fn recover_crash(&mut self) -> anyhow::Result<()> {
        self.with(|s| {
            anyhow::ensure!(s.running.is_none(), "running");
            if let Some(d) = &mut s.data {
                d.stopped_state = "shut down";
            }
            s.standby_signal = false;
            Ok(())
        })
    }

    async fn checkpoint_end(&self, _: u32, _: u64) -> Option<u64> {
        None
    }

    async fn remove_data(&mut self) -> anyhow::Result<()> {
        self.with(|s| s.data = None);
        Ok(())
    }

    async fn move_aside(&mut self) -> anyhow::Result<()> {
        self.with(|s| s.data = None);
        Ok(())
    }

    async fn slot_states(&self, _: u32) -> anyhow::Result<Vec<ExistingSlot>> {
        self.with(|s| {
            anyhow::ensure!(s.running.is_some(), "not running");
            Ok(s.slots.clone())
        })
    }

    async fn slot_step(&self, step: &SlotStep) -> anyhow::Result<Option<DropOutcome>> {
        self.with(|s| {
            anyhow::ensure!(s.running.is_some(), "not running");
            let slot = |name: &str, kind| ExistingSlot {
                name: name.to_owned(),
                kind,
                active: false,
                xmin: None,
                catalog_xmin: None,
                restart_lsn: Some(FAKE_LSN),
                confirmed_flush_lsn: None,
                wal_status: Some("reserved".into()),
                failover: false,
            };
            match step {
                SlotStep::Drop { name, .. } => {
                    let before = s.slots.len();
                    s.slots.retain(|x| &x.name != name);
                    return Ok(Some(if s.slots.len() < before {
                        DropOutcome::Dropped
                    } else {
                        DropOutcome::Missing
                    }));
                }
                SlotStep::CreatePhysical { name } => s.slots.push(slot(name, SlotKind::Physical)),
                SlotStep::CreateLogical {
                    name,
                    database,
                    plugin,
                } => {
                    anyhow::ensure!(s.running == Some(PgRole::Primary), "in recovery");
                    s.slots.push(slot(
                        name,
                        SlotKind::Logical {
                            database: database.clone(),
                            plugin: plugin.clone(),
                        },
                    ));
                }
                SlotStep::AdvancePhysical { .. } | SlotStep::AdvanceLogical { .. } => {}
            }
            Ok(None)
        })
    }

    #[allow(clippy::manual_async_fn)] // The trait needs a `'static` future.
    fn advance_logical_slots(
        &self,
        _: Vec<(String, String, u64)>,
    ) -> impl Future<Output = ()> + Send + 'static {
        async {}
    }

    async fn leader_logical_slot_files(
        &self,
        _: &UpstreamAddress,
        _: &[String],
        _: u32,
    ) -> anyhow::Result<Vec<LogicalSlotFile>> {
        anyhow::bail!("the fake copies no logical slots")
    }

    async fn install_logical_slots(&mut self, _: &[LogicalSlotFile]) -> anyhow::Result<()> {
        anyhow::bail!("the fake copies no logical slots")
    }

    async fn reconfigure(
        &mut self,
        _: &ServerParameters,
        _: Option<&RecoveryConf>,
    ) -> anyhow::Result<()> {
        self.with(|s| {
            anyhow::ensure!(s.running.is_some(), "not running");
            Ok(())
        })
    }

    fn set_config(&mut self, _: Arc<patroni_config::Config>) {}

    fn has_standby_signal(&self) -> bool {
        self.with(|s| s.standby_signal)
    }

    fn has_backup_label(&self) -> bool {
        false
    }

    fn config_dir(&self) -> &Path {
        &self.dir
    }

    fn pgpass(&self) -> &Path {
        &self.dir
    }
}
