//! The local Postgres as the HA runtime drives it: one narrow trait, [`PostgresCtl`], with the
//! real implementation ([`RealPostgres`], over `patroni_postgres::Postgres`) here and an
//! in-memory fake ([`super::fake_pg::FakePostgres`]) for tests of the loop (STYLE rule 5).
//!
//! Every method re-checks what it needs (`start` refuses a running server, `bootstrap` never
//! runs over data), so a cycle cut short is simply decided again.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use patroni_config::Config;
use patroni_core::slots::{ExistingSlot, SlotStep};
use patroni_postgres::{
    BASEBACKUP_RETRY_DELAY, ControlData, CustomBootstrap, DataDirState, DropOutcome, HistoryLine,
    LogicalSlotFile, PgClient, Postgres, RecoveryConf, RecoverySignal, ReplicaMethod,
    ServerParameters, ServerStatus, StopMode, UpstreamAddress, create_replication_users,
    install_logical_slots, remove_contents_async, run_post_bootstrap, set_superuser_password,
};

/// How often the end of recovery after a custom bootstrap is checked.
const END_OF_RECOVERY_POLL: Duration = Duration::from_secs(1);
/// How long a fast stop may take before it escalates to immediate.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the HA runtime does to the local Postgres.
pub trait PostgresCtl: Send + 'static {
    /// Re-attaches to a postmaster already running on the data directory; whether one runs.
    fn adopt(&mut self) -> bool;
    /// Whether the postmaster exited by itself since the last call (then it is forgotten).
    fn take_crash(&mut self) -> bool;
    /// Whether our postmaster runs.
    fn is_running(&mut self) -> bool;
    /// The pid of our postmaster, while one is known (the lease fence kills it).
    fn postmaster_pid(&self) -> Option<u32>;
    /// What the data directory holds.
    ///
    /// # Errors
    /// It cannot be listed.
    fn data_dir_state(&self) -> anyhow::Result<DataDirState>;
    /// `pg_controldata`.
    fn controldata(&self) -> impl Future<Output = anyhow::Result<ControlData>> + Send;
    /// What the running server reports; `None` when it does not answer.
    fn status(&self) -> impl Future<Output = Option<ServerStatus>> + Send;
    /// `initdb`, `pg_hba`, start as primary, roles, `post_bootstrap`.
    fn bootstrap(
        &mut self,
        params: &ServerParameters,
        start_timeout: Duration,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Creates the data directory of a replica from `source` with the replica creation
    /// `methods` (by name, tried in order); returns the method used.
    fn clone_from(
        &mut self,
        source: Option<&UpstreamAddress>,
        methods: &[&str],
    ) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// Starts as a primary (`recovery: None`) or standby, waiting until ready.
    fn start(
        &mut self,
        params: &ServerParameters,
        recovery: Option<&RecoveryConf>,
        timeout: Duration,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Stops in `mode` (escalating past [`STOP_TIMEOUT`]).
    fn stop(&mut self, mode: StopMode) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Promotes the standby, waiting up to `wait` for the end of recovery.
    fn promote(&mut self, wait: Duration) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// `CHECKPOINT`.
    fn checkpoint(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Writes a little WAL without waiting for standbys (after `synchronous_standby_names`
    /// changed, so standbys report progress).
    fn nudge_wal(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The lines of the history file that starts `timeline` (empty on timeline 1).
    fn timeline_history(
        &self,
        timeline: u32,
    ) -> impl Future<Output = anyhow::Result<Vec<HistoryLine>>> + Send;
    /// Rewrites the recovery configuration of the running standby and reloads.
    fn follow(
        &mut self,
        params: &ServerParameters,
        recovery: &RecoveryConf,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// `pg_rewind` from `source` (the server is stopped).
    fn rewind_from(
        &mut self,
        source: &UpstreamAddress,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Makes sure the leader at `source` checkpointed since its promotion (so `pg_rewind`
    /// from it sees its new timeline): checks, runs `CHECKPOINT` on it when it has not and
    /// the credentials allow, and checks again.
    ///
    /// # Errors
    /// It cannot be reached, is not a primary, or has still not checkpointed (try later).
    fn leader_checkpointed(
        &self,
        source: &UpstreamAddress,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The timeline the leader at `source` writes on now; `None` while it is in recovery.
    ///
    /// # Errors
    /// It cannot be reached or queried.
    fn leader_timeline(
        &self,
        source: &UpstreamAddress,
    ) -> impl Future<Output = anyhow::Result<Option<u64>>> + Send;
    /// The lines of the history file of `timeline` on the primary at `source` (a standby
    /// cluster's remote primary, whose history is in no DCS of ours); empty on timeline 1.
    ///
    /// # Errors
    /// It cannot be reached or the file cannot be read.
    fn leader_timeline_history(
        &self,
        source: &UpstreamAddress,
        timeline: u32,
    ) -> impl Future<Output = anyhow::Result<Vec<HistoryLine>>> + Send;
    /// Crash recovery of the stopped data directory in single-user mode.
    fn recover_crash(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Where the checkpoint record at `lsn` on `timeline` ends (`pg_waldump`), if readable.
    fn checkpoint_end(&self, timeline: u32, lsn: u64) -> impl Future<Output = Option<u64>> + Send;
    /// Empties the data directory.
    fn remove_data(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Renames the data directory to `<dir>.failed`.
    fn move_aside(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Replication slots (see `PgClient::slot_states`).
    fn slot_states(
        &self,
        server_version: u32,
    ) -> impl Future<Output = anyhow::Result<Vec<ExistingSlot>>> + Send;
    /// One slot statement (not `AdvanceLogical`, which runs in the background); a drop
    /// says what happened.
    fn slot_step(
        &self,
        step: &SlotStep,
    ) -> impl Future<Output = anyhow::Result<Option<DropOutcome>>> + Send;
    /// Advances logical slots `(database, slot, lsn)`, without a statement timeout; failures
    /// are logged. Owns what it needs, to run as a background task.
    fn advance_logical_slots(
        &self,
        slots: Vec<(String, String, u64)>,
    ) -> impl Future<Output = ()> + Send + 'static;
    /// The state files of logical slots `names` on the leader at `source`.
    fn leader_logical_slot_files(
        &self,
        source: &UpstreamAddress,
        names: &[String],
        server_version: u32,
    ) -> impl Future<Output = anyhow::Result<Vec<LogicalSlotFile>>> + Send;
    /// Writes logical slot files into the stopped server's `pg_replslot`.
    fn install_logical_slots(
        &mut self,
        files: &[LogicalSlotFile],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Rewrites the configuration files (`recovery`: the standby settings, `None` for a
    /// primary) and reloads the running server.
    fn reconfigure(
        &mut self,
        params: &ServerParameters,
        recovery: Option<&RecoveryConf>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Replaces the local configuration after a reload (replica methods, `pg_hba`).
    fn set_config(&mut self, config: Arc<Config>);
    /// Whether `standby.signal` (or `recovery.signal`) exists: the server would start in
    /// recovery.
    fn has_standby_signal(&self) -> bool;
    /// Whether `backup_label` exists in the data directory.
    fn has_backup_label(&self) -> bool;
    /// Where configuration files live.
    fn config_dir(&self) -> &Path;
    /// The password file replication connections use.
    fn pgpass(&self) -> &Path;
}

/// The real local instance, configured from the local configuration.
pub struct RealPostgres {
    pg: Postgres,
    config: Arc<Config>,
    /// The connection the status query reuses from cycle to cycle (Patroni keeps one too): a
    /// new connection each time costs a backend process start and authentication, twice a
    /// cycle. Dropped when it fails and around a stop or start.
    status_client: std::sync::Mutex<Option<Arc<PgClient>>>,
}

// === impl RealPostgres ===

impl RealPostgres {
    /// Wraps `pg`, whose bootstrap and clone settings come from `config`.
    pub fn new(pg: Postgres, config: Arc<Config>) -> Self {
        Self {
            pg,
            config,
            status_client: std::sync::Mutex::new(None),
        }
    }

    /// The kept status connection, if it is still open.
    fn kept_client(&self) -> Option<Arc<PgClient>> {
        let kept = self
            .status_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// The kept connection, else a new one, kept: the slot work of every idle cycle shares the
    /// status query's connection, as Patroni runs all its queries on one (a connection costs
    /// the server a backend and the agent a SCRAM exchange, ~4096 HMAC rounds).
    async fn shared_client(&self) -> anyhow::Result<Arc<PgClient>> {
        if let Some(client) = self.kept_client() {
            return Ok(client);
        }
        let client = Arc::new(self.pg.connect().await.context("connect")?);
        self.keep_client(Some(Arc::clone(&client)));
        Ok(client)
    }

    /// Keeps `client` for the next status query (`None`: forget the kept one).
    fn keep_client(&self, client: Option<Arc<PgClient>>) {
        *self
            .status_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
    }

    /// The replica creation methods `names` (default: `basebackup`), each custom method
    /// with its `postgresql.<method>` section.
    fn replica_methods(&self, names: &[&str]) -> Vec<ReplicaMethod> {
        let pg = &self.config.postgresql;
        let names: &[&str] = if names.is_empty() {
            &[patroni_postgres::BASEBACKUP]
        } else {
            names
        };
        names
            .iter()
            .copied()
            .map(|n| {
                ReplicaMethod::from_config(n, pg.replica_method_sections.get(n), &pg.basebackup)
            })
            .collect()
    }

    fn write_pg_hba(&self) -> anyhow::Result<()> {
        if let Some(lines) = &self.config.postgresql.pg_hba {
            self.pg
                .spec()
                .layout
                .write_pg_hba(lines)
                .context("write pg_hba.conf")?;
        }
        Ok(())
    }

    /// Waits until the started server left recovery (a custom bootstrap that restored a
    /// backup promotes at the end of its recovery); fails when the postmaster exits.
    async fn wait_for_end_of_recovery(&mut self) -> anyhow::Result<()> {
        let mut logged = false;
        loop {
            anyhow::ensure!(
                self.pg.is_running(),
                "postgres exited before the end of recovery after bootstrap"
            );
            if let Ok(client) = self.pg.connect().await
                && let Ok(status) = client.status().await
                && !status.in_recovery
            {
                return Ok(());
            }
            if !logged {
                tracing::info!("waiting for end of recovery after bootstrap");
                logged = true;
            }
            tokio::time::sleep(END_OF_RECOVERY_POLL).await;
        }
    }

    /// A connection to the leader at `source` with the rewind credentials (else the
    /// superuser's), as Patroni's divergence check and rewind use.
    /// Connects to the local server's `database` as the superuser.
    async fn connect_to_database(&self, database: &str) -> anyhow::Result<PgClient> {
        let params = self.pg.local_superuser().with("dbname", database);
        PgClient::connect(&params)
            .await
            .with_context(|| format!("connect to database {database}"))
    }

    async fn connect_to_leader(&self, source: &UpstreamAddress) -> anyhow::Result<PgClient> {
        let spec = self.pg.spec();
        let user = spec.rewind.as_ref().unwrap_or(&spec.superuser);
        let params = patroni_postgres::ConnParams::for_user(&source.host, source.port, user)
            .with("dbname", spec.database.clone())
            .with("connect_timeout", "3");
        PgClient::connect(&params)
            .await
            .context("connect to the leader")
    }
}

impl PostgresCtl for RealPostgres {
    fn adopt(&mut self) -> bool {
        self.pg.adopt()
    }

    fn take_crash(&mut self) -> bool {
        match self.pg.take_crash() {
            Some(exit) => {
                tracing::warn!(?exit, "postgres exited without being asked to");
                true
            }
            None => false,
        }
    }

    fn is_running(&mut self) -> bool {
        self.pg.is_running()
    }

    fn postmaster_pid(&self) -> Option<u32> {
        self.pg.pid()
    }

    fn data_dir_state(&self) -> anyhow::Result<DataDirState> {
        self.pg.data_dir_state().context("read the data directory")
    }

    async fn controldata(&self) -> anyhow::Result<ControlData> {
        self.pg.controldata().await.context("read pg_controldata")
    }

    async fn status(&self) -> Option<ServerStatus> {
        if let Some(client) = self.kept_client() {
            match client.status().await {
                Ok(status) => return Some(status),
                // A server restarted under it: try once more on a new connection.
                Err(e) => tracing::debug!("status query on the kept connection failed: {e}"),
            }
            self.keep_client(None);
        }
        let client = Arc::new(self.pg.connect().await.ok()?);
        let status = client.status().await.ok()?;
        self.keep_client(Some(client));
        Some(status)
    }

    async fn bootstrap(
        &mut self,
        params: &ServerParameters,
        start_timeout: Duration,
    ) -> anyhow::Result<()> {
        let cfg = Arc::clone(&self.config);
        let layout = self.pg.spec().layout.clone();
        let custom = match &cfg.bootstrap.method_config {
            Some(section) => Some(
                CustomBootstrap::from_section(section, &cfg.scope, layout.data_dir())
                    .with_context(|| format!("bootstrap.{}", cfg.bootstrap.method))?,
            ),
            None => None,
        };
        match &custom {
            // Never initdb instead: the user asked for this cluster's data (issue #12).
            Some(method) => self
                .pg
                .custom_bootstrap(method)
                .await
                .with_context(|| format!("run bootstrap method {}", cfg.bootstrap.method))?,
            None => self
                .pg
                .initdb(&cfg.bootstrap.initdb)
                .await
                .context("run initdb")?,
        }
        if cfg.postgresql.pg_hba.is_some() {
            self.write_pg_hba()?;
        } else if let Some(lines) = &cfg.bootstrap.pg_hba {
            layout.append_pg_hba(lines).context("write pg_hba.conf")?;
        }
        match &custom {
            None => {
                self.pg
                    .start(params, None, start_timeout)
                    .await
                    .context("start the new primary")?;
            }
            Some(method) => {
                let recovery = method.recovery_conf.as_ref().map(|p| RecoveryConf {
                    signal: RecoverySignal::Recovery,
                    params: p.clone(),
                    passfile: None,
                });
                let started = self
                    .pg
                    .start_keeping(
                        params,
                        recovery.as_ref(),
                        start_timeout,
                        method.keep_existing_recovery_conf,
                    )
                    .await;
                // A long restore may not accept connections within the start timeout; it
                // is done when recovery ends, however long that takes (as Patroni).
                if let Err(e) = started
                    && !self.pg.is_running()
                {
                    return Err(anyhow::Error::from(e).context("start the restored cluster"));
                }
                self.wait_for_end_of_recovery().await?;
            }
        }
        let client = self
            .pg
            .connect()
            .await
            .context("connect to the new primary")?;
        let auth = &cfg.postgresql.authentication;
        set_superuser_password(&client, &auth.superuser)
            .await
            .context("set the superuser password")?;
        create_replication_users(
            &client,
            &auth.superuser,
            &auth.replication,
            auth.rewind.as_ref(),
        )
        .await
        .context("create the replication user")?;
        if let Some(script) = &cfg.bootstrap.post_bootstrap {
            run_post_bootstrap(
                &self.pg.spec().programs,
                &layout,
                script,
                &self.pg.local_superuser(),
                &cfg.postgresql.database,
            )
            .await
            .context("run post_bootstrap")?;
        }
        Ok(())
    }

    async fn clone_from(
        &mut self,
        source: Option<&UpstreamAddress>,
        methods: &[&str],
    ) -> anyhow::Result<String> {
        let methods = self.replica_methods(methods);
        self.pg
            .clone_from(
                source.map(|a| (a.host.as_str(), a.port)),
                &methods,
                BASEBACKUP_RETRY_DELAY,
            )
            .await
            .context("clone the replica")
    }

    async fn start(
        &mut self,
        params: &ServerParameters,
        recovery: Option<&RecoveryConf>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.write_pg_hba()?;
        self.keep_client(None);
        self.pg
            .start(params, recovery, timeout)
            .await
            .context("start postgres")?;
        Ok(())
    }

    async fn stop(&mut self, mode: StopMode) -> anyhow::Result<()> {
        self.keep_client(None);
        self.pg
            .stop(mode, Some(STOP_TIMEOUT))
            .await
            .context("stop postgres")?;
        Ok(())
    }

    async fn promote(&mut self, wait: Duration) -> anyhow::Result<()> {
        self.pg.promote(Some(wait)).await.context("promote")
    }

    async fn checkpoint(&self) -> anyhow::Result<()> {
        let client = self.pg.connect().await.context("connect")?;
        client.checkpoint().await.context("checkpoint")
    }

    async fn nudge_wal(&self) -> anyhow::Result<()> {
        let client = self.pg.connect().await.context("connect")?;
        client.nudge_wal().await.context("write WAL")
    }

    async fn timeline_history(&self, timeline: u32) -> anyhow::Result<Vec<HistoryLine>> {
        if timeline <= 1 {
            return Ok(Vec::new());
        }
        let path = patroni_postgres::history_file(self.pg.spec().layout.data_dir(), timeline);
        let text = tokio::fs::read_to_string(&path)
            .await
            .with_context(|| format!("read {}", path.display()))?;
        Ok(patroni_postgres::parse_timeline_history(&text))
    }

    async fn follow(
        &mut self,
        params: &ServerParameters,
        recovery: &RecoveryConf,
    ) -> anyhow::Result<()> {
        self.pg
            .write_config(params, Some(recovery))
            .await
            .context("write the recovery configuration")?;
        self.pg.reload().context("reload postgres")
    }

    async fn rewind_from(&mut self, source: &UpstreamAddress) -> anyhow::Result<()> {
        self.pg
            .rewind_from(
                &source.host,
                source.port,
                &self.config.postgresql.rewind,
                false,
            )
            .await
            .context("run pg_rewind")
    }

    async fn leader_timeline(&self, source: &UpstreamAddress) -> anyhow::Result<Option<u64>> {
        let client = self.connect_to_leader(source).await?;
        Ok(client.primary_timeline().await?.map(u64::from))
    }

    async fn leader_timeline_history(
        &self,
        source: &UpstreamAddress,
        timeline: u32,
    ) -> anyhow::Result<Vec<HistoryLine>> {
        if timeline <= 1 {
            return Ok(Vec::new());
        }
        let client = self.connect_to_leader(source).await?;
        let text = client
            .timeline_history_file(timeline)
            .await?
            .with_context(|| format!("the history file of timeline {timeline} is missing"))?;
        Ok(patroni_postgres::parse_timeline_history(&text))
    }

    async fn leader_checkpointed(&self, source: &UpstreamAddress) -> anyhow::Result<()> {
        let client = self.connect_to_leader(source).await?;
        if client.checkpointed_on_current_timeline().await? {
            return Ok(());
        }
        tracing::info!(leader = %source.host, "running CHECKPOINT on the leader before pg_rewind");
        if let Err(e) = client.checkpoint().await {
            tracing::info!("failed to run CHECKPOINT on the leader: {e:#}");
        }
        anyhow::ensure!(
            client.checkpointed_on_current_timeline().await?,
            "the leader has not run a checkpoint since its promotion yet"
        );
        Ok(())
    }

    async fn recover_crash(&mut self) -> anyhow::Result<()> {
        self.pg
            .single_user_recovery()
            .await
            .context("crash recovery in single-user mode")
    }

    async fn checkpoint_end(&self, timeline: u32, lsn: u64) -> Option<u64> {
        self.pg
            .checkpoint_end(timeline, patroni_postgres::Lsn(lsn))
            .await
            .map(|l| l.0)
    }

    async fn remove_data(&mut self) -> anyhow::Result<()> {
        remove_contents_async(self.pg.spec().layout.data_dir())
            .await
            .context("remove the data directory")
    }

    async fn move_aside(&mut self) -> anyhow::Result<()> {
        let dir = self.pg.spec().layout.data_dir().to_path_buf();
        if !tokio::fs::try_exists(&dir).await.unwrap_or(true) {
            // Nothing to keep (initdb never created it): as Patroni, skip the rename.
            return Ok(());
        }
        let mut aside = dir.clone().into_os_string();
        aside.push(".failed");
        tokio::fs::rename(&dir, &aside)
            .await
            .context("move the data directory aside")
    }

    async fn slot_states(&self, server_version: u32) -> anyhow::Result<Vec<ExistingSlot>> {
        let client = self.shared_client().await?;
        Ok(client.slot_states(server_version).await?)
    }

    async fn slot_step(&self, step: &SlotStep) -> anyhow::Result<Option<DropOutcome>> {
        let client = match step {
            SlotStep::CreateLogical { database, .. }
            | SlotStep::AdvanceLogical { database, .. } => {
                Arc::new(self.connect_to_database(database).await?)
            }
            _ => self.shared_client().await?,
        };
        match step {
            SlotStep::Drop { name, .. } => {
                return Ok(Some(client.drop_slot_unless_active(name).await?));
            }
            SlotStep::CreatePhysical { name } => {
                client.create_physical_slot(name).await?;
            }
            SlotStep::AdvancePhysical { name, lsn }
            | SlotStep::AdvanceLogical { name, lsn, .. } => {
                client.advance_slot(name, *lsn).await?;
            }
            SlotStep::CreateLogical { name, plugin, .. } => {
                client.create_logical_slot(name, plugin).await?;
            }
        }
        Ok(None)
    }

    fn advance_logical_slots(
        &self,
        slots: Vec<(String, String, u64)>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let local = self.pg.local_superuser();
        async move {
            let mut by_database: std::collections::BTreeMap<String, Vec<(String, u64)>> =
                std::collections::BTreeMap::new();
            for (database, name, lsn) in slots {
                by_database.entry(database).or_default().push((name, lsn));
            }
            for (database, slots) in by_database {
                let params = local.clone().with("dbname", database.clone());
                let client = match PgClient::connect(&params).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(
                            "Failed to advance replication slots in database {database}: {e:#}"
                        );
                        continue;
                    }
                };
                if let Err(e) = client.without_statement_timeout().await {
                    tracing::error!(
                        "Failed to advance replication slots in database {database}: {e:#}"
                    );
                    continue;
                }
                for (name, lsn) in slots {
                    if let Err(e) = client.advance_slot(&name, lsn).await {
                        tracing::error!(
                            "Failed to advance logical replication slot '{name}': {:#}",
                            anyhow::Error::from(e)
                        );
                    }
                }
            }
        }
    }

    async fn leader_logical_slot_files(
        &self,
        source: &UpstreamAddress,
        names: &[String],
        server_version: u32,
    ) -> anyhow::Result<Vec<LogicalSlotFile>> {
        let client = self.connect_to_leader(source).await?;
        Ok(client.logical_slot_files(names, server_version).await?)
    }

    async fn install_logical_slots(&mut self, files: &[LogicalSlotFile]) -> anyhow::Result<()> {
        anyhow::ensure!(!self.pg.is_running(), "postgres still runs");
        let data_dir = self.pg.spec().layout.data_dir().to_path_buf();
        let files = files.to_vec();
        tokio::task::spawn_blocking(move || install_logical_slots(&data_dir, &files))
            .await
            .context("write the logical slots")??;
        Ok(())
    }

    async fn reconfigure(
        &mut self,
        params: &ServerParameters,
        recovery: Option<&RecoveryConf>,
    ) -> anyhow::Result<()> {
        self.write_pg_hba()?;
        self.pg
            .write_config(params, recovery)
            .await
            .context("write the configuration")?;
        self.pg.reload().context("reload postgres")
    }

    fn set_config(&mut self, config: Arc<Config>) {
        self.config = config;
    }

    fn has_standby_signal(&self) -> bool {
        self.pg.spec().layout.has_standby_signal()
    }

    fn has_backup_label(&self) -> bool {
        self.pg
            .spec()
            .layout
            .data_dir()
            .join("backup_label")
            .exists()
    }

    fn config_dir(&self) -> &Path {
        self.pg.spec().layout.config_dir()
    }

    fn pgpass(&self) -> &Path {
        self.pg.spec().layout.pgpass()
    }
}
