//! Synchronous replication as the primary manages it (`synchronous_mode: on` and `quorum`): which standbys
//! are synchronous, what `synchronous_standby_names` and `/sync` say, and in which order they
//! change (Patroni 4's `postgresql/sync.py` and the primary's part of `ha.py`).
//!
//! Pure like the rest of the core: [`current_state`] reads the observed WAL senders and the
//! cluster (and updates the [`SyncTracker`] the runtime keeps), [`next_step`] says what to do
//! next, [`prepromote`] what a member about to promote writes first; in quorum mode
//! [`quorum_plan`] (the transitions of [`quorum::resolve`]) and [`quorum_prepromote`]. Who may promote in
//! synchronous mode (only members `/sync` lists) is the HA decision's rule (`ha::failover`).

pub mod names;
mod primary;
pub mod quorum;
#[cfg(test)]
mod quorum_tests;
mod select;
#[cfg(test)]
mod tests;

pub use names::{STRICT_PLACEHOLDER, SyncStandbyNames, SyncType, render};
pub use primary::{
    QuorumPlan, SyncStep, next_step, prepromote, quorum_plan, quorum_prepromote, when_off,
};
pub use select::{
    CommitLevel, SyncCandidates, SyncSettings, SyncTracker, current_state, sync_lists,
};
