//! The agent end to end: `patroni CONFIG` on three member hosts forms an HA
//! PostgreSQL 15 cluster on the Kubernetes DCS; writes reach the replicas;
//! after `kill -9` of the leader's agent and postmaster another member
//! accepts writes and the old one rejoins as a replica when restarted; a
//! checker polling every member throughout never sees two writable members.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::scenario::*;
use common::*;
use patroni_testlab::{Lab, TestNamespace};

/// Slack over `ttl + loop_wait` for the promotion after a `kill -9` of the leader.
const FAILOVER_SLACK: Duration = Duration::from_secs(10);

/// Pod role labels, and in Endpoints mode the leader Endpoints' address,
/// point at `members[primary]` (within 30 s).
async fn traffic_follows(
    ns: &TestNamespace,
    scope: &str,
    use_endpoints: bool,
    members: &[Member],
    primary: usize,
) {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(ns.client.clone(), &ns.name);
    for m in members {
        let want = if m.name == members[primary].name {
            "primary"
        } else {
            "replica"
        };
        let labelled = patroni_testlab::wait_until(
            Duration::from_secs(30),
            format!("{} labelled role={want}", m.name),
            || async {
                let pod = pods.get(&m.name).await.ok()?;
                (pod.metadata.labels?.get("role").map(String::as_str) == Some(want)).then_some(())
            },
        )
        .await;
        assert!(labelled.is_ok(), "{labelled:?}\n{}", logs(members));
    }
    if use_endpoints {
        let eps: kube::Api<k8s_openapi::api::core::v1::Endpoints> =
            kube::Api::namespaced(ns.client.clone(), &ns.name);
        let want = vec![members[primary].host.ip().to_string()];
        let routed = patroni_testlab::wait_until(
            Duration::from_secs(30),
            format!("leader Endpoints at {want:?}"),
            || async {
                let ep = eps.get(scope).await.ok()?;
                let ips: Vec<String> = ep
                    .subsets
                    .iter()
                    .flatten()
                    .flat_map(|s| s.addresses.iter().flatten())
                    .map(|a| a.ip.clone())
                    .collect();
                (ips == want).then_some(())
            },
        )
        .await;
        assert!(routed.is_ok(), "{routed:?}");
    }
}

async fn ha_cluster(use_endpoints: bool) {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab
        .namespace(if use_endpoints { "t50-ep" } else { "t50-cm" })
        .await
        .expect("namespace");
    let scope = "ha";
    tracing::info!("--- three member hosts with pods, each running the agent as postgres");
    let (mut members, kubeconfig) = start_cluster(lab, &ns, scope, use_endpoints, 3, |_| {}).await;
    let checker = NeverTwoWritable::start(&members);
    let primary = formed(&members).await;
    {
        tracing::info!("--- traffic follows the primary: role labels, leader Endpoints");
        traffic_follows(&ns, scope, use_endpoints, &members, primary).await;
    }
    let ctl = Ctl::kubernetes(scope, &ns.name, use_endpoints, &kubeconfig);
    patronictl_lists(&venv().join("bin/patronictl"), &ctl, &members, primary).await;
    writes_reach_replicas(&members, primary).await;
    let new_primary = kill_leader_fails_over(&mut members, primary, FAILOVER_SLACK).await;
    {
        tracing::info!(
            "--- the new leader publishes the timeline history: the switch from timeline 1, when, to whom"
        );
        let config_name = format!("{scope}-config");
        let new_name = members[new_primary].name.clone();
        let history = patroni_testlab::wait_until(
            Duration::from_secs(30),
            "history annotation".into(),
            || async {
                let annotations = if use_endpoints {
                    let api: kube::Api<k8s_openapi::api::core::v1::Endpoints> =
                        kube::Api::namespaced(ns.client.clone(), &ns.name);
                    api.get(&config_name).await.ok()?.metadata.annotations?
                } else {
                    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                        kube::Api::namespaced(ns.client.clone(), &ns.name);
                    api.get(&config_name).await.ok()?.metadata.annotations?
                };
                let lines: Vec<serde_json::Value> =
                    serde_json::from_str(annotations.get("history")?).ok()?;
                let last = lines.last()?.as_array()?.clone();
                (last.len() == 5 && last[0] == 1 && last[4] == new_name.as_str()).then_some(lines)
            },
        )
        .await;
        assert!(history.is_ok(), "{history:?}\n{}", logs(&members));
    }
    rejoins(&mut members, primary, &kubeconfig).await;
    assert_ne!(new_primary, primary);
    traffic_follows(&ns, scope, use_endpoints, &members, new_primary).await;
    {
        // The timeline a primary writes WAL on: the first 8 hex digits of its current WAL
        // file name.
        let timeline = |m: &Member| {
            let file = sql(
                &m.host,
                &m.host,
                &m.spec,
                "select pg_walfile_name(pg_current_wal_lsn())",
            )?;
            u64::from_str_radix(file.get(..8)?, 16).ok()
        };
        let before = timeline(&members[new_primary]).expect("timeline");
        // Endpoints mode goes through Patroni's own patronictl (run on the leader's host,
        // where member addresses are reachable); ConfigMaps mode posts to our REST API.
        let python = venv().join("bin/patronictl");
        let candidate = switches_over(&members, new_primary, |leader, candidate| {
            if !use_endpoints {
                return rest_switchover(leader, candidate);
            }
            let args = [
                "switchover",
                "--leader",
                &leader.name,
                "--candidate",
                &candidate.name,
                "--force",
            ];
            let out = ctl.command(&python, leader).args(args).output().ok()?;
            let answer = String::from_utf8_lossy(&out.stdout).to_string();
            (!answer.contains("no good candidates")).then_some(answer)
        })
        .await;
        assert_eq!(
            timeline(&members[candidate]),
            Some(before + 1),
            "exactly one promotion"
        );
    }
    checker.finish(&members);
    stop_all(&mut members);
}

/// ConfigMaps mode.
#[tokio::test]
async fn three_members_bootstrap_replicate_and_fail_over_in_configmaps_mode() {
    ha_cluster(false).await;
}

/// Endpoints mode.
#[tokio::test]
async fn three_members_bootstrap_replicate_and_fail_over_in_endpoints_mode() {
    ha_cluster(true).await;
}
