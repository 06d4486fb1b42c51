//! What the leader writes to `/status` with each renewal, as Patroni 4 does: `slots` (the
//! position of every managed slot and its own name at its WAL position, so the other members
//! advance their copies) and `retain_slots` (member slots seen within `member_slots_ttl`, so a
//! member that is briefly gone keeps its slot on whoever leads).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::desired::Wanted;
use super::plan::ExistingSlot;
use super::{SlotKind, slot_name_from_member_name};
use crate::ha::MemberTags;
use crate::{Cluster, Tick};

/// `slots` for `/status`: existing slots that are desired here with the same kind, at their
/// `restart_lsn` (physical) or `confirmed_flush_lsn` (logical), and `own_slot` at
/// `last_lsn`. With `member_slots_ttl = 0` only permanent slots are published. `None` when
/// there is nothing to publish.
pub fn published_slots(
    desired: &BTreeMap<String, Wanted>,
    existing: &[ExistingSlot],
    own_slot: &str,
    last_lsn: u64,
    member_slots_ttl: u64,
) -> Option<BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, u64> = existing
        .iter()
        .filter_map(|s| {
            let wanted = desired.get(&s.name).filter(|w| w.kind == s.kind)?;
            if member_slots_ttl == 0 && !wanted.permanent {
                return None;
            }
            let lsn = match s.kind {
                SlotKind::Physical => s.restart_lsn,
                SlotKind::Logical { .. } => s.confirmed_flush_lsn,
            }?;
            Some((s.name.clone(), lsn))
        })
        .collect();
    if member_slots_ttl > 0 {
        out.insert(own_slot.to_owned(), last_lsn);
    }
    (!out.is_empty()).then_some(out)
}

/// Member slots the leader keeps for absent members, with when each was last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetainedSlots {
    seen: BTreeMap<String, Tick>,
}

impl RetainedSlots {
    /// Notes the member slots among `published` at `now` (not permanent physical slots; not
    /// `nostream` members; my own while my member key is missing), forgets those unseen for
    /// `ttl`, and returns `retain_slots` (sorted, `None` when empty). The names that expired
    /// are returned too, to be logged.
    pub fn update(
        &mut self,
        cluster: &Cluster,
        me: &str,
        published: Option<&BTreeMap<String, u64>>,
        permanent_physical: &BTreeSet<String>,
        ttl: Duration,
        now: Tick,
    ) -> (Option<Vec<String>>, Vec<String>) {
        if let Some(slots) = published.filter(|s| !s.is_empty()) {
            let mut members: BTreeSet<String> = cluster
                .members
                .iter()
                .filter(|m| {
                    !m.data
                        .tags
                        .as_ref()
                        .is_some_and(|t| MemberTags::from_json(t).nostream)
                })
                .map(|m| slot_name_from_member_name(&m.name))
                .collect();
            if cluster.member(me).is_none() {
                members.insert(slot_name_from_member_name(me));
            }
            for name in slots.keys() {
                if members.contains(name) && !permanent_physical.contains(name) {
                    self.seen.insert(name.clone(), now);
                }
            }
        }
        let mut expired = Vec::new();
        self.seen.retain(|name, seen| {
            let keep = now.saturating_sub(*seen) < ttl;
            if !keep {
                expired.push(name.clone());
            }
            keep
        });
        let retain: Vec<String> = self.seen.keys().cloned().collect();
        ((!retain.is_empty()).then_some(retain), expired)
    }

    /// The slots retained now.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.seen.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Member, MemberData};

    fn existing(name: &str, kind: SlotKind, lsn: u64) -> ExistingSlot {
        let logical = matches!(kind, SlotKind::Logical { .. });
        ExistingSlot {
            name: name.into(),
            kind,
            active: false,
            xmin: None,
            catalog_xmin: None,
            restart_lsn: Some(lsn),
            confirmed_flush_lsn: logical.then_some(lsn + 1),
            wal_status: None,
            failover: false,
        }
    }

    fn wanted(kind: SlotKind, permanent: bool) -> Wanted {
        Wanted {
            kind,
            lsn: None,
            expected_active: None,
            permanent,
        }
    }

    /// Managed slots are published at their position, unmanaged ones are not; with
    /// `member_slots_ttl = 0` only permanent ones and not my own.
    #[test]
    fn leader_publishes_managed_slots() {
        let logical = SlotKind::Logical {
            database: "db".into(),
            plugin: "test_decoding".into(),
        };
        let desired = BTreeMap::from([
            ("pg_1".to_owned(), wanted(SlotKind::Physical, false)),
            ("perm".to_owned(), wanted(SlotKind::Physical, true)),
            ("logi".to_owned(), wanted(logical.clone(), true)),
        ]);
        let existing = vec![
            existing("pg_1", SlotKind::Physical, 10),
            existing("perm", SlotKind::Physical, 20),
            existing("logi", logical, 30),
            existing("other", SlotKind::Physical, 40),
        ];
        let all = published_slots(&desired, &existing, "pg_0", 99, 1800).unwrap();
        assert_eq!(
            all,
            BTreeMap::from([
                ("logi".into(), 31),
                ("perm".into(), 20),
                ("pg_0".into(), 99),
                ("pg_1".into(), 10)
            ])
        );
        let permanent = published_slots(&desired, &existing, "pg_0", 99, 0).unwrap();
        assert_eq!(
            permanent,
            BTreeMap::from([("logi".into(), 31), ("perm".into(), 20)])
        );
        assert_eq!(
            published_slots(&BTreeMap::new(), &existing, "pg_0", 9, 0),
            None
        );
    }

    /// Member slots are retained for `ttl` after they were last seen, permanent ones never.
    #[test]
    fn member_slots_are_retained_for_the_ttl() {
        let member = |n: &str| Member {
            name: n.into(),
            version: "1".into(),
            data: MemberData::default(),
        };
        let cluster = Cluster {
            members: vec![member("pg-0"), member("pg-1"), member("pg-2")],
            ..Cluster::default()
        };
        let published = BTreeMap::from([
            ("pg_0".to_owned(), 1),
            ("pg_1".to_owned(), 1),
            ("pg_2".to_owned(), 1),
            ("perm".to_owned(), 1),
        ]);
        let permanent = BTreeSet::from(["pg_2".to_owned()]);
        let ttl = Duration::from_secs(60);
        let mut r = RetainedSlots::default();
        let (names, _) = r.update(
            &cluster,
            "pg-0",
            Some(&published),
            &permanent,
            ttl,
            Duration::ZERO,
        );
        assert_eq!(names.unwrap(), ["pg_0", "pg_1"]);
        let gone = Cluster {
            members: vec![member("pg-0")],
            ..Cluster::default()
        };
        let (names, expired) = r.update(
            &gone,
            "pg-0",
            Some(&published),
            &permanent,
            ttl,
            Duration::from_secs(30),
        );
        assert_eq!(names.unwrap(), ["pg_0", "pg_1"]);
        assert!(expired.is_empty());
        let (names, expired) = r.update(
            &gone,
            "pg-0",
            Some(&published),
            &permanent,
            ttl,
            Duration::from_secs(61),
        );
        assert_eq!(names.unwrap(), ["pg_0"]);
        assert_eq!(expired, ["pg_1"]);
    }
}
