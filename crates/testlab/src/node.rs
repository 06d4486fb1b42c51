//! The lab's real Kubernetes node: one more namespace on the lab bridge where
//! `testenv node` supervises containerd (Debian's, with runc and the CNI
//! plugins), the upstream kubelet, kube-proxy and kube-scheduler, CoreDNS and
//! the lab's volume provisioner. Pods scheduled there run from images
//! imported into its containerd (no registry); pods get `10.244.0.0/24`,
//! Services their ClusterIPs through kube-proxy, names through CoreDNS at
//! `10.96.0.10`.
//!
//! The binaries are built once from `testenv/` (kubelet, kube-proxy,
//! kube-scheduler, kubectl for people, pause) and CoreDNS's own module, and cached like the
//! control plane's. The supervisor removes everything the node made when it
//! gets SIGTERM or the lab's owner is gone; [`crate::Lab::stop`] does that
//! before it deletes the namespaces.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::gobuild::GoBuild;
use crate::netns::run_command as run;
use crate::oci::{OciImage, build_archive};
use crate::testenv_bin::{cache_dir, go_ldflags, testenv_source_dir};
use crate::{Error, Result};

/// CoreDNS release built from its Go module.
pub const COREDNS_VERSION: &str = "v1.12.4";
/// The node's address on the lab network.
pub(crate) const NODE_IP: &str = "10.213.0.3";
/// Pod addresses on the node (routed there from the control plane).
pub(crate) const POD_CIDR: &str = "10.244.0.0/24";
/// The Node's name.
pub const NODE_NAME: &str = "lab-node";
/// How long the node may take to report Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// What `lab.json` remembers of the node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Network namespace.
    pub netns: String,
    /// Address on the lab network.
    pub ip: String,
    /// State directory.
    pub dir: PathBuf,
    /// Pid of `testenv node`.
    pub supervisor_pid: i32,
    /// containerd's socket (`ctr -a`).
    pub containerd: PathBuf,
}

/// The node's programs.
#[derive(Debug, Clone)]
pub struct NodeBinaries {
    /// kubelet, kube-proxy, kube-scheduler, kubectl and pause.
    pub bin_dir: PathBuf,
    /// coredns.
    pub coredns: PathBuf,
    /// The OCI archive of `registry.k8s.io/pause:3.10`.
    pub pause_image: PathBuf,
}

/// Builds (once per source hash) and returns the node's programs.
///
/// # Errors
/// A Go build or umoci failed.
pub fn node_binaries() -> Result<NodeBinaries> {
    let bin_dir = GoBuild {
        name: "node",
        module: &testenv_source_dir(),
        packages: &[
            "k8s.io/kubernetes/cmd/kubelet",
            "k8s.io/kubernetes/cmd/kube-proxy",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes/cmd/kubectl",
            "./pause",
        ],
        ldflags: &go_ldflags(),
    }
    .dir(|out, work| pause_image(&out.join("pause"), &out.join("pause.oci.tar"), work))?;
    Ok(NodeBinaries {
        pause_image: bin_dir.join("pause.oci.tar"),
        bin_dir,
        coredns: coredns_binary()?,
    })
}

/// `go install github.com/coredns/coredns@COREDNS_VERSION`, once.
pub(crate) fn coredns_binary() -> Result<PathBuf> {
    let dir = cache_dir().join("coredns").join(COREDNS_VERSION);
    let bin = dir.join("coredns");
    if bin.exists() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    tracing::info!("building CoreDNS {COREDNS_VERSION}");
    let mut cmd = Command::new("go");
    cmd.env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOBIN", &dir)
        .env("GOFLAGS", "-buildvcs=false")
        .args([
            "install",
            "-trimpath",
            "-ldflags",
            "-s -w",
            &format!("github.com/coredns/coredns@{COREDNS_VERSION}"),
        ]);
    run(&mut cmd, "go install coredns")?;
    Ok(bin)
}

/// An OCI archive holding only `/pause`, tagged `3.10` (imported as
/// `registry.k8s.io/pause:3.10`, the sandbox image containerd asks for).
fn pause_image(pause: &Path, archive: &Path, work: &Path) -> Result<()> {
    let rootfs = work.join("pause-root");
    std::fs::create_dir_all(&rootfs).map_err(Error::io("create", &rootfs))?;
    std::fs::copy(pause, rootfs.join("pause")).map_err(Error::io("copy", pause))?;
    let layer = work.join("pause-layer.tar");
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&layer)
            .arg("pause"),
        "tar the pause layer",
    )?;
    build_archive(
        &OciImage {
            layers: &[&layer],
            tag: "3.10",
            config: &[
                "--config.entrypoint".into(),
                "/pause".into(),
                "--config.user".into(),
                "65535:65535".into(),
            ],
        },
        work,
        archive,
    )?;
    Ok(())
}

/// Starts `testenv node` for a lab whose node namespace `netns` exists, and
/// waits until the Node is Ready.
pub(crate) fn start(
    testenv: &Path,
    dir: &Path,
    netns: &str,
    lab_kubeconfig: &Path,
    watch_pid: i32,
) -> Result<NodeInfo> {
    let bins = node_binaries()?;
    // A new node starts from nothing (volumes, logs and state of an earlier one go).
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(Error::io("remove", dir))?;
    }
    std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let ready = dir.join("node.json");
    let _ = std::fs::remove_file(&ready);
    let log_path = dir.join("supervisor.log");
    let log = File::create(&log_path).map_err(Error::io("create", &log_path))?;
    let err_log = log.try_clone().map_err(Error::io("dup", &log_path))?;
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg("--")
        .arg(testenv)
        .arg("node")
        .arg("--dir")
        .arg(dir)
        .args(["--netns", netns, "--ip", NODE_IP, "--name", NODE_NAME])
        .arg("--kubeconfig")
        .arg(lab_kubeconfig)
        .arg("--bin-dir")
        .arg(&bins.bin_dir)
        .arg("--coredns")
        .arg(&bins.coredns)
        .arg("--pause-image")
        .arg(&bins.pause_image)
        .arg(format!("--watch-pid={watch_pid}"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|e| Error::Command {
            what: "start testenv node".into(),
            detail: e.to_string(),
        })?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(env) = serde_json::from_str::<serde_json::Value>(&text)
        {
            return Ok(NodeInfo {
                name: NODE_NAME.into(),
                netns: netns.into(),
                ip: NODE_IP.into(),
                dir: dir.to_path_buf(),
                supervisor_pid: i32::try_from(child.id()).unwrap_or_default(),
                containerd: PathBuf::from(env["containerd"].as_str().unwrap_or_default()),
            });
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            if exited.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(Error::Command {
                what: "testenv node".into(),
                detail: format!(
                    "{}: {}",
                    exited.map_or("not Ready in time".to_owned(), |s| s.to_string()),
                    log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Imports an OCI archive into the node's containerd as `name` (`--base-name`).
///
/// # Errors
/// `ctr` failed.
pub fn import_image(node: &NodeInfo, archive: &Path, base_name: &str) -> Result<()> {
    run(
        Command::new("ctr")
            .arg("-a")
            .arg(&node.containerd)
            .args(["-n", "k8s.io", "images", "import", "--base-name", base_name])
            .arg(archive),
        "import an image into the node",
    )
}
