//! The measurements themselves; each leaves the cluster healthy again.
//!
//! Writes are `psql -c "insert …"` processes started on the `client` host
//! against a member's lab address, so one attempt costs a process start, a
//! TCP connection and SCRAM authentication (tens of ms): that is the
//! resolution of the write-based timings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use patroni_testlab::{Host, Lab};

use super::store::Store;
use super::{Cluster, write};

/// Pause between write attempts.
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// Longest a failover may take beyond the ttl before the run fails.
const FAILOVER_SLACK: Duration = Duration::from_secs(90);
/// Longest a switchover or drain may take before the run fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// What an idle window measured.
pub(crate) struct Idle {
    /// VmRSS of each agent at the end of the window.
    pub rss_kb: Vec<u64>,
    /// RssAnon (private, not file-backed) of each agent at the end of the window.
    pub anon_kb: Vec<u64>,
    /// Pss (proportional set size: each shared page divided among the processes mapping it)
    /// of each agent at the end of the window.
    pub pss_kb: Vec<u64>,
    /// The resident pages each agent touched during the window (`Referenced:` of
    /// `/proc/PID/smaps_rollup` after `clear_refs` at its start): its idle working set.
    pub referenced_kb: Vec<u64>,
    /// The agent's helper processes (children running the agent's own executable: the lease
    /// fence of patroni-rs), summed per agent.
    pub helpers: Vec<Helpers>,
    /// VmRSS of each agent at the end of the window by kind of mapping.
    pub breakdown: Vec<RssBreakdown>,
    /// (utime + stime) of each agent over the window, in % of one core.
    pub cpu_pct: Vec<f64>,
    /// Requests of the whole cluster to the DCS, per minute (what counts: [`Store::requests`]).
    pub api_per_min: Option<f64>,
}

/// Memory of an agent's helper processes (children running the agent's executable), in kB.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Helpers {
    /// How many there are.
    pub count: u32,
    /// Their VmRSS, summed.
    pub rss_kb: u64,
    /// Their RssAnon, summed.
    pub anon_kb: u64,
    /// Their Pss, summed.
    pub pss_kb: u64,
}

/// The helper processes of `pid`: its children whose executable is its own (the lease fence,
/// started through `/proc/self/exe`; PostgreSQL's postmaster, also a child, is not one).
fn helpers(pid: u32) -> Helpers {
    let exe = |p: u32| std::fs::read_link(format!("/proc/{p}/exe")).ok();
    let Some(own) = exe(pid) else {
        return Helpers::default();
    };
    let mut h = Helpers::default();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            if exe(child).as_ref() != Some(&own) {
                continue;
            }
            h.count += 1;
            h.rss_kb += status_kb(child, "VmRSS:").unwrap_or(0);
            h.anon_kb += status_kb(child, "RssAnon:").unwrap_or(0);
            h.pss_kb += rollup_kb(child, "Pss:").unwrap_or(0);
        }
    }
    h
}

/// Field `key` (`Pss:`, `Referenced:`) of `/proc/PID/smaps_rollup`, in kB.
fn rollup_kb(pid: u32, key: &str) -> Option<u64> {
    proc_kb(pid, "smaps_rollup", key)
}

/// Field `key` of the `/proc/PID/<file>` whose lines read `Key:  <n> kB`, in kB.
fn proc_kb(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Clears the referenced bits of every page of `pid` (`/proc/PID/clear_refs`), so that
/// `Referenced:` counts only the pages touched from now on.
fn clear_refs(pid: u32) {
    if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "1") {
        eprintln!("bench: clear_refs of {pid}: {e}");
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at state.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Field `key` (`VmRSS:`, `RssAnon:`) of `/proc/PID/status`, in kB.
fn status_kb(pid: u32, key: &str) -> Option<u64> {
    proc_kb(pid, "status", key)
}

/// Resident memory of one agent by kind of mapping, in kB: the `Rss:` of
/// every mapping in `/proc/PID/smaps`, summed by what is mapped.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RssBreakdown {
    /// The agent binary's executable segment (`.text`).
    pub binary_code: u64,
    /// The agent binary's read-only segments (`.rodata`, `.eh_frame`,
    /// relocations, RELRO data once relocated).
    pub binary_rodata: u64,
    /// The agent binary's writable segment (`.data`, `.got`).
    pub binary_data: u64,
    /// Shared libraries (libc, libm, libgcc_s, the dynamic loader).
    pub libraries: u64,
    /// The `[heap]` (brk) mapping of the main thread's malloc arena.
    pub heap: u64,
    /// Anonymous mappings: thread stacks, other threads' malloc arenas,
    /// large allocations.
    pub anonymous: u64,
    /// Everything else: `[stack]`, `[vdso]`, `[vvar]`.
    pub other: u64,
}

impl RssBreakdown {
    /// The sum of every kind (VmRSS).
    pub fn total(&self) -> u64 {
        self.binary_code
            + self.binary_rodata
            + self.binary_data
            + self.libraries
            + self.heap
            + self.anonymous
            + self.other
    }
}

/// [`RssBreakdown`] of `pid`, from `/proc/PID/smaps`.
pub(crate) fn rss_breakdown(pid: u32) -> Option<RssBreakdown> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let exe = exe.to_string_lossy();
    let exe = exe.trim_end_matches(" (deleted)");
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(parse_smaps(&smaps, exe))
}

/// Sums the `Rss:` lines of `smaps` by mapping; `exe` is the agent binary's path.
fn parse_smaps(smaps: &str, exe: &str) -> RssBreakdown {
    let mut b = RssBreakdown::default();
    let mut slot: Option<fn(&mut RssBreakdown) -> &mut u64> = None;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_header = fields.first().is_some_and(|range| {
            range.split_once('-').is_some_and(|(a, z)| {
                u64::from_str_radix(a, 16).is_ok() && u64::from_str_radix(z, 16).is_ok()
            })
        });
        if is_header {
            let perms = fields.get(1).copied().unwrap_or("");
            let path = fields.get(5..).map(|p| p.join(" ")).unwrap_or_default();
            let path = path.trim_end_matches(" (deleted)");
            slot = Some(if path == exe {
                if perms.contains('x') {
                    |b| &mut b.binary_code
                } else if perms.contains('w') {
                    |b| &mut b.binary_data
                } else {
                    |b| &mut b.binary_rodata
                }
            } else if path.contains(".so") {
                |b| &mut b.libraries
            } else if path == "[heap]" {
                |b| &mut b.heap
            } else if path.is_empty() {
                |b| &mut b.anonymous
            } else {
                |b| &mut b.other
            });
        } else if fields.first() == Some(&"Rss:")
            && let (Some(f), Some(kb)) = (slot, fields.get(1).and_then(|v| v.parse::<u64>().ok()))
        {
            *f(&mut b) += kb;
        }
    }
    b
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// An idle window of `secs` on a healthy cluster.
pub(crate) fn idle(
    cluster: &mut Cluster,
    lab: &Lab,
    store: &Store,
    secs: u64,
) -> anyhow::Result<Idle> {
    cluster.wait_healthy()?;
    // Let the restored member's start-up traffic pass.
    std::thread::sleep(Duration::from_secs(5));
    println!("bench: idle window of {secs} s …");
    let pids: Vec<u32> = cluster
        .members
        .iter()
        .filter_map(|m| m.agent.as_ref().map(|a| a.id()))
        .collect();
    for p in &pids {
        clear_refs(*p);
    }
    let before: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let api_before = store.requests(lab);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let api_after = store.requests(lab);
    let elapsed = started.elapsed().as_secs_f64();
    let after: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let hz = clock_ticks_per_second();
    let cpu_pct = before
        .iter()
        .zip(&after)
        .filter_map(|(b, a)| Some((a.as_ref()? - b.as_ref()?) as f64 / hz / elapsed * 100.0))
        .collect();
    let rss_kb = pids
        .iter()
        .filter_map(|p| status_kb(*p, "VmRSS:"))
        .collect();
    let anon_kb = pids
        .iter()
        .filter_map(|p| status_kb(*p, "RssAnon:"))
        .collect();
    let pss_kb = pids.iter().filter_map(|p| rollup_kb(*p, "Pss:")).collect();
    let referenced_kb = pids
        .iter()
        .filter_map(|p| rollup_kb(*p, "Referenced:"))
        .collect();
    let helpers = pids.iter().map(|p| helpers(*p)).collect();
    let breakdown: Vec<RssBreakdown> = pids.iter().filter_map(|p| rss_breakdown(*p)).collect();
    for (pid, b) in pids.iter().zip(&breakdown) {
        println!(
            "bench: agent {pid} RSS by mapping (kB): {b:?}, total {}",
            b.total()
        );
    }
    let api_per_min = match (api_before, api_after) {
        (Some(b), Some(a)) => Some((a - b) * 60.0 / elapsed),
        _ => None,
    };
    Ok(Idle {
        rss_kb,
        anon_kb,
        pss_kb,
        referenced_kb,
        helpers,
        breakdown,
        cpu_pct,
        api_per_min,
    })
}

/// SIGKILL of every process on the leader's host to the first committed
/// INSERT on another member, in seconds. Restarts the killed member.
pub(crate) fn failover(cluster: &mut Cluster) -> anyhow::Result<f64> {
    let leader = cluster.wait_healthy()?;
    if !write(
        &cluster.client,
        cluster.members[leader].host.ip(),
        &cluster.spec,
    ) {
        bail!("the leader does not accept writes");
    }
    println!(
        "bench: kill -9 of everything on {} (the leader) …",
        cluster.members[leader].name
    );
    let started = Instant::now();
    let pids = cluster.signal_host(leader, Signal::SIGKILL);
    if pids.is_empty() {
        bail!("no process on the leader's host");
    }
    let others: Vec<String> = (0..cluster.members.len())
        .filter(|i| *i != leader)
        .map(|i| cluster.members[i].host.ip().to_string())
        .collect();
    let limit = Duration::from_secs(u64::from(cluster.ttl)) + FAILOVER_SLACK;
    let elapsed = loop {
        if others
            .iter()
            .any(|ip| write(&cluster.client, ip, &cluster.spec))
        {
            break started.elapsed();
        }
        if started.elapsed() > limit {
            bail!("no member accepted a write {limit:?} after the kill");
        }
        std::thread::sleep(WRITE_EVERY);
    };
    println!(
        "bench: kill -9 failover to first write: {:.3} s",
        elapsed.as_secs_f64()
    );
    cluster.restore(leader)?;
    Ok(elapsed.as_secs_f64())
}

/// `POST /switchover` (curl on the client host) to the first committed
/// INSERT on the candidate, in seconds. The candidate is the synchronous standby when there
/// is one (Patroni switches over only to it), else the member after the leader.
pub(crate) fn switchover(cluster: &mut Cluster) -> anyhow::Result<f64> {
    let leader = cluster.wait_healthy()?;
    let candidate = cluster.switchover_candidate(leader);
    let (l, c) = (&cluster.members[leader], &cluster.members[candidate]);
    println!("bench: switchover {} -> {} …", l.name, c.name);
    let body = format!(r#"{{"leader":"{}","candidate":"{}"}}"#, l.name, c.name);
    let url = format!("http://{}:8008/switchover", l.host.ip());
    let started = Instant::now();
    let mut curl = cluster
        .client
        .command("curl")
        .args(["-s", "--max-time", "60", "-XPOST", &url, "-d", &body])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("start curl")?;
    let ip = c.host.ip().to_string();
    let mut answered = false;
    let result = loop {
        if write(&cluster.client, &ip, &cluster.spec) {
            break Ok(started.elapsed());
        }
        if !answered && let Ok(Some(_)) = curl.try_wait() {
            answered = true;
            // The API answered; fine if it accepted, the write is just not there yet.
            let mut answer = String::new();
            if let Some(out) = curl.stdout.as_mut() {
                let _ = std::io::Read::read_to_string(out, &mut answer);
            }
            if !answer.contains("Successfully") {
                break Err(anyhow::anyhow!("switchover refused: {answer}"));
            }
        }
        if started.elapsed() > STEP_TIMEOUT {
            break Err(anyhow::anyhow!(
                "the candidate took no write within {STEP_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(WRITE_EVERY);
    };
    let _ = curl.wait();
    let elapsed = result?;
    println!(
        "bench: switchover to first write: {:.3} s",
        elapsed.as_secs_f64()
    );
    cluster.wait_healthy()?;
    Ok(elapsed.as_secs_f64())
}

/// SIGTERM to the leader's agent only, with a writer trying every member
/// each [`WRITE_EVERY`] (the last writable one first): the longest gap
/// between two committed writes, in seconds. Restarts the stopped agent.
pub(crate) fn sigterm_gap(cluster: &mut Cluster) -> anyhow::Result<f64> {
    let leader = cluster.wait_healthy()?;
    let client = Host::attach(cluster.client.info().clone());
    let ips: Vec<String> = cluster
        .members
        .iter()
        .map(|m| m.host.ip().to_string())
        .collect();
    let spec = cluster.spec.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut ok: Vec<(Instant, usize)> = Vec::new();
            let mut first = 0;
            while !stop.load(Ordering::Relaxed) {
                let order = (0..ips.len()).map(|k| (first + k) % ips.len());
                for i in order {
                    if write(&client, &ips[i], &spec) {
                        ok.push((Instant::now(), i));
                        first = i;
                        break;
                    }
                }
                std::thread::sleep(WRITE_EVERY);
            }
            ok
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let m = &mut cluster.members[leader];
    let mut agent = m.agent.take().context("the leader's agent runs")?;
    println!(
        "bench: SIGTERM to {}'s agent (pid {}) …",
        m.name,
        agent.id()
    );
    let started = Instant::now();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(agent.id()).context("pid")?);
    nix::sys::signal::kill(pid, Signal::SIGTERM).context("SIGTERM the agent")?;
    let exited = loop {
        if let Ok(Some(_)) = agent.try_wait() {
            break true;
        }
        if started.elapsed() > STEP_TIMEOUT {
            let _ = agent.kill();
            let _ = agent.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "bench: the agent {} after {:.1} s",
        if exited { "exited" } else { "was killed" },
        started.elapsed().as_secs_f64()
    );
    // Run until another member has taken writes for a while.
    let wait_new = Instant::now();
    let new_leader = loop {
        if let Some(i) = (0..cluster.members.len())
            .filter(|i| *i != leader)
            .find(|i| {
                write(
                    &cluster.client,
                    cluster.members[*i].host.ip(),
                    &cluster.spec,
                )
            })
        {
            break Some(i);
        }
        if wait_new.elapsed() > STEP_TIMEOUT {
            break None;
        }
        std::thread::sleep(WRITE_EVERY);
    };
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let ok = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))?;
    if new_leader.is_none() {
        bail!("no other member took writes within {STEP_TIMEOUT:?} of the agent's exit");
    }
    // The writer ran from 2 s before the signal to 2 s after another member took writes.
    let times: Vec<Instant> = ok.iter().map(|(t, _)| *t).collect();
    if times.len() < 2 {
        bail!("the writer recorded fewer than two writes around the SIGTERM");
    }
    let gap = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    println!(
        "bench: SIGTERM longest write gap: {:.3} s",
        gap.as_secs_f64()
    );
    cluster.restore(leader)?;
    Ok(gap.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::parse_smaps;

    #[test]
    fn smaps_rss_is_summed_by_kind_of_mapping() {
        let smaps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 123 /opt/patroni (deleted)
Size:               1024 kB
Rss:                 100 kB
55d0a0100000-55d0a0900000 r-xp 00100000 fd:01 123 /opt/patroni (deleted)
Rss:                2000 kB
55d0a0900000-55d0a0a00000 r--p 00900000 fd:01 123 /opt/patroni (deleted)
Rss:                 300 kB
55d0a0a00000-55d0a0a10000 rw-p 00a00000 fd:01 123 /opt/patroni (deleted)
Rss:                  40 kB
55d0a1000000-55d0a1100000 rw-p 00000000 00:00 0 [heap]
Rss:                 500 kB
7f0000000000-7f0000200000 rw-p 00000000 00:00 0
Rss:                  64 kB
7f0000200000-7f0000300000 r-xp 00028000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 900 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Rss:                  12 kB
";
        let b = parse_smaps(smaps, "/opt/patroni");
        assert_eq!(b.binary_code, 2000);
        assert_eq!(b.binary_rodata, 400);
        assert_eq!(b.binary_data, 40);
        assert_eq!(b.heap, 500);
        assert_eq!(b.anonymous, 64);
        assert_eq!(b.libraries, 900);
        assert_eq!(b.other, 12);
        assert_eq!(b.total(), 3916);
    }
}
