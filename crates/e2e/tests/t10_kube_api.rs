//! The lab's control plane is a real Kubernetes API server: it versions
//! objects, enforces RBAC, and its controllers publish endpoints for pods.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use patroni_testlab::{Lab, PodSpec, wait_until};
use serde_json::json;

fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// `/version` reports the upstream release the control plane was built from
/// (Helm refuses charts with `kubeVersion` on an unparsable version).
#[tokio::test]
async fn api_server_reports_its_real_release() {
    init_tracing();
    let lab = Lab::shared();
    let client = lab
        .controlplane()
        .admin_client()
        .await
        .expect("admin client");
    let v = client.apiserver_version().await.expect("GET /version");
    assert_eq!(v.git_version, lab.controlplane().version);
    assert!(v.git_version.starts_with("v1.34."), "got {}", v.git_version);
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "34"));
}

/// A write carrying the resourceVersion it read succeeds once; a second
/// write with that now stale version gets 409 Conflict, for Endpoints and
/// ConfigMaps alike, by patch and by replace.
#[tokio::test]
async fn stale_resource_version_gets_conflict_for_endpoints_and_configmaps() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t10-cas").await.expect("namespace");
    let pp = PostParams::default();

    {
        tracing::info!("--- configmap: create, then compare-and-swap patch");
        let cms: Api<ConfigMap> = Api::namespaced(ns.client.clone(), &ns.name);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("demo-leader".into()),
                annotations: Some(BTreeMap::from([("leader".into(), "m0".into())])),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = cms.create(&pp, &cm).await.expect("create configmap");
        let v1 = created
            .metadata
            .resource_version
            .clone()
            .expect("resourceVersion");
        let patch = |rv: &str, leader: &str| json!({"metadata": {"resourceVersion": rv, "annotations": {"leader": leader}}});
        let updated = cms
            .patch(
                "demo-leader",
                &PatchParams::default(),
                &Patch::Merge(patch(&v1, "m1")),
            )
            .await
            .expect("patch with the current version");
        assert_ne!(
            updated.metadata.resource_version.as_deref(),
            Some(v1.as_str())
        );
        let e = cms
            .patch(
                "demo-leader",
                &PatchParams::default(),
                &Patch::Merge(patch(&v1, "m2")),
            )
            .await
            .expect_err("patch with a stale version");
        assert_eq!(status_code(&e), Some(409), "{e}");
        let mut stale = created.clone();
        stale.metadata.annotations = Some(BTreeMap::from([("leader".into(), "m3".into())]));
        let e = cms
            .replace("demo-leader", &pp, &stale)
            .await
            .expect_err("replace with a stale version");
        assert_eq!(status_code(&e), Some(409), "{e}");
        let now = cms.get("demo-leader").await.expect("get");
        assert_eq!(
            now.metadata
                .annotations
                .unwrap_or_default()
                .get("leader")
                .map(String::as_str),
            Some("m1")
        );
    }
    {
        tracing::info!("--- endpoints: create, then compare-and-swap patch");
        let eps: Api<Endpoints> = Api::namespaced(ns.client.clone(), &ns.name);
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "demo", "annotations": {"leader": "m0"}},
            "subsets": [{"addresses": [{"ip": "10.213.7.7"}], "ports": [{"name": "postgresql", "port": 5432}]}]
        }))
        .expect("valid endpoints");
        let created = eps.create(&pp, &ep).await.expect("create endpoints");
        let v1 = created
            .metadata
            .resource_version
            .clone()
            .expect("resourceVersion");
        let body = |rv: &str, leader: &str| {
            json!({"metadata": {"resourceVersion": rv, "annotations": {"leader": leader}},
                   "subsets": [{"addresses": [{"ip": "10.213.8.8"}], "ports": [{"name": "postgresql", "port": 5432}]}]})
        };
        eps.patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(body(&v1, "m1")),
        )
        .await
        .expect("patch with the current version");
        let e = eps
            .patch(
                "demo",
                &PatchParams::default(),
                &Patch::Merge(body(&v1, "m2")),
            )
            .await
            .expect_err("patch with a stale version");
        assert_eq!(status_code(&e), Some(409), "{e}");
        let now = eps.get("demo").await.expect("get");
        let ip = now.subsets.unwrap_or_default()[0]
            .addresses
            .clone()
            .unwrap_or_default()[0]
            .ip
            .clone();
        assert_eq!(ip, "10.213.8.8");
    }
    {
        tracing::info!("--- loopback addresses are refused in Endpoints");
        let eps: Api<Endpoints> = Api::namespaced(ns.client.clone(), &ns.name);
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "loop"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 5432}]}]
        }))
        .expect("valid endpoints");
        let e = eps.create(&pp, &ep).await.expect_err("loopback endpoint");
        assert_eq!(status_code(&e), Some(422), "{e}");
    }
}

/// A token whose Role covers only configmaps and pods (the OpenShift case)
/// may patch its ConfigMap but gets 403 on Endpoints.
#[tokio::test]
async fn configmaps_only_role_cannot_patch_endpoints() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t10-rbac").await.expect("namespace");
    let user = &lab.controlplane().users[0];
    let pp = PostParams::default();
    {
        tracing::info!("--- admin creates the objects, a Role and its binding");
        let cms: Api<ConfigMap> = Api::namespaced(ns.client.clone(), &ns.name);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("c-leader".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        cms.create(&pp, &cm).await.expect("create configmap");
        let eps: Api<Endpoints> = Api::namespaced(ns.client.clone(), &ns.name);
        let ep = Endpoints {
            metadata: ObjectMeta {
                name: Some("c".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        eps.create(&pp, &ep).await.expect("create endpoints");
        let verbs = [
            "get", "list", "watch", "create", "patch", "update", "delete",
        ]
        .map(String::from)
        .to_vec();
        let role = Role {
            metadata: ObjectMeta {
                name: Some("patroni".into()),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into(), "pods".into()]),
                verbs,
                ..Default::default()
            }]),
        };
        Api::<Role>::namespaced(ns.client.clone(), &ns.name)
            .create(&pp, &role)
            .await
            .expect("create role");
        let binding = RoleBinding {
            metadata: ObjectMeta {
                name: Some("patroni".into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: "patroni".into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: user.name.clone(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                ..Default::default()
            }]),
        };
        Api::<RoleBinding>::namespaced(ns.client.clone(), &ns.name)
            .create(&pp, &binding)
            .await
            .expect("create binding");
    }
    {
        tracing::info!("--- the restricted identity: configmaps yes, endpoints no");
        let client = lab
            .controlplane()
            .client_with_token(&user.token)
            .await
            .expect("user client");
        let patch = Patch::Merge(json!({"metadata": {"annotations": {"leader": "m0"}}}));
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
        // RBAC caches take a moment to see a new binding.
        wait_until(
            Duration::from_secs(10),
            "configmap patch allowed".into(),
            || async {
                cms.patch("c-leader", &PatchParams::default(), &patch)
                    .await
                    .ok()
            },
        )
        .await
        .expect("patch configmap as the restricted user");
        let eps: Api<Endpoints> = Api::namespaced(client.clone(), &ns.name);
        let e = eps
            .patch("c", &PatchParams::default(), &patch)
            .await
            .expect_err("patch endpoints");
        assert_eq!(status_code(&e), Some(403), "{e}");
        let e = eps
            .list(&ListParams::default())
            .await
            .expect_err("list endpoints");
        assert_eq!(status_code(&e), Some(403), "{e}");
        let other: Api<ConfigMap> = Api::namespaced(client, "default");
        let e = other
            .list(&ListParams::default())
            .await
            .expect_err("configmaps of another namespace");
        assert_eq!(status_code(&e), Some(403), "{e}");
    }
}

/// A Service with a selector gets an EndpointSlice (and Endpoints) holding
/// the pod's lab address once the fake kubelet marks the pod Ready.
#[tokio::test]
async fn service_selector_publishes_the_ready_pod_address() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t10-svc").await.expect("namespace");
    let host = lab.host("svc-member").expect("host");
    let labels = BTreeMap::from([
        ("application".to_string(), "patroni".to_string()),
        ("role".to_string(), "primary".to_string()),
    ]);
    {
        tracing::info!("--- a pod at the host's address, and a Service selecting it");
        lab.pod(
            &ns.client,
            &ns.name,
            &host,
            PodSpec {
                name: "member-0".into(),
                labels: labels.clone(),
                service_account: None,
            },
        )
        .await
        .expect("pod ready");
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("demo".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(labels),
                ports: Some(vec![ServicePort {
                    name: Some("postgresql".into()),
                    port: 5432,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        Api::<Service>::namespaced(ns.client.clone(), &ns.name)
            .create(&PostParams::default(), &svc)
            .await
            .expect("create service");
    }
    {
        tracing::info!("--- the controllers publish the pod's address");
        let slices: Api<EndpointSlice> = Api::namespaced(ns.client.clone(), &ns.name);
        let lp = ListParams::default().labels("kubernetes.io/service-name=demo");
        let ip = host.ip().to_string();
        wait_until(
            Duration::from_secs(60),
            format!("EndpointSlice with {ip}"),
            || async {
                let list = slices.list(&lp).await.ok()?;
                list.items
                    .iter()
                    .flat_map(|s| s.endpoints.iter())
                    .any(|e| {
                        e.addresses.contains(&ip)
                            && e.conditions.as_ref().and_then(|c| c.ready) == Some(true)
                    })
                    .then_some(())
            },
        )
        .await
        .expect("endpointslice");
        let eps: Api<Endpoints> = Api::namespaced(ns.client.clone(), &ns.name);
        wait_until(
            Duration::from_secs(60),
            format!("Endpoints with {ip}"),
            || async {
                let ep = eps.get_opt("demo").await.ok().flatten()?;
                ep.subsets
                    .iter()
                    .flatten()
                    .flat_map(|s| s.addresses.iter().flatten())
                    .any(|a| a.ip == ip)
                    .then_some(())
            },
        )
        .await
        .expect("endpoints");
    }
}
