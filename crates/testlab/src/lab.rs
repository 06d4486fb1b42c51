//! A lab: the bridge, the control plane and the hosts, and the Kubernetes
//! objects (namespaces, pods) tests put on it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Namespace, Pod, ServiceAccount};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};

use crate::host::HostInfo;
use crate::{ControlPlane, Error, Host, Result, netns, testenv_binary};

/// Environment variable naming the `lab.json` of a running lab that test
/// processes attach to instead of starting their own.
pub const LAB_ENV: &str = "PATRONI_LAB";

/// Annotation the fake kubelet reads to report a pod's IP (testenv/kubelet.go).
const POD_IP_ANNOTATION: &str = "testenv.patroni-rs.io/pod-ip";

/// The lab network: hosts get `10.213.x.y/16`. It exists only inside the
/// lab's namespaces; the machine's own namespace has no route to it.
const NET_PREFIX: &str = "10.213";
const NET_PREFIX_LEN: u8 = 16;
/// The control plane's address on the lab network.
const CONTROL_PLANE_IP: &str = "10.213.0.2";

/// How long a pod may take to be bound and reported Running/Ready.
const POD_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the serviceaccount controller may take to fill a new namespace.
const NAMESPACE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval while waiting for the control plane to act.
const POLL: Duration = Duration::from_millis(100);

/// What `lab.json` holds: enough for any process to attach to the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabInfo {
    /// Pid of the process that created the lab (part of every namespace name).
    pub owner_pid: i32,
    /// The lab's state directory.
    pub dir: PathBuf,
    /// Namespace holding the bridge `br0`.
    pub hub: String,
    /// Namespace the control plane runs in.
    pub controlplane_netns: String,
    /// The control plane.
    pub controlplane: ControlPlane,
    /// Hosts that outlive their creator (`cargo xtask lab up --members N`).
    pub hosts: Vec<HostInfo>,
    /// Kubernetes namespace of those hosts' pods.
    pub namespace: String,
    /// The real node, once started ([`Lab::start_node`]).
    #[serde(default)]
    pub node: Option<crate::NodeInfo>,
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    info: LabInfo,
    /// Whether dropping this handle tears the lab down.
    owned: bool,
    /// The real node a test started in this process's private lab ([`Lab::node`]).
    private_node: std::sync::Mutex<Option<crate::NodeInfo>>,
}

/// A pod to create for a host.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// Pod name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Service account (default `default`).
    pub service_account: Option<String>,
}

/// A Kubernetes namespace of one test, with an admin client for it.
#[derive(Clone)]
pub struct TestNamespace {
    /// The namespace's name, unique in the lab.
    pub name: String,
    /// Admin client.
    pub client: kube::Client,
}

static SHARED: OnceLock<Lab> = OnceLock::new();
static NAMESPACE_SEQ: AtomicU32 = AtomicU32::new(0);

// === impl Lab ===

impl Lab {
    /// Starts a lab in `dir`: sweeps leftovers of dead labs, creates the
    /// bridge and the control plane's namespace, and starts the control
    /// plane. The supervisor stops it when `watch_pid` exits (0: never).
    ///
    /// # Errors
    /// Not root, `ip` failed, the Go build failed, or the control plane did
    /// not come up (its logs are under `dir/controlplane/logs`).
    pub fn start(dir: &Path, watch_pid: i32) -> Result<Self> {
        let swept = netns::sweep_stale();
        if !swept.is_empty() {
            tracing::info!(?swept, "removed namespaces of dead labs");
        }
        let binary = testenv_binary()?;
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        // A new lab starts from nothing: no etcd data, no host counter.
        for stale in ["controlplane", "hosts.seq", "lab.json"] {
            let path = dir.join(stale);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Error::io("remove", path)(e));
            }
        }
        let dir = dir.canonicalize().map_err(Error::io("resolve", dir))?;
        let owner = std::process::id() as i32;
        let hub = format!("{}{owner}-hub", netns::PREFIX);
        let cp_netns = format!("{}{owner}-cp", netns::PREFIX);
        let mut lab = Lab {
            info: LabInfo {
                owner_pid: owner,
                dir: dir.clone(),
                hub: hub.clone(),
                controlplane_netns: cp_netns.clone(),
                controlplane: placeholder_controlplane(),
                hosts: Vec::new(),
                namespace: "default".into(),
                node: None,
            },
            owned: true,
            private_node: std::sync::Mutex::new(None),
        };
        netns::create(&hub)?;
        netns::ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        netns::ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        let cp = Host::create(
            HostInfo {
                name: "controlplane".into(),
                netns: cp_netns.clone(),
                ip: CONTROL_PLANE_IP.into(),
                hub: hub.clone(),
                link: "cp".into(),
            },
            NET_PREFIX_LEN,
        )?
        .keep();
        lab.info.controlplane = ControlPlane::start(
            &binary,
            &dir.join("controlplane"),
            &cp.netns,
            &cp.ip,
            watch_pid,
        )?;
        lab.save()?;
        Ok(lab)
    }

    /// Reads the `lab.json` at `path` and takes ownership of that lab:
    /// dropping the handle stops it (`cargo xtask lab down`).
    pub fn open(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(Error::io("read", path))?;
        let info: LabInfo = serde_json::from_slice(&data).map_err(|source| Error::Parse {
            path: path.into(),
            source,
        })?;
        Ok(Lab {
            info,
            owned: true,
            private_node: std::sync::Mutex::new(None),
        })
    }

    /// Attaches to the running lab described by `lab.json` at `path`,
    /// without owning it.
    pub fn attach(path: &Path) -> Result<Self> {
        let info = Lab::open(path)?.detach();
        if !info.controlplane.is_running() {
            return Err(Error::ControlPlane(format!(
                "the lab at {} is not running (supervisor pid {} is gone)",
                path.display(),
                info.controlplane.supervisor_pid
            )));
        }
        Ok(Lab {
            info,
            owned: false,
            private_node: std::sync::Mutex::new(None),
        })
    }

    /// The lab of this test process: the one named by [`LAB_ENV`], or else
    /// a private lab started on first use that dies with the process.
    ///
    /// # Panics
    /// If the lab cannot be started or attached: a test cannot run without it.
    pub fn shared() -> &'static Lab {
        SHARED.get_or_init(|| {
            let result = match std::env::var_os(LAB_ENV) {
                Some(path) => Lab::attach(Path::new(&path)),
                None => {
                    let dir =
                        std::env::temp_dir().join(format!("patroni-lab-{}", std::process::id()));
                    Lab::start(&dir, std::process::id() as i32)
                }
            };
            match result {
                Ok(lab) => lab,
                Err(e) => panic!("the test lab is not available: {e}"),
            }
        })
    }

    /// What identifies the lab.
    pub fn info(&self) -> &LabInfo {
        &self.info
    }

    /// The control plane.
    pub fn controlplane(&self) -> &ControlPlane {
        &self.info.controlplane
    }

    /// Path of `lab.json`.
    pub fn info_path(&self) -> PathBuf {
        self.info.dir.join("lab.json")
    }

    /// Writes `lab.json`.
    pub fn save(&self) -> Result<()> {
        let path = self.info_path();
        let tmp = path.with_extension("json.tmp");
        let data = serde_json::to_vec_pretty(&self.info).map_err(|source| Error::Parse {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&tmp, data).map_err(Error::io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(Error::io("rename", &tmp))
    }

    /// Records hosts that outlive this handle, for `lab exec` and `lab down`.
    pub fn remember_hosts(&mut self, hosts: Vec<HostInfo>, namespace: &str) -> Result<()> {
        self.info.hosts.extend(hosts);
        self.info.namespace = namespace.to_string();
        self.save()
    }

    /// Creates a fresh host named `name` on the lab network. Its index (and
    /// so its address) comes from a counter shared by every process
    /// attached to the lab.
    pub fn host(&self, name: &str) -> Result<Host> {
        let index = self.next_host_index()?;
        let info = HostInfo {
            name: name.to_string(),
            netns: format!("{}{}-h{index}", netns::PREFIX, self.info.owner_pid),
            ip: format!("{NET_PREFIX}.{}.{}", 1 + index / 250, 1 + index % 250),
            hub: self.info.hub.clone(),
            link: format!("h{index}"),
        };
        Host::create(info, NET_PREFIX_LEN)
    }

    fn next_host_index(&self) -> Result<u32> {
        let path = self.info.dir.join("hosts.seq");
        let mut f = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        f.lock().map_err(Error::io("lock", &path))?;
        let mut s = String::new();
        f.read_to_string(&mut s).map_err(Error::io("read", &path))?;
        let index: u32 = s.trim().parse().unwrap_or(0);
        if index >= 250 * 250 {
            return Err(Error::ControlPlane(
                "the lab ran out of host addresses".into(),
            ));
        }
        f.set_len(0).map_err(Error::io("truncate", &path))?;
        f.rewind().map_err(Error::io("rewind", &path))?;
        write!(f, "{}", index + 1).map_err(Error::io("write", &path))?;
        Ok(index)
    }

    /// Creates a Kubernetes namespace unique to this test (`prefix-<pid>-<n>`)
    /// and waits until pods can be created in it.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let client = self.controlplane().admin_client().await?;
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NAMESPACE_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        create_namespace(&client, &name).await?;
        Ok(TestNamespace { name, client })
    }

    /// Creates a pod for `host` in `namespace` and waits until the fake
    /// kubelet reports it Running and Ready at the host's address.
    pub async fn pod(
        &self,
        client: &kube::Client,
        namespace: &str,
        host: &Host,
        spec: PodSpec,
    ) -> Result<Pod> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(spec.name.clone()),
                labels: Some(spec.labels),
                annotations: Some(BTreeMap::from([(
                    POD_IP_ANNOTATION.to_string(),
                    host.ip().to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                containers: vec![Container {
                    name: "postgres".into(),
                    image: Some("patroni-rs/member:lab".into()),
                    ..Default::default()
                }],
                service_account_name: spec.service_account,
                // Bound to the fake kubelet's Node at once: kube-scheduler, which runs with
                // the real node, must never race it for the lab's own pods.
                node_name: Some(self.info.controlplane.node.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        pods.create(&PostParams::default(), &pod)
            .await
            .map_err(Error::kube(format!("create pod {namespace}/{}", spec.name)))?;
        wait_until(
            POD_READY_TIMEOUT,
            format!(
                "pod {namespace}/{} Running/Ready at {}",
                spec.name,
                host.ip()
            ),
            || async {
                let pod = pods.get(&spec.name).await.ok()?;
                pod_is_ready_at(&pod, host.ip()).then_some(pod)
            },
        )
        .await
    }

    /// Stops the lab: the supervisor (SIGTERM, then SIGKILL), then every
    /// namespace of the lab with whatever still runs in it.
    pub fn stop(&self) {
        // The node first: its supervisor removes pods, mounts and cgroups while
        // the API server and its namespace still exist.
        let private = self
            .private_node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(node) = self.info.node.as_ref().or(private.as_ref()) {
            stop_supervisor(node.supervisor_pid, Duration::from_secs(90));
        }
        let pid = nix::unistd::Pid::from_raw(self.info.controlplane.supervisor_pid);
        // When this process started the supervisor it is our child: reap it,
        // or it lingers as a zombie that still looks alive to kill(pid, 0).
        let gone = || {
            use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => false,
                Ok(_) => true,
                Err(_) => !netns::alive(pid.as_raw()),
            }
        };
        if !gone() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..300 {
                if gone() {
                    break;
                }
                std::thread::sleep(POLL);
            }
            if !gone() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        for name in netns::of_owner(self.info.owner_pid) {
            netns::destroy(&name);
        }
    }

    /// Starts the real node (see [`crate::node`]) unless it runs, waiting until
    /// it is Ready; it lives as long as the lab (or until `watch_pid` exits).
    ///
    /// # Errors
    /// A build failed or the node did not become Ready (its logs are under
    /// `<lab dir>/node/logs`).
    pub fn start_node(&mut self, watch_pid: i32) -> Result<crate::NodeInfo> {
        if let Some(node) = &self.info.node {
            return Ok(node.clone());
        }
        let node = self.make_node(watch_pid)?;
        self.info.node = Some(node.clone());
        self.save()?;
        Ok(node)
    }

    /// The real node: the one the lab was started with (`cargo xtask test`), or, in a
    /// private lab of this process, one started now and stopped with the lab.
    ///
    /// # Errors
    /// The shared lab of another process has no node, or starting one failed.
    pub fn node(&self) -> Result<crate::NodeInfo> {
        if let Some(node) = &self.info.node {
            return Ok(node.clone());
        }
        if !self.owned {
            return Err(Error::ControlPlane(
                "this lab has no real node (`cargo xtask test` and `cargo xtask lab up --node` start one)".into(),
            ));
        }
        let mut slot = self
            .private_node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(node) = slot.as_ref() {
            return Ok(node.clone());
        }
        let node = self.make_node(std::process::id() as i32)?;
        *slot = Some(node.clone());
        Ok(node)
    }

    fn make_node(&self, watch_pid: i32) -> Result<crate::NodeInfo> {
        let binary = testenv_binary()?;
        let netns_name = format!("{}{}-node", netns::PREFIX, self.info.owner_pid);
        Host::create(
            HostInfo {
                name: "node".into(),
                netns: netns_name.clone(),
                ip: crate::node::NODE_IP.into(),
                hub: self.info.hub.clone(),
                link: "node".into(),
            },
            NET_PREFIX_LEN,
        )?
        .keep();
        netns::run(
            "ip",
            &[
                "netns",
                "exec",
                &netns_name,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
                "net.bridge.bridge-nf-call-iptables=1",
            ],
        )?;
        // The API server reaches pods (webhooks, proxies) through the node.
        netns::ip(&[
            "-n",
            &self.info.controlplane_netns,
            "route",
            "replace",
            crate::node::POD_CIDR,
            "via",
            crate::node::NODE_IP,
        ])?;
        crate::node::start(
            &binary,
            &self.info.dir.join("node"),
            &netns_name,
            &self.info.controlplane.lab_kubeconfig,
            watch_pid,
        )
    }

    /// Hands the lab over to nobody: dropping this handle no longer stops it
    /// (`cargo xtask lab up` leaves it running for `lab down`).
    pub fn detach(mut self) -> LabInfo {
        self.owned = false;
        self.info.clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            self.stop();
        }
    }
}

/// SIGTERM to a supervisor, SIGKILL after `grace`; reaps it when it is our child.
fn stop_supervisor(pid: i32, grace: Duration) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let pid = nix::unistd::Pid::from_raw(pid);
    let gone = || match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => false,
        Ok(_) => true,
        Err(_) => !netns::alive(pid.as_raw()),
    };
    if gone() {
        return;
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if gone() {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
}

fn placeholder_controlplane() -> ControlPlane {
    ControlPlane {
        version: String::new(),
        kubeconfig: PathBuf::new(),
        lab_kubeconfig: PathBuf::new(),
        server: String::new(),
        lab_server: String::new(),
        ca_file: PathBuf::new(),
        admin_token: String::new(),
        api_ip: String::new(),
        api_port: 0,
        users: Vec::new(),
        supervisor_pid: 0,
        pids: Default::default(),
        node: String::new(),
    }
}

/// Creates namespace `name` and waits for its `default` service account
/// (pods are refused until the serviceaccount controller made it).
pub(crate) async fn create_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(Error::kube(format!("create namespace {name}"))(e)),
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait_until(
        NAMESPACE_READY_TIMEOUT,
        format!("service account {name}/default"),
        || async { sas.get_opt("default").await.ok().flatten().map(|_| ()) },
    )
    .await
}

fn pod_is_ready_at(pod: &Pod, ip: &str) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status.pod_ip.as_deref() == Some(ip)
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Polls `check` until it yields a value or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: String, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Timeout(format!("{what} after {timeout:?}")));
        }
        tokio::time::sleep(POLL).await;
    }
}
