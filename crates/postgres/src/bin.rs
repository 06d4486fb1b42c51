//! Where the PostgreSQL programs are (`postgresql.bin_dir`), and which
//! major version they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's location of PostgreSQL 15, the version the project targets first.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// A directory holding `postgres`, `initdb`, `pg_ctl`, `pg_basebackup`, …, and the name each
/// program has there (`postgresql.bin_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinDir {
    dir: PathBuf,
    names: BTreeMap<String, String>,
}

/// The PostgreSQL programs could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BinError {
    /// `postgres --version` could not be run.
    #[error("run {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Its output was not `postgres (PostgreSQL) N.M…`.
    #[error("unexpected output of {program} --version: {output:?}")]
    Version {
        /// The program.
        program: PathBuf,
        /// What it printed.
        output: String,
    },
}

// === impl BinDir ===

impl BinDir {
    /// The given directory; `None` means `$PATH` lookup, as Patroni does
    /// with an empty `bin_dir`.
    pub fn new(dir: Option<&Path>) -> Self {
        BinDir {
            dir: dir.map(Path::to_path_buf).unwrap_or_default(),
            names: BTreeMap::new(),
        }
    }

    /// Uses `names` (`postgresql.bin_name`: program → file name) instead of the programs'
    /// own names.
    pub fn with_names(mut self, names: BTreeMap<String, String>) -> Self {
        self.names = names;
        self
    }

    /// Path of program `name` (bare name when searching `$PATH`).
    pub fn program(&self, name: &str) -> PathBuf {
        let file = self
            .names
            .get(name)
            .filter(|n| !n.is_empty())
            .map_or(name, String::as_str);
        if self.dir.as_os_str().is_empty() {
            PathBuf::from(file)
        } else {
            self.dir.join(file)
        }
    }

    /// Major version of the server binaries (e.g. 15), from `postgres --version`.
    ///
    /// # Errors
    /// The program cannot be run or prints something unexpected.
    pub fn major_version(&self) -> Result<u32, BinError> {
        let program = self.program("postgres");
        let out = Command::new(&program)
            .arg("--version")
            .output()
            .map_err(|source| BinError::Spawn {
                program: program.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        parse_major_version(&text).ok_or(BinError::Version {
            program,
            output: text,
        })
    }
}

/// `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → 15.
fn parse_major_version(text: &str) -> Option<u32> {
    let rest = text.strip_prefix("postgres (PostgreSQL) ")?;
    let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The major version is read from Debian's and upstream's output alike.
    #[test]
    fn major_version_is_parsed() {
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 17beta1"),
            Some(17)
        );
        assert_eq!(parse_major_version("postgres 15"), None);
    }

    /// An empty bin_dir means a `$PATH` lookup.
    #[test]
    fn empty_bin_dir_uses_path() {
        assert_eq!(BinDir::new(None).program("initdb"), PathBuf::from("initdb"));
        assert_eq!(
            BinDir::new(Some(Path::new("/x"))).program("initdb"),
            PathBuf::from("/x/initdb")
        );
    }

    /// `bin_name` renames a program; others keep their own name.
    #[test]
    fn bin_names_rename_programs() {
        let bin = BinDir::new(Some(Path::new("/x"))).with_names(BTreeMap::from([(
            "pg_ctl".to_owned(),
            "pg_ctl15".to_owned(),
        )]));
        assert_eq!(bin.program("pg_ctl"), PathBuf::from("/x/pg_ctl15"));
        assert_eq!(bin.program("initdb"), PathBuf::from("/x/initdb"));
    }

    /// The machine's PostgreSQL 15 reports its version (real binary).
    #[test]
    fn real_postgres_reports_major_version() {
        let bin = BinDir::new(Some(Path::new(DEFAULT_BIN_DIR)));
        assert_eq!(bin.major_version().expect("PostgreSQL 15 is installed"), 15);
    }
}
