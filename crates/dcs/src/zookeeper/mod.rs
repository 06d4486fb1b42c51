//! The ZooKeeper DCS, with Patroni 4's exact znode layout (`patroni/dcs/zookeeper.py`).
//!
//! Every znode of cluster `scope` lives under `/<namespace>/<scope>/` (default namespace
//! `/service`): `leader` and `members/<name>` are ephemeral, bound to the member's session
//! (whose timeout is `ttl`), so the server itself drops the lock of a member that stopped
//! talking to it; `initialize`, `config`, `history`, `sync`, `failover`, `status` and
//! `failsafe` are persistent, and conditional writes compare the znode `version`.
//!
//! The lock: taking it is creating the ephemeral `leader` znode (only one create can win);
//! renewing it is keeping the session alive, and each renewal checks the znode still names
//! this member and belongs to this member's current session (Patroni's `_update_leader`: a
//! znode of an older session of ours is replaced). Releasing it deletes the znode.
//!
//! Every [`get_cluster`](crate::Dcs::get_cluster) reads the znodes from the server (no
//! cache), so a lock reported free was free at a read made during the call.
//!
//! Module map: `session` (the session, retries, watches), `view` (reading and writing
//! Patroni's values, pure), `dcs_impl` (the [`Dcs`](crate::Dcs) operations).

mod dcs_impl;
mod session;
pub mod view;

use std::sync::Mutex;
use std::time::Duration;

use patroni_config::{DcsConfig, ZookeeperConfig};
use patroni_core::Cluster;
use zookeeper_client as zk;

use self::session::{Answer, SessionSpec, Sessions};
use self::view::{Node, NodeStat, RawCluster};
use crate::{Error, Result, Settings};

/// Extra time non-holders wait in `watch`, so their cycles trail the leader's (Patroni).
const NON_LEADER_EXTRA_WAIT: Duration = Duration::from_millis(500);

/// Loop timings that dynamic configuration can change at run time.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Session timeout.
    ttl: Duration,
    /// Tunes how soon a silent connection is judged lost.
    loop_wait: Duration,
    /// Budget of one operation, retries included.
    retry_timeout: Duration,
}

/// The znode paths of one cluster.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `/<namespace>/<scope>`.
    pub base: String,
    /// This member's name.
    name: String,
}

// === impl Paths ===

impl Paths {
    /// `base/<key>`.
    pub fn key(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    /// `base/members`.
    pub fn members(&self) -> String {
        self.key("members")
    }

    /// `base/members/<name>` of this member.
    pub fn member(&self) -> String {
        format!("{}/{}", self.members(), self.name)
    }
}

/// What this member last read or wrote, for the writes that depend on it.
#[derive(Debug, Default)]
struct Seen {
    /// The last view built; written by `get_cluster`.
    cluster: Option<Cluster>,
    /// Session owning this member's znode in the last view.
    member_owner: Option<i64>,
    /// This member's data as last written by this process (Patroni skips equal writes).
    member_data: Option<String>,
    /// The `/status` value as last read or written.
    status: Option<String>,
    /// The `/failsafe` value as last read or written.
    failsafe: Option<String>,
    /// Warnings of the last view, to log each problem once.
    warnings: Vec<String>,
}

/// The ZooKeeper DCS of one member (or of `patronictl`).
pub struct ZookeeperDcs {
    name: String,
    paths: Paths,
    timing: Mutex<Timing>,
    /// Boxed, as `seen`.
    sessions: Box<Sessions>,
    /// Boxed: the view is large, and [`AnyDcs`](crate::AnyDcs) holds this by value.
    seen: Box<Mutex<Seen>>,
}

// === impl ZookeeperDcs ===

impl ZookeeperDcs {
    /// The DCS of the `zookeeper` section of `settings.dcs`. The session is opened by the
    /// first operation, so an agent starts while ZooKeeper is down and sees "DCS not
    /// accessible" in its loop (Patroni's kazoo `start()` would give up after 15 s instead).
    ///
    /// # Errors
    /// [`Error::Config`] when `settings.dcs` is not ZooKeeper.
    pub async fn start(settings: Settings) -> Result<Self> {
        let DcsConfig::Zookeeper(z) = &settings.dcs else {
            return Err(Error::Config {
                what: format!(
                    "the ZooKeeper DCS cannot start with the {} section",
                    settings.dcs.kind()
                ),
                source: None,
            });
        };
        Ok(Self::new(z, &settings))
    }

    fn new(z: &ZookeeperConfig, settings: &Settings) -> Self {
        let paths = Paths {
            base: z.base_path(&settings.scope),
            name: settings.name.clone(),
        };
        let spec = SessionSpec {
            connect_string: z.connect_string(),
            auth_data: z.auth_data.clone(),
            watched: vec![paths.key("leader"), paths.key("config")],
        };
        ZookeeperDcs {
            name: settings.name.clone(),
            paths,
            timing: Mutex::new(Timing {
                ttl: settings.ttl,
                loop_wait: settings.loop_wait,
                retry_timeout: settings.retry_timeout,
            }),
            sessions: Box::new(Sessions::new(spec)),
            seen: Box::new(Mutex::new(Seen::default())),
        }
    }

    /// The znode paths of this cluster.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The id of the session in use, if one is open (the `ephemeralOwner` of this member's
    /// znodes).
    pub async fn session_id(&self) -> Option<i64> {
        self.sessions.session_id().await
    }

    fn timing(&self) -> Timing {
        *self.timing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Sessions::run`] with the current timings.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<Answer<T>>
    where
        F: FnMut(zk::Client) -> Fut,
        Fut: std::future::Future<Output = Answer<T>>,
    {
        let t = self.timing();
        self.sessions
            .run(what, (t.ttl, t.loop_wait, t.retry_timeout), op)
            .await
    }

    /// Reads every znode of the cluster in one pass (requests pipelined on the session).
    async fn read_raw(&self) -> Result<Answer<RawCluster>> {
        let paths = self.paths.clone();
        self.run("read the cluster", move |client| {
            let paths = paths.clone();
            async move { read_raw(&client, &paths).await }
        })
        .await
    }

    async fn get_cluster_inner(&self) -> Result<Cluster> {
        let raw = self
            .read_raw()
            .await?
            .map_err(|e| session::refused("read the cluster", e))?;
        let view = view::build(&raw);
        let mut seen = self.seen();
        for w in view.warnings.iter().filter(|w| !seen.warnings.contains(w)) {
            tracing::warn!("unreadable cluster state, ignored: {w}");
        }
        seen.warnings = view.warnings;
        seen.member_owner = raw.members.get(&self.name).map(|n| n.stat.ephemeral_owner);
        seen.status = raw.status.map(|n| n.data);
        seen.failsafe = raw.failsafe.map(|n| n.data);
        seen.cluster = Some(view.cluster.clone());
        Ok(view.cluster)
    }

    fn set_timing_inner(&self, ttl: Duration, retry_timeout: Duration) {
        let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        if t.ttl != ttl {
            // The session timeout is fixed for the life of a session: the next operation
            // opens a new one (Patroni's `set_ttl` restarts the client).
            tracing::info!(old = ?t.ttl, new = ?ttl, "ttl changed: the next ZooKeeper session uses it");
        }
        t.ttl = ttl;
        t.retry_timeout = retry_timeout;
    }

    async fn watch_inner(&self, timeout: Duration) -> bool {
        let holder = self
            .seen()
            .cluster
            .as_ref()
            .and_then(|c| c.leader_name().map(String::from));
        let timeout = if holder.as_deref() == Some(self.name.as_str()) {
            timeout
        } else {
            timeout + NON_LEADER_EXTRA_WAIT
        };
        tokio::time::timeout(timeout, self.sessions.wake.notified())
            .await
            .is_ok()
    }
}

/// One znode, `None` when it does not exist.
async fn get(client: &zk::Client, path: &str) -> Answer<Option<Node>> {
    match client.get_data(path).await {
        Ok((data, stat)) => Ok(Some(Node {
            data: String::from_utf8_lossy(&data).into_owned(),
            stat: NodeStat {
                version: stat.version,
                czxid: stat.czxid,
                mzxid: stat.mzxid,
                ephemeral_owner: stat.ephemeral_owner,
            },
        })),
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Children of `path`; none when it does not exist.
async fn children(client: &zk::Client, path: &str) -> Answer<Vec<String>> {
    match client.list_children(path).await {
        Ok(c) => Ok(c),
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Patroni's loader: the children of the base path say which znodes to read.
async fn read_raw(client: &zk::Client, paths: &Paths) -> Answer<RawCluster> {
    let top = children(client, &paths.base).await?;
    let has = |k: &str| top.iter().any(|c| c == k);
    let read = |k: &str| {
        let path = paths.key(k);
        let wanted = has(k);
        async move {
            if wanted {
                get(client, &path).await
            } else {
                Ok(None)
            }
        }
    };
    let members = if has("members") {
        children(client, &paths.members()).await?
    } else {
        Vec::new()
    };
    let member_reads = futures::future::join_all(members.iter().map(|m| {
        let path = format!("{}/{m}", paths.members());
        async move { get(client, &path).await }
    }));
    let (initialize, config, history, sync, leader, status, legacy, failover, failsafe, nodes) = futures::join!(
        read("initialize"),
        read("config"),
        read("history"),
        read("sync"),
        read("leader"),
        read("status"),
        async {
            if has("status") || !has("optime") {
                Ok(None)
            } else {
                get(client, &paths.key("optime/leader")).await
            }
        },
        read("failover"),
        read("failsafe"),
        member_reads,
    );
    let mut raw = RawCluster {
        initialize: initialize?,
        config: config?,
        history: history?,
        sync: sync?,
        leader: leader?,
        status: status?,
        legacy_optime: legacy?,
        failover: failover?,
        failsafe: failsafe?,
        members: Default::default(),
    };
    for (name, node) in members.into_iter().zip(nodes) {
        if let Some(node) = node? {
            raw.members.insert(name, node);
        }
    }
    Ok(raw)
}
