//! Issue #11, the faults a fault-injection run found, each on a real 3-member cluster:
//! - the leader's agent frozen (SIGSTOP, PostgreSQL keeps running) for ttl + 10 s while
//!   writes go on and its REST API is polled: another member takes over, the frozen one never
//!   takes a lock back when it resumes (checked on the leader object: one transition, the
//!   new holder's `acquireTime` kept), it demotes and rejoins, and a replica that streamed
//!   from it past the fork point is rewound;
//! - a replica promoted behind the agent's back (`pg_ctl promote`): demoted, recovered in
//!   single-user mode and rewound onto the leader's older timeline;
//! - a leader killed (kill -9) right after a switchover promoted it (its `pg_control` still
//!   on the old timeline unless it checkpointed): it rejoins by rewind;
//! - `POST /reinitialize {"force": true}` on a replica whose PostgreSQL cannot start.
//!
//! Healing is measured from the end of the fault and must take at most
//! `ttl + 2·loop_wait` plus a margin for PostgreSQL's own starts.

#![allow(
    clippy::disallowed_types,
    reason = "the test harness measures real elapsed time (std::time::Instant)"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints};
use patroni_testlab::{Host, Lab, TestNamespace};

/// How long a healed cluster may take after the fault ends: ttl + 2·loop_wait, plus the
/// starts and stops of PostgreSQL that a rewind involves.
const HEAL: Duration = Duration::from_secs((TTL + 2 * LOOP_WAIT + 20) as u64);

/// How soon a resumed former leader must stop accepting writes: its first cycle after the
/// resumption sees the lock taken (c11a24c took it back instead and stayed writable).
const RESUMED_DEMOTES: Duration = Duration::from_secs(5);

/// The leader object's annotations.
async fn leader_record(
    client: &kube::Client,
    ns: &str,
    use_endpoints: bool,
    scope: &str,
) -> Option<BTreeMap<String, String>> {
    if use_endpoints {
        let api: kube::Api<Endpoints> = kube::Api::namespaced(client.clone(), ns);
        api.get(scope).await.ok()?.metadata.annotations
    } else {
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), ns);
        api.get(&format!("{scope}-leader"))
            .await
            .ok()?
            .metadata
            .annotations
    }
}

/// Every distinct `(leader, acquireTime, transitions)` the leader object showed, in order,
/// polled every 100 ms until `stop`.
fn watch_lock(
    ns: &TestNamespace,
    use_endpoints: bool,
    scope: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(String, String, String)>> {
    let (client, ns) = (ns.client.clone(), ns.name.clone());
    let scope = scope.to_owned();
    tokio::spawn(async move {
        let mut seen: Vec<(String, String, String)> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Some(a) = leader_record(&client, &ns, use_endpoints, &scope).await {
                let get = |k: &str| a.get(k).cloned().unwrap_or_default();
                let now = (get("leader"), get("acquireTime"), get("transitions"));
                if !now.0.is_empty() && seen.last() != Some(&now) {
                    tracing::info!(record = ?now, "leader record");
                    seen.push(now);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    })
}

/// The cluster formed: the leader's index, once two replicas stream from it.
async fn formed(members: &[Member]) -> usize {
    let primary = wait_for(FORM_TIMEOUT, "one writable member", members, || {
        let w = writable(members);
        (w.len() == 1).then(|| w[0].clone())
    })
    .await;
    let p = members
        .iter()
        .position(|m| m.name == primary)
        .expect("member");
    wait_for(FORM_TIMEOUT, "two streaming replicas", members, || {
        let m = &members[p];
        (sql(&m.host, &m.host, &m.spec, STREAMING_REPLICAS)? == "2").then_some(())
    })
    .await;
    let m = &members[p];
    sql(&m.host, &m.host, &m.spec, "create table t(v bigint)").expect("create table");
    p
}

/// Waits until `members[leader]` is the only writable member, both others stream from it,
/// and a row written on it now reaches both. Returns how long that took.
async fn healed(members: &[Member], leader: usize, what: &str) -> Duration {
    let start = Instant::now();
    let name = vec![members[leader].name.clone()];
    let l = &members[leader];
    wait_for(HEAL, &format!("{what}: healed"), members, || {
        (writable(members) == name && sql(&l.host, &l.host, &l.spec, STREAMING_REPLICAS)? == "2")
            .then_some(())
    })
    .await;
    sql(&l.host, &l.host, &l.spec, "insert into t values (-1)").expect("write on the leader");
    let marker = sql(&l.host, &l.host, &l.spec, "select count(*) from t").expect("count");
    for m in members {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let count = sql(&m.host, &m.host, &m.spec, "select count(*) from t");
            if count.as_deref() == Some(marker.as_str()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} has {count:?} rows, the leader {marker}\n{}",
                m.name,
                logs(members)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let took = start.elapsed();
    tracing::info!(?took, "{what}: healed");
    took
}

/// Signals the agent process of `m` (not its PostgreSQL).
fn signal_agent(m: &Member, signal: nix::sys::signal::Signal) {
    let pid = m.agent.as_ref().expect("agent runs").id();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("signal agent");
}

/// Background load: inserts into `t` on `target` and polls `GET /cluster` of every member,
/// until `stop`.
fn load(
    members: &[Member],
    target: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let writer = {
        let host = Host::attach(members[target].host.info().clone());
        let spec = members[target].spec.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let _ = sql(&host, &host, &spec, &format!("insert into t values ({n})"));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut threads = vec![writer];
    for m in members {
        let host = Host::attach(m.host.info().clone());
        let url = format!("http://{}:8008/cluster", m.host.ip());
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = host.command("curl").args(["-s", "-m", "1", &url]).output();
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    threads
}

async fn frozen_leader(use_endpoints: bool) {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab
        .namespace(if use_endpoints {
            "t52-freeze-ep"
        } else {
            "t52-freeze-cm"
        })
        .await
        .expect("namespace");
    let scope = "freeze";
    let (mut members, _kubeconfig) = start_cluster(lab, &ns, scope, use_endpoints, 3, |_| {}).await;
    let old = formed(&members).await;
    let stop_watch = Arc::new(AtomicBool::new(false));
    let records = watch_lock(&ns, use_endpoints, scope, stop_watch.clone());
    let stop_load = Arc::new(AtomicBool::new(false));
    let threads = load(&members, old, stop_load.clone());
    let new = {
        tracing::info!(
            "--- SIGSTOP of the leader's agent for ttl + 10 s; writes and GET /cluster go on"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        signal_agent(&members[old], nix::sys::signal::Signal::SIGSTOP);
        let frozen_at = Instant::now();
        let old_name = members[old].name.clone();
        let new = wait_for(FAILOVER_TIMEOUT, "a replica promoted", &members, || {
            let w = writable(&members);
            w.iter().find(|n| **n != old_name).cloned()
        })
        .await;
        let freeze = Duration::from_secs(u64::from(TTL) + 10);
        tokio::time::sleep(freeze.saturating_sub(frozen_at.elapsed())).await;
        tracing::info!("--- SIGCONT");
        signal_agent(&members[old], nix::sys::signal::Signal::SIGCONT);
        let resumed = Instant::now();
        let o = &members[old];
        wait_for(
            RESUMED_DEMOTES,
            "the resumed leader demotes",
            &members,
            || {
                (sql(&o.host, &o.host, &o.spec, "select pg_is_in_recovery()").as_deref()
                    != Some("f"))
                .then_some(())
            },
        )
        .await;
        tracing::info!(took = ?resumed.elapsed(), "the resumed former leader stopped accepting writes");
        members.iter().position(|m| m.name == new).expect("member")
    };
    {
        tracing::info!("--- the resumed former leader demotes; every member heals by itself");
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop_load.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        healed(&members, new, "frozen leader").await;
        tokio::time::sleep(Duration::from_secs(u64::from(2 * LOOP_WAIT))).await;
    }
    stop_watch.store(true, Ordering::Relaxed);
    let records = records.await.expect("lock watcher");
    let logs = logs(&members);
    stop_all(&mut members);
    {
        tracing::info!("--- the lock changed hands once, and was never taken back");
        let holders: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
        let mut distinct = holders.clone();
        distinct.dedup();
        assert_eq!(
            distinct,
            [members[old].name.as_str(), members[new].name.as_str()],
            "holders: {records:?}\n{logs}"
        );
        let after: Vec<&(String, String, String)> = records
            .iter()
            .filter(|r| r.0 == members[new].name)
            .collect();
        assert!(
            after
                .windows(2)
                .all(|w| w[0].1 == w[1].1 && w[0].2 == w[1].2),
            "the new holder's acquireTime and transitions never changed: {records:?}"
        );
    }
}

/// ConfigMaps mode.
#[tokio::test]
async fn a_frozen_leader_never_takes_the_lock_back_and_every_member_heals_in_configmaps_mode() {
    frozen_leader(false).await;
}

/// Endpoints mode.
#[tokio::test]
async fn a_frozen_leader_never_takes_the_lock_back_and_every_member_heals_in_endpoints_mode() {
    frozen_leader(true).await;
}

/// `pg_ctl promote` of a replica behind the agent's back: the member is demoted, recovered in
/// single-user mode (its `pg_control` still names the old timeline) and rewound onto the
/// leader, which stays the leader.
#[tokio::test]
async fn a_replica_promoted_behind_the_agents_back_is_rewound_onto_the_leader() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t52-promoted").await.expect("namespace");
    let scope = "promoted";
    let (mut members, _kubeconfig) = start_cluster(lab, &ns, scope, false, 3, |_| {}).await;
    let leader = formed(&members).await;
    let rogue = (leader + 1) % 3;
    {
        tracing::info!("--- pg_ctl promote on a replica, then writes on it");
        let m = &members[rogue];
        let data = m.config.with_file_name("data");
        // A postmaster start removes `promote.signal`: a promotion that meets a restart of
        // the replica (its agent's, right after the cluster formed) never happens, and
        // `pg_ctl promote -w` then waits its 60 s in vain. The fault is "a replica
        // promoted behind the agent's back", so ask again until it is promoted.
        let promoted = patroni_testlab::wait_until(
            Duration::from_secs(60),
            "the replica promoted by pg_ctl".into(),
            || async {
                let out = m
                    .host
                    .command_as("postgres", "/usr/lib/postgresql/15/bin/pg_ctl")
                    .args(["promote", "-t", "15", "-D"])
                    .arg(&data)
                    .output()
                    .expect("pg_ctl");
                // "not in standby mode": an earlier request promoted it after all.
                if out.status.success()
                    || String::from_utf8_lossy(&out.stderr).contains("not in standby mode")
                {
                    return Some(());
                }
                println!("pg_ctl promote again: {out:?}");
                None
            },
        )
        .await;
        assert!(promoted.is_ok(), "{promoted:?}\n{}", logs(&members));
        let l = &members[leader];
        sql(
            &l.host,
            &l.host,
            &l.spec,
            "insert into t select generate_series(1, 1000)",
        )
        .expect("write on the leader");
    }
    let took = healed(&members, leader, "promoted replica").await;
    let logs = logs(&members);
    stop_all(&mut members);
    assert!(took <= HEAL, "{took:?}");
    assert!(
        logs.contains("doing crash recovery in a single user mode"),
        "{logs}"
    );
}

/// Switches over from `members[from]` to `members[to]` through the REST API; returns once
/// the candidate accepts writes.
async fn switchover(members: &[Member], from: usize, to: usize) {
    let l = &members[from];
    let body = format!(
        r#"{{"leader":"{}","candidate":"{}"}}"#,
        l.name, members[to].name
    );
    let url = format!("http://{}:8008/switchover", l.host.ip());
    wait_for(
        Duration::from_secs(60),
        "switchover accepted",
        members,
        || {
            let out = l
                .host
                .command("curl")
                .args(["-s", "-XPOST", &url, "-d", &body])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("Successfully switched over")
                .then_some(())
        },
    )
    .await;
    let c = &members[to];
    wait_for(
        Duration::from_secs(30),
        "candidate writable",
        members,
        || {
            sql(
                &c.host,
                &c.host,
                &c.spec,
                "insert into t select generate_series(1, 1000)",
            )
        },
    )
    .await;
}

/// A leader killed a few seconds after a switchover promoted it (timeline 3, as in the fault
/// run) rejoins by rewind once restarted.
#[tokio::test]
async fn a_leader_killed_right_after_its_promotion_rejoins_by_rewind() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t52-killed").await.expect("namespace");
    let scope = "killed";
    let (mut members, kubeconfig) = start_cluster(lab, &ns, scope, false, 3, |_| {}).await;
    let first = formed(&members).await;
    let (second, third) = ((first + 1) % 3, (first + 2) % 3);
    {
        tracing::info!("--- switchover to timeline 2, then to timeline 3 and kill -9 at once");
        switchover(&members, first, second).await;
        healed(&members, second, "first switchover").await;
        switchover(&members, second, third).await;
        // Once the others stream timeline 3 from it: a member promoted before it learnt of
        // timeline 3 would pick the same timeline ID for a different history, which neither
        // pg_rewind nor Patroni can repair without a WAL archive.
        healed(&members, third, "second switchover").await;
        kill_member(&mut members[third]);
    }
    let next = wait_for(FAILOVER_TIMEOUT, "another leader", &members, || {
        let w = writable(&members);
        let name = w.first()?.clone();
        (w.len() == 1 && name != members[third].name)
            .then(|| members.iter().position(|m| m.name == name))
            .flatten()
    })
    .await;
    {
        tracing::info!("--- the killed leader, restarted, rejoins");
        let l = &members[next];
        sql(
            &l.host,
            &l.host,
            &l.spec,
            "insert into t select generate_series(1, 1000)",
        )
        .expect("write on the next leader");
        restart_member(&mut members[third], &kubeconfig);
        let took = healed(&members, next, "killed new leader").await;
        assert!(took <= HEAL, "{took:?}");
    }
    stop_all(&mut members);
}

/// `POST /reinitialize {"force": true}` rebuilds a replica whose PostgreSQL cannot start.
#[tokio::test]
async fn a_forced_reinitialize_runs_while_postgres_cannot_start() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t52-reinit").await.expect("namespace");
    let scope = "reinit";
    let (mut members, kubeconfig) = start_cluster(lab, &ns, scope, false, 3, |_| {}).await;
    let leader = formed(&members).await;
    let broken = (leader + 1) % 3;
    {
        tracing::info!(
            "--- a replica that cannot start: an invalid setting in postgresql.auto.conf"
        );
        kill_member(&mut members[broken]);
        let data = members[broken].config.with_file_name("data");
        std::fs::write(
            data.join("postgresql.auto.conf"),
            "shared_buffers = 'not a size'\n",
        )
        .expect("break the replica");
        restart_member(&mut members[broken], &kubeconfig);
        let m = &members[broken];
        wait_for(
            Duration::from_secs(60),
            "start failures logged",
            &members,
            || {
                std::fs::read_to_string(&m.log)
                    .ok()?
                    .contains("invalid value for parameter \"shared_buffers\"")
                    .then_some(())
            },
        )
        .await;
    }
    {
        tracing::info!("--- POST /reinitialize {{force: true}}: it is cloned again and streams");
        let m = &members[broken];
        let url = format!("http://{}:8008/reinitialize", m.host.ip());
        let out = m
            .host
            .command("curl")
            .args(["-s", "-XPOST", &url, "-d", r#"{"force": true}"#])
            .output()
            .expect("curl");
        let answer = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(answer.contains("reinitialize started"), "{answer}");
        let took = healed(&members, leader, "forced reinitialize").await;
        assert!(took <= HEAL, "{took:?}");
    }
    stop_all(&mut members);
}
