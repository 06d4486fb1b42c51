//! A 3-member cluster on the ZooKeeper DCS (issue #17): a real ZooKeeper server (Debian's
//! package) on a lab host, three agents on other hosts with only a `zookeeper` section. They
//! bootstrap one primary and two streaming replicas; `kill -9` of the leader hands the lock
//! over within ttl + loop_wait (its session expires on the server); the old member rejoins; a
//! switchover through our REST API moves the primary; Python Patroni's `patronictl list`
//! (kazoo) and ours read the cluster; a ZooKeeper frozen (SIGSTOP) longer than ttl makes the
//! primary demote, the cluster healing after SIGCONT; with `failsafe_mode` on, the primary
//! keeps its role through the same outage. Never two writable members.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::{AgentSpec, Host, Lab, ZookeeperServer};

/// Our `patronictl` binary, built once per test process.
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
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
            });
        target
            .join("debug/patronictl")
            .canonicalize()
            .expect("the patronictl binary exists")
    })
    .clone()
}

/// Polls every member for writability until stopped; returns every moment two were writable.
fn two_writable_checker(
    members: &[Member],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
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
            std::thread::sleep(Duration::from_millis(200));
        }
        seen
    })
}

/// The member of `members` that is the only writable one, once there is exactly one.
async fn only_primary(members: &[Member], timeout: Duration, what: &str) -> usize {
    let name = wait_for(timeout, what, members, || {
        let w = writable(members);
        (w.len() == 1).then(|| w[0].clone())
    })
    .await;
    members
        .iter()
        .position(|m| m.name == name)
        .expect("the primary is a member")
}

/// `patronictl list -f json` (`binary`: Python Patroni's or ours), run on `on`'s host against
/// the ZooKeeper at `zk`: (leader, number of streaming replicas).
fn patronictl_list(
    binary: &std::path::Path,
    on: &Member,
    scope: &str,
    zk: &str,
) -> Option<(String, usize)> {
    let cfg = on.config.with_file_name("patronictl-zk.yml");
    std::fs::write(
        &cfg,
        format!("scope: {scope}\nzookeeper:\n  hosts: ['{zk}']\n"),
    )
    .ok()?;
    let out = on
        .host
        .command(binary)
        .arg("-c")
        .arg(&cfg)
        .args(["list", "-f", "json"])
        .output()
        .ok()?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    let leaders: Vec<String> = rows
        .iter()
        .filter(|r| r["Role"] == "Leader")
        .filter_map(|r| r["Member"].as_str().map(String::from))
        .collect();
    let streaming = rows.iter().filter(|r| r["State"] == "streaming").count();
    match leaders.as_slice() {
        [leader] => Some((leader.clone(), streaming)),
        _ => None,
    }
}

/// Bootstrap, both patronictls, kill -9 failover within ttl + loop_wait, rejoin, REST
/// switchover, a ZooKeeper outage longer than ttl without and with failsafe mode: never two
/// writable members.
#[tokio::test]
async fn three_members_on_zookeeper_fail_over_switch_over_and_survive_outages() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "zkha";
    let zk_host = lab.host("zk").expect("host");
    let zk = ZookeeperServer::start_on(&zk_host).expect("start ZooKeeper");
    let zk_addr = zk.host_port().to_string();
    tracing::info!("--- three members with only a zookeeper section");
    let stop = Arc::new(AtomicBool::new(false));
    let mut members =
        start_zookeeper_cluster(lab, scope, std::slice::from_ref(&zk_addr), 3, |_| {}).await;
    let checker = two_writable_checker(&members, stop.clone());
    let primary = {
        tracing::info!("--- the cluster forms: one primary, two streaming replicas");
        let p = only_primary(&members, FORM_TIMEOUT, "one writable member").await;
        wait_for(FORM_TIMEOUT, "two replicas streaming", &members, || {
            let m = &members[p];
            (sql(&m.host, &m.host, &m.spec, STREAMING_REPLICAS)? == "2").then_some(())
        })
        .await;
        let (h, s) = (&members[p].host, &members[p].spec);
        sql(h, h, s, "create table t(v int); insert into t values (1)").expect("write");
        p
    };
    {
        tracing::info!("--- Python Patroni's patronictl (kazoo) and ours read our cluster");
        let leader = members[primary].name.clone();
        for binary in [venv().join("bin/patronictl"), ctl_binary()] {
            let what = format!("{} list: leader and two streaming", binary.display());
            wait_for(Duration::from_secs(30), &what, &members, || {
                let (l, streaming) = patronictl_list(&binary, &members[primary], scope, &zk_addr)?;
                (l == leader && streaming == 2).then_some(())
            })
            .await;
        }
    }
    let new_primary = {
        tracing::info!("--- kill -9 of the leader: another member leads within ttl + loop_wait");
        let start = tokio::time::Instant::now();
        kill_member(&mut members[primary]);
        let old = members[primary].name.clone();
        let np = wait_for(FAILOVER_TIMEOUT, "a new writable member", &members, || {
            let w = writable(&members);
            (w.len() == 1 && w[0] != old).then(|| w[0].clone())
        })
        .await;
        let took = start.elapsed();
        tracing::info!(?took, "failed over");
        // The lock goes with the session (ttl) and the next loop takes it; promotion itself
        // adds a few seconds.
        let bound = Duration::from_secs(u64::from(TTL + LOOP_WAIT) + 8);
        assert!(
            took < bound,
            "failover took {took:?} (bound {bound:?})\n{}",
            logs(&members)
        );
        let i = members.iter().position(|m| m.name == np).expect("member");
        let (h, s) = (&members[i].host, &members[i].spec);
        sql(h, h, s, "insert into t values (2)").expect("the new primary accepts writes");
        i
    };
    {
        tracing::info!("--- the old member, restarted, rejoins as a replica");
        restart_member(&mut members[primary], NO_KUBECONFIG.as_ref());
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
    let leader = {
        tracing::info!("--- switchover through our REST API to a named replica");
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
        members
            .iter()
            .position(|m| m.name == candidate.name)
            .expect("member")
    };
    {
        tracing::info!("--- ZooKeeper frozen longer than ttl: the primary demotes, nobody leads");
        wait_for(
            FORM_TIMEOUT,
            "two replicas streaming again",
            &members,
            || {
                let m = &members[leader];
                (sql(&m.host, &m.host, &m.spec, STREAMING_REPLICAS)? == "2").then_some(())
            },
        )
        .await;
        zk.suspend().expect("SIGSTOP");
        let frozen = Duration::from_secs(u64::from(TTL) + 10);
        let start = tokio::time::Instant::now();
        wait_for(
            frozen,
            "the primary demotes while ZooKeeper is frozen",
            &members,
            || writable(&members).is_empty().then_some(()),
        )
        .await;
        tracing::info!(after = ?start.elapsed(), "demoted");
        tokio::time::sleep(frozen.saturating_sub(start.elapsed())).await;
        assert!(
            writable(&members).is_empty(),
            "nobody leads without the DCS"
        );
        tracing::info!("--- SIGCONT: the cluster heals with one primary and two replicas");
        zk.resume().expect("SIGCONT");
        let p = only_primary(&members, FAILOVER_TIMEOUT, "one writable member again").await;
        wait_for(
            FORM_TIMEOUT,
            "two replicas streaming after the outage",
            &members,
            || {
                let m = &members[p];
                (sql(&m.host, &m.host, &m.spec, STREAMING_REPLICAS)? == "2").then_some(())
            },
        )
        .await;
        let (h, s) = (&members[p].host, &members[p].spec);
        sql(h, h, s, "insert into t values (3)").expect("writes after the outage");
    }
    {
        tracing::info!("--- failsafe_mode on: the leader publishes every member in /failsafe");
        let p = only_primary(&members, FORM_TIMEOUT, "one writable member").await;
        wait_for(FORM_TIMEOUT, "two replicas streaming", &members, || {
            let m = &members[p];
            (sql(&m.host, &m.host, &m.spec, STREAMING_REPLICAS)? == "2").then_some(())
        })
        .await;
        let answer = rest(
            &members[p],
            "PATCH",
            "/config",
            Some(r#"{"failsafe_mode": true}"#),
            None,
        );
        assert!(
            answer.as_ref().is_some_and(|(c, _)| *c == 200),
            "{answer:?}"
        );
        wait_for(
            Duration::from_secs(30),
            "GET /failsafe lists every member",
            &members,
            || {
                let (status, doc) = get_json(&members[p], "/failsafe")?;
                let all = members.iter().all(|m| {
                    doc[m.name.as_str()] == format!("http://{}:8008/patroni", m.host.ip()).as_str()
                });
                (status == 200 && all).then_some(())
            },
        )
        .await;
        tracing::info!("--- ZooKeeper frozen longer than ttl: failsafe keeps the primary writable");
        let old = members[p].name.clone();
        zk.suspend().expect("SIGSTOP");
        let outage = Duration::from_secs(u64::from(TTL) + 10);
        let start = tokio::time::Instant::now();
        let mut writes = 0;
        while start.elapsed() < outage {
            assert_eq!(
                writable(&members),
                std::slice::from_ref(&old),
                "{:?} into the outage only the primary accepts writes\n{}",
                start.elapsed(),
                logs(&members)
            );
            let (h, s) = (&members[p].host, &members[p].spec);
            sql(h, h, s, &format!("insert into t values ({})", 100 + writes)).unwrap_or_else(
                || panic!("{:?}: a write failed\n{}", start.elapsed(), logs(&members)),
            );
            writes += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tracing::info!(writes, "writes acknowledged through the outage");
        zk.resume().expect("SIGCONT");
        let after = only_primary(&members, FAILOVER_TIMEOUT, "one writable member after").await;
        assert_eq!(members[after].name, old, "the primary kept its role");
        wait_for(
            FORM_TIMEOUT,
            "two replicas streaming after the failsafe outage",
            &members,
            || {
                let m = &members[after];
                (sql(&m.host, &m.host, &m.spec, STREAMING_REPLICAS)? == "2").then_some(())
            },
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let doubles = checker.join().expect("checker");
    stop_all(&mut members);
    assert!(
        doubles.is_empty(),
        "two writable members at once: {doubles:?}"
    );
}
