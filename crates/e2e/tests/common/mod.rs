//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod cluster;
pub mod contract;
pub mod helm;
pub mod migration;
pub mod node;
pub mod scenario;
pub mod zookeeper;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::Role;

use patroni_config::{DcsConfig, EndpointPort, KubernetesConfig};
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
    patroni_testlab::member_role(use_endpoints).expect("the shipped Role parses")
}

/// Creates `role` in `namespace` (if absent) and binds it to `user`.
pub async fn bind_role(lab: &Lab, namespace: &str, role: Role, user: &str) {
    lab.bind_role(namespace, role, user)
        .await
        .expect("bind role");
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

/// Reads `node`'s view and races for the lock from it (the leader version it saw).
#[allow(unused_imports, reason = "not every test binary races for the lock")]
pub use contract::acquire;

/// Waits until `node`'s view shows `name` holding the lock.
#[allow(dead_code)]
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
/// deployment would. User 0 is the members' identity in every test
/// namespace; other indexes are for tests that need a second identity.
pub async fn restricted_kubeconfig(
    lab: &Lab,
    namespace: &str,
    use_endpoints: bool,
    inside_lab: bool,
    user: usize,
) -> PathBuf {
    lab.member_kubeconfig(namespace, use_endpoints, inside_lab, user)
        .await
        .expect("restricted identity")
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
        dcs: DcsConfig::Kubernetes(k8s),
        ttl,
        loop_wait: Duration::from_secs(10),
        retry_timeout: Duration::from_secs(4),
        kubeconfig: Some(kubeconfig),
        in_cluster: false,
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

/// The Python virtualenv holding Patroni (created by `cargo xtask test`).
pub fn venv() -> std::path::PathBuf {
    let venv = patroni_testlab::cache_dir().join("venv");
    assert!(
        venv.join("bin/patronictl").exists(),
        "Patroni's Python package is missing from {0}: `cargo xtask test` installs it (xtask/scripts/install-test-deps.sh)",
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
    let cfg = patronictl_config(dir, namespace, scope, use_endpoints);
    let mut cmd = std::process::Command::new(venv().join("bin/patronictl"));
    cmd.env("KUBECONFIG", &lab.controlplane().kubeconfig)
        .arg("-c")
        .arg(cfg);
    cmd
}

/// Writes `dir/patronictl-SCOPE.yml`, a `patronictl` configuration for `scope` in `namespace`
/// of the lab's API server (context `testenv`), and returns its path.
pub fn patronictl_config(
    dir: &std::path::Path,
    namespace: &str,
    scope: &str,
    use_endpoints: bool,
) -> PathBuf {
    let cfg = dir.join(format!("patronictl-{scope}.yml"));
    let text = format!(
        "scope: {scope}\nkubernetes:\n  namespace: {namespace}\n  labels:\n    application: patroni\n  scope_label: cluster-name\n  use_endpoints: {use_endpoints}\n  context: testenv\n"
    );
    std::fs::write(&cfg, text).expect("write patronictl config");
    cfg
}

/// Our `patronictl` binary, built once per test process.
pub fn our_patronictl() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| built_binary("patroni-ctl", "patronictl"))
        .clone()
}

/// The `patroni` agent binary, built once per test process.
pub fn agent_binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| built_binary("patroni", "patroni"))
        .clone()
}

/// The `patroni-backup` binary, built once per test process.
pub fn backup_binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| built_binary("patroni-backup", "patroni-backup"))
        .clone()
}

/// `cargo build -p PACKAGE --bin BIN` (debug) and the binary's canonical path.
fn built_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target
        .join("debug")
        .join(bin)
        .canonicalize()
        .unwrap_or_else(|e| panic!("the {bin} binary exists: {e}"))
}

/// Our `patronictl` binary, built once per test process.
pub fn ctl_binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "patroni-ctl",
                "--bin",
                "patronictl",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p patroni-ctl failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
            });
        target
            .join("debug/patronictl")
            .canonicalize()
            .expect("the patronictl binary exists")
    })
    .clone()
}

/// A virtualenv with Patroni 4.1.5 and the packages of `requirements` (files under
/// `crates/e2e/py/`) that the postgres OS user can run, for tests that run the Python daemon.
///
/// The suite's venv lives under root's home, which other users cannot traverse. This one is
/// built once per set of requirement files from the system interpreter, in
/// `/var/tmp/patroni-rs-venv-<hash>`: owned by root, readable by everyone, writable by root
/// only, built under a temporary name and renamed into place (so its console scripts' shebangs
/// are stale: run it as `bin/python -m patroni`).
pub fn python_daemon_venv(requirements: &[&str]) -> PathBuf {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::Command;
    let dir_of = |f: &str| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py").join(f);
    let mut req = Vec::new();
    for f in requirements {
        req.extend(std::fs::read(dir_of(f)).expect("read requirements"));
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req.hash(&mut h);
    let dir = PathBuf::from(format!("/var/tmp/patroni-rs-venv-{:016x}", h.finish()));
    let ready = |d: &std::path::Path| {
        std::fs::symlink_metadata(d)
            .map(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0)
            .unwrap_or(false)
            && std::fs::read(d.join(".requirements")).ok() == Some(req.clone())
    };
    if !ready(&dir) {
        let tmp = tempfile::Builder::new()
            .prefix("patroni-rs-venv-build-")
            .tempdir_in("/var/tmp")
            .expect("tempdir for the venv")
            .keep();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let python = if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        run_ok(
            "python3 -m venv",
            Command::new(python).args(["-m", "venv"]).arg(&tmp),
        );
        for f in requirements {
            run_ok(
                &format!("pip install -r {f}"),
                Command::new(tmp.join("bin/python"))
                    .args(["-m", "pip", "install", "-q", "-r"])
                    .arg(dir_of(f)),
            );
        }
        run_ok(
            "chmod the venv",
            Command::new("chmod").args(["-R", "a+rX"]).arg(&tmp),
        );
        std::fs::write(tmp.join(".requirements"), &req).expect("write marker");
        if std::fs::symlink_metadata(&dir).is_ok() && !ready(&dir) {
            let _ = std::fs::remove_dir_all(&dir).or_else(|_| std::fs::remove_file(&dir));
        }
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        assert!(ready(&dir), "venv at {} is not usable", dir.display());
    }
    dir
}
