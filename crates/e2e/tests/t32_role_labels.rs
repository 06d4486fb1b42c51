//! Pod role labels and unreadable state, against the real API server:
//! custom label key and values and `tmp_role_label` are applied as
//! configured; the 5-step label migration of Patroni's Kubernetes docs keeps
//! a Service routing to the primary at every step; corrupt or foreign
//! annotations give a view, never a panic.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, Service};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use patroni_config::KubernetesConfig;
use patroni_core::MemberData;
use patroni_dcs::KubernetesDcs;
use patroni_testlab::{Lab, TestNamespace, wait_until};
use serde_json::json;

const TTL: Duration = Duration::from_secs(30);

fn data(role: &str, state: &str) -> MemberData {
    MemberData {
        state: Some(state.into()),
        role: Some(role.into()),
        version: Some("4.1.5".into()),
        ..Default::default()
    }
}

async fn pod_labels(ns: &TestNamespace, name: &str) -> BTreeMap<String, String> {
    let api: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    api.get(name)
        .await
        .expect("pod")
        .metadata
        .labels
        .unwrap_or_default()
}

/// (Re)starts the agents' DCS with `cfg`, m0 holding the lock, and has each
/// member publish itself: m0 primary, m1 running replica, the rest as given.
async fn touch_all(
    lab: &Lab,
    scope: &str,
    cfg: &KubernetesConfig,
    roles: &[(&str, &str)],
) -> Vec<KubernetesDcs> {
    let mut nodes = Vec::new();
    for (i, (role, state)) in roles.iter().enumerate() {
        let node = dcs(lab, scope, &format!("m{i}"), cfg.clone(), TTL).await;
        node.get_cluster().await.expect("view");
        if i == 0 && !node.get_cluster().await.expect("view").is_locked() {
            assert!(acquire(&node).await);
        }
        wait_until(
            Duration::from_secs(10),
            "m0 holds the lock in the view".into(),
            || async { (node.get_cluster().await.ok()?.leader_name() == Some("m0")).then_some(()) },
        )
        .await
        .expect("leader visible");
        assert!(node.touch_member(&data(role, state)).await.expect("touch"));
        nodes.push(node);
    }
    nodes
}

/// Custom key and values and `tmp_role_label` land on the pods as
/// configured; a stopped member carries no role label.
#[tokio::test]
async fn custom_role_labels_and_tmp_role_label_are_applied() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t32-custom").await.expect("namespace");
    let scope = "custom";
    let _hosts = member_pods(lab, &ns, scope, 3).await;
    let mut cfg = kubernetes_config(&ns.name, false);
    cfg.role_label = "spilo-role".into();
    cfg.leader_label_value = "master".into();
    cfg.follower_label_value = "secondary".into();
    cfg.tmp_role_label = Some("tmp_role".into());
    let nodes = touch_all(
        lab,
        scope,
        &cfg,
        &[
            ("primary", "running"),
            ("replica", "running"),
            ("replica", "stopped"),
        ],
    )
    .await;
    let l0 = pod_labels(&ns, "m0").await;
    assert_eq!(
        (
            l0.get("spilo-role").map(String::as_str),
            l0.get("tmp_role").map(String::as_str)
        ),
        (Some("master"), Some("primary"))
    );
    let l1 = pod_labels(&ns, "m1").await;
    assert_eq!(
        (
            l1.get("spilo-role").map(String::as_str),
            l1.get("tmp_role").map(String::as_str)
        ),
        (Some("secondary"), Some("replica"))
    );
    let l2 = pod_labels(&ns, "m2").await;
    assert_eq!(
        (l2.get("spilo-role"), l2.get("tmp_role")),
        (None, None),
        "{l2:?}"
    );
    assert_eq!(l0.get("role"), None, "the default key is not used");
    let status: MemberData = {
        let api: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
        let pod = api.get("m1").await.expect("pod");
        serde_json::from_str(&pod.metadata.annotations.unwrap_or_default()["status"])
            .expect("status JSON")
    };
    assert_eq!(status, data("replica", "running"));
    {
        tracing::info!("--- publishing the same data again sends nothing");
        let api: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
        let before = api.get("m1").await.expect("pod").metadata.resource_version;
        let patches = |n: &KubernetesDcs| {
            n.requests()
                .snapshot()
                .get(&("patch".to_string(), "pods".to_string()))
                .copied()
        };
        let sent = patches(&nodes[1]);
        assert!(
            nodes[1]
                .touch_member(&data("replica", "running"))
                .await
                .expect("touch")
        );
        assert_eq!(
            patches(&nodes[1]),
            sent,
            "no PATCH for unchanged data and labels"
        );
        assert_eq!(
            api.get("m1").await.expect("pod").metadata.resource_version,
            before
        );
    }
}

/// Addresses the Service `svc` routes to, once they settle on `want`.
async fn routes_only_to(ns: &TestNamespace, want: &str, step: &str) {
    let eps: Api<Endpoints> = Api::namespaced(ns.client.clone(), &ns.name);
    let got = wait_until(
        Duration::from_secs(30),
        format!("{step}: svc routes to {want} only"),
        || async {
            let ep = eps.get_opt("svc").await.ok().flatten()?;
            let ips: Vec<String> = ep
                .subsets
                .iter()
                .flatten()
                .flat_map(|s| s.addresses.iter().flatten())
                .map(|a| a.ip.clone())
                .collect();
            (ips == [want.to_string()]).then_some(ips)
        },
    )
    .await;
    assert!(got.is_ok(), "{step}: {got:?}");
}

async fn set_selector(ns: &TestNamespace, selector: serde_json::Value) {
    let svcs: Api<Service> = Api::namespaced(ns.client.clone(), &ns.name);
    svcs.patch(
        "svc",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": selector}})),
    )
    .await
    .expect("patch selector");
}

/// The migration from `role: master` to custom values through
/// `tmp_role_label` (Patroni's Kubernetes docs, five steps) never leaves the
/// Service without the primary, nor routes it to the replica.
#[tokio::test]
async fn role_label_migration_keeps_the_service_on_the_primary() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t32-migrate").await.expect("namespace");
    let scope = "foo";
    let hosts = member_pods(lab, &ns, scope, 2).await;
    let primary = hosts[0].ip().to_string();
    let roles = [("primary", "running"), ("replica", "running")];
    let mut cfg = kubernetes_config(&ns.name, false);
    cfg.leader_label_value = "master".into();
    cfg.standby_leader_label_value = "master".into();
    {
        tracing::info!("--- step 0: the legacy scheme, role=master, and a Service selecting it");
        touch_all(lab, scope, &cfg, &roles).await;
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "svc"},
            "spec": {"selector": {"cluster-name": scope, "role": "master"}, "ports": [{"name": "postgresql", "port": 5432}]}
        }))
        .expect("service");
        Api::<Service>::namespaced(ns.client.clone(), &ns.name)
            .create(&PostParams::default(), &svc)
            .await
            .expect("create svc");
        routes_only_to(&ns, &primary, "step 0").await;
    }
    {
        tracing::info!(
            "--- step 1: add tmp_role_label; restarted members carry role=master and tmp_role=primary"
        );
        cfg.tmp_role_label = Some("tmp_role".into());
        touch_all(lab, scope, &cfg, &roles).await;
        let l = pod_labels(&ns, "m0").await;
        assert_eq!(
            (l["role"].as_str(), l["tmp_role"].as_str()),
            ("master", "primary")
        );
        routes_only_to(&ns, &primary, "step 1").await;
    }
    {
        tracing::info!("--- step 2: the Service selects the temporary label");
        set_selector(
            &ns,
            json!({"cluster-name": scope, "role": null, "tmp_role": "primary"}),
        )
        .await;
        routes_only_to(&ns, &primary, "step 2").await;
    }
    {
        tracing::info!("--- step 3: the new role value; restarted members carry role=primary");
        cfg.leader_label_value = "primary".into();
        cfg.standby_leader_label_value = "primary".into();
        touch_all(lab, scope, &cfg, &roles).await;
        let l = pod_labels(&ns, "m0").await;
        assert_eq!(
            (l["role"].as_str(), l["tmp_role"].as_str()),
            ("primary", "primary")
        );
        routes_only_to(&ns, &primary, "step 3").await;
    }
    {
        tracing::info!("--- step 4: the Service selects the new role value");
        set_selector(
            &ns,
            json!({"cluster-name": scope, "tmp_role": null, "role": "primary"}),
        )
        .await;
        routes_only_to(&ns, &primary, "step 4").await;
    }
    {
        tracing::info!("--- step 5: tmp_role_label removed from the configuration");
        cfg.tmp_role_label = None;
        touch_all(lab, scope, &cfg, &roles).await;
        routes_only_to(&ns, &primary, "step 5").await;
        assert_eq!(
            pod_labels(&ns, "m1").await.get("role").map(String::as_str),
            Some("replica")
        );
    }
}

async fn corrupt_state_gives_a_view(use_endpoints: bool) {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab
        .namespace(if use_endpoints {
            "t32-corrupt-ep"
        } else {
            "t32-corrupt-cm"
        })
        .await
        .expect("namespace");
    let scope = "bad";
    member_pods(lab, &ns, scope, 3).await;
    {
        tracing::info!("--- foreign writers leave garbage in every annotation we read");
        let labels = member_labels(scope);
        let obj = |name: &str, ann: serde_json::Value| json!({"metadata": {"name": name, "labels": labels, "annotations": ann}});
        let objects = [
            obj(
                if use_endpoints { scope } else { "bad-leader" },
                json!({"leader": "m0", "ttl": "30s", "optime": "lots", "slots": "{", "retain_slots": "7", "failsafe": "[]"}),
            ),
            obj(
                "bad-config",
                json!({"config": "[1,2]", "initialize": "", "history": "{"}),
            ),
            obj(
                "bad-sync",
                json!({"leader": "m0", "sync_standby": "m1", "quorum": "many"}),
            ),
            obj("bad-failover", json!({"scheduled_at": "whenever"})),
        ];
        for o in objects {
            if use_endpoints {
                let api: Api<Endpoints> = Api::namespaced(ns.client.clone(), &ns.name);
                api.create(
                    &PostParams::default(),
                    &serde_json::from_value(o).expect("endpoints"),
                )
                .await
                .expect("create");
            } else {
                let api: Api<ConfigMap> = Api::namespaced(ns.client.clone(), &ns.name);
                api.create(
                    &PostParams::default(),
                    &serde_json::from_value(o).expect("configmap"),
                )
                .await
                .expect("create");
            }
        }
        let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
        for (name, status) in [
            ("m0", "{not json"),
            ("m1", r#"{"role": 7, "xlog_location": "far"}"#),
            ("m2", "[]"),
        ] {
            let patch = json!({"metadata": {"annotations": {"status": status}}});
            pods.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .expect("patch pod");
        }
    }
    {
        tracing::info!("--- the view: defaults where values are unreadable, every member present");
        let node = dcs(
            lab,
            scope,
            "m1",
            kubernetes_config(&ns.name, use_endpoints),
            TTL,
        )
        .await;
        let c = node
            .get_cluster()
            .await
            .expect("a view despite the garbage");
        assert_eq!(c.members.len(), 3);
        assert!(
            c.members.iter().all(|m| m.data == MemberData::default()),
            "{:?}",
            c.members
        );
        assert_eq!(
            c.leader_name(),
            Some("m0"),
            "ttl '30s' falls back to the configured ttl"
        );
        assert_eq!(
            (
                c.status.last_lsn,
                c.status.slots.clone(),
                c.status.retain_slots.len()
            ),
            (0, None, 0)
        );
        assert_eq!(c.failsafe, None);
        assert_eq!(c.initialize.as_deref(), Some(""));
        let config = c.config.expect("config object");
        assert_eq!((config.modify_version, config.data.len()), (None, 0));
        assert!(c.history.expect("history").lines.is_empty());
        assert_eq!(
            (
                c.sync.leader.clone(),
                c.sync.quorum,
                c.sync.sync_standby.len()
            ),
            (None, 0, 0)
        );
        assert_eq!(
            c.failover.expect("failover object").scheduled_at.as_deref(),
            Some("whenever")
        );
    }
}

/// ConfigMaps mode.
#[tokio::test]
async fn corrupt_annotations_give_a_view_in_configmaps_mode() {
    corrupt_state_gives_a_view(false).await;
}

/// Endpoints mode.
#[tokio::test]
async fn corrupt_annotations_give_a_view_in_endpoints_mode() {
    corrupt_state_gives_a_view(true).await;
}
