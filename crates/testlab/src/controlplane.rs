//! The real Kubernetes control plane of a lab: started as `testenv up`
//! inside the lab's control-plane namespace, described by its `env.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, netns};

/// How long a cold control plane gets to become ready (etcd, API server,
/// controller manager and kubelet; a loaded 2-core machine needs ~30 s).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// What `testenv up` reports once the control plane serves (its `env.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlPlane {
    /// Kubernetes release reported at `/version`.
    pub version: String,
    /// Kubeconfig for the machine's own namespace (through the loopback proxy).
    pub kubeconfig: PathBuf,
    /// Kubeconfig for processes inside the lab (API server at its lab address).
    pub lab_kubeconfig: PathBuf,
    /// API server URL from the machine's own namespace.
    pub server: String,
    /// API server URL from inside the lab.
    pub lab_server: String,
    /// CA that signed the API server's certificate.
    pub ca_file: PathBuf,
    /// Token of `admin` (group `system:masters`).
    pub admin_token: String,
    /// The API server's lab address (its advertise address).
    pub api_ip: String,
    /// The API server's secure port.
    pub api_port: u16,
    /// Static-token identities without rights, for RBAC tests.
    pub users: Vec<User>,
    /// Pid of the `testenv up` supervisor.
    pub supervisor_pid: i32,
    /// Pids of the components (`etcd`, `kube-apiserver`, …) by name.
    #[serde(default)]
    pub pids: std::collections::BTreeMap<String, i32>,
    /// Node the fake kubelet binds pods to.
    pub node: String,
}

/// A static-token identity of the control plane.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// User name as RBAC sees it.
    pub name: String,
    /// Bearer token.
    pub token: String,
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Starts `testenv up` in namespace `netns` at `ip` and waits until it
    /// reports ready. The supervisor stops the control plane once process
    /// `watch_pid` is gone.
    pub(crate) fn start(
        binary: &Path,
        dir: &Path,
        netns: &str,
        ip: &str,
        watch_pid: i32,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        let env_file = dir.join("env.json");
        let _ = std::fs::remove_file(&env_file);
        let log_path = dir.join("up.log");
        let log = std::fs::File::create(&log_path).map_err(Error::io("create", &log_path))?;
        let log2 = log.try_clone().map_err(Error::io("clone", &log_path))?;
        let mut child = Command::new(binary)
            .arg("up")
            .arg("--dir")
            .arg(dir)
            .args([
                "--netns",
                netns,
                "--ip",
                ip,
                "--watch-pid",
                &watch_pid.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Error::Command {
                what: "start testenv up".into(),
                detail: e.to_string(),
            })?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if env_file.exists() {
                // The child is intentionally not waited for: it outlives this
                // call and is stopped by pid (see Lab::drop) or by its watch.
                return Self::load(&env_file);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Error::ControlPlane(format!(
                    "testenv up exited with {status}: {log}"
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(Error::Timeout(format!(
                    "control plane not ready after {START_TIMEOUT:?}; see {}",
                    dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reads an `env.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(Error::io("read", path))?;
        serde_json::from_slice(&data).map_err(|source| Error::Parse {
            path: path.into(),
            source,
        })
    }

    /// Freezes the API server (SIGSTOP), as Patroni's acceptance tests make the DCS go away:
    /// connections stay open and nothing answers. The returned guard resumes it (SIGCONT)
    /// when dropped, panics included, so a failed test never leaves the lab without its API.
    ///
    /// # Errors
    /// The API server's pid is unknown, or the signal cannot be sent.
    pub fn freeze_apiserver(&self) -> Result<FrozenApiServer> {
        let pid = self
            .pids
            .get("kube-apiserver")
            .copied()
            .filter(|p| netns::alive(*p))
            .ok_or_else(|| {
                Error::ControlPlane("the kube-apiserver pid is not known or not alive".into())
            })?;
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP)
            .map_err(|e| Error::ControlPlane(format!("SIGSTOP kube-apiserver: {e}")))?;
        Ok(FrozenApiServer { pid })
    }

    /// Whether the supervisor still runs.
    pub fn is_running(&self) -> bool {
        netns::alive(self.supervisor_pid)
    }

    /// Writes a kubeconfig like the admin one (CA, context `testenv`) but
    /// authenticating with `token`, for a process that must act as a
    /// restricted identity. `inside_lab` picks the server address that
    /// works from a host's namespace instead of the machine's.
    pub fn write_kubeconfig(&self, token: &str, path: &Path, inside_lab: bool) -> Result<()> {
        let base = if inside_lab {
            &self.lab_kubeconfig
        } else {
            &self.kubeconfig
        };
        let mut kc = Kubeconfig::read_from(base)
            .map_err(|e| Error::ControlPlane(format!("read kubeconfig: {e}")))?;
        for auth in &mut kc.auth_infos {
            if let Some(info) = auth.auth_info.as_mut() {
                info.token = Some(token.to_string().into());
            }
        }
        // JSON is YAML: every kubeconfig reader accepts it.
        let data = serde_json::to_vec_pretty(&kc).map_err(|source| Error::Parse {
            path: path.into(),
            source,
        })?;
        std::fs::write(path, data).map_err(Error::io("write", path))
    }

    /// A client with the admin identity, from the machine's own namespace.
    pub async fn admin_client(&self) -> Result<kube::Client> {
        self.client_with_token(&self.admin_token).await
    }

    /// A client with the identity of `token`, from the machine's own namespace.
    pub async fn client_with_token(&self, token: &str) -> Result<kube::Client> {
        let kc = Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| Error::ControlPlane(format!("read kubeconfig: {e}")))?;
        let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| Error::ControlPlane(format!("load kubeconfig: {e}")))?;
        config.auth_info.token = Some(token.to_string().into());
        kube::Client::try_from(config).map_err(Error::kube("build client"))
    }
}

/// A frozen API server; dropping this resumes it (see [`ControlPlane::freeze_apiserver`]).
#[derive(Debug)]
pub struct FrozenApiServer {
    pid: nix::unistd::Pid,
}

impl Drop for FrozenApiServer {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGCONT);
    }
}
