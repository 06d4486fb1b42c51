//! Running a PostgreSQL program (or a user script) to completion: `initdb`, `pg_controldata`,
//! `pg_basebackup`, `pg_rewind`, `pg_ctl promote`, replica-creation and `post_bootstrap`
//! scripts.
//!
//! Output is captured, logged once the program ends, and the tail of stderr is kept in the
//! error. Every child is killed if the future running it is dropped, so cancelling an
//! operation (the HA loop losing the leader lock mid-clone) never leaves a tool running.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

/// Lines of stderr kept in a [`ToolError::Failed`].
pub const STDERR_TAIL_LINES: usize = 20;

/// A program could not be run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program could not be started.
    #[error("start {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The program exited unsuccessfully.
    #[error("{program} exited with {status}: {stderr_tail}")]
    Failed {
        /// The program.
        program: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
}

/// What a program printed, once it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ToolOutput {
    /// Logs what a user's command (`source`: a replica method, a bootstrap script) printed,
    /// line by line at INFO: Patroni's log shows it too, as its child writes to Patroni's
    /// output.
    pub fn log_lines(&self, source: &str) {
        for line in self.stderr.lines().chain(self.stdout.lines()) {
            if !line.trim().is_empty() {
                tracing::info!(source, "{line}");
            }
        }
    }
}

/// Runs `cmd` (whose real program, behind any launcher prefix, is `program`) to completion.
///
/// # Errors
/// It cannot be spawned or exits unsuccessfully.
pub async fn run(
    mut cmd: tokio::process::Command,
    program: PathBuf,
) -> Result<ToolOutput, ToolError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tracing::debug!(program = %program.display(), "running {:?}", cmd.as_std());
    let out = cmd.output().await.map_err(|source| ToolError::Spawn {
        program: program.clone(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        tracing::debug!(program = %program.display(), "{line}");
    }
    if out.status.success() {
        Ok(ToolOutput { stdout, stderr })
    } else {
        Err(ToolError::Failed {
            program,
            status: out.status,
            stderr_tail: tail(&stderr, STDERR_TAIL_LINES),
        })
    }
}

/// The last `n` non-empty lines of `text`, joined by ` | ` to stay on one log line.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failing program's error keeps its status and the tail of its stderr.
    #[tokio::test]
    async fn failure_keeps_stderr_tail() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo one >&2; echo two >&2; exit 3"]);
        let e = run(cmd, "sh".into()).await.expect_err("exit 3");
        match e {
            ToolError::Failed {
                status,
                stderr_tail,
                ..
            } => {
                assert_eq!(status.code(), Some(3));
                assert_eq!(stderr_tail, "one | two");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A missing program is a spawn error.
    #[tokio::test]
    async fn missing_program_is_spawn_error() {
        let cmd = tokio::process::Command::new("/nonexistent/program");
        let e = run(cmd, "/nonexistent/program".into())
            .await
            .expect_err("missing");
        assert!(matches!(e, ToolError::Spawn { .. }));
    }

    /// The tail keeps the last lines only.
    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail("", 2), "");
    }
}
