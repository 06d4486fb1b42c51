//! The `patroni` and `patronictl` binaries of patroni-rs: the HA agent runtime ([`agent`]) and
//! the lease fence process ([`fence`]), and
//! shared plumbing: exit codes, the one read of the process environment, logging as the `log`
//! section asks, and how configuration problems are printed.
//!
//! The binaries stay thin: everything about configuration lives in `patroni-config`.

pub mod agent;
pub mod exit;
pub mod fence;
pub mod logging;
pub mod process_env;
pub mod report;
