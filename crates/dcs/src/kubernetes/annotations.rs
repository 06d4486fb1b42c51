//! Patroni's annotation keys; the values are encoded as in every DCS ([`crate::encoding`],
//! re-exported here).

pub use crate::encoding::*;

/// Annotation keys (Patroni's spelling).
pub mod key {
    /// Lock holder (leader object); also the sync/failover leader.
    pub const LEADER: &str = "leader";
    /// When the lock was taken.
    pub const ACQUIRE_TIME: &str = "acquireTime";
    /// Last renewal.
    pub const RENEW_TIME: &str = "renewTime";
    /// Lock ttl in seconds.
    pub const TTL: &str = "ttl";
    /// Number of lock changes between members.
    pub const TRANSITIONS: &str = "transitions";
    /// Leader's last WAL position.
    pub const OPTIME: &str = "optime";
    /// Primary's replication slots.
    pub const SLOTS: &str = "slots";
    /// Member slots to retain.
    pub const RETAIN_SLOTS: &str = "retain_slots";
    /// Failsafe topology.
    pub const FAILSAFE: &str = "failsafe";
    /// Dynamic configuration (config object).
    pub const CONFIG: &str = "config";
    /// Bootstrap marker / system id (config object).
    pub const INITIALIZE: &str = "initialize";
    /// Timeline history (config object).
    pub const HISTORY: &str = "history";
    /// Failover candidate (failover object).
    pub const MEMBER: &str = "member";
    /// Failover schedule (failover object).
    pub const SCHEDULED_AT: &str = "scheduled_at";
    /// Synchronous standbys (sync object).
    pub const SYNC_STANDBY: &str = "sync_standby";
    /// Quorum (sync object).
    pub const QUORUM: &str = "quorum";
    /// Member data (pod).
    pub const STATUS: &str = "status";
}
