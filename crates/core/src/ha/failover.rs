//! Manual failover and switchover (ha-loop.md §8): what the leader does
//! with a failover key, what the others do once the leader stepped down,
//! and whether anyone could take over at all.
//!
//! Deviation from Patroni: a candidate further behind the leader's last
//! position than `maximum_lag_on_failover` is never promoted, even when an
//! operator names it (Patroni skips the lag check for manual failovers).
//! Everybody applies the same rule to the candidate's reported position, so
//! the others take over instead of waiting for a candidate that will not.

use super::context::{Ctx, Need};
use super::decide::demote;
use super::health;
use super::schedule::seconds_until;
use super::{Action, Decision, DemoteMode, ReleaseLsn, SynchronousMode};
use crate::{Member, Tick};

/// What the leader does with the failover key.
#[derive(Debug)]
pub(super) enum LeaderFailover {
    /// Ask for the peers' health first.
    Peers,
    /// Step down: this is the final decision.
    HandOver(Decision),
    /// Stay leader; carry out `actions` (cleaning the key) first.
    Continue {
        /// Actions to put before the leader's own.
        actions: Vec<Action>,
        /// When to look again (a switchover scheduled within `loop_wait`).
        next_cycle_at: Option<Tick>,
    },
}

/// §8.2: the lock holder (lock renewed this cycle) and the failover key.
pub(super) fn from_leader(ctx: &Ctx<'_>) -> LeaderFailover {
    let stay = |actions, next_cycle_at| LeaderFailover::Continue {
        actions,
        next_cycle_at,
    };
    let Some(f) = ctx.failover() else {
        return stay(Vec::new(), None);
    };
    if ctx.paused() && !ctx.is_primary() {
        return stay(Vec::new(), None);
    }
    let clear = || {
        vec![Action::ClearFailover {
            version: Some(f.version.clone()),
        }]
    };
    if let Some(at) = f.scheduled_at.as_deref().filter(|s| !s.is_empty()) {
        if ctx.paused() {
            return stay(Vec::new(), None);
        }
        let Some(delta) = seconds_until(at, ctx.obs.wall_clock) else {
            // "Incorrect value of scheduled_at": clean up.
            return stay(clear(), None);
        };
        let loop_wait = ctx.cfg.loop_wait.as_secs_f64();
        if delta > loop_wait {
            // "Awaiting switchover at ...".
            return stay(Vec::new(), None);
        }
        if delta < -(1.5 * loop_wait).trunc() {
            // "Found a stale switchover value, cleaning up".
            return stay(clear(), None);
        }
        if delta > 0.0 {
            // Patroni sleeps until the time; we ask to be woken then.
            let wake = std::time::Duration::try_from_secs_f64(delta)
                .ok()
                .map(|d| ctx.now.saturating_add(d));
            return stay(Vec::new(), wake);
        }
    }
    let me = ctx.me();
    let leader_ok = f.leader.as_deref().is_none_or(|l| l.is_empty() || l == me);
    let candidate = ctx.failover_candidate();
    if !leader_ok || candidate == Some(me) || (candidate.is_none() && ctx.paused()) {
        // Leader mismatch, already the leader, or no candidate in pause.
        return stay(clear(), None);
    }
    match possible(ctx, None, false) {
        Need::Peers => LeaderFailover::Peers,
        Need::Ready(false) => stay(clear(), None),
        Need::Ready(true) => LeaderFailover::HandOver(Decision::new(
            vec![
                // A standby leader is no primary to demote: it stops, and the candidate
                // becomes the standby leader.
                if ctx.is_primary_or_starting_primary() {
                    demote(ctx.cfg, DemoteMode::Graceful)
                } else {
                    Action::StopPostgres {
                        mode: super::StopMode::Fast,
                    }
                },
                Action::ReleaseLeader {
                    last_lsn: ReleaseLsn::ShutdownCheckpoint,
                },
            ],
            format!("{}: demoting myself", ctx.failover_action_name()),
        )),
    }
}

/// §8.1: whether another member could take over: reachable, allowed to
/// promote, not lagging (behind `cluster_lsn` when given, else more than
/// `maximum_lag_on_failover` behind the last leader position), on the
/// cluster timeline when `check_timeline`. Only the named candidate counts
/// when there is one (unless `exclude_candidate`).
pub(super) fn possible(
    ctx: &Ctx<'_>,
    cluster_lsn: Option<u64>,
    exclude_candidate: bool,
) -> Need<bool> {
    let candidates: Vec<&Member> = ctx
        .cluster
        .members
        .iter()
        .filter(|m| eligible(ctx, m, exclude_candidate))
        .collect();
    if candidates.is_empty() {
        return Need::Ready(false);
    }
    if ctx.peers().is_none() {
        return Need::Peers;
    }
    let cluster_timeline = ctx.cluster_timeline();
    let healthy = candidates
        .iter()
        .filter_map(|m| ctx.eligible_peer(&m.name))
        .filter(|st| match cluster_lsn {
            Some(lsn) => st.wal_position >= lsn,
            None => !ctx.is_lagging(st.wal_position),
        })
        .filter(|st| {
            !ctx.cfg.check_timeline || (st.timeline != 0 && st.timeline >= cluster_timeline)
        })
        .count();
    // With a named candidate (not excluded) the quorum does not matter.
    let quorum_applies = exclude_candidate || ctx.failover_candidate().is_none();
    let healthy_u32 = u32::try_from(healthy).unwrap_or(u32::MAX);
    if ctx.quorum_active()
        && quorum_applies
        && healthy_u32 < ctx.cluster.sync.quorum.saturating_add(1)
    {
        // Patroni counts votes from -1 and wants `votes >= quorum`.
        return Need::Ready(false);
    }
    Need::Ready(healthy > 0)
}

/// Patroni's `get_failover_candidates` filter.
fn eligible(ctx: &Ctx<'_>, m: &Member, exclude_candidate: bool) -> bool {
    let failover = ctx.failover();
    let candidate = ctx.failover_candidate();
    let manual_failover_without_leader =
        failover.is_some_and(|f| f.leader.as_deref().is_none_or(str::is_empty));
    if ctx.sync_active() && !ctx.sync_matches(&m.name, false) && !manual_failover_without_leader {
        return false;
    }
    m.name != ctx.me()
        && !(exclude_candidate && Some(m.name.as_str()) == candidate)
        && !Ctx::member_tags(m).nofailover()
        && m.data.api_url.as_deref().is_some_and(|u| !u.is_empty())
        && (exclude_candidate || candidate.is_none_or(|c| c == m.name))
}

/// §8.3: the cluster has no leader and a failover key exists. Whether this
/// member should race.
pub(super) fn without_leader(ctx: &Ctx<'_>) -> Need<bool> {
    let Some(f) = ctx.failover() else {
        return Need::Ready(false);
    };
    let me = ctx.me();
    if let Some(candidate) = ctx.failover_candidate() {
        if candidate == me {
            return Need::Ready(!ctx.is_lagging(ctx.my_wal()));
        }
        if ctx.paused() {
            return Need::Ready(false);
        }
        if ctx.cfg.synchronous_mode == SynchronousMode::On && !ctx.sync_matches(me, true) {
            return Need::Ready(false);
        }
        if let Some(member) = ctx.cluster.member(candidate) {
            let asked = member
                .data
                .api_url
                .as_deref()
                .is_some_and(|u| !u.is_empty());
            if asked && ctx.peers().is_none() {
                return Need::Peers;
            }
            if ctx
                .eligible_peer(candidate)
                .is_some_and(|st| !ctx.is_lagging(st.wal_position))
            {
                // The candidate is healthy: let it win.
                return Need::Ready(false);
            }
        }
        // The candidate cannot take over: treat the key as naming nobody.
    } else if ctx.paused() {
        return Need::Ready(false);
    }
    let old_leader = f.leader.as_deref().filter(|l| !l.is_empty());
    if old_leader == Some(me) {
        return match possible(ctx, None, ctx.failover_candidate().is_some()) {
            Need::Peers => Need::Peers,
            Need::Ready(someone_else) => Need::Ready(!someone_else),
        };
    }
    let members: Vec<&Member> = ctx
        .cluster
        .members
        .iter()
        .filter(|m| Some(m.name.as_str()) != old_leader)
        .filter(|m| !ctx.sync_active() || ctx.sync_matches(&m.name, false))
        .collect();
    health::healthiest_among(ctx, &members)
}
