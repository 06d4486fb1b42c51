//! `pg_rewind`: bringing a former primary (or a replica that ran ahead on an old timeline) back
//! in line with the new leader without copying the whole cluster.
//!
//! The caller has already decided a rewind is needed (timeline divergence) and possible
//! ([`crate::ControlData::rewind_possible`]), stopped PostgreSQL, and made sure the leader has
//! checkpointed since its promotion (otherwise `pg_rewind` sees the old timeline in the
//! leader's control file and does nothing). A failed rewind is reported as
//! [`RewindError::Failed`]: the data directory may be damaged, and the caller re-clones when
//! `remove_data_directory_on_rewind_failure` says so.
//!
//! After success the data directory holds the leader's configuration files; the caller writes
//! its own `postgresql.conf` and `standby.signal` and starts as a replica.

use patroni_config::ToolOption;

use crate::conninfo::ConnParams;
use crate::files::FileError;
use crate::launcher::Programs;
use crate::layout::Layout;
use crate::tool::{self, ToolError};

/// `postgresql.rewind` options the agent sets itself or that would break the rewind.
pub const FORBIDDEN_REWIND_OPTIONS: [&str; 10] = [
    "target-pgdata",
    "source-pgdata",
    "source-server",
    "write-recovery-conf",
    "dry-run",
    "restore-target-wal",
    "config-file",
    "no-ensure-shutdown",
    "version",
    "help",
];

/// `pg_rewind` was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RewindError {
    /// A configured option is one the agent sets itself.
    #[error("pg_rewind option {0:?} is set by the agent and cannot be configured")]
    ForbiddenOption(String),
    /// The password file could not be written.
    #[error("write the password file")]
    Pgpass(#[source] FileError),
    /// `pg_rewind` failed; the data directory may be unusable.
    #[error("pg_rewind failed")]
    Failed(#[source] ToolError),
}

/// What to rewind from.
#[derive(Debug, Clone, Copy)]
pub struct RewindSpec<'a> {
    /// Programs and launcher.
    pub programs: &'a Programs,
    /// The (stopped) data directory and the password file.
    pub layout: &'a Layout,
    /// The leader, with rewind credentials (`authentication.rewind`, else the superuser).
    pub source: &'a ConnParams,
    /// Database to connect to (`postgresql.database`).
    pub dbname: &'a str,
    /// `postgresql.rewind` options.
    pub options: &'a [ToolOption],
    /// Add `--restore-target-wal` (a `restore_command` is configured; PostgreSQL 13+).
    pub restore_target_wal: bool,
}

/// The `pg_rewind` arguments. Pure.
///
/// # Errors
/// An option is one the agent sets itself.
pub fn rewind_args(spec: &RewindSpec<'_>) -> Result<Vec<String>, RewindError> {
    let mut args = Vec::new();
    if spec.restore_target_wal {
        args.push("--restore-target-wal".to_owned());
        if spec.layout.config_dir() != spec.layout.data_dir() {
            args.push(format!(
                "--config-file={}",
                spec.layout.postgresql_conf().display()
            ));
        }
    }
    args.push("-D".to_owned());
    args.push(spec.layout.data_dir().to_string_lossy().into_owned());
    let mut source = spec.source.clone();
    source.set_default("target_session_attrs", "read-write");
    args.push("--source-server".to_owned());
    args.push(source.to_dsn_with_dbname(spec.dbname));
    for option in spec.options {
        if FORBIDDEN_REWIND_OPTIONS.contains(&option.name()) {
            return Err(RewindError::ForbiddenOption(option.name().to_owned()));
        }
        args.push(option.to_arg());
    }
    Ok(args)
}

/// Runs `pg_rewind` against the leader.
///
/// # Errors
/// See [`RewindError`].
pub async fn rewind(spec: &RewindSpec<'_>) -> Result<(), RewindError> {
    let args = rewind_args(spec)?;
    if let Some(lines) = spec.source.pgpass_lines() {
        spec.layout
            .write_pgpass(&lines)
            .map_err(RewindError::Pgpass)?;
    }
    let mut cmd = spec.programs.command("pg_rewind");
    cmd.args(&args)
        .env("PGPASSFILE", spec.layout.pgpass())
        .env("PGOPTIONS", "-c statement_timeout=0")
        .env("LANG", "C")
        .env("LC_ALL", "C");
    tracing::info!(source = ?spec.source, "running pg_rewind");
    let out = tool::run(cmd, spec.programs.program("pg_rewind"))
        .await
        .map_err(RewindError::Failed)?;
    tracing::info!("pg_rewind done: {}", tool::tail(&out.stderr, 3));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BinDir, Launcher};

    /// Arguments: target, source without the password, read-write session, user options.
    #[test]
    fn rewind_arguments() {
        let programs = Programs::new(BinDir::new(None), Launcher::direct());
        let layout = Layout::new("/data", "/home/pgpass").with_config_dir("/etc/pg");
        let source = ConnParams::new()
            .with("host", "10.0.0.2")
            .with("port", "5432")
            .with("user", "rewind")
            .with("password", "secret");
        let options = [ToolOption::Flag("progress".into())];
        let mut spec = RewindSpec {
            programs: &programs,
            layout: &layout,
            source: &source,
            dbname: "postgres",
            options: &options,
            restore_target_wal: false,
        };
        assert_eq!(
            rewind_args(&spec).expect("valid"),
            [
                "-D",
                "/data",
                "--source-server",
                "dbname=postgres user=rewind host=10.0.0.2 port=5432 target_session_attrs=read-write",
                "--progress"
            ]
        );
        spec.restore_target_wal = true;
        let args = rewind_args(&spec).expect("valid");
        assert_eq!(
            args[..2],
            [
                "--restore-target-wal",
                "--config-file=/etc/pg/postgresql.conf"
            ]
        );
        let bad = [ToolOption::Flag("dry-run".into())];
        spec.options = &bad;
        assert!(
            matches!(rewind_args(&spec), Err(RewindError::ForbiddenOption(o)) if o == "dry-run")
        );
    }
}
