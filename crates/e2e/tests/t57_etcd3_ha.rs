//! The agent end to end on the etcd v3 DCS: three members on lab hosts and etcd on a host of
//! its own. The cluster bootstraps; `patronictl list`, ours and Python Patroni 4.1.5's, reads
//! it from etcd; after
//! `kill -9` of the leader another member takes over within `ttl + loop_wait`; the old one,
//! restarted, rejoins as a replica; a switchover through the REST API moves the leader to a
//! named replica; a checker polling every member throughout never sees two writable members.
//! `t57_etcd3_ha/outage.rs`: etcd frozen past ttl, with and without failsafe mode.

mod common;
#[path = "t57_etcd3_ha/outage.rs"]
mod outage;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::{AgentSpec, EtcdServer, Host, Lab};

/// The cluster tests of this file run one at a time: each runs three members, PostgreSQL
/// included, and the failover bound must not depend on the other's load.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Our `patronictl`, built once per test process.
fn ctl_binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "patroni-ctl",
                "--bin",
                "patronictl",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p patroni-ctl failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
        target.join("debug/patronictl")
    })
    .clone()
}

/// `patronictl -c FILE list -f json` run on `on`, FILE naming etcd at `etcd`: the rows.
fn ctl_list(
    program: &std::path::Path,
    on: &Member,
    etcd: &str,
    scope: &str,
) -> Option<Vec<serde_json::Value>> {
    let cfg = on.config.with_file_name("patronictl-etcd3.yml");
    std::fs::write(&cfg, format!("scope: {scope}\netcd3:\n  hosts: {etcd}\n")).ok()?;
    let out = on
        .host
        .command(program)
        .arg("-c")
        .arg(&cfg)
        .args(["list", "-f", "json"])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Python Patroni's `patronictl` (4.1.5, with its `etcd3` extra, python-etcd).
fn python_patronictl() -> PathBuf {
    venv().join("bin/patronictl")
}

/// The leader's name and how many members stream from it, as `patronictl list` shows.
fn leader_and_streaming(rows: &[serde_json::Value]) -> (Vec<String>, usize) {
    let leaders = rows
        .iter()
        .filter(|r| r["Role"] == "Leader")
        .filter_map(|r| r["Member"].as_str().map(String::from))
        .collect();
    let streaming = rows.iter().filter(|r| r["State"] == "streaming").count();
    (leaders, streaming)
}

/// Bootstrap, kill -9 failover within ttl + loop_wait, rejoin and a REST switchover, on etcd.
#[tokio::test]
async fn bootstrap_failover_rejoin_and_switchover_on_etcd3() {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let lab = Lab::shared();
    let scope = "ha-etcd3";
    let etcd_host = lab.host("etcd").expect("etcd host");
    let etcd = EtcdServer::start_on(&etcd_host).expect("etcd on its host");
    let endpoint = etcd.host_port().to_string();
    tracing::info!(%endpoint, "--- etcd on a host of its own; three members with etcd3.hosts");
    let (mut members, kubeconfig) = start_etcd3_cluster(lab, &endpoint, scope, 3, |_| {});
    let stop = Arc::new(AtomicBool::new(false));
    let max_writable = Arc::new(AtomicUsize::new(0));
    let checker = {
        tracing::info!("--- a checker polls every member for writability throughout");
        let targets: Vec<(Host, AgentSpec, String)> = members
            .iter()
            .map(|m| {
                (
                    Host::attach(m.host.info().clone()),
                    m.spec.clone(),
                    m.name.clone(),
                )
            })
            .collect();
        let (stop, max_writable) = (stop.clone(), max_writable.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let now: Vec<&String> = targets
                    .iter()
                    .filter(|(h, s, _)| {
                        sql(h, h, s, "select pg_is_in_recovery()").as_deref() == Some("f")
                    })
                    .map(|t| &t.2)
                    .collect();
                if now.len() > 1 {
                    seen.push(format!("{now:?}"));
                }
                max_writable.fetch_max(now.len(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
            seen
        })
    };
    let primary = {
        tracing::info!("--- the cluster forms: one primary, two streaming replicas");
        let primary = wait_for(FORM_TIMEOUT, "one writable member", &members, || {
            let w = writable(&members);
            (w.len() == 1).then(|| w[0].clone())
        })
        .await;
        let p = members
            .iter()
            .position(|m| m.name == primary)
            .expect("member");
        wait_for(FORM_TIMEOUT, "two replicas streaming", &members, || {
            let n = sql(
                &members[p].host,
                &members[p].host,
                &members[p].spec,
                STREAMING_REPLICAS,
            )?;
            (n == "2").then_some(())
        })
        .await;
        p
    };
    {
        tracing::info!("--- our patronictl reads the cluster from etcd");
        let ctl = ctl_binary();
        let leader = members[primary].name.clone();
        wait_for(
            Duration::from_secs(30),
            "patronictl list: leader and two streaming",
            &members,
            || {
                let rows = ctl_list(&ctl, &members[primary], &endpoint, scope)?;
                (leader_and_streaming(&rows) == (vec![leader.clone()], 2)).then_some(())
            },
        )
        .await;
        tracing::info!("--- Python Patroni's patronictl reads the same cluster from etcd");
        let python = python_patronictl();
        let mut last = None;
        let listed = patroni_testlab::wait_until(
            Duration::from_secs(30),
            "Python patronictl list".into(),
            || {
                let out = members[primary]
                    .host
                    .command(&python)
                    .arg("-c")
                    .arg(
                        members[primary]
                            .config
                            .with_file_name("patronictl-etcd3.yml"),
                    )
                    .args(["list", "-f", "json"])
                    .output();
                let found = out.as_ref().ok().and_then(|o| {
                    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).ok()?;
                    (leader_and_streaming(&rows) == (vec![leader.clone()], 2)).then_some(())
                });
                last = Some(out.map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                }));
                async move { found }
            },
        )
        .await;
        assert!(listed.is_ok(), "Python patronictl: {last:?}");
        tracing::info!("--- both patronictls find the cluster with -d etcd3://HOST:PORT alone");
        let url = format!("etcd3://{endpoint}");
        for program in [&ctl, &python] {
            let out = members[primary]
                .host
                .command(program)
                .args(["-d", &url, "list", scope, "-f", "json"])
                .env("HOME", members[primary].config.parent().expect("dir"))
                .output()
                .expect("run patronictl");
            let rows: Vec<serde_json::Value> =
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                    panic!(
                        "{}: {e}: {}",
                        program.display(),
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            assert_eq!(
                leader_and_streaming(&rows),
                (vec![leader.clone()], 2),
                "{}",
                program.display()
            );
        }
    }
    {
        tracing::info!("--- writes on the primary reach the replicas");
        let (p, s) = (&members[primary].host, &members[primary].spec);
        sql(p, p, s, "create table t(v int); insert into t values (1)").expect("write");
        for m in members.iter().filter(|m| m.name != members[primary].name) {
            wait_for(Duration::from_secs(30), "row replicated", &members, || {
                (sql(&m.host, &m.host, &m.spec, "select count(*) from t").as_deref() == Some("1"))
                    .then_some(())
            })
            .await;
        }
    }
    let new_primary = {
        tracing::info!(
            "--- kill -9 of the leader's agent and postmaster: another member takes over"
        );
        let old = members[primary].name.clone();
        let start = tokio::time::Instant::now();
        kill_member(&mut members[primary]);
        let np = wait_for(FAILOVER_TIMEOUT, "a new writable member", &members, || {
            let w = writable(&members);
            (w.len() == 1 && w[0] != old).then(|| w[0].clone())
        })
        .await;
        let took = start.elapsed();
        tracing::info!(?took, new = %np, "failed over");
        // The lease expires after ttl; the next cycle (at most loop_wait later) takes the lock
        // and promotes. A few seconds of slack for the promotion itself.
        let bound = Duration::from_secs(u64::from(TTL + LOOP_WAIT) + 10);
        assert!(
            took <= bound,
            "failover took {took:?} (bound {bound:?})\n{}",
            logs(&members)
        );
        let i = members.iter().position(|m| m.name == np).expect("member");
        let (h, s) = (&members[i].host, &members[i].spec);
        sql(h, h, s, "insert into t values (2)").expect("the new primary accepts writes");
        i
    };
    {
        tracing::info!("--- the old member, restarted, rejoins as a replica of the new primary");
        restart_member(&mut members[primary], &kubeconfig);
        let m = &members[primary];
        wait_for(
            FORM_TIMEOUT,
            "old primary replicates the new write",
            &members,
            || {
                (sql(&m.host, &m.host, &m.spec, "select count(*) from t").as_deref() == Some("2")
                    && sql(&m.host, &m.host, &m.spec, "select pg_is_in_recovery()").as_deref()
                        == Some("t"))
                .then_some(())
            },
        )
        .await;
    }
    {
        tracing::info!("--- planned switchover through the REST API to a named replica");
        let leader = &members[new_primary];
        let candidate = members
            .iter()
            .find(|m| m.name != leader.name)
            .expect("a replica");
        let body = format!(
            r#"{{"leader":"{}","candidate":"{}"}}"#,
            leader.name, candidate.name
        );
        let answer = wait_for(
            Duration::from_secs(60),
            "the switchover is accepted",
            &members,
            || {
                let (code, text) = rest(leader, "POST", "/switchover", Some(&body), None)?;
                (code == 200).then_some(text)
            },
        )
        .await;
        assert!(
            answer.contains(&format!(
                "Successfully switched over to \"{}\"",
                candidate.name
            )),
            "{answer}"
        );
        let name = vec![candidate.name.clone()];
        wait_for(
            Duration::from_secs(30),
            "the candidate is the only writable member",
            &members,
            || (writable(&members) == name).then_some(()),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(u64::from(3 * LOOP_WAIT))).await;
        assert_eq!(
            writable(&members),
            name,
            "the switchover must not cascade\n{}",
            logs(&members)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let doubles = checker.join().expect("checker");
    assert!(
        doubles.is_empty(),
        "two writable members at once: {doubles:?}\n{}",
        logs(&members)
    );
    assert_eq!(max_writable.load(Ordering::Relaxed), 1);
    stop_all(&mut members);
    drop(etcd);
}
