//! One test host: a network namespace on the lab bridge with its own
//! address, standing in for a pod.

use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::{Result, netns};

/// A test host. Dropping it kills every process inside it (by pid) and
/// removes its namespace, unless it was [`kept`](Host::keep).
#[derive(Debug)]
pub struct Host {
    info: HostInfo,
    keep: bool,
}

/// What identifies a host; written to `lab.json` for hosts that outlive
/// their creator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostInfo {
    /// Logical name (e.g. `member-0`), unique in the lab.
    pub name: String,
    /// Network namespace (`plab<OWNER>-h<N>`).
    pub netns: String,
    /// The host's address on the lab network (never loopback).
    pub ip: String,
    /// Namespace holding the bridge the host is plugged into.
    pub hub: String,
    /// The host's link on the bridge (inside `hub`): down = cut off.
    pub link: String,
}

// === impl Host ===

impl Host {
    /// Creates the namespace and plugs it into the bridge at `ip`.
    pub(crate) fn create(info: HostInfo, prefix_len: u8) -> Result<Self> {
        netns::create(&info.netns)?;
        // From here on, Drop cleans up whatever part was made.
        let host = Host { info, keep: false };
        let i = &host.info;
        netns::ip(&[
            "-n", &i.hub, "link", "add", &i.link, "type", "veth", "peer", "name", "eth0", "netns",
            &i.netns,
        ])?;
        netns::ip(&["-n", &i.hub, "link", "set", &i.link, "master", "br0", "up"])?;
        netns::ip(&[
            "-n",
            &i.netns,
            "addr",
            "add",
            &format!("{}/{prefix_len}", i.ip),
            "dev",
            "eth0",
        ])?;
        netns::ip(&["-n", &i.netns, "link", "set", "eth0", "up"])?;
        Ok(host)
    }

    /// Re-opens a host listed in `lab.json`, without taking ownership.
    pub fn attach(info: HostInfo) -> Self {
        Host { info, keep: true }
    }

    /// Logical name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The host's address on the lab network.
    pub fn ip(&self) -> &str {
        &self.info.ip
    }

    /// The host's network namespace.
    pub fn netns(&self) -> &str {
        &self.info.netns
    }

    /// Identifying data.
    pub fn info(&self) -> &HostInfo {
        &self.info
    }

    /// Keeps the host alive past this handle (for `cargo xtask lab up`).
    pub fn keep(mut self) -> HostInfo {
        self.keep = true;
        self.info.clone()
    }

    /// A command that runs `program` on this host, as root.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.info.netns]).arg(program);
        cmd
    }

    /// A command that runs `program` on this host as the unprivileged OS
    /// user `user` (PostgreSQL refuses to run as root). The spawned pid is
    /// the program's own: `ip netns exec` and `setpriv` both exec.
    pub fn command_as(&self, user: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.info.netns, "setpriv"])
            .arg(format!("--reuid={user}"))
            .arg(format!("--regid={user}"))
            .args(["--init-groups", "--"])
            .arg(program);
        cmd
    }

    /// Cuts the host off the lab network (its link on the bridge goes down).
    pub fn disconnect(&self) -> Result<()> {
        netns::ip(&["-n", &self.info.hub, "link", "set", &self.info.link, "down"])
    }

    /// Plugs a disconnected host back in.
    pub fn reconnect(&self) -> Result<()> {
        netns::ip(&["-n", &self.info.hub, "link", "set", &self.info.link, "up"])
    }

    /// Runs `f` on a thread of this process that has joined the host's
    /// network namespace, and returns its result: every socket `f` opens
    /// (a tokio runtime built inside it included) lives on the host, as if
    /// `f` ran in the pod.
    ///
    /// # Errors
    /// The namespace could not be opened or joined.
    pub fn run_inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let path = std::path::Path::new("/run/netns").join(&self.info.netns);
        let ns = std::fs::File::open(&path).map_err(crate::Error::io("open", &path))?;
        let handle = std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map(|()| f())
        });
        match handle.join() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(crate::Error::Command {
                what: format!("join network namespace {}", path.display()),
                detail: e.to_string(),
            }),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Gives programs started on this host ([`command`](Self::command)) `text` as their
    /// `/etc/resolv.conf`: `ip netns exec` mounts `/etc/netns/<netns>/resolv.conf` over it.
    /// Removed with the host.
    ///
    /// # Errors
    /// The file could not be written.
    pub fn set_resolv_conf(&self, text: &str) -> Result<()> {
        let dir = std::path::Path::new("/etc/netns").join(&self.info.netns);
        std::fs::create_dir_all(&dir).map_err(crate::Error::io("create", &dir))?;
        let file = dir.join("resolv.conf");
        std::fs::write(&file, text).map_err(crate::Error::io("write", &file))
    }

    /// Pids of the processes running on this host.
    pub fn pids(&self) -> Vec<i32> {
        netns::pids(&self.info.netns)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.keep {
            netns::destroy(&self.info.netns);
        }
    }
}
