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

use std::time::Duration;

use common::cluster::*;
use common::scenario::*;
use common::*;
use patroni_testlab::{EtcdServer, Lab};

/// The cluster tests of this file run one at a time: each runs three members, PostgreSQL
/// included, and the failover bound must not depend on the other's load.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Slack over `ttl + loop_wait` for the promotion after a `kill -9` of the leader.
const FAILOVER_SLACK: Duration = Duration::from_secs(10);

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
    let checker = NeverTwoWritable::start(&members);
    let primary = formed(&members).await;
    let ctl = Ctl::etcd3(scope, &endpoint);
    let (ours, python) = (ctl_binary(), venv().join("bin/patronictl"));
    patronictl_lists(&ours, &ctl, &members, primary).await;
    patronictl_lists(&python, &ctl, &members, primary).await;
    {
        tracing::info!("--- both patronictls find the cluster with -d etcd3://HOST:PORT alone");
        let leader = members[primary].name.clone();
        let url = format!("etcd3://{endpoint}");
        for program in [&ours, &python] {
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
    writes_reach_replicas(&members, primary).await;
    let new_primary = kill_leader_fails_over(&mut members, primary, FAILOVER_SLACK).await;
    rejoins(&mut members, primary, &kubeconfig).await;
    switches_over(&members, new_primary, rest_switchover).await;
    checker.finish(&members);
    stop_all(&mut members);
    drop(etcd);
}
