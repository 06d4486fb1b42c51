//! The HA decision: what this member does next, as a pure function.
//!
//! [`decide`](fn@decide) takes an [`Observation`] (the DCS view, the local Postgres,
//! what the runtime remembers, operator requests, and the answers to this
//! cycle's queries), an [`HaConfig`] and the monotonic time, and returns a
//! [`Decision`]: a list of [`Action`]s and Patroni's status message. It does
//! no I/O, reads no clock and draws no random numbers; the rules are those
//! of Patroni 4's `ha.py` as written down in `ha-loop.md`.
//!
//! # Driving it
//!
//! One HA cycle is a short loop of *steps*:
//!
//! 1. Observe: read the cluster from the DCS (or note it unreachable), read
//!    the local Postgres, and start with empty [`CycleOutcomes`].
//! 2. Call [`decide`](fn@decide). If the decision holds a query ([`Decision::query`]:
//!    take the `initialize` key, acquire or renew the lock, check the
//!    peers, check the timeline, arm the watchdog), perform it, record the outcome in the
//!    observation, and call [`decide`](fn@decide) again. A query that fails with a DCS
//!    error is recorded by setting [`DcsView::Unreachable`].
//! 3. The first decision without a query is final: carry out its actions in
//!    order, stopping at the first that fails, log its message, publish the
//!    member key (when the DCS answered), and wait until the next cycle
//!    (`loop_wait`, or earlier per [`Decision::next_cycle_at`]).
//!
//! A cycle needs at most four steps (renew, check peers, final; or check
//! peers, acquire, activate the watchdog, final). Long actions may run in the background; while
//! one runs, the runtime reports it in [`AgentMemory::in_progress`] and the
//! decision only keeps the lock alive.
//!
//! # What breaks if this stalls or panics
//!
//! Everything: a lock holder that stops deciding stops renewing and its
//! replicas take over. Nothing here panics on any input; the invariants in
//! [`invariants`] are checked after every step by the tests.
//!
//! # Not covered yet
//!
//! The pre-promote backoff and callbacks. The watchdog device is armed, kept alive and
//! disarmed as [`watchdog`] says. Standby clusters (`HaConfig::standby_cluster`)
//! are covered: the lock holder is a standby leader following the remote primary.
//! Synchronous replication on the primary is managed by [`crate::sync`] after each cycle. Operator restarts are judged by
//! [`restart`], outside the cycle's decision.

mod action;
mod bootstrap;
mod config;
mod context;
mod decide;
mod failover;
pub mod failsafe;
mod follower;
mod health;
pub mod invariants;
mod leader;
pub mod lease;
mod observation;
mod peer;
mod postgres;
mod race;
pub mod restart;
mod schedule;
mod tags;
pub mod timeline;
pub mod watchdog;

#[cfg(test)]
mod tests;

pub use action::{
    Action, CloneSource, Decision, DemoteMode, ReleaseLsn, RemovalReason, StartRole, StopMode,
};
pub use config::{HaConfig, SynchronousMode};
pub use decide::decide;
pub use observation::{
    AgentMemory, CycleOutcomes, DcsView, FailsafeLeader, Finished, LocalMember, LockOutcome,
    Observation, ReinitRequest, Requests, TimelineCheck, TimelineVerdict,
};
pub use peer::{PeerReply, PeerStatus, PeerTarget};
pub use postgres::{
    ControlState, DataDirectory, LocalPostgres, PgRole, PgServer, PrimaryState, ReplicaState,
    SenderSyncState, Stopped, Upstream, WalSender,
};
pub use tags::MemberTags;
pub use watchdog::{WatchdogMode, WatchdogPolicy, WatchdogState};
