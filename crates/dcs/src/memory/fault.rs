//! What [`MemoryStore::fail_next`](super::MemoryStore::fail_next) can fail, and how: one
//! [`Op`] of the [`Dcs`](crate::Dcs) trait, failing as a [`Fault`]. The injected errors carry
//! [`Injected`] as their cause, so a test can tell them from anything else.

/// An operation of the [`Dcs`](crate::Dcs) trait, to fail with
/// [`MemoryStore::fail_next`](super::MemoryStore::fail_next).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// [`Dcs::get_cluster`](crate::Dcs::get_cluster).
    GetCluster,
    /// [`Dcs::attempt_to_acquire_leader`](crate::Dcs::attempt_to_acquire_leader).
    AttemptToAcquireLeader,
    /// [`Dcs::update_leader`](crate::Dcs::update_leader).
    UpdateLeader,
    /// [`Dcs::delete_leader`](crate::Dcs::delete_leader).
    DeleteLeader,
    /// [`Dcs::touch_member`](crate::Dcs::touch_member).
    TouchMember,
    /// [`Dcs::initialize`](crate::Dcs::initialize).
    Initialize,
    /// [`Dcs::cancel_initialization`](crate::Dcs::cancel_initialization).
    CancelInitialization,
    /// [`Dcs::set_config_value`](crate::Dcs::set_config_value).
    SetConfigValue,
    /// [`Dcs::set_history_value`](crate::Dcs::set_history_value).
    SetHistoryValue,
    /// [`Dcs::manual_failover`](crate::Dcs::manual_failover).
    ManualFailover,
    /// [`Dcs::write_sync_state`](crate::Dcs::write_sync_state).
    WriteSyncState,
    /// [`Dcs::delete_sync_state`](crate::Dcs::delete_sync_state).
    DeleteSyncState,
    /// [`Dcs::delete_cluster`](crate::Dcs::delete_cluster).
    DeleteCluster,
}

/// How an operation failed by [`MemoryStore::fail_next`](super::MemoryStore::fail_next) fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// As if the store could not be reached: [`Error::Unreachable`](crate::Error::Unreachable).
    Unreachable,
    /// The store answers no: the operation's refusal (`Ok(false)`; `Ok(None)` for
    /// [`Dcs::write_sync_state`](crate::Dcs::write_sync_state)), or
    /// [`Error::Refused`](crate::Error::Refused) for
    /// [`Dcs::get_cluster`](crate::Dcs::get_cluster), which has no refusal to answer with.
    /// Nothing is written.
    Refused,
}

/// The cause carried by an injected [`Error`](crate::Error).
#[derive(Debug, thiserror::Error)]
#[error("injected fault: {0}")]
pub(super) struct Injected(pub(super) &'static str);
