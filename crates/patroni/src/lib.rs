//! Shared plumbing of the `patroni` and `patronictl` binaries: exit codes, the one read of the
//! process environment, and how configuration problems are printed.
//!
//! The binaries stay thin: everything about configuration lives in `patroni-config`.

pub mod exit;
pub mod process_env;
pub mod report;
