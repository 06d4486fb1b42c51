//! The `patroni` and `patronictl` binaries of patroni-rs: the HA agent runtime ([`agent`]) and
//! shared plumbing: exit codes, the one read of the process environment, and how
//! configuration problems are printed.
//!
//! The binaries stay thin: everything about configuration lives in `patroni-config`.

pub mod agent;
pub mod exit;
pub mod process_env;
pub mod report;
