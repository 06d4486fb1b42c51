//! The agent end to end: `patroni CONFIG` on three member hosts forms an HA
//! PostgreSQL 15 cluster on the Kubernetes DCS; writes reach the replicas;
//! after `kill -9` of the leader's agent and postmaster another member
//! accepts writes and the old one rejoins as a replica when restarted; a
//! checker polling every member throughout never sees two writable members.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::{AgentSpec, Host, Lab, TestNamespace};

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
            .expect("primary is a member");
        wait_for(
            FORM_TIMEOUT,
            "two replicas streaming from the primary",
            &members,
            || {
                let n = sql(
                    &members[p].host,
                    &members[p].host,
                    &members[p].spec,
                    STREAMING_REPLICAS,
                )?;
                (n == "2").then_some(())
            },
        )
        .await;
        p
    };
    {
        tracing::info!(
            "--- traffic follows the primary: role labels, leader Endpoints, Patroni's patronictl"
        );
        traffic_follows(&ns, scope, use_endpoints, &members, primary).await;
        // Members publish their state once per loop: patronictl sees the
        // replicas streaming within a few loops.
        let dir = tempfile::tempdir().expect("tempdir");
        let leader = members[primary].name.clone();
        wait_for(
            Duration::from_secs(30),
            "patronictl list: our leader and two streaming replicas",
            &members,
            || {
                let out = patronictl(lab, dir.path(), &ns.name, scope, use_endpoints)
                    .args(["list", "-f", "json"])
                    .output()
                    .ok()?;
                let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
                let leaders: Vec<&str> = rows
                    .iter()
                    .filter(|r| r["Role"] == "Leader")
                    .filter_map(|r| r["Member"].as_str())
                    .collect();
                let streaming = rows.iter().filter(|r| r["State"] == "streaming").count();
                (leaders == [leader.as_str()] && streaming == 2).then_some(())
            },
        )
        .await;
    }
    {
        tracing::info!("--- writes on the primary reach the replicas");
        let (p, s) = (&members[primary].host, &members[primary].spec);
        sql(p, p, s, "create table t(v int); insert into t values (1)")
            .expect("write on the primary");
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
        kill_member(&mut members[primary]);
        let old = members[primary].name.clone();
        let np = wait_for(FAILOVER_TIMEOUT, "a new writable member", &members, || {
            let w = writable(&members);
            (w.len() == 1 && w[0] != old).then(|| w[0].clone())
        })
        .await;
        let i = members.iter().position(|m| m.name == np).expect("member");
        let (h, s) = (&members[i].host, &members[i].spec);
        sql(h, h, s, "insert into t values (2)").expect("the new primary accepts writes");
        i
    };
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
        assert_ne!(new_primary, primary);
        traffic_follows(&ns, scope, use_endpoints, &members, new_primary).await;
    }
    {
        tracing::info!(
            "--- planned switchover through the REST API to a named replica; it stays the leader"
        );
        let leader = &members[new_primary];
        let candidate = members
            .iter()
            .find(|m| m.name != leader.name)
            .expect("a replica");
        let timeline = |m: &Member| {
            // The timeline a primary writes WAL on: the first 8 hex digits of
            // its current WAL file name.
            let file = sql(
                &m.host,
                &m.host,
                &m.spec,
                "select pg_walfile_name(pg_current_wal_lsn())",
            )?;
            u64::from_str_radix(file.get(..8)?, 16).ok()
        };
        let before = timeline(leader).expect("timeline");
        let body = format!(
            r#"{{"leader":"{}","candidate":"{}"}}"#,
            leader.name, candidate.name
        );
        let url = format!("http://{}:8008/switchover", leader.host.ip());
        // The candidate may still be catching up after the failover: the API
        // refuses (412) until it is healthy, as Patroni does.
        let answer = wait_for(
            Duration::from_secs(60),
            "the switchover is accepted",
            &members,
            || {
                // Endpoints mode goes through Patroni's own patronictl (run on
                // the leader's host, where member addresses are reachable);
                // ConfigMaps mode posts to our REST API directly.
                let out = if use_endpoints {
                    let ctl = members[0].config.with_file_name("patronictl.yml");
                    let text = format!(
                        "scope: {scope}\nkubernetes:\n  namespace: {}\n  labels:\n    application: patroni\n  use_endpoints: true\n  context: testenv\n",
                        ns.name
                    );
                    std::fs::write(&ctl, text).ok()?;
                    let args = ["switchover", "--leader", &leader.name, "--candidate", &candidate.name, "--force"];
                    leader.host.command(venv().join("bin/patronictl")).env("KUBECONFIG", &kubeconfig).arg("-c").arg(&ctl).args(args).output().ok()?
                } else {
                    leader.host.command("curl").args(["-s", "-XPOST", &url, "-d", &body]).output().ok()?
                };
                let answer = String::from_utf8_lossy(&out.stdout).to_string();
                (!answer.contains("no good candidates")).then_some(answer)
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
        tracing::info!(%answer, before, leader = %leader.name, candidate = %candidate.name, "switchover answered");
        let name = vec![candidate.name.clone()];
        wait_for(
            Duration::from_secs(30),
            "the candidate is the only writable member",
            &members,
            || (writable(&members) == name).then_some(()),
        )
        .await;
        // Stable: still the only leader several loops later, one new timeline.
        tokio::time::sleep(Duration::from_secs(u64::from(3 * LOOP_WAIT))).await;
        assert_eq!(
            writable(&members),
            name,
            "the switchover must not cascade\n{}",
            logs(&members)
        );
        assert_eq!(
            timeline(candidate),
            Some(before + 1),
            "exactly one promotion"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let doubles = checker.join().expect("checker");
    stop_all(&mut members);
    assert!(
        doubles.is_empty(),
        "two writable members at once: {doubles:?}"
    );
    assert!(max_writable.load(Ordering::Relaxed) <= 1);
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
