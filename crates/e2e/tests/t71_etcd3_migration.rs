//! Migrating a Python Patroni cluster on etcd v3 to this agent, member by member, as
//! `t70_migration` does on Kubernetes: three members started with the real Patroni 4.1.5
//! daemon (PyPI, with its `etcd3` extra) form a cluster on a real etcd on a lab host of its own;
//! each replica in turn has its Python daemon stopped with SIGTERM and our `patroni` started on
//! the same host with the same configuration file (an `etcd3:` section) and data directory;
//! the Python leader then hands the leadership to a migrated member with Patroni's own
//! `patronictl switchover`, as an operator would, and is migrated last. At every step Patroni's
//! `patronictl list` and ours show the same cluster, every member's `GET /cluster` (Python's
//! and ours, each reading etcd) agrees, the replicas stream and every row is on every member.
//! Once every member runs our agent, `kill -9` of the leader's host fails over within
//! `ttl + loop_wait` and the killed member rejoins. A checker polling every member throughout
//! never sees two writable members.
//!
//! With `synchronous_mode: true` the Python and our members share one `/sync` key: at every
//! step they agree on the synchronous standby, which confirms a commit (`common::migration::
//! sync`); switchovers and the failover go to it.

mod common;

use std::time::Duration;

use common::cluster::{
    FAILOVER_TIMEOUT, FORM_TIMEOUT, LOOP_WAIT, NO_KUBECONFIG, RETRY_TIMEOUT, TTL,
};
use common::migration::agree::{cluster_agreed, ctls_agree};
use common::migration::*;
use common::*;
use patroni_testlab::{AgentSpec, EtcdServer, Host, Lab};

/// The migrations of this file run one at a time: each runs three members, PostgreSQL
/// included, and the failover bound must not depend on the other's load.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Both `patronictl`s check the cluster: the steps agree when they and every member's
/// `GET /cluster` show `leader` leading the others, streaming.
async fn everyone_agrees(python: &Ctl, ours: &Ctl, nodes: &[Node], leader: &str) {
    ctls_agree(python, ours, nodes, leader).await;
    cluster_agreed(nodes, leader).await;
}

/// SIGKILL to every process on `n`'s host (daemon and PostgreSQL), reaping the daemon.
fn kill_host(n: &mut Node) {
    for pid in n.host.pids() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Some(mut d) = n.daemon.take() {
        let _ = d.wait();
    }
}

async fn migration(synchronous: bool) {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let lab = Lab::shared();
    let scope = if synchronous { "mig-sync" } else { "mig" };
    let etcd_host = lab.host("etcd").expect("etcd host");
    let etcd = EtcdServer::start_on(&etcd_host).expect("etcd on its host");
    let endpoint = etcd.host_port().to_string();
    let ctl_dir = tempfile::tempdir().expect("tempdir");
    let ctl_config = ctl_dir.path().join("patronictl-etcd3.yml");
    std::fs::write(
        &ctl_config,
        format!("scope: {scope}\netcd3:\n  hosts: {endpoint}\n"),
    )
    .expect("write patronictl config");
    // Both run on etcd's host: the machine itself has no route into the lab.
    let ctl_on = |program| Ctl {
        program,
        config: ctl_config.clone(),
        env: Vec::new(),
        on: Some(Host::attach(etcd_host.info().clone())),
    };
    let python_ctl = ctl_on(venv().join("bin/patronictl"));
    let our_ctl = ctl_on(our_patronictl());
    let daemons = Daemons::new(
        &["requirements.txt", "requirements-etcd3.txt"],
        NO_KUBECONFIG.into(),
    );

    tracing::info!(%endpoint, "--- etcd on a host of its own; three hosts running Python Patroni 4.1.5");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("m{i}");
        let host = lab.host(&name).expect("host");
        let mut spec = AgentSpec::new(scope, &name, "", false).with_etcd3(&[&endpoint]);
        (spec.ttl, spec.loop_wait, spec.retry_timeout) = (TTL, LOOP_WAIT, RETRY_TIMEOUT);
        if synchronous {
            spec.dcs_extra
                .insert("synchronous_mode".into(), "true".into());
        }
        let mut node = Node::new(host, spec);
        daemons.start_python(&mut node);
        nodes.push(node);
    }

    tracing::info!("--- a checker polls every member for writability throughout");
    let checker = Checker::start(&nodes);

    tracing::info!("--- Python Patroni forms the cluster; both patronictls read it from etcd");
    let mut primary = one_writable(&nodes, FORM_TIMEOUT).await;
    wait(FORM_TIMEOUT, "two replicas streaming", &nodes, || {
        (q(&nodes[primary], common::cluster::STREAMING_REPLICAS).as_deref() == Some("2"))
            .then_some(())
    })
    .await;
    q(&nodes[primary], "create table t(v int)").expect("create table on the primary");
    let mut sync = step_done(synchronous, &python_ctl, &nodes, primary, 1).await;
    let leader = nodes[primary].name.clone();
    everyone_agrees(&python_ctl, &our_ctl, &nodes, &leader).await;

    let replicas: Vec<usize> = (0..nodes.len()).filter(|&i| i != primary).collect();
    let mut v = 1;
    for &r in &replicas {
        migrate(&python_ctl, &daemons, &mut nodes, r).await;
        rejoined_as_replica(&python_ctl, &nodes, r).await;
        v += 1;
        sync = step_done(synchronous, &python_ctl, &nodes, primary, v).await;
        everyone_agrees(&python_ctl, &our_ctl, &nodes, &leader).await;
        assert_eq!(
            writable(&nodes),
            std::slice::from_ref(&leader),
            "the leader stays\n{}",
            logs(&nodes)
        );
    }

    // The leadership moves off the Python leader before it is stopped (see t70); in synchronous
    // mode Patroni switches over only to the synchronous standby, by now one of ours.
    let target = sync.unwrap_or(replicas[0]);
    {
        let candidate = nodes[target].name.clone();
        tracing::info!(
            from = %leader, to = %candidate,
            "--- Python patronictl switchover from the Python leader to a migrated member"
        );
        python_ctl.switchover(&nodes, &leader, &candidate).await;
        let want = [candidate.clone()];
        wait(
            Duration::from_secs(60),
            "the migrated member is the only writable one",
            &nodes,
            || (writable(&nodes) == want).then_some(()),
        )
        .await;
        let old = primary;
        primary = target;
        rejoined_as_replica(&python_ctl, &nodes, old).await;
        v += 1;
        step_done(synchronous, &python_ctl, &nodes, primary, v).await;
        everyone_agrees(&python_ctl, &our_ctl, &nodes, &candidate).await;
        tracing::info!("--- the last Python member, now a replica, is migrated like the others");
        migrate(&python_ctl, &daemons, &mut nodes, old).await;
        rejoined_as_replica(&python_ctl, &nodes, old).await;
        v += 1;
        sync = step_done(synchronous, &python_ctl, &nodes, primary, v).await;
        everyone_agrees(&python_ctl, &our_ctl, &nodes, &candidate).await;
    }

    tracing::info!("--- every member runs patroni-rs");
    all_ours(&nodes);

    {
        let old = primary;
        let old_name = nodes[old].name.clone();
        tracing::info!(leader = %old_name, "--- kill -9 of our leader's host: another member takes over");
        let start = tokio::time::Instant::now();
        kill_host(&mut nodes[old]);
        let new = wait(FAILOVER_TIMEOUT, "a new writable member", &nodes, || {
            let w = writable(&nodes);
            (w.len() == 1 && w[0] != old_name).then(|| w[0].clone())
        })
        .await;
        let took = start.elapsed();
        tracing::info!(?took, %new, "failed over");
        // The lease expires after ttl; the next cycle (at most loop_wait later) takes the lock
        // and promotes. A few seconds of slack for the promotion itself.
        let bound = Duration::from_secs(u64::from(TTL + LOOP_WAIT) + 10);
        assert!(
            took <= bound,
            "failover took {took:?} (bound {bound:?})\n{}",
            logs(&nodes)
        );
        primary = nodes.iter().position(|n| n.name == new).expect("member");
        if let Some(s) = sync {
            assert_eq!(primary, s, "the synchronous standby takes over");
        }
        v += 1;
        q(&nodes[primary], &format!("insert into t values ({v})"))
            .expect("the new primary accepts writes");
        tracing::info!(member = %old_name, "--- the killed member, restarted, rejoins");
        daemons.start_ours(&mut nodes[old]);
        rejoined_as_replica(&python_ctl, &nodes, old).await;
        v += 1;
        step_done(synchronous, &python_ctl, &nodes, primary, v).await;
        everyone_agrees(&python_ctl, &our_ctl, &nodes, &new).await;
    }

    tracing::info!("--- every write on every member");
    every_row_everywhere(&nodes, v);
    checker.finish(&nodes);
    drop(nodes);
    drop(etcd);
}

/// Asynchronous replication.
#[tokio::test]
async fn python_patroni_cluster_on_etcd3_migrates_member_by_member() {
    migration(false).await;
}

/// `synchronous_mode: true`: Python and our members agree on `/sync` and the synchronous
/// standby at every step, and the failover goes to it.
#[tokio::test]
async fn python_and_our_members_agree_on_the_synchronous_standby_on_etcd3() {
    migration(true).await;
}
