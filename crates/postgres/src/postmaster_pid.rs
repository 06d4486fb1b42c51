//! `postmaster.pid`: the running postmaster's own account of itself.
//!
//! The file has one value per line (PostgreSQL 10+): pid, data directory,
//! start time, port, socket directory, first listen address, shared memory
//! key, and a status word (`starting`, `stopping`, `ready`, `standby`) that
//! the postmaster rewrites in place. "Ready" for the agent means the status
//! says `ready` (a primary, or a hot standby accepting reads) or `standby` (a
//! standby with `hot_standby = off`, up but refusing connections), as `pg_ctl
//! -w` decides, *and* the pid is the child it started.

use std::path::{Path, PathBuf};

/// The status word on line 8 of `postmaster.pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostmasterStatus {
    /// Recovering or starting up: not accepting connections yet.
    Starting,
    /// Shutting down.
    Stopping,
    /// Accepting connections: a primary, or a hot standby (read-only).
    Ready,
    /// A standby with `hot_standby = off`: start-up finished, but it refuses
    /// connections.
    Standby,
}

/// Parsed `postmaster.pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostmasterPid {
    /// Postmaster pid.
    pub pid: u32,
    /// Data directory it runs on.
    pub data_dir: PathBuf,
    /// Start time, seconds since the epoch.
    pub start_time: i64,
    /// Port.
    pub port: u16,
    /// First Unix socket directory, if any.
    pub socket_dir: Option<PathBuf>,
    /// First listen address, if any.
    pub listen_address: Option<String>,
    /// Status, once the postmaster wrote one (lines 7–8 come later than the rest).
    pub status: Option<PostmasterStatus>,
}

/// `postmaster.pid` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PostmasterPidError {
    /// The file could not be read (absent: no postmaster, or one that has not written it yet).
    #[error("read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line did not hold what it should.
    #[error("postmaster.pid line {line}: {problem}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

// === impl PostmasterPid ===

impl PostmasterPid {
    /// Reads `DATA_DIR/postmaster.pid`.
    ///
    /// # Errors
    /// The file is missing or unreadable, or a line is malformed.
    pub fn read(data_dir: &Path) -> Result<Self, PostmasterPidError> {
        let path = data_dir.join("postmaster.pid");
        let text = std::fs::read_to_string(&path)
            .map_err(|source| PostmasterPidError::Read { path, source })?;
        Self::parse(&text)
    }

    /// Parses the file's text.
    ///
    /// # Errors
    /// Fewer than four lines, or a number or status that does not parse.
    pub fn parse(text: &str) -> Result<Self, PostmasterPidError> {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let field = |i: usize| -> Result<&str, PostmasterPidError> {
            lines.get(i).copied().ok_or(PostmasterPidError::Malformed {
                line: i + 1,
                problem: "missing".into(),
            })
        };
        let number = |i: usize| -> Result<i64, PostmasterPidError> {
            let v = field(i)?;
            v.parse().map_err(|_| PostmasterPidError::Malformed {
                line: i + 1,
                problem: format!("not a number: {v:?}"),
            })
        };
        let non_empty = |i: usize| {
            lines
                .get(i)
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string())
        };
        let status = match lines.get(7).copied().unwrap_or("") {
            "" => None,
            "starting" => Some(PostmasterStatus::Starting),
            "stopping" => Some(PostmasterStatus::Stopping),
            "ready" => Some(PostmasterStatus::Ready),
            "standby" => Some(PostmasterStatus::Standby),
            other => {
                return Err(PostmasterPidError::Malformed {
                    line: 8,
                    problem: format!("unknown status {other:?}"),
                });
            }
        };
        let out_of_range = |line: usize| PostmasterPidError::Malformed {
            line,
            problem: "out of range".into(),
        };
        Ok(PostmasterPid {
            pid: u32::try_from(number(0)?).map_err(|_| out_of_range(1))?,
            data_dir: PathBuf::from(field(1)?),
            start_time: number(2)?,
            port: u16::try_from(number(3)?).map_err(|_| out_of_range(4))?,
            socket_dir: non_empty(4).map(PathBuf::from),
            listen_address: non_empty(5),
            status,
        })
    }

    /// Whether start-up finished (`ready`, or `standby` for a standby with
    /// `hot_standby = off`, which refuses connections): `pg_ctl -w`'s criterion.
    pub fn accepts_connections(&self) -> bool {
        matches!(
            self.status,
            Some(PostmasterStatus::Ready | PostmasterStatus::Standby)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: &str = "4242\n/var/lib/pg/data\n1763750000\n5432\n/var/run/postgresql\n10.213.1.1\n  5432001      3\nready   \n";

    /// A ready postmaster's file parses field by field.
    #[test]
    fn ready_file_parses_every_field() {
        let p = PostmasterPid::parse(READY).expect("valid file");
        assert_eq!(p.pid, 4242);
        assert_eq!(p.data_dir, PathBuf::from("/var/lib/pg/data"));
        assert_eq!(p.start_time, 1_763_750_000);
        assert_eq!(p.port, 5432);
        assert_eq!(p.socket_dir, Some(PathBuf::from("/var/run/postgresql")));
        assert_eq!(p.listen_address.as_deref(), Some("10.213.1.1"));
        assert_eq!(p.status, Some(PostmasterStatus::Ready));
        assert!(p.accepts_connections());
    }

    /// Early in start-up the status line is not written yet: parsed, not ready.
    #[test]
    fn file_without_status_is_not_ready() {
        let p = PostmasterPid::parse("4242\n/d\n1\n5432\n\n\n").expect("valid file");
        assert_eq!(p.status, None);
        assert_eq!(p.socket_dir, None);
        assert!(!p.accepts_connections());
    }

    /// Garbage yields an error naming the line, never a panic.
    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        let e = PostmasterPid::parse("abc\n/d\n1\n5432\n").expect_err("pid is not a number");
        assert_eq!(
            e.to_string(),
            "postmaster.pid line 1: not a number: \"abc\""
        );
        let e = PostmasterPid::parse("1\n/d\n1\n99999\n").expect_err("port out of range");
        assert_eq!(e.to_string(), "postmaster.pid line 4: out of range");
        let e = PostmasterPid::parse("1\n/d\n").expect_err("too short");
        assert_eq!(e.to_string(), "postmaster.pid line 3: missing");
        let e = PostmasterPid::parse("1\n/d\n1\n5432\n\n\n1\nweird\n").expect_err("bad status");
        assert_eq!(
            e.to_string(),
            "postmaster.pid line 8: unknown status \"weird\""
        );
    }

    /// A missing file is a read error that keeps its cause.
    #[test]
    fn missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = PostmasterPid::read(dir.path()).expect_err("no file");
        assert!(
            matches!(e, PostmasterPidError::Read { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
    }
}
