//! Issue #16, synchronous replication on a real 3-member cluster, in both modes (`on`: one
//! `sync` standby; `quorum`: `ANY 1` of both standbys, `/sync` with `quorum: 1`):
//! - turned on live (`PATCH /config`): the primary lists its synchronous standbys in
//!   `synchronous_standby_names`, PostgreSQL reports them `sync`/`quorum`, `/sync` names them,
//!   and Patroni's own `patronictl list` shows `Sync Standby`/`Quorum Standby`;
//! - a writer records every acknowledged row while the primary is killed (`kill -9` of agent
//!   and postmaster) ten times: each time a member `/sync` named is the one promoted, and
//!   no acknowledged row is missing on the last primary;
//! - `on` mode: SIGTERM to the synchronous standby's agent: it asks to be released (`nosync`)
//!   and is dropped from `/sync` before it stops (Patroni's `while_not_sync_standby`);
//! - strict mode with both replicas killed: a commit is never acknowledged (it waits), and goes
//!   through once a replica is back;
//! - turned off live: `/sync` is emptied and the primary lists nobody.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::{AgentSpec, Host, Lab};
use serde_json::Value;

/// Failovers the writer runs through.
const FAILOVERS: usize = 10;

/// Names of the members with `role` in `GET /cluster` as `m` answers it.
fn with_role(m: &Member, role: &str) -> Option<Vec<String>> {
    let (status, body) = rest(m, "GET", "/cluster", None, None)?;
    let doc: Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
    Some(
        doc["members"]
            .as_array()?
            .iter()
            .filter(|x| x["role"] == role)
            .filter_map(|x| x["name"].as_str().map(String::from))
            .collect(),
    )
}

/// The primary, once it has two streaming replicas and its synchronous standbys are listed in
/// `synchronous_standby_names`, reported by PostgreSQL and named in `/sync`: in `on` mode one
/// `sync` standby, in `quorum` mode both (`ANY 1 (...)`, `quorum`). `(primary, standbys)`.
async fn synchronous(members: &[Member], mode: Mode) -> (usize, Vec<usize>) {
    wait_for(
        FORM_TIMEOUT,
        "a primary with its synchronous standbys named in /sync",
        members,
        || {
            let w = writable(members);
            let [p] = w.as_slice() else { return None };
            let p = index(members, p);
            let (h, s) = (&members[p].host, &members[p].spec);
            (sql(h, h, s, STREAMING_REPLICAS)? == "2").then_some(())?;
            let mut named = with_role(&members[p], mode.role())?;
            named.sort();
            let rows = sql(
                h,
                h,
                s,
                &format!(
                    "select string_agg(application_name, ',' order by application_name) \
                     from pg_stat_replication where sync_state = '{}'",
                    mode.sync_state()
                ),
            )?;
            let ssn = sql(h, h, s, "show synchronous_standby_names")?;
            let listed = match mode {
                Mode::On => named.len() == 1 && ssn.trim_matches('"') == named[0],
                Mode::Quorum => named.len() == 2 && ssn == format!("ANY 1 ({})", named.join(",")),
            };
            (listed && rows == named.join(","))
                .then(|| (p, named.iter().map(|n| index(members, n)).collect()))
        },
    )
    .await
}

/// A writer inserting increasing values into `acked` on whichever member accepts writes,
/// recording each one PostgreSQL acknowledged.
fn writer(
    members: &[Member],
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
) -> std::thread::JoinHandle<()> {
    let targets: Vec<(Host, AgentSpec)> = members
        .iter()
        .map(|m| (Host::attach(m.host.info().clone()), m.spec.clone()))
        .collect();
    std::thread::spawn(move || {
        let mut i = 0u64;
        let mut current = 0usize;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let (h, s) = &targets[current];
            if sql(h, h, s, &format!("insert into acked values ({i})")).is_some() {
                acked.lock().expect("lock").push(i);
            } else {
                current = (current + 1) % targets.len();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    })
}

/// `synchronous_mode`.
#[derive(Debug, Clone, Copy)]
enum Mode {
    On,
    Quorum,
}

impl Mode {
    /// As `PATCH /config` spells it.
    fn json(self) -> &'static str {
        match self {
            Mode::On => "true",
            Mode::Quorum => "\"quorum\"",
        }
    }

    /// The role `GET /cluster` gives a synchronous standby.
    fn role(self) -> &'static str {
        match self {
            Mode::On => "sync_standby",
            Mode::Quorum => "quorum_standby",
        }
    }

    /// `pg_stat_replication.sync_state` of a synchronous standby.
    fn sync_state(self) -> &'static str {
        match self {
            Mode::On => "sync",
            Mode::Quorum => "quorum",
        }
    }

    /// Patroni's `patronictl list` role.
    fn listed_as(self) -> &'static str {
        match self {
            Mode::On => "Sync Standby",
            Mode::Quorum => "Quorum Standby",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_mode_on_loses_no_acknowledged_write() {
    scenario(Mode::On, "t55-sync", "syncmode").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_commit_loses_no_acknowledged_write() {
    scenario(Mode::Quorum, "t55-quorum", "quorum").await;
}

async fn scenario(mode: Mode, namespace: &str, scope: &str) {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace(namespace).await.expect("namespace");
    let (mut members, kubeconfig) = start_cluster(lab, &ns, scope, false, 3, |_| {}).await;
    let first = wait_for(FORM_TIMEOUT, "one primary, two streaming", &members, || {
        primary_with_two_streaming(&members)
    })
    .await;
    {
        let (h, s) = (&members[first].host, &members[first].spec);
        sql(h, h, s, "create table acked(v bigint primary key)").expect("create table");
    }

    tracing::info!(
        ?mode,
        "--- synchronous_mode turned on live: synchronous standbys named in /sync"
    );
    patch_config(
        &members[first],
        &format!(r#"{{"synchronous_mode": {}}}"#, mode.json()),
    );
    let (primary, standbys) = synchronous(&members, mode).await;
    assert_eq!(primary, first, "turning it on moves no leader");
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = members[standbys[0]].name.clone();
        wait_for(
            Duration::from_secs(30),
            "Patroni's patronictl shows the Sync Standby",
            &members,
            || {
                let out = patronictl(lab, dir.path(), &ns.name, scope, false)
                    .args(["list", "-f", "json"])
                    .output()
                    .ok()?;
                let rows: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
                rows.iter()
                    .any(|r| r["Member"] == name.as_str() && r["Role"] == mode.listed_as())
                    .then_some(())
            },
        )
        .await;
    }

    tracing::info!(
        "--- {FAILOVERS} kill -9 failovers under a writer: a synchronous standby takes over"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writing = writer(&members, stop.clone(), acked.clone());
    for round in 0..FAILOVERS {
        let (primary, standbys) = synchronous(&members, mode).await;
        let before = acked.lock().expect("lock").len();
        wait_for(
            Duration::from_secs(30),
            "the writer makes progress",
            &members,
            || (acked.lock().ok()?.len() > before + 20).then_some(()),
        )
        .await;
        let old = members[primary].name.clone();
        let expected: Vec<String> = standbys.iter().map(|&i| members[i].name.clone()).collect();
        tracing::info!(round, %old, ?expected, "killing the primary");
        kill_member(&mut members[primary]);
        let promoted = wait_for(FAILOVER_TIMEOUT, "a new writable member", &members, || {
            let w = writable(&members);
            (w.len() == 1 && w[0] != old).then(|| w[0].clone())
        })
        .await;
        assert!(
            expected.contains(&promoted),
            "round {round}: {promoted} was promoted, /sync named {expected:?}"
        );
        restart_member(&mut members[primary], &kubeconfig);
    }
    let (last, _) = synchronous(&members, mode).await;
    stop.store(true, Ordering::Relaxed);
    writing.join().expect("writer");
    {
        let acked: Vec<u64> = acked.lock().expect("lock").clone();
        let (h, s) = (&members[last].host, &members[last].spec);
        let rows = sql(h, h, s, "select v from acked order by v").expect("read rows");
        let present: BTreeSet<u64> = rows.lines().filter_map(|l| l.parse().ok()).collect();
        let lost: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|v| !present.contains(v))
            .collect();
        tracing::info!(
            acked = acked.len(),
            lost = lost.len(),
            "acknowledged rows checked"
        );
        assert!(acked.len() > 60, "the writer wrote: {}", acked.len());
        assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    }

    if matches!(mode, Mode::On) {
        tracing::info!(
            "--- SIGTERM to the sync standby's agent: it is released from /sync before it stops"
        );
        let (_, standbys) = synchronous(&members, mode).await;
        let leaving = standbys[0];
        let name = members[leaving].name.clone();
        let mut agent = members[leaving].agent.take().expect("agent runs");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(agent.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let _ = tokio::task::spawn_blocking(move || agent.wait()).await;
        let log = std::fs::read_to_string(&members[leaving].log).unwrap_or_default();
        assert!(
            log.contains("released from synchronous standby"),
            "{name} waited to be released before it stopped\n{}",
            logs(&members)
        );
        restart_member(&mut members[leaving], &kubeconfig);
    }

    tracing::info!(
        "--- strict mode, both replicas gone: a commit waits, and completes when one is back"
    );
    let (primary, _) = synchronous(&members, mode).await;
    patch_config(&members[primary], r#"{"synchronous_mode_strict": true}"#);
    let replicas: Vec<usize> = (0..members.len()).filter(|i| *i != primary).collect();
    for &r in &replicas {
        kill_member(&mut members[r]);
    }
    tokio::time::sleep(Duration::from_secs(u64::from(LOOP_WAIT) * 3)).await;
    {
        let m = &members[primary];
        let out = m
            .host
            .command("timeout")
            .env("PGPASSWORD", &m.spec.superuser_password)
            .args([
                "5",
                "/usr/lib/postgresql/15/bin/psql",
                "-X",
                "-At",
                "-d",
                &format!(
                    "host={} port=5432 user=postgres dbname=postgres connect_timeout=2",
                    m.host.ip()
                ),
                "-c",
                "insert into acked values (-1)",
            ])
            .output()
            .expect("run psql");
        assert_eq!(
            out.status.code(),
            Some(124),
            "the commit must wait for a synchronous standby: {out:?}\n{}",
            logs(&members)
        );
    }
    restart_member(&mut members[replicas[0]], &kubeconfig);
    {
        let (h, s) = (&members[primary].host, &members[primary].spec);
        wait_for(
            FORM_TIMEOUT,
            "a commit goes through with a standby back",
            &members,
            || sql(h, h, s, "insert into acked values (-2)"),
        )
        .await;
    }
    restart_member(&mut members[replicas[1]], &kubeconfig);

    tracing::info!("--- synchronous_mode turned off live: /sync emptied, nobody listed");
    patch_config(
        &members[primary],
        r#"{"synchronous_mode": false, "synchronous_mode_strict": false}"#,
    );
    wait_for(
        Duration::from_secs(60),
        "no synchronous standby and an empty list",
        &members,
        || {
            let (h, s) = (&members[primary].host, &members[primary].spec);
            let ssn = sql(h, h, s, "show synchronous_standby_names")?;
            let named = with_role(&members[primary], mode.role())?;
            (ssn.is_empty() && named.is_empty()).then_some(())
        },
    )
    .await;
    stop_all(&mut members);
}
