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
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Error, Host, Result};

/// The server's jar; its manifest's class path names its dependencies.
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// ZooKeeper's client port on a lab host.
pub const ZOOKEEPER_CLIENT_PORT: u16 = 2181;
/// How long the server gets to answer `ruok`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of the readiness probe.
const READY_POLL: Duration = Duration::from_millis(200);
/// How long a SIGSTOP gets to stop every thread.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The server's tick: session timeouts are checked at this granularity, and the least
/// session timeout it grants is two ticks.
const TICK_MS: u32 = 500;

/// A running ZooKeeper server.
#[derive(Debug)]
pub struct ZookeeperServer {
    child: Child,
    host_port: String,
    dir: PathBuf,
}

// === impl ZookeeperServer ===

impl ZookeeperServer {
    /// Starts ZooKeeper on a free loopback port of the machine.
    ///
    /// # Errors
    /// The package is missing, the server could not be started, or it did not become ready.
    pub fn start_local() -> Result<Self> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(Error::io("bind", "127.0.0.1:0"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("read address of", "127.0.0.1:0"))?
            .port();
        drop(listener);
        let host_port = format!("127.0.0.1:{port}");
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
        let dir = std::env::temp_dir().join(format!(
            "patroni-zookeeper-{}-{}",
            std::process::id(),
            host_port.replace([':', '.'], "_")
        ));
        let _ = std::fs::remove_dir_all(&dir);
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
        let log = dir.join("zookeeper.log");
        let out = std::fs::File::create(&log).map_err(Error::io("create", &log))?;
        let err = out.try_clone().map_err(Error::io("open", &log))?;
        let child = cmd
            .args([
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.admin.enableServer=false",
                "-cp",
                ZOOKEEPER_JAR,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            ])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::Command {
                what: "start ZooKeeper".into(),
                detail: e.to_string(),
            })?;
        Ok(ZookeeperServer {
            child,
            host_port,
            dir,
        })
    }

    fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> Result<()> {
        let start = Instant::now();
        while !ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.dir.join("zookeeper.log");
                return Err(Error::Command {
                    what: format!("ZooKeeper exited ({status})"),
                    detail: std::fs::read_to_string(log).unwrap_or_default(),
                });
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::Timeout(format!(
                    "ZooKeeper at {} not ready after {READY_TIMEOUT:?}",
                    self.host_port
                )));
            }
            std::thread::sleep(READY_POLL);
        }
        Ok(())
    }

    /// `host:port` clients connect to (a `zookeeper.hosts` item).
    pub fn host_port(&self) -> &str {
        &self.host_port
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered, no session
    /// expires until it goes on.
    ///
    /// # Errors
    /// The signal could not be sent, or the threads did not stop.
    pub fn suspend(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)?;
        // The signal takes effect asynchronously: wait until every thread is stopped.
        let tasks = PathBuf::from(format!("/proc/{}/task", self.pid()));
        let start = Instant::now();
        while !all_stopped(&tasks) {
            if start.elapsed() > STOP_TIMEOUT {
                return Err(Error::Timeout(format!("ZooKeeper {} stopping", self.pid())));
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
            what: format!("send {signal} to ZooKeeper ({})", self.pid()),
            detail: e.to_string(),
        })
    }
}

impl Drop for ZookeeperServer {
    fn drop(&mut self) {
        let _ = self.signal(Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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
