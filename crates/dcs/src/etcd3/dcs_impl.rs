//! The [`Dcs`] trait for [`Etcd3Dcs`]: each operation as Patroni's `Etcd3` class does it, on
//! the writes of [`Inner`] below (a put or delete, unconditional or compare-and-set).

use std::time::Duration;

use etcd_client::{Compare, CompareOp, DeleteOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use patroni_core::{Cluster, MemberData, SyncState};

use super::keys;
use super::retry::{Retry, is_lease_gone};
use super::{Etcd3Dcs, Inner, lock};
use crate::Result;
use crate::dcs::{Dcs, FailoverRequest, LeaderStatusUpdate, written_sync_state};
use crate::encoding::compact_json;
use crate::values::{self, StatusValue};

/// The condition of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cond {
    /// None: write whatever is there.
    Always,
    /// Only if the key does not exist (`create_revision == 0`).
    Absent,
    /// Only if the key's `mod_revision` is this (0: absent).
    At(i64),
}

// === impl Cond ===

impl Cond {
    /// The transaction's compare on `key`; `None` for an unconditional write.
    fn compare(self, key: &str) -> Option<Compare> {
        match self {
            Cond::Always => None,
            Cond::Absent => Some(Compare::create_revision(key, CompareOp::Equal, 0)),
            Cond::At(rev) => Some(Compare::mod_revision(key, CompareOp::Equal, rev)),
        }
    }
}

/// `version` as a `mod_revision` condition: none → [`Cond::Always`]; `None` when it is not a
/// revision (no key can be at it, so the write is refused).
fn at_version(version: Option<&str>) -> Option<Cond> {
    match version {
        None => Some(Cond::Always),
        Some(v) => v.trim().parse().ok().map(Cond::At),
    }
}

// === impl Inner (writes) ===

impl Inner {
    /// Puts `value` at `key` (bound to `lease` if given) when `cond` holds: the revision
    /// written, `None` when the condition failed.
    async fn put(
        &self,
        retry: &Retry,
        what: &str,
        key: &str,
        value: &str,
        lease: Option<i64>,
        cond: Cond,
    ) -> Result<Option<i64>> {
        let mut options = PutOptions::new();
        if let Some(id) = lease {
            options = options.with_lease(id);
        }
        let compare = cond.compare(key);
        let client = &self.client;
        retry
            .run(what, || {
                let mut kv = client.kv_client();
                let options = options.clone();
                let compare = compare.clone();
                async move {
                    let Some(compare) = compare else {
                        let r = kv.put(key, value, Some(options)).await?;
                        return Ok(Some(r.header().map_or(0, |h| h.revision())));
                    };
                    let txn = Txn::new().when(vec![compare]).and_then(vec![TxnOp::put(
                        key,
                        value,
                        Some(options),
                    )]);
                    let r = kv.txn(txn).await?;
                    Ok(r.succeeded()
                        .then(|| r.header().map_or(0, |h| h.revision())))
                }
            })
            .await
    }

    /// Deletes `key` (`prefix`: every key under it) when `cond` holds; false when it failed.
    async fn delete(&self, what: &str, key: &str, prefix: bool, cond: Cond) -> Result<bool> {
        let options = prefix.then(|| DeleteOptions::new().with_prefix());
        let compare = cond.compare(key);
        let client = &self.client;
        self.retry()
            .run(what, || {
                let mut kv = client.kv_client();
                let options = options.clone();
                let compare = compare.clone();
                async move {
                    let Some(compare) = compare else {
                        kv.delete(key, options).await?;
                        return Ok(true);
                    };
                    let txn = Txn::new()
                        .when(vec![compare])
                        .and_then(vec![TxnOp::delete(key, options)]);
                    Ok(kv.txn(txn).await?.succeeded())
                }
            })
            .await
    }

    /// Puts the leader key under `lease` if it still names this member, or creates it if it is
    /// absent (Patroni's `_update_leader` transaction); whether either happened.
    async fn rebind_leader(&self, retry: &Retry, lease: i64) -> Result<bool> {
        let key = self.keys.key(keys::LEADER);
        let name = self.name.as_str();
        let client = &self.client;
        retry
            .run("renew the leader key", || {
                let mut kv = client.kv_client();
                let key = key.clone();
                async move {
                    let put = || {
                        TxnOp::put(
                            key.as_str(),
                            name,
                            Some(PutOptions::new().with_lease(lease)),
                        )
                    };
                    let create = Txn::new()
                        .when(vec![Compare::create_revision(
                            key.as_str(),
                            CompareOp::Equal,
                            0,
                        )])
                        .and_then(vec![put()]);
                    let txn = Txn::new()
                        .when(vec![Compare::value(key.as_str(), CompareOp::Equal, name)])
                        .and_then(vec![put()])
                        .or_else(vec![TxnOp::txn(create)]);
                    let r = kv.txn(txn).await?;
                    let nested = r
                        .op_responses()
                        .into_iter()
                        .any(|op| matches!(op, TxnOpResponse::Txn(t) if t.succeeded()));
                    Ok(r.succeeded() || nested)
                }
            })
            .await
    }

    /// Writes `/status` if it differs from the last one written (Patroni's `write_status`);
    /// a failure is logged, never the caller's (the lock write already happened).
    async fn write_status(&self, value: StatusValue) {
        if lock(&self.last_status).as_ref() == Some(&value) {
            return;
        }
        let key = self.keys.key(keys::STATUS);
        let text = value.encode();
        match self
            .put(
                &self.retry(),
                "write the status",
                &key,
                &text,
                None,
                Cond::Always,
            )
            .await
        {
            Ok(_) => *lock(&self.last_status) = Some(value),
            Err(e) => tracing::warn!("failed to {e:#}"),
        }
    }

    /// Writes `/failsafe` if it differs from the last one written.
    async fn write_failsafe(&self, topology: &std::collections::BTreeMap<String, String>) {
        if lock(&self.last_failsafe).as_ref() == Some(topology) {
            return;
        }
        let key = self.keys.key(keys::FAILSAFE);
        let text = compact_json(topology);
        match self
            .put(
                &self.retry(),
                "write the failsafe topology",
                &key,
                &text,
                None,
                Cond::Always,
            )
            .await
        {
            Ok(_) => *lock(&self.last_failsafe) = Some(topology.clone()),
            Err(e) => tracing::warn!("failed to {e:#}"),
        }
    }

    async fn attempt_to_acquire_leader(&self, seen: Option<&str>) -> Result<bool> {
        if let Some(version) = seen {
            // The view had a leader key, so a live holder: in etcd a lock is only ever free
            // by its key's deletion, which a later view shows as no leader at all.
            tracing::info!(version, "not racing from a view in which the lock was held");
            return Ok(false);
        }
        let retry = self.retry();
        let key = self.keys.key(keys::LEADER);
        let lease = self.lease.refresh(&self.client, &retry, false).await?.id;
        let what = "take the leader key";
        let taken = match self
            .put(&retry, what, &key, &self.name, Some(lease), Cond::Absent)
            .await
        {
            Err(e) if is_lease_gone(&e) => {
                tracing::error!(
                    "Our lease disappeared from Etcd. Will try to get a new one and retry attempt"
                );
                self.lease.forget().await;
                let lease = self.lease.refresh(&self.client, &retry, true).await?.id;
                self.put(&retry, what, &key, &self.name, Some(lease), Cond::Absent)
                    .await?
            }
            other => other?,
        };
        if taken.is_none() {
            tracing::info!("Could not take out TTL lock");
        }
        Ok(taken.is_some())
    }

    async fn update_leader(&self, status: &LeaderStatusUpdate) -> Result<bool> {
        let retry = self.retry();
        let lease = self.lease.refresh(&self.client, &retry, true).await?.id;
        let bound = lock(&self.last).as_ref().is_some_and(|v| {
            v.cluster.leader_name() == Some(self.name.as_str()) && v.leader_lease == Some(lease)
        });
        // Bound to our live lease, the key lives as long as the lease: the keepalive renewed it.
        let held = bound || self.rebind_leader(&retry, lease).await?;
        if !held {
            return Ok(false);
        }
        if let Some(optime) = status.last_lsn.filter(|l| *l > 0) {
            let value = StatusValue {
                optime,
                slots: status.slots.clone().filter(|s| !s.is_empty()),
                retain_slots: status.retain_slots.clone(),
            };
            self.write_status(value).await;
        }
        if let Some(topology) = &status.failsafe {
            self.write_failsafe(topology).await;
        }
        Ok(true)
    }

    async fn delete_leader(&self, last_lsn: Option<u64>) -> Result<bool> {
        if let Some(optime) = last_lsn.filter(|l| *l > 0) {
            let last = lock(&self.last_status).clone().unwrap_or_default();
            self.write_status(StatusValue { optime, ..last }).await;
        }
        let key = self.keys.key(keys::LEADER);
        let name = self.name.as_str();
        let client = &self.client;
        self.retry()
            .run("delete the leader key", || {
                let mut kv = client.kv_client();
                let key = key.clone();
                async move {
                    let txn = Txn::new()
                        .when(vec![Compare::value(key.as_str(), CompareOp::Equal, name)])
                        .and_then(vec![TxnOp::delete(key.as_str(), None)]);
                    Ok(kv.txn(txn).await?.succeeded())
                }
            })
            .await
    }

    async fn touch_member(&self, data: &MemberData) -> Result<bool> {
        let retry = self.retry();
        let lease = self.lease.refresh(&self.client, &retry, false).await?.id;
        let published = lock(&self.last).as_ref().is_some_and(|v| {
            v.member_leases.get(&self.name) == Some(&lease)
                && v.cluster
                    .members
                    .iter()
                    .any(|m| m.name == self.name && &m.data == data)
        });
        let written = lock(&self.last_member).as_ref() == Some(&(lease, data.clone()));
        if published && written {
            return Ok(true);
        }
        let key = self.keys.member(&self.name);
        let value = compact_json(data);
        match self
            .put(
                &retry,
                "publish this member",
                &key,
                &value,
                Some(lease),
                Cond::Always,
            )
            .await
        {
            Ok(_) => {
                *lock(&self.last_member) = Some((lease, data.clone()));
                Ok(true)
            }
            Err(e) if is_lease_gone(&e) => {
                tracing::error!("Our lease disappeared from Etcd, can not \"touch_member\"");
                self.lease.forget().await;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn initialize(&self, sysid: &str) -> Result<bool> {
        // Patroni: `create_new=(cluster.initialize is None)`; the bootstrap race always creates.
        let known = lock(&self.last)
            .as_ref()
            .is_some_and(|v| v.cluster.initialize.is_some());
        let cond = if sysid.is_empty() || !known {
            Cond::Absent
        } else {
            Cond::Always
        };
        let key = self.keys.key(keys::INITIALIZE);
        let written = self
            .put(
                &self.retry(),
                "write the initialize key",
                &key,
                sysid,
                None,
                cond,
            )
            .await?;
        Ok(written.is_some())
    }

    async fn put_at(
        &self,
        what: &str,
        name: &str,
        value: &str,
        version: Option<&str>,
    ) -> Result<Option<i64>> {
        let Some(cond) = at_version(version) else {
            return Ok(None);
        };
        let key = self.keys.key(name);
        self.put(&self.retry(), what, &key, value, None, cond).await
    }
}

// === impl Dcs for Etcd3Dcs ===

impl Dcs for Etcd3Dcs {
    async fn get_cluster(&self) -> Result<Cluster> {
        self.inner.get_cluster().await
    }

    async fn attempt_to_acquire_leader(&self, seen: Option<&str>) -> Result<bool> {
        self.inner.attempt_to_acquire_leader(seen).await
    }

    async fn update_leader(&self, status: &LeaderStatusUpdate) -> Result<bool> {
        self.inner.update_leader(status).await
    }

    async fn delete_leader(&self, last_lsn: Option<u64>) -> Result<bool> {
        self.inner.delete_leader(last_lsn).await
    }

    async fn touch_member(&self, data: &MemberData) -> Result<bool> {
        self.inner.touch_member(data).await
    }

    async fn initialize(&self, sysid: &str) -> Result<bool> {
        self.inner.initialize(sysid).await
    }

    async fn cancel_initialization(&self) -> Result<bool> {
        let key = self.inner.keys.key(keys::INITIALIZE);
        self.inner
            .delete("delete the initialize key", &key, false, Cond::Always)
            .await
    }

    async fn set_config_value(&self, value: &str, version: Option<&str>) -> Result<bool> {
        let r = self
            .inner
            .put_at("write the configuration", keys::CONFIG, value, version);
        Ok(r.await?.is_some())
    }

    async fn set_history_value(&self, value: &str) -> Result<bool> {
        let r = self
            .inner
            .put_at("write the history", keys::HISTORY, value, None);
        Ok(r.await?.is_some())
    }

    async fn manual_failover(
        &self,
        request: FailoverRequest<'_>,
        version: Option<&str>,
    ) -> Result<bool> {
        let value = values::failover_value(request);
        let r = self
            .inner
            .put_at("write the failover key", keys::FAILOVER, &value, version);
        Ok(r.await?.is_some())
    }

    async fn write_sync_state(
        &self,
        leader: Option<&str>,
        sync_standby: &[String],
        quorum: Option<u32>,
        version: Option<&str>,
    ) -> Result<Option<SyncState>> {
        let value = values::sync_value(leader, sync_standby, quorum);
        let written = self
            .inner
            .put_at("write the sync state", keys::SYNC, &value, version)
            .await?;
        Ok(written.map(|rev| written_sync_state(rev.to_string(), leader, sync_standby, quorum)))
    }

    async fn delete_sync_state(&self, version: Option<&str>) -> Result<bool> {
        let Some(cond) = at_version(version) else {
            return Ok(false);
        };
        let key = self.inner.keys.key(keys::SYNC);
        self.inner
            .delete("delete the sync state", &key, false, cond)
            .await
    }

    async fn delete_cluster(&self) -> Result<bool> {
        let prefix = self.inner.keys.prefix().to_string();
        self.inner
            .delete("delete the cluster", &prefix, true, Cond::Always)
            .await
    }

    async fn watch(&self, timeout: Duration) -> bool {
        self.inner.watch(timeout).await
    }

    fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        self.inner.set_timing(ttl, retry_timeout);
    }
}
