//! A 3-member cluster of agents on lab hosts, plus one `client` host from which every SQL
//! statement, REST call and probe is made (traffic stays on the lab's addresses), shared by
//! `cargo xtask bench` and `cargo xtask nemesis`.
//!
//! [`start`] creates the Kubernetes namespace, the member identity and the hosts; [`Cluster`]
//! restarts members as an operator (or the kubelet) would and says when the cluster is healthy.
//! Every process it starts is stopped by pid ([`Cluster::stop`], then the hosts' drop).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use patroni_testlab::{AgentSpec, Host, Lab, PG_USER, chown_to_pg_user};

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";
/// The `KUBECONFIG` of agents whose DCS is not Kubernetes: nothing.
const NO_KUBECONFIG: &str = "/dev/null";
/// Bootstrap of the first member plus two clones, or a rejoin after a crash.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a restarted member gets to rejoin before it is reinitialized.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// What runs on each member host.
#[derive(Debug, Clone)]
pub(crate) enum Daemon {
    /// Our `patroni` binary at this path.
    Agent(PathBuf),
    /// Python Patroni (`bin/python -m patroni`) from the virtualenv at this path.
    Python(PathBuf),
}

/// One member: its host and its running agent.
pub(crate) struct Member {
    pub name: String,
    pub host: Host,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The running agent (its pid is the agent's own), reaped when replaced.
    pub agent: Option<Child>,
}

/// The cluster under measurement.
pub(crate) struct Cluster {
    pub members: Vec<Member>,
    /// The host the probes and writers run on.
    pub client: Host,
    pub spec: AgentSpec,
    pub daemon: Daemon,
    kubeconfig: PathBuf,
    pub ttl: u32,
    /// Restarted members that had to be reinitialized to rejoin.
    pub failed_rejoins: u32,
}

/// Starts three members `member-0..2` made from `template` (its `name` and `namespace` are
/// replaced; the Kubernetes namespace is a new one named after the scope) and the `client`
/// host. Progress lines are prefixed with the scope.
///
/// # Errors
/// The namespace, the member identity, a host, a pod or a daemon could not be made.
pub(crate) async fn start(
    lab: &Lab,
    template: &AgentSpec,
    daemon: Daemon,
) -> anyhow::Result<Cluster> {
    let tag = template.scope.clone();
    // Off Kubernetes (an `etcd3:` or `zookeeper:` template) there is no namespace, pod or
    // member identity: the agents get an empty `KUBECONFIG`.
    let on_kubernetes = template.etcd3_hosts.is_empty()
        && template.etcd3_srv.is_none()
        && template.zookeeper_hosts.is_empty();
    let (ns, kubeconfig) = if on_kubernetes {
        let ns = lab.namespace(&tag).await.context("namespace")?;
        let kubeconfig = lab
            .member_kubeconfig(&ns.name, template.use_endpoints, true, 0)
            .await
            .context("member identity")?;
        chown_to_pg_user(&kubeconfig)?;
        (Some(ns), kubeconfig)
    } else {
        (None, PathBuf::from(NO_KUBECONFIG))
    };
    let members_dir = lab.info().dir.join(format!("{tag}-members"));
    std::fs::create_dir_all(&members_dir)?;
    chown_to_pg_user(&members_dir)?;
    let client = lab.host("client")?;
    let mut members = Vec::new();
    for i in 0..3 {
        let name = format!("member-{i}");
        let mut s = template.clone();
        s.name.clone_from(&name);
        let dir = members_dir.join(&name);
        let host = lab.host(&name)?;
        if let Some(ns) = &ns {
            s.namespace.clone_from(&ns.name);
            let pod = patroni_testlab::PodSpec {
                name: name.clone(),
                labels: s.pod_labels(),
                service_account: None,
            };
            lab.pod(&ns.client, &ns.name, &host, pod).await?;
        }
        let config = s.write(host.ip(), &dir)?;
        let log = dir.join("patroni.log");
        let agent = spawn(&daemon, &host, &config, &kubeconfig, &log)?;
        println!(
            "{tag}: started {name} (pid {}) at {}; log {}",
            agent.id(),
            host.ip(),
            log.display()
        );
        members.push(Member {
            name,
            host,
            config,
            log,
            agent: Some(agent),
        });
    }
    Ok(Cluster {
        members,
        client,
        ttl: template.ttl,
        spec: template.clone(),
        daemon,
        kubeconfig,
        failed_rejoins: 0,
    })
}

/// Starts `daemon` with `config` on `host` as the postgres user, output appended to `log`.
fn spawn(
    daemon: &Daemon,
    host: &Host,
    config: &Path,
    kubeconfig: &Path,
    log: &Path,
) -> anyhow::Result<Child> {
    match daemon {
        Daemon::Agent(binary) => host
            .spawn_agent(binary, config, kubeconfig, log)
            .with_context(|| format!("start the agent on {}", host.name())),
        Daemon::Python(venv) => {
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("open {}", log.display()))?;
            let err = out.try_clone().context("clone the log handle")?;
            host.command_as(PG_USER, venv.join("bin/python"))
                .args(["-m", "patroni"])
                .arg(config)
                .env("KUBECONFIG", kubeconfig)
                .env("HOME", config.parent().unwrap_or(Path::new("/tmp")))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .with_context(|| format!("start Python Patroni on {}", host.name()))
        }
    }
}

/// Builds the `patroni` binary (`release` or the debug profile) and returns its path.
///
/// # Errors
/// The build failed or its output is not where the target directory says.
pub(crate) fn build_agent(release: bool) -> anyhow::Result<PathBuf> {
    let profile = if release { "release" } else { "debug" };
    println!("xtask: building the {profile} agent …");
    let mut args = vec!["build", "--quiet", "-p", "patroni", "--bin", "patroni"];
    if release {
        args.push("--release");
    }
    let status = Command::new(env!("CARGO"))
        .args(&args)
        .status()
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target
        .join(profile)
        .join("patroni")
        .canonicalize()
        .with_context(|| format!("locate the {profile} patroni binary"))
}

// === impl Cluster ===

impl Cluster {
    /// `psql -c query` from the client host to member `i` as the superuser;
    /// its output if it succeeded.
    pub fn sql(&self, i: usize, query: &str) -> Option<String> {
        sql(
            &self.client,
            self.members.get(i)?.host.ip(),
            &self.spec,
            query,
        )
    }

    /// Members as member `i`'s REST API reports them (`GET /cluster`).
    pub(crate) fn cluster_view(&self, i: usize) -> Option<Vec<serde_json::Value>> {
        let ip = self.members.get(i)?.host.ip();
        let out = self
            .client
            .command("curl")
            .args([
                "-s",
                "--max-time",
                "2",
                &format!("http://{ip}:8008/cluster"),
            ])
            .output()
            .ok()?;
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        doc["members"].as_array().cloned()
    }

    /// The member a switchover from `leader` goes to: the synchronous standby when there is
    /// one (Patroni switches over only to it), else the member after the leader.
    pub fn switchover_candidate(&self, leader: usize) -> usize {
        let sync_standby = self.cluster_view(leader).and_then(|view| {
            let name = view
                .iter()
                .find(|m| m["role"] == "sync_standby")?
                .get("name")?
                .as_str()?
                .to_owned();
            self.members.iter().position(|m| m.name == name)
        });
        sync_standby.unwrap_or((leader + 1) % self.members.len())
    }

    /// The leader's index if the cluster is healthy: one running leader that
    /// accepts writes and two streaming replicas.
    pub fn healthy(&self) -> Option<usize> {
        let view = (0..self.members.len()).find_map(|i| self.cluster_view(i))?;
        let leader = view
            .iter()
            .find(|m| m["role"] == "leader" && m["state"] == "running")?;
        let streaming = view.iter().filter(|m| m["state"] == "streaming").count();
        if streaming + 1 != self.members.len() {
            return None;
        }
        let name = leader["name"].as_str()?;
        let i = self.members.iter().position(|m| m.name == name)?;
        self.sql(i, "select pg_is_in_recovery()")
            .filter(|r| r == "f")
            .map(|_| i)
    }

    /// Waits until the cluster is healthy; returns the leader's index.
    pub fn wait_healthy(&self) -> anyhow::Result<usize> {
        self.wait_healthy_for(HEALTHY_TIMEOUT)
    }

    /// [`Cluster::wait_healthy`] with another timeout.
    pub fn wait_healthy_for(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.healthy() {
                return Ok(i);
            }
            if Instant::now() > deadline {
                bail!("the cluster is not healthy after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sends `signal` to every process on member `i`'s host.
    pub fn signal_host(&self, i: usize, signal: nix::sys::signal::Signal) -> Vec<i32> {
        let pids = self
            .members
            .get(i)
            .map(|m| m.host.pids())
            .unwrap_or_default();
        for pid in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal);
        }
        pids
    }

    /// Starts member `i`'s agent again, after its host was emptied.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let m = self.members.get_mut(i).context("member index")?;
        if let Some(mut agent) = m.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        // Leftovers (a postmaster whose agent was killed) belong to the old run.
        for _ in 0..50 {
            let pids = m.host.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let agent = spawn(&self.daemon, &m.host, &m.config, &self.kubeconfig, &m.log)
            .with_context(|| format!("restart {}", m.name))?;
        println!(
            "{}: restarted {} (pid {})",
            self.spec.scope,
            m.name,
            agent.id()
        );
        m.agent = Some(agent);
        Ok(())
    }

    /// Restarts member `i`'s agent and waits for three healthy members. A
    /// member that does not rejoin within [`REJOIN_TIMEOUT`] is
    /// reinitialized (data directory removed, cloned again) and counted.
    pub fn restore(&mut self, i: usize) -> anyhow::Result<()> {
        self.restart(i)?;
        if self.wait_healthy_for(REJOIN_TIMEOUT).is_ok() {
            return Ok(());
        }
        let m = self.members.get(i).context("member index")?;
        println!(
            "{}: {} did not rejoin within {REJOIN_TIMEOUT:?} (see {}); reinitializing it",
            self.spec.scope,
            m.name,
            m.log.display()
        );
        self.failed_rejoins += 1;
        let data = m.config.with_file_name("data");
        if let Some(mut agent) = self.members[i].agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        self.signal_host(i, nix::sys::signal::Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(500));
        std::fs::remove_dir_all(&data).with_context(|| format!("remove {}", data.display()))?;
        self.restart(i)?;
        self.wait_healthy().map(|_| ())
    }

    /// Stops every agent (the hosts' drop kills what remains).
    pub fn stop(&mut self) {
        for m in &mut self.members {
            if let Some(mut agent) = m.agent.take() {
                let _ = agent.kill();
                let _ = agent.wait();
            }
        }
    }
}

/// `psql -c query` from `from` to the PostgreSQL at `ip`; output on success.
pub(crate) fn sql(from: &Host, ip: &str, spec: &AgentSpec, query: &str) -> Option<String> {
    let out = from
        .command(PSQL)
        .env("PGPASSWORD", &spec.superuser_password)
        .args([
            "-X",
            "-At",
            "-d",
            &format!("host={ip} port=5432 user=postgres dbname=postgres connect_timeout=2"),
            "-c",
            query,
        ])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One write (an INSERT) to the PostgreSQL at `ip`; whether it committed.
pub(crate) fn write(from: &Host, ip: &str, spec: &AgentSpec) -> bool {
    sql(from, ip, spec, "insert into bench_writes values (now())").is_some()
}
