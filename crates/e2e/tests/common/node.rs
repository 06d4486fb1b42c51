//! Helpers of the tests on the lab's real node (t80 manifests, t81 Helm chart): the image,
//! manifests applied with kube-rs, client pods from the image, and the roles of a cluster's
//! Ready pods.

#![allow(
    clippy::disallowed_types,
    reason = "the test harness measures real elapsed time (std::time::Instant)"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, LogParams, PostParams};
use kube::core::GroupVersionKind;
use patroni_testlab::{NodeInfo, wait_until};
use serde::Deserialize as _;
use serde_json::json;

/// The image `cargo xtask image` builds, as the node knows it after [`import_image`].
pub const IMAGE: &str = concat!("localhost/patroni-rs:", env!("CARGO_PKG_VERSION"));

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the image (`cargo xtask image`; only the binaries layer when the base is cached)
/// and imports it into the node, once per test process.
fn import_image(node: &NodeInfo) {
    static DONE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = DONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *done {
        return;
    }
    let archive = root().join("target/image/patroni-rs.oci.tar");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(root())
        .args(["xtask", "image", "--output"])
        .arg(&archive)
        .status()
        .expect("run cargo xtask image");
    assert!(status.success(), "cargo xtask image failed");
    patroni_testlab::import_image(node, &archive, "localhost/patroni-rs").expect("import");
    *done = true;
}

/// The shared lab's real node with the image imported (both done once per test process).
pub async fn node_with_image(lab: &'static patroni_testlab::Lab) -> NodeInfo {
    let node = tokio::task::spawn_blocking(move || lab.node())
        .await
        .expect("join")
        .expect("the real node");
    let for_import = node.clone();
    tokio::task::spawn_blocking(move || import_image(&for_import))
        .await
        .expect("join");
    node
}

/// Creates every object of a multi-document manifest in `ns`.
pub async fn apply(client: &kube::Client, ns: &str, yaml: &str) {
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = serde_yaml_ng::Value::deserialize(doc).expect("YAML");
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml_ng::from_value(value).expect("object");
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("gvk");
        let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .expect("discover the kind");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", types.kind));
    }
}

/// Runs `program ARGS` in a pod from the image (as postgres, read-only root filesystem, with
/// `env`) and waits for it; its log, `Err(log)` when it failed.
pub async fn run_pod(
    client: &kube::Client,
    ns: &str,
    env: &[(&str, &str)],
    program: &str,
    args: &[&str],
) -> Result<String, String> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = format!("client-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    let env: Vec<_> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .chain([json!({"name": "PGCONNECT_TIMEOUT", "value": "3"})])
        .collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 999, "runAsNonRoot": true},
            "containers": [{
                "name": "client", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": [program], "args": args, "env": env,
                "securityContext": {"readOnlyRootFilesystem": true}
            }]
        }
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| e.to_string())?;
    let (phase, why) = wait_until(Duration::from_secs(600), format!("pod {name}"), || async {
        let status = pods.get(&name).await.ok()?.status?;
        let phase = status.phase?;
        // A pod the kubelet refused (e.g. `Evicted` under DiskPressure) has no log: its
        // reason and message are all there is to tell why.
        let why = format!(
            "{}: {}",
            status.reason.unwrap_or_default(),
            status.message.unwrap_or_default()
        );
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some((phase, why))
    })
    .await
    .map_err(|e| e.to_string())?;
    let log = pods
        .logs(&name, &LogParams::default())
        .await
        .unwrap_or_else(|e| format!("(no log: {e})"));
    let _ = pods
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await;
    if phase == "Succeeded" {
        Ok(log.trim().to_owned())
    } else {
        Err(format!("pod {name} failed ({why}): {log}"))
    }
}

/// `psql ARGS` in a client pod with `PGPASSWORD=password`.
pub async fn psql(
    client: &kube::Client,
    ns: &str,
    password: &str,
    args: &[&str],
) -> Result<String, String> {
    run_pod(client, ns, &[("PGPASSWORD", password)], "psql", args).await
}

/// [`psql`] retried for up to 30 s: a Service follows a new primary a moment after its
/// label changes (endpoints, then kube-proxy), as clients see in any cluster.
pub async fn psql_soon(
    client: &kube::Client,
    ns: &str,
    password: &str,
    args: &[&str],
) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match psql(client, ns, password, args).await {
            Ok(out) => return Ok(out),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// How a cluster's pods are found and what their role label says.
#[derive(Debug, Clone, Copy)]
pub struct Roles<'a> {
    /// Label selector of the cluster's pods.
    pub selector: &'a str,
    /// The role label.
    pub label: &'a str,
    /// Its value on the primary.
    pub primary: &'a str,
    /// Its value on replicas.
    pub replica: &'a str,
}

impl Roles<'_> {
    /// `name: role label value` of the cluster's pods that are Ready.
    pub async fn ready(&self, client: &kube::Client, ns: &str) -> BTreeMap<String, String> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let Ok(list) = pods
            .list(&ListParams::default().labels(self.selector))
            .await
        else {
            return BTreeMap::new();
        };
        list.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .map(|p| {
                let role = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(self.label))
                    .cloned()
                    .unwrap_or_default();
                (p.metadata.name.unwrap_or_default(), role)
            })
            .collect()
    }

    /// Waits until `n` pods are Ready with one primary and the others replicas; the
    /// primary.
    pub async fn formed(
        &self,
        client: &kube::Client,
        ns: &str,
        n: usize,
        timeout: Duration,
        what: &str,
    ) -> String {
        wait_until(timeout, what.to_owned(), || async {
            let roles = self.ready(client, ns).await;
            let primaries: Vec<&String> = roles
                .iter()
                .filter(|(_, r)| *r == self.primary)
                .map(|(n, _)| n)
                .collect();
            let replicas = roles.values().filter(|r| *r == self.replica).count();
            (roles.len() == n && primaries.len() == 1 && replicas == n - 1)
                .then(|| primaries[0].clone())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until a Ready pod other than `old` is the primary; its name.
    pub async fn takeover(
        &self,
        client: &kube::Client,
        ns: &str,
        old: &str,
        timeout: Duration,
    ) -> String {
        wait_until(timeout, "a replica took over".into(), || async {
            self.ready(client, ns)
                .await
                .into_iter()
                .find(|(n, r)| *r == self.primary && n != old)
                .map(|(n, _)| n)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The values of a release's Secret `name` (the chart's passwords).
pub async fn release_passwords(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> BTreeMap<String, Vec<u8>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .get(name)
        .await
        .expect("the Secret")
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// The superuser's password among a release's passwords.
pub fn superuser_password(passwords: &BTreeMap<String, Vec<u8>>) -> String {
    String::from_utf8(passwords["password-superuser"].clone()).expect("UTF-8 password")
}
