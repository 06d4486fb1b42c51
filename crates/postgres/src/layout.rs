//! Where the agent's files live (`data_dir`, `config_dir`, `postgresql.conf`, its base file,
//! `pg_hba.conf`, signal files, the password file) and writing them.
//!
//! Every write is atomic and owned by the directory's owner (see [`crate::files`]). Writing
//! the configuration of a standby goes passfile → `postgresql.conf` → `standby.signal`; of a
//! primary, signal files removed → `postgresql.conf`. The agent re-renders everything before
//! each start, so a crash between two steps is repaired by the next start.

use std::fs;
use std::path::{Path, PathBuf};

use patroni_config::PostgresqlConfig;

use crate::files::{self, CONFIG_FILE_MODE, FileError, io_err};
use crate::params::ServerParameters;
use crate::recovery::{RecoveryConf, RecoverySignal};
use crate::render::{
    ConfParams, is_generated, render_appended_pg_hba, render_pg_hba, render_pg_ident,
    render_postgresql_conf,
};

/// Mode of the password file: libpq ignores a group- or world-readable one.
const PGPASS_MODE: u32 = 0o600;

/// Paths of the agent's files for one PostgreSQL instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    data_dir: PathBuf,
    config_dir: PathBuf,
    config_base_name: String,
    custom_conf: Option<PathBuf>,
    pgpass: PathBuf,
}

// === impl Layout ===

impl Layout {
    /// Files in `data_dir`, password file `pgpass`, Patroni's defaults otherwise.
    pub fn new(data_dir: impl Into<PathBuf>, pgpass: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Layout {
            config_dir: data_dir.clone(),
            data_dir,
            config_base_name: "postgresql".to_owned(),
            custom_conf: None,
            pgpass: pgpass.into(),
        }
    }

    /// From the `postgresql` section; `home` is where the default `pgpass` goes (`~/pgpass`).
    pub fn from_config(cfg: &PostgresqlConfig, home: &Path) -> Self {
        Layout {
            data_dir: cfg.data_dir.clone(),
            config_dir: cfg.effective_config_dir().to_path_buf(),
            config_base_name: cfg.config_base_name.clone(),
            custom_conf: cfg.custom_conf.clone(),
            pgpass: cfg.pgpass.clone().unwrap_or_else(|| home.join("pgpass")),
        }
    }

    /// Configuration files go to `dir` instead of the data directory.
    pub fn with_config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = dir.into();
        self
    }

    /// `custom_conf` is included instead of the base file.
    pub fn with_custom_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.custom_conf = Some(path.into());
        self
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where configuration files are written.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The password file.
    pub fn pgpass(&self) -> &Path {
        &self.pgpass
    }

    /// `<config_dir>/postgresql.conf`, the file the agent owns.
    pub fn postgresql_conf(&self) -> PathBuf {
        self.config_dir
            .join(format!("{}.conf", self.config_base_name))
    }

    /// `<config_dir>/postgresql.base.conf`: the original configuration.
    pub fn base_conf(&self) -> PathBuf {
        self.config_dir
            .join(format!("{}.base.conf", self.config_base_name))
    }

    /// What `postgresql.conf` includes: `custom_conf`, or the base file's name.
    pub fn include_target(&self) -> String {
        match &self.custom_conf {
            Some(custom) => custom.to_string_lossy().into_owned(),
            None => format!("{}.base.conf", self.config_base_name),
        }
    }

    /// `<config_dir>/pg_hba.conf`.
    pub fn pg_hba_conf(&self) -> PathBuf {
        self.config_dir.join("pg_hba.conf")
    }

    /// `<config_dir>/pg_ident.conf`.
    pub fn pg_ident_conf(&self) -> PathBuf {
        self.config_dir.join("pg_ident.conf")
    }

    /// `<data_dir>/standby.signal`.
    pub fn standby_signal(&self) -> PathBuf {
        self.data_dir.join("standby.signal")
    }

    /// `<data_dir>/recovery.signal`.
    pub fn recovery_signal(&self) -> PathBuf {
        self.data_dir.join("recovery.signal")
    }

    /// Whether the data directory is set up to start as a standby.
    pub fn has_standby_signal(&self) -> bool {
        self.standby_signal().exists()
    }

    /// Writes `postgresql.conf` (and, for a standby, the passfile and signal file) for
    /// `parameters` and `recovery`. A primary (`recovery: None`) gets its signal files removed
    /// first.
    ///
    /// # Errors
    /// A file cannot be read, renamed, written or removed.
    pub fn write_config(
        &self,
        parameters: &ServerParameters,
        recovery: Option<&RecoveryConf>,
    ) -> Result<(), FileError> {
        self.write_config_keeping(parameters, recovery, false)
    }

    /// [`Layout::write_config`], but without a `recovery` the signal files are left as they
    /// are when `keep_signals` (a custom bootstrap's `keep_existing_recovery_conf`: the restore
    /// tool wrote its own recovery settings).
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn write_config_keeping(
        &self,
        parameters: &ServerParameters,
        recovery: Option<&RecoveryConf>,
        keep_signals: bool,
    ) -> Result<(), FileError> {
        self.prepare_base_conf()?;
        if let Some(r) = recovery {
            if let Some((path, lines)) = &r.passfile {
                self.write_pgpass_at(path, lines)?;
            }
        } else if !keep_signals {
            self.remove_recovery_signals()?;
        }
        let include = self.include_target();
        let text = render_postgresql_conf(&ConfParams {
            include: &include,
            parameters,
            hba_file: &self.pg_hba_conf(),
            ident_file: &self.pg_ident_conf(),
            recovery,
        });
        files::write_atomic(&self.postgresql_conf(), text.as_bytes(), CONFIG_FILE_MODE)?;
        if let Some(r) = recovery {
            let (wanted, other) = match r.signal {
                RecoverySignal::Standby => (self.standby_signal(), self.recovery_signal()),
                RecoverySignal::Recovery => (self.recovery_signal(), self.standby_signal()),
            };
            files::remove_if_exists(&other)?;
            if !wanted.exists() {
                files::touch_atomic(&wanted)?;
            }
        }
        Ok(())
    }

    /// Removes `standby.signal` and `recovery.signal`.
    ///
    /// # Errors
    /// One exists and cannot be removed.
    pub fn remove_recovery_signals(&self) -> Result<(), FileError> {
        files::remove_if_exists(&self.standby_signal())?;
        files::remove_if_exists(&self.recovery_signal())?;
        files::sync_dir(&self.data_dir)
    }

    /// Renames the original `postgresql.conf` to the base file once, so the agent can own
    /// `postgresql.conf`. A file the agent generated itself (say, copied by `pg_basebackup`
    /// without its base file) is not renamed, which would make it include itself; an empty
    /// base file is written instead.
    ///
    /// # Errors
    /// The files cannot be read, renamed or written.
    pub fn prepare_base_conf(&self) -> Result<(), FileError> {
        let base = self.base_conf();
        if self.custom_conf.is_some() || base.exists() {
            return Ok(());
        }
        let conf = self.postgresql_conf();
        match fs::read_to_string(&conf) {
            Ok(text) if !is_generated(&text) => {
                fs::rename(&conf, &base).map_err(io_err("rename", &conf))?;
                files::sync_dir(&self.config_dir)
            }
            Ok(_) => {
                tracing::warn!(path = %base.display(), "base configuration missing; writing an empty one");
                files::write_atomic(&base, b"", CONFIG_FILE_MODE)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                files::write_atomic(&base, b"", CONFIG_FILE_MODE)
            }
            Err(e) => Err(io_err("read", &conf)(e)),
        }
    }

    /// Writes `pg_hba.conf` from `postgresql.pg_hba`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_pg_hba(&self, lines: &[String]) -> Result<(), FileError> {
        files::write_atomic(
            &self.pg_hba_conf(),
            render_pg_hba(lines).as_bytes(),
            CONFIG_FILE_MODE,
        )
    }

    /// Appends `bootstrap.pg_hba` to the `pg_hba.conf` that `initdb` wrote.
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub fn append_pg_hba(&self, lines: &[String]) -> Result<(), FileError> {
        let path = self.pg_hba_conf();
        let existing = fs::read_to_string(&path).map_err(io_err("read", &path))?;
        files::write_atomic(
            &path,
            render_appended_pg_hba(&existing, lines).as_bytes(),
            CONFIG_FILE_MODE,
        )
    }

    /// Writes `pg_ident.conf` from `postgresql.pg_ident`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_pg_ident(&self, lines: &[String]) -> Result<(), FileError> {
        files::write_atomic(
            &self.pg_ident_conf(),
            render_pg_ident(lines).as_bytes(),
            CONFIG_FILE_MODE,
        )
    }

    /// Writes the password file with `lines` (`ConnParams::pgpass_lines`).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_pgpass(&self, lines: &str) -> Result<(), FileError> {
        self.write_pgpass_at(&self.pgpass, lines)
    }

    fn write_pgpass_at(&self, path: &Path, lines: &str) -> Result<(), FileError> {
        files::write_atomic(path, format!("{lines}\n").as_bytes(), PGPASS_MODE)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use patroni_config::{Address, PgUser};

    use super::*;
    use crate::params::ServerParametersInput;
    use crate::recovery::{FollowSpec, UpstreamAddress};

    fn parameters() -> ServerParameters {
        let listen = Address {
            host: "127.0.0.1".into(),
            port: 5432,
        };
        ServerParameters::build(&ServerParametersInput {
            scope: "s",
            listen: &listen,
            major_version: 15,
            config_dir: Path::new("/d"),
            local: &BTreeMap::new(),
            dynamic: &BTreeMap::new(),
        })
        .0
    }

    /// The original postgresql.conf becomes the base file once; a standby gets passfile and
    /// standby.signal; turning primary removes the signal.
    #[test]
    fn config_files_for_primary_then_standby_then_primary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("mkdir");
        fs::write(data.join("postgresql.conf"), "shared_buffers = 16MB\n").expect("write");
        let layout = Layout::new(&data, dir.path().join("pgpass"));

        layout.write_config(&parameters(), None).expect("primary");
        assert_eq!(
            fs::read_to_string(layout.base_conf()).expect("base"),
            "shared_buffers = 16MB\n"
        );
        let conf = fs::read_to_string(layout.postgresql_conf()).expect("conf");
        assert!(conf.contains("include 'postgresql.base.conf'"), "{conf}");
        assert!(!layout.has_standby_signal());

        let user = PgUser {
            username: "rep".into(),
            password: Some("pw".into()),
            params: BTreeMap::new(),
        };
        let upstream = UpstreamAddress {
            host: "h".into(),
            port: 5432,
        };
        let recovery = RecoveryConf::build(&FollowSpec {
            member_name: "m",
            upstream: Some(&upstream),
            replication: &user,
            passfile: layout.pgpass(),
            use_slots: true,
            slot_name: None,
            extra: &BTreeMap::new(),
            major_version: 15,
            krbsrvname: None,
        });
        layout
            .write_config(&parameters(), Some(&recovery))
            .expect("standby");
        assert!(layout.has_standby_signal());
        assert_eq!(
            fs::read_to_string(layout.pgpass()).expect("pgpass"),
            "h:5432:*:rep:pw\n"
        );
        let mode = fs::metadata(layout.pgpass())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            fs::read_to_string(layout.postgresql_conf())
                .expect("conf")
                .contains("primary_slot_name = 'm'")
        );
        assert_eq!(
            fs::read_to_string(layout.base_conf()).expect("base"),
            "shared_buffers = 16MB\n",
            "the base file is renamed only once"
        );

        layout
            .write_config(&parameters(), None)
            .expect("primary again");
        assert!(!layout.has_standby_signal());
    }

    /// A generated postgresql.conf without its base (copied by a clone) is not renamed.
    #[test]
    fn generated_conf_is_not_renamed_into_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path(), dir.path().join("pgpass"));
        layout.write_config(&parameters(), None).expect("write");
        fs::remove_file(layout.base_conf()).expect("remove base");
        layout
            .write_config(&parameters(), None)
            .expect("write again");
        assert_eq!(fs::read_to_string(layout.base_conf()).expect("base"), "");
    }

    /// pg_hba.conf: rendered, or appended to initdb's.
    #[test]
    fn pg_hba_written_and_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path(), dir.path().join("pgpass"));
        assert!(
            layout.append_pg_hba(&["x".into()]).is_err(),
            "nothing to append to"
        );
        layout
            .write_pg_hba(&["local all all trust".into()])
            .expect("write");
        layout
            .append_pg_hba(&["host all all 0.0.0.0/0 md5".into()])
            .expect("append");
        let text = fs::read_to_string(layout.pg_hba_conf()).expect("read");
        assert!(
            text.ends_with("local all all trust\n\nhost all all 0.0.0.0/0 md5\n"),
            "{text}"
        );
    }
}
