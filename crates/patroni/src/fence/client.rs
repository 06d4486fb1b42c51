//! The agent's end of the fence: starts the fence process and moves its deadline.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{GUARD_FLAG, guard, procfs};

/// The agent's handle on its fence process.
#[derive(Debug)]
pub struct FenceClient {
    program: PathBuf,
    data_dir: PathBuf,
    child: Child,
    stdin: ChildStdin,
    /// Whether the last instruction armed the fence (a disarmed one is not disarmed again).
    armed: bool,
    /// Whether fences left by an earlier agent on this data directory were stopped.
    predecessors_stopped: bool,
}

/// What went wrong with the fence process.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The process could not be started.
    #[error("cannot start the lease fence ({program})")]
    Spawn {
        /// The program started.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The process does not take instructions any more.
    #[error("the lease fence process is gone")]
    Gone(#[source] std::io::Error),
}

// === impl FenceClient ===

impl FenceClient {
    /// Starts `program --lease-fence DATA_DIR` (normally this very executable).
    ///
    /// # Errors
    /// [`FenceError::Spawn`] when it cannot be started.
    pub fn start(program: &Path, data_dir: &Path) -> Result<Self, FenceError> {
        let mut child = Command::new(program)
            // `ps` shows `patroni --lease-fence DATA_DIR`, also when started as /proc/self/exe.
            .arg0("patroni")
            .arg(GUARD_FLAG)
            .arg(data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|source| FenceError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let stdin = child.stdin.take().ok_or_else(|| FenceError::Spawn {
            program: program.display().to_string(),
            source: std::io::Error::other("no stdin pipe"),
        })?;
        Ok(FenceClient {
            program: program.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            child,
            stdin,
            armed: false,
            predecessors_stopped: false,
        })
    }

    /// A new fence process in place of this one (which stopped taking instructions); the old
    /// one, if it still runs, keeps its deadline.
    ///
    /// # Errors
    /// [`FenceError::Spawn`] when it cannot be started.
    pub fn restart(&mut self) -> Result<(), FenceError> {
        let fresh = FenceClient::start(&self.program, &self.data_dir)?;
        let _ = self.child.try_wait();
        *self = fresh;
        Ok(())
    }

    /// The fence process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fences postmaster `pid` when `left` has passed from now without another call.
    ///
    /// # Errors
    /// [`FenceError::Gone`] when the process does not take the instruction.
    pub fn arm(&mut self, pid: u32, left: Duration) -> Result<(), FenceError> {
        // The clock is read here, after the caller computed `left`: the deadline can only
        // come out earlier than meant, never later.
        let deadline = guard::monotonic_ns() + left.as_nanos();
        self.send(&format!("arm {pid} {deadline}"))?;
        self.armed = true;
        if !self.predecessors_stopped {
            // A fence left by an earlier agent of this data directory (killed, then started
            // again) still holds that agent's deadline; ours covers the server now.
            for old in procfs::fences_of(&self.data_dir, Some(self.pid())) {
                tracing::info!(pid = old, "stopping the lease fence of an earlier agent");
                let _ = kill(
                    Pid::from_raw(i32::try_from(old).unwrap_or(i32::MAX)),
                    Signal::SIGTERM,
                );
            }
            self.predecessors_stopped = true;
        }
        Ok(())
    }

    /// Nothing to fence.
    ///
    /// # Errors
    /// [`FenceError::Gone`] when the process does not take the instruction.
    pub fn disarm(&mut self) -> Result<(), FenceError> {
        if !self.armed {
            return Ok(());
        }
        self.send("disarm")?;
        self.armed = false;
        Ok(())
    }

    fn send(&mut self, line: &str) -> Result<(), FenceError> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(FenceError::Gone)
    }
}

impl Drop for FenceClient {
    /// Ends the input: a disarmed fence exits, an armed one still fires at its deadline (the
    /// agent may be going away with its server still running as a primary).
    fn drop(&mut self) {
        let _ = self.child.try_wait();
    }
}
