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

pub(crate) mod durability;
mod measure;
mod report;
mod store;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use patroni_testlab::{AgentSpec, Lab};
use store::{DcsKind, Store};

use crate::cluster::{self, Cluster, Daemon};
pub(crate) use crate::cluster::{sql, write};

/// `bench`.
#[derive(Debug, Clone, Args)]
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
    /// The cluster's `ttl` in seconds (Patroni's default 30; patroni-rs takes down to 3, see
    /// docs/lease.md).
    #[arg(long)]
    ttl: Option<u32>,
    /// The cluster's `loop_wait` in seconds (default 10).
    #[arg(long)]
    loop_wait: Option<u32>,
    /// The cluster's `retry_timeout` in seconds (default 10).
    #[arg(long)]
    retry_timeout: Option<u32>,
    /// After patroni-rs, run this many measurement runs (idle window, kill -9 failover,
    /// switchover, SIGTERM drain) of Python Patroni 4.1.5 from PyPI in the same lab, with the
    /// same timings, and report both side by side (0: patroni-rs only).
    #[arg(long, default_value_t = 0)]
    python_runs: u32,
}

/// The timings the bench's cluster runs with, where not Patroni's defaults.
#[derive(Debug, Clone, Copy, Default)]
struct Timings {
    ttl: Option<u32>,
    loop_wait: Option<u32>,
    retry_timeout: Option<u32>,
}

impl Timings {
    fn apply(self, spec: &mut AgentSpec) {
        if let Some(t) = self.ttl {
            spec.ttl = t;
        }
        if let Some(t) = self.loop_wait {
            spec.loop_wait = t;
        }
        if let Some(t) = self.retry_timeout {
            spec.retry_timeout = t;
        }
    }
}

const SCOPE: &str = "bench";
/// The scope of the Python Patroni cluster of `--python-runs` (its own members and namespace).
const PYTHON_SCOPE: &str = "benchpy";

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
        None => cluster::build_agent(true)?,
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
    let timings = Timings {
        ttl: args.ttl,
        loop_wait: args.loop_wait,
        retry_timeout: args.retry_timeout,
    };
    let store = runtime.block_on(Store::start(args.dcs, lab))?;
    let daemon = Daemon::Agent(binary.to_path_buf());
    let mut results = report::Results::default();
    let cluster = runtime.block_on(start_cluster(
        lab,
        &store,
        SCOPE,
        daemon,
        args.use_endpoints,
        timings,
    ))?;
    measure_cluster(cluster, lab, &store, args, &mut results, |results, run| {
        write_report(args, results, run)
    })?;
    if args.python_runs > 0 {
        println!(
            "bench: === Python Patroni 4.1.5, {} run(s)",
            args.python_runs
        );
        let venv = patroni_testlab::python_daemon_venv(&[crate::nemesis::requirements()])
            .context("Python Patroni's virtualenv")?;
        let cluster = runtime.block_on(start_cluster(
            lab,
            &store,
            PYTHON_SCOPE,
            Daemon::Python(venv),
            args.use_endpoints,
            timings,
        ))?;
        let runs = args.runs;
        let python_args = BenchArgs {
            runs: args.python_runs,
            durability_runs: 0,
            ..args.clone()
        };
        let mut python = report::Results::default();
        let measured = measure_cluster(
            cluster,
            lab,
            &store,
            &python_args,
            &mut python,
            |python, _| {
                let mut both = results.clone();
                both.python = Some(Box::new(python.clone()));
                write_report(args, &both, runs)
            },
        );
        measured?;
    }
    drop(store);
    Ok(())
}

/// The measurement runs (and the durability runs) of `args` on `cluster`, into `results`;
/// `progress` is called after each run (to rewrite the report). Stops the cluster.
fn measure_cluster(
    mut cluster: Cluster,
    lab: &Lab,
    store: &Store,
    args: &BenchArgs,
    results: &mut report::Results,
    mut progress: impl FnMut(&report::Results, u32) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let result = (|| {
        println!("bench: waiting for a leader and two streaming replicas …");
        let leader = cluster.wait_healthy()?;
        cluster
            .sql(
                leader,
                "create table if not exists bench_writes(at timestamptz)",
            )
            .context("create the write table on the leader")?;
        *results = report::Results {
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
            let idle = measure::idle(&mut cluster, lab, store, args.idle_secs)?;
            println!(
                "bench: idle: RSS {:?} kB, CPU {:?} %, {:?} DCS requests/min",
                idle.rss_kb, idle.cpu_pct, idle.api_per_min
            );
            results.rss_kb.extend(idle.rss_kb);
            results.anon_kb.extend(idle.anon_kb);
            results.pss_kb.extend(idle.pss_kb);
            results.referenced_kb.extend(idle.referenced_kb);
            results.helpers.extend(idle.helpers);
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
            progress(results, run)?;
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
                progress(results, args.runs)?;
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
    result
}

async fn start_cluster(
    lab: &Lab,
    store: &Store,
    scope: &str,
    daemon: Daemon,
    use_endpoints: bool,
    timings: Timings,
) -> anyhow::Result<Cluster> {
    let mut template = AgentSpec::new(scope, "", "", use_endpoints);
    timings.apply(&mut template);
    store.configure(&mut template);
    cluster::start(lab, &template, daemon).await
}
