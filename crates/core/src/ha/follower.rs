//! Members without the lock (ha-loop.md §6.1, §7): follow the right
//! upstream, demote a primary that has no lock, restart a stopped server as
//! a replica, and repair diverged timelines by rewind or reclone. The standby leader of a
//! standby cluster (which holds the lock but follows the remote primary) is handled here too.
//! In a standby cluster every member's history is judged against the remote primary's and
//! rewound from it (Patroni's `RemoteMember`), never re-cloned.
//!
//! Invariant: [`Action::RemoveDataDirectory`] is emitted here only when the
//! configuration allows it: after a failed rewind with
//! `remove_data_directory_on_rewind_failure` (or `..._on_diverged_timelines`),
//! or for diverged timelines with `remove_data_directory_on_diverged_timelines`
//! when rewind cannot be used.

use super::context::{Ctx, FollowTarget, Need};
use super::decide::{demote, release};
use super::failover;
use super::leader::{peers_step, renew_step};
use super::{
    Action, DataDirectory, Decision, DemoteMode, PgRole, PgServer, RemovalReason, StartRole,
    StopMode, Stopped, TimelineVerdict, Upstream,
};

/// §7.2: Postgres runs and this member does not hold the lock.
pub(super) fn follow(ctx: &Ctx<'_>, demote_reason: &str, follow_reason: &str) -> Decision {
    let target = ctx.node_to_follow();
    if ctx.paused() {
        if ctx.is_primary() {
            return Decision::report("continue to run as primary without lock");
        }
        if target == FollowTarget::Nobody {
            return Decision::report(format!("no action. I am ({})", ctx.me()));
        }
    } else if ctx.is_primary_or_starting_primary() {
        return Decision::new(
            vec![demote(ctx.cfg, DemoteMode::ImmediateNoLock)],
            demote_reason,
        );
    }
    let Some(PgServer::Replica(replica)) = ctx.server() else {
        // Starting: leave it alone until it runs.
        return Decision::report(follow_reason);
    };
    if !ctx.paused()
        && let Some(data) = ctx.data()
        && let Some(remote) = ctx.standby_remote_with_address()
    {
        // In a standby cluster every member is judged against the remote primary, as in
        // Patroni (`RemoteMember`), whenever it does not stream: a primary cluster demoted to
        // follow a cluster promoted past it, a remote that promoted again.
        if !replica.streaming
            && let Some(d) = repair_divergence_from_remote(ctx, data, remote, true)
        {
            return d;
        }
    } else if !ctx.paused()
        && let Some(data) = ctx.data()
    {
        let behind_leader = leader_timeline(ctx)
            .is_some_and(|leader_tl| replica.timeline.is_some_and(|mine| mine < leader_tl));
        let ask = ctx.obs.memory.first_cycle || behind_leader;
        // Still behind and not streaming: a verdict of "in sync" may have been made while
        // this standby was still receiving from the old primary past the fork point (issue
        // #11); judge again, once per loop.
        let recheck = behind_leader && !replica.streaming;
        if let Some(d) = repair_divergence(ctx, data, true, ask, recheck) {
            return d;
        }
    }
    let wanted = match target {
        FollowTarget::Nobody => None,
        FollowTarget::Member(u) => Some(u),
        FollowTarget::Unknown => return Decision::report(follow_reason),
    };
    if wanted != replica.upstream {
        return Decision::new(
            vec![Action::FollowLeader { upstream: wanted }],
            follow_reason,
        );
    }
    Decision::report(follow_reason)
}

/// §6.1 `recover`: Postgres is not running.
pub(super) fn recover(ctx: &Ctx<'_>, data: &DataDirectory, stopped: &Stopped) -> Decision {
    if ctx.paused() {
        if ctx.view_says_leader() {
            return Decision::new(
                vec![release()],
                "removed leader lock because postgres is not running",
            );
        }
        return Decision::report("postgres is not running");
    }
    let holder = if ctx.view_says_leader() {
        match ctx.lock() {
            None => return renew_step(ctx),
            Some(outcome) => outcome.holds(),
        }
    } else {
        false
    };
    if holder && let Some(remote) = ctx.standby_remote() {
        // A verdict against the remote that asks for pg_rewind is acted on before starting.
        if let Some(remote) = ctx.standby_remote_with_address()
            && let Some(d) = repair_divergence_from_remote(ctx, data, remote, false)
        {
            return d;
        }
        // Patroni: the standby leader is never restarted as a primary.
        return Decision::new(
            vec![Action::StartPostgres {
                role: StartRole::Replica {
                    upstream: (!ctx.tags().nostream).then(|| remote.clone()),
                },
                timeout: None,
            }],
            "starting as a standby leader because i had the session lock",
        );
    }
    if holder {
        return recover_holder(ctx, stopped);
    }
    if let Some(d) = crash_recovery(ctx, data, stopped) {
        return d;
    }
    let repair = match ctx.standby_remote_with_address() {
        Some(remote) => repair_divergence_from_remote(ctx, data, remote, false),
        None => repair_divergence(ctx, data, false, true, false),
    };
    if let Some(d) = repair {
        return d;
    }
    let upstream = match ctx.node_to_follow() {
        FollowTarget::Member(u) => Some(u),
        FollowTarget::Nobody | FollowTarget::Unknown => None,
    };
    let message = if upstream.as_ref().is_some_and(|u| u.remote) {
        "trying to follow a remote member because standby cluster is unhealthy"
    } else {
        "starting as a secondary"
    };
    Decision::new(
        vec![Action::StartPostgres {
            role: StartRole::Replica { upstream },
            timeout: None,
        }],
        message,
    )
}

/// §6.1: a data directory that did not shut down cleanly as a primary (crashed, or stopped
/// immediately after losing the lock) is first recovered in single-user mode when the
/// cluster has no leader or a rewind may follow, as Patroni does: only then does
/// `pg_control` name the timeline it last wrote, which the divergence check needs (a
/// primary killed right after its promotion still shows the old timeline). Once per
/// failure: a failed attempt is not repeated in the next cycle. A base backup that has not
/// finished its recovery (`backup_label`) looks crashed too and is left alone.
fn crash_recovery(ctx: &Ctx<'_>, data: &DataDirectory, stopped: &Stopped) -> Option<Decision> {
    use super::ControlState::{InCrashRecovery, InProduction, ShuttingDown};
    let unclean = matches!(
        stopped.control,
        InProduction | ShuttingDown | InCrashRecovery
    );
    let can_rewind = ctx.cfg.use_pg_rewind && data.pg_rewind_usable;
    let just_failed = ctx
        .obs
        .memory
        .finished
        .as_ref()
        .is_some_and(|f| matches!(f.action, Action::RecoverCrash) && !f.succeeded);
    let eligible = unclean && !stopped.restored_from_backup;
    (eligible && (!ctx.cluster.is_locked() || can_rewind) && !just_failed).then(|| {
        let action = Action::RecoverCrash;
        let message = action.task_name();
        Decision::new(vec![action], message)
    })
}

/// §6.1 for the lock holder (lock renewed this cycle).
fn recover_holder(ctx: &Ctx<'_>, stopped: &Stopped) -> Decision {
    let crashed_primary = stopped.crashed_as == Some(PgRole::Primary)
        && stopped.control.was_primary()
        && !stopped.recovery_signal;
    let timeout = ctx.cfg.primary_start_timeout;
    if crashed_primary {
        let last_healthy = ctx.obs.memory.last_healthy.unwrap_or(ctx.now);
        if ctx.now.saturating_sub(last_healthy) >= timeout {
            match failover::possible(ctx, None, false) {
                Need::Peers => return peers_step(ctx),
                Need::Ready(true) => {
                    return Decision::new(
                        vec![release()],
                        "stopped PostgreSQL to fail over after a crash",
                    );
                }
                Need::Ready(false) => {}
            }
        }
        if !timeout.is_zero() {
            return Decision::new(
                vec![Action::StartPostgres {
                    role: StartRole::Primary,
                    timeout: Some(timeout),
                }],
                "starting primary after failure",
            );
        }
    }
    Decision::new(
        vec![Action::StartPostgres {
            role: StartRole::Replica { upstream: None },
            timeout: None,
        }],
        "starting as readonly because i had the session lock",
    )
}

/// §7.3: when this member's history may have diverged from the leader's,
/// learn whether it did (`ask` allows the query; `recheck` asks again, once per loop, after
/// an "in sync" verdict), then rewind, reclone or remove the data as configured. A verdict
/// made against another timeline of the leader is not used. `None`: nothing to repair (or not
/// known yet and not worth asking).
fn repair_divergence(
    ctx: &Ctx<'_>,
    data: &DataDirectory,
    running: bool,
    ask: bool,
    recheck: bool,
) -> Option<Decision> {
    let cfg = ctx.cfg;
    let can_rewind = cfg.use_pg_rewind && data.pg_rewind_usable;
    let can_reclone = cfg.remove_data_directory_on_diverged_timelines;
    let leader = ctx.leader_upstream()?;
    let leader_tl = leader_timeline(ctx).unwrap_or(0);
    let check = ctx
        .obs
        .memory
        .timeline_check
        .as_ref()
        .filter(|c| c.leader == leader.member)
        .filter(|c| c.leader_timeline == leader_tl || c.verdict == TimelineVerdict::RewindFailed);
    let stop = |mut actions: Vec<Action>| {
        if running {
            actions.insert(
                0,
                Action::StopPostgres {
                    mode: StopMode::Immediate,
                },
            );
        }
        actions
    };
    match check.map(|c| (c.verdict, c.checked_at)) {
        None if ask && (can_rewind || can_reclone) => Some(check_step(leader)),
        Some((TimelineVerdict::InSync, at))
            if recheck
                && (can_rewind || can_reclone)
                && at.saturating_add(cfg.loop_wait) <= ctx.now =>
        {
            Some(check_step(leader))
        }
        Some((TimelineVerdict::Undetermined, at)) if ask && at < ctx.now => {
            Some(check_step(leader))
        }
        Some((TimelineVerdict::NeedsRewind, _)) if can_rewind => {
            let rewind = Action::Rewind { from: leader };
            let message = rewind.task_name();
            Some(Decision::new(vec![rewind], message))
        }
        Some((TimelineVerdict::NeedsRewind, _)) if can_reclone => {
            let source = ctx.clone_source()?;
            Some(Decision::new(
                stop(vec![
                    Action::RemoveDataDirectory {
                        reason: RemovalReason::DivergedTimelines,
                    },
                    Action::CloneReplica { source },
                ]),
                "reinitializing due to diverged timelines",
            ))
        }
        Some((TimelineVerdict::RewindFailed, _))
            if cfg.remove_data_directory_on_rewind_failure || can_reclone =>
        {
            Some(Decision::new(
                stop(vec![Action::RemoveDataDirectory {
                    reason: RemovalReason::RewindFailed,
                }]),
                "removing data directory after pg_rewind failure",
            ))
        }
        _ => None,
    }
}

/// The repair of a standby cluster's member (Patroni's `_handle_rewind_or_reinitialize` with
/// the `RemoteMember`): learn whether its history diverged from the remote primary's (`ask`; an
/// answer older than `loop_wait` that found nothing to repair is asked again, since the remote
/// may have promoted since), then `pg_rewind` from the remote. Never a re-clone: Patroni does not
/// re-initialise a standby cluster's member because of diverged timelines. A failed rewind is not
/// tried again (the server runs on as it is, the data directory is kept) until the agent
/// restarts. `None`: nothing to do.
fn repair_divergence_from_remote(
    ctx: &Ctx<'_>,
    data: &DataDirectory,
    remote: Upstream,
    ask: bool,
) -> Option<Decision> {
    let cfg = ctx.cfg;
    if !(cfg.use_pg_rewind && data.pg_rewind_usable) {
        return None;
    }
    let check = ctx
        .obs
        .memory
        .timeline_check
        .as_ref()
        .filter(|c| c.leader == remote.member);
    match check.map(|c| (c.verdict, c.checked_at)) {
        None if ask => Some(check_step(remote)),
        Some((TimelineVerdict::InSync | TimelineVerdict::Undetermined, at))
            if ask && at.saturating_add(cfg.loop_wait) <= ctx.now =>
        {
            Some(check_step(remote))
        }
        Some((TimelineVerdict::NeedsRewind, _)) => {
            let rewind = Action::Rewind { from: remote };
            let message = rewind.task_name();
            Some(Decision::new(vec![rewind], message))
        }
        _ => None,
    }
}

/// The query comparing timelines with `leader`.
fn check_step(leader: Upstream) -> Decision {
    let message = format!("checking timeline divergence from {}", leader.member);
    Decision::ask(Action::CheckTimeline { leader }, message)
}

/// The timeline the leader last published in its member record.
fn leader_timeline(ctx: &Ctx<'_>) -> Option<u64> {
    let name = ctx.cluster.leader_name()?;
    ctx.cluster.member(name)?.data.timeline
}
