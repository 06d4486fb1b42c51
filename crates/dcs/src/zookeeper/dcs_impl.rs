//! The [`Dcs`] operations of [`ZookeeperDcs`], each as Patroni's `ZooKeeper` class does it.
//!
//! A store answer that means "no" (`NodeExists` on a create race, `BadVersion` on a
//! conditional write, `NoNode` where the key must exist) is `Ok(false)`; any other answer of
//! the server is logged and `Ok(false)` too (Patroni logs and returns `False`); no answer
//! within `retry_timeout` is [`Error::Unreachable`](crate::Error::Unreachable).

use std::time::Duration;

use patroni_core::{Cluster, MemberData, SyncState};
use zookeeper_client as zk;

use super::session::Answer;
use super::view::Node;
use super::{ZookeeperDcs, get};
use crate::dcs::{Dcs, FailoverRequest, LeaderStatusUpdate, written_sync_state};
use crate::values::{self, StatusValue};
use crate::{Result, encoding};

/// Ephemeral znodes (the lock, members): owned by the session.
const EPHEMERAL: zk::CreateOptions<'static> =
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
/// Persistent znodes (everything else).
const PERSISTENT: zk::CreateOptions<'static> =
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());

/// Creates `path` with `data`, creating missing parents (kazoo's `makepath=True`).
async fn create(
    client: &zk::Client,
    path: &str,
    data: &[u8],
    options: &zk::CreateOptions<'_>,
) -> Answer<()> {
    match client.create(path, data, options).await {
        Err(zk::Error::NoNode) => {
            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
            if !parent.is_empty() {
                client.mkdir(parent, &PERSISTENT).await?;
            }
            client.create(path, data, options).await.map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

/// Patroni's `_set_or_create`: sets `path` (conditionally on `version`), creating it when it
/// does not exist and no version was asked for. The new version, `None` when refused.
async fn set_or_create(
    client: &zk::Client,
    path: &str,
    value: &str,
    version: Option<i32>,
) -> Answer<Option<i32>> {
    match client.set_data(path, value.as_bytes(), version).await {
        Ok(stat) => Ok(Some(stat.version)),
        Err(zk::Error::BadVersion) => Ok(None),
        Err(zk::Error::NoNode) if version.is_some() => Ok(None),
        Err(zk::Error::NoNode) => match create(client, path, value.as_bytes(), &PERSISTENT).await {
            Ok(()) => Ok(Some(0)),
            Err(zk::Error::NodeExists) => Ok(None),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// A version as written in a view, `Err(())` when it is not one of ours.
fn parse_version(version: Option<&str>) -> std::result::Result<Option<i32>, ()> {
    version
        .map(|v| v.parse::<i32>().map_err(|_| ()))
        .transpose()
}

/// Every znode under `path` (itself included), deepest first.
async fn subtree(client: &zk::Client, path: &str) -> Answer<Vec<String>> {
    let mut all = vec![path.to_string()];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i].clone();
        match client.list_children(&parent).await {
            Ok(kids) => all.extend(kids.into_iter().map(|k| format!("{parent}/{k}"))),
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
        i += 1;
    }
    all.reverse();
    Ok(all)
}

/// What a renewal found.
enum Renewal {
    /// The znode names this member and belongs to its session.
    Held,
    /// The znode named this member but belonged to an older session: replaced.
    Recreated,
    /// No znode, or another member's.
    Lost(Option<String>),
}

// === impl ZookeeperDcs ===

impl ZookeeperDcs {
    /// Runs a write whose answer is `Some` on success, `None` when refused; a server error is
    /// logged and counts as refused.
    async fn write<T, F, Fut>(&self, what: &str, op: F) -> Result<Option<T>>
    where
        F: FnMut(zk::Client) -> Fut,
        Fut: std::future::Future<Output = Answer<Option<T>>>,
    {
        match self.run(what, op).await? {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::error!("failed to {what}: {e}");
                Ok(None)
            }
        }
    }

    /// [`set_or_create`] of `key`; the new version, `None` when refused.
    async fn set_key(&self, key: &str, value: &str, version: Option<&str>) -> Result<Option<i32>> {
        let Ok(version) = parse_version(version) else {
            return Ok(None);
        };
        let path = self.paths.key(key);
        let what = format!("write {path}");
        self.write(&what, |client| {
            let path = path.clone();
            async move { set_or_create(&client, &path, value, version).await }
        })
        .await
    }

    /// Writes `value` to `key` unless it is what was last read or written there.
    async fn write_if_changed(&self, key: &str, value: String, failsafe: bool) {
        let last = {
            let seen = self.seen();
            if failsafe {
                seen.failsafe.clone()
            } else {
                seen.status.clone()
            }
        };
        if last.as_deref() == Some(value.as_str()) {
            return;
        }
        match self.set_key(key, &value, None).await {
            Ok(Some(_)) => {
                let mut seen = self.seen();
                if failsafe {
                    seen.failsafe = Some(value);
                } else {
                    seen.status = Some(value);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("failed to {e:#}"),
        }
    }

    async fn renew(&self) -> Result<Renewal> {
        let path = self.paths.key("leader");
        let name = self.name.clone();
        let answer = self
            .run("renew the leader lock", |client| {
                let (path, name) = (path.clone(), name.clone());
                async move {
                    let node = get(&client, &path).await?;
                    let Some(Node { data, stat }) = node else {
                        return Ok(Renewal::Lost(None));
                    };
                    if data != name {
                        return Ok(Renewal::Lost(Some(data)));
                    }
                    if stat.ephemeral_owner == client.session_id().0 {
                        return Ok(Renewal::Held);
                    }
                    tracing::warn!("recreating the leader znode due to ownership mismatch");
                    match client.delete(&path, Some(stat.version)).await {
                        Ok(()) | Err(zk::Error::NoNode) => {}
                        Err(zk::Error::BadVersion) => return Ok(Renewal::Lost(None)),
                        Err(e) => return Err(e),
                    }
                    match create(&client, &path, name.as_bytes(), &EPHEMERAL).await {
                        Ok(()) => Ok(Renewal::Recreated),
                        Err(zk::Error::NodeExists) => Ok(Renewal::Lost(None)),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        Ok(answer.unwrap_or_else(|e| {
            tracing::error!("failed to renew the leader lock: {e}");
            Renewal::Lost(None)
        }))
    }
}

impl Dcs for ZookeeperDcs {
    async fn get_cluster(&self) -> Result<Cluster> {
        self.get_cluster_inner().await
    }

    /// Creating the ephemeral `leader` znode is the compare-and-swap: it fails whenever a
    /// leader znode exists, whichever view the caller decided from, so `seen` needs no check.
    async fn attempt_to_acquire_leader(&self, _seen: Option<&str>) -> Result<bool> {
        let path = self.paths.key("leader");
        let name = self.name.clone();
        let taken = self
            .write("create the leader znode", |client| {
                let (path, name) = (path.clone(), name.clone());
                async move {
                    match create(&client, &path, name.as_bytes(), &EPHEMERAL).await {
                        Ok(()) => Ok(Some(())),
                        // A retried create may find the znode its first try made.
                        Err(zk::Error::NodeExists) => Ok(get(&client, &path)
                            .await?
                            .filter(|n| {
                                n.data == name && n.stat.ephemeral_owner == client.session_id().0
                            })
                            .map(|_| ())),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        if taken.is_none() {
            tracing::info!("could not take out the leader lock");
        }
        Ok(taken.is_some())
    }

    async fn update_leader(&self, status: &LeaderStatusUpdate) -> Result<bool> {
        match self.renew().await? {
            Renewal::Held | Renewal::Recreated => {}
            Renewal::Lost(holder) => {
                tracing::warn!(
                    holder = holder.as_deref().unwrap_or(""),
                    "the leader lock is not ours"
                );
                return Ok(false);
            }
        }
        if let Some(lsn) = status.last_lsn.filter(|l| *l > 0) {
            let value = StatusValue {
                optime: lsn,
                slots: status.slots.clone(),
                retain_slots: status.retain_slots.clone(),
            }
            .encode();
            self.write_if_changed("status", value, false).await;
        }
        if let Some(topology) = &status.failsafe {
            self.write_if_changed("failsafe", encoding::compact_json(topology), true)
                .await;
        }
        Ok(true)
    }

    async fn delete_leader(&self, last_lsn: Option<u64>) -> Result<bool> {
        if let Some(lsn) = last_lsn.filter(|l| *l > 0) {
            // Patroni's `write_status({optime})`: slots and retain_slots carried over.
            let last = self
                .seen()
                .cluster
                .as_ref()
                .map(|c| c.status.clone())
                .unwrap_or_default();
            let value = StatusValue {
                optime: lsn,
                slots: last.slots,
                retain_slots: (!last.retain_slots.is_empty()).then_some(last.retain_slots),
            }
            .encode();
            self.write_if_changed("status", value, false).await;
        }
        let path = self.paths.key("leader");
        let name = self.name.clone();
        let deleted = self
            .write("delete the leader znode", |client| {
                let (path, name) = (path.clone(), name.clone());
                async move {
                    match get(&client, &path).await? {
                        Some(n) if n.data == name => {
                            match client.delete(&path, Some(n.stat.version)).await {
                                Ok(()) | Err(zk::Error::NoNode) => Ok(Some(())),
                                Err(zk::Error::BadVersion) => Ok(None),
                                Err(e) => Err(e),
                            }
                        }
                        _ => Ok(None),
                    }
                }
            })
            .await?;
        Ok(deleted.is_some())
    }

    async fn touch_member(&self, data: &MemberData) -> Result<bool> {
        let value = encoding::compact_json(data);
        let (owner, last) = {
            let seen = self.seen();
            (seen.member_owner, seen.member_data.clone())
        };
        let path = self.paths.member();
        let written = self
            .write("publish this member", |client| {
                let (path, value, last) = (path.clone(), value.clone(), last.clone());
                async move {
                    let session = client.session_id().0;
                    if owner == Some(session) {
                        if last.as_deref() == Some(value.as_str()) {
                            return Ok(Some(session));
                        }
                        match client.set_data(&path, value.as_bytes(), None).await {
                            Ok(_) => return Ok(Some(session)),
                            Err(zk::Error::NoNode) => {}
                            Err(e) => return Err(e),
                        }
                    } else if owner.is_some() {
                        tracing::warn!("recreating the member znode due to ownership mismatch");
                        match client.delete(&path, None).await {
                            Ok(()) | Err(zk::Error::NoNode) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    match create(&client, &path, value.as_bytes(), &EPHEMERAL).await {
                        Ok(()) => Ok(Some(session)),
                        Err(zk::Error::NodeExists) => client
                            .set_data(&path, value.as_bytes(), None)
                            .await
                            .map(|_| Some(session)),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        let mut seen = self.seen();
        match written {
            Some(session) => {
                seen.member_owner = Some(session);
                seen.member_data = Some(value);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn initialize(&self, sysid: &str) -> Result<bool> {
        if !sysid.is_empty() {
            return Ok(self.set_key("initialize", sysid, None).await?.is_some());
        }
        let path = self.paths.key("initialize");
        let won = self
            .write("create the initialize znode", |client| {
                let path = path.clone();
                async move {
                    match create(&client, &path, b"", &PERSISTENT).await {
                        Ok(()) => Ok(Some(())),
                        Err(zk::Error::NodeExists) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        Ok(won.is_some())
    }

    async fn cancel_initialization(&self) -> Result<bool> {
        let path = self.paths.key("initialize");
        let done = self
            .write("delete the initialize znode", |client| {
                let path = path.clone();
                async move {
                    match client.delete(&path, None).await {
                        Ok(()) | Err(zk::Error::NoNode) => Ok(Some(())),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        Ok(done.is_some())
    }

    async fn set_config_value(&self, value: &str, version: Option<&str>) -> Result<bool> {
        Ok(self.set_key("config", value, version).await?.is_some())
    }

    async fn set_history_value(&self, value: &str) -> Result<bool> {
        Ok(self.set_key("history", value, None).await?.is_some())
    }

    async fn manual_failover(
        &self,
        request: FailoverRequest<'_>,
        version: Option<&str>,
    ) -> Result<bool> {
        let value = values::failover_value(request);
        Ok(self.set_key("failover", &value, version).await?.is_some())
    }

    async fn write_sync_state(
        &self,
        leader: Option<&str>,
        sync_standby: &[String],
        quorum: Option<u32>,
        version: Option<&str>,
    ) -> Result<Option<SyncState>> {
        let value = values::sync_value(leader, sync_standby, quorum);
        Ok(self
            .set_key("sync", &value, version)
            .await?
            .map(|v| written_sync_state(v.to_string(), leader, sync_standby, quorum)))
    }

    async fn delete_sync_state(&self, version: Option<&str>) -> Result<bool> {
        Ok(self.set_key("sync", "{}", version).await?.is_some())
    }

    async fn delete_cluster(&self) -> Result<bool> {
        let base = self.paths.base.clone();
        let done = self
            .write("delete the cluster's znodes", |client| {
                let base = base.clone();
                async move {
                    for path in subtree(&client, &base).await? {
                        match client.delete(&path, None).await {
                            Ok(()) | Err(zk::Error::NoNode) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(Some(()))
                }
            })
            .await?;
        Ok(done.is_some())
    }

    async fn watch(&self, timeout: Duration) -> bool {
        self.watch_inner(timeout).await
    }

    fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        self.set_timing_inner(ttl, retry_timeout);
    }

    fn lease_limit(&self) -> Option<Duration> {
        self.sessions.negotiated_timeout()
    }
}
