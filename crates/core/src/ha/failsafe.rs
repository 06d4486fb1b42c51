//! Failsafe mode (`failsafe_mode: true`; Patroni's `Failsafe` class and
//! `check_failsafe_topology`): a primary that cannot reach the DCS keeps running as long as
//! every member of the cluster confirms, over the REST API, that it is still the primary.
//!
//! Three rules, each a pure function of the observation:
//!
//! - **Publish**: with every renewal the lock holder publishes the *failsafe topology*,
//!   `{member: api_url}` of every member with an API (itself included), in the DCS
//!   ([`topology`]).
//! - **Outage**: past the renewal grace (`retry_timeout` after the last renewal) a primary
//!   in failsafe mode asks every other member of the topology it last saw
//!   (`POST /failsafe`, [`Action::CheckFailsafe`]); it stays primary only when all accept,
//!   and demotes as without failsafe mode when one does not (or the topology is missing or
//!   does not name it) ([`outage`]). A single-member topology needs nobody's word.
//! - **Replicas**: a replica accepts a call only while it is not a primary; for `ttl` after
//!   the last call the caller counts as the leader when the DCS shows no lock (the replica
//!   keeps following it and does not race: [`leader_view`]). A member missing from a
//!   non-empty topology never races, and the race also asks the topology's members that
//!   no longer have a member key ([`race_disqualified`], [`extra_members`]).
//!
//! Why it is safe: a replica races only after `ttl` without a call and without the DCS
//! showing a lock, and asks every member (the old primary included) before taking the lock;
//! the primary calls every `loop_wait` and demotes in the first cycle in which one member does
//! not accept, well within `ttl` of its last accepted call.

use std::collections::BTreeMap;

use super::context::Ctx;
use super::{Action, DcsView, Decision, HaConfig, Observation, PeerTarget};
use crate::{Cluster, Leader, Member, MemberData, Tick};

/// Patroni's message while a primary runs on its members' word.
pub(super) const CONTINUE: &str =
    "continue to run as a leader because failsafe mode is enabled and all members are accessible";

/// The topology the lock holder publishes with a renewal: `None` without failsafe mode.
pub(super) fn topology(ctx: &Ctx<'_>) -> Option<BTreeMap<String, String>> {
    if !ctx.cfg.failsafe_mode {
        return None;
    }
    let mut map: BTreeMap<String, String> = ctx
        .cluster
        .members
        .iter()
        .filter_map(|m| {
            let url = m.data.api_url.as_ref().filter(|u| !u.is_empty())?;
            Some((m.name.clone(), url.clone()))
        })
        .collect();
    if !map.contains_key(ctx.me())
        && let Some(url) = ctx.obs.me.api_url.as_ref().filter(|u| !u.is_empty())
    {
        map.insert(ctx.me().to_owned(), url.clone());
    }
    Some(map)
}

/// The other members of the topology this primary last saw, when it may keep running on
/// their word: `None` when it may not (no failsafe mode, no topology, or not named in it).
fn members_to_ask(obs: &Observation, cfg: &HaConfig) -> Option<Vec<PeerTarget>> {
    if !cfg.failsafe_mode {
        return None;
    }
    let topology = obs.memory.failsafe_topology.as_ref()?;
    if !topology.contains_key(&obs.me.name) {
        return None;
    }
    Some(
        topology
            .iter()
            .filter(|(name, _)| **name != obs.me.name)
            .map(|(name, url)| PeerTarget {
                name: name.clone(),
                api_url: url.clone(),
            })
            .collect(),
    )
}

/// §13 with failsafe mode, for a running primary past its renewal grace: ask the members,
/// or keep running on their (or, alone, on no one's) word. `None`: demote.
pub(super) fn outage(obs: &Observation, cfg: &HaConfig) -> Option<Decision> {
    let members = members_to_ask(obs, cfg)?;
    if members.is_empty() {
        return Some(Decision::report(CONTINUE));
    }
    match obs.cycle.failsafe {
        None => Some(Decision::ask(
            Action::CheckFailsafe { members },
            "asking the failsafe members to confirm this primary",
        )),
        Some(true) => Some(Decision::report(CONTINUE)),
        Some(false) => None,
    }
}

/// Whether failsafe mode keeps this member running as the primary this cycle: the DCS is
/// unreachable, and every other member of its topology accepted it (or there is none). For
/// the invariants checker, and for the runtime, which reports this member as the leader then.
pub fn keeps_primary(obs: &Observation, cfg: &HaConfig) -> bool {
    matches!(obs.dcs, DcsView::Unreachable)
        && members_to_ask(obs, cfg)
            .is_some_and(|m| m.is_empty() || obs.cycle.failsafe == Some(true))
}

/// The cluster as a replica in failsafe mode sees it: when the DCS shows no lock and a
/// primary called `POST /failsafe` less than `ttl` ago, that primary is the leader (with its
/// slots as the leader's status). `None`: the cluster as read.
pub(super) fn leader_view(
    obs: &Observation,
    cfg: &HaConfig,
    now: Tick,
    cluster: &Cluster,
) -> Option<Cluster> {
    if !cfg.failsafe_mode || cluster.is_locked() {
        return None;
    }
    let heard = obs.memory.failsafe_leader.as_ref()?;
    if heard.name == obs.me.name || now >= heard.heard_at.saturating_add(cfg.ttl) {
        return None;
    }
    let mut view = cluster.clone();
    view.leader = Some(Leader {
        version: cluster
            .leader
            .as_ref()
            .map(|l| l.version.clone())
            .unwrap_or_default(),
        name: heard.name.clone(),
        member: Some(Member {
            name: heard.name.clone(),
            version: String::new(),
            data: MemberData {
                conn_url: heard.conn_url.clone(),
                api_url: heard.api_url.clone(),
                ..MemberData::default()
            },
        }),
    });
    if heard.slots.is_some() {
        view.status.slots = heard.slots.clone();
    }
    Some(view)
}

/// Whether failsafe mode keeps this member out of the race: the topology names members but
/// not this one (it joined while the DCS was away, or was restored from a backup).
pub(super) fn race_disqualified(ctx: &Ctx<'_>) -> bool {
    ctx.cfg.failsafe_mode
        && ctx
            .cluster
            .failsafe
            .as_ref()
            .is_some_and(|t| !t.is_empty() && !t.contains_key(ctx.me()))
}

/// With failsafe mode, the topology's members that have no member key (any more): the race
/// asks them too, so a primary that still runs is found.
pub(super) fn extra_members(ctx: &Ctx<'_>) -> Vec<Member> {
    if !ctx.cfg.failsafe_mode {
        return Vec::new();
    }
    let Some(topology) = &ctx.cluster.failsafe else {
        return Vec::new();
    };
    topology
        .iter()
        .filter(|(name, _)| !ctx.cluster.members.iter().any(|m| &m.name == *name))
        .map(|(name, url)| Member {
            name: name.clone(),
            version: String::new(),
            data: MemberData {
                api_url: Some(url.clone()),
                ..MemberData::default()
            },
        })
        .collect()
}
