//! A real ZooKeeper server for tests of the ZooKeeper DCS: Debian's `zookeeper` package (the
//! jar in `/usr/share/java`, run with the machine's Java), one standalone server, its own
//! configuration and data in a temporary directory.
//!
//! [`ZookeeperServer::start_local`] serves on the machine's loopback, for tests whose DCS
//! clients run in the test process; [`ZookeeperServer::start_on`] serves at a lab host's
//! address, where agents on other hosts reach it. Dropping the server kills it by pid
//! (resuming it first if a test [`suspend`](ZookeeperServer::suspend)ed it) and removes its
//! directory, even on panic.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::server::{FrozenServer, ServerProcess, free_port};
use crate::{Error, Host, Result};

/// The server's jar; its manifest's class path names its dependencies.
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// ZooKeeper's client port on a lab host.
pub const ZOOKEEPER_CLIENT_PORT: u16 = 2181;
/// How long the server gets to answer `ruok`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of the readiness probe.
const READY_POLL: Duration = Duration::from_millis(200);
/// The server's tick: session timeouts are checked at this granularity, and the least
/// session timeout it grants is two ticks.
const TICK_MS: u32 = 500;

/// A running ZooKeeper server.
#[derive(Debug)]
pub struct ZookeeperServer {
    process: ServerProcess,
    host_port: String,
}

// === impl ZookeeperServer ===

impl ZookeeperServer {
    /// Starts ZooKeeper on a free loopback port of the machine.
    ///
    /// # Errors
    /// The package is missing, the server could not be started, or it did not become ready.
    pub fn start_local() -> Result<Self> {
        let host_port = format!("127.0.0.1:{}", free_port()?);
        let mut server = Self::start(Command::new("java"), host_port)?;
        let addr = server.host_port.clone();
        server.wait_ready(move || ruok(&addr))?;
        Ok(server)
    }

    /// Starts ZooKeeper on `host`, serving clients at `<host ip>:2181`.
    ///
    /// # Errors
    /// The package is missing, the server could not be started, or it did not become ready.
    pub fn start_on(host: &Host) -> Result<Self> {
        let host_port = format!("{}:{ZOOKEEPER_CLIENT_PORT}", host.ip());
        let mut server = Self::start(host.command("java"), host_port)?;
        let addr = server.host_port.clone();
        server.wait_ready(|| {
            let addr = addr.clone();
            host.run_inside(move || ruok(&addr)).unwrap_or(false)
        })?;
        Ok(server)
    }

    fn start(mut cmd: Command, host_port: String) -> Result<Self> {
        if !Path::new(ZOOKEEPER_JAR).exists() {
            return Err(Error::Command {
                what: "start ZooKeeper".into(),
                detail: format!(
                    "{ZOOKEEPER_JAR} is missing: install Debian's zookeeper package \
                     (xtask/scripts/install-test-deps.sh)"
                ),
            });
        }
        let dir = ServerProcess::fresh_dir("zookeeper", &host_port)?;
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(Error::io("create", &data))?;
        let (ip, port) = host_port.rsplit_once(':').unwrap_or((&host_port, "2181"));
        let cfg = dir.join("zoo.cfg");
        let text = format!(
            "tickTime={TICK_MS}\ninitLimit=10\nsyncLimit=5\ndataDir={}\n\
             clientPortAddress={ip}\nclientPort={port}\nminSessionTimeout={}\n\
             maxSessionTimeout=120000\nmaxClientCnxns=0\n4lw.commands.whitelist=ruok,srvr\n\
             admin.enableServer=false\n",
            data.display(),
            2 * TICK_MS,
        );
        std::fs::write(&cfg, text).map_err(Error::io("write", &cfg))?;
        cmd.args([
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.admin.enableServer=false",
            "-cp",
            ZOOKEEPER_JAR,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        ])
        .arg(&cfg);
        Ok(ZookeeperServer {
            process: ServerProcess::spawn("ZooKeeper", cmd, dir)?,
            host_port,
        })
    }

    fn wait_ready(&mut self, ready: impl FnMut() -> bool) -> Result<()> {
        self.process
            .wait_ready(&self.host_port, READY_TIMEOUT, READY_POLL, ready)
    }

    /// `host:port` clients connect to (a `zookeeper.hosts` item).
    pub fn host_port(&self) -> &str {
        &self.host_port
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered, no session
    /// expires until it goes on.
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

/// ZooKeeper's `ruok` four-letter command answered `imok`.
fn ruok(host_port: &str) -> bool {
    let Ok(addr) = host_port.parse() else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = String::new();
    s.write_all(b"ruok").is_ok() && s.read_to_string(&mut answer).is_ok() && answer == "imok"
}
