//! The topology of Patroni's `permanent_slots.feature`: pg-0 leads, pg-1 replicates,
//! pg-2 is `nofailover`, pg-3 cascades from pg-2; `test_physical`, `pg_3` and `test_logical`
//! are permanent.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::slots::permanent_slots;
use crate::{Leader, LeaderStatus, MemberData};

fn member(name: &str, tags: serde_json::Value, lsn: u64) -> Member {
    Member {
        name: name.into(),
        version: "1".into(),
        data: MemberData {
            tags: tags.as_object().map(|m| m.clone().into_iter().collect()),
            xlog_location: Some(lsn),
            version: Some("4.1.5".into()),
            ..MemberData::default()
        },
    }
}

fn cluster() -> Cluster {
    let members = vec![
        member("pg-0", json!({}), 100),
        member("pg-1", json!({}), 90),
        member("pg-2", json!({"nofailover": true}), 80),
        member("pg-3", json!({"replicatefrom": "pg-2"}), 70),
    ];
    Cluster {
        leader: Some(Leader {
            version: "1".into(),
            name: "pg-0".into(),
            member: Some(members[0].clone()),
        }),
        status: LeaderStatus {
            last_lsn: 100,
            slots: Some(BTreeMap::from([
                ("pg_0".into(), 100),
                ("pg_1".into(), 90),
                ("test_physical".into(), 50),
                ("test_logical".into(), 60),
            ])),
            retain_slots: vec!["pg_0".into(), "pg_1".into(), "pg_2".into(), "gone".into()],
        },
        members,
        ..Cluster::default()
    }
}

fn slots_of(name: &str, role: SlotRole, ttl: u64) -> DesiredSlots {
    let mut cluster = cluster();
    if ttl == 0 {
        // A leader publishes no `retain_slots` without retention.
        cluster.status.retain_slots.clear();
    }
    let permanent = permanent_slots(
        json!({"slots": {
            "test_physical": 0, "pg_3": null,
            "test_logical": {"type": "logical", "database": "postgres", "plugin": "test_decoding"},
            "Bad-Name": null, "bad_value": 5
        }})
        .as_object()
        .unwrap(),
    );
    let tags = cluster
        .member(name)
        .map(|m| MemberTags::from_json(m.data.tags.as_ref().unwrap()))
        .unwrap_or_default();
    desired_slots(&SlotView {
        cluster: &cluster,
        me: name,
        tags: &tags,
        role,
        standby_cluster: false,
        use_slots: true,
        member_slots_ttl: ttl,
        permanent: &permanent,
    })
}

fn names(d: &DesiredSlots) -> Vec<&str> {
    d.slots.keys().map(String::as_str).collect()
}

/// The leader keeps every other member's slot, the retained ones and the permanent ones;
/// bad entries are reported.
#[test]
fn leader_has_member_retained_and_permanent_slots() {
    let d = slots_of("pg-0", SlotRole::Primary, 1800);
    assert_eq!(
        names(&d),
        [
            "gone",
            "pg_1",
            "pg_2",
            "pg_3",
            "test_logical",
            "test_physical"
        ]
    );
    assert_eq!(d.slots["pg_1"].expected_active, Some(true));
    // pg-3 streams from pg-2: the leader's copy does not move by itself.
    assert_eq!(d.slots["pg_3"].expected_active, Some(false));
    assert_eq!(d.slots["pg_3"].lsn, Some(70));
    assert!(
        !d.slots["pg_3"].permanent,
        "the member slot wins over the permanent one"
    );
    assert_eq!(d.slots["test_physical"].lsn, Some(50));
    assert_eq!(d.slots["test_logical"].lsn, Some(60));
    assert_eq!(
        d.slots["test_logical"].kind,
        SlotKind::Logical {
            database: "postgres".into(),
            plugin: "test_decoding".into()
        }
    );
    assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
}

/// A replica keeps copies of all of them, advanced from the leader's published positions.
#[test]
fn replica_keeps_copies_of_every_slot() {
    let d = slots_of("pg-1", SlotRole::Replica, 1800);
    assert_eq!(
        names(&d),
        [
            "gone",
            "pg_0",
            "pg_2",
            "pg_3",
            "test_logical",
            "test_physical"
        ]
    );
    assert_eq!(d.slots["pg_0"].lsn, Some(100));
    assert_eq!(d.slots["pg_0"].expected_active, Some(false));
}

/// A `nofailover` member only keeps slots of members cascading from it, and no permanent ones.
#[test]
fn nofailover_member_keeps_only_its_cascading_slots() {
    let d = slots_of("pg-2", SlotRole::Replica, 1800);
    assert_eq!(names(&d), ["pg_3"]);
    assert_eq!(d.slots["pg_3"].expected_active, Some(true));
}

/// Without member slot retention, a replica only has slots of members cascading from it.
#[test]
fn without_retention_slots_follow_the_topology() {
    let d = slots_of("pg-1", SlotRole::Replica, 0);
    assert_eq!(names(&d), ["pg_3", "test_logical", "test_physical"]);
    assert!(d.slots["pg_3"].permanent);
    let d = slots_of("pg-0", SlotRole::Primary, 0);
    assert_eq!(
        names(&d),
        ["pg_1", "pg_2", "pg_3", "test_logical", "test_physical"]
    );
}

/// Slot names follow `replicatefrom` to the primary; `nostream` and cycles have none.
#[test]
fn slot_on_primary_follows_the_cascade() {
    let c = cluster();
    let t = |v: serde_json::Value| {
        MemberTags::from_json(&v.as_object().unwrap().clone().into_iter().collect())
    };
    assert_eq!(
        slot_name_on_primary(&c, "pg-3", &t(json!({"replicatefrom": "pg-2"}))).as_deref(),
        Some("pg_2")
    );
    assert_eq!(
        slot_name_on_primary(&c, "pg-9", &t(json!({"nostream": true}))),
        None
    );
    let mut looped = c.clone();
    looped.members[2] = member("pg-2", json!({"replicatefrom": "pg-3"}), 1);
    assert_eq!(
        slot_name_on_primary(&looped, "pg-3", &t(json!({"replicatefrom": "pg-2"}))),
        None
    );
}

/// `use_slots: false` means no slots at all.
#[test]
fn use_slots_off_means_none() {
    let cluster = cluster();
    let permanent = BTreeMap::new();
    let d = desired_slots(&SlotView {
        cluster: &cluster,
        me: "pg-0",
        tags: &MemberTags::default(),
        role: SlotRole::Primary,
        standby_cluster: false,
        use_slots: false,
        member_slots_ttl: 1800,
        permanent: &permanent,
    });
    assert!(d.slots.is_empty());
}

/// Members that keep the logical slot need feedback; `nofailover` pg-2 does too, because
/// pg-3 cascades from it and keeps one.
#[test]
fn hot_standby_feedback_follows_logical_slots() {
    let cluster = cluster();
    let permanent = permanent_slots(
        json!({"slots": {"l": {"database": "postgres", "plugin": "test_decoding"}}})
            .as_object()
            .unwrap(),
    );
    let needs = |name: &str, permanent: &BTreeMap<String, PermanentSlot>| {
        let tags = MemberTags::from_json(cluster.member(name).unwrap().data.tags.as_ref().unwrap());
        needs_hot_standby_feedback(&SlotView {
            cluster: &cluster,
            me: name,
            tags: &tags,
            role: SlotRole::Replica,
            standby_cluster: false,
            use_slots: true,
            member_slots_ttl: 1800,
            permanent,
        })
    };
    assert!(needs("pg-1", &permanent));
    assert!(needs("pg-3", &permanent));
    assert!(needs("pg-2", &permanent));
    assert!(!needs("pg-1", &BTreeMap::new()));
}
