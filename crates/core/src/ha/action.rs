//! What the decision asks the runtime to do, and the decision itself.
//!
//! Actions come in two kinds:
//!
//! - **Queries** ([`Action::is_query`]): `TakeInitializeKey`,
//!   `AcquireLeader`, `RenewLeader`, `CheckPeers`, `CheckTimeline`, `CheckFailsafe`,
//!   `ActivateWatchdog`. A
//!   decision holding a query holds nothing else. The runtime performs it,
//!   records the outcome in the observation (mostly
//!   [`CycleOutcomes`](super::CycleOutcomes)) and calls
//!   [`decide`](fn@super::decide) again within the same cycle.
//! - **Effects**: everything else. A final decision lists them in order; the
//!   runtime carries them out in that order and skips the rest of the list
//!   when one fails (so a lock is never released after a stop that failed).
//!   Long ones (`Bootstrap`, `CloneReplica`, `StartPostgres`, `Promote`,
//!   `Demote`, `Rewind`, a restarting `FollowLeader`) may run in the
//!   background; the runtime then reports the one running in
//!   [`AgentMemory::in_progress`](super::AgentMemory::in_progress).
//!
//! Publishing the member key is not an action: the runtime writes it after
//! every cycle in which the DCS answered, as Patroni does.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::{PeerTarget, Upstream};
use crate::Tick;

/// One thing to do. Each variant says what it is for and what must hold
/// before the decision emits it; the invariant checker
/// ([`invariants::check`](super::invariants::check)) verifies the safety-critical ones.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Query: create the `initialize` key with an empty value, only if it
    /// does not exist (the bootstrap race). Outcome: `CycleOutcomes::initialize`.
    /// Requires: the data directory is empty, the cluster is unlocked and has
    /// no `initialize` key, this member is not `nofailover` and has a
    /// `bootstrap` section.
    TakeInitializeKey,
    /// Query: create the leader lock only if it is free (TTL `ttl`).
    /// Outcome: `CycleOutcomes::lock` = `Acquired` or `Refused`.
    /// Requires: the cluster is unlocked and this member judged itself the
    /// healthiest (or is the named failover candidate).
    AcquireLeader,
    /// Query: renew this member's own lock (compare-and-swap on its version),
    /// publishing `last_lsn` and slots in `/status` when given.
    /// Outcome: `CycleOutcomes::lock` = `Renewed` or `Refused`.
    /// Requires: the DCS view shows this member as the lock holder.
    RenewLeader {
        /// The primary's current WAL position; `None` when not a primary.
        last_lsn: Option<u64>,
        /// With `failsafe_mode`: the failsafe topology `{member: api_url}` to publish with
        /// the lock (every member with an `api_url`, this one included).
        failsafe: Option<BTreeMap<String, String>>,
    },
    /// Query: `GET <api_url>` of each member (2 s, no retries, in parallel).
    /// Outcome: `CycleOutcomes::peers`, one entry per target.
    CheckPeers {
        /// Whom to ask: every other member with an `api_url`.
        members: Vec<PeerTarget>,
    },
    /// Query: compare this member's timeline history with the leader's
    /// (`IDENTIFY_SYSTEM`, `TIMELINE_HISTORY`) to learn whether it diverged.
    /// Outcome: `AgentMemory::timeline_check` for this leader.
    /// Requires: rewind or reclone-on-divergence is allowed, the leader is
    /// another member with a `conn_url`, or (in a standby cluster, rewind allowed) the remote
    /// primary with an address; its history then comes from the remote itself (its timeline
    /// history file), not from the DCS.
    CheckTimeline {
        /// The leader (or the remote primary) to compare with.
        leader: Upstream,
    },
    /// Query: `POST <api_url>/failsafe` to each member (2 s, one retry, in parallel) with
    /// this primary's name, `conn_url`, `api_url` and slots.
    /// Outcome: `CycleOutcomes::failsafe` = every member answered 200 `Accepted`.
    /// Requires: `failsafe_mode`, the DCS is unreachable past the renewal grace, this member
    /// runs as primary and is in the failsafe topology it last saw.
    CheckFailsafe {
        /// Every other member of the failsafe topology.
        members: Vec<PeerTarget>,
    },
    /// Query: open the watchdog device (which arms it), set its timeout to `timeout` when the
    /// driver can, and check the timeout in force (Patroni's `Watchdog.activate`).
    /// Outcome: `CycleOutcomes::watchdog` = whether it runs with a timeout of at most
    /// `timeout`; `Observation::watchdog.armed` when the device is open.
    /// Requires: `watchdog.mode` is not `off`, the cluster is not paused, the watchdog is not
    /// armed, and this member holds the lock or has just bootstrapped the cluster.
    ActivateWatchdog {
        /// `ttl - safety_margin` ([`super::WatchdogPolicy::timeout`]).
        timeout: Duration,
    },

    /// Write `sysid` into the `initialize` key (create or update).
    /// Requires: this member holds (or just took) the lock, or adopts its
    /// running primary in its first cycle while the cluster has no leader.
    WriteInitializeKey {
        /// This member's system identifier.
        sysid: String,
    },
    /// Delete the `initialize` key. Requires: this member won the bootstrap
    /// race and its bootstrap failed.
    DeleteInitializeKey,
    /// Write the dynamic configuration (`patroni.dynamic.json` cache, else
    /// `bootstrap.dcs`) to the `config` key.
    /// Requires: this member holds the lock and `config` is missing or empty.
    WriteConfig,
    /// Delete this member's leader lock (compare-and-swap), optionally
    /// writing the last LSN to `/status` so replicas know how far to catch up.
    /// Requires: this member holds the lock; when Postgres was running, it
    /// has been stopped by an earlier action of the same decision.
    ReleaseLeader {
        /// Which LSN to publish with the release.
        last_lsn: ReleaseLsn,
    },
    /// Delete the failover key (switchover done, stale, or impossible).
    ClearFailover {
        /// Version to compare-and-swap on; `None` deletes unconditionally.
        version: Option<String>,
    },
    /// Rewrite the failover key to name only its candidate. Used by a
    /// candidate that took the lock in pause, so that it keeps the lock while
    /// its promotion is pending.
    RetargetFailover {
        /// The candidate (this member).
        candidate: String,
        /// The schedule, unchanged.
        scheduled_at: Option<String>,
        /// Version to compare-and-swap on.
        version: String,
    },

    /// Create a new cluster: `initdb` (or the configured custom bootstrap
    /// method), `pg_hba` lines, start, wait for the end of recovery, then the
    /// post-bootstrap work (roles, `post_bootstrap` script). Long-running;
    /// its end is reported in `AgentMemory::finished`.
    /// Requires: the data directory is empty and this member won the
    /// bootstrap race in this cycle. Never emitted over existing data.
    Bootstrap,
    /// Create the standby leader of a new standby cluster (Patroni's
    /// `bootstrap_standby_leader`): clone from the remote primary with the `standby_cluster`
    /// section's `create_replica_methods` (default `basebackup`), then start PostgreSQL
    /// following it. Long-running; its end is reported in `AgentMemory::finished`, and the
    /// server runs as a replica when it succeeded.
    /// Requires: the data directory is empty, this is a standby cluster and this member won
    /// the bootstrap race in this cycle. Never `initdb`.
    BootstrapStandby {
        /// The remote primary (`Upstream::remote`).
        remote: Upstream,
    },
    /// Create a replica: run the replica creation methods into the empty
    /// data directory. On failure the runtime leaves the directory empty
    /// (it held nothing before). Postgres is started by a later decision.
    /// Requires: the data directory is empty, or an earlier
    /// [`Action::RemoveDataDirectory`] of the same decision emptied it.
    CloneReplica {
        /// Where to take the base backup from.
        source: CloneSource,
    },
    /// Start Postgres.
    /// Requires: it is stopped; as primary only for the lock holder whose
    /// primary crashed; never in pause.
    StartPostgres {
        /// The role to start in.
        role: StartRole,
        /// How long to wait for it to accept connections; `None` for the
        /// local `pg_ctl_timeout`.
        timeout: Option<Duration>,
    },
    /// Stop Postgres without any change of role (shutdown, empty data
    /// directory, reinitialise, failed bootstrap).
    StopPostgres {
        /// How to stop.
        mode: StopMode,
    },
    /// Promote the running replica: `pre_promote` script, `pg_ctl promote`,
    /// wait for the end of recovery, update `/history`. Long-running;
    /// the runtime cancels it when the lock is lost meanwhile.
    /// Requires: this member acquired or renewed the lock in this cycle, is
    /// not `nofailover`, is within `maximum_lag_on_failover` of the last
    /// known leader position, and (in pause) is the named failover candidate.
    Promote,
    /// Stop the running primary as `mode` says. Restarting it as a replica
    /// and releasing the lock are separate actions (`StartPostgres`,
    /// `ReleaseLeader`) of the same or a later decision.
    /// Requires: Postgres runs (or starts) as primary.
    Demote {
        /// How to stop.
        mode: DemoteMode,
        /// Escalate the stop after this long (synchronous mode's
        /// `primary_stop_timeout`); `None` for no limit.
        stop_timeout: Option<Duration>,
    },
    /// Point the recovery configuration of the running replica at
    /// `upstream` (`primary_conninfo`, `primary_slot_name`), reloading, or
    /// restarting where the PostgreSQL version needs it.
    /// Requires: Postgres runs as a replica; the target differs from its
    /// current upstream.
    FollowLeader {
        /// The member to stream from; `None` to stream from nobody.
        upstream: Option<Upstream>,
    },
    /// Run `pg_rewind` from `from` (stopping Postgres first, with a
    /// single-user crash recovery when it was not shut down cleanly). The
    /// runtime records success as `TimelineVerdict::InSync` and failure as
    /// `TimelineVerdict::RewindFailed` for this leader.
    /// Requires: the timeline check found divergence, `use_pg_rewind` is on
    /// and pg_rewind is usable on this data directory. The members of a standby cluster
    /// rewind from the remote primary.
    Rewind {
        /// The leader (or the remote primary) to rewind from.
        from: Upstream,
    },
    /// Crash recovery of the stopped data directory in single-user mode (no connections:
    /// never a second writable primary), leaving it cleanly shut down with `pg_control` on
    /// the last timeline it wrote, so its divergence from the leader can be judged (Patroni's
    /// `doing crash recovery in a single user mode`). Long-running; its end is reported in
    /// `AgentMemory::finished`.
    /// Requires: Postgres is stopped, did not shut down cleanly as a primary, and this member
    /// does not hold the lock.
    RecoverCrash,
    /// Delete the data directory's contents. Requires: Postgres is stopped
    /// (by an earlier action of the same decision if it ran) and `reason`
    /// holds: a reinitialise request, a failed rewind with
    /// `remove_data_directory_on_rewind_failure` (or `..._on_diverged_timelines`),
    /// or diverged timelines with `remove_data_directory_on_diverged_timelines`
    /// and no usable rewind.
    RemoveDataDirectory {
        /// Why removal is allowed.
        reason: RemovalReason,
    },
    /// Rename the data directory to `<dir>.failed` (nothing is deleted).
    /// Requires: this member's bootstrap failed.
    MoveDataDirectoryAside,
    /// Cancel the long-running action in progress (kill a starting
    /// postmaster, abort `pre_promote`/promote).
    /// Requires: `AgentMemory::in_progress` is set.
    CancelAsync,
    /// Stop the agent (not Postgres) with a failure status: continuing would
    /// be unsafe (the data belongs to another cluster, a replica without
    /// `initialize` key, a failed bootstrap).
    Fatal {
        /// The error to report.
        reason: String,
    },
}

/// The LSN a lock release publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseLsn {
    /// Publish nothing new.
    Unchanged,
    /// Read it from `pg_controldata` after the stop: the position just
    /// before the shutdown checkpoint, which replicas must reach.
    ShutdownCheckpoint,
}

/// Where a new replica takes its base backup from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneSource {
    /// The leader.
    Leader(Upstream),
    /// A running replica tagged `clonefrom`.
    Replica(Upstream),
    /// No member: only methods marked `no_leader` (from a backup store).
    WithoutLeader,
    /// The remote primary of a standby cluster ([`Action::BootstrapStandby`]), with the
    /// `standby_cluster` section's replica creation methods.
    Remote(Upstream),
}

/// The role [`Action::StartPostgres`] starts Postgres in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartRole {
    /// Read-write, without recovery configuration.
    Primary,
    /// In recovery (standby mode), streaming from `upstream` if given.
    Replica {
        /// The member to stream from; `None` for nobody (read-only).
        upstream: Option<Upstream>,
    },
}

/// How [`Action::StopPostgres`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `pg_ctl stop -m fast` (SIGINT), escalating on timeout.
    Fast,
    /// `pg_ctl stop -m immediate` (SIGQUIT): no shutdown checkpoint.
    Immediate,
}

/// Patroni's demotion modes (ha-loop.md §8.5), without the lock and restart
/// parts, which are separate actions here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoteMode {
    /// Switchover: CHECKPOINT, `before_stop` script, stop fast. Followed by
    /// [`ReleaseLeader`](Action::ReleaseLeader) with the shutdown checkpoint.
    Graceful,
    /// Fail over quickly (crash, startup timeout): stop immediate. Followed
    /// by `ReleaseLeader`.
    Immediate,
    /// The lock is lost: stop immediate at once, nothing to release.
    ImmediateNoLock,
    /// The DCS is unreachable: stop fast, keep nothing, restart read-only
    /// following nobody.
    Offline,
}

/// Why [`Action::RemoveDataDirectory`] is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// An operator asked to reinitialise this member.
    ReinitRequested,
    /// `pg_rewind` failed and the configuration allows removal.
    RewindFailed,
    /// Timelines diverged, rewind is not possible, and the configuration
    /// allows removal.
    DivergedTimelines,
}

/// The outcome of one call of [`decide`](fn@super::decide).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// Patroni's one-line status for this cycle (prefixed `PAUSE: ` in
    /// pause), e.g. `no action. I am (pg-0), the leader with the lock`.
    pub message: String,
    /// Run the next cycle no later than this (a scheduled switchover, a
    /// startup timeout, the race backoff); `None` for the usual `loop_wait`.
    pub next_cycle_at: Option<Tick>,
}

// === impl Action ===

impl Action {
    /// Whether this is a query: the runtime must feed its outcome back and
    /// decide again before doing anything else.
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Action::TakeInitializeKey
                | Action::AcquireLeader
                | Action::RenewLeader { .. }
                | Action::CheckPeers { .. }
                | Action::CheckTimeline { .. }
                | Action::CheckFailsafe { .. }
                | Action::ActivateWatchdog { .. }
        )
    }

    /// The name Patroni gives this action while it runs in the background,
    /// as used in `"<name> in progress"`.
    pub fn task_name(&self) -> String {
        match self {
            Action::Bootstrap => "bootstrap".into(),
            Action::BootstrapStandby { .. } => "bootstrap_standby_leader".into(),
            Action::CloneReplica { source } => match source {
                CloneSource::Leader(u) => format!("bootstrap from leader '{}'", u.member),
                CloneSource::Replica(u) => format!("bootstrap from replica '{}'", u.member),
                CloneSource::WithoutLeader => "bootstrap (without leader)".into(),
                CloneSource::Remote(u) => format!("clone from remote member {}", u.conn_url),
            },
            Action::Promote => "promote".into(),
            Action::Demote { .. } => "demote".into(),
            Action::StartPostgres {
                role: StartRole::Primary,
                ..
            } => "starting primary after failure".into(),
            Action::StartPostgres { .. } => "restarting after failure".into(),
            Action::Rewind { from } => format!("running pg_rewind from {}", from.member),
            Action::RecoverCrash => "doing crash recovery in a single user mode".into(),
            Action::FollowLeader { .. } => "changing primary_conninfo and restarting".into(),
            Action::RemoveDataDirectory { .. } => "reinitialize".into(),
            Action::StopPostgres { .. } => "stop".into(),
            other => format!("{other:?}"),
        }
    }
}

// === impl Decision ===

impl Decision {
    /// A decision with these actions and message.
    pub fn new(actions: Vec<Action>, message: impl Into<String>) -> Self {
        Self {
            actions,
            message: message.into(),
            next_cycle_at: None,
        }
    }

    /// A decision that does nothing but report.
    pub fn report(message: impl Into<String>) -> Self {
        Self::new(Vec::new(), message)
    }

    /// A step that asks one query.
    pub(crate) fn ask(query: Action, message: impl Into<String>) -> Self {
        Self::new(vec![query], message)
    }

    /// The query this decision waits on, when it is a step rather than final.
    pub fn query(&self) -> Option<&Action> {
        self.actions.iter().find(|a| a.is_query())
    }

    /// Whether this is the cycle's last decision (it asks no query).
    pub fn is_final(&self) -> bool {
        self.query().is_none()
    }

    /// Consuming setter for `next_cycle_at`.
    pub fn with_next_cycle_at(mut self, at: Option<Tick>) -> Self {
        self.next_cycle_at = at;
        self
    }

    /// Puts `first` before the actions of a final decision; a query step is
    /// left alone (its final decision will carry them).
    pub(crate) fn prepend(mut self, first: Vec<Action>) -> Self {
        if self.is_final() && !first.is_empty() {
            let rest = std::mem::take(&mut self.actions);
            self.actions = first;
            self.actions.extend(rest);
        }
        self
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
