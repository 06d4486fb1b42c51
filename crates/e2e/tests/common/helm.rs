//! Helpers of the Helm chart's tests (t81 on the Kubernetes DCS, t82 on etcd and ZooKeeper):
//! `helm` and `kubectl` against the lab, commands that must succeed, `helm test`.

use std::path::PathBuf;
use std::process::{Command, Output};

use patroni_testlab::{Lab, helm_binary, node_binaries};

use super::node::root;

/// The chart.
pub fn chart() -> PathBuf {
    root().join("deploy/helm/patroni-rs")
}

/// `helm` against the lab, with its own home under the cache.
pub fn helm(lab: &Lab) -> Command {
    let home = patroni_testlab::cache_dir().join("helm-home");
    let mut cmd = Command::new(helm_binary().expect("build helm"));
    cmd.env("KUBECONFIG", &lab.controlplane().kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

/// `kubectl` (built with the node) against the lab.
pub fn kubectl(lab: &Lab) -> Command {
    let program = node_binaries()
        .expect("node programs")
        .bin_dir
        .join("kubectl");
    let mut cmd = Command::new(program);
    cmd.env("KUBECONFIG", &lab.controlplane().kubeconfig);
    cmd
}

/// Runs `cmd`; its output, whatever its status.
pub fn output(what: &str, cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Runs `cmd`, failing the test with its output unless it succeeds; its stdout.
pub fn ok(what: &str, cmd: &mut Command) -> String {
    let out = output(what, cmd);
    assert!(
        out.status.success(),
        "{what}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm test` passes (its pod's log in the failure).
pub fn helm_test(lab: &Lab, ns: &str, release: &str) {
    let log = ok(
        "helm test",
        helm(lab).args([
            "test",
            release,
            "--namespace",
            ns,
            "--logs",
            "--timeout",
            "3m",
        ]),
    );
    assert!(log.contains("read helm-test-"), "{log}");
}
