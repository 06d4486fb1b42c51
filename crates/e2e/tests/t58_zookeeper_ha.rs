//! A 3-member cluster on the ZooKeeper DCS (issue #17): a real ZooKeeper server (Debian's
//! package) on a lab host, three agents on other hosts with only a `zookeeper` section. They
//! bootstrap one primary and two streaming replicas; `kill -9` of the leader hands the lock
//! over within ttl + loop_wait (its session expires on the server); the old member rejoins; a
//! switchover through our REST API moves the primary; Python Patroni's `patronictl list`
//! (kazoo) reads the cluster; and a ZooKeeper frozen (SIGSTOP) longer than ttl makes the
//! primary demote, the cluster healing after SIGCONT.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::{Lab, ZookeeperServer};

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

/// `patronictl list -f json` of Python Patroni, run on `on`'s host against the ZooKeeper at
/// `zk`: (leader, number of streaming replicas).
fn python_patronictl_list(on: &Member, scope: &str, zk: &str) -> Option<(String, usize)> {
    let cfg = on.config.with_file_name("patronictl-zk.yml");
    std::fs::write(
        &cfg,
        format!("scope: {scope}\nzookeeper:\n  hosts: ['{zk}']\n"),
    )
    .ok()?;
    let out = on
        .host
        .command(venv().join("bin/patronictl"))
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

/// Bootstrap, kill -9 failover within ttl + loop_wait, rejoin, REST switchover, Python
/// patronictl, and a ZooKeeper outage longer than ttl: never two writable members.
#[tokio::test]
async fn three_members_on_zookeeper_fail_over_switch_over_and_survive_an_outage() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "zkha";
    let zk_host = lab.host("zk").expect("host");
    let zk = ZookeeperServer::start_on(&zk_host).expect("start ZooKeeper");
    let zk_addr = zk.host_port().to_string();
    tracing::info!("--- three members with only a zookeeper section");
    let mut members =
        start_zookeeper_cluster(lab, scope, std::slice::from_ref(&zk_addr), 3, |_| {}).await;
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
        tracing::info!("--- Python Patroni's patronictl (kazoo) reads our cluster");
        let leader = members[primary].name.clone();
        wait_for(
            Duration::from_secs(30),
            "patronictl list: leader and two streaming",
            &members,
            || {
                let (l, streaming) = python_patronictl_list(&members[primary], scope, &zk_addr)?;
                (l == leader && streaming == 2).then_some(())
            },
        )
        .await;
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
    stop_all(&mut members);
}
