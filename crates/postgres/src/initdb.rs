//! Creating a new cluster with `initdb`, the bootstrap of the member that won the
//! initialize race.
//!
//! # Guarantees
//! `initdb` never runs over data: a data directory that exists and holds anything but hidden
//! entries and `lost+found` is refused before the program is started (and `initdb` itself
//! refuses too).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use patroni_config::{PgUser, ToolOption};

use crate::datadir::{DataDirError, DataDirState};
use crate::files::{FileError, Owner, io_err};
use crate::launcher::Programs;
use crate::tool::{self, ToolError};

/// `bootstrap.initdb` options the agent sets itself and refuses from configuration.
pub const FORBIDDEN_INITDB_OPTIONS: [&str; 5] =
    ["pgdata", "nosync", "pwfile", "sync-only", "version"];

/// `initdb` was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum InitdbError {
    /// The data directory holds data.
    #[error("refusing to initdb: data directory {path} is not empty ({state:?})")]
    DataDirNotEmpty {
        /// The directory.
        path: PathBuf,
        /// What it holds.
        state: DataDirState,
    },
    /// The data directory could not be inspected.
    #[error("inspect the data directory")]
    DataDir(#[source] DataDirError),
    /// A configured option is one the agent sets itself.
    #[error("initdb option {0:?} is set by the agent and cannot be configured")]
    ForbiddenOption(String),
    /// The superuser password file could not be written.
    #[error("write the superuser password file")]
    PasswordFile(#[source] FileError),
    /// `initdb` failed.
    #[error("run initdb")]
    Run(#[source] ToolError),
}

/// What to create.
#[derive(Debug, Clone, Copy)]
pub struct InitdbSpec<'a> {
    /// The data directory: missing or empty.
    pub data_dir: &'a Path,
    /// `bootstrap.initdb` (`data-checksums`, `encoding: UTF8`, …).
    pub options: &'a [ToolOption],
    /// The superuser: `--username`, and `--pwfile` when it has a password.
    pub superuser: Option<&'a PgUser>,
}

/// The `initdb` arguments after `--pgdata` (without the password file). Pure.
///
/// # Errors
/// An option is one the agent sets itself.
pub fn initdb_args(spec: &InitdbSpec<'_>) -> Result<Vec<String>, InitdbError> {
    let mut args = Vec::with_capacity(spec.options.len() + 1);
    for option in spec.options {
        if FORBIDDEN_INITDB_OPTIONS.contains(&option.name()) {
            return Err(InitdbError::ForbiddenOption(option.name().to_owned()));
        }
        args.push(option.to_arg());
    }
    if let Some(user) = spec.superuser {
        args.push(format!("--username={}", user.username));
    }
    Ok(args)
}

/// Runs `initdb` into a missing or empty data directory.
///
/// # Errors
/// The directory holds data, an option is forbidden, the password file cannot be written, or
/// `initdb` fails (the caller reports `initdb failed` and wipes what it left).
pub async fn initdb(programs: &Programs, spec: &InitdbSpec<'_>) -> Result<(), InitdbError> {
    let state = DataDirState::of(spec.data_dir).map_err(InitdbError::DataDir)?;
    if !state.is_empty() {
        return Err(InitdbError::DataDirNotEmpty {
            path: spec.data_dir.to_path_buf(),
            state,
        });
    }
    let mut args = initdb_args(spec)?;
    let password = spec.superuser.and_then(|u| u.password.as_deref());
    let pwfile = match password {
        Some(pw) => {
            Some(PasswordFile::create(spec.data_dir, pw).map_err(InitdbError::PasswordFile)?)
        }
        None => None,
    };
    if let Some(f) = &pwfile {
        args.push(format!("--pwfile={}", f.0.display()));
    }
    let mut cmd = programs.command("initdb");
    cmd.arg(format!("--pgdata={}", spec.data_dir.display()))
        .args(&args);
    tracing::info!(data_dir = %spec.data_dir.display(), "initializing a new cluster");
    let result = tool::run(cmd, programs.program("initdb")).await;
    drop(pwfile);
    result.map(drop).map_err(InitdbError::Run)
}

/// A temporary file holding the superuser password, readable by the data directory's owner,
/// removed on drop.
struct PasswordFile(PathBuf);

impl PasswordFile {
    fn create(data_dir: &Path, password: &str) -> Result<Self, FileError> {
        // The nearest existing directory: initdb creates the data directory and any missing
        // parents (issue #12).
        let owner_of = data_dir
            .ancestors()
            .find(|p| !p.as_os_str().is_empty() && p.exists())
            .unwrap_or(Path::new("."));
        let owner = Owner::of(owner_of)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("patroni-initdb-pw-{}-{nanos}", std::process::id()));
        // create_new: never follow a planted file or symlink in the shared temp directory.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let guard = PasswordFile(path);
        owner.apply(&guard.0)?;
        file.write_all(password.as_bytes())
            .map_err(io_err("write", &guard.0))?;
        Ok(guard)
    }
}

impl Drop for PasswordFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BinDir, Launcher};

    /// Options become `--name[=value]`, then the superuser.
    #[test]
    fn initdb_args_from_options() {
        let su = PgUser {
            username: "postgres".into(),
            password: None,
            params: Default::default(),
        };
        let options = [
            ToolOption::Value {
                name: "encoding".into(),
                value: "UTF8".into(),
            },
            ToolOption::Flag("data-checksums".into()),
        ];
        let args = initdb_args(&InitdbSpec {
            data_dir: Path::new("/d"),
            options: &options,
            superuser: Some(&su),
        })
        .expect("valid");
        assert_eq!(
            args,
            ["--encoding=UTF8", "--data-checksums", "--username=postgres"]
        );
        let bad = [ToolOption::Flag("nosync".into())];
        assert!(matches!(
            initdb_args(&InitdbSpec {
                data_dir: Path::new("/d"),
                options: &bad,
                superuser: None,
            }),
            Err(InitdbError::ForbiddenOption(o)) if o == "nosync"
        ));
    }

    /// A non-empty data directory is refused before anything runs.
    #[tokio::test]
    async fn refuses_non_empty_data_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("PG_VERSION"), "15\n").expect("write");
        // A program that would fail loudly if it were run.
        let programs = Programs::new(
            BinDir::new(Some(Path::new("/nonexistent"))),
            Launcher::direct(),
        );
        let e = initdb(
            &programs,
            &InitdbSpec {
                data_dir: dir.path(),
                options: &[],
                superuser: None,
            },
        )
        .await
        .expect_err("refused");
        assert!(
            matches!(
                e,
                InitdbError::DataDirNotEmpty {
                    state: DataDirState::Initialized { major_version: 15 },
                    ..
                }
            ),
            "{e:?}"
        );
    }

    /// The password file is private and removed when dropped.
    #[test]
    fn password_file_is_private_and_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = PasswordFile::create(&dir.path().join("data"), "pw").expect("create");
        let path = f.0.clone();
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "pw");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(f);
        assert!(!path.exists());
    }
}
