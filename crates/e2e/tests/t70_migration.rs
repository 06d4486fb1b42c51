//! Migrating a running cluster from Python Patroni to this agent, member by
//! member: three members started with the real Patroni 4.1.5 daemon (PyPI)
//! form a cluster; each replica in turn has its Python daemon stopped with
//! SIGTERM and our `patroni` started on the same host with the same
//! configuration file and data directory; the Python leader then hands the
//! leadership to a migrated member with Patroni's own `patronictl switchover`,
//! and is migrated last. At the end every member runs our agent, a switchover
//! through our REST API works, every write is on every member and Patroni's
//! `patronictl list` shows a consistent cluster. A checker polling every
//! member throughout never sees two writable members.
//!
//! With `synchronous_mode: true` (issue #16) the Python and our members share
//! one `/sync`: at every step (all Python, each replica migrated, after the
//! switchover to our member, all ours) every member's `GET /cluster` and
//! Patroni's `patronictl list` name the same synchronous standby, the
//! primary's PostgreSQL lists it in `synchronous_standby_names` and reports
//! it `sync`, and it confirms a commit. Switchovers then go to that standby,
//! as Patroni allows no other candidate in synchronous mode.

mod common;

use std::time::Duration;

use common::cluster::{FORM_TIMEOUT, LOOP_WAIT, RETRY_TIMEOUT, TTL};
use common::migration::*;
use common::*;
use patroni_testlab::{AgentSpec, Host, Lab};
use serde_json::Value;

/// What one migration run covers.
#[derive(Debug, Clone, Copy)]
struct Setup {
    /// Endpoints (true) or ConfigMaps mode.
    use_endpoints: bool,
    /// `synchronous_mode: true` in `bootstrap.dcs`, and every step checks
    /// that the members agree on the synchronous standby.
    synchronous: bool,
}

async fn migration(setup: Setup) {
    init_tracing();
    let Setup {
        use_endpoints,
        synchronous,
    } = setup;
    let lab = Lab::shared();
    let ns = lab
        .namespace(match (use_endpoints, synchronous) {
            (_, true) => "t70-sync",
            (true, false) => "t70-ep",
            (false, false) => "t70-cm",
        })
        .await
        .expect("namespace");
    let scope = "mig";
    let ctl_dir = tempfile::tempdir().expect("tempdir");
    let ctl_config = patronictl_config(ctl_dir.path(), &ns.name, scope, use_endpoints);
    let ctl = Ctl {
        program: venv().join("bin/patronictl"),
        config: ctl_config.clone(),
        env: vec![("KUBECONFIG".into(), lab.controlplane().kubeconfig.clone())],
        on: None,
    };
    let kubeconfig = restricted_kubeconfig(lab, &ns.name, use_endpoints, true, 0).await;
    let daemons = Daemons::new(&["requirements.txt"], kubeconfig.clone());

    tracing::info!(
        "--- three member hosts with pods, each running Python Patroni 4.1.5 as postgres"
    );
    let mut nodes = Vec::new();
    for (i, host) in member_pods(lab, &ns, scope, 3)
        .await
        .into_iter()
        .enumerate()
    {
        let mut spec = AgentSpec::new(scope, &format!("m{i}"), &ns.name, use_endpoints);
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

    tracing::info!("--- Python Patroni forms the cluster: one primary, two streaming replicas");
    let mut primary = one_writable(&nodes, FORM_TIMEOUT).await;
    wait(FORM_TIMEOUT, "two replicas streaming", &nodes, || {
        (q(
            &nodes[primary],
            "select count(*) from pg_stat_replication where state = 'streaming'",
        )
        .as_deref()
            == Some("2"))
        .then_some(())
    })
    .await;
    q(&nodes[primary], "create table t(v int)").expect("create table on the primary");
    let mut sync = step_done(synchronous, &ctl, &nodes, primary, 1).await;
    let leader = nodes[primary].name.clone();
    ctl_shows(
        &ctl,
        &nodes,
        &leader,
        "Python patronictl list: the leader and two streaming replicas",
    )
    .await;

    let replicas: Vec<usize> = (0..nodes.len()).filter(|&i| i != primary).collect();
    let mut v = 1;
    for &r in &replicas {
        migrate(&ctl, &daemons, &mut nodes, r).await;
        rejoined_as_replica(&ctl, &nodes, r).await;
        v += 1;
        sync = step_done(synchronous, &ctl, &nodes, primary, v).await;
        assert_eq!(
            writable(&nodes),
            std::slice::from_ref(&leader),
            "the leader stays\n{}",
            logs(&nodes)
        );
    }

    // A careful operator does not SIGTERM the Python leader: that leaves the
    // cluster without a primary until a replica wins the race. Instead the
    // leadership moves first, with Patroni's own patronictl, to a member that
    // already runs our agent; the Python member then is a replica like the
    // others and is migrated the same way. In synchronous mode Patroni only
    // switches over to the synchronous standby (by now one of ours).
    let target = sync.unwrap_or(replicas[0]);
    {
        tracing::info!(
            from = %leader, to = %nodes[target].name,
            "--- Python patronictl switchover from the Python leader to a migrated member"
        );
        // As an operator in the cluster: on a member's host, as the members' identity.
        let operator = Ctl {
            program: venv().join("bin/patronictl"),
            config: ctl_config.clone(),
            env: vec![("KUBECONFIG".into(), kubeconfig.clone())],
            on: Some(Host::attach(nodes[target].host.info().clone())),
        };
        let candidate = nodes[target].name.clone();
        operator.switchover(&nodes, &leader, &candidate).await;
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
        rejoined_as_replica(&ctl, &nodes, old).await;
        v += 1;
        step_done(synchronous, &ctl, &nodes, primary, v).await;
        // The last Python member, now a replica, is migrated like the others.
        migrate(&ctl, &daemons, &mut nodes, old).await;
        rejoined_as_replica(&ctl, &nodes, old).await;
        v += 1;
        sync = step_done(synchronous, &ctl, &nodes, primary, v).await;
    }

    tracing::info!("--- every member runs patroni-rs");
    all_ours(&nodes);

    {
        let candidate = sync.map_or(leader.clone(), |s| nodes[s].name.clone());
        let from = nodes[primary].name.clone();
        tracing::info!(%from, to = %candidate, "--- switchover through our REST API");
        let url = format!("http://{}:8008/switchover", nodes[primary].host.ip());
        let body = format!(r#"{{"leader":"{from}","candidate":"{candidate}"}}"#);
        let answer = wait(
            Duration::from_secs(60),
            "POST /switchover is accepted",
            &nodes,
            || {
                let out = nodes[primary]
                    .host
                    .command("curl")
                    .args(["-s", "-m", "60", "-XPOST", &url, "-d", &body])
                    .output()
                    .ok()?;
                let a = String::from_utf8_lossy(&out.stdout).to_string();
                (!a.contains("no good candidates") && !a.is_empty()).then_some(a)
            },
        )
        .await;
        assert!(
            answer.contains(&format!("Successfully switched over to \"{candidate}\"")),
            "{answer}\n{}",
            logs(&nodes)
        );
        let want = [candidate.clone()];
        wait(
            Duration::from_secs(60),
            "the candidate is the only writable member",
            &nodes,
            || (writable(&nodes) == want).then_some(()),
        )
        .await;
        primary = nodes
            .iter()
            .position(|n| n.name == candidate)
            .expect("member");
        let old = nodes.iter().position(|n| n.name == from).expect("member");
        rejoined_as_replica(&ctl, &nodes, old).await;
        v += 1;
        step_done(synchronous, &ctl, &nodes, primary, v).await;
    }

    {
        tracing::info!("--- our leader publishes slots and retain_slots as Patroni's does");
        let leader_object = if use_endpoints {
            scope.to_string()
        } else {
            format!("{scope}-leader")
        };
        let mut names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        names.sort();
        let published = patroni_testlab::wait_until(
            Duration::from_secs(30),
            "slots and retain_slots on the leader object".into(),
            || async {
                let annotations = if use_endpoints {
                    let api: kube::Api<k8s_openapi::api::core::v1::Endpoints> =
                        kube::Api::namespaced(ns.client.clone(), &ns.name);
                    api.get(&leader_object).await.ok()?.metadata.annotations?
                } else {
                    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                        kube::Api::namespaced(ns.client.clone(), &ns.name);
                    api.get(&leader_object).await.ok()?.metadata.annotations?
                };
                let retain: Vec<String> =
                    serde_json::from_str(annotations.get("retain_slots")?).ok()?;
                let slots: serde_json::Map<String, Value> =
                    serde_json::from_str(annotations.get("slots")?).ok()?;
                let mut keys: Vec<String> = slots.keys().cloned().collect();
                keys.sort();
                (retain == names && keys == names).then_some(())
            },
        )
        .await;
        assert!(published.is_ok(), "{published:?}\n{}", logs(&nodes));
    }

    tracing::info!("--- every write on every member; patronictl list is consistent");
    every_row_everywhere(&nodes, v);
    let final_leader = nodes[primary].name.clone();
    ctl_shows(
        &ctl,
        &nodes,
        &final_leader,
        "patronictl list: our leader and two streaming replicas",
    )
    .await;
    checker.finish(&nodes);
}

/// ConfigMaps mode.
#[tokio::test]
async fn python_patroni_cluster_migrates_member_by_member_in_configmaps_mode() {
    migration(Setup {
        use_endpoints: false,
        synchronous: false,
    })
    .await;
}

/// Endpoints mode.
#[tokio::test]
async fn python_patroni_cluster_migrates_member_by_member_in_endpoints_mode() {
    migration(Setup {
        use_endpoints: true,
        synchronous: false,
    })
    .await;
}

/// ConfigMaps mode with `synchronous_mode: true`: Python and our members
/// agree on `/sync` and the synchronous standby at every step.
#[tokio::test]
async fn python_and_our_members_agree_on_the_synchronous_standby_while_migrating() {
    migration(Setup {
        use_endpoints: false,
        synchronous: true,
    })
    .await;
}
