//! The settings the HA decision reads, already validated and adjusted.
//!
//! The runtime builds an [`HaConfig`] from the dynamic configuration (the DCS
//! `config` object, `patroni-config`'s `DynamicConfig`) and the local file
//! before each cycle; this module does no parsing. Patroni's timing rule
//! `loop_wait + 2 * retry_timeout <= ttl` is assumed to hold already: it is
//! what keeps a primary that stops hearing from the DCS demoted before its
//! lock expires for the others.

use std::time::Duration;

/// Settings of the HA decision.
#[derive(Debug, Clone, PartialEq)]
pub struct HaConfig {
    /// Leader lock time-to-live: others may take the lock `ttl` after they
    /// last saw it renewed.
    pub ttl: Duration,
    /// Pause between cycles.
    pub loop_wait: Duration,
    /// Budget for DCS retries. A primary that has not renewed its lock for
    /// this long while the DCS is unreachable demotes.
    pub retry_timeout: Duration,
    /// Members further behind the leader's last published position
    /// (`/status.optime`, [`LeaderStatus::last_lsn`](crate::LeaderStatus::last_lsn))
    /// than this many bytes are never promoted.
    pub maximum_lag_on_failover: u64,
    /// How long the lock holder may take to (re)start a crashed primary
    /// before it fails over instead; 0 fails over at once when a healthy
    /// candidate exists.
    pub primary_start_timeout: Duration,
    /// In synchronous mode, how long a graceful stop of the primary may take
    /// before it escalates; zero means no limit.
    pub primary_stop_timeout: Duration,
    /// How long a replica waits, after first seeing the cluster without a
    /// leader, before racing, while its WAL still moves; zero disables.
    pub primary_race_backoff: Duration,
    /// Refuse to promote a member whose timeline is behind the cluster's.
    pub check_timeline: bool,
    /// Run `pg_rewind` when a member's timeline diverged from the leader's.
    pub use_pg_rewind: bool,
    /// Remove the data directory (and clone again) after `pg_rewind` failed.
    pub remove_data_directory_on_rewind_failure: bool,
    /// Remove the data directory (and clone again) when timelines diverged
    /// and `pg_rewind` cannot be used.
    pub remove_data_directory_on_diverged_timelines: bool,
    /// Synchronous replication mode; it limits who may race.
    pub synchronous_mode: SynchronousMode,
    /// `synchronous_mode_strict`: commits wait rather than run without a synchronous standby.
    pub synchronous_mode_strict: bool,
    /// `synchronous_node_count`: how many synchronous standbys the primary keeps.
    pub synchronous_node_count: u32,
    /// `maximum_lag_on_syncnode` in bytes; ≤ 0 never swaps a lagging standby out.
    pub maximum_lag_on_syncnode: i64,
    /// Keep the primary through DCS outages when all members agree
    /// (`failsafe_mode`; see the `failsafe` rules).
    pub failsafe_mode: bool,
    /// Whether the local configuration has a `bootstrap` section, without
    /// which a member never initialises a new cluster.
    pub can_bootstrap: bool,
    /// Whether a replica creation method that needs no leader (`no_leader`)
    /// is configured, so a member may clone while the cluster has no leader.
    pub create_replica_without_leader: bool,
    /// `watchdog.mode` and the device timeout (see [`super::watchdog`]).
    pub watchdog: super::WatchdogPolicy,
    /// `standby_cluster` (with a `host`, `port` or `restore_command`): the remote primary
    /// this cluster replicates from ([`Upstream::remote`](super::Upstream::remote)). Its lock
    /// holder is the standby leader, which follows the remote and never promotes; a new
    /// cluster's first member clones from the remote instead of running `initdb`.
    pub standby_cluster: Option<super::Upstream>,
}

/// `synchronous_mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SynchronousMode {
    /// Asynchronous replication.
    #[default]
    Off,
    /// Synchronous replication (priority based): only members listed in
    /// `/sync` may race once the primary published it.
    On,
    /// Quorum commit (`ANY n (...)`): anyone may race but needs votes.
    Quorum,
}

// === impl HaConfig ===

impl Default for HaConfig {
    /// Patroni's defaults, with a `bootstrap` section present (and no watchdog).
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
            maximum_lag_on_failover: 1_048_576,
            primary_start_timeout: Duration::from_secs(300),
            primary_stop_timeout: Duration::ZERO,
            primary_race_backoff: Duration::ZERO,
            check_timeline: false,
            use_pg_rewind: false,
            remove_data_directory_on_rewind_failure: false,
            remove_data_directory_on_diverged_timelines: false,
            synchronous_mode: SynchronousMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            maximum_lag_on_syncnode: -1,
            failsafe_mode: false,
            can_bootstrap: true,
            create_replica_without_leader: false,
            watchdog: super::WatchdogPolicy::default(),
            standby_cluster: None,
        }
    }
}

impl HaConfig {
    /// The settings synchronous replication management reads.
    pub fn sync_settings(&self) -> crate::sync::SyncSettings {
        crate::sync::SyncSettings {
            node_count: self.synchronous_node_count.max(1),
            strict: self.synchronous_mode_strict,
            max_lag: self.maximum_lag_on_syncnode,
            quorum: self.synchronous_mode == SynchronousMode::Quorum,
        }
    }

    /// The stop timeout a demotion passes on: `primary_stop_timeout` only in
    /// synchronous mode and when positive, as in Patroni.
    pub fn demote_stop_timeout(&self) -> Option<Duration> {
        (self.synchronous_mode != SynchronousMode::Off && !self.primary_stop_timeout.is_zero())
            .then_some(self.primary_stop_timeout)
    }
}
