//! What the primary does next to keep `/sync` and `synchronous_standby_names` in line
//! (Patroni's `Ha._process_multisync_replication`, `_handle_synchronous_strict_mode`,
//! `disable_synchronous_replication` and `_process_multisync_prepromote`).
//!
//! The order is the safety property: `/sync` never lists a standby that was not synchronous
//! for every commit since it was listed. So a standby is added to `synchronous_standby_names`
//! first and to `/sync` only once it is confirmed; it is removed from `/sync` first and from
//! `synchronous_standby_names` after. Each call returns the first step still needed; the
//! runtime performs it, observes again and calls again, until [`SyncStep::Done`].

use super::names::{SyncType, contains};
use super::select::{SyncCandidates, SyncSettings};
use crate::SyncState;

/// One step of synchronous replication management.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    /// Write `/sync` as `(me, standbys)`, conditionally on the version read; stop for this
    /// cycle when refused.
    WriteSync {
        /// The synchronous standbys to publish.
        standbys: Vec<String>,
    },
    /// Empty `/sync` (synchronous mode was turned off).
    DeleteSync,
    /// Set `synchronous_standby_names` to these standbys (`num` must confirm; all when
    /// `None`), reload, observe again.
    SetNames {
        /// The standbys to list.
        standbys: Vec<String>,
        /// How many must confirm.
        num: Option<u32>,
    },
    /// Give PostgreSQL a moment to report the newly listed standbys as synchronous, then
    /// observe again (Patroni sleeps 2 s once).
    WaitForConfirmation,
    /// Nothing more this cycle; `strict_waiting` when commits wait for a standby that is not
    /// there (strict mode).
    Done {
        /// Strict mode holds commits back for lack of standbys.
        strict_waiting: bool,
    },
}

/// The next step on primary `me` in synchronous mode (priority based), given `/sync` as last
/// read or written, the candidates observed now, and whether this cycle already waited.
pub fn next_step(
    me: &str,
    sync: &SyncState,
    now: &SyncCandidates,
    settings: SyncSettings,
    waited: bool,
) -> SyncStep {
    let has_leader = sync.leader.as_deref().is_some_and(|l| !l.is_empty());
    if !has_leader {
        // `_maybe_enable_synchronous_mode`.
        return SyncStep::WriteSync {
            standbys: Vec::new(),
        };
    }
    if !sync
        .leader
        .as_deref()
        .is_some_and(|l| l.eq_ignore_ascii_case(me))
    {
        // Inconsistent `/sync`: another leader's.
        return SyncStep::WriteSync {
            standbys: Vec::new(),
        };
    }
    let voters = &sync.sync_standby;
    let picked = &now.active;
    let allow_promote = &now.sync_confirmed;
    if same(picked, voters) && !same(voters, allow_promote) {
        return SyncStep::WriteSync {
            standbys: allow_promote.clone(),
        };
    }
    // `_handle_synchronous_strict_mode`.
    let min = settings.min_nodes();
    if u32::try_from(now.active.len()).unwrap_or(u32::MAX) < min {
        let numsync = min.max(u32::try_from(voters.len()).unwrap_or(u32::MAX));
        if !same(voters, &now.sync) || numsync != now.numsync || now.sync_type != SyncType::Priority
        {
            return SyncStep::SetNames {
                standbys: voters.clone(),
                num: Some(numsync),
            };
        }
        return SyncStep::Done {
            strict_waiting: true,
        };
    }
    if min == 0
        && now.active.is_empty()
        && voters.is_empty()
        && (!now.sync.is_empty() || now.numsync > 0)
    {
        return if now.sync_type == SyncType::Off {
            SyncStep::Done {
                strict_waiting: false,
            }
        } else {
            SyncStep::SetNames {
                standbys: Vec::new(),
                num: None,
            }
        };
    }
    let count = u32::try_from(picked.len()).unwrap_or(u32::MAX);
    if same(picked, voters) && same(voters, &now.sync) && now.numsync == count {
        if now.sync_type != SyncType::Priority && !picked.is_empty() {
            // ANY -> FIRST.
            return SyncStep::SetNames {
                standbys: picked.clone(),
                num: None,
            };
        }
        return SyncStep::Done {
            strict_waiting: false,
        };
    }
    // Shrink `/sync` to the standbys both listed and confirmed before anything else.
    let common: Vec<String> = voters
        .iter()
        .filter(|v| contains(allow_promote, v))
        .cloned()
        .collect();
    if !same(&common, voters) {
        return SyncStep::WriteSync { standbys: common };
    }
    let wanted_type = if picked.is_empty() {
        SyncType::Off
    } else {
        SyncType::Priority
    };
    if !same(picked, &now.sync)
        || (!picked.is_empty() && now.numsync != count)
        || now.sync_type != wanted_type
    {
        return SyncStep::SetNames {
            standbys: picked.clone(),
            num: None,
        };
    }
    if !picked.is_empty() && !same(allow_promote, picked) && !waited {
        return SyncStep::WaitForConfirmation;
    }
    if !allow_promote.is_empty() && !same(allow_promote, &common) {
        return SyncStep::WriteSync {
            standbys: allow_promote.clone(),
        };
    }
    SyncStep::Done {
        strict_waiting: false,
    }
}

/// With synchronous mode off: empty `/sync` if a primary published it, and list nobody (the
/// user's own `synchronous_standby_names` applies again).
pub fn when_off(sync: &SyncState) -> Option<SyncStep> {
    sync.leader
        .as_deref()
        .is_some_and(|l| !l.is_empty())
        .then_some(SyncStep::DeleteSync)
}

/// Before `me` promotes in synchronous mode: the `/sync` to write (refused: postpone the
/// promotion) and the names to set. In strict mode the former synchronous set stays listed
/// (so commits keep waiting for them); otherwise nobody until standbys connect.
pub fn prepromote(
    me: &str,
    sync: &SyncState,
    settings: SyncSettings,
) -> (Vec<String>, Option<u32>) {
    let min = settings.min_nodes();
    if min == 0 {
        return (Vec::new(), None);
    }
    let mut standbys: Vec<String> = Vec::new();
    if let Some(leader) = sync.leader.as_deref().filter(|l| !l.is_empty()) {
        for name in std::iter::once(leader).chain(sync.sync_standby.iter().map(String::as_str)) {
            if !name.eq_ignore_ascii_case(me) && !contains(&standbys, name) {
                standbys.push(name.to_owned());
            }
        }
    }
    let num = standbys.is_empty().then_some(min);
    (standbys, num)
}

/// Whether two name lists hold the same names, case-insensitively, in any order.
fn same(a: &[String], b: &[String]) -> bool {
    a.iter().all(|x| contains(b, x)) && b.iter().all(|x| contains(a, x))
}

/// What the primary does in quorum mode this round (Patroni's `_process_quorum_replication`
/// with `_handle_synchronous_strict_mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuorumPlan {
    /// Strict mode without enough standbys: list these (`ANY num`) unless already listed, and
    /// stop; commits wait.
    Strict {
        /// What to list, when it differs from what is listed.
        set: Option<(Vec<String>, u32)>,
    },
    /// List nobody (no standby streams, none is a voter), then go on with `transitions`.
    Transitions {
        /// Empty the list first.
        clear_first: bool,
        /// The safe sequence (see [`super::quorum::resolve`]).
        resolution: super::quorum::Resolution,
    },
}

/// The plan on primary `me` with `/sync` as read or last written (its `leader` may be the
/// former primary right after a failover).
///
/// # Errors
/// The state cannot be moved safely (logged; nothing is done this cycle).
pub fn quorum_plan(
    me: &str,
    sync: &SyncState,
    now: &SyncCandidates,
    settings: SyncSettings,
) -> Result<QuorumPlan, super::quorum::QuorumError> {
    let leader = sync.leader.clone().unwrap_or_default();
    let mut clear_first = false;
    if leader.eq_ignore_ascii_case(me) {
        let min = settings.min_nodes();
        let active = u32::try_from(now.active.len()).unwrap_or(u32::MAX);
        if active < min {
            let voters = &sync.sync_standby;
            let quorum = if voters.is_empty() { 0 } else { sync.quorum };
            let numsync = min.max(
                u32::try_from(voters.len())
                    .unwrap_or(u32::MAX)
                    .saturating_sub(quorum),
            );
            let listed = same(voters, &now.sync)
                && numsync == now.numsync
                && now.sync_type == SyncType::Quorum;
            return Ok(QuorumPlan::Strict {
                set: (!listed).then(|| (voters.clone(), numsync)),
            });
        }
        clear_first = min == 0
            && now.active.is_empty()
            && sync.sync_standby.is_empty()
            && (!now.sync.is_empty() || now.numsync > 0);
    }
    let (numsync, listed) = if clear_first {
        (0, Vec::new())
    } else {
        (now.numsync, now.sync.clone())
    };
    let input = super::quorum::QuorumInput {
        leader,
        quorum: sync.quorum,
        voters: sync.sync_standby.clone(),
        numsync,
        sync: listed,
        numsync_confirmed: u32::try_from(now.sync_confirmed.len()).unwrap_or(u32::MAX),
        active: now.active.clone(),
        sync_wanted: settings.node_count,
        leader_wanted: me.to_owned(),
    };
    Ok(QuorumPlan::Transitions {
        clear_first,
        resolution: super::quorum::resolve(&input)?,
    })
}

/// Before `me` promotes in quorum mode: the standbys to list and how many must confirm
/// (`ANY n`), from `/sync` (Patroni's `_process_quorum_prepromote`; `/sync` itself is left to
/// the resolver, which makes the former leader a voter).
pub fn quorum_prepromote(me: &str, sync: &SyncState, settings: SyncSettings) -> (Vec<String>, u32) {
    let has_leader = sync.leader.as_deref().is_some_and(|l| !l.is_empty());
    let quorum = if has_leader {
        i64::from(sync.quorum)
    } else {
        0
    };
    let mut members: Vec<String> = Vec::new();
    if let Some(leader) = sync.leader.as_deref().filter(|l| !l.is_empty()) {
        for name in std::iter::once(leader).chain(sync.sync_standby.iter().map(String::as_str)) {
            if !contains(&members, name) {
                members.push(name.to_owned());
            }
        }
    }
    let len = i64::try_from(members.len()).unwrap_or(i64::MAX);
    let mut numsync = len - quorum - 1;
    if contains(&members, me) {
        members.retain(|m| !m.eq_ignore_ascii_case(me));
    } else {
        numsync += 1;
    }
    let numsync = numsync.max(i64::from(settings.min_nodes())).max(0);
    (members, u32::try_from(numsync).unwrap_or(u32::MAX))
}
