//! Safety properties every decision must have, checked from the outside.
//!
//! [`check`] judges one decision against the observation it was made from,
//! without re-running the rules. Tests call it after every step (the unit
//! tests here, and any simulation driving [`decide`](fn@super::decide) through
//! many cycles); a runtime may call it too and refuse to act on a violation.
//!
//! The properties:
//! - a query is alone in its decision;
//! - `Promote` only after this cycle's lock write succeeded, never for a
//!   `nofailover` member, never beyond `maximum_lag_on_failover`, in pause
//!   only for the named failover candidate, outside pause never with a required watchdog
//!   that is not armed;
//! - `AcquireLeader` only while unlocked, never by a `nofailover` replica,
//!   in pause only by a running primary or the named candidate, and only from
//!   a DCS view read after the agent last resumed from a suspension;
//! - a running primary (not paused, not bootstrapping, not shutting down)
//!   ends the cycle holding a freshly written lock, or demotes/stops, or is
//!   within `retry_timeout` of its last renewal while the DCS is unreachable,
//!   or, in failsafe mode with the DCS unreachable, every member of its topology accepted it,
//!   or reads the DCS again at once because its view predates a suspension;
//! - and never keeps it running past its lease (`ha::lease`: the fence's deadline after the
//!   last renewal or accepted failsafe round), unless it renewed or was accepted this cycle
//!   or reads the DCS again at once after a suspension;
//! - `Bootstrap` only after winning the `initialize` race, and neither it
//!   nor `CloneReplica` over existing data;
//! - in a standby cluster never `Promote` nor `Bootstrap` (`initdb`): its leader is a
//!   standby leader, created by `BootstrapStandby` (after winning the race, into an empty
//!   data directory);
//! - `RemoveDataDirectory` only for a reinitialise request or as the
//!   configuration allows after a failed rewind or diverged timelines, and
//!   only once Postgres is stopped;
//! - in pause no start, stop, promote, demote, rewind or removal, except a
//!   reinitialise request, the clean-up of a failed bootstrap and a
//!   switchover to a named candidate.

use std::fmt;

use super::{
    Action, DcsView, Decision, DemoteMode, HaConfig, LocalPostgres, Observation, PgServer,
    RemovalReason, TimelineVerdict,
};
use crate::Tick;

/// A broken safety property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A query shares its decision with other actions.
    QueryNotAlone,
    /// `Promote` without a successful lock write in this cycle.
    PromoteWithoutLock,
    /// `Promote` of a `nofailover` member.
    PromoteNofailover,
    /// `Promote` of a member lagging `lag` bytes behind the last leader position.
    PromoteLagging {
        /// Bytes behind.
        lag: u64,
    },
    /// `Promote` in pause of a member that is not the named candidate.
    PromoteInPause,
    /// `Promote` outside pause with `watchdog.mode: required` and no armed watchdog.
    PromoteWithoutWatchdog,
    /// `AcquireLeader` by a member that may not take the lock now.
    AcquireNotAllowed,
    /// `AcquireLeader` decided from a DCS view that predates the agent's last suspension.
    AcquireFromStaleView,
    /// A running primary keeps running without a confirmed lock.
    PrimaryWithoutLock,
    /// A running primary keeps running after its lease ran out (the fence's deadline).
    PrimaryPastLease,
    /// `Promote`, or `Bootstrap` (`initdb`), in a standby cluster.
    PrimaryInStandbyCluster(String),
    /// `Bootstrap` without winning the `initialize` race in this cycle.
    BootstrapWithoutInitializeKey,
    /// `Bootstrap` or `CloneReplica` over a data directory that holds data.
    WouldOverwriteData,
    /// `RemoveDataDirectory` that neither a request nor the configuration allows.
    RemovalNotAllowed(RemovalReason),
    /// `RemoveDataDirectory` while Postgres may still run.
    RemovalWhileRunning,
    /// Postgres started, stopped, promoted, demoted or rewound in pause.
    PostgresTouchedInPause(String),
    /// An action whose documented precondition on the server does not hold
    /// (`Promote` of a non-replica, `Demote` of a non-primary, `StartPostgres`
    /// of a running server, `FollowLeader` of a non-replica).
    Precondition(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Violation {}

/// Checks `decision`, made from `obs` with `cfg` at `now`.
///
/// # Errors
/// The first property the decision breaks.
pub fn check(
    obs: &Observation,
    cfg: &HaConfig,
    now: Tick,
    decision: &Decision,
) -> Result<(), Violation> {
    let actions = &decision.actions;
    if actions.iter().any(Action::is_query) && actions.len() > 1 {
        return Err(Violation::QueryNotAlone);
    }
    for (i, action) in actions.iter().enumerate() {
        let earlier = &actions[..i];
        match action {
            Action::Promote | Action::Bootstrap if cfg.standby_cluster.is_some() => {
                return Err(Violation::PrimaryInStandbyCluster(format!("{action:?}")));
            }
            Action::Promote => promote(obs, cfg)?,
            Action::AcquireLeader => acquire(obs)?,
            Action::Bootstrap | Action::BootstrapStandby { .. } => {
                if obs.cycle.initialize != Some(true) {
                    return Err(Violation::BootstrapWithoutInitializeKey);
                }
                empty_or_emptied(obs, earlier)?;
            }
            Action::CloneReplica { .. } => empty_or_emptied(obs, earlier)?,
            Action::RemoveDataDirectory { reason } => removal(obs, cfg, *reason, earlier)?,
            _ => {}
        }
        if !server_precondition(obs, action, earlier) {
            return Err(Violation::Precondition(format!("{action:?}")));
        }
        if obs.paused && touches_postgres_in_pause(obs, action) {
            return Err(Violation::PostgresTouchedInPause(format!("{action:?}")));
        }
    }
    // A view that predates a suspension says nothing about the lock: reading it again at
    // once, before anything else, is the one thing a primary may do instead.
    let rereads = obs.view_predates_pause()
        && actions.is_empty()
        && decision.next_cycle_at.is_some_and(|at| at <= now);
    if decision.is_final() && !rereads && primary_keeps_running_unlocked(obs, cfg, now, actions) {
        return Err(Violation::PrimaryWithoutLock);
    }
    // Reading again at once is exempt here too: the fence process, not the loop, holds the
    // deadline while the view is refreshed.
    if decision.is_final() && !rereads && primary_keeps_running_past_lease(obs, cfg, now, actions) {
        return Err(Violation::PrimaryPastLease);
    }
    Ok(())
}

fn primary_keeps_running_past_lease(
    obs: &Observation,
    cfg: &HaConfig,
    now: Tick,
    actions: &[Action],
) -> bool {
    if stops_or_exempt(obs, actions)
        || obs.cycle.lock.is_some_and(super::LockOutcome::holds)
        || obs.cycle.failsafe == Some(true)
    {
        return false;
    }
    matches!(super::lease::fence(obs, cfg), super::lease::Fence::Armed { until } if until <= now)
}

/// A decision that stops the primary, or one about a server the lock rules do not cover
/// (paused, shutting down, bootstrapping, not a running primary).
fn stops_or_exempt(obs: &Observation, actions: &[Action]) -> bool {
    let exempt = obs.paused
        || obs.requests.shutdown
        || matches!(obs.memory.in_progress, Some(Action::Bootstrap))
        || !matches!(obs.postgres.server(), Some(PgServer::Primary(_)));
    exempt
        || actions.iter().any(|a| {
            matches!(
                a,
                Action::Demote { .. } | Action::StopPostgres { .. } | Action::Fatal { .. }
            )
        })
}

fn promote(obs: &Observation, cfg: &HaConfig) -> Result<(), Violation> {
    if !obs.cycle.lock.is_some_and(super::LockOutcome::holds) {
        return Err(Violation::PromoteWithoutLock);
    }
    if obs.me.tags.nofailover() {
        return Err(Violation::PromoteNofailover);
    }
    let last_lsn = obs.cluster().map_or(0, |c| c.status.last_lsn);
    let mine = obs.postgres.server().map_or(0, PgServer::wal_position);
    let lag = last_lsn.saturating_sub(mine);
    if lag > cfg.maximum_lag_on_failover {
        return Err(Violation::PromoteLagging { lag });
    }
    if obs.paused && candidate(obs) != Some(obs.me.name.as_str()) {
        return Err(Violation::PromoteInPause);
    }
    if !obs.paused && cfg.watchdog.mode == super::WatchdogMode::Required && !obs.watchdog.armed {
        return Err(Violation::PromoteWithoutWatchdog);
    }
    Ok(())
}

fn acquire(obs: &Observation) -> Result<(), Violation> {
    let primary = obs.postgres.is_primary();
    let locked = obs.cluster().is_none_or(crate::Cluster::is_locked);
    let is_candidate = candidate(obs) == Some(obs.me.name.as_str());
    if locked || (obs.me.tags.nofailover() && !primary) || (obs.paused && !primary && !is_candidate)
    {
        return Err(Violation::AcquireNotAllowed);
    }
    if obs.view_predates_pause() {
        return Err(Violation::AcquireFromStaleView);
    }
    Ok(())
}

fn empty_or_emptied(obs: &Observation, earlier: &[Action]) -> Result<(), Violation> {
    let emptied = earlier
        .iter()
        .any(|a| matches!(a, Action::RemoveDataDirectory { .. }));
    if matches!(obs.postgres, LocalPostgres::Empty) || emptied {
        Ok(())
    } else {
        Err(Violation::WouldOverwriteData)
    }
}

fn removal(
    obs: &Observation,
    cfg: &HaConfig,
    reason: RemovalReason,
    earlier: &[Action],
) -> Result<(), Violation> {
    let verdict = obs.memory.timeline_check.as_ref().map(|c| c.verdict);
    let rewind_usable = obs.postgres.data().is_some_and(|d| d.pg_rewind_usable);
    let allowed = match reason {
        RemovalReason::ReinitRequested => obs.requests.reinit.is_some(),
        RemovalReason::RewindFailed => {
            verdict == Some(TimelineVerdict::RewindFailed)
                && (cfg.remove_data_directory_on_rewind_failure
                    || cfg.remove_data_directory_on_diverged_timelines)
        }
        RemovalReason::DivergedTimelines => {
            verdict == Some(TimelineVerdict::NeedsRewind)
                && cfg.remove_data_directory_on_diverged_timelines
                && !(cfg.use_pg_rewind && rewind_usable)
        }
    };
    if !allowed {
        return Err(Violation::RemovalNotAllowed(reason));
    }
    let stopped = earlier
        .iter()
        .any(|a| matches!(a, Action::StopPostgres { .. } | Action::Demote { .. }));
    if obs.postgres.is_running() && !stopped {
        return Err(Violation::RemovalWhileRunning);
    }
    Ok(())
}

fn server_precondition(obs: &Observation, action: &Action, earlier: &[Action]) -> bool {
    let server = obs.postgres.server();
    let stopped_earlier = earlier.iter().any(|a| {
        matches!(
            a,
            Action::Demote { .. }
                | Action::StopPostgres { .. }
                | Action::RemoveDataDirectory { .. }
        )
    });
    match action {
        Action::Promote => matches!(server, Some(PgServer::Replica(_))),
        Action::Demote { .. } => matches!(
            server,
            Some(PgServer::Primary(_))
                | Some(PgServer::Starting {
                    role: super::PgRole::Primary,
                    ..
                })
        ),
        Action::StartPostgres { .. } => {
            matches!(server, Some(PgServer::Stopped(_))) || stopped_earlier
        }
        Action::FollowLeader { .. } => matches!(server, Some(PgServer::Replica(_))),
        Action::RecoverCrash => matches!(server, Some(PgServer::Stopped(_))),
        _ => true,
    }
}

fn touches_postgres_in_pause(obs: &Observation, action: &Action) -> bool {
    let reinit = obs.requests.reinit.is_some();
    let failed_bootstrap = obs
        .memory
        .finished
        .as_ref()
        .is_some_and(|f| matches!(f.action, Action::Bootstrap));
    match action {
        Action::Promote => candidate(obs) != Some(obs.me.name.as_str()),
        Action::Demote {
            mode: DemoteMode::Graceful,
            ..
        } => candidate(obs).is_none_or(|c| c == obs.me.name),
        Action::Demote { .. }
        | Action::StartPostgres { .. }
        | Action::Rewind { .. }
        | Action::RecoverCrash => true,
        Action::StopPostgres { .. } => !reinit && !failed_bootstrap,
        Action::RemoveDataDirectory { .. } | Action::CloneReplica { .. } => !reinit,
        _ => false,
    }
}

fn primary_keeps_running_unlocked(
    obs: &Observation,
    cfg: &HaConfig,
    now: Tick,
    actions: &[Action],
) -> bool {
    if stops_or_exempt(obs, actions) {
        return false;
    }
    let locked = obs.cycle.lock.is_some_and(super::LockOutcome::holds);
    let grace = matches!(obs.dcs, DcsView::Unreachable)
        && obs
            .memory
            .last_lock_renewal
            .is_some_and(|t| now.saturating_sub(t) < cfg.retry_timeout);
    let failsafe = super::failsafe::keeps_primary(obs, cfg);
    !(locked || grace || failsafe)
}

fn candidate(obs: &Observation) -> Option<&str> {
    obs.cluster()
        .and_then(|c| c.pending_failover())
        .and_then(|f| f.candidate.as_deref())
        .filter(|c| !c.is_empty())
}
