//! The lease fence: a small process beside the agent that kills the primary's PostgreSQL when
//! the leader lease runs out without a renewal (docs/lease.md).
//!
//! The core says until when this member's server may accept writes
//! (`patroni_core::ha::lease::fence`); the agent hands that deadline to the fence process
//! after each renewal ([`FenceClient`]). The process ([`guard::run`], `patroni --lease-fence
//! DATA_DIR`, started by the agent) is separate so that it still acts when the agent does not:
//! frozen (SIGSTOP, a stalled runtime), hung in a request, or killed. At the deadline it
//! stops the postmaster and kills it and every process it started, so nothing acknowledges a
//! write after another member may have been promoted. It is Patroni's watchdog without the
//! device: it resets the server instead of the machine.
//!
//! Protocol (lines on the process's stdin): `arm PID DEADLINE_NS` (fence postmaster `PID` at
//! `DEADLINE_NS` of `CLOCK_MONOTONIC`, a system-wide clock both processes read) and `disarm`.
//! At end of input (the agent exited or was killed) an armed fence still fires at its
//! deadline; a disarmed one exits.

mod client;
pub mod guard;
mod procfs;

pub use client::FenceClient;

/// The hidden `patroni` option that runs the fence process.
pub const GUARD_FLAG: &str = "--lease-fence";
