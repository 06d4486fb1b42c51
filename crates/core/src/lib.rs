//! The cluster model and HA decision logic of patroni-rs.
//!
//! This crate does no I/O: no tokio, no Kubernetes client, no PostgreSQL
//! driver. What it decides is a pure function of what it is shown, so every
//! rule can be tested without a cluster.

mod role;

pub use role::{ParseRoleError, Role};
