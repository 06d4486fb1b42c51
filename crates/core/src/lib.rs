//! The cluster model and HA decision logic of patroni-rs.
//!
//! This crate does no I/O: no tokio, no Kubernetes client, no PostgreSQL
//! driver, no clock. What it decides is a pure function of what it is
//! shown, so every rule can be tested without a cluster.

mod cluster;
pub mod ha;
mod member;
mod python;
mod role;
pub mod slots;
pub mod sync;

pub use cluster::{Cluster, ClusterConfig, Failover, History, Leader, LeaderStatus, SyncState};
pub use member::{Member, MemberData};
pub use python::python_truthy;
pub use role::{ParseRoleError, Role};

/// A reading of a monotonic clock, as a duration since an arbitrary origin (the core has no
/// clock: callers pass readings).
pub type Tick = std::time::Duration;
