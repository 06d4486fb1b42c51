//! The faults: what each does to the current primary (or to the store) and how it is healed.
//!
//! Every fault is injected by [`Fault::inject`], which returns an [`Injected`] that must be
//! healed with [`Injected::heal`]; a dropped `Injected` heals too (best effort), so a failed
//! round never leaves a member stopped, cut off or the API server frozen.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use patroni_testlab::{FrozenApiServer, Host, Lab};

use crate::cluster::Cluster;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum Fault {
    /// The primary's host cut off from everything (its link on the lab bridge down).
    Partition,
    /// The primary's host cut off from the API server only (iptables DROP both ways in its
    /// network namespace); members and clients still reach it.
    ApiPartition,
    /// SIGSTOP of the primary's agent process; SIGCONT at heal.
    StopAgent,
    /// SIGSTOP of the primary's postmaster (the process in `postmaster.pid`; its backends run
    /// on); SIGCONT at heal.
    StopPostgres,
    /// SIGKILL of every process on the primary's host (agent, postmaster, backends); the agent
    /// is started again at heal, as the kubelet restarts a container.
    Kill9,
    /// SIGSTOP of kube-apiserver (the store of every member); SIGCONT at heal.
    FreezeApi,
    /// SIGTERM to the primary's agent (a pod delete); it is started again once it exited.
    Sigterm,
    /// `POST /switchover` from the primary to the synchronous standby (or the next member)
    /// under the writer; healed when the API answered.
    Switchover,
}

/// A fault in effect, waiting to be healed.
pub(crate) struct Injected<'a> {
    fault: Fault,
    target: usize,
    cluster: &'a mut Cluster,
    /// The API server stays frozen while this is held.
    frozen: Option<FrozenApiServer>,
    /// Processes stopped with SIGSTOP.
    stopped: Vec<i32>,
    /// iptables rules added on the target's host (argument lists after `-I`/`-D`).
    rules: Vec<Vec<String>>,
    /// The target's host was cut off.
    disconnected: bool,
    /// The target's agent has to be started again.
    restart: bool,
    healed: bool,
}

/// The lab's API server address (the iptables rules drop traffic to and from it).
fn api_ip(lab: &Lab) -> String {
    lab.controlplane().api_ip.clone()
}

// === impl Fault ===

impl Fault {
    /// Every fault, in the order a run applies them.
    pub(crate) const ALL: [Fault; 8] = [
        Fault::Partition,
        Fault::ApiPartition,
        Fault::StopAgent,
        Fault::StopPostgres,
        Fault::Kill9,
        Fault::FreezeApi,
        Fault::Sigterm,
        Fault::Switchover,
    ];

    /// The name on the command line and in the report.
    pub(crate) fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// Whether healing starts the target's agent again (recovery then includes a process
    /// start and PostgreSQL's crash recovery).
    pub(crate) fn restarts(self) -> bool {
        matches!(self, Fault::Kill9 | Fault::Sigterm)
    }

    /// Applies the fault to member `target` (the primary) of `cluster`.
    ///
    /// # Errors
    /// The fault could not be applied (what was applied is healed when the result drops).
    pub(crate) fn inject<'a>(
        self,
        lab: &Lab,
        cluster: &'a mut Cluster,
        target: usize,
    ) -> anyhow::Result<Injected<'a>> {
        let mut inj = Injected {
            fault: self,
            target,
            cluster,
            frozen: None,
            stopped: Vec::new(),
            rules: Vec::new(),
            disconnected: false,
            restart: false,
            healed: false,
        };
        let member = inj.cluster.members.get(target).context("member index")?;
        match self {
            Fault::Partition => {
                member.host.disconnect().context("cut the primary off")?;
                inj.disconnected = true;
            }
            Fault::ApiPartition => {
                let ip = api_ip(lab);
                for rule in [["OUTPUT", "-d"], ["INPUT", "-s"]] {
                    let args: Vec<String> = [rule[0], rule[1], &ip, "-j", "DROP"]
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect();
                    iptables(&member.host, "-I", &args)?;
                    inj.rules.push(args);
                }
            }
            Fault::StopAgent => {
                let pid = agent_pid(inj.cluster, target)?;
                signal(pid, Signal::SIGSTOP)?;
                inj.stopped.push(pid);
            }
            Fault::StopPostgres => {
                let pid = postmaster_pid(inj.cluster, target)?;
                signal(pid, Signal::SIGSTOP)?;
                inj.stopped.push(pid);
            }
            Fault::Kill9 => {
                if inj.cluster.signal_host(target, Signal::SIGKILL).is_empty() {
                    bail!("no process on the primary's host");
                }
                inj.restart = true;
            }
            Fault::FreezeApi => {
                inj.frozen = Some(
                    lab.controlplane()
                        .freeze_apiserver()
                        .context("freeze kube-apiserver")?,
                );
            }
            Fault::Sigterm => {
                signal(agent_pid(inj.cluster, target)?, Signal::SIGTERM)?;
                inj.restart = true;
            }
            Fault::Switchover => switchover(inj.cluster, target)?,
        }
        Ok(inj)
    }
}

// === impl Injected ===

impl Injected<'_> {
    /// Waits out the fault: `hold`, or for a SIGTERM until the agent exited (at most `hold`:
    /// the kubelet starts the container again once it ended) and for a switchover not at all.
    pub(crate) fn hold(&mut self, hold: Duration) {
        let started = Instant::now();
        match self.fault {
            Fault::Switchover => {}
            Fault::Sigterm => {
                while started.elapsed() < hold {
                    let exited = self.cluster.members[self.target]
                        .agent
                        .as_mut()
                        .is_none_or(|a| matches!(a.try_wait(), Ok(Some(_))));
                    if exited {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            _ => std::thread::sleep(hold),
        }
    }

    /// Undoes the fault (see [`Fault`] for what each heal is).
    ///
    /// # Errors
    /// A step of the heal failed; the others were still tried.
    pub(crate) fn heal(mut self) -> anyhow::Result<()> {
        self.heal_all()
    }

    fn heal_all(&mut self) -> anyhow::Result<()> {
        if self.healed {
            return Ok(());
        }
        self.healed = true;
        let mut errors = Vec::new();
        self.frozen = None;
        for pid in self.stopped.drain(..) {
            if let Err(e) = signal(pid, Signal::SIGCONT) {
                errors.push(e);
            }
        }
        let host = &self.cluster.members[self.target].host;
        for rule in self.rules.drain(..) {
            if let Err(e) = iptables(host, "-D", &rule) {
                errors.push(e);
            }
        }
        if self.disconnected
            && let Err(e) = host.reconnect()
        {
            errors.push(e.into());
        }
        if self.restart
            && let Err(e) = self.cluster.restart(self.target)
        {
            errors.push(e);
        }
        match errors.into_iter().next() {
            None => Ok(()),
            Some(e) => Err(e.context(format!("heal {}", self.fault.name()))),
        }
    }
}

impl Drop for Injected<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.heal_all() {
            eprintln!("nemesis: failed to {e:#}");
        }
    }
}

/// `iptables -w ACTION ARGS…` on `host`.
fn iptables(host: &Host, action: &str, args: &[String]) -> anyhow::Result<()> {
    let out = host
        .command("iptables")
        .args(["-w", action])
        .args(args)
        .output()
        .context("run iptables")?;
    if !out.status.success() {
        bail!(
            "iptables {action} {} on {}: {}",
            args.join(" "),
            host.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn signal(pid: i32, signal: Signal) -> anyhow::Result<()> {
    nix::sys::signal::kill(Pid::from_raw(pid), signal).with_context(|| format!("{signal} {pid}"))
}

/// The pid of member `i`'s running agent.
fn agent_pid(cluster: &Cluster, i: usize) -> anyhow::Result<i32> {
    let agent = cluster.members[i]
        .agent
        .as_ref()
        .context("the agent is not running")?;
    i32::try_from(agent.id()).context("pid")
}

/// The pid in member `i`'s `postmaster.pid`.
fn postmaster_pid(cluster: &Cluster, i: usize) -> anyhow::Result<i32> {
    let path = cluster.members[i]
        .config
        .with_file_name("data/postmaster.pid");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("no pid in {}", path.display()))
}

/// `POST /switchover` from member `leader` to the synchronous standby if there is one, else
/// the next member, sent from the client host; fails unless the API accepted it.
fn switchover(cluster: &Cluster, leader: usize) -> anyhow::Result<()> {
    let candidate = cluster.switchover_candidate(leader);
    let (l, c) = (&cluster.members[leader], &cluster.members[candidate]);
    let body = format!(r#"{{"leader":"{}","candidate":"{}"}}"#, l.name, c.name);
    let url = format!("http://{}:8008/switchover", l.host.ip());
    let out = cluster
        .client
        .command("curl")
        .args(["-s", "--max-time", "60", "-XPOST", &url, "-d", &body])
        .output()
        .context("run curl")?;
    let answer = String::from_utf8_lossy(&out.stdout);
    if !answer.contains("Successfully") {
        bail!("switchover {} -> {} refused: {answer}", l.name, c.name);
    }
    Ok(())
}
