//! A real etcd server for tests of the etcd3 DCS: the lab's `testenv etcd` (the embedded
//! etcd of the Kubernetes module graph, v3.6), one member, data in a temporary directory.
//!
//! [`EtcdServer::start_local`] serves on the machine's loopback, for tests whose DCS clients
//! run in the test process; [`EtcdServer::start_on`] serves at a lab host's address, where
//! agents on other hosts reach it. Dropping the server kills it by pid (resuming it first if
//! a test [`suspend`](EtcdServer::suspend)ed it) and removes its data, even on panic.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::server::{FrozenServer, ServerProcess, free_port};
use crate::{Host, Result, testenv_binary};

/// How long etcd gets to write its ready file.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of the ready file.
const READY_POLL: Duration = Duration::from_millis(100);
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
    process: ServerProcess,
    client_url: String,
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
        let dir = ServerProcess::fresh_dir("etcd", &client_url)?;
        let ready = dir.join("ready");
        cmd.arg("--dir")
            .arg(&dir)
            .arg("--ready-file")
            .arg(&ready)
            .args(["--client-url", &client_url, "--peer-url", &peer_url]);
        let mut process = ServerProcess::spawn("etcd", cmd, dir)?;
        process.wait_ready(&client_url, READY_TIMEOUT, READY_POLL, || ready.exists())?;
        Ok(EtcdServer {
            process,
            client_url,
        })
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
        self.process.pid()
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    ///
    /// # Errors
    /// The signal could not be sent, or the threads did not stop.
    pub fn suspend(&self) -> Result<()> {
        self.process.suspend()
    }

    /// Lets a [`suspend`](Self::suspend)ed server go on (SIGCONT).
    ///
    /// # Errors
    /// The signal could not be sent.
    pub fn resume(&self) -> Result<()> {
        self.process.resume()
    }

    /// [`suspend`](Self::suspend)s the server until the returned guard is dropped.
    ///
    /// # Errors
    /// As [`suspend`](Self::suspend).
    pub fn freeze(&self) -> Result<FrozenServer<'_>> {
        self.process.freeze()
    }
}
