//! The slots one member must have (Patroni's `Cluster.get_replication_slots`), PostgreSQL 11
//! or newer (slots can be advanced).

use std::collections::BTreeMap;

use super::permanent::PermanentSlot;
use super::{SlotKind, is_valid_slot_name, slot_name_from_member_name};
use crate::ha::MemberTags;
use crate::{Cluster, Member};

/// The role the slots are computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRole {
    /// A running primary.
    Primary,
    /// The leader of a standby cluster.
    StandbyLeader,
    /// Any other running server.
    Replica,
}

impl SlotRole {
    fn leads(self) -> bool {
        matches!(self, Self::Primary | Self::StandbyLeader)
    }
}

/// What the computation reads.
#[derive(Debug, Clone, Copy)]
pub struct SlotView<'a> {
    /// The cluster as observed.
    pub cluster: &'a Cluster,
    /// This member's name.
    pub me: &'a str,
    /// This member's tags.
    pub tags: &'a MemberTags,
    /// The role of this member's server.
    pub role: SlotRole,
    /// The cluster replicates from another one (`standby_cluster`).
    pub standby_cluster: bool,
    /// `postgresql.use_slots`.
    pub use_slots: bool,
    /// `member_slots_ttl` in seconds.
    pub member_slots_ttl: u64,
    /// The permanent slots configured.
    pub permanent: &'a BTreeMap<String, PermanentSlot>,
}

/// One slot the member must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Physical or logical, with its database and plugin.
    pub kind: SlotKind,
    /// Position to advance it to when nobody streams from it (feedback in the DCS).
    pub lsn: Option<u64>,
    /// Whether a standby is expected to stream from it here (`None`: not known).
    pub expected_active: Option<bool>,
    /// A permanent slot (from `slots`), not a member slot.
    pub permanent: bool,
}

/// The result: the slots by name, and configuration problems to log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredSlots {
    /// Slots by name.
    pub slots: BTreeMap<String, Wanted>,
    /// Problems with the configured permanent slots, in Patroni's words.
    pub problems: Vec<String>,
}

/// The slots `view.me` must have.
pub fn desired_slots(view: &SlotView<'_>) -> DesiredSlots {
    let mut out = DesiredSlots {
        slots: member_slots(view),
        problems: Vec::new(),
    };
    merge_permanent(view, &mut out);
    out
}

/// Whether `view.me` must run with `hot_standby_feedback` (Patroni's
/// `should_enforce_hot_standby_feedback`): as a replica it would keep a logical slot, or a
/// member cascading from it would (the primary must not remove catalog rows they need).
pub fn needs_hot_standby_feedback(view: &SlotView<'_>) -> bool {
    needs_feedback(view, view.cluster.members.len() + 1)
}

fn needs_feedback(view: &SlotView<'_>, depth: usize) -> bool {
    if view.standby_cluster || depth == 0 {
        return false;
    }
    let as_replica = SlotView {
        role: SlotRole::Replica,
        ..*view
    };
    if desired_slots(&as_replica)
        .slots
        .values()
        .any(|w| matches!(w.kind, SlotKind::Logical { .. }))
    {
        return true;
    }
    if !view.use_slots || slot_name_on_primary(view.cluster, view.me, view.tags).is_none() {
        return false;
    }
    let leader = view.cluster.leader_name();
    view.cluster.members.iter().any(|m| {
        let tags = member_tags(m);
        tags.replicatefrom.as_deref() == Some(view.me)
            && Some(m.name.as_str()) != leader
            && needs_feedback(
                &SlotView {
                    me: &m.name,
                    tags: &tags,
                    ..as_replica
                },
                depth - 1,
            )
    })
}

/// The slot on the primary through which `name` (with `tags`) receives WAL: its own, or that
/// of the member it cascades from; `None` without streaming or in a `replicatefrom` cycle.
pub fn slot_name_on_primary(cluster: &Cluster, name: &str, tags: &MemberTags) -> Option<String> {
    let mut seen = vec![name.to_owned()];
    let mut name = name.to_owned();
    let mut tags = tags.clone();
    loop {
        if tags.nostream {
            return None;
        }
        let upstream = tags
            .replicatefrom
            .as_deref()
            .filter(|r| *r != name)
            .and_then(|r| cluster.member(r));
        let Some(upstream) = upstream else {
            return Some(slot_name_from_member_name(&name));
        };
        if seen.contains(&upstream.name) {
            return None;
        }
        name = upstream.name.clone();
        seen.push(name.clone());
        tags = member_tags(upstream);
    }
}

/// Slots for other members (Patroni's `_get_members_slots`).
fn member_slots(view: &SlotView<'_>) -> BTreeMap<String, Wanted> {
    let mut ret = BTreeMap::new();
    if !view.use_slots {
        return ret;
    }
    let cluster = view.cluster;
    let leader = cluster.leader_name();
    let me = view.me;
    let others = cluster
        .members
        .iter()
        .map(|m| (m, member_tags(m)))
        .filter(|(m, t)| m.name != me && !t.nostream);
    let expected_active = |m: &Member, t: &MemberTags| {
        if view.role.leads() {
            t.replicatefrom
                .as_deref()
                .is_none_or(|r| r == me || cluster.member(r).is_none())
        } else {
            t.replicatefrom.as_deref() == Some(me) && Some(m.name.as_str()) != leader
        }
    };
    let nofailover = view.tags.nofailover();
    let keep_all = view.member_slots_ttl > 0;
    let old_leader = cluster
        .leader
        .as_ref()
        .and_then(|l| l.member.as_ref())
        .and_then(|m| m.data.version.as_deref())
        .is_some_and(|v| major_version(v).is_some_and(|major| major < 4));
    let slots = cluster.status.slots.clone().unwrap_or_default();
    for (m, t) in others {
        let wanted_here = if keep_all {
            !nofailover || t.replicatefrom.as_deref() == Some(me)
        } else {
            expected_active(m, &t)
        };
        if !wanted_here {
            continue;
        }
        let name = slot_name_from_member_name(&m.name);
        let mut lsn = slots.get(&name).copied().unwrap_or(0);
        if t.replicatefrom.is_some() || old_leader {
            // The leader's slot for a cascading member does not move: its own feedback does.
            lsn = lsn.max(m.data.xlog_location.unwrap_or(0));
        }
        ret.insert(
            name,
            Wanted {
                kind: SlotKind::Physical,
                lsn: Some(lsn),
                expected_active: Some(expected_active(m, &t)),
                permanent: false,
            },
        );
    }
    if !nofailover {
        let own = slot_name_from_member_name(me);
        for name in &cluster.status.retain_slots {
            if *name != own && !ret.contains_key(name) {
                ret.insert(
                    name.clone(),
                    Wanted {
                        kind: SlotKind::Physical,
                        lsn: None,
                        expected_active: None,
                        permanent: false,
                    },
                );
            }
        }
    }
    ret
}

/// Adds the permanent slots (Patroni's `_get_permanent_slots` and `_merge_permanent_slots`).
fn merge_permanent(view: &SlotView<'_>, out: &mut DesiredSlots) {
    if !view.use_slots || view.tags.nofailover() {
        return;
    }
    let cluster = view.cluster;
    let own = slot_name_from_member_name(view.me);
    let streams = slot_name_on_primary(cluster, view.me, view.tags).is_some();
    let status = cluster.status.slots.clone().unwrap_or_default();
    // Cascading members report their position themselves (`replicatefrom`).
    let cascading: BTreeMap<String, u64> = cluster
        .members
        .iter()
        .filter(|m| member_tags(m).replicatefrom.is_some())
        .map(|m| {
            (
                slot_name_from_member_name(&m.name),
                m.data.xlog_location.unwrap_or(0),
            )
        })
        .collect();
    let topology: BTreeMap<String, bool> = cluster
        .members
        .iter()
        .map(|m| {
            let t = member_tags(m);
            (
                slot_name_from_member_name(&m.name),
                t.replicatefrom.is_some(),
            )
        })
        .collect();
    for (name, slot) in view.permanent {
        // Only physical slots without streaming or in a standby cluster.
        let physical_only = view.standby_cluster || !streams;
        if physical_only && !matches!(slot, PermanentSlot::Physical { .. }) {
            continue;
        }
        if !slot.fits_cluster(view.standby_cluster) {
            continue;
        }
        if !is_valid_slot_name(name) {
            out.problems.push(format!(
                "Invalid permanent replication slot name '{name}': slot name may only contain lower case letters, numbers, and the underscore chars"
            ));
            continue;
        }
        match slot {
            PermanentSlot::Physical { .. } => {
                // Never a slot for myself; a member slot of the same name wins.
                if name == &own || out.slots.contains_key(name) {
                    continue;
                }
                let lsn = status
                    .get(name)
                    .copied()
                    .unwrap_or(0)
                    .max(cascading.get(name).copied().unwrap_or(0));
                let expected_active =
                    !topology.get(name).copied().unwrap_or(false) && view.role.leads();
                out.slots.insert(
                    name.clone(),
                    Wanted {
                        kind: SlotKind::Physical,
                        lsn: (lsn > 0).then_some(lsn),
                        expected_active: Some(expected_active),
                        permanent: true,
                    },
                );
            }
            PermanentSlot::Logical { .. } => {
                if out.slots.contains_key(name) {
                    out.problems.push(format!(
                        "Permanent logical replication slot '{name}' is conflicting with physical replication slot for cluster member"
                    ));
                    continue;
                }
                let lsn = status.get(name).copied().filter(|l| *l > 0);
                out.slots.insert(
                    name.clone(),
                    Wanted {
                        kind: slot.kind().unwrap_or(SlotKind::Physical),
                        lsn,
                        expected_active: None,
                        permanent: true,
                    },
                );
            }
            PermanentSlot::Invalid(v) => out.problems.push(format!(
                "Bad value for slot '{name}' in permanent_slots: {v}"
            )),
        }
    }
}

fn member_tags(m: &Member) -> MemberTags {
    m.data
        .tags
        .as_ref()
        .map(MemberTags::from_json)
        .unwrap_or_default()
}

/// The major number of a dotted version (`3.3.0` → 3).
fn major_version(v: &str) -> Option<u64> {
    v.split('.').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests;
