//! A real etcd server for tests of the etcd3 DCS: the lab's `testenv etcd` (the embedded
//! etcd of the Kubernetes module graph, v3.6), one member, data in a temporary directory.
//!
//! [`EtcdServer::start_local`] serves on the machine's loopback, for tests whose DCS clients
//! run in the test process; [`EtcdServer::start_on`] serves at a lab host's address, where
//! agents on other hosts reach it. Dropping the server kills it by pid (resuming it first if
//! a test [`suspend`](EtcdServer::suspend)ed it) and removes its data, even on panic.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Error, Host, Result, testenv_binary};

/// How long etcd gets to write its ready file.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of the ready file.
const READY_POLL: Duration = Duration::from_millis(100);
/// How long a SIGSTOP gets to stop every thread.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd's client port on a lab host.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port on a lab host.
const ETCD_PEER_PORT: u16 = 2380;

/// PEM files for an etcd serving clients over TLS.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The CA that signed the server certificate and must sign client certificates.
    pub ca: PathBuf,
    /// The server certificate (valid for 127.0.0.1).
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
}

/// A running etcd server.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    client_url: String,
    dir: PathBuf,
}

// === impl EtcdServer ===

impl EtcdServer {
    /// Starts etcd on free loopback ports of the machine.
    ///
    /// # Errors
    /// The binary could not be built or started, or etcd did not become ready.
    pub fn start_local() -> Result<Self> {
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        Self::start(Command::new(testenv_binary()?), client_url, peer_url)
    }

    /// Starts etcd on free loopback ports of the machine, serving clients over TLS
    /// (`https://127.0.0.1:PORT`) with `tls`'s server certificate and requiring client
    /// certificates signed by its CA.
    ///
    /// # Errors
    /// The binary could not be built or started, or etcd did not become ready.
    pub fn start_local_tls(tls: &EtcdTls) -> Result<Self> {
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(testenv_binary()?);
        cmd.arg("etcd")
            .arg("--cert-file")
            .arg(&tls.cert)
            .arg("--key-file")
            .arg(&tls.key)
            .arg("--trusted-ca-file")
            .arg(&tls.ca);
        Self::start_with(cmd, client_url, peer_url)
    }

    /// Starts etcd on `host`, serving clients at `http://<host ip>:2379`.
    ///
    /// # Errors
    /// The binary could not be built or started, or etcd did not become ready.
    pub fn start_on(host: &Host) -> Result<Self> {
        let client_url = format!("http://{}:{ETCD_CLIENT_PORT}", host.ip());
        let peer_url = format!("http://{}:{ETCD_PEER_PORT}", host.ip());
        Self::start(host.command(testenv_binary()?), client_url, peer_url)
    }

    fn start(mut cmd: Command, client_url: String, peer_url: String) -> Result<Self> {
        cmd.arg("etcd");
        Self::start_with(cmd, client_url, peer_url)
    }

    /// Starts `cmd` (`testenv etcd [TLS flags]`) with the data, ready-file and URL flags.
    fn start_with(mut cmd: Command, client_url: String, peer_url: String) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "patroni-etcd-{}-{}",
            std::process::id(),
            client_url.replace([':', '/', '.'], "_")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let ready = dir.join("ready");
        let log = dir.join("etcd.log");
        let out = std::fs::File::create(&log).map_err(Error::io("create", &log))?;
        let err = out.try_clone().map_err(Error::io("open", &log))?;
        let child = cmd
            .arg("--dir")
            .arg(&dir)
            .arg("--ready-file")
            .arg(&ready)
            .args(["--client-url", &client_url, "--peer-url", &peer_url])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::Command {
                what: "start etcd".into(),
                detail: e.to_string(),
            })?;
        let mut server = EtcdServer {
            child,
            client_url,
            dir,
        };
        server.wait_ready(&ready, &log)?;
        Ok(server)
    }

    fn wait_ready(&mut self, ready: &Path, log: &Path) -> Result<()> {
        let start = Instant::now();
        while !ready.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                let detail = std::fs::read_to_string(log).unwrap_or_default();
                return Err(Error::Command {
                    what: format!("etcd exited ({status})"),
                    detail,
                });
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::Timeout(format!(
                    "etcd at {} not ready after {READY_TIMEOUT:?}",
                    self.client_url
                )));
            }
            std::thread::sleep(READY_POLL);
        }
        Ok(())
    }

    /// The URL clients use (`http://host:port`).
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// `host:port` of the client URL (an `etcd3.hosts` item).
    pub fn host_port(&self) -> &str {
        self.client_url
            .strip_prefix("http://")
            .unwrap_or(&self.client_url)
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    ///
    /// # Errors
    /// The signal could not be sent.
    pub fn suspend(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)?;
        // The signal takes effect asynchronously: a request already being served on another
        // core could still be answered. Wait until every thread is stopped.
        let tasks = PathBuf::from(format!("/proc/{}/task", self.pid()));
        let start = Instant::now();
        while !all_stopped(&tasks) {
            if start.elapsed() > STOP_TIMEOUT {
                return Err(Error::Timeout(format!("etcd {} stopping", self.pid())));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Lets a [`suspend`](Self::suspend)ed server go on (SIGCONT).
    ///
    /// # Errors
    /// The signal could not be sent.
    pub fn resume(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid()), signal).map_err(|e| Error::Command {
            what: format!("send {signal} to etcd ({})", self.pid()),
            detail: e.to_string(),
        })
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.signal(Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::io("bind", "127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("read the address of", "127.0.0.1:0"))?
        .port();
    Ok(port)
}
