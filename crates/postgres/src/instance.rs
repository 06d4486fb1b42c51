//! [`Postgres`]: one local PostgreSQL instance as the HA runtime drives it. It ties the pieces
//! of this crate together (layout, programs, postmaster, queries) and owns the running
//! postmaster, so the runtime carries out actions (`start`, `stop`, `promote`, `demote`,
//! `clone`, `rewind`, …) with one call each.
//!
//! # Assumptions
//! One `Postgres` per data directory, used by one task at a time (the HA loop's actor).
//! Every action re-checks the state it needs (running or not, data directory empty or not)
//! instead of trusting what happened before, so a cancelled action is simply retried.

use std::process::ExitStatus;
use std::time::Duration;

use std::path::Path;

use patroni_config::{PgUser, PostgresqlConfig, ToolOption};

use crate::bin::BinDir;
use crate::client::{PgClient, QueryError};
use crate::conninfo::ConnParams;
use crate::controldata::{ControlData, ControlDataError};
use crate::custom_bootstrap::{CustomBootstrap, CustomBootstrapError};
use crate::datadir::{DataDirError, DataDirState};
use crate::files::FileError;
use crate::initdb::{InitdbError, InitdbSpec, initdb};
use crate::launcher::{Launcher, Programs};
use crate::layout::Layout;
use crate::lsn::Lsn;
use crate::params::ServerParameters;
use crate::postmaster::{Postmaster, PostmasterError, StartSpec, StopMode, StopOutcome};
use crate::postmaster_pid::PostmasterStatus;
use crate::recovery::RecoveryConf;
use crate::replica::{CloneError, CloneSpec, ReplicaMethod, create_replica};
use crate::rewind::{RewindError, RewindSpec, rewind};
use crate::tool::{self, ToolError};

/// What is fixed about an instance: who it is, where its files and programs are, and the users
/// the agent connects as.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Member name (`application_name`, slot name).
    pub name: String,
    /// Cluster name.
    pub scope: String,
    /// Programs and launcher.
    pub programs: Programs,
    /// Files.
    pub layout: Layout,
    /// Major version of the binaries.
    pub major_version: u32,
    /// `postgresql.database`.
    pub database: String,
    /// How the agent reaches its own server: `host` (a socket directory or an address) and
    /// `port`; users are added per connection.
    pub local: ConnParams,
    /// `authentication.superuser`.
    pub superuser: PgUser,
    /// `authentication.replication`.
    pub replication: PgUser,
    /// `authentication.rewind` (PostgreSQL 11+), if distinct from the superuser.
    pub rewind: Option<PgUser>,
}

// === impl InstanceSpec ===

impl InstanceSpec {
    /// From the local `postgresql` section. `home` is where the default `pgpass` goes;
    /// `launcher` is empty in production.
    pub fn from_config(
        name: &str,
        scope: &str,
        cfg: &PostgresqlConfig,
        home: &Path,
        major_version: u32,
        launcher: Launcher,
    ) -> Self {
        let bin = BinDir::new(cfg.bin_dir.as_deref()).with_names(cfg.bin_name.clone());
        InstanceSpec {
            name: name.to_owned(),
            scope: scope.to_owned(),
            programs: Programs::new(bin, launcher),
            layout: Layout::from_config(cfg, home),
            major_version,
            database: cfg.database.clone(),
            local: local_address(cfg),
            superuser: cfg.authentication.superuser.clone(),
            replication: cfg.authentication.replication.clone(),
            rewind: cfg.authentication.rewind.clone(),
        }
    }
}

/// How the agent reaches its own server, as Patroni's `resolve_connection_addresses`: the
/// first absolute `unix_socket_directories` entry when `use_unix_socket` is set, else
/// `localhost` when listening on a wildcard or loopback address, else the first listen address.
pub fn local_address(cfg: &PostgresqlConfig) -> ConnParams {
    let tcp_host = cfg
        .listen
        .hosts()
        .find(|h| {
            matches!(
                h.to_lowercase().as_str(),
                "*" | "0.0.0.0" | "127.0.0.1" | "localhost"
            )
        })
        .map_or_else(
            || cfg.listen.hosts().next().unwrap_or("localhost").to_owned(),
            |_| "localhost".to_owned(),
        );
    let socket_dir = cfg
        .parameters
        .get("unix_socket_directories")
        .and_then(serde_json::Value::as_str)
        .and_then(|dirs| {
            dirs.split(',')
                .map(str::trim)
                .find(|d| d.starts_with('/'))
                .map(str::to_owned)
        });
    let host = match (cfg.use_unix_socket, socket_dir) {
        (true, Some(dir)) => dir,
        _ => tcp_host,
    };
    ConnParams::new()
        .with("host", host)
        .with("port", cfg.listen.port.to_string())
}

/// An instance action failed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// A start was asked while a postmaster runs.
    #[error("postgres is already running (pid {0})")]
    AlreadyRunning(u32),
    /// The action needs a running server.
    #[error("postgres is not running")]
    NotRunning,
    /// Configuration files could not be written.
    #[error("write configuration files")]
    Files(#[source] FileError),
    /// The postmaster could not be started, stopped or signalled.
    #[error("control the postmaster")]
    Postmaster(#[source] PostmasterError),
    /// `pg_ctl promote` failed.
    #[error("promote")]
    Promote(#[source] ToolError),
    /// A blocking file task panicked or was cancelled.
    #[error("file task did not finish: {0}")]
    Task(String),
    /// Crash recovery in single-user mode failed.
    #[error("crash recovery in single-user mode")]
    CrashRecovery(#[source] ToolError),
}

/// One local PostgreSQL instance and its postmaster, if running.
#[derive(Debug)]
pub struct Postgres {
    spec: InstanceSpec,
    postmaster: Option<Postmaster>,
}

// === impl Postgres ===

impl Postgres {
    /// An instance; nothing is checked or started.
    pub fn new(spec: InstanceSpec) -> Self {
        Postgres {
            spec,
            postmaster: None,
        }
    }

    /// What the instance is.
    pub fn spec(&self) -> &InstanceSpec {
        &self.spec
    }

    /// The postmaster's pid, while one is known.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Postmaster::pid)
    }

    /// What the data directory holds.
    ///
    /// # Errors
    /// It cannot be listed.
    pub fn data_dir_state(&self) -> Result<DataDirState, DataDirError> {
        DataDirState::of(self.spec.layout.data_dir())
    }

    /// `pg_controldata` of the data directory.
    ///
    /// # Errors
    /// The program fails.
    pub async fn controldata(&self) -> Result<ControlData, ControlDataError> {
        ControlData::read(&self.spec.programs, self.spec.layout.data_dir()).await
    }

    /// Creates a new cluster (`bootstrap.initdb` options, superuser and its password).
    ///
    /// # Errors
    /// See [`InitdbError`]; never runs over existing data.
    pub async fn initdb(&self, options: &[ToolOption]) -> Result<(), InitdbError> {
        initdb(
            &self.spec.programs,
            &InitdbSpec {
                data_dir: self.spec.layout.data_dir(),
                options,
                superuser: Some(&self.spec.superuser),
            },
        )
        .await
    }

    /// Creates the data directory of a replica from `source` (a member's address; replication
    /// credentials are added), or without a source with `no_leader` methods only.
    ///
    /// # Errors
    /// See [`CloneError`].
    pub async fn clone_from(
        &self,
        source: Option<(&str, u16)>,
        methods: &[ReplicaMethod],
        retry_delay: Duration,
    ) -> Result<String, CloneError> {
        let params =
            source.map(|(host, port)| ConnParams::for_user(host, port, &self.spec.replication));
        create_replica(
            &CloneSpec {
                programs: &self.spec.programs,
                layout: &self.spec.layout,
                scope: &self.spec.scope,
                source: params.as_ref(),
                dbname: &self.spec.database,
                retry_delay,
            },
            methods,
        )
        .await
    }

    /// Rewinds the (stopped) data directory from the leader at `host:port`, with the rewind
    /// credentials (or the superuser's).
    ///
    /// # Errors
    /// See [`RewindError`]; running servers are refused by `pg_rewind` itself.
    pub async fn rewind_from(
        &self,
        host: &str,
        port: u16,
        options: &[ToolOption],
        restore_target_wal: bool,
    ) -> Result<(), RewindError> {
        let user = self.spec.rewind.as_ref().unwrap_or(&self.spec.superuser);
        let source = ConnParams::for_user(host, port, user);
        rewind(&RewindSpec {
            programs: &self.spec.programs,
            layout: &self.spec.layout,
            source: &source,
            dbname: &self.spec.database,
            options,
            restore_target_wal,
        })
        .await
    }

    /// Crash recovery of the stopped data directory in single-user mode, leaving it cleanly
    /// shut down on the last timeline it wrote (recovery signal files removed first, as
    /// Patroni's `ensure_clean_shutdown`).
    ///
    /// # Errors
    /// It runs, the signal files cannot be removed, or `postgres --single` fails.
    pub async fn single_user_recovery(&mut self) -> Result<(), InstanceError> {
        if self.is_running() {
            return Err(InstanceError::AlreadyRunning(
                self.pid().unwrap_or_default(),
            ));
        }
        self.spec
            .layout
            .remove_recovery_signals()
            .map_err(InstanceError::Files)?;
        crate::recover::single_user_recovery(&self.spec.programs, self.spec.layout.data_dir())
            .await
            .map_err(InstanceError::CrashRecovery)
    }

    /// Where the checkpoint record at `lsn` on `timeline` ends (`pg_waldump`); `None` when
    /// that cannot be read.
    pub async fn checkpoint_end(&self, timeline: u32, lsn: Lsn) -> Option<Lsn> {
        crate::recover::checkpoint_end(
            &self.spec.programs,
            self.spec.layout.data_dir(),
            timeline,
            lsn,
        )
        .await
    }

    /// Runs the custom bootstrap `method` (the method's section of `bootstrap`) into the
    /// empty data directory.
    ///
    /// # Errors
    /// See [`CustomBootstrapError`].
    pub async fn custom_bootstrap(
        &self,
        method: &CustomBootstrap,
    ) -> Result<(), CustomBootstrapError> {
        method
            .run(&self.spec.programs, self.spec.layout.data_dir())
            .await
    }

    /// Re-attaches to a postmaster running on the data directory (the agent restarted).
    /// Returns whether one was found.
    pub fn adopt(&mut self) -> bool {
        if self.postmaster.is_none() {
            self.postmaster = Postmaster::adopt(self.spec.layout.data_dir());
        }
        self.postmaster.is_some()
    }

    /// Whether the postmaster runs.
    pub fn is_running(&mut self) -> bool {
        self.postmaster.as_mut().is_some_and(Postmaster::is_running)
    }

    /// Crash detection: when the postmaster exited without being stopped by this instance,
    /// forgets it and returns how it ended (`Some(None)`: an adopted one, status unknown).
    pub fn take_crash(&mut self) -> Option<Option<ExitStatus>> {
        let exited = match self.postmaster.as_mut()?.try_exit() {
            Ok(exited) => exited?,
            Err(e) => {
                tracing::warn!("failed to check the postmaster: {e:#}");
                return None;
            }
        };
        self.postmaster = None;
        Some(exited)
    }

    /// Writes the configuration for `parameters` and, for a standby, `recovery` (off the
    /// async threads: it fsyncs).
    ///
    /// # Errors
    /// A file cannot be written.
    pub async fn write_config(
        &self,
        parameters: &ServerParameters,
        recovery: Option<&RecoveryConf>,
    ) -> Result<(), InstanceError> {
        self.write_config_keeping(parameters, recovery, false).await
    }

    /// [`Postgres::write_config`]; without `recovery`, the signal files are kept when
    /// `keep_signals`.
    async fn write_config_keeping(
        &self,
        parameters: &ServerParameters,
        recovery: Option<&RecoveryConf>,
        keep_signals: bool,
    ) -> Result<(), InstanceError> {
        let layout = self.spec.layout.clone();
        let parameters = parameters.clone();
        let recovery = recovery.cloned();
        tokio::task::spawn_blocking(move || {
            layout.write_config_keeping(&parameters, recovery.as_ref(), keep_signals)
        })
        .await
        .map_err(|e| InstanceError::Task(e.to_string()))?
        .map_err(InstanceError::Files)
    }

    /// Writes the configuration and starts PostgreSQL: as a primary (`recovery: None`) or a
    /// standby. Waits until it accepts connections, up to `timeout`.
    ///
    /// # Errors
    /// Already running, files cannot be written, the postmaster cannot be spawned, exits, or is
    /// not ready in time (then it keeps running and `is_running` says so).
    pub async fn start(
        &mut self,
        parameters: &ServerParameters,
        recovery: Option<&RecoveryConf>,
        timeout: Duration,
    ) -> Result<PostmasterStatus, InstanceError> {
        self.start_keeping(parameters, recovery, timeout, false)
            .await
    }

    /// [`Postgres::start`]; without `recovery`, the recovery signal files a restore left are
    /// kept when `keep_signals` (the server then starts in the recovery they ask for).
    ///
    /// # Errors
    /// As [`Postgres::start`].
    pub async fn start_keeping(
        &mut self,
        parameters: &ServerParameters,
        recovery: Option<&RecoveryConf>,
        timeout: Duration,
        keep_signals: bool,
    ) -> Result<PostmasterStatus, InstanceError> {
        if let Some(pm) = self.postmaster.as_mut()
            && pm.is_running()
        {
            return Err(InstanceError::AlreadyRunning(pm.pid()));
        }
        self.write_config_keeping(parameters, recovery, keep_signals)
            .await?;
        let config_file = self.spec.layout.postgresql_conf();
        let options = parameters.postmaster_options();
        let postmaster = Postmaster::spawn(
            &self.spec.programs,
            &StartSpec {
                data_dir: self.spec.layout.data_dir(),
                config_file: &config_file,
                options: &options,
            },
        )
        .map_err(InstanceError::Postmaster)?;
        let pm = self.postmaster.insert(postmaster);
        pm.wait_ready(timeout)
            .await
            .map_err(InstanceError::Postmaster)
    }

    /// Stops PostgreSQL in `mode` (escalating past `timeout`, see [`Postmaster::stop`]).
    /// `Ok(None)` when it was not running.
    ///
    /// # Errors
    /// Signals cannot be sent or it survives SIGKILL.
    pub async fn stop(
        &mut self,
        mode: StopMode,
        timeout: Option<Duration>,
    ) -> Result<Option<StopOutcome>, InstanceError> {
        let Some(pm) = self.postmaster.as_mut() else {
            return Ok(None);
        };
        let outcome = pm
            .stop(mode, timeout)
            .await
            .map_err(InstanceError::Postmaster)?;
        self.postmaster = None;
        Ok(Some(outcome))
    }

    /// Stop, then start with the given configuration.
    ///
    /// # Errors
    /// See [`Postgres::stop`] and [`Postgres::start`].
    pub async fn restart(
        &mut self,
        mode: StopMode,
        stop_timeout: Option<Duration>,
        parameters: &ServerParameters,
        recovery: Option<&RecoveryConf>,
        start_timeout: Duration,
    ) -> Result<PostmasterStatus, InstanceError> {
        self.stop(mode, stop_timeout).await?;
        self.start(parameters, recovery, start_timeout).await
    }

    /// Demotes a primary: stop in `mode`, write `standby.signal` and the recovery settings,
    /// start as a standby of whoever `recovery` follows.
    ///
    /// # Errors
    /// See [`Postgres::restart`].
    pub async fn demote(
        &mut self,
        mode: StopMode,
        stop_timeout: Option<Duration>,
        parameters: &ServerParameters,
        recovery: &RecoveryConf,
        start_timeout: Duration,
    ) -> Result<PostmasterStatus, InstanceError> {
        self.restart(
            mode,
            stop_timeout,
            parameters,
            Some(recovery),
            start_timeout,
        )
        .await
    }

    /// Reloads the configuration (SIGHUP).
    ///
    /// # Errors
    /// Not running, or the signal cannot be sent.
    pub fn reload(&self) -> Result<(), InstanceError> {
        self.postmaster
            .as_ref()
            .ok_or(InstanceError::NotRunning)?
            .reload()
            .map_err(InstanceError::Postmaster)
    }

    /// Promotes a standby with `pg_ctl promote`, waiting up to `wait` for it to leave recovery
    /// (`None`: do not wait; poll `pg_is_in_recovery()` or `pg_controldata` instead). The
    /// signal files are removed by PostgreSQL itself.
    ///
    /// # Errors
    /// `pg_ctl` fails (not a standby, or still in recovery after `wait`).
    pub async fn promote(&self, wait: Option<Duration>) -> Result<(), InstanceError> {
        let mut cmd = self.spec.programs.command("pg_ctl");
        cmd.arg("promote")
            .arg("-D")
            .arg(self.spec.layout.data_dir());
        match wait {
            Some(t) => cmd.args(["-w", "-t", &t.as_secs().max(1).to_string()]),
            None => cmd.arg("-W"),
        };
        tool::run(cmd, self.spec.programs.program("pg_ctl"))
            .await
            .map(drop)
            .map_err(InstanceError::Promote)
    }

    /// The local connection as the superuser.
    pub fn local_superuser(&self) -> ConnParams {
        let mut params = self.spec.local.clone();
        params.set("user", &self.spec.superuser.username);
        if let Some(pw) = &self.spec.superuser.password {
            params.set("password", pw);
        }
        params.set("dbname", &self.spec.database);
        params
    }

    /// Connects to the local server as the superuser.
    ///
    /// # Errors
    /// See [`PgClient::connect`].
    pub async fn connect(&self) -> Result<PgClient, QueryError> {
        PgClient::connect(&self.local_superuser()).await
    }
}

#[cfg(test)]
mod tests {
    use patroni_config::{Environment, load};

    use super::*;

    fn config(extra: &[(&str, &str)]) -> PostgresqlConfig {
        let mut env = Environment::new()
            .with_var("PATRONI_NAME", "pg-0")
            .with_var("PATRONI_SCOPE", "demo")
            .with_var("PATRONI_KUBERNETES_LABELS", "{application: patroni}")
            .with_var("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008")
            .with_var("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.0.0.5:8008")
            .with_var("PATRONI_POSTGRESQL_LISTEN", "0.0.0.0:5433")
            .with_var("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.0.0.5:5433")
            .with_var("PATRONI_POSTGRESQL_DATA_DIR", "/var/lib/postgresql/data")
            .with_var("PATRONI_POSTGRESQL_BIN_DIR", "/usr/lib/postgresql/15/bin")
            .with_var("PATRONI_SUPERUSER_USERNAME", "postgres")
            .with_var("PATRONI_SUPERUSER_PASSWORD", "su")
            .with_var("PATRONI_REPLICATION_USERNAME", "standby");
        for (k, v) in extra {
            env = env.with_var(*k, *v);
        }
        load(None, &env)
            .expect("valid configuration")
            .config
            .postgresql
    }

    /// The spec follows the configuration: programs, files, users, local address.
    #[test]
    fn spec_from_config() {
        let spec = InstanceSpec::from_config(
            "pg-0",
            "demo",
            &config(&[]),
            Path::new("/home/postgres"),
            15,
            Launcher::direct(),
        );
        assert_eq!(
            spec.programs.program("initdb"),
            Path::new("/usr/lib/postgresql/15/bin/initdb")
        );
        assert_eq!(spec.layout.pgpass(), Path::new("/home/postgres/pgpass"));
        assert_eq!(spec.superuser.password.as_deref(), Some("su"));
        assert_eq!(spec.replication.username, "standby");
        assert_eq!(spec.local.get("host"), Some("localhost"));
        assert_eq!(spec.local.get("port"), Some("5433"));
        let pg = Postgres::new(spec);
        let su = pg.local_superuser();
        assert_eq!(su.get("user"), Some("postgres"));
        assert_eq!(su.get("dbname"), Some("postgres"));
    }

    /// A specific listen address is used as is; a socket directory when asked for.
    #[test]
    fn local_address_rules() {
        let cfg = config(&[
            ("PATRONI_POSTGRESQL_LISTEN", "10.0.0.5,127.0.0.2:5432"),
            ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.0.0.5:5432"),
        ]);
        assert_eq!(local_address(&cfg).get("host"), Some("10.0.0.5"));
        let mut cfg = config(&[]);
        cfg.use_unix_socket = true;
        cfg.parameters.insert(
            "unix_socket_directories".into(),
            "@abstract, /run/postgresql".into(),
        );
        assert_eq!(local_address(&cfg).get("host"), Some("/run/postgresql"));
    }
}
