//! The entry point: [`decide`], and the rules that come before any role
//! logic (ha-loop.md §2): shutdown, DCS outage, background work in
//! progress, a starting server, the end of a bootstrap or a failed start,
//! reinitialise requests, the data directory and its system identifier.
//!
//! The order of the checks is Patroni's `_run_cycle`; each one either
//! returns a decision or passes to the next. Nothing here may panic: a
//! stalled or crashed decision stops the whole agent.

use super::context::{Ctx, sysid_valid};
use super::{
    Action, DataDirectory, Decision, DemoteMode, HaConfig, LocalPostgres, LockOutcome, Observation,
    PgServer, ReinitRequest, ReleaseLsn, RemovalReason, StartRole, StopMode, bootstrap, failsafe,
    follower, leader, race,
};
use crate::Tick;

/// Decides what this member does next.
///
/// # Guarantees
/// A pure function of its arguments: no I/O, no clock, no randomness. The
/// result either asks exactly one query ([`Decision::query`]; feed the
/// outcome back and call again within the cycle) or is final. Final
/// decisions never promote without the lock, never promote a `nofailover`
/// or lagging member, demote a primary that cannot keep its lock, never
/// bootstrap over existing data and never remove data unless allowed (see
/// [`invariants::check`](super::invariants::check)).
pub fn decide(obs: &Observation, cfg: &HaConfig, now: Tick) -> Decision {
    let mut d = decide_unprefixed(obs, cfg, now);
    if obs.paused {
        d.message = format!("PAUSE: {}", d.message);
    }
    // As Patroni's async executor wakes the HA loop when a promotion or demotion ends: the
    // next cycle, right after, publishes the new role (the pod's role label that routes the
    // primary Service), not loop_wait later. Not again right after one that failed.
    let failed_before = obs
        .memory
        .finished
        .as_ref()
        .is_some_and(|f| !f.succeeded && changes_role(&f.action));
    if d.is_final() && !failed_before && d.actions.iter().any(changes_role) {
        d.next_cycle_at = Some(now);
    }
    d
}

/// Whether `action` turns this member's PostgreSQL into a primary or out of one.
fn changes_role(action: &Action) -> bool {
    matches!(action, Action::Promote | Action::Demote { .. })
}

fn decide_unprefixed(obs: &Observation, cfg: &HaConfig, now: Tick) -> Decision {
    if obs.requests.shutdown {
        return shutdown(obs);
    }
    let Some(read) = obs.cluster() else {
        return dcs_unreachable(obs, cfg, now);
    };
    let failsafe_view = failsafe::leader_view(obs, cfg, now, read);
    let cluster = failsafe_view.as_ref().unwrap_or(read);
    let ctx = Ctx {
        obs,
        cfg,
        now,
        cluster,
    };
    if let Some(running) = &obs.memory.in_progress {
        return in_progress(&ctx, running);
    }
    // A reinitialise request comes before a server that keeps failing to start: it is the
    // way out of that (issue #11: a forced reinitialise was answered and never run while
    // PostgreSQL crash-looped).
    if let Some(d) = obs.requests.reinit.and_then(|r| reinitialize(&ctx, r)) {
        return d;
    }
    if let Some(d) = leader::starting(&ctx) {
        return d;
    }
    if let Some(d) = bootstrap::after_bootstrap(&ctx) {
        return d;
    }
    if let Some(d) = after_failed_start(&ctx) {
        return d;
    }
    match &obs.postgres {
        LocalPostgres::Empty => bootstrap::empty_data_directory(&ctx),
        LocalPostgres::Inaccessible { error } => {
            if ctx.view_says_leader() {
                Decision::new(
                    vec![release()],
                    "released leader key voluntarily as data dir not accessible and currently leader",
                )
            } else {
                Decision::report(format!("data directory is not accessible: {error}"))
            }
        }
        LocalPostgres::Data(data) => with_data(&ctx, data),
    }
}

/// §19: stop Postgres and hand the lock over; in pause leave both alone.
fn shutdown(obs: &Observation) -> Decision {
    if obs.paused {
        return Decision::report(
            "shutting down: leaving PostgreSQL running and the leader lock in place",
        );
    }
    let holder = match obs.cluster() {
        Some(c) => c.leader_name() == Some(obs.me.name.as_str()),
        // Unknown: try; the release is conditional on our own name.
        None => obs.postgres.is_primary(),
    };
    let running = obs.postgres.is_running();
    let mut actions = Vec::new();
    if obs.memory.in_progress.is_some() {
        actions.push(Action::CancelAsync);
    }
    if running {
        actions.push(Action::StopPostgres {
            mode: StopMode::Fast,
        });
    }
    if holder {
        actions.push(Action::ReleaseLeader {
            last_lsn: if running {
                ReleaseLsn::ShutdownCheckpoint
            } else {
                ReleaseLsn::Unchanged
            },
        });
    }
    let message = match (running, holder) {
        (true, true) => "shutting down: stopping PostgreSQL, then releasing the leader lock",
        (true, false) => "shutting down: stopping PostgreSQL",
        (false, true) => "shutting down: releasing the leader lock",
        (false, false) => "shutting down",
    };
    Decision::new(actions, message)
}

/// §13: without the DCS a primary cannot know it still holds the lock. It
/// keeps running only while its last renewal is younger than
/// `retry_timeout`, then, unless failsafe mode holds it ([`failsafe::outage`]), stops and
/// restarts read-only following nobody.
fn dcs_unreachable(obs: &Observation, cfg: &HaConfig, now: Tick) -> Decision {
    let bootstrapping = matches!(obs.memory.in_progress, Some(Action::Bootstrap));
    if obs.paused || !obs.postgres.is_primary() || bootstrapping {
        return Decision::report("DCS is not accessible");
    }
    if let Some(renewed) = obs.memory.last_lock_renewal
        && now.saturating_sub(renewed) < cfg.retry_timeout
    {
        return Decision::report("DCS is not accessible")
            .with_next_cycle_at(Some(renewed.saturating_add(cfg.retry_timeout)));
    }
    if let Some(d) = failsafe::outage(obs, cfg) {
        return d;
    }
    let mut actions = Vec::new();
    if obs.memory.in_progress.is_some() {
        actions.push(Action::CancelAsync);
    }
    actions.push(demote(cfg, DemoteMode::Offline));
    actions.push(Action::StartPostgres {
        role: StartRole::Replica { upstream: None },
        timeout: None,
    });
    Decision::new(
        actions,
        "demoted self because DCS is not accessible and I was a leader",
    )
}

/// §11: while something runs in the background the lock holder only renews
/// its lock; a member that is not the holder cancels a promotion and stops a
/// primary it may be starting.
fn in_progress(ctx: &Ctx<'_>, running: &Action) -> Decision {
    let name = running.task_name();
    if ctx.view_says_leader() {
        match ctx.lock() {
            None => return leader::renew_step(ctx),
            Some(o) if o.holds() => {
                return Decision::report(format!("updated leader lock during {name}"));
            }
            Some(_) => {}
        }
    }
    let bootstrapping = matches!(running, Action::Bootstrap);
    if !bootstrapping && !ctx.paused() {
        // A primary (including one a promotion already produced) stops.
        if ctx.is_primary_or_starting_primary() {
            return Decision::new(
                vec![
                    Action::CancelAsync,
                    demote(ctx.cfg, DemoteMode::ImmediateNoLock),
                ],
                format!("lost leader lock during {name}"),
            );
        }
        if matches!(running, Action::Promote) {
            return Decision::new(vec![Action::CancelAsync], "lost leader before promote");
        }
    }
    Decision::report(format!("{name} in progress"))
}

/// §6.2: a start that failed makes the lock holder give the lock up.
fn after_failed_start(ctx: &Ctx<'_>) -> Option<Decision> {
    let finished = ctx.obs.memory.finished.as_ref()?;
    if finished.succeeded
        || !matches!(finished.action, Action::StartPostgres { .. })
        || ctx.obs.postgres.is_running()
    {
        return None;
    }
    Some(if ctx.view_says_leader() {
        Decision::new(
            vec![release()],
            "removed leader key after trying and failing to start postgres",
        )
    } else {
        Decision::report("failed to start postgres")
    })
}

/// §17: rebuild this replica from the leader or a `clonefrom` member.
/// Ignored (the REST API refuses it first) on the leader or without one.
fn reinitialize(ctx: &Ctx<'_>, request: ReinitRequest) -> Option<Decision> {
    if !ctx.cluster.is_locked() || ctx.view_says_leader() {
        return None;
    }
    let source = if request.from_leader {
        ctx.leader_upstream().map(super::CloneSource::Leader)
    } else {
        ctx.clone_source()
    }?;
    let mut actions = Vec::new();
    if ctx.obs.postgres.is_running() {
        actions.push(Action::StopPostgres {
            mode: StopMode::Immediate,
        });
    }
    actions.push(Action::RemoveDataDirectory {
        reason: RemovalReason::ReinitRequested,
    });
    let clone = Action::CloneReplica { source };
    let message = format!("reinitialize: {}", clone.task_name());
    actions.push(clone);
    Some(Decision::new(actions, message))
}

/// §2.10–12: the system identifier must match the cluster's; then the
/// server is recovered when down, or handed to the leader, race or
/// follower rules.
fn with_data(ctx: &Ctx<'_>, data: &DataDirectory) -> Decision {
    let sysid = data.sysid.as_str();
    if !sysid_valid(Some(sysid)) {
        return Decision::report(
            "data dir for the cluster is not empty, but system ID is invalid; consider doing reinitialize",
        );
    }
    let mut first = Vec::new();
    let initialize = ctx.cluster.initialize.as_deref();
    // pg_controldata failed (no sysid): nothing to compare or publish this cycle. Patroni
    // compares the empty string and exits with a mismatch; a passing failure should not.
    let known = sysid_valid(Some(sysid));
    if sysid_valid(initialize) {
        if known && initialize != Some(sysid) {
            if !ctx.paused() {
                let reason = format!(
                    "system ID mismatch, node {} belongs to a different cluster: {} != {}",
                    ctx.me(),
                    initialize.unwrap_or_default(),
                    sysid
                );
                return Decision::new(
                    vec![Action::Fatal {
                        reason: reason.clone(),
                    }],
                    reason,
                );
            }
            if ctx.view_says_leader() {
                return Decision::new(
                    vec![release()],
                    "released leader key voluntarily due to the system ID mismatch",
                );
            }
        }
    } else if known && !ctx.cluster.is_locked() && !ctx.paused() && ctx.obs.memory.first_cycle {
        if matches!(data.server, PgServer::Replica(_)) {
            let reason =
                "No initialize key in DCS and PostgreSQL is running as replica, aborting start";
            return Decision::new(
                vec![Action::Fatal {
                    reason: reason.into(),
                }],
                reason,
            );
        }
        first.push(Action::WriteInitializeKey {
            sysid: sysid.to_string(),
        });
    }
    let d = match &data.server {
        PgServer::Stopped(stopped) => follower::recover(ctx, data, stopped),
        _ if !ctx.cluster.is_locked() => race::unlocked(ctx),
        _ if ctx.view_says_leader() => leader::holder(ctx),
        _ if ctx.is_standby_cluster() => {
            let leader = ctx.cluster.leader_name().unwrap_or_default();
            follower::follow(
                ctx,
                "cannot be a real primary in a standby cluster",
                &format!(
                    "no action. I am ({}), a secondary, and following a standby leader ({leader})",
                    ctx.me()
                ),
            )
        }
        _ => {
            let leader = ctx.cluster.leader_name().unwrap_or_default();
            follower::follow(
                ctx,
                "demoting self because I do not have the lock and I was a leader",
                &format!(
                    "no action. I am ({}), a secondary, and following a leader ({leader})",
                    ctx.me()
                ),
            )
        }
    };
    d.prepend(first)
}

/// `ReleaseLeader` without a new LSN.
pub(super) fn release() -> Action {
    Action::ReleaseLeader {
        last_lsn: ReleaseLsn::Unchanged,
    }
}

/// `Demote` in `mode` with the configured stop timeout.
pub(super) fn demote(cfg: &HaConfig, mode: DemoteMode) -> Action {
    Action::Demote {
        mode,
        stop_timeout: cfg.demote_stop_timeout(),
    }
}

/// Whether this cycle's lock write succeeded.
pub(super) fn lock_held(outcome: Option<LockOutcome>) -> bool {
    outcome.is_some_and(LockOutcome::holds)
}
