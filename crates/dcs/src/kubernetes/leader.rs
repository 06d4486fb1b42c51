//! The leader lock: acquire, renew, release, each a compare-and-swap on the
//! leader object's resourceVersion, with Patroni's handling of 409 (read
//! the object back: an earlier attempt whose answer was lost may in fact
//! have succeeded).

use std::collections::BTreeMap;
use std::time::Duration;

use super::annotations::{self as ann, key};
use super::retry::Retry;
use super::writes::{Annotations, Method, Subsets};
use super::{KindObject, KubernetesDcs};
use crate::{Error, Result};

/// Minimum time left to read the object back after a 409.
const READ_BACK_MIN: Duration = Duration::from_secs(1);
/// Minimum time left to retry a renewal after reading back.
const RETRY_MIN: Duration = Duration::from_millis(500);

fn now_iso() -> String {
    ann::isoformat(jiff::Timestamp::now())
}

fn all_present(obj: &KindObject, wanted: &Annotations) -> bool {
    wanted
        .iter()
        .all(|(k, v)| obj.annotations.get(k) == v.as_ref())
}

// === impl KubernetesDcs: the lock ===

impl KubernetesDcs {
    /// Tries to take the leader lock, conditionally on the leader object still being at
    /// `seen`: the resourceVersion of the leader object in the view the decision to race
    /// was made from (`None`: the view had no leader object, so the write is a create).
    /// `transitions` counts +1 when the lock changes hands (including after a release);
    /// re-taking one's own lock keeps the count and `acquireTime`.
    ///
    /// # Guarantees
    /// Nothing is written when the object moved past `seen` with a different leader record
    /// (another member renewed or took the lock since): a decision made from an old view,
    /// e.g. after this process was suspended, can never overwrite a newer lock (issue #11).
    /// A newer version whose record is unchanged (only `optime` or slots moved) is a safe
    /// base for the compare-and-swap.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the API cannot be reached within
    /// `retry_timeout` (a DCS error); a refused write is `Ok(false)`.
    pub async fn attempt_to_acquire_leader(&self, seen: Option<&str>) -> Result<bool> {
        let inner = &self.inner;
        let timing = inner.timing();
        let now = now_iso();
        let record = match seen {
            None => BTreeMap::new(),
            Some(v) => {
                let track = inner.lock.lock().unwrap_or_else(|e| e.into_inner());
                match track.record_at(v) {
                    Some(r) => r.clone(),
                    None => {
                        tracing::info!(
                            version = v,
                            "not taking the leader lock: the view it was decided from is gone"
                        );
                        return Ok(false);
                    }
                }
            }
        };
        let mut version = seen.map(str::to_string);
        let mut a = Annotations::from([
            (key::LEADER.to_string(), Some(inner.name.clone())),
            (key::TTL.to_string(), Some(timing.ttl.as_secs().to_string())),
            (key::RENEW_TIME.to_string(), Some(now.clone())),
            (key::ACQUIRE_TIME.to_string(), Some(now.clone())),
            (key::TRANSITIONS.to_string(), Some("0".to_string())),
        ]);
        if !record.is_empty() {
            let mut transitions = record
                .get(key::TRANSITIONS)
                .and_then(|t| ann::parse_int(t))
                .unwrap_or(0);
            if record.get(key::LEADER) != Some(&inner.name) {
                transitions += 1;
            } else {
                let acquired = record
                    .get(key::ACQUIRE_TIME)
                    .filter(|t| !t.is_empty())
                    .cloned()
                    .unwrap_or(now);
                a.insert(key::ACQUIRE_TIME.to_string(), Some(acquired));
            }
            a.insert(key::TRANSITIONS.to_string(), Some(transitions.to_string()));
        }
        // A newer cached copy whose lock record is the one decided from (only optime or
        // slots moved) is a safe base for the CAS.
        if let (Some(v), Some(cached)) = (&version, inner.kinds.get(&inner.names.leader()))
            && &cached.resource_version != v
            && super::lock::leader_record(&cached.annotations) == record
        {
            version = Some(cached.resource_version.clone());
        }
        let retry = Retry::new(timing.retry_timeout, &inner.k8s.retriable_http_codes);
        let name = inner.names.leader();
        let result = inner
            .patch_or_create(
                &name,
                &a,
                version.as_deref(),
                Method::Auto,
                Some(&retry),
                Subsets::Mine,
            )
            .await;
        let ok = match result {
            Ok(_) => true,
            Err(e) if e.is_unreachable() => return Err(e),
            Err(Error::Conflict { .. }) if version.is_some() && retry.has(READ_BACK_MIN) => {
                match self.read_back(&retry).await? {
                    Some(obj) => {
                        Some(obj.resource_version.as_str()) != version.as_deref()
                            && all_present(&obj, &a)
                    }
                    None => false,
                }
            }
            Err(Error::Conflict { .. }) => false,
            Err(e) => {
                tracing::warn!("failed to {e:#}");
                false
            }
        };
        if !ok {
            tracing::info!("could not take out TTL lock");
        }
        Ok(ok)
    }

    /// Renews the lock held by this member, with the leader's status when
    /// `last_lsn` is given (`optime`, `slots`, `retain_slots`) and the
    /// failsafe topology when given. `Ok(false)`: the lock is lost.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the API cannot be reached within
    /// `retry_timeout`: the caller decides (demote, or failsafe).
    pub async fn update_leader(
        &self,
        last_lsn: Option<u64>,
        slots: Option<&BTreeMap<String, u64>>,
        retain_slots: Option<&[String]>,
        failsafe: Option<&BTreeMap<String, String>>,
    ) -> Result<bool> {
        let inner = &self.inner;
        let name = inner.names.leader();
        let cached = inner.kinds.get(&name);
        if let Some(c) = &cached
            && c.annotations.get(key::LEADER) != Some(&inner.name)
        {
            return Ok(false);
        }
        let timing = inner.timing();
        let now = now_iso();
        let record = inner
            .lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observer
            .record()
            .clone();
        let base = cached
            .as_ref()
            .map(|c| &c.annotations)
            .filter(|a| !a.is_empty())
            .unwrap_or(&record);
        let mut a = Annotations::from([
            (key::LEADER.to_string(), Some(inner.name.clone())),
            (key::TTL.to_string(), Some(timing.ttl.as_secs().to_string())),
            (key::RENEW_TIME.to_string(), Some(now.clone())),
            (
                key::ACQUIRE_TIME.to_string(),
                Some(
                    base.get(key::ACQUIRE_TIME)
                        .filter(|t| !t.is_empty())
                        .cloned()
                        .unwrap_or(now),
                ),
            ),
            (
                key::TRANSITIONS.to_string(),
                Some(
                    base.get(key::TRANSITIONS)
                        .filter(|t| !t.is_empty())
                        .cloned()
                        .unwrap_or_else(|| "0".into()),
                ),
            ),
        ]);
        if let Some(lsn) = last_lsn.filter(|l| *l > 0) {
            a.insert(key::OPTIME.to_string(), Some(lsn.to_string()));
            a.insert(
                key::SLOTS.to_string(),
                slots.filter(|s| !s.is_empty()).map(ann::compact_json),
            );
            a.insert(
                key::RETAIN_SLOTS.to_string(),
                retain_slots
                    .filter(|s| !s.is_empty())
                    .map(ann::python_default_json),
            );
        }
        if let Some(f) = failsafe {
            a.insert(
                key::FAILSAFE.to_string(),
                (!f.is_empty()).then(|| ann::compact_json(f)),
            );
        }
        let version = cached.map(|c| c.resource_version);
        // Since Patroni 4.1.1 a transient 403 must not demote the primary.
        let retry =
            Retry::new(timing.retry_timeout, &inner.k8s.retriable_http_codes).with_code(403);
        match inner
            .patch_or_create(
                &name,
                &a,
                version.as_deref(),
                Method::Auto,
                Some(&retry),
                Subsets::Mine,
            )
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) if e.is_unreachable() => return Err(e),
            Err(Error::Conflict { .. }) => tracing::warn!("concurrent update of {name}"),
            Err(e) => {
                tracing::error!("failed to {e:#}");
                return Ok(false);
            }
        }
        if !retry.has(READ_BACK_MIN) {
            return Ok(false);
        }
        let Some(obj) = self.read_back(&retry).await? else {
            return Ok(false);
        };
        if obj.annotations.get(key::LEADER) != Some(&inner.name)
            || Some(&obj.resource_version) == version.as_ref()
        {
            return Ok(false);
        }
        if all_present(&obj, &a) {
            return Ok(true);
        }
        if !retry.has(RETRY_MIN) {
            return Ok(false);
        }
        match inner
            .patch_or_create(
                &name,
                &a,
                Some(&obj.resource_version),
                Method::Auto,
                Some(&retry),
                Subsets::Mine,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_unreachable() => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// After a 409: reads the leader object straight from the API server
    /// (the cache may be behind) and stores it in the cache.
    async fn read_back(&self, retry: &Retry) -> Result<Option<KindObject>> {
        let inner = &self.inner;
        let name = inner.names.leader();
        let obj = retry
            .run("read the leader object", || inner.kinds_api.get_opt(&name))
            .await?
            .map(KindObject::from);
        if let Some(o) = &obj {
            inner.kinds.set(o.clone());
        }
        Ok(obj)
    }

    /// Releases the lock if this member holds it (voluntary: others may take
    /// it at once), recording `last_lsn` as `optime`. No retry.
    pub async fn delete_leader(&self, last_lsn: Option<u64>) -> Result<bool> {
        let inner = &self.inner;
        let name = inner.names.leader();
        let Some(cached) = inner
            .kinds
            .get(&name)
            .filter(|c| c.annotations.get(key::LEADER) == Some(&inner.name))
        else {
            return Ok(false);
        };
        let mut a = Annotations::from([(key::LEADER.to_string(), None)]);
        if let Some(lsn) = last_lsn.filter(|l| *l > 0) {
            a.insert(key::OPTIME.to_string(), Some(lsn.to_string()));
        }
        let result = inner
            .patch_or_create(
                &name,
                &a,
                Some(&cached.resource_version),
                Method::Patch,
                None,
                Subsets::Clear,
            )
            .await;
        inner.reset_cluster();
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                tracing::error!("failed to {e:#}");
                Ok(false)
            }
        }
    }

    /// Records the leader's WAL position at shutdown: unconditional, no retry.
    pub async fn write_leader_optime(&self, last_lsn: u64) -> Result<bool> {
        let inner = &self.inner;
        let a = Annotations::from([(key::OPTIME.to_string(), Some(last_lsn.to_string()))]);
        match inner
            .patch_or_create(
                &inner.names.leader(),
                &a,
                None,
                Method::Patch,
                None,
                Subsets::Keep,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                tracing::warn!("failed to {e:#}");
                Ok(false)
            }
        }
    }
}
