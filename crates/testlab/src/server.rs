//! A store's server process that a test starts and owns ([`EtcdServer`](crate::EtcdServer),
//! [`ZookeeperServer`](crate::ZookeeperServer)): a fresh directory of its own under the
//! temporary directory, its output in a log file there, a wait until it answers, freezing
//! (SIGSTOP, until every thread has stopped) and thawing (SIGCONT), and on drop a kill by pid
//! and the directory removed, even on panic.
//!
//! # Guarantees
//! A server never outlives the value that owns it, and a frozen one is thawed before it is
//! killed (a stopped process would otherwise keep its port until the kill is delivered).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Error, Result};

/// How long a SIGSTOP gets to stop every thread.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Poll interval while waiting for the threads to stop.
const STOP_POLL: Duration = Duration::from_millis(5);

/// A running server process, named for messages (`"etcd"`, `"ZooKeeper"`).
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: &'static str,
    child: Child,
    dir: PathBuf,
}

/// While alive, the server it was made from is frozen (SIGSTOP): connections stay open and
/// nothing is answered. Dropping it thaws the server (SIGCONT), panics included.
#[derive(Debug)]
#[must_use = "the server is thawed when this is dropped"]
pub struct FrozenServer<'a> {
    server: &'a ServerProcess,
}

// === impl ServerProcess ===

impl ServerProcess {
    /// A fresh, empty directory for server `name` listening at `address`, unique to this
    /// test process and address (left-overs of an earlier run are removed).
    ///
    /// # Errors
    /// The directory could not be created.
    pub(crate) fn fresh_dir(name: &str, address: &str) -> Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!(
            "patroni-{name}-{}-{}",
            std::process::id(),
            address.replace([':', '/', '.'], "_")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        Ok(dir)
    }

    /// Spawns `cmd` with its stdout and stderr in [`log`](Self::log), owning `dir` from now
    /// on (removed on drop).
    ///
    /// # Errors
    /// The log file could not be created or the command not started.
    pub(crate) fn spawn(name: &'static str, mut cmd: Command, dir: PathBuf) -> Result<Self> {
        let log = Self::log_in(&dir, name);
        let out = std::fs::File::create(&log).map_err(Error::io("create", &log))?;
        let err = out.try_clone().map_err(Error::io("open", &log))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::Command {
                what: format!("start {name}"),
                detail: e.to_string(),
            })?;
        Ok(ServerProcess { name, child, dir })
    }

    /// Polls `ready` every `poll` until it holds.
    ///
    /// # Errors
    /// The server exited (its log is the detail), or `ready` did not hold within `timeout`.
    pub(crate) fn wait_ready(
        &mut self,
        address: &str,
        timeout: Duration,
        poll: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let start = Instant::now();
        while !ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Command {
                    what: format!("{} exited ({status})", self.name),
                    detail: std::fs::read_to_string(self.log()).unwrap_or_default(),
                });
            }
            if start.elapsed() > timeout {
                return Err(Error::Timeout(format!(
                    "{} at {address} not ready after {timeout:?}",
                    self.name
                )));
            }
            std::thread::sleep(poll);
        }
        Ok(())
    }

    /// The server's log file (stdout and stderr).
    pub(crate) fn log(&self) -> PathBuf {
        Self::log_in(&self.dir, self.name)
    }

    fn log_in(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{}.log", name.to_lowercase()))
    }

    /// The server's pid.
    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// Freezes the server (SIGSTOP) and waits until every thread has stopped.
    ///
    /// # Errors
    /// The signal could not be sent, or the threads did not stop within 5 s.
    pub(crate) fn suspend(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)?;
        // The signal takes effect asynchronously: a request already being served on another
        // core could still be answered. Wait until every thread is stopped.
        let tasks = PathBuf::from(format!("/proc/{}/task", self.pid()));
        let start = Instant::now();
        while !all_stopped(&tasks) {
            if start.elapsed() > STOP_TIMEOUT {
                return Err(Error::Timeout(format!(
                    "{} {} stopping",
                    self.name,
                    self.pid()
                )));
            }
            std::thread::sleep(STOP_POLL);
        }
        Ok(())
    }

    /// Lets a [`suspend`](Self::suspend)ed server go on (SIGCONT).
    ///
    /// # Errors
    /// The signal could not be sent.
    pub(crate) fn resume(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// [`suspend`](Self::suspend), thawed when the guard is dropped.
    ///
    /// # Errors
    /// As [`suspend`](Self::suspend).
    pub(crate) fn freeze(&self) -> Result<FrozenServer<'_>> {
        self.suspend()?;
        Ok(FrozenServer { server: self })
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid()), signal).map_err(|e| Error::Command {
            what: format!("send {signal} to {} ({})", self.name, self.pid()),
            detail: e.to_string(),
        })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.signal(Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// === impl FrozenServer ===

impl Drop for FrozenServer<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.server.resume() {
            tracing::warn!("failed to thaw {}: {e:#}", self.server.name);
        }
    }
}

/// Whether every thread under `tasks` (`/proc/<pid>/task`) is stopped (state `T`).
fn all_stopped(tasks: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return false;
    };
    entries.flatten().all(|e| {
        std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next())
            })
            .is_some_and(|state| state == 'T' || state == 't')
    })
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::io("bind", "127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("read the address of", "127.0.0.1:0"))?
        .port();
    Ok(port)
}
