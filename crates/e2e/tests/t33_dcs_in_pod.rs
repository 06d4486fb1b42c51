//! The DCS running inside a pod's network namespace, talking to the API
//! server at its lab address, with `bypass_api_service`: the API server's own
//! addresses are read from `default/endpoints/kubernetes` when the optional
//! Role allows it, and the bypass turns itself off on 403.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::rbac::v1::Role;
use patroni_config::DcsConfig;
use patroni_dcs::{KubernetesDcs, Settings};
use patroni_testlab::{Lab, PodSpec};

/// Grants `user` the shipped bypass Role in namespace `default`.
async fn allow_bypass(lab: &Lab, user: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/rbac/bypass-api-service.yaml");
    let role: Role =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read")).expect("parse");
    bind_role(lab, "default", role, user).await;
}

/// Inside the pod: start the DCS with the bypass on, take the lock, and
/// report how many times `default/endpoints/kubernetes` was read and
/// whether the bypass is in effect.
fn lock_from_inside(settings: Settings) -> (bool, u64, bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dcs = KubernetesDcs::start(settings)
            .await
            .expect("start the DCS in the pod");
        let seen = dcs
            .get_cluster()
            .await
            .expect("view")
            .leader
            .map(|l| l.version);
        let acquired = dcs
            .attempt_to_acquire_leader(seen.as_deref())
            .await
            .expect("acquire");
        let reads = dcs
            .requests()
            .snapshot()
            .get(&("get".to_string(), "endpoints".to_string()))
            .copied()
            .unwrap_or(0);
        (acquired, reads, dcs.api_server().1)
    })
}

/// With the optional Role the bypass reads the API server list and works;
/// without it the 403 turns the bypass off and the DCS still works.
#[tokio::test]
async fn bypass_api_service_from_inside_a_pod() {
    init_tracing();
    let lab = Lab::shared();
    for (allowed, user_index, scope) in [
        (true, 1usize, "bypass-on"),
        (false, 2usize, "bypass-denied"),
    ] {
        tracing::info!("--- bypass allowed: {allowed}");
        let ns = lab
            .namespace(if allowed {
                "t33-bypass"
            } else {
                "t33-nobypass"
            })
            .await
            .expect("namespace");
        let host = lab.host("in-pod").expect("host");
        lab.pod(
            &ns.client,
            &ns.name,
            &host,
            PodSpec {
                name: "m0".into(),
                labels: member_labels(scope),
                service_account: None,
            },
        )
        .await
        .expect("pod");
        let kubeconfig = restricted_kubeconfig(lab, &ns.name, false, true, user_index).await;
        if allowed {
            allow_bypass(lab, &lab.controlplane().users[user_index].name).await;
        }
        let mut k8s = kubernetes_config(&ns.name, false);
        k8s.bypass_api_service = true;
        let settings = Settings {
            scope: scope.into(),
            name: "m0".into(),
            dcs: DcsConfig::Kubernetes(k8s),
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(4),
            kubeconfig: Some(kubeconfig),
            in_cluster: false,
        };
        let (acquired, reads, bypassing) = host
            .run_inside(move || lock_from_inside(settings))
            .expect("run inside the pod");
        assert!(
            acquired,
            "the lock is taken through the API server's own address"
        );
        assert_eq!(
            reads, 1,
            "default/endpoints/kubernetes is read once at start"
        );
        assert_eq!(
            bypassing, allowed,
            "the bypass is on exactly when the Role allows it"
        );
    }
}
