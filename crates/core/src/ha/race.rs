//! The cluster has no leader (ha-loop.md §4, `process_unhealthy_cluster`):
//! optionally wait (`primary_race_backoff`), judge whether this member is the
//! healthiest, race for the lock, and promote or follow.

use super::context::{Ctx, Need};
use super::follower;
use super::health;
use super::leader::{enforce_primary, peers_step};
use super::{Action, Decision, LockOutcome, PgServer};

/// §4: Postgres runs and nobody holds the lock.
pub(super) fn unlocked(ctx: &Ctx<'_>) -> Decision {
    if ctx.lock().is_none()
        && let Some(d) = backoff(ctx)
    {
        return d;
    }
    match ctx.lock() {
        Some(LockOutcome::Acquired | LockOutcome::Renewed) => won(ctx),
        Some(LockOutcome::Refused) => follower::follow(
            ctx,
            "demoted self after trying and failing to obtain lock",
            "following new leader after trying and failing to obtain lock",
        ),
        None => match health::is_healthiest(ctx) {
            Need::Peers => peers_step(ctx),
            Need::Ready(true) => acquire_step(ctx, "racing for the leader lock"),
            Need::Ready(false) if ctx.tags().nofailover() => follower::follow(
                ctx,
                "demoting self because I am not allowed to become primary",
                "following a different leader because I am not allowed to promote",
            ),
            Need::Ready(false) => follower::follow(
                ctx,
                "demoting self because i am not the healthiest node",
                "following a different leader because i am not the healthiest node",
            ),
        },
    }
}

/// The query that takes the lock, unless the DCS view may predate a suspension of this
/// process: then the view is read again at once instead (issue #11: a former leader resumed
/// after `ttl` judged its own stale record expired and took the lock of the member promoted
/// meanwhile).
pub(super) fn acquire_step(ctx: &Ctx<'_>, message: &str) -> Decision {
    if ctx.obs.view_predates_pause() {
        return Decision::report(
            "not racing for the leader lock: the DCS view predates a suspension of this agent; reading it again",
        )
        .with_next_cycle_at(Some(ctx.now));
    }
    Decision::ask(Action::AcquireLeader, message)
}

/// §4.3: the lock is ours. Clean the failover key (in pause keep its
/// candidate, so the pending promotion keeps the lock), then run as primary.
fn won(ctx: &Ctx<'_>) -> Decision {
    let mut first = Vec::new();
    if let Some(f) = ctx.failover() {
        let leader_named = f.leader.as_deref().is_some_and(|l| !l.is_empty());
        match ctx.failover_candidate() {
            Some(candidate) if ctx.paused() && leader_named => {
                first.push(Action::RetargetFailover {
                    candidate: candidate.to_string(),
                    scheduled_at: f.scheduled_at.clone(),
                    version: f.version.clone(),
                });
            }
            _ => first.push(Action::ClearFailover { version: None }),
        }
    }
    if ctx.is_standby_cluster() {
        // The standby leader disappeared and this is the healthiest replica: it becomes the
        // new standby leader by following the remote primary (no promotion).
        return super::leader::enforce_follow_remote(
            ctx,
            first,
            "promoted self to a standby leader by acquiring session lock",
        );
    }
    enforce_primary(
        ctx,
        first,
        "acquired session lock as a leader",
        "promoted self to leader by acquiring session lock",
    )
}

/// §4.1: after the leader vanished, a replica whose WAL still moves waits
/// up to `primary_race_backoff` (and always at least one cycle) so that a
/// leader that merely missed a renewal can come back.
fn backoff(ctx: &Ctx<'_>) -> Option<Decision> {
    let cfg = ctx.cfg;
    let memory = &ctx.obs.memory;
    if cfg.primary_race_backoff.is_zero()
        || ctx.paused()
        || ctx.is_standby_cluster()
        || ctx.failover_candidate().is_some()
        || memory.previous_wal.is_none()
    {
        return None;
    }
    let since = memory.unlocked_since.unwrap_or(ctx.now);
    let deadline = since.saturating_add(cfg.primary_race_backoff);
    let left = deadline.saturating_sub(ctx.now);
    let streaming = matches!(ctx.server(), Some(PgServer::Replica(r)) if r.streaming);
    let moved = memory.previous_wal.is_some_and(|prev| ctx.my_wal() > prev);
    let first_cycles = left > cfg.primary_race_backoff.saturating_sub(cfg.loop_wait);
    if (!left.is_zero() && streaming && moved) || first_cycles {
        return Some(
            Decision::report(format!(
                "My ({}) wal position moved since last heart beat loop, {:.0} seconds until leader race",
                ctx.me(),
                left.as_secs_f64()
            ))
            .with_next_cycle_at(Some(deadline.min(ctx.now.saturating_add(cfg.loop_wait)))),
        );
    }
    None
}
