//! Wire compatibility with Patroni 4.1.5 (its own Python code from PyPI):
//! Patroni's `patronictl` reads what our DCS writes, our DCS reads what
//! Patroni's DCS class writes (field by field, old `master` data included),
//! and the lock passes between a Python member and ours.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use patroni_core::{MemberData, Role};
use patroni_testlab::{Host, Lab};
use serde_json::{Value, json};

const TTL: Duration = Duration::from_secs(30);

fn member_data(host: &Host, role: &str, lsn: u64) -> MemberData {
    let mut d = MemberData {
        conn_url: Some(format!("postgres://{}:5432/postgres", host.ip())),
        api_url: Some(format!("http://{}:8008/patroni", host.ip())),
        state: Some("running".into()),
        role: Some(role.into()),
        version: Some("4.1.5".into()),
        xlog_location: Some(lsn),
        timeline: Some(1),
        ..Default::default()
    };
    if role == "replica" {
        d.replay_lsn = Some(lsn);
        d.receive_lsn = Some(lsn);
        d.replication_state = Some("streaming".into());
    }
    d
}

async fn patronictl_reads_our_cluster(use_endpoints: bool) {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab
        .namespace(if use_endpoints {
            "t31-ctl-ep"
        } else {
            "t31-ctl-cm"
        })
        .await
        .expect("namespace");
    let scope = "ours";
    let hosts = member_pods(lab, &ns, scope, 3).await;
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(
            dcs(
                lab,
                scope,
                &format!("m{i}"),
                kubernetes_config(&ns.name, use_endpoints),
                TTL,
            )
            .await,
        );
    }
    let lsn = 50_331_808;
    {
        tracing::info!("--- m0 bootstraps: initialize race, system id, config, lock");
        let m0 = &nodes[0];
        m0.get_cluster().await.expect("view");
        assert!(m0.initialize("").await.expect("initialize race"));
        m0.get_cluster().await.expect("view");
        assert!(
            m0.initialize("7458224513374582711")
                .await
                .expect("record sysid")
        );
        assert!(
            m0.set_config_value(r#"{"ttl":30,"loop_wait":10,"retry_timeout":10}"#, None)
                .await
                .expect("config")
        );
        assert!(acquire(m0).await);
        wait_for_leader(m0, "m0").await;
        assert!(
            m0.update_leader(Some(lsn), None, None, None)
                .await
                .expect("renew")
        );
    }
    if use_endpoints {
        tracing::info!("--- the headless config Service guards the config Endpoints");
        let svcs: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::namespaced(ns.client.clone(), &ns.name);
        let svc = svcs
            .get(&format!("{scope}-config"))
            .await
            .expect("config service");
        assert_eq!(svc.spec.and_then(|s| s.cluster_ip).as_deref(), Some("None"));
        assert_eq!(
            svc.metadata
                .labels
                .unwrap_or_default()
                .get("cluster-name")
                .map(String::as_str),
            Some(scope)
        );
    }
    {
        tracing::info!("--- every member publishes its status");
        for (i, node) in nodes.iter().enumerate() {
            wait_for_leader(node, "m0").await;
            let role = if i == 0 { "primary" } else { "replica" };
            assert!(
                node.touch_member(&member_data(&hosts[i], role, lsn))
                    .await
                    .expect("touch")
            );
        }
    }
    {
        tracing::info!("--- Python patronictl list");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run_ok(
            "patronictl list",
            patronictl(lab, dir.path(), &ns.name, scope, use_endpoints)
                .args(["list", "-f", "json"]),
        );
        let rows: Vec<Value> =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("patronictl output {out:?}: {e}"));
        assert_eq!(rows.len(), 3, "{out}");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["Member"], json!(format!("m{i}")), "{out}");
            assert_eq!(row["Host"], json!(hosts[i].ip()), "{out}");
            assert_eq!(row["TL"], json!(1), "{out}");
            let (role, state) = if i == 0 {
                ("Leader", "running")
            } else {
                ("Replica", "streaming")
            };
            assert_eq!(
                (row["Role"].as_str(), row["State"].as_str()),
                (Some(role), Some(state)),
                "{out}"
            );
        }
        let table = run_ok(
            "patronictl list",
            patronictl(lab, dir.path(), &ns.name, scope, use_endpoints).arg("list"),
        );
        assert!(
            table.contains("7458224513374582711"),
            "the system id shows in the table:\n{table}"
        );
        let config = run_ok(
            "patronictl show-config",
            patronictl(lab, dir.path(), &ns.name, scope, use_endpoints).arg("show-config"),
        );
        assert!(config.contains("loop_wait: 10"), "{config}");
    }
}

/// ConfigMaps mode: `patronictl list` shows our leader, replicas, states and system id.
#[tokio::test]
async fn patronictl_lists_what_our_dcs_wrote_in_configmaps_mode() {
    patronictl_reads_our_cluster(false).await;
}

/// Endpoints mode: the same.
#[tokio::test]
async fn patronictl_lists_what_our_dcs_wrote_in_endpoints_mode() {
    patronictl_reads_our_cluster(true).await;
}

async fn we_read_patroni_state(use_endpoints: bool, legacy_master: bool) {
    init_tracing();
    let lab = Lab::shared();
    let prefix = match (use_endpoints, legacy_master) {
        (true, _) => "t31-read-ep",
        (false, false) => "t31-read-cm",
        (false, true) => "t31-read-legacy",
    };
    let ns = lab.namespace(prefix).await.expect("namespace");
    let scope = "theirs";
    let hosts = member_pods(lab, &ns, scope, 3).await;
    {
        tracing::info!("--- Patroni's own DCS class writes a whole cluster");
        let mut cmd = peer(lab, "write-scenario", &ns.name, scope, use_endpoints);
        for (i, h) in hosts.iter().enumerate() {
            cmd.args(["--member", &format!("m{i}={}", h.ip())]);
        }
        if legacy_master {
            cmd.arg("--legacy-master");
        }
        run_ok("write-scenario", &mut cmd);
    }
    let theirs: Value = {
        let out = run_ok(
            "dump",
            peer(lab, "dump", &ns.name, scope, use_endpoints).args(["--name", "m1"]),
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("dump output {out:?}: {e}"))
    };
    {
        tracing::info!("--- our view equals Patroni's, field by field");
        let node = dcs(
            lab,
            scope,
            "m1",
            kubernetes_config(&ns.name, use_endpoints),
            TTL,
        )
        .await;
        let ours =
            serde_json::to_value(node.get_cluster().await.expect("view")).expect("serialises");
        // Not a comparison of two empty documents:
        assert_eq!(theirs["leader"]["name"], json!("m0"), "{theirs}");
        assert_eq!(
            theirs["members"].as_array().map(Vec::len),
            Some(3),
            "{theirs}"
        );
        assert_eq!(
            theirs["initialize"],
            json!("7458224513374582711"),
            "{theirs}"
        );
        assert!(
            theirs["history"]["lines"]
                .as_array()
                .is_some_and(|l| !l.is_empty()),
            "{theirs}"
        );
        assert!(theirs["failover"]["candidate"].is_string(), "{theirs}");
        for field in [
            "initialize",
            "config",
            "leader",
            "status",
            "members",
            "failover",
            "sync",
            "history",
            "failsafe",
        ] {
            assert_eq!(
                ours[field], theirs[field],
                "field {field}:\nours   {}\ntheirs {}",
                ours[field], theirs[field]
            );
        }
        let view = node.get_cluster().await.expect("view");
        assert_eq!(view.leader_name(), Some("m0"));
        let leader = view.member("m0").expect("m0 is a member");
        assert_eq!(leader.data.role(), Some(Role::Primary));
        if legacy_master {
            assert_eq!(
                leader.data.role.as_deref(),
                Some("master"),
                "the raw value is kept"
            );
        }
    }
}

/// ConfigMaps mode, Patroni 4 data.
#[tokio::test]
async fn our_dcs_reads_what_patroni_wrote_in_configmaps_mode() {
    we_read_patroni_state(false, false).await;
}

/// Endpoints mode, Patroni 4 data.
#[tokio::test]
async fn our_dcs_reads_what_patroni_wrote_in_endpoints_mode() {
    we_read_patroni_state(true, false).await;
}

/// Data of a Patroni 3 primary (`role: master`) reads as primary.
#[tokio::test]
async fn our_dcs_reads_patroni_3_master_data() {
    we_read_patroni_state(false, true).await;
}

/// A cluster migrates member by member: the lock passes from a Python
/// Patroni member to ours and back, `transitions` counting each change.
#[tokio::test]
async fn lock_passes_between_python_and_rust_members() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t31-mixed").await.expect("namespace");
    let scope = "mixed";
    let hosts = member_pods(lab, &ns, scope, 2).await;
    let annotations = || async {
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(ns.client.clone(), &ns.name);
        api.get(&format!("{scope}-leader"))
            .await
            .expect("leader")
            .metadata
            .annotations
            .unwrap_or_default()
    };
    {
        tracing::info!("--- the Python member m0 takes the lock");
        run_ok(
            "acquire",
            peer(lab, "acquire", &ns.name, scope, false).args([
                "--name",
                "m0",
                "--ip",
                hosts[0].ip(),
                "--ttl",
                "30",
            ]),
        );
        let a: BTreeMap<String, String> = annotations().await;
        assert_eq!(a.get("leader").map(String::as_str), Some("m0"));
    }
    let ours = dcs(lab, scope, "m1", kubernetes_config(&ns.name, false), TTL).await;
    {
        tracing::info!("--- ours sees it held, then released by Python, and takes it");
        wait_for_leader(&ours, "m0").await;
        run_ok(
            "release",
            peer(lab, "release", &ns.name, scope, false).args(["--name", "m0"]),
        );
        patroni_testlab::wait_until(Duration::from_secs(10), "released".into(), || async {
            (!ours.get_cluster().await.ok()?.is_locked()).then_some(())
        })
        .await
        .expect("release seen");
        assert!(acquire(&ours).await);
        let a = annotations().await;
        assert_eq!(a.get("leader").map(String::as_str), Some("m1"));
        assert_eq!(a.get("transitions").map(String::as_str), Some("1"));
    }
    {
        tracing::info!("--- Patroni's view shows our member as leader");
        wait_for_leader(&ours, "m1").await;
        assert!(
            ours.touch_member(&member_data(&hosts[1], "primary", 100))
                .await
                .expect("touch")
        );
        let out = run_ok(
            "dump",
            peer(lab, "dump", &ns.name, scope, false).args(["--name", "m0"]),
        );
        let theirs: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(theirs["leader"]["name"], json!("m1"), "{out}");
        assert_eq!(
            theirs["leader"]["member"]["data"]["role"],
            json!("primary"),
            "{out}"
        );
    }
}
