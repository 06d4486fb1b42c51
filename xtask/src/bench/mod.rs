//! `cargo xtask bench`: HA timings and footprint of the `patroni` agent on
//! a 3-member PostgreSQL 15 cluster in a lab of its own, written to
//! `docs/benchmarks.md`.
//!
//! The bench starts a lab (control plane + hosts) in a temporary directory,
//! the DCS (`--dcs`: the lab's API server, where the agents run as the
//! restricted static-token user `testenv-user-00`; or a real etcd or
//! ZooKeeper on a host of its own, see `store`), three member hosts running
//! the release build of the agent, and one extra `client` host from which
//! every SQL write, REST call and probe is made (traffic stays on the lab's
//! addresses). Each run measures, in order: an idle window (RSS, CPU, DCS
//! requests), a `kill -9` failover, a REST switchover and a SIGTERM drain,
//! restoring three healthy members between steps. Everything is stopped by
//! pid when the bench ends (hosts, the store, then the lab).

mod durability;
mod measure;
mod report;
mod store;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use patroni_testlab::{AgentSpec, Host, Lab, chown_to_pg_user};
use store::{DcsKind, Store};

/// `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Measurements of each kind.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Where the cluster keeps its state: the lab's Kubernetes API server, or a real etcd
    /// (v3 API) or ZooKeeper started on a lab host of its own.
    #[arg(long, value_enum, default_value_t = DcsKind::Kubernetes)]
    dcs: DcsKind,
    /// Keep the cluster state in Endpoints instead of ConfigMaps (Kubernetes only).
    #[arg(long)]
    use_endpoints: bool,
    /// Length of the idle window (CPU, API requests), in seconds.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// kill -9 failovers and switchovers in each replication mode (asynchronous, then
    /// `synchronous_mode: on`), after the main runs; 0 skips them.
    #[arg(long, default_value_t = 3)]
    durability_runs: u32,
    /// Where to write the report.
    #[arg(long, default_value = "docs/benchmarks.md")]
    output: PathBuf,
    /// Measure this agent binary instead of building the release one (to
    /// compare builds; the report then names it).
    #[arg(long)]
    binary: Option<PathBuf>,
}

const SCOPE: &str = "bench";
const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";
/// Bootstrap of the first member plus two clones, or a rejoin after a crash.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a restarted member gets to rejoin before it is reinitialized.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// One member: its host and its running agent.
pub(crate) struct Member {
    pub name: String,
    pub host: Host,
    config: PathBuf,
    log: PathBuf,
    /// The running agent (its pid is the agent's own), reaped when replaced.
    pub agent: Option<Child>,
}

/// The cluster under measurement.
pub(crate) struct Cluster {
    pub members: Vec<Member>,
    /// The host the probes and writers run on.
    pub client: Host,
    pub spec: AgentSpec,
    binary: PathBuf,
    /// The agents' `KUBECONFIG` (`/dev/null` off Kubernetes).
    kubeconfig: PathBuf,
    pub ttl: u32,
    /// Restarted members that had to be reinitialized to rejoin.
    pub failed_rejoins: u32,
}

pub fn run(args: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.use_endpoints && args.dcs != DcsKind::Kubernetes {
        bail!(
            "--use-endpoints is a Kubernetes mode; not with --dcs {}",
            args.dcs.arg()
        );
    }
    let binary = match &args.binary {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("locate {}", path.display()))?,
        None => build_release_agent()?,
    };
    let dir = std::env::temp_dir().join(format!("patroni-bench-lab-{}", std::process::id()));
    println!("bench: starting a lab in {}", dir.display());
    let lab = Lab::start(&dir, std::process::id() as i32).context("start the lab")?;
    let result = bench(&lab, &binary, &args);
    println!("bench: stopping the lab");
    // Dropping the lab stops it (a second `stop` would wait for the reaped-late supervisor again).
    drop(lab);
    result?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(std::process::ExitCode::SUCCESS)
}

/// Rewrites the report with the runs done so far.
fn write_report(args: &BenchArgs, results: &report::Results, runs: u32) -> anyhow::Result<()> {
    let text = report::render(results, &args_summary(args, runs))?;
    std::fs::write(&args.output, text)
        .with_context(|| format!("write {}", args.output.display()))?;
    println!("bench: wrote {} ({runs} run(s))", args.output.display());
    Ok(())
}

fn args_summary(args: &BenchArgs, runs: u32) -> report::Settings {
    report::Settings {
        runs,
        dcs: args.dcs,
        use_endpoints: args.use_endpoints,
        idle_secs: args.idle_secs,
        binary: args.binary.clone(),
    }
}

fn bench(lab: &Lab, binary: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("start tokio")?;
    let store = runtime.block_on(Store::start(args.dcs, lab))?;
    let mut cluster = runtime.block_on(start_cluster(lab, &store, binary, args.use_endpoints))?;
    let result = (|| {
        println!("bench: waiting for a leader and two streaming replicas …");
        let leader = cluster.wait_healthy()?;
        cluster
            .sql(
                leader,
                "create table if not exists bench_writes(at timestamptz)",
            )
            .context("create the write table on the leader")?;
        let mut results = report::Results {
            store: store.describe(lab),
            requests_label: store.requests_label(),
            requests_how: store.requests_how(),
            ttl: cluster.ttl,
            loop_wait: cluster.spec.loop_wait,
            retry_timeout: cluster.spec.retry_timeout,
            ..Default::default()
        };
        for run in 1..=args.runs {
            println!("bench: === run {run}/{}", args.runs);
            let idle = measure::idle(&mut cluster, lab, &store, args.idle_secs)?;
            println!(
                "bench: idle: RSS {:?} kB, CPU {:?} %, {:?} DCS requests/min",
                idle.rss_kb, idle.cpu_pct, idle.api_per_min
            );
            results.rss_kb.extend(idle.rss_kb);
            results.anon_kb.extend(idle.anon_kb);
            results.breakdown.extend(idle.breakdown);
            results.cpu_pct.extend(idle.cpu_pct);
            results.api_per_min.extend(idle.api_per_min);
            let t = measure::failover(&mut cluster)?;
            results.failover_s.push(t);
            let t = measure::switchover(&mut cluster)?;
            results.switchover_s.push(t);
            let t = measure::sigterm_gap(&mut cluster)?;
            results.sigterm_gap_s.push(t);
            results.failed_rejoins = cluster.failed_rejoins;
            write_report(args, &results, run)?;
        }
        if args.durability_runs > 0 {
            for mode in [durability::Mode::Async, durability::Mode::Sync] {
                println!("bench: === {} replication", mode.label());
                durability::set_mode(&cluster, mode)?;
                let mut r = durability::ModeResults::default();
                for _ in 0..args.durability_runs {
                    let (t, acked, lost) = durability::failover(&mut cluster)?;
                    r.failover_s.push(t);
                    r.acked.push(acked);
                    r.lost.push(lost);
                    r.switchover_s.push(measure::switchover(&mut cluster)?);
                }
                results.durability.push((mode, r));
                results.failed_rejoins = cluster.failed_rejoins;
                write_report(args, &results, args.runs)?;
            }
            durability::set_mode(&cluster, durability::Mode::Async)?;
        }
        anyhow::Ok(())
    })();
    if result.is_err() {
        eprintln!("bench: failed; member logs:");
        for m in &cluster.members {
            let log = std::fs::read_to_string(&m.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- {}", m.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
    cluster.stop();
    drop(store);
    result
}

/// The `KUBECONFIG` of agents whose DCS is not Kubernetes: nothing.
const NO_KUBECONFIG: &str = "/dev/null";

async fn start_cluster(
    lab: &Lab,
    store: &Store,
    binary: &Path,
    use_endpoints: bool,
) -> anyhow::Result<Cluster> {
    let kube = match store {
        Store::Kubernetes { .. } => {
            let ns = lab.namespace("bench").await.context("namespace")?;
            let kubeconfig = lab
                .member_kubeconfig(&ns.name, use_endpoints, true, 0)
                .await
                .context("member identity")?;
            chown_to_pg_user(&kubeconfig)?;
            Some((ns, kubeconfig))
        }
        _ => None,
    };
    let members_dir = lab.info().dir.join("members");
    std::fs::create_dir_all(&members_dir)?;
    chown_to_pg_user(&members_dir)?;
    let client = lab.host("client")?;
    let mut members = Vec::new();
    let mut spec = None;
    for i in 0..3 {
        let name = format!("member-{i}");
        let dir = members_dir.join(&name);
        let (s, host, agent) = match &kube {
            Some((ns, kubeconfig)) => {
                let s = AgentSpec::new(SCOPE, &name, &ns.name, use_endpoints);
                let (host, agent) = lab
                    .start_agent_member(&ns.client, &s, binary, kubeconfig, &dir)
                    .await?;
                (s, host, agent)
            }
            None => {
                let mut s = AgentSpec::new(SCOPE, &name, "", false);
                store.configure(&mut s);
                let host = lab.host(&name)?;
                let config = s.write(host.ip(), &dir)?;
                let agent = host.spawn_agent(
                    binary,
                    &config,
                    NO_KUBECONFIG.as_ref(),
                    &dir.join("patroni.log"),
                )?;
                (s, host, agent)
            }
        };
        let log = dir.join("patroni.log");
        let config = dir.join("patroni.yml");
        println!(
            "bench: started {name} (pid {}) at {}; log {}",
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
        spec = Some(s);
    }
    let spec = spec.context("three members")?;
    Ok(Cluster {
        members,
        client,
        ttl: spec.ttl,
        spec,
        binary: binary.to_path_buf(),
        kubeconfig: kube.map_or_else(|| PathBuf::from(NO_KUBECONFIG), |(_, k)| k),
        failed_rejoins: 0,
    })
}

/// Builds the release `patroni` binary (footprint numbers of a debug build
/// mean nothing) and returns its path.
fn build_release_agent() -> anyhow::Result<PathBuf> {
    println!("bench: building the release agent …");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "patroni",
            "--bin",
            "patroni",
        ])
        .status()
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p patroni failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target
        .join("release/patroni")
        .canonicalize()
        .context("locate the release patroni binary")
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

    /// The leader's index if the cluster is healthy: one running leader that
    /// accepts writes and two streaming replicas.
    fn healthy(&self) -> Option<usize> {
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
        let agent = m
            .host
            .spawn_agent(&self.binary, &m.config, &self.kubeconfig, &m.log)
            .with_context(|| format!("restart {}", m.name))?;
        println!("bench: restarted {} (pid {})", m.name, agent.id());
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
            "bench: {} did not rejoin within {REJOIN_TIMEOUT:?} (see {}); reinitializing it",
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
    fn stop(&mut self) {
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
