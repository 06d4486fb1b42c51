//! Am I the healthiest member? (ha-loop.md §4.2, `is_healthiest_node`)
//!
//! Evaluated by every member when the cluster has no leader. Several members
//! may answer yes at once (equal WAL positions); the atomic lock creation
//! decides between them. A member answers no when it is lagging more than
//! `maximum_lag_on_failover` behind the last leader position, is
//! `nofailover`, is behind the cluster timeline (with `check_timeline`),
//! sees a live primary, sees an eligible member further ahead, or sees an
//! equally advanced member with a higher `failover_priority`. In failsafe mode a member
//! missing from the published topology never races, and the topology's members without a
//! member key are asked too.

use super::context::{Ctx, Need};
use super::failover;
use super::failsafe;
use crate::Member;

/// Whether this member should race for the lock.
pub(super) fn is_healthiest(ctx: &Ctx<'_>) -> Need<bool> {
    if ctx
        .obs
        .memory
        .pre_promote_failed_at
        .is_some_and(|t| ctx.now.saturating_sub(t) < ctx.cfg.ttl)
    {
        // "backoff: skip leader race after pre_promote script failure and releasing the lock
        // voluntarily".
        return Need::Ready(false);
    }
    let failover = ctx.failover();
    if ctx.paused()
        && !ctx.tags().nofailover()
        && failover.is_some_and(|f| f.scheduled_at.as_deref().is_none_or(str::is_empty))
    {
        return failover::without_leader(ctx);
    }
    if ctx.is_starting() {
        return Need::Ready(false);
    }
    if ctx.is_primary() {
        if ctx.paused() {
            // In pause only a primary of this very cluster takes the lock.
            let init = ctx.cluster.initialize.as_deref().filter(|i| !i.is_empty());
            let mine = ctx.data().map(|d| d.sysid.as_str());
            return Need::Ready(init.is_none() || init == mine);
        }
        // A stale primary must not grab the lock back from a promoted replica.
        let timeline = ctx.my_timeline().unwrap_or(0);
        return Need::Ready(timeline >= ctx.cluster_timeline());
    }
    if ctx.paused() || ctx.tags().nofailover() {
        return Need::Ready(false);
    }
    if let Some(f) = failover {
        let switchover = f.leader.as_deref().is_some_and(|l| !l.is_empty());
        if switchover && ctx.sync_active() && !ctx.sync_matches(ctx.me(), true) {
            return Need::Ready(false);
        }
        return failover::without_leader(ctx);
    }
    if !super::watchdog::healthy(ctx.obs, ctx.cfg) {
        // Patroni: "Watchdog device is not usable".
        return Need::Ready(false);
    }
    if failsafe::race_disqualified(ctx) {
        return Need::Ready(false);
    }
    let extra = failsafe::extra_members(ctx);
    let known = ctx.cluster.members.iter().chain(&extra);
    let members: Vec<&Member> = if ctx.sync_active() {
        if !ctx.quorum_active() && !ctx.sync_matches(ctx.me(), true) {
            return Need::Ready(false);
        }
        known.filter(|m| ctx.sync_matches(&m.name, true)).collect()
    } else {
        known.collect()
    };
    healthiest_among(ctx, &members)
}

/// Patroni's `_is_healthiest_node` against `members`, always with the lag
/// check (see the deviation noted in [`failover`]).
pub(super) fn healthiest_among(ctx: &Ctx<'_>, members: &[&Member]) -> Need<bool> {
    let my_wal = ctx.my_wal();
    if ctx.is_lagging(my_wal) {
        // "My wal position exceeds maximum replication lag".
        return Need::Ready(false);
    }
    if ctx.cfg.check_timeline {
        match ctx.my_timeline() {
            None => return Need::Ready(false),
            Some(tl) if tl < ctx.cluster_timeline() => return Need::Ready(false),
            Some(_) => {}
        }
    }
    let quorum_active = ctx.quorum_active();
    let sync = &ctx.cluster.sync;
    let voter = |name: &str| quorum_active && sync.sync_standby.iter().any(|s| s == name);
    let others: Vec<&Member> = members
        .iter()
        .copied()
        .filter(|m| m.name != ctx.me())
        .filter(|m| m.data.api_url.as_deref().is_some_and(|u| !u.is_empty()))
        .filter(|m| !Ctx::member_tags(m).nofailover() || voter(&m.name))
        .collect();
    if !others.is_empty() && ctx.peers().is_none() {
        return Need::Peers;
    }
    let former_leader = if ctx.sync_active() {
        sync.leader.as_deref()
    } else {
        None
    };
    let my_priority = ctx.tags().failover_priority();
    let mut votes: i64 = if voter(ctx.me()) { 0 } else { -1 };
    let mut nodes_ahead = 0;
    for m in &others {
        let Some(st) = ctx.eligible_peer(&m.name) else {
            continue;
        };
        if !st.in_recovery {
            // "Primary (x) is still alive".
            return Need::Ready(false);
        }
        if my_wal < st.wal_position {
            // "Wal position of x is ahead of my wal position".
            nodes_ahead += 1;
            if !ctx.sync_active() || former_leader != Some(m.name.as_str()) {
                return Need::Ready(false);
            }
        } else if st.wal_position > 0 {
            let quorum_vote = voter(&m.name);
            let mut low_priority =
                my_wal == st.wal_position && my_priority < st.tags.failover_priority();
            if low_priority && former_leader == Some(m.name.as_str()) {
                low_priority = false;
            }
            if low_priority && (!quorum_active || quorum_vote) {
                // "x has equally tolerable WAL position and priority N, while
                // this node has priority M".
                return Need::Ready(false);
            }
            if quorum_vote {
                votes += 1;
            }
        }
    }
    Need::Ready(
        !quorum_active
            || votes >= i64::from(sync.quorum)
            || (nodes_ahead == 0 && sync.leader.as_deref() == Some(ctx.me())),
    )
}
