//! The short lease (#19) on the lab's Kubernetes: `ttl: 5`, `loop_wait: 1`,
//! `retry_timeout: 2`, below Patroni's minimum of 20.
//!
//! 1. The primary's agent is frozen (SIGSTOP) while its PostgreSQL keeps running: its lease
//!    fence kills PostgreSQL before the lease can expire for the others, then a replica takes
//!    over. Probes writing to every member throughout, each row stamped with the server's
//!    `clock_timestamp()` (one machine, one clock), show that the old primary's last
//!    acknowledged write precedes the new primary's first. Thawed, the old agent rejoins as a
//!    replica.
//! 2. `kill -9` of the new primary's agent and postmaster: another member accepts writes
//!    within seconds (measured and printed; the bench measures it properly).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use common::cluster::*;
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use patroni_testlab::{Host, Lab};

const SHORT_TTL: u32 = 5;

/// Acknowledged probe writes: (member, the server's `clock_timestamp()` as Unix seconds).
type Acks = Arc<Mutex<Vec<(String, f64)>>>;

/// One thread per member inserting a stamped row every 100 ms from the member's own host,
/// recording each acknowledged one.
fn start_probes(
    members: &[Member],
    stop: &Arc<AtomicBool>,
    acks: &Acks,
) -> Vec<std::thread::JoinHandle<()>> {
    members
        .iter()
        .map(|m| {
            // A handle on the same namespace that does not own it (the member's does).
            let host = Host::attach(m.host.info().clone());
            let (spec, name) = (m.spec.clone(), m.name.clone());
            let (stop, acks) = (Arc::clone(stop), Arc::clone(acks));
            std::thread::spawn(move || {
                let insert = format!(
                    "insert into probe(who, at) values ('{name}', clock_timestamp()) \
                     returning extract(epoch from at)"
                );
                while !stop.load(Ordering::Relaxed) {
                    // The first line is the returned value (the command tag follows).
                    if let Some(at) = sql(&host, &host, &spec, &insert)
                        .and_then(|out| out.lines().next()?.trim().parse::<f64>().ok())
                    {
                        acks.lock().expect("acks").push((name.clone(), at));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_lease_fences_a_frozen_primary_and_fails_over_in_seconds() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t63-lease").await.expect("namespace");
    let (mut members, kubeconfig) = start_cluster(lab, &ns, "lease", false, 3, |s| {
        s.ttl = SHORT_TTL;
        s.loop_wait = 1;
        s.retry_timeout = 2;
    })
    .await;
    let p = healthy(&members, "formed with ttl 5").await;
    let (h, s) = (&members[p].host, &members[p].spec);
    sql(h, h, s, "create table probe (who text, at timestamptz)").expect("create probe");
    wait_for(
        Duration::from_secs(30),
        "probe table replicated",
        &members,
        || {
            members
                .iter()
                .all(|m| sql(&m.host, &m.host, &m.spec, "select count(*) from probe").is_some())
                .then_some(())
        },
    )
    .await;

    tracing::info!(
        "--- SIGSTOP of the primary's agent: its fence kills PostgreSQL, then a replica takes over"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Acks = Arc::default();
    let probes = start_probes(&members, &stop, &acks);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old = members[p].name.clone();
    let agent = Pid::from_raw(members[p].agent.as_ref().expect("agent").id() as i32);
    kill(agent, Signal::SIGSTOP).expect("SIGSTOP");
    let frozen_at = Instant::now();
    let others: Vec<usize> = (0..members.len()).filter(|i| *i != p).collect();
    let new = wait_for(Duration::from_secs(60), "a new primary", &members, || {
        others.iter().copied().find(|i| {
            let m = &members[*i];
            sql(&m.host, &m.host, &m.spec, "select pg_is_in_recovery()").as_deref() == Some("f")
        })
    })
    .await;
    let failover = frozen_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for t in probes {
        let _ = t.join();
    }
    kill(agent, Signal::SIGCONT).expect("SIGCONT");
    let acks = acks.lock().expect("acks").clone();
    let last_old = acks
        .iter()
        .filter(|(w, _)| *w == old)
        .map(|(_, at)| *at)
        .fold(f64::MIN, f64::max);
    let first_new = acks
        .iter()
        .filter(|(w, _)| *w == members[new].name)
        .map(|(_, at)| *at)
        .fold(f64::MAX, f64::min);
    let log = std::fs::read_to_string(&members[p].log).unwrap_or_default();
    println!(
        "frozen agent: new primary {} writable {:.2} s after the freeze; last write on the old \
         primary {:.3} s before the new one's first ({} acknowledged probe writes)",
        members[new].name,
        failover.as_secs_f64(),
        first_new - last_old,
        acks.len()
    );
    assert!(
        acks.iter().any(|(w, _)| *w == old),
        "no write on the old primary before the freeze: the probe proves nothing"
    );
    assert!(
        first_new < f64::MAX,
        "no acknowledged write on the new primary: {acks:?}"
    );
    assert!(
        last_old < first_new,
        "two primaries acknowledged writes at once: the old one until {last_old}, the new one from {first_new}\n{}",
        logs(&members)
    );
    assert!(
        log.contains("lease fence: the leader lease ran out"),
        "the old primary's fence did not fire:\n{log}"
    );
    let p = healthy(&members, "the thawed member rejoined").await;
    assert_eq!(p, new, "the primary changed again after the thaw");

    tracing::info!("--- kill -9 of the primary's agent and postmaster");
    let killed_at = Instant::now();
    kill_member(&mut members[new]);
    let survivors: Vec<usize> = (0..members.len()).filter(|i| *i != new).collect();
    let next = wait_for(
        Duration::from_secs(60),
        "a primary after kill -9",
        &members,
        || {
            survivors.iter().copied().find(|i| {
                let m = &members[*i];
                sql(
                    &m.host,
                    &m.host,
                    &m.spec,
                    "insert into probe(who, at) values ('after-kill', now()) returning 1",
                )
                .is_some()
            })
        },
    )
    .await;
    let failover = killed_at.elapsed();
    println!(
        "kill -9: {} accepted a write {:.2} s after the kill (ttl {SHORT_TTL} s)",
        members[next].name,
        failover.as_secs_f64()
    );
    // Generous for a loaded machine; `cargo xtask bench` measures the median.
    assert!(
        failover < Duration::from_secs(30),
        "failover took {failover:?}\n{}",
        logs(&members)
    );
    restart_member(&mut members[new], &kubeconfig);
    healthy(&members, "the killed member rejoined").await;
    stop_all(&mut members);
}
