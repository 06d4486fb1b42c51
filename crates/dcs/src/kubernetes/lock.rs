//! Expiry of the leader lock, judged locally (the Kubernetes backend's own rule: etcd3 and
//! ZooKeeper expire keys on the server).
//!
//! Kubernetes has no server-side TTL. Like Patroni, a member remembers the
//! *leader record* (the lock annotations `leader`, `acquireTime`,
//! `renewTime`, `ttl`, `transitions`) and when, on its own clock, it last saw
//! that record change. The lock is held while `observed_at + ttl >= now`.
//! `renewTime` is never parsed, so clock skew between members is harmless.
//! Unlike Patroni (wall clock), the clock here is monotonic: the caller
//! passes readings of it, so this module has no clock of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use patroni_core::Tick;

/// The annotations that make up the leader record.
pub const LEADER_RECORD_KEYS: [&str; 5] =
    ["leader", "acquireTime", "renewTime", "ttl", "transitions"];

/// What a member remembers of the leader record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockObserver {
    record: BTreeMap<String, String>,
    observed_at: Option<Tick>,
}

/// The lock as judged at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// `holder` holds the lock until `expires_at` (on the caller's clock).
    Held {
        /// Lock holder.
        holder: String,
        /// When the lock expires unless the record changes again.
        expires_at: Tick,
    },
    /// Nobody holds the lock (released, expired, or never taken).
    Free,
}

/// The leader record: the [`LEADER_RECORD_KEYS`] of the leader object's annotations.
pub fn leader_record(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    LEADER_RECORD_KEYS
        .iter()
        .filter_map(|k| annotations.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

// === impl LockObserver ===

impl LockObserver {
    /// Feeds the leader object's annotations as seen `now`, and judges the
    /// lock. `default_ttl` applies when the record's `ttl` is missing, not a
    /// positive integer, or 0.
    pub fn observe(
        &mut self,
        annotations: &BTreeMap<String, String>,
        now: Tick,
        default_ttl: Duration,
    ) -> LockState {
        let record = leader_record(annotations);
        if self.observed_at.is_none() || record != self.record {
            self.record = record;
            self.observed_at = Some(now);
        }
        self.judge(now, default_ttl)
    }

    /// Judges the lock from what was observed last.
    pub fn judge(&self, now: Tick, default_ttl: Duration) -> LockState {
        let (Some(holder), Some(observed_at)) = (self.record.get("leader"), self.observed_at)
        else {
            return LockState::Free;
        };
        if holder.is_empty() {
            return LockState::Free;
        }
        let ttl = self
            .record
            .get("ttl")
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|t| *t > 0)
            .map(Duration::from_secs)
            .unwrap_or(default_ttl);
        let expires_at = observed_at + ttl;
        if expires_at >= now {
            LockState::Held {
                holder: holder.clone(),
                expires_at,
            }
        } else {
            LockState::Free
        }
    }

    /// The record as last observed (for `transitions`/`acquireTime` on acquire).
    pub fn record(&self) -> &BTreeMap<String, String> {
        &self.record
    }

    /// Whether any record was observed yet.
    pub fn has_observed(&self) -> bool {
        self.observed_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const TTL: Duration = Duration::from_secs(30);
    fn t(s: u64) -> Tick {
        Duration::from_secs(s)
    }

    /// A record that stops changing expires ttl after it was first seen,
    /// however old its renewTime claims to be.
    #[test]
    fn unchanged_record_expires_ttl_after_first_observation() {
        let mut o = LockObserver::default();
        let a = ann(&[
            ("leader", "m0"),
            ("renewTime", "2001-01-01T00:00:00+00:00"),
            ("ttl", "10"),
        ]);
        assert_eq!(
            o.observe(&a, t(100), TTL),
            LockState::Held {
                holder: "m0".into(),
                expires_at: t(110)
            }
        );
        assert_eq!(
            o.observe(&a, t(110), TTL),
            LockState::Held {
                holder: "m0".into(),
                expires_at: t(110)
            }
        );
        assert_eq!(o.observe(&a, t(111), TTL), LockState::Free);
    }

    /// Each renewal (a changed record) restarts the countdown.
    #[test]
    fn renewal_restarts_the_countdown() {
        let mut o = LockObserver::default();
        o.observe(
            &ann(&[("leader", "m0"), ("renewTime", "a"), ("ttl", "10")]),
            t(0),
            TTL,
        );
        let s = o.observe(
            &ann(&[("leader", "m0"), ("renewTime", "b"), ("ttl", "10")]),
            t(9),
            TTL,
        );
        assert_eq!(
            s,
            LockState::Held {
                holder: "m0".into(),
                expires_at: t(19)
            }
        );
    }

    /// Changes outside the record (optime, slots) do not extend the lock.
    #[test]
    fn optime_changes_do_not_extend_the_lock() {
        let mut o = LockObserver::default();
        o.observe(
            &ann(&[("leader", "m0"), ("ttl", "10"), ("optime", "1")]),
            t(0),
            TTL,
        );
        assert_eq!(
            o.observe(
                &ann(&[("leader", "m0"), ("ttl", "10"), ("optime", "2")]),
                t(11),
                TTL
            ),
            LockState::Free
        );
    }

    /// A ttl that is not a positive integer falls back to the local ttl.
    #[test]
    fn invalid_ttl_falls_back_to_the_configured_one() {
        for bad in ["30s", "0", "-5", ""] {
            let mut o = LockObserver::default();
            let s = o.observe(&ann(&[("leader", "m0"), ("ttl", bad)]), t(0), TTL);
            assert_eq!(
                s,
                LockState::Held {
                    holder: "m0".into(),
                    expires_at: t(30)
                },
                "ttl {bad:?}"
            );
        }
    }

    /// No `leader` annotation (released) means free at once.
    #[test]
    fn released_lock_is_free_immediately() {
        let mut o = LockObserver::default();
        o.observe(&ann(&[("leader", "m0"), ("ttl", "30")]), t(0), TTL);
        assert_eq!(
            o.observe(&ann(&[("ttl", "30"), ("transitions", "1")]), t(1), TTL),
            LockState::Free
        );
    }
}
