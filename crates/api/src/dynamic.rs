//! The few settings of the dynamic (DCS) configuration the API decides with, read as
//! Patroni's `global_config` reads them.
//!
//! Patroni answers from the configuration of the cluster view it is looking at when that view
//! has a valid `/config`, and from the agent's last good configuration otherwise. The agent
//! passes the latter in [`HaSnapshot::global`](crate::HaSnapshot::global); [`GlobalFlags::resolve`]
//! picks between them.

use patroni_core::ha::SynchronousMode;
use patroni_core::{Cluster, SyncState};
use serde_json::{Map, Value};

use patroni_config::DynamicConfig;

/// Patroni's default `maximum_lag_on_failover` (1 MiB).
pub const DEFAULT_MAXIMUM_LAG_ON_FAILOVER: i64 = 1_048_576;

/// Patroni's default `loop_wait`, in seconds.
pub const DEFAULT_LOOP_WAIT: u64 = 10;

/// Settings of the dynamic configuration that change API answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalFlags {
    /// `pause`: maintenance mode.
    pub paused: bool,
    /// `synchronous_mode`, as written (see [`GlobalFlags::is_synchronous_mode`]).
    pub synchronous_mode: SynchronousMode,
    /// `standby_cluster` has a `host`, `port` or `restore_command`.
    pub standby_cluster: bool,
    /// `maximum_lag_on_failover` in bytes (default 1 MiB); the default readiness lag limit.
    pub maximum_lag_on_failover: i64,
    /// `loop_wait` in seconds (default 10); sets how long a switchover is waited for.
    pub loop_wait: u64,
    /// `failsafe_mode` is on (the `patroni_failsafe_mode_enabled` metric).
    pub failsafe_mode: bool,
}

// === impl GlobalFlags ===

impl Default for GlobalFlags {
    fn default() -> Self {
        Self {
            paused: false,
            synchronous_mode: SynchronousMode::Off,
            standby_cluster: false,
            maximum_lag_on_failover: DEFAULT_MAXIMUM_LAG_ON_FAILOVER,
            loop_wait: DEFAULT_LOOP_WAIT,
            failsafe_mode: false,
        }
    }
}

impl GlobalFlags {
    /// The flags of a parsed dynamic configuration (the agent's, parsed once when it changed).
    pub fn from_dynamic(d: &DynamicConfig) -> Self {
        let standby_cluster = d.standby_cluster.as_ref().is_some_and(|sc| {
            sc.host.as_deref().is_some_and(|h| !h.is_empty())
                || sc.port.is_some_and(|p| p != 0)
                || sc.restore_command.as_deref().is_some_and(|r| !r.is_empty())
        });
        Self {
            paused: d.pause.unwrap_or(false),
            synchronous_mode: d.synchronous_mode,
            standby_cluster,
            maximum_lag_on_failover: i64::try_from(d.maximum_lag_on_failover).unwrap_or(i64::MAX),
            loop_wait: u64::from(d.loop_wait),
            failsafe_mode: d.failsafe_mode,
        }
    }

    /// Reads the flags from a `/config` document with the configuration's one parser
    /// ([`DynamicConfig::from_value`]); missing or unparsable values take Patroni's defaults.
    pub fn from_data(data: &Map<String, Value>) -> Self {
        let (d, _problems) = DynamicConfig::from_value(&Value::Object(data.clone()));
        Self::from_dynamic(&d)
    }

    /// The flags of `cluster`'s `/config`, if it holds a valid one (`modify_version` set).
    pub fn from_cluster(cluster: &Cluster) -> Option<Self> {
        let config = cluster.config.as_ref()?;
        config.modify_version.as_ref()?;
        Some(Self::from_data(&config.data))
    }

    /// Patroni's `global_config.from_cluster(cluster)`: the view's configuration when valid,
    /// else `fallback` (the agent's last good configuration).
    pub fn resolve(cluster: Option<&Cluster>, fallback: &GlobalFlags) -> Self {
        cluster
            .and_then(Self::from_cluster)
            .unwrap_or_else(|| fallback.clone())
    }

    /// Synchronous replication (on or quorum) is in effect; never in a standby cluster.
    pub fn is_synchronous_mode(&self) -> bool {
        self.synchronous_mode != SynchronousMode::Off && !self.standby_cluster
    }

    /// Quorum commit is requested.
    pub fn is_quorum_commit_mode(&self) -> bool {
        self.synchronous_mode == SynchronousMode::Quorum
    }
}

/// Whether `name` is listed in the `/sync` state (case-insensitively, as PostgreSQL compares
/// `synchronous_standby_names`). An empty state (no leader) matches nobody.
pub(crate) fn sync_matches(sync: &SyncState, name: &str) -> bool {
    sync.leader.as_deref().is_some_and(|l| !l.is_empty())
        && sync
            .sync_standby
            .iter()
            .any(|s| s.to_lowercase() == name.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    /// Patroni's spellings of each setting are understood.
    #[test]
    fn reads_patroni_spellings() {
        let f = GlobalFlags::from_data(&data(json!({
            "pause": "on", "synchronous_mode": "Quorum", "maximum_lag_on_failover": "100",
            "loop_wait": 5
        })));
        assert!(f.paused);
        assert!(f.is_synchronous_mode() && f.is_quorum_commit_mode());
        assert_eq!(f.maximum_lag_on_failover, 100);
        assert_eq!(f.loop_wait, 5);
        let f = GlobalFlags::from_data(&data(json!({"synchronous_mode": true})));
        assert_eq!(f.synchronous_mode, SynchronousMode::On);
        assert_eq!(
            f,
            GlobalFlags {
                synchronous_mode: SynchronousMode::On,
                ..Default::default()
            }
        );
    }

    /// A standby cluster never runs synchronous replication.
    #[test]
    fn standby_cluster_disables_synchronous_mode() {
        let f = GlobalFlags::from_data(&data(json!({
            "synchronous_mode": "on", "standby_cluster": {"host": "10.0.0.1", "port": 5432}
        })));
        assert!(f.standby_cluster);
        assert!(!f.is_synchronous_mode());
        let f = GlobalFlags::from_data(&data(json!({"standby_cluster": {"host": ""}})));
        assert!(!f.standby_cluster);
    }

    /// The sync state matches its standbys case-insensitively, and nobody when it has no leader.
    #[test]
    fn sync_state_matches_case_insensitively() {
        let mut sync = SyncState {
            leader: Some("a".into()),
            sync_standby: vec!["Pg-1".into()],
            ..Default::default()
        };
        assert!(sync_matches(&sync, "pg-1"));
        assert!(!sync_matches(&sync, "a"));
        sync.leader = None;
        assert!(!sync_matches(&sync, "pg-1"));
    }
}
