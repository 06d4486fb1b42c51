//! The lock holder (ha-loop.md §5, §6.3): renew the lock every cycle, demote
//! when that fails, hand over for a requested switchover, and make sure the
//! holder runs as primary.
//!
//! Invariant: [`Action::Promote`] is emitted only by [`enforce_primary`], never in a
//! standby cluster (whose lock holder is the standby leader: [`enforce_follow_remote`]),
//! and only when this cycle's lock write succeeded, the member is not
//! `nofailover`, is within `maximum_lag_on_failover` and, in pause, is the
//! named failover candidate.

use super::context::{Ctx, Need, sysid_valid};
use super::decide::{demote, lock_held, release};
use super::failover::{self, LeaderFailover};
use super::failsafe;
use super::{Action, Decision, DemoteMode, LockOutcome, PgRole, PgServer, ReleaseLsn};

/// The query that renews this member's lock, publishing the primary's WAL
/// position (and, in failsafe mode, the failsafe topology) with it.
pub(super) fn renew_step(ctx: &Ctx<'_>) -> Decision {
    // A standby leader publishes how far it got too (Patroni's `last_operation`), so its
    // followers' lag is judged against it.
    let standby_leader =
        ctx.is_standby_cluster() && matches!(ctx.server(), Some(PgServer::Replica(_)));
    let last_lsn = (ctx.is_primary() || standby_leader).then(|| ctx.my_wal());
    let failsafe = failsafe::topology(ctx);
    Decision::ask(
        Action::RenewLeader { last_lsn, failsafe },
        "renewing the leader lock",
    )
}

/// The query for the health of every other member.
pub(super) fn peers_step(ctx: &Ctx<'_>) -> Decision {
    Decision::ask(
        Action::CheckPeers {
            members: ctx.peer_targets(),
        },
        "checking the health of the other members",
    )
}

/// §5: this member holds the lock (per the DCS view) and Postgres runs.
pub(super) fn holder(ctx: &Ctx<'_>) -> Decision {
    // A standby leader is not a primary: in pause it keeps its lock.
    if ctx.paused() && !ctx.is_primary() && !ctx.is_standby_cluster() {
        if ctx.i_am_candidate() {
            return Decision::report("waiting to become primary after promote...");
        }
        return Decision::new(
            vec![release()],
            "removed leader lock because postgres is not running as primary",
        );
    }
    match ctx.lock() {
        None => renew_step(ctx),
        Some(LockOutcome::Refused) => {
            if !ctx.is_primary() {
                Decision::report("not promoting because failed to update leader lock in DCS")
            } else if ctx.paused() {
                Decision::report(
                    "continue to run as primary after failing to update leader lock in DCS",
                )
            } else {
                Decision::new(
                    vec![demote(ctx.cfg, DemoteMode::ImmediateNoLock)],
                    "demoted self because failed to update leader lock in DCS",
                )
            }
        }
        Some(LockOutcome::Acquired | LockOutcome::Renewed) => renewed(ctx),
    }
}

/// §5.2 after a successful renewal: housekeeping, a requested switchover,
/// then the primary role.
fn renewed(ctx: &Ctx<'_>) -> Decision {
    let mut first = housekeeping(ctx);
    let next_cycle_at = match failover::from_leader(ctx) {
        LeaderFailover::Peers => return peers_step(ctx),
        LeaderFailover::HandOver(d) => return d.prepend(first),
        LeaderFailover::Continue {
            actions,
            next_cycle_at,
        } => {
            first.extend(actions);
            next_cycle_at
        }
    };
    if ctx.is_standby_cluster() {
        let already = matches!(ctx.server(), Some(PgServer::Replica(r)) if r.upstream.as_ref().is_some_and(|u| u.remote));
        let message = if already || ctx.tags().nostream {
            format!(
                "no action. I am ({}), the standby leader with the lock",
                ctx.me()
            )
        } else {
            "promoted self to a standby leader because i had the session lock".to_owned()
        };
        return enforce_follow_remote(ctx, first, &message).with_next_cycle_at(next_cycle_at);
    }
    let message = format!("no action. I am ({}), the leader with the lock", ctx.me());
    enforce_primary(
        ctx,
        first,
        &message,
        "promoted self to leader because I had the session lock",
    )
    .with_next_cycle_at(next_cycle_at)
}

/// §2.4: the lock holder fills in a missing `initialize` and `config`.
fn housekeeping(ctx: &Ctx<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    if !sysid_valid(ctx.cluster.initialize.as_deref())
        && let Some(data) = ctx.data()
        && sysid_valid(Some(&data.sysid))
    {
        actions.push(Action::WriteInitializeKey {
            sysid: data.sysid.clone(),
        });
    }
    if ctx
        .cluster
        .config
        .as_ref()
        .is_none_or(|c| c.data.is_empty())
    {
        actions.push(Action::WriteConfig);
    }
    actions
}

/// §5.2: the holder of a fresh lock runs as primary. A running primary
/// needs nothing; a replica is promoted, unless it may not be (then the
/// lock goes back, so a member that may takes over).
pub(super) fn enforce_primary(
    ctx: &Ctx<'_>,
    first: Vec<Action>,
    message: &str,
    promote_message: &str,
) -> Decision {
    let activation = super::watchdog::activation(ctx.obs, ctx.cfg);
    if let super::watchdog::Activation::Ask(query) = activation {
        return Decision::ask(query, "activating the watchdog");
    }
    if matches!(activation, super::watchdog::Activation::Failed) {
        let mut actions = first;
        if ctx.is_primary() {
            actions.push(super::decide::demote(ctx.cfg, super::DemoteMode::Immediate));
            actions.push(release());
            return Decision::new(
                actions,
                "Demoting self because watchdog could not be activated",
            );
        }
        actions.push(release());
        return Decision::new(
            actions,
            "Not promoting self because watchdog could not be activated",
        );
    }
    if !ctx.paused() && pre_promote_just_failed(ctx) {
        let mut actions = first;
        actions.push(release());
        return Decision::new(
            actions,
            "Promotion cancelled because the pre-promote script failed",
        );
    }
    if ctx.is_primary() {
        return Decision::new(first, message);
    }
    if !lock_held(ctx.lock()) {
        // Not reachable from the rules above; refuse rather than promote.
        return Decision::new(
            first,
            "not promoting because the leader lock is not confirmed",
        );
    }
    let mut actions = first;
    if ctx.tags().nofailover() {
        actions.push(release());
        return Decision::new(
            actions,
            "released leader lock because I am not allowed to promote",
        );
    }
    if ctx.is_lagging(ctx.my_wal()) {
        actions.push(release());
        return Decision::new(
            actions,
            "released leader lock because my wal position exceeds maximum replication lag",
        );
    }
    if ctx.paused() && !ctx.i_am_candidate() {
        return Decision::new(actions, "not promoting because of pause");
    }
    actions.push(Action::Promote);
    Decision::new(actions, promote_message)
}

/// The lock holder of a standby cluster (Patroni's `enforce_follow_remote_member`): it
/// follows the remote primary and never promotes. A primary (the cluster was just turned into
/// a standby cluster) stops with a shutdown checkpoint and starts again as a replica of the
/// remote, keeping the lock (Patroni's `demote-cluster`).
pub(super) fn enforce_follow_remote(ctx: &Ctx<'_>, first: Vec<Action>, message: &str) -> Decision {
    if !ctx.paused()
        && ctx.is_primary_or_starting_primary()
        && let Some(remote) = ctx.standby_remote()
    {
        let mut actions = first;
        actions.push(demote(ctx.cfg, DemoteMode::Graceful));
        actions.push(Action::StartPostgres {
            role: super::StartRole::Replica {
                upstream: (!ctx.tags().nostream).then(|| remote.clone()),
            },
            timeout: None,
        });
        return Decision::new(actions, "demoting to a standby cluster");
    }
    super::follower::follow(ctx, "cannot be a real primary in standby cluster", message)
        .prepend(first)
}

/// The promotion of the previous cycle was abandoned because the `pre_promote` script failed
/// (Patroni: `_async_response.result is False`).
fn pre_promote_just_failed(ctx: &Ctx<'_>) -> bool {
    let memory = &ctx.obs.memory;
    let promote_failed = memory
        .finished
        .as_ref()
        .is_some_and(|f| f.action == Action::Promote && !f.succeeded);
    promote_failed && memory.pre_promote_failed_at.is_some()
}

/// §6.3: Postgres is starting. The lock holder renews and gives up on a
/// primary that takes longer than `primary_start_timeout` when somebody
/// else can take over. Everybody else (and everybody in pause) goes on with
/// the usual rules.
pub(super) fn starting(ctx: &Ctx<'_>) -> Option<Decision> {
    let Some(PgServer::Starting { since, role }) = ctx.server() else {
        return None;
    };
    if ctx.paused() || !ctx.view_says_leader() {
        return None;
    }
    Some(match ctx.lock() {
        None => renew_step(ctx),
        // A replica starting up is harmless without the lock: let it start.
        Some(LockOutcome::Refused) if *role == PgRole::Replica => return None,
        Some(LockOutcome::Refused) => Decision::new(
            vec![demote(ctx.cfg, DemoteMode::ImmediateNoLock)],
            "stopped PostgreSQL while starting up because leader key was lost",
        ),
        Some(LockOutcome::Acquired | LockOutcome::Renewed) => {
            let timeout = ctx.cfg.primary_start_timeout;
            let deadline = since.saturating_add(timeout);
            if ctx.now >= deadline {
                match failover::possible(ctx, None, false) {
                    Need::Peers => peers_step(ctx),
                    Need::Ready(true) => Decision::new(
                        vec![
                            demote(ctx.cfg, DemoteMode::Immediate),
                            Action::ReleaseLeader {
                                last_lsn: ReleaseLsn::Unchanged,
                            },
                        ],
                        "stopped PostgreSQL because of startup timeout",
                    ),
                    Need::Ready(false) => Decision::report(
                        "primary start has timed out, but continuing to wait because failover is not possible",
                    ),
                }
            } else {
                let left = deadline.saturating_sub(ctx.now).as_secs_f64();
                Decision::report(format!(
                    "PostgreSQL is still starting up, {left:.0} seconds until timeout"
                ))
                .with_next_cycle_at(Some(deadline))
            }
        }
    })
}
