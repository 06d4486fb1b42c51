//! Asynchronous against synchronous replication (issue #16): per mode, `kill -9` failovers
//! under a writer that records every acknowledged row (how many are missing on the new
//! primary), and switchovers. The mode is set live with `PATCH /config`, as a user would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use patroni_testlab::Host;

use super::{Cluster, sql};

/// Pause between the writer's attempts after a failed one.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// Rows acknowledged before the kill, so the kill lands in a steady stream of commits.
const ACKED_BEFORE_KILL: usize = 40;
/// Longest a failover may take beyond the ttl.
const FAILOVER_SLACK: Duration = Duration::from_secs(90);
/// Longest the mode change may take to show in `GET /cluster`.
const MODE_TIMEOUT: Duration = Duration::from_secs(60);

/// Replication mode under measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `synchronous_mode: off`.
    Async,
    /// `synchronous_mode: on`.
    Sync,
}

/// What one mode measured.
#[derive(Debug, Default, Clone)]
pub(crate) struct ModeResults {
    /// kill -9 → first write on the new primary, per failover.
    pub failover_s: Vec<f64>,
    /// POST /switchover → first write on the candidate, per switchover.
    pub switchover_s: Vec<f64>,
    /// Acknowledged rows per failover.
    pub acked: Vec<usize>,
    /// Acknowledged rows missing on the new primary, per failover.
    pub lost: Vec<usize>,
}

// === impl Mode ===

impl Mode {
    /// As `PATCH /config` spells it.
    fn json(self) -> &'static str {
        match self {
            Mode::Async => "false",
            Mode::Sync => "true",
        }
    }

    /// As the report names it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Mode::Async => "asynchronous",
            Mode::Sync => "`synchronous_mode: on`",
        }
    }
}

/// Sets the mode through the leader's `PATCH /config` and waits until `GET /cluster` shows
/// it (a `sync_standby` in sync mode, none otherwise).
pub(crate) fn set_mode(cluster: &Cluster, mode: Mode) -> anyhow::Result<()> {
    let leader = cluster.wait_healthy()?;
    let ip = cluster.members[leader].host.ip().to_string();
    let body = format!(r#"{{"synchronous_mode": {}}}"#, mode.json());
    let out = cluster
        .client
        .command("curl")
        .args(["-s", "--max-time", "10", "-XPATCH"])
        .args(["-H", "Content-Type: application/json", "-d", &body])
        .arg(format!("http://{ip}:8008/config"))
        .output()
        .context("run curl")?;
    if !out.status.success() {
        bail!("PATCH /config {body} failed: {out:?}");
    }
    let deadline = Instant::now() + MODE_TIMEOUT;
    loop {
        let syncs = (0..cluster.members.len())
            .find_map(|i| cluster.cluster_view(i))
            .map(|v| v.iter().filter(|m| m["role"] == "sync_standby").count());
        if syncs == Some(usize::from(mode == Mode::Sync)) {
            println!("bench: replication is now {}", mode.label());
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} not shown in GET /cluster after {MODE_TIMEOUT:?}",
                mode.label()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A writer inserting increasing values into `bench_acked`, starting on member `first` and
/// moving to the next member after a failure; every value a member acknowledged is recorded
/// with the member and when.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(u64, usize, Instant)>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(cluster: &Cluster, first: usize) -> Self {
        let client = Host::attach(cluster.client.info().clone());
        let ips: Vec<String> = cluster
            .members
            .iter()
            .map(|m| m.host.ip().to_string())
            .collect();
        let spec = cluster.spec.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let (mut value, mut current) = (0u64, first);
                while !stop.load(Ordering::Relaxed) {
                    value += 1;
                    let query = format!("insert into bench_acked values ({value})");
                    if sql(&client, &ips[current], &spec, &query).is_some() {
                        if let Ok(mut a) = acked.lock() {
                            a.push((value, current, Instant::now()));
                        }
                    } else {
                        current = (current + 1) % ips.len();
                        std::thread::sleep(RETRY_EVERY);
                    }
                }
            })
        };
        Writer {
            stop,
            acked,
            thread,
        }
    }

    fn acked(&self) -> Vec<(u64, usize, Instant)> {
        self.acked.lock().map(|a| a.clone()).unwrap_or_default()
    }

    fn stop(self) -> Vec<(u64, usize, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.acked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// One `kill -9` of the leader's host under the writer: (seconds to the first write on
/// another member, rows acknowledged, acknowledged rows missing on the new primary).
/// Restarts the killed member.
pub(crate) fn failover(cluster: &mut Cluster) -> anyhow::Result<(f64, usize, usize)> {
    let leader = cluster.wait_healthy()?;
    cluster
        .sql(
            leader,
            "create table if not exists bench_acked(v bigint primary key); truncate bench_acked",
        )
        .context("create bench_acked")?;
    let writer = Writer::start(cluster, leader);
    let warm = Instant::now();
    while writer.acked().len() < ACKED_BEFORE_KILL {
        if warm.elapsed() > Duration::from_secs(60) {
            writer.stop();
            bail!("the writer made no progress on the leader");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "bench: kill -9 of everything on {} (the leader) under a writer …",
        cluster.members[leader].name
    );
    let killed = Instant::now();
    cluster.signal_host(leader, Signal::SIGKILL);
    let limit = Duration::from_secs(u64::from(cluster.ttl)) + FAILOVER_SLACK;
    let promoted = loop {
        let after = writer
            .acked()
            .into_iter()
            .find(|(_, member, at)| *member != leader && *at > killed);
        if let Some((_, member, at)) = after {
            break (member, at.duration_since(killed));
        }
        if killed.elapsed() > limit {
            writer.stop();
            bail!("no member accepted a write {limit:?} after the kill");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_secs(1));
    let acked = writer.stop();
    let (new, elapsed) = promoted;
    let rows = cluster
        .sql(new, "select v from bench_acked")
        .context("read the rows on the new primary")?;
    let present: std::collections::BTreeSet<u64> =
        rows.lines().filter_map(|l| l.parse().ok()).collect();
    let lost = acked
        .iter()
        .filter(|(v, _, _)| !present.contains(v))
        .count();
    println!(
        "bench: failover to first write {:.3} s; {} acknowledged, {lost} missing on {}",
        elapsed.as_secs_f64(),
        acked.len(),
        cluster.members[new].name
    );
    cluster.restore(leader)?;
    Ok((elapsed.as_secs_f64(), acked.len(), lost))
}
