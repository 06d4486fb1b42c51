//! One round: a healthy cluster under traffic, one fault on its primary, the heal, the wait
//! for recovery and the read-back of every acknowledged row.
//!
//! Timeline of a round (seconds from its origin, printed as it goes): traffic starts; after
//! [`WARMUP`] the fault is injected on the current primary; after the hold it is healed; the
//! cluster is then polled until healthy ([`Cluster::healthy`]: one running leader that holds
//! the lock in `GET /cluster` and is not in recovery, two streaming replicas); the traffic runs
//! [`COOLDOWN`] longer, stops, and the rows are read back from the final primary. If the
//! cluster is not healthy [`RECOVERY_LIMIT`] after the heal, the harness restores the target
//! member (restart, then reinitialize) and the round is marked as needing help.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use anyhow::Context;
use patroni_testlab::Lab;

use super::check::{self, SplitBrain};
use super::fault::Fault;
use super::traffic::{PROBE_EVERY, Traffic};
use crate::cluster::Cluster;

/// Traffic before the fault, so it lands in a steady stream of commits.
const WARMUP: Duration = Duration::from_secs(3);
/// Traffic after recovery, so writes on the recovered cluster are part of the round.
const COOLDOWN: Duration = Duration::from_secs(2);
/// Longest the harness waits for recovery before it steps in.
pub(crate) const RECOVERY_LIMIT: Duration = Duration::from_secs(180);
/// Pause between two health checks while waiting for recovery.
const HEALTH_POLL: Duration = Duration::from_millis(250);

/// What one round measured.
#[derive(Debug, Clone)]
pub(crate) struct RoundResult {
    /// The fault applied.
    pub fault: Fault,
    /// 1-based round number of this fault.
    pub round: u32,
    /// The member the fault was applied to (the primary), or "store".
    pub target: String,
    /// The primary after recovery.
    pub final_primary: String,
    /// Inserts attempted.
    pub attempted: u64,
    /// Rows acknowledged.
    pub acked: usize,
    /// Acknowledged ids missing on the final primary.
    pub lost: Vec<i64>,
    /// Split-brain samples.
    pub split: SplitBrain,
    /// The longest time without an acknowledged write.
    pub outage: Option<Duration>,
    /// Heal → healthy; `None` if the cluster did not recover by itself.
    pub recovered: Option<Duration>,
    /// The recovery deadline this round is judged against.
    pub deadline: Duration,
    /// The harness had to restore a member.
    pub helped: bool,
    /// Members that ran `pg_rewind` during the round (their logs say so).
    pub rewound: Vec<String>,
}

/// The timing a round is judged with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// How long a fault stays before it is healed.
    pub hold: Duration,
    /// ttl + 2 × loop_wait: the recovery deadline after a heal.
    pub deadline: Duration,
    /// Added to the deadline when the heal starts a process (agent start, crash recovery).
    pub restart_slack: Duration,
}

// === impl RoundResult ===

impl RoundResult {
    /// Healthy again within the deadline, without the harness's help.
    pub(crate) fn unaided(&self) -> bool {
        !self.helped && self.recovered.is_some_and(|r| r <= self.deadline)
    }
}

/// Runs round `round` of `fault` on `cluster`; ids of the writer come from `next_id`.
///
/// # Errors
/// The cluster was not healthy before the round, the fault could not be applied, or the
/// cluster could not be restored or read back.
pub(crate) fn run(
    lab: &Lab,
    cluster: &mut Cluster,
    fault: Fault,
    round: u32,
    timing: Timing,
    next_id: &Arc<AtomicI64>,
) -> anyhow::Result<RoundResult> {
    let leader = cluster.wait_healthy().context("healthy before the round")?;
    let target = match fault {
        Fault::FreezeApi => "store".to_owned(),
        _ => cluster.members[leader].name.clone(),
    };
    let log_offsets = log_lengths(cluster);
    let origin = Instant::now();
    let say = |what: &str| {
        println!(
            "nemesis: [{} #{round} +{:6.2}s] {what}",
            fault.name(),
            origin.elapsed().as_secs_f64()
        );
    };
    say(&format!(
        "traffic on; primary {}",
        cluster.members[leader].name
    ));
    let traffic = Traffic::start(cluster, next_id.clone(), origin);
    std::thread::sleep(WARMUP);
    let deadline = timing.deadline
        + if fault.restarts() {
            timing.restart_slack
        } else {
            Duration::ZERO
        };
    let mut injected = match fault.inject(lab, cluster, leader) {
        Ok(i) => i,
        Err(e) => {
            let _ = traffic.stop();
            return Err(e.context(format!("inject {}", fault.name())));
        }
    };
    say(&format!("{} injected on {target}", fault.name()));
    injected.hold(timing.hold);
    let healed = injected.heal();
    let heal_at = Instant::now();
    say("healed");
    if let Err(e) = healed {
        eprintln!("nemesis: failed to {e:#}");
    }
    let mut recovered = None;
    while heal_at.elapsed() < RECOVERY_LIMIT {
        if cluster.healthy().is_some() {
            recovered = Some(heal_at.elapsed());
            break;
        }
        std::thread::sleep(HEALTH_POLL);
    }
    let mut helped = false;
    match recovered {
        Some(r) => say(&format!("healthy {:.2}s after the heal", r.as_secs_f64())),
        None => {
            say(&format!(
                "not healthy {RECOVERY_LIMIT:?} after the heal; restoring {}",
                cluster.members[leader].name
            ));
            helped = true;
        }
    }
    if helped {
        let restored = cluster.restore(leader);
        if let Err(e) = restored {
            let _ = traffic.stop();
            return Err(e.context("restore the cluster"));
        }
    }
    std::thread::sleep(COOLDOWN);
    let recorded = traffic.stop()?;
    say("traffic off");
    let final_leader = cluster.wait_healthy().context("healthy after the round")?;
    let present: BTreeSet<i64> = match recorded.ids {
        Some((lo, hi)) => cluster
            .sql(
                final_leader,
                &format!("select id from nemesis_writes where id between {lo} and {hi}"),
            )
            .context("read the rows back from the final primary")?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
        None => BTreeSet::new(),
    };
    let result = RoundResult {
        fault,
        round,
        target,
        final_primary: cluster.members[final_leader].name.clone(),
        attempted: recorded.attempted,
        acked: recorded.acked.len(),
        lost: check::lost(&recorded.acked, &present),
        split: check::split_brain(&recorded.samples, PROBE_EVERY),
        outage: check::longest_gap(&recorded.acked).map(|(gap, _)| gap),
        recovered,
        deadline,
        helped,
        rewound: rewound_since(cluster, &log_offsets),
    };
    let writers: Vec<String> = check::writers(&recorded.acked)
        .into_iter()
        .map(|(m, n)| format!("{} {n}", cluster.members[m].name))
        .collect();
    if !result.rewound.is_empty() {
        say(&format!("pg_rewind ran on {}", result.rewound.join(", ")));
    }
    say(&format!(
        "{} acknowledged ({}), {} lost, {} split-brain samples{}",
        result.acked,
        writers.join(", "),
        result.lost.len(),
        result.split.samples,
        match &result.split.first {
            Some((_, members, at)) => format!(
                " (first at +{:.2}s: {})",
                at.as_secs_f64(),
                members
                    .iter()
                    .map(|m| cluster.members[*m].name.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            None => String::new(),
        }
    ));
    Ok(result)
}

/// What both agents log when they rewind (patroni-rs and Python Patroni alike).
const REWIND_LINE: &str = "running pg_rewind from";

/// The length of every member's log (they are appended to, across agent restarts).
fn log_lengths(cluster: &Cluster) -> Vec<u64> {
    cluster
        .members
        .iter()
        .map(|m| std::fs::metadata(&m.log).map_or(0, |md| md.len()))
        .collect()
}

/// Members whose log, after `offsets`, says they ran `pg_rewind`.
fn rewound_since(cluster: &Cluster, offsets: &[u64]) -> Vec<String> {
    cluster
        .members
        .iter()
        .zip(offsets)
        .filter(|(m, offset)| {
            let Ok(log) = std::fs::read(&m.log) else {
                return false;
            };
            let from = usize::try_from(**offset).unwrap_or(0).min(log.len());
            String::from_utf8_lossy(&log[from..]).contains(REWIND_LINE)
        })
        .map(|(m, _)| m.name.clone())
        .collect()
}
