//! From the slots that exist to the desired ones (Patroni's `SlotsHandler.sync_replication_slots`):
//! drop unknown, lost, changed and stale slots (unless `ignore_slots` names them or the cluster
//! is paused), create missing physical slots, advance inactive ones to the position the DCS
//! reports, create logical slots on the primary, advance them on replicas, and name the
//! logical slots a replica must copy from the primary.

use std::collections::BTreeMap;

use super::SlotKind;
use super::desired::Wanted;
use super::permanent::IgnoreSlot;

/// A slot as `pg_replication_slots` shows it (temporary slots left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingSlot {
    /// `slot_name`.
    pub name: String,
    /// Type, database and plugin.
    pub kind: SlotKind,
    /// Someone streams from it.
    pub active: bool,
    /// `xmin` (physical slots with hot-standby feedback).
    pub xmin: Option<u64>,
    /// `catalog_xmin` (logical slots).
    pub catalog_xmin: Option<u64>,
    /// `restart_lsn`.
    pub restart_lsn: Option<u64>,
    /// `confirmed_flush_lsn` (logical slots).
    pub confirmed_flush_lsn: Option<u64>,
    /// `wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    pub wal_status: Option<String>,
    /// PostgreSQL 17: a failover slot, synchronised by PostgreSQL itself.
    pub failover: bool,
}

/// Why a slot is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not desired here and not ignored.
    Unknown,
    /// Desired, but PostgreSQL removed the WAL it needed (`wal_status = lost`).
    WalLost,
    /// Desired with another type, database or plugin.
    Changed,
    /// Nobody is expected to stream from it, yet it holds an `xmin` back.
    InactiveXmin,
    /// It reserves no WAL (made by someone else), so it cannot be advanced.
    NoRestartLsn,
}

/// One step, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotStep {
    /// `pg_drop_replication_slot` unless active.
    Drop {
        /// Slot.
        name: String,
        /// Why.
        reason: DropReason,
    },
    /// `pg_create_physical_replication_slot(name, true)`.
    CreatePhysical {
        /// Slot.
        name: String,
    },
    /// `pg_replication_slot_advance` of a physical slot.
    AdvancePhysical {
        /// Slot.
        name: String,
        /// Target.
        lsn: u64,
    },
    /// `pg_create_logical_replication_slot` in `database` (primary only).
    CreateLogical {
        /// Slot.
        name: String,
        /// Database.
        database: String,
        /// Plugin.
        plugin: String,
    },
    /// `pg_replication_slot_advance` of a logical slot, from a session in `database`.
    AdvanceLogical {
        /// Slot.
        name: String,
        /// Database.
        database: String,
        /// Target.
        lsn: u64,
    },
}

/// What the plan reads.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// Slots this member must have.
    pub desired: &'a BTreeMap<String, Wanted>,
    /// Slots that exist.
    pub existing: &'a [ExistingSlot],
    /// `ignore_slots`.
    pub ignore: &'a [IgnoreSlot],
    /// The server is a running primary.
    pub is_primary: bool,
    /// The cluster is paused: unknown slots are left alone.
    pub paused: bool,
    /// Drop physical slots nobody should stream from that hold an `xmin` (only when the
    /// cluster has a leader and this member is not a leader still in recovery).
    pub clean_inactive_physical: bool,
    /// A replica's replay position: logical slots never advance past it.
    pub replay_lsn: Option<u64>,
}

/// The steps, and the logical slots to copy from the primary (replicas only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotPlan {
    /// Steps in order.
    pub steps: Vec<SlotStep>,
    /// Logical slots that exist on the primary with a position in the DCS and not here.
    pub copy_from_primary: Vec<String>,
}

/// The plan.
pub fn plan(input: &PlanInput<'_>) -> SlotPlan {
    let mut out = SlotPlan::default();
    let mut present: BTreeMap<&str, &ExistingSlot> = input
        .existing
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let drop =
        |out: &mut SlotPlan, present: &mut BTreeMap<&str, &ExistingSlot>, name: &str, reason| {
            out.steps.push(SlotStep::Drop {
                name: name.to_owned(),
                reason,
            });
            present.remove(name);
        };

    for slot in input.existing {
        if slot.failover && matches!(slot.kind, SlotKind::Logical { .. }) {
            continue; // PostgreSQL 17 synchronises failover slots itself.
        }
        let wanted = input.desired.contains_key(&slot.name);
        let lost = wanted && slot.wal_status.as_deref() == Some("lost");
        if wanted && !lost {
            continue;
        }
        let ignored = input
            .ignore
            .iter()
            .any(|m| m.matches(&slot.name, &slot.kind));
        if !input.paused && !ignored {
            let reason = if lost {
                DropReason::WalLost
            } else {
                DropReason::Unknown
            };
            drop(&mut out, &mut present, &slot.name, reason);
        }
    }
    for (name, wanted) in input.desired {
        if present
            .get(name.as_str())
            .is_some_and(|s| s.kind != wanted.kind)
        {
            drop(&mut out, &mut present, name, DropReason::Changed);
        }
    }

    for (name, wanted) in input.desired {
        if wanted.kind != SlotKind::Physical {
            continue;
        }
        if let Some(slot) = present.get(name.as_str()).copied()
            && input.clean_inactive_physical
            && wanted.expected_active == Some(false)
            && slot.xmin.is_some()
        {
            drop(&mut out, &mut present, name, DropReason::InactiveXmin);
        }
        let Some(slot) = present.get(name.as_str()).copied() else {
            out.steps
                .push(SlotStep::CreatePhysical { name: name.clone() });
            continue;
        };
        if wanted.expected_active == Some(true) || slot.xmin.is_some() {
            continue;
        }
        let Some(restart) = slot.restart_lsn else {
            drop(&mut out, &mut present, name, DropReason::NoRestartLsn);
            continue;
        };
        if let Some(lsn) = wanted.lsn.filter(|l| *l > restart) {
            out.steps.push(SlotStep::AdvancePhysical {
                name: name.clone(),
                lsn,
            });
        }
    }

    for (name, wanted) in input.desired {
        let SlotKind::Logical { database, plugin } = &wanted.kind else {
            continue;
        };
        let slot = present.get(name.as_str()).copied();
        if input.is_primary {
            if slot.is_none() {
                out.steps.push(SlotStep::CreateLogical {
                    name: name.clone(),
                    database: database.clone(),
                    plugin: plugin.clone(),
                });
            }
            continue;
        }
        match (slot, wanted.lsn) {
            (Some(slot), Some(lsn)) => {
                let target = input.replay_lsn.map_or(lsn, |r| lsn.min(r));
                if slot.confirmed_flush_lsn.unwrap_or(0) < target {
                    out.steps.push(SlotStep::AdvanceLogical {
                        name: name.clone(),
                        database: database.clone(),
                        lsn: target,
                    });
                }
            }
            (None, Some(_)) => out.copy_from_primary.push(name.clone()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
