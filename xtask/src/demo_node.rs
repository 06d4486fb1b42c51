//! `cargo xtask demo --node`: the demo as users deploy patroni-rs: the image
//! (`cargo xtask image`) imported into the lab's real node, and the plain
//! manifests of `deploy/kubernetes/patroni-rs.yaml` applied with `kubectl`
//! (built by the lab from the Kubernetes module). Printed commands use that
//! `kubectl` and the lab's kubeconfig; `cargo xtask demo down` stops it all.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use patroni_testlab::{Lab, node_binaries};

use crate::image::{IMAGE_NAME, workspace_root};

/// The manifests' StatefulSet (also their cluster scope).
const NAME: &str = "patroni-rs";
/// The pods' selector.
const SELECTOR: &str = "application=patroni,cluster-name=patroni-rs";
/// Bootstrap, base backups and pod starts.
const FORM_TIMEOUT: Duration = Duration::from_secs(300);

/// Starts the lab with its node, imports the image, applies the manifests
/// scaled to `members`, and waits for one primary and `members - 1` replicas.
pub fn run(dir: &Path, members: u32) -> anyhow::Result<ExitCode> {
    let image = crate::image::build(
        &workspace_root().join("target/image/patroni-rs.oci.tar"),
        env!("CARGO_PKG_VERSION"),
    )?;
    let kubectl = node_binaries()
        .context("build the node's programs")?
        .bin_dir
        .join("kubectl");
    let mut lab = Lab::start(dir, 0).context("start the lab")?;
    let node = lab.start_node(0).context("start the real node")?;
    patroni_testlab::import_image(&node, &image.archive, IMAGE_NAME)?;
    let info = lab.detach();
    let kubeconfig = info.controlplane.kubeconfig.clone();
    let manifests = workspace_root().join("deploy/kubernetes/patroni-rs.yaml");
    let k = Kubectl {
        program: kubectl,
        kubeconfig,
    };
    k.run(&["apply", "-f", &manifests.display().to_string()])?;
    k.run(&[
        "scale",
        &format!("statefulset/{NAME}"),
        &format!("--replicas={members}"),
    ])?;
    println!("waiting for {members} pods Ready: one primary, the others replicas …");
    let deadline = Instant::now() + FORM_TIMEOUT;
    let primary = loop {
        if let Some(primary) = formed(&k, members as usize) {
            break primary;
        }
        if Instant::now() > deadline {
            eprintln!(
                "not formed after {FORM_TIMEOUT:?}; pods: {}; their logs: {}",
                k.output(&["get", "pods", "-L", "role"]).unwrap_or_default(),
                node.dir.join("pod-logs").display()
            );
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    print!(
        "{}",
        k.output(&["get", "pods", "-L", "role", "-o", "wide"])?
    );
    let kc = format!(
        "KUBECONFIG={} {}",
        k.kubeconfig.display(),
        k.program.display()
    );
    let down = format!("cargo xtask demo down --dir {}", dir.display());
    println!("The cluster runs on the lab's real node (kubelet, containerd). Try:");
    println!("  pods and roles: {kc} get pods -L role");
    println!("  patronictl:     {kc} exec {primary} -- patronictl list");
    println!(
        "  write through the primary Service, read through the replicas':\n                  {kc} exec {primary} -- sh -c 'PGPASSWORD=$PATRONI_SUPERUSER_PASSWORD psql -h {NAME} -U postgres -c \"create table if not exists t(x text); insert into t values (now())\" && sleep 1 && PGPASSWORD=$PATRONI_SUPERUSER_PASSWORD psql -h {NAME}-repl -U postgres -c \"table t\"'"
    );
    println!(
        "  failover:       {kc} delete pod {primary} --grace-period=0 --force   (then watch the roles)"
    );
    println!("  stop:           {down}");
    Ok(ExitCode::SUCCESS)
}

/// `kubectl` with the lab's kubeconfig.
struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.env("KUBECONFIG", &self.kubeconfig).args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let status = self
            .command(args)
            .status()
            .with_context(|| format!("run kubectl {args:?}"))?;
        if !status.success() {
            bail!("kubectl {args:?} failed with {status}");
        }
        Ok(())
    }

    fn output(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(args)
            .output()
            .with_context(|| format!("run kubectl {args:?}"))?;
        if !out.status.success() {
            bail!(
                "kubectl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The primary pod's name once `n` pods are Ready, one labelled `role=primary` and the
/// others `role=replica`.
fn formed(k: &Kubectl, n: usize) -> Option<String> {
    let text = k
        .output(&["get", "pods", "-l", SELECTOR, "-o", "json"])
        .ok()?;
    let list: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mut primary = None;
    let mut replicas = 0;
    let mut ready = 0;
    for pod in list["items"].as_array()? {
        let is_ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if !is_ready || !pod["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        ready += 1;
        match pod["metadata"]["labels"]["role"].as_str() {
            Some("primary") => primary = pod["metadata"]["name"].as_str().map(str::to_owned),
            Some("replica") => replicas += 1,
            _ => {}
        }
    }
    (ready == n && replicas + 1 == n)
        .then_some(primary)
        .flatten()
}
