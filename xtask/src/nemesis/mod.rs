//! `cargo xtask nemesis`: fault injection on a 3-member cluster in the lab, with a checker for
//! the two safety promises (never two writable primaries; no acknowledged write lost in
//! synchronous mode) and for recovery without help (issue #19, part 1).
//!
//! The cluster is the bench's ([`crate::cluster`]): three member hosts and a `client` host
//! that makes every SQL write and probe. For each replication mode (set live with
//! `PATCH /config`), each fault and each round, [`round::run`] injects the fault on the
//! current primary under traffic ([`traffic`]), heals it, waits for recovery and checks the
//! records ([`check`]); [`report`] writes the markdown after every round, so a run that
//! fails half-way still leaves its numbers. Docs: `docs/nemesis.md`.

mod check;
mod fault;
mod report;
mod round;
mod traffic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, ValueEnum};
use patroni_testlab::{AgentSpec, Lab};

use crate::bench::durability;
use crate::cluster::{self, Cluster, Daemon};
pub(crate) use fault::Fault;
use round::{RoundResult, Timing};

/// `nemesis`.
#[derive(Debug, Args)]
pub struct NemesisArgs {
    /// Where the cluster keeps its state in Kubernetes.
    #[arg(long, value_enum, default_value = "configmaps")]
    dcs_mode: DcsMode,
    /// `synchronous_mode` values to run, in order, comma-separated (set live between them).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off")]
    sync: Vec<SyncMode>,
    /// Faults to apply, comma-separated; all of them when not given.
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<Fault>,
    /// Rounds of each fault (in each replication mode).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// `ttl` of the leader lock (bootstrap.dcs), seconds.
    #[arg(long, default_value_t = 30)]
    ttl: u32,
    /// `loop_wait`, seconds.
    #[arg(long, default_value_t = 10)]
    loop_wait: u32,
    /// `retry_timeout`, seconds.
    #[arg(long, default_value_t = 10)]
    retry_timeout: u32,
    /// How long each fault holds before it is healed, seconds (default 1.5 × ttl).
    #[arg(long)]
    hold: Option<f64>,
    /// Added to the recovery deadline (ttl + 2 × loop_wait) of faults healed by starting the
    /// agent again (kill9, sigterm), seconds.
    #[arg(long, default_value_t = 20)]
    restart_slack: u64,
    /// Which implementation runs on the members.
    #[arg(long, value_enum, default_value = "rs")]
    patroni: Implementation,
    /// Run this agent binary instead of building one.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Build the release agent (default: the debug build the tests use).
    #[arg(long)]
    release: bool,
    /// Where to write the markdown report.
    #[arg(long, default_value = "nemesis.md")]
    output: PathBuf,
}

/// Kubernetes mode of the DCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DcsMode {
    /// State in ConfigMaps.
    Configmaps,
    /// State in Endpoints.
    Endpoints,
}

/// `synchronous_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SyncMode {
    /// Asynchronous replication.
    Off,
    /// `synchronous_mode: on`.
    On,
}

/// The daemon on the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Implementation {
    /// patroni-rs.
    Rs,
    /// Python Patroni 4.1.5 from PyPI.
    Python,
}

/// Results of one replication mode.
pub(crate) struct ModeRun {
    pub mode: SyncMode,
    pub rounds: Vec<RoundResult>,
    /// Rounds that could not be run or measured (fault not applied, read-back failed).
    pub errors: Vec<String>,
}

/// The arguments of the short run in `cargo xtask test`: one round of the faults that stress
/// the lease most (the agent frozen past its lease, which only the lease fence keeps from a
/// split brain in asynchronous mode; the primary cut from the API server; the API server
/// frozen) and of kill -9, in asynchronous then synchronous mode, at the short lease (ttl 5,
/// loop_wait 1, retry_timeout 2: docs/lease.md) and a hold of 1.5 × ttl.
pub(crate) fn short_run_args(output: &Path) -> NemesisArgs {
    let output = output.display().to_string();
    let argv = [
        "nemesis",
        "--sync",
        "off,on",
        "--faults",
        "stop-agent,api-partition,freeze-api,kill9",
        "--rounds",
        "1",
        "--ttl",
        "5",
        "--loop-wait",
        "1",
        "--retry-timeout",
        "2",
        "--output",
        &output,
    ];
    ShortRun::parse_from(argv).args
}

/// Parses [`NemesisArgs`] alone (for [`short_run_args`]).
#[derive(Debug, Parser)]
struct ShortRun {
    #[command(flatten)]
    args: NemesisArgs,
}

/// `cargo xtask nemesis`: a lab of its own, the run, the lab stopped.
pub fn run(args: NemesisArgs) -> anyhow::Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("patroni-nemesis-lab-{}", std::process::id()));
    println!("nemesis: starting a lab in {}", dir.display());
    let lab = Lab::start(&dir, std::process::id() as i32).context("start the lab")?;
    let result = run_on(&lab, &args);
    println!("nemesis: stopping the lab");
    drop(lab);
    let passed = result?;
    if passed {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("nemesis: member logs are kept in {}", dir.display());
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the nemesis on `lab` (which nothing else may use meanwhile: the API server is frozen)
/// and writes the report; whether it passed (no split-brain sample, no acknowledged row lost
/// in synchronous mode).
///
/// # Errors
/// The cluster could not be started, or a round could not be run or recovered from.
pub(crate) fn run_on(lab: &Lab, args: &NemesisArgs) -> anyhow::Result<bool> {
    if args.rounds == 0 || args.sync.is_empty() {
        bail!("--rounds and --sync need at least one value");
    }
    let faults: Vec<Fault> = if args.faults.is_empty() {
        Fault::ALL.to_vec()
    } else {
        args.faults.clone()
    };
    let daemon = match (args.patroni, &args.binary) {
        (Implementation::Python, _) => Daemon::Python(
            patroni_testlab::python_daemon_venv(&[requirements()])
                .context("Python Patroni's virtualenv")?,
        ),
        (Implementation::Rs, Some(path)) => Daemon::Agent(
            path.canonicalize()
                .with_context(|| format!("locate {}", path.display()))?,
        ),
        (Implementation::Rs, None) => Daemon::Agent(cluster::build_agent(args.release)?),
    };
    let timing = Timing {
        hold: Duration::from_secs_f64(args.hold.unwrap_or(1.5 * f64::from(args.ttl))),
        deadline: Duration::from_secs(u64::from(args.ttl + 2 * args.loop_wait)),
        restart_slack: Duration::from_secs(args.restart_slack),
    };
    let mut template = AgentSpec::new("nemesis", "", "", args.dcs_mode == DcsMode::Endpoints);
    template.ttl = args.ttl;
    template.loop_wait = args.loop_wait;
    template.retry_timeout = args.retry_timeout;
    let runtime = tokio::runtime::Runtime::new().context("start tokio")?;
    let mut cluster = runtime.block_on(cluster::start(lab, &template, daemon))?;
    let settings = report::Settings {
        kubernetes: lab.controlplane().version.clone(),
        dcs_mode: format!("{:?}", args.dcs_mode).to_lowercase(),
        implementation: args.patroni,
        ttl: args.ttl,
        loop_wait: args.loop_wait,
        retry_timeout: args.retry_timeout,
        timing,
        rounds: args.rounds,
    };
    let mut runs: Vec<ModeRun> = Vec::new();
    let result = faults_in_modes(
        lab,
        &mut cluster,
        args,
        &faults,
        timing,
        &settings,
        &mut runs,
    );
    if let Err(e) = &result {
        eprintln!("nemesis: failed to {e:#}; member logs:");
        print_logs(&cluster);
        let text = report::render(&settings, &runs, Some(&format!("{e:#}")));
        let _ = std::fs::write(&args.output, text);
    }
    cluster.stop();
    result?;
    let verdict = report::verdict(&runs);
    println!("nemesis: {}", verdict.summary);
    Ok(verdict.passed)
}

/// Every mode × fault × round, rewriting the report after each round.
fn faults_in_modes(
    lab: &Lab,
    cluster: &mut Cluster,
    args: &NemesisArgs,
    faults: &[Fault],
    timing: Timing,
    settings: &report::Settings,
    runs: &mut Vec<ModeRun>,
) -> anyhow::Result<()> {
    println!("nemesis: waiting for a leader and two streaming replicas …");
    let leader = cluster.wait_healthy()?;
    cluster
        .sql(leader, traffic::SCHEMA)
        .context("create the tables on the leader")?;
    let next_id = Arc::new(AtomicI64::new(1));
    for &mode in &args.sync {
        durability::set_mode(
            cluster,
            match mode {
                SyncMode::Off => durability::Mode::Async,
                SyncMode::On => durability::Mode::Sync,
            },
        )?;
        runs.push(ModeRun {
            mode,
            rounds: Vec::new(),
            errors: Vec::new(),
        });
        for &fault in faults {
            for round in 1..=args.rounds {
                let r = round::run(lab, cluster, fault, round, timing, &next_id);
                if let Some(run) = runs.last_mut() {
                    match r {
                        Ok(r) => {
                            if !r.unaided() || r.split.samples > 0 {
                                keep_logs(cluster, &args.output, mode, fault, round);
                            }
                            run.rounds.push(r);
                        }
                        Err(e) => {
                            // Recorded and reported; the run goes on if the cluster is whole.
                            eprintln!("nemesis: round {round} of {} failed: {e:#}", fault.name());
                            run.errors.push(format!("{} #{round}: {e:#}", fault.name()));
                            cluster
                                .wait_healthy()
                                .context("healthy again after a failed round")?;
                        }
                    }
                }
                let text = report::render(settings, runs, None);
                std::fs::write(&args.output, text)
                    .with_context(|| format!("write {}", args.output.display()))?;
            }
        }
    }
    println!("nemesis: wrote {}", args.output.display());
    Ok(())
}

/// `crates/e2e/py/requirements.txt`: Patroni 4.1.5 and what its Kubernetes DCS needs.
pub(crate) fn requirements() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/e2e/py/requirements.txt")
}

/// Copies every member's log next to the report (`<output>.logs/<mode>-<fault>-<round>/`) after
/// a round worth a look (a split brain, or not healthy within the deadline by itself), since
/// the lab and its logs go away at the end of the run.
fn keep_logs(cluster: &Cluster, output: &Path, mode: SyncMode, fault: Fault, round: u32) {
    let dir = PathBuf::from(format!("{}.logs", output.display())).join(format!(
        "{}-{}-{round}",
        format!("{mode:?}").to_lowercase(),
        fault.name()
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("nemesis: cannot keep the logs in {}: {e}", dir.display());
        return;
    }
    for m in &cluster.members {
        let _ = std::fs::copy(&m.log, dir.join(format!("{}.log", m.name)));
    }
    println!(
        "nemesis: member logs of that round kept in {}",
        dir.display()
    );
}

fn print_logs(cluster: &Cluster) {
    for m in &cluster.members {
        let log = std::fs::read_to_string(&m.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!("--- {} ({})", m.name, m.log.display());
        for l in &lines[lines.len().saturating_sub(40)..] {
            eprintln!("{l}");
        }
    }
}
