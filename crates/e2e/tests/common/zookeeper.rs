//! The ZooKeeper backend of the DCS contract (`contract.rs`): one cluster on a real
//! ZooKeeper server (Debian's package) started by the test on the machine's loopback, each
//! member reaching it through a TCP relay of its own that the test can make swallow
//! everything, which is how a ZooKeeper member goes silent: its client keeps the session,
//! and so the lock, alive by itself. Used by t34 (the contract, the znode layout) and t35
//! (Python Patroni's ZooKeeper class against ours).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use patroni_config::{DcsConfig, ZookeeperConfig};
use patroni_dcs::{Settings, ZookeeperDcs};
use patroni_testlab::ZookeeperServer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::contract::{Backend, Traits};

/// A TCP relay in front of the server for one member, which the test can make swallow
/// everything (connections kept open, no byte passed), as a network partition or a frozen
/// member would.
struct Relay {
    addr: String,
    silent: watch::Sender<bool>,
    task: JoinHandle<()>,
}

// === impl Relay ===

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address").to_string();
        let (silent, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(relay(inbound, upstream.clone(), rx.clone()));
            }
        });
        Relay { addr, silent, task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Passes bytes both ways until the relay goes silent, then holds both ends open forever.
async fn relay(mut inbound: TcpStream, upstream: String, mut silent: watch::Receiver<bool>) {
    let already_silent = *silent.borrow();
    if already_silent {
        return std::future::pending().await;
    }
    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
        return;
    };
    let cut = tokio::select! {
        r = silent.wait_for(|s| *s) => r.is_ok(),
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
    };
    if cut {
        let _held = (inbound, outbound);
        std::future::pending::<()>().await;
    }
}

/// One cluster on a real ZooKeeper server; each member reaches it through its own [`Relay`].
pub struct Zookeeper {
    /// The server (stopped on drop).
    pub server: ZookeeperServer,
    /// Cluster name.
    pub scope: String,
    relays: Mutex<BTreeMap<String, Relay>>,
}

// === impl Zookeeper ===

impl Zookeeper {
    /// Starts a fresh server on the machine's loopback.
    pub fn start(scope: &str) -> Zookeeper {
        Zookeeper {
            server: ZookeeperServer::start_local().expect("start ZooKeeper"),
            scope: scope.to_string(),
            relays: Mutex::new(BTreeMap::new()),
        }
    }

    /// The settings of member `name` reaching the server at `host_port`.
    pub fn settings(
        &self,
        name: &str,
        host_port: &str,
        ttl: Duration,
        retry: Duration,
    ) -> Settings {
        Settings {
            scope: self.scope.clone(),
            name: name.to_string(),
            dcs: DcsConfig::Zookeeper(ZookeeperConfig {
                namespace: "/service".into(),
                hosts: vec![host_port.to_string()],
                auth_data: Vec::new(),
            }),
            ttl,
            loop_wait: Duration::from_secs(2),
            retry_timeout: retry,
            kubeconfig: None,
            in_cluster: false,
        }
    }
}

impl Backend for Zookeeper {
    type D = ZookeeperDcs;
    const TRAITS: Traits = Traits {
        cached_views: false,
        renewal_wakes_others: false,
        lock_goes_with_session: true,
        config_modify_version_is_version: false,
        delete_cluster_removes_members: true,
    };

    async fn member(&self, name: &str, ttl: Duration, retry_timeout: Duration) -> ZookeeperDcs {
        let relay = Relay::start(self.server.host_port().to_string()).await;
        let settings = self.settings(name, &relay.addr, ttl, retry_timeout);
        self.relays
            .lock()
            .expect("relays")
            .insert(name.to_string(), relay);
        ZookeeperDcs::start(settings).await.expect("open a session")
    }

    fn silence(&self, name: &str, silent: bool) {
        let relays = self.relays.lock().expect("relays");
        let relay = relays.get(name).expect("a member of this backend");
        relay.silent.send_replace(silent);
    }
}
