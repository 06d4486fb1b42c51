//! A 3-member cluster on the ZooKeeper DCS (issue #17): a real ZooKeeper server (Debian's
//! package) on a lab host, three agents on other hosts with only a `zookeeper` section. They
//! bootstrap one primary and two streaming replicas; `kill -9` of the leader hands the lock
//! over within ttl + loop_wait (its session expires on the server); the old member rejoins; a
//! switchover through our REST API moves the primary; Python Patroni's `patronictl list`
//! (kazoo) and ours read the cluster; a ZooKeeper frozen (SIGSTOP) longer than ttl makes the
//! primary demote, the cluster healing after SIGCONT; with `failsafe_mode` on, the primary
//! keeps its role through the same outage. Never two writable members.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::scenario::*;
use common::*;
use patroni_testlab::{Lab, ZookeeperServer};

/// Slack over `ttl + loop_wait` for the promotion after a `kill -9` of the leader.
const FAILOVER_SLACK: Duration = Duration::from_secs(8);
/// How long ZooKeeper stays frozen: past the session timeout (ttl).
const OUTAGE: Duration = Duration::from_secs(TTL as u64 + 10);

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
    let mut members =
        start_zookeeper_cluster(lab, scope, std::slice::from_ref(&zk_addr), 3, |_| {}).await;
    let checker = NeverTwoWritable::start(&members);
    let primary = formed(&members).await;
    {
        tracing::info!("--- Python Patroni's patronictl (kazoo) and ours read our cluster");
        let ctl = Ctl::zookeeper(scope, &zk_addr);
        for program in [venv().join("bin/patronictl"), ctl_binary()] {
            patronictl_lists(&program, &ctl, &members, primary).await;
        }
    }
    writes_reach_replicas(&members, primary).await;
    let new_primary = kill_leader_fails_over(&mut members, primary, FAILOVER_SLACK).await;
    rejoins(&mut members, primary, NO_KUBECONFIG.as_ref()).await;
    switches_over(&members, new_primary, rest_switchover).await;
    let freeze = || zk.freeze().expect("SIGSTOP");
    {
        tracing::info!("--- ZooKeeper frozen longer than ttl: the primary demotes, nobody leads");
        healthy(&members, "two replicas streaming again").await;
        // The primary demotes once its last renewal is retry_timeout old; its session (ttl)
        // is kept while the server is frozen, so only the outage bounds the wait.
        primary_demotes_while_frozen(&members, OUTAGE, OUTAGE, freeze).await;
        tracing::info!("--- SIGCONT: the cluster heals with one primary and two replicas");
        let p = healthy(&members, "healthy after the outage").await;
        let (h, s) = (&members[p].host, &members[p].spec);
        sql(h, h, s, "insert into t values (3)").expect("writes after the outage");
    }
    {
        tracing::info!(
            "--- failsafe_mode on: ZooKeeper frozen longer than ttl, the primary keeps writes"
        );
        let p = healthy(&members, "healthy before the failsafe outage").await;
        let old = members[p].name.clone();
        failsafe_on(&members, p).await;
        primary_keeps_writes_while_frozen(&members, p, OUTAGE, freeze, |_| {}).await;
        let after = healthy(&members, "healthy after the failsafe outage").await;
        assert_eq!(members[after].name, old, "the primary kept its role");
    }
    checker.finish(&members);
    stop_all(&mut members);
}
