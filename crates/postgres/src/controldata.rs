//! `pg_controldata`: what the data directory's control file says about the cluster, readable
//! whether or not PostgreSQL runs. The agent reads the system identifier (cluster identity,
//! compared with the DCS `initialize` key), the cluster state (clean shutdown, crash, primary or
//! standby), the checkpoint's timeline and location (divergence checks before `pg_rewind`), and
//! whether `pg_rewind` can work at all (`wal_log_hints` or data checksums).
//!
//! The program runs with `LC_ALL=C` so its labels are not translated.

use std::collections::BTreeMap;
use std::path::Path;

use crate::launcher::Programs;
use crate::lsn::Lsn;
use crate::tool::{self, ToolError};

/// `pg_controldata` could not be run or its output lacks a field.
#[derive(Debug, thiserror::Error)]
pub enum ControlDataError {
    /// The program failed.
    #[error("run pg_controldata")]
    Run(#[source] ToolError),
    /// A field is missing.
    #[error("pg_controldata has no {0:?}")]
    Missing(&'static str),
    /// A field does not parse.
    #[error("pg_controldata {field:?} is not valid: {value:?}")]
    Malformed {
        /// The field.
        field: &'static str,
        /// Its text.
        value: String,
    },
}

/// `Database cluster state` from the control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    /// `starting up`.
    StartingUp,
    /// `shut down`: a primary shut down cleanly.
    ShutDown,
    /// `shut down in recovery`: a standby shut down cleanly.
    ShutDownInRecovery,
    /// `shutting down`: stopped (or crashed) during shutdown.
    ShuttingDown,
    /// `in crash recovery`.
    InCrashRecovery,
    /// `in archive recovery`: a standby running (or one that crashed).
    InArchiveRecovery,
    /// `in production`: a primary running (or one that crashed).
    InProduction,
    /// A state this crate does not know.
    Other(String),
}

/// Parsed `pg_controldata` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlData {
    fields: BTreeMap<String, String>,
}

// === impl ClusterState ===

impl ClusterState {
    fn parse(text: &str) -> Self {
        match text {
            "starting up" => Self::StartingUp,
            "shut down" => Self::ShutDown,
            "shut down in recovery" => Self::ShutDownInRecovery,
            "shutting down" => Self::ShuttingDown,
            "in crash recovery" => Self::InCrashRecovery,
            "in archive recovery" => Self::InArchiveRecovery,
            "in production" => Self::InProduction,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Whether the cluster was shut down cleanly (no crash recovery needed before a rewind).
    pub fn is_clean_shutdown(&self) -> bool {
        matches!(self, Self::ShutDown | Self::ShutDownInRecovery)
    }
}

// === impl ControlData ===

impl ControlData {
    /// Runs `pg_controldata` on `data_dir`.
    ///
    /// # Errors
    /// The program fails (no control file, unreadable directory, …).
    pub async fn read(programs: &Programs, data_dir: &Path) -> Result<Self, ControlDataError> {
        let mut cmd = programs.command("pg_controldata");
        cmd.arg("-D")
            .arg(data_dir)
            .env("LANG", "C")
            .env("LC_ALL", "C");
        let out = tool::run(cmd, programs.program("pg_controldata"))
            .await
            .map_err(ControlDataError::Run)?;
        Ok(Self::parse(&out.stdout))
    }

    /// Parses `Label:   value` lines; lines without a colon are ignored.
    pub fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        ControlData { fields }
    }

    /// The raw value of a field, by its label (`max_connections setting`, …).
    pub fn get(&self, label: &str) -> Option<&str> {
        self.fields.get(label).map(String::as_str)
    }

    fn field(&self, label: &'static str) -> Result<&str, ControlDataError> {
        self.get(label).ok_or(ControlDataError::Missing(label))
    }

    fn parsed<T: std::str::FromStr>(&self, label: &'static str) -> Result<T, ControlDataError> {
        let value = self.field(label)?;
        value.parse().map_err(|_| ControlDataError::Malformed {
            field: label,
            value: value.to_owned(),
        })
    }

    /// `Database system identifier`: the cluster's identity, kept by every replica.
    ///
    /// # Errors
    /// Missing or not a number.
    pub fn system_identifier(&self) -> Result<u64, ControlDataError> {
        self.parsed("Database system identifier")
    }

    /// `Database cluster state`.
    ///
    /// # Errors
    /// Missing.
    pub fn state(&self) -> Result<ClusterState, ControlDataError> {
        self.field("Database cluster state")
            .map(ClusterState::parse)
    }

    /// `Latest checkpoint's TimeLineID`.
    ///
    /// # Errors
    /// Missing or not a number.
    pub fn checkpoint_timeline(&self) -> Result<u32, ControlDataError> {
        self.parsed("Latest checkpoint's TimeLineID")
    }

    /// `Latest checkpoint location`.
    ///
    /// # Errors
    /// Missing or not an LSN.
    pub fn checkpoint_lsn(&self) -> Result<Lsn, ControlDataError> {
        self.parsed("Latest checkpoint location")
    }

    /// `Latest checkpoint's REDO location`.
    ///
    /// # Errors
    /// Missing or not an LSN.
    pub fn redo_lsn(&self) -> Result<Lsn, ControlDataError> {
        self.parsed("Latest checkpoint's REDO location")
    }

    /// `Minimum recovery ending location` and its timeline: where a cleanly stopped standby
    /// had replayed to.
    ///
    /// # Errors
    /// Missing or malformed.
    pub fn min_recovery_end(&self) -> Result<(Lsn, u32), ControlDataError> {
        Ok((
            self.parsed("Minimum recovery ending location")?,
            self.parsed("Min recovery ending loc's timeline")?,
        ))
    }

    /// `wal_log_hints setting` is `on`.
    pub fn wal_log_hints(&self) -> bool {
        self.get("wal_log_hints setting") == Some("on")
    }

    /// `Data page checksum version` is not 0.
    pub fn data_checksums(&self) -> bool {
        self.get("Data page checksum version")
            .is_some_and(|v| v != "0")
    }

    /// Whether `pg_rewind` can work on this data directory: it needs `wal_log_hints` or data
    /// checksums (Patroni's `can_rewind`, besides `use_pg_rewind` and a working `pg_rewind`).
    pub fn rewind_possible(&self) -> bool {
        self.wal_log_hints() || self.data_checksums()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output of PostgreSQL 15's `pg_controldata` on a running primary (abridged).
    const PRIMARY: &str = "\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7303036532781230187
Database cluster state:               in production
pg_control last modified:             Tue 21 Nov 2023 10:00:00 AM UTC
Latest checkpoint location:           0/3000060
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000010000000000000003
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
wal_level setting:                    replica
wal_log_hints setting:                on
max_connections setting:              100
Data page checksum version:           0
";

    /// Every field the agent uses parses, including values that contain colons.
    #[test]
    fn primary_output_parses() {
        let cd = ControlData::parse(PRIMARY);
        assert_eq!(cd.system_identifier().expect("sysid"), 7303036532781230187);
        assert_eq!(cd.state().expect("state"), ClusterState::InProduction);
        assert_eq!(cd.checkpoint_timeline().expect("tl"), 1);
        assert_eq!(cd.checkpoint_lsn().expect("lsn"), Lsn(0x3000060));
        assert_eq!(cd.redo_lsn().expect("redo"), Lsn(0x3000028));
        assert_eq!(cd.min_recovery_end().expect("min"), (Lsn(0), 0));
        assert_eq!(
            cd.get("pg_control last modified"),
            Some("Tue 21 Nov 2023 10:00:00 AM UTC")
        );
        assert!(cd.wal_log_hints());
        assert!(!cd.data_checksums());
        assert!(cd.rewind_possible());
    }

    /// Clean-shutdown states are recognised; unknown states are kept.
    #[test]
    fn cluster_states() {
        let state = |s: &str| {
            ControlData::parse(&format!("Database cluster state: {s}\n"))
                .state()
                .expect("state")
        };
        assert!(state("shut down").is_clean_shutdown());
        assert!(state("shut down in recovery").is_clean_shutdown());
        assert!(!state("in production").is_clean_shutdown());
        assert_eq!(state("weird"), ClusterState::Other("weird".into()));
    }

    /// Missing and malformed fields are errors naming the field.
    #[test]
    fn missing_and_malformed_fields_are_errors() {
        let cd =
            ControlData::parse("Database system identifier: abc\nData page checksum version: 1\n");
        assert_eq!(
            cd.system_identifier().expect_err("bad").to_string(),
            "pg_controldata \"Database system identifier\" is not valid: \"abc\""
        );
        assert!(matches!(
            cd.checkpoint_lsn(),
            Err(ControlDataError::Missing("Latest checkpoint location"))
        ));
        assert!(cd.rewind_possible(), "checksums allow rewind");
    }
}
