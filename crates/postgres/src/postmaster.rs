//! The running server: spawning the `postgres` binary, knowing when it is ready, noticing
//! when it dies, reloading it and stopping it.
//!
//! # Guarantees
//! - "Ready" means `postmaster.pid` names *our* child and says `ready` (a primary or a hot
//!   standby) or `standby` (`hot_standby = off`) while the child is still alive; a server that exits during start-up is reported
//!   at once, not after the timeout.
//! - Stopping sends the mode's signal (smart = SIGTERM, fast = SIGINT, immediate = SIGQUIT),
//!   waits, and past the timeout escalates to immediate, then SIGKILL of the whole process
//!   group (every backend), so a stop always ends.
//! - The postmaster leads its own process group, so a Ctrl-C meant for the agent never reaches
//!   it, and it keeps running if the agent exits (like Patroni, the agent can re-attach with
//!   [`Postmaster::adopt`]).
//!
//! Its stdout and stderr are forwarded to `tracing` (target `postgres`) by background tasks. If
//! the agent's runtime stalls, the pipe fills and PostgreSQL blocks writing its log: production
//! setups should use `logging_collector` for server logs and leave stderr for start-up messages.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::time::Instant;

use crate::launcher::Programs;
use crate::postmaster_pid::{PostmasterPid, PostmasterStatus};

/// How often start-up progress (`postmaster.pid`) is checked.
pub const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often an adopted postmaster (not our child, so not waitable) is checked for exit.
pub const ADOPTED_EXIT_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// After escalating a stop to immediate, how long before SIGKILL.
pub const IMMEDIATE_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// After SIGKILL, how long to wait for the process to be gone before reporting failure.
pub const KILL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to shut PostgreSQL down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM: wait for clients to disconnect.
    Smart,
    /// SIGINT: disconnect clients, checkpoint, stop.
    Fast,
    /// SIGQUIT: stop at once; crash recovery on next start.
    Immediate,
}

/// What a stop took beyond the requested mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// The requested mode timed out; an immediate shutdown was sent.
    Immediate,
    /// Immediate timed out too; the process group was killed.
    Kill,
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopOutcome {
    /// The mode asked for.
    pub requested: StopMode,
    /// The strongest escalation needed, if any.
    pub escalated: Option<Escalation>,
    /// The exit status (unknown for an adopted postmaster).
    pub status: Option<ExitStatus>,
}

/// The server could not be started, reloaded or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PostmasterError {
    /// `postgres` could not be spawned.
    #[error("start {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The spawned child had already been reaped (no pid).
    #[error("postgres exited before its pid could be read")]
    NoPid,
    /// The server exited (during start-up, or unexpectedly).
    #[error("postgres (pid {pid}) exited: {}", describe(.status))]
    Exited {
        /// Its pid.
        pid: u32,
        /// How it ended (unknown for an adopted postmaster).
        status: Option<ExitStatus>,
    },
    /// It did not become ready in time (still running: the caller decides what to do).
    #[error("postgres (pid {pid}) not ready after {waited:?} (last status: {last:?})")]
    StartTimeout {
        /// Its pid.
        pid: u32,
        /// How long it was given.
        waited: Duration,
        /// The last status word seen in `postmaster.pid`.
        last: Option<PostmasterStatus>,
    },
    /// A signal could not be sent.
    #[error("send {signal} to postgres (pid {pid})")]
    Signal {
        /// Its pid.
        pid: u32,
        /// The signal.
        signal: Signal,
        /// The cause.
        #[source]
        source: nix::Error,
    },
    /// Waiting for the child failed.
    #[error("wait for postgres (pid {pid})")]
    Wait {
        /// Its pid.
        pid: u32,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Even SIGKILL did not end it within [`KILL_WAIT_TIMEOUT`].
    #[error("postgres (pid {pid}) survived SIGKILL")]
    Unkillable {
        /// Its pid.
        pid: u32,
    },
}

fn describe(status: &Option<ExitStatus>) -> String {
    status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
}

/// What to start.
#[derive(Debug, Clone, Copy)]
pub struct StartSpec<'a> {
    /// The data directory (`-D`).
    pub data_dir: &'a Path,
    /// The configuration file (`--config-file`), the agent's `postgresql.conf`.
    pub config_file: &'a Path,
    /// More command-line options (`ServerParameters::postmaster_options`).
    pub options: &'a [String],
}

enum Proc {
    /// Spawned by us: waitable.
    Child(tokio::process::Child),
    /// Found running (`postmaster.pid`): only signals and liveness checks.
    Adopted,
}

/// A running postmaster.
pub struct Postmaster {
    proc: Proc,
    pid: u32,
    data_dir: PathBuf,
    /// Set once the process is known to have exited.
    exited: Option<Option<ExitStatus>>,
}

impl std::fmt::Debug for Postmaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postmaster")
            .field("pid", &self.pid)
            .field("data_dir", &self.data_dir)
            .field("adopted", &matches!(self.proc, Proc::Adopted))
            .field("exited", &self.exited)
            .finish()
    }
}

// === impl StopMode ===

impl StopMode {
    /// The signal that requests this mode.
    pub fn signal(self) -> Signal {
        match self {
            Self::Smart => Signal::SIGTERM,
            Self::Fast => Signal::SIGINT,
            Self::Immediate => Signal::SIGQUIT,
        }
    }
}

// === impl Postmaster ===

impl Postmaster {
    /// Spawns `postgres -D DATA --config-file=CONF OPTIONS…` through the launcher. Does not
    /// wait: see [`Postmaster::wait_ready`].
    ///
    /// # Errors
    /// The program cannot be spawned.
    pub fn spawn(programs: &Programs, spec: &StartSpec<'_>) -> Result<Self, PostmasterError> {
        let program = programs.program("postgres");
        let mut cmd = programs.command("postgres");
        cmd.arg("-D")
            .arg(spec.data_dir)
            .arg(format!("--config-file={}", spec.config_file.display()))
            .args(spec.options)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|source| PostmasterError::Spawn { program, source })?;
        let pid = child.id().ok_or(PostmasterError::NoPid)?;
        tracing::info!(pid, data_dir = %spec.data_dir.display(), "postmaster started");
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_log(out, pid));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_log(err, pid));
        }
        Ok(Postmaster {
            proc: Proc::Child(child),
            pid,
            data_dir: spec.data_dir.to_path_buf(),
            exited: None,
        })
    }

    /// Re-attaches to a postmaster already running on `data_dir` (the agent restarted while
    /// PostgreSQL kept running). `None` when `postmaster.pid` is absent, unreadable, or names
    /// a process that is gone.
    pub fn adopt(data_dir: &Path) -> Option<Self> {
        let pid_file = PostmasterPid::read(data_dir).ok()?;
        let raw = i32::try_from(pid_file.pid).ok()?;
        kill(Pid::from_raw(raw), None).ok()?;
        Some(Postmaster {
            proc: Proc::Adopted,
            pid: pid_file.pid,
            data_dir: data_dir.to_path_buf(),
            exited: None,
        })
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Crash detection: `Some(status)` once the process has exited (status unknown for an
    /// adopted postmaster), `None` while it runs. Never blocks.
    ///
    /// # Errors
    /// Checking the child failed.
    pub fn try_exit(&mut self) -> Result<Option<Option<ExitStatus>>, PostmasterError> {
        if self.exited.is_some() {
            return Ok(self.exited);
        }
        let exited = match &mut self.proc {
            Proc::Child(child) => child
                .try_wait()
                .map_err(|source| PostmasterError::Wait {
                    pid: self.pid,
                    source,
                })?
                .map(Some),
            Proc::Adopted => (!pid_alive(self.pid)).then_some(None),
        };
        self.exited = exited;
        Ok(exited)
    }

    /// Whether the process still runs (a failed check counts as running).
    pub fn is_running(&mut self) -> bool {
        !matches!(self.try_exit(), Ok(Some(_)))
    }

    /// Waits until `postmaster.pid` names this process and says start-up finished (`ready`, or
    /// `standby` when `hot_standby` is off).
    ///
    /// # Errors
    /// [`PostmasterError::Exited`] as soon as the process exits; [`PostmasterError::StartTimeout`]
    /// after `timeout` (the server keeps running).
    pub async fn wait_ready(
        &mut self,
        timeout: Duration,
    ) -> Result<PostmasterStatus, PostmasterError> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(status) = self.try_exit()? {
                return Err(PostmasterError::Exited {
                    pid: self.pid,
                    status,
                });
            }
            if let Ok(text) = tokio::fs::read_to_string(self.data_dir.join("postmaster.pid")).await
                && let Ok(file) = PostmasterPid::parse(&text)
                && file.pid == self.pid
            {
                last = file.status;
                if let Some(status) = file.status.filter(|_| file.accepts_connections()) {
                    return Ok(status);
                }
            }
            if Instant::now() >= deadline {
                return Err(PostmasterError::StartTimeout {
                    pid: self.pid,
                    waited: timeout,
                    last,
                });
            }
            tokio::time::sleep(READY_POLL_INTERVAL).await;
        }
    }

    /// Sends `signal` to the postmaster.
    ///
    /// # Errors
    /// The signal cannot be sent (no such process, no permission).
    pub fn signal(&self, signal: Signal) -> Result<(), PostmasterError> {
        let err = |source| PostmasterError::Signal {
            pid: self.pid,
            signal,
            source,
        };
        let raw = i32::try_from(self.pid).map_err(|_| err(nix::Error::ESRCH))?;
        kill(Pid::from_raw(raw), signal).map_err(err)
    }

    /// Reloads the configuration (SIGHUP).
    ///
    /// # Errors
    /// The signal cannot be sent.
    pub fn reload(&self) -> Result<(), PostmasterError> {
        self.signal(Signal::SIGHUP)
    }

    /// Stops the server in `mode`; after `timeout` (`None`: wait as long as it takes)
    /// escalates to immediate, then after [`IMMEDIATE_STOP_TIMEOUT`] kills the process group.
    ///
    /// # Errors
    /// A signal cannot be sent, waiting fails, or the process survives SIGKILL.
    pub async fn stop(
        &mut self,
        mode: StopMode,
        timeout: Option<Duration>,
    ) -> Result<StopOutcome, PostmasterError> {
        let outcome = |escalated, status| StopOutcome {
            requested: mode,
            escalated,
            status,
        };
        if let Some(status) = self.try_exit()? {
            return Ok(outcome(None, status));
        }
        tracing::info!(pid = self.pid, ?mode, "stopping postgres");
        self.signal_unless_gone(mode.signal())?;
        if let Some(status) = self.wait_exit(timeout).await? {
            return Ok(outcome(None, status));
        }
        if mode != StopMode::Immediate {
            tracing::warn!(
                pid = self.pid,
                ?mode,
                ?timeout,
                "stop timed out; escalating to immediate"
            );
            self.signal_unless_gone(Signal::SIGQUIT)?;
            if let Some(status) = self.wait_exit(Some(IMMEDIATE_STOP_TIMEOUT)).await? {
                return Ok(outcome(Some(Escalation::Immediate), status));
            }
        }
        tracing::warn!(
            pid = self.pid,
            "immediate stop timed out; killing the process group"
        );
        if let Ok(raw) = i32::try_from(self.pid) {
            // The group is gone already if this fails; the wait below tells.
            let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
        }
        match self.wait_exit(Some(KILL_WAIT_TIMEOUT)).await? {
            Some(status) => Ok(outcome(Some(Escalation::Kill), status)),
            None => Err(PostmasterError::Unkillable { pid: self.pid }),
        }
    }

    /// Sends `signal`; a process that is already gone is not an error.
    fn signal_unless_gone(&self, signal: Signal) -> Result<(), PostmasterError> {
        match self.signal(signal) {
            Err(PostmasterError::Signal {
                source: nix::Error::ESRCH,
                ..
            }) => Ok(()),
            other => other,
        }
    }

    /// Waits up to `timeout` (`None`: forever) for the process to exit. `Ok(None)` on timeout.
    async fn wait_exit(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Option<ExitStatus>>, PostmasterError> {
        let pid = self.pid;
        let wait = async {
            match &mut self.proc {
                Proc::Child(child) => child
                    .wait()
                    .await
                    .map(Some)
                    .map_err(|source| PostmasterError::Wait { pid, source }),
                Proc::Adopted => {
                    while pid_alive(pid) {
                        tokio::time::sleep(ADOPTED_EXIT_POLL_INTERVAL).await;
                    }
                    Ok(None)
                }
            }
        };
        let result = match timeout {
            Some(t) => match tokio::time::timeout(t, wait).await {
                Ok(r) => r?,
                Err(_) => return Ok(None),
            },
            None => wait.await?,
        };
        self.exited = Some(result);
        tracing::info!(pid, status = %describe(&result), "postgres exited");
        Ok(Some(result))
    }
}

/// Whether a process with `pid` exists (signal 0).
fn pid_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|raw| match kill(Pid::from_raw(raw), None) {
        Ok(()) => true,
        // It exists but belongs to someone else.
        Err(e) => e == nix::Error::EPERM,
    })
}

/// Forwards each line PostgreSQL prints to `tracing`: PANIC and FATAL as warnings, the rest
/// as info.
async fn forward_log(stream: impl AsyncRead + Unpin, pid: u32) {
    let mut lines = BufReader::new(stream).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if line.contains("PANIC:") || line.contains("FATAL:") {
                    tracing::warn!(target: "postgres", pid, "{line}");
                } else {
                    tracing::info!(target: "postgres", pid, "{line}");
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(target: "postgres", pid, "stopped reading the server log: {e}");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BinDir, Launcher};

    /// `Postmaster::spawn`, retried while the freshly written script is
    /// "text file busy": another test thread may have forked while the
    /// script's write descriptor was open (rust-lang/rust#114554).
    fn spawn(programs: &Programs, spec: &StartSpec<'_>) -> Result<Postmaster, PostmasterError> {
        for _ in 0..100 {
            match Postmaster::spawn(programs, spec) {
                Err(PostmasterError::Spawn { ref source, .. })
                    if source.kind() == std::io::ErrorKind::ExecutableFileBusy =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
        Postmaster::spawn(programs, spec)
    }

    /// A fake "postgres" (a shell script) that writes a ready postmaster.pid naming itself.
    fn fake_server(dir: &Path, body: &str) -> Programs {
        let script = dir.join("postgres");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).expect("write script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Programs::new(BinDir::new(Some(dir)), Launcher::direct())
    }

    const WRITE_READY: &str =
        r#"printf '%s\n%s\n1\n5432\n\n\n\nready   \n' $$ "$2" > "$2/postmaster.pid""#;

    /// Ready means the pid file names the child and says ready; fast stop ends it.
    #[tokio::test]
    async fn ready_then_fast_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let programs = fake_server(
            dir.path(),
            &format!("{WRITE_READY}\ntrap 'exit 0' INT\nwhile :; do sleep 0.05; done"),
        );
        let mut pm = spawn(
            &programs,
            &StartSpec {
                data_dir: dir.path(),
                config_file: &dir.path().join("postgresql.conf"),
                options: &[],
            },
        )
        .expect("spawn");
        let status = pm.wait_ready(Duration::from_secs(10)).await.expect("ready");
        assert_eq!(status, PostmasterStatus::Ready);
        assert!(pm.is_running());
        let out = pm
            .stop(StopMode::Fast, Some(Duration::from_secs(10)))
            .await
            .expect("stop");
        assert_eq!(out.escalated, None);
        assert!(out.status.is_some_and(|s| s.success()));
        assert!(!pm.is_running());
    }

    /// A server that exits during start-up is reported at once, with its status.
    #[tokio::test]
    async fn exit_during_startup_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let programs = fake_server(dir.path(), "exit 7");
        let mut pm = spawn(
            &programs,
            &StartSpec {
                data_dir: dir.path(),
                config_file: Path::new("/x"),
                options: &[],
            },
        )
        .expect("spawn");
        match pm.wait_ready(Duration::from_secs(10)).await {
            Err(PostmasterError::Exited {
                status: Some(s), ..
            }) => assert_eq!(s.code(), Some(7)),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A server ignoring the fast-stop signal is escalated to immediate.
    #[tokio::test]
    async fn stubborn_server_is_escalated_to_immediate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let programs = fake_server(
            dir.path(),
            &format!("{WRITE_READY}\ntrap '' INT\nwhile :; do sleep 0.05; done"),
        );
        let mut pm = spawn(
            &programs,
            &StartSpec {
                data_dir: dir.path(),
                config_file: Path::new("/x"),
                options: &[],
            },
        )
        .expect("spawn");
        pm.wait_ready(Duration::from_secs(10)).await.expect("ready");
        let out = pm
            .stop(StopMode::Fast, Some(Duration::from_millis(200)))
            .await
            .expect("stop");
        assert_eq!(out.escalated, Some(Escalation::Immediate));
        assert!(!pm.is_running());
    }

    /// A server that does not get ready times out but keeps running.
    #[tokio::test]
    async fn start_timeout_leaves_server_running() {
        let dir = tempfile::tempdir().expect("tempdir");
        let programs = fake_server(dir.path(), "while :; do sleep 0.05; done");
        let mut pm = spawn(
            &programs,
            &StartSpec {
                data_dir: dir.path(),
                config_file: Path::new("/x"),
                options: &[],
            },
        )
        .expect("spawn");
        let e = pm
            .wait_ready(Duration::from_millis(300))
            .await
            .expect_err("timeout");
        assert!(
            matches!(e, PostmasterError::StartTimeout { last: None, .. }),
            "{e:?}"
        );
        assert!(pm.is_running());
        pm.stop(StopMode::Immediate, Some(Duration::from_secs(5)))
            .await
            .expect("stop");
        assert!(
            Postmaster::adopt(dir.path()).is_none(),
            "no pid file, nothing to adopt"
        );
    }
}
