//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;

use patroni_config::{EndpointPort, KubernetesConfig};
use patroni_dcs::{KubernetesDcs, Settings};
use patroni_testlab::{Host, Lab, PodSpec, TestNamespace};

/// Installs a test log writer (once per process).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Labels every test cluster's pods and objects carry (besides the scope label).
pub fn app_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("application".to_string(), "patroni".to_string())])
}

/// The `kubernetes` section of a test member, Patroni's defaults otherwise.
pub fn kubernetes_config(namespace: &str, use_endpoints: bool) -> KubernetesConfig {
    KubernetesConfig {
        namespace: namespace.to_string(),
        labels: app_labels(),
        use_endpoints,
        ports: vec![EndpointPort {
            name: Some("postgresql".into()),
            port: 5432,
            protocol: None,
        }],
        context: "testenv".into(),
        ..KubernetesConfig::default()
    }
}

/// The least-privilege Role of a mode, exactly as shipped in `deploy/rbac/`.
pub fn shipped_role(use_endpoints: bool) -> Role {
    let file = if use_endpoints {
        "endpoints-mode.yaml"
    } else {
        "configmaps-mode.yaml"
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/rbac")
        .join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Creates `role` in `namespace` (if absent) and binds it to `user`.
pub async fn bind_role(lab: &Lab, namespace: &str, role: Role, user: &str) {
    let admin = lab
        .controlplane()
        .admin_client()
        .await
        .expect("admin client");
    let pp = PostParams::default();
    let role_name = role.metadata.name.clone().expect("the Role has a name");
    ignore_exists(
        Api::<Role>::namespaced(admin.clone(), namespace)
            .create(&pp, &role)
            .await,
        "create role",
    );
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{role_name}-{user}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .expect("binding");
    ignore_exists(
        Api::<RoleBinding>::namespaced(admin, namespace)
            .create(&pp, &binding)
            .await,
        "create role binding",
    );
}

fn ignore_exists<T>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Hosts with pods `m0..mN`, Running/Ready at the hosts' addresses and
/// carrying the labels of `scope`'s members.
pub async fn member_pods(lab: &Lab, ns: &TestNamespace, scope: &str, n: usize) -> Vec<Host> {
    let mut hosts = Vec::new();
    for i in 0..n {
        let host = lab.host(&format!("m{i}")).expect("host");
        let spec = PodSpec {
            name: format!("m{i}"),
            labels: member_labels(scope),
            service_account: None,
        };
        lab.pod(&ns.client, &ns.name, &host, spec)
            .await
            .expect("pod");
        hosts.push(host);
    }
    hosts
}

/// Waits until `node`'s view shows `name` holding the lock.
pub async fn wait_for_leader(node: &KubernetesDcs, name: &str) {
    patroni_testlab::wait_until(
        Duration::from_secs(10),
        format!("{name} is leader in the view"),
        || async {
            let v = node.get_cluster().await.ok()?;
            (v.leader_name() == Some(name)).then_some(())
        },
    )
    .await
    .expect("view shows the leader");
}

/// A kubeconfig for an identity that holds only the shipped Role of the
/// mode in `namespace`: the DCS under test gets no more rights than a
/// deployment would.
pub async fn restricted_kubeconfig(
    lab: &Lab,
    namespace: &str,
    use_endpoints: bool,
    inside_lab: bool,
    user: usize,
) -> PathBuf {
    let cp = lab.controlplane();
    // testenv-user-00 is the members' identity in every test namespace;
    // other indexes are for tests that need a second identity.
    let user = &cp.users[user];
    let role = shipped_role(use_endpoints);
    bind_role(lab, namespace, role, &user.name).await;
    let suffix = if inside_lab { "-lab" } else { "" };
    let path = lab
        .info()
        .dir
        .join(format!("{namespace}-{}{suffix}.kubeconfig", user.name));
    cp.write_kubeconfig(&user.token, &path, inside_lab)
        .expect("write kubeconfig");
    // The authorizer's cache takes a moment to see a new binding.
    let client = cp.client_with_token(&user.token).await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    patroni_testlab::wait_until(
        Duration::from_secs(10),
        "the binding takes effect".into(),
        || async { pods.list(&Default::default()).await.ok().map(|_| ()) },
    )
    .await
    .expect("restricted identity can list pods");
    path
}

/// Starts a DCS for member `name` of `scope` against the lab's API server,
/// as an identity holding only the shipped Role of the mode.
pub async fn dcs(
    lab: &Lab,
    scope: &str,
    name: &str,
    k8s: KubernetesConfig,
    ttl: Duration,
) -> KubernetesDcs {
    let kubeconfig = restricted_kubeconfig(lab, &k8s.namespace, k8s.use_endpoints, false, 0).await;
    KubernetesDcs::start(Settings {
        scope: scope.to_string(),
        name: name.to_string(),
        kubernetes: k8s,
        ttl,
        loop_wait: Duration::from_secs(10),
        retry_timeout: Duration::from_secs(4),
        kubeconfig: Some(kubeconfig),
    })
    .await
    .expect("start the DCS")
}

/// Pod labels for a member of `scope`.
pub fn member_labels(scope: &str) -> BTreeMap<String, String> {
    let mut l = app_labels();
    l.insert("cluster-name".into(), scope.into());
    l
}

/// The Python virtualenv holding Patroni (created by `.ci/run`).
pub fn venv() -> std::path::PathBuf {
    let cache = std::env::var_os("PATRONI_RS_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/patroni-rs")
        });
    let venv = cache.join("venv");
    assert!(
        venv.join("bin/patronictl").exists(),
        "Patroni's Python package is missing: python3 -m venv {0} && {0}/bin/pip install -r crates/e2e/py/requirements.txt",
        venv.display()
    );
    venv
}

/// Runs a command and returns its stdout, failing the test with its stderr.
pub fn run_ok(what: &str, cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `patroni_peer.py SUBCOMMAND --kubeconfig … --namespace NS --scope SCOPE [--use-endpoints]`.
pub fn peer(
    lab: &Lab,
    sub: &str,
    namespace: &str,
    scope: &str,
    use_endpoints: bool,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(venv().join("bin/python"));
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/py/patroni_peer.py"))
        .arg(sub)
        .arg("--kubeconfig")
        .arg(&lab.controlplane().kubeconfig)
        .args([
            "--context",
            "testenv",
            "--namespace",
            namespace,
            "--scope",
            scope,
        ]);
    if use_endpoints {
        cmd.arg("--use-endpoints");
    }
    cmd
}

/// Python `patronictl -c CFG ARGS…` for `scope` in `namespace`.
pub fn patronictl(
    lab: &Lab,
    dir: &std::path::Path,
    namespace: &str,
    scope: &str,
    use_endpoints: bool,
) -> std::process::Command {
    let cfg = dir.join(format!("patronictl-{scope}.yml"));
    let text = format!(
        "scope: {scope}\nkubernetes:\n  namespace: {namespace}\n  labels:\n    application: patroni\n  scope_label: cluster-name\n  use_endpoints: {use_endpoints}\n  context: testenv\n"
    );
    std::fs::write(&cfg, text).expect("write patronictl config");
    let mut cmd = std::process::Command::new(venv().join("bin/patronictl"));
    cmd.env("KUBECONFIG", &lab.controlplane().kubeconfig)
        .arg("-c")
        .arg(cfg);
    cmd
}
