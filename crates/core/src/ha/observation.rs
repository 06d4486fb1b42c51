//! Everything the decision may look at, gathered by the runtime each cycle.
//!
//! An [`Observation`] has four parts with different owners:
//!
//! - what the world looks like now: the DCS view, the local Postgres, pause;
//! - [`AgentMemory`]: what the runtime remembers between cycles (what is
//!   running in the background, what just finished, when the lock was last
//!   renewed, the last timeline check);
//! - [`Requests`]: what an operator asked for (shutdown, reinitialise);
//! - [`CycleOutcomes`]: answers to the queries of earlier steps of *this*
//!   cycle; empty at the start of each cycle.
//!
//! Nothing here is read from a clock or a socket by the core: the runtime
//! fills every field and passes `now` separately.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Action, LocalPostgres, MemberTags, PeerStatus, WatchdogState};
use crate::{Cluster, Tick};

/// The input of one call of [`decide`](fn@super::decide).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// This member.
    pub me: LocalMember,
    /// The cluster as the DCS showed it this cycle. Within a cycle the
    /// runtime may keep the view it read at the start: the outcomes of the
    /// queries say what changed.
    pub dcs: DcsView,
    /// The local data directory and server.
    pub postgres: LocalPostgres,
    /// Maintenance mode (`pause` in the dynamic configuration, the last
    /// known value when the DCS is unreachable).
    pub paused: bool,
    /// Wall-clock time as a duration since the Unix epoch; used only to
    /// compare with a switchover's `scheduled_at`.
    pub wall_clock: Duration,
    /// What the runtime remembers between cycles.
    pub memory: AgentMemory,
    /// Operator requests.
    pub requests: Requests,
    /// Answers to this cycle's queries.
    pub cycle: CycleOutcomes,
    /// When (on the runtime's monotonic clock) the runtime started reading the DCS view in
    /// `dcs`; `None` when not known. Compared with [`AgentMemory::resumed_at`]: a view read
    /// before the agent was suspended may be arbitrarily old.
    pub view_read_at: Option<Tick>,
    /// How long the store keeps this member's lock after it last heard from it, when the store
    /// says so and it may be shorter than `ttl` (a ZooKeeper server's negotiated session
    /// timeout); the lease fence counts with the shorter of the two.
    pub store_lease_limit: Option<Duration>,
    /// This member's watchdog device: armed by this agent, usable.
    pub watchdog: WatchdogState,
}

/// This member's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalMember {
    /// Member name (the pod name).
    pub name: String,
    /// Tags from the local configuration.
    pub tags: MemberTags,
    /// This member's REST API URL (`http(s)://host:port/patroni`), as it publishes it.
    pub api_url: Option<String>,
}

/// The DCS as seen this cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum DcsView {
    /// The DCS answered; this is the cluster it showed.
    Reachable(Box<Cluster>),
    /// The DCS could not be read within `retry_timeout`, or a write of this
    /// cycle failed with a DCS error (the runtime then sets this and decides
    /// again).
    Unreachable,
}

/// What the runtime remembers between cycles. The runtime writes every
/// field; the decision only reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentMemory {
    /// Whether this is the agent's first cycle since it started (Patroni:
    /// `on_start` not yet called). Constant across the steps of a cycle.
    pub first_cycle: bool,
    /// The long-running action executing in the background, if any.
    pub in_progress: Option<Action>,
    /// The long-running action that finished since the previous cycle, and
    /// whether it succeeded. Kept for exactly one cycle (all its steps).
    pub finished: Option<Finished>,
    /// When this member last saw its Postgres running and answering. The
    /// lock holder of a crashed primary fails over instead of restarting it
    /// once this is `primary_start_timeout` old.
    pub last_healthy: Option<Tick>,
    /// When this member last renewed (or took) the leader lock successfully.
    pub last_lock_renewal: Option<Tick>,
    /// When this agent first saw the cluster without a leader since it last
    /// saw one (for `primary_race_backoff`); `None` while there is a leader.
    pub unlocked_since: Option<Tick>,
    /// This member's WAL position at the previous cycle (for
    /// `primary_race_backoff`); `None` in the first cycle.
    pub previous_wal: Option<u64>,
    /// The last timeline comparison with a leader. The runtime sets it after
    /// [`Action::CheckTimeline`] and [`Action::Rewind`], and clears it when
    /// the data directory is replaced (clone, promotion).
    pub timeline_check: Option<TimelineCheck>,
    /// When the runtime last noticed that this process had been suspended (it woke up, or
    /// was about to act on a view, much later than it should have: SIGSTOP, a frozen VM, a
    /// long CPU-throttle stall). A view read before this is never used to take the lock.
    pub resumed_at: Option<Tick>,
    /// The failsafe topology `{member: api_url}` as last read from the DCS (Patroni's
    /// `dcs.failsafe`): kept through a DCS outage, when the primary asks these members.
    pub failsafe_topology: Option<BTreeMap<String, String>>,
    /// The primary that last called `POST /failsafe` on this member (a replica) and was
    /// accepted; it counts as the leader for `ttl` after that while the lock is gone.
    pub failsafe_leader: Option<FailsafeLeader>,
    /// The start of the last cycle in which every member of the failsafe topology accepted
    /// this primary (`POST /failsafe`): like a renewal, it extends the lease the fence keeps
    /// ([`super::lease`]).
    pub failsafe_confirmed_at: Option<Tick>,
    /// When the `pre_promote` script last failed (exited non-zero, could not run, or ran too
    /// long): the promotion was abandoned; the lock is given back and this member stays out
    /// of the race for `ttl` (Patroni's `_released_leader_key_timestamp`).
    pub pre_promote_failed_at: Option<Tick>,
}

/// A primary that kept running through a DCS outage in failsafe mode and told this member so
/// (`POST /failsafe`: Patroni's `Failsafe.update`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailsafeLeader {
    /// Its member name.
    pub name: String,
    /// Its PostgreSQL URL (`postgres://host:port/dbname`), to follow it.
    pub conn_url: Option<String>,
    /// Its REST API URL.
    pub api_url: Option<String>,
    /// Its replication slots `{name: lsn}` (for the copies of permanent slots).
    pub slots: Option<BTreeMap<String, u64>>,
    /// When it called.
    pub heard_at: Tick,
}

/// A long-running action that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The action.
    pub action: Action,
    /// Whether it succeeded.
    pub succeeded: bool,
}

/// The result of comparing this member's timeline history with a leader's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineCheck {
    /// The leader compared with; a check for another leader is ignored.
    pub leader: String,
    /// The leader's timeline (as it published it) at the time of the check; a check made
    /// against an older timeline of the same leader is ignored (it promoted again, or had
    /// not published its new timeline yet).
    pub leader_timeline: u64,
    /// What was found.
    pub verdict: TimelineVerdict,
    /// When; an `Undetermined` result is asked again in a later cycle.
    pub checked_at: Tick,
}

/// What a timeline comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineVerdict {
    /// This member can follow the leader as it is.
    InSync,
    /// This member's history diverged from the leader's: it must be rewound
    /// (or recloned) before it can follow.
    NeedsRewind,
    /// A `pg_rewind` from this leader failed. Not retried.
    RewindFailed,
    /// The comparison could not be made (leader unreachable or still in
    /// recovery).
    Undetermined,
}

/// What an operator asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    /// The agent is shutting down (SIGTERM).
    pub shutdown: bool,
    /// Reinitialise this replica (`POST /reinitialize`). The runtime clears
    /// it once the decision's actions start.
    pub reinit: Option<ReinitRequest>,
}

/// A request to rebuild this member's data directory from another member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReinitRequest {
    /// Clone from the leader even when a `clonefrom` member exists.
    pub from_leader: bool,
}

/// Answers to the queries asked earlier in this cycle. The runtime empties
/// this at the start of each cycle and fills one field per query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleOutcomes {
    /// Outcome of [`Action::TakeInitializeKey`]: `true` when this member
    /// created the key (won the bootstrap race).
    pub initialize: Option<bool>,
    /// Outcome of [`Action::AcquireLeader`] or [`Action::RenewLeader`].
    pub lock: Option<LockOutcome>,
    /// Outcome of [`Action::CheckPeers`]: one entry per member asked.
    pub peers: Option<Vec<PeerStatus>>,
    /// Outcome of [`Action::CheckFailsafe`]: whether every member asked accepted this
    /// member as the primary.
    pub failsafe: Option<bool>,
    /// Outcome of [`Action::ActivateWatchdog`]: whether the watchdog now runs with a safe
    /// timeout (Patroni's `Watchdog.activate()` result as `automatic` sees it: `false` when
    /// no device could be armed safely).
    pub watchdog: Option<bool>,
}

/// Outcome of a lock write. A DCS error is not an outcome: the runtime sets
/// [`DcsView::Unreachable`] and decides again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOutcome {
    /// `AcquireLeader` created the lock: this member is the leader.
    Acquired,
    /// `RenewLeader` updated the lock: this member is still the leader.
    Renewed,
    /// The DCS refused the write: somebody else holds the lock.
    Refused,
}

// === impl Observation ===

impl Observation {
    /// An observation of `postgres` on member `me` with the DCS view `dcs`;
    /// everything else empty (not paused, no memory, no requests).
    pub fn new(me: LocalMember, dcs: DcsView, postgres: LocalPostgres) -> Self {
        Self {
            me,
            dcs,
            postgres,
            paused: false,
            wall_clock: Duration::ZERO,
            memory: AgentMemory::default(),
            requests: Requests::default(),
            cycle: CycleOutcomes::default(),
            view_read_at: None,
            store_lease_limit: None,
            watchdog: WatchdogState::default(),
        }
    }

    /// Whether the DCS view may predate a suspension of this process: it was read before
    /// (or at) the last resumption, or when it was read is not known after one.
    pub fn view_predates_pause(&self) -> bool {
        self.memory
            .resumed_at
            .is_some_and(|resumed| self.view_read_at.is_none_or(|read| read <= resumed))
    }

    /// The cluster, when the DCS answered.
    pub fn cluster(&self) -> Option<&Cluster> {
        match &self.dcs {
            DcsView::Reachable(c) => Some(c),
            DcsView::Unreachable => None,
        }
    }
}

// === impl DcsView ===

impl DcsView {
    /// A reachable DCS showing `cluster`.
    pub fn reachable(cluster: Cluster) -> Self {
        DcsView::Reachable(Box::new(cluster))
    }
}

// === impl LocalMember ===

impl LocalMember {
    /// A member named `name` without tags.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            tags: MemberTags::default(),
            api_url: None,
        }
    }
}

// === impl LockOutcome ===

impl LockOutcome {
    /// Whether the write left this member holding the lock.
    pub fn holds(self) -> bool {
        matches!(self, LockOutcome::Acquired | LockOutcome::Renewed)
    }
}
