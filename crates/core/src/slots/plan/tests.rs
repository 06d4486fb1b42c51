//! Each rule of the plan, on small inputs.

use super::*;

fn logical(db: &str, plugin: &str) -> SlotKind {
    SlotKind::Logical {
        database: db.into(),
        plugin: plugin.into(),
    }
}

fn physical(name: &str, restart: Option<u64>) -> ExistingSlot {
    ExistingSlot {
        name: name.into(),
        kind: SlotKind::Physical,
        active: false,
        xmin: None,
        catalog_xmin: None,
        restart_lsn: restart,
        confirmed_flush_lsn: None,
        wal_status: Some("reserved".into()),
        failover: false,
    }
}

fn logical_slot(name: &str, kind: SlotKind, confirmed: u64) -> ExistingSlot {
    ExistingSlot {
        kind,
        confirmed_flush_lsn: Some(confirmed),
        ..physical(name, Some(confirmed))
    }
}

fn wanted(kind: SlotKind, lsn: Option<u64>, active: Option<bool>) -> Wanted {
    Wanted {
        kind,
        lsn,
        expected_active: active,
        permanent: false,
    }
}

fn run(
    desired: &[(&str, Wanted)],
    existing: &[ExistingSlot],
    ignore: &[IgnoreSlot],
    is_primary: bool,
) -> SlotPlan {
    let desired: BTreeMap<String, Wanted> = desired
        .iter()
        .map(|(n, w)| ((*n).to_owned(), w.clone()))
        .collect();
    plan(&PlanInput {
        desired: &desired,
        existing,
        ignore,
        is_primary,
        paused: false,
        clean_inactive_physical: true,
        replay_lsn: Some(500),
    })
}

fn drop(name: &str, reason: DropReason) -> SlotStep {
    SlotStep::Drop {
        name: name.into(),
        reason,
    }
}

/// Unknown slots go unless ignored; missing ones are created; inactive ones advance.
#[test]
fn unknown_dropped_missing_created_inactive_advanced() {
    let ignore = [IgnoreSlot {
        name: Some("theirs".into()),
        ..IgnoreSlot::default()
    }];
    let p = run(
        &[
            ("pg_1", wanted(SlotKind::Physical, Some(300), Some(true))),
            ("pg_2", wanted(SlotKind::Physical, Some(300), Some(false))),
            ("pg_3", wanted(SlotKind::Physical, Some(100), Some(false))),
        ],
        &[
            physical("pg_1", Some(10)),
            physical("pg_2", Some(200)),
            physical("stale", Some(1)),
            physical("theirs", Some(1)),
        ],
        &ignore,
        true,
    );
    assert_eq!(
        p.steps,
        [
            drop("stale", DropReason::Unknown),
            SlotStep::AdvancePhysical {
                name: "pg_2".into(),
                lsn: 300
            },
            SlotStep::CreatePhysical {
                name: "pg_3".into()
            },
        ]
    );
}

/// In pause nothing unknown is dropped.
#[test]
fn pause_keeps_unknown_slots() {
    let existing = [physical("stale", Some(1))];
    let p = plan(&PlanInput {
        desired: &BTreeMap::new(),
        existing: &existing,
        ignore: &[],
        is_primary: true,
        paused: true,
        clean_inactive_physical: true,
        replay_lsn: None,
    });
    assert!(p.steps.is_empty());
}

/// A changed kind, lost WAL, a held xmin nobody feeds and a missing restart_lsn each drop.
#[test]
fn broken_slots_are_dropped_and_recreated() {
    let mut lost = physical("lost", Some(5));
    lost.wal_status = Some("lost".into());
    let mut held = physical("held", Some(5));
    held.xmin = Some(777);
    let p = run(
        &[
            ("lost", wanted(SlotKind::Physical, None, Some(false))),
            ("held", wanted(SlotKind::Physical, None, Some(false))),
            ("bare", wanted(SlotKind::Physical, Some(9), Some(false))),
            ("logi", wanted(logical("db", "pgoutput"), None, None)),
        ],
        &[
            lost,
            held,
            physical("bare", None),
            logical_slot("logi", logical("db", "test_decoding"), 5),
        ],
        &[],
        true,
    );
    assert_eq!(
        p.steps,
        [
            drop("lost", DropReason::WalLost),
            drop("logi", DropReason::Changed),
            drop("bare", DropReason::NoRestartLsn),
            drop("held", DropReason::InactiveXmin),
            SlotStep::CreatePhysical {
                name: "held".into()
            },
            SlotStep::CreatePhysical {
                name: "lost".into()
            },
            SlotStep::CreateLogical {
                name: "logi".into(),
                database: "db".into(),
                plugin: "pgoutput".into()
            },
        ]
    );
}

/// A replica advances logical slots up to its replay position and copies missing ones that
/// the DCS has a position for; a primary creates them.
#[test]
fn logical_slots_on_replica_and_primary() {
    let kind = logical("db", "test_decoding");
    let desired = [
        ("behind", wanted(kind.clone(), Some(900), None)),
        ("ahead", wanted(kind.clone(), Some(100), None)),
        ("missing", wanted(kind.clone(), Some(100), None)),
        ("unknown_lsn", wanted(kind.clone(), None, None)),
    ];
    let existing = [
        logical_slot("behind", kind.clone(), 200),
        logical_slot("ahead", kind.clone(), 300),
    ];
    let p = run(&desired, &existing, &[], false);
    assert_eq!(
        p.steps,
        [SlotStep::AdvanceLogical {
            name: "behind".into(),
            database: "db".into(),
            lsn: 500
        }]
    );
    assert_eq!(p.copy_from_primary, ["missing"]);
    let p = run(&desired, &existing, &[], true);
    assert_eq!(p.copy_from_primary, Vec::<String>::new());
    assert_eq!(p.steps.len(), 2, "{:?}", p.steps);
}

/// PostgreSQL 17 failover slots are PostgreSQL's own business.
#[test]
fn failover_slots_are_left_alone() {
    let mut s = logical_slot("fo", logical("db", "pgoutput"), 1);
    s.failover = true;
    assert!(run(&[], &[s], &[], false).steps.is_empty());
}
