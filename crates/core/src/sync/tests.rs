//! Synchronous replication management on the primary: the choice of standbys, the order of
//! `/sync` and `synchronous_standby_names` changes, strict mode, turning it off, and what a
//! member about to promote writes. A small simulator applies the steps as the runtime would
//! and checks after each one that `/sync` only lists standbys that are listed in
//! `synchronous_standby_names` and confirmed synchronous.

use serde_json::{Value, json};

use super::*;
use crate::ha::{SenderSyncState, WalSender};
use crate::{Cluster, Member, MemberData, SyncState};

const ME: &str = "pg-0";

fn member(name: &str, state: &str, tags: Value) -> Member {
    Member {
        name: name.into(),
        version: "1".into(),
        data: MemberData {
            state: Some(state.into()),
            role: Some("replica".into()),
            tags: tags
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            ..Default::default()
        },
    }
}

fn cluster(members: Vec<Member>, sync: SyncState) -> Cluster {
    let mut all = vec![member(ME, "running", json!({}))];
    all.extend(members);
    Cluster {
        members: all,
        sync,
        ..Default::default()
    }
}

fn sync_state(leader: Option<&str>, standbys: &[&str]) -> SyncState {
    SyncState {
        version: Some("1".into()),
        leader: leader.map(String::from),
        sync_standby: standbys.iter().map(|s| (*s).to_owned()).collect(),
        quorum: 0,
    }
}

fn sender(name: &str, state: SenderSyncState, lsn: u64) -> WalSender {
    WalSender {
        pid: 1,
        application_name: name.into(),
        sync_state: state,
        write_lsn: lsn,
        flush_lsn: lsn,
        replay_lsn: lsn,
    }
}

fn settings(node_count: u32, strict: bool) -> SyncSettings {
    SyncSettings {
        node_count,
        strict,
        max_lag: -1,
        quorum: false,
    }
}

fn names(v: &[String]) -> Vec<&str> {
    let mut n: Vec<&str> = v.iter().map(String::as_str).collect();
    n.sort_unstable();
    n
}

/// Which standbys are chosen: running, not `nosync` (or `sync_priority: 0`), not cascading
/// from a standby that streams, highest `sync_priority` first, `nofailover` last, at most
/// `synchronous_node_count`.
#[test]
fn choice_of_standbys() {
    let c = cluster(
        vec![
            member("pg-1", "running", json!({})),
            member("pg-2", "running", json!({"nosync": true})),
            member("pg-3", "stopped", json!({})),
            member("pg-4", "running", json!({"sync_priority": 5})),
            member("pg-5", "running", json!({"replicatefrom": "pg-1"})),
            member("pg-6", "running", json!({"nofailover": true})),
            member("pg-7", "running", json!({"sync_priority": 0})),
        ],
        sync_state(Some(ME), &[]),
    );
    let senders: Vec<WalSender> = ["pg-1", "pg-2", "pg-3", "pg-4", "pg-5", "pg-6", "pg-7"]
        .iter()
        .map(|n| sender(n, SenderSyncState::Async, 100))
        .collect();
    let mut t = SyncTracker::default();
    let one = current_state(
        ME,
        &c,
        &senders,
        CommitLevel::Flush,
        100,
        settings(1, false),
        &mut t,
    );
    assert_eq!(one.active, ["pg-4"]);
    let all = current_state(
        ME,
        &c,
        &senders,
        CommitLevel::Flush,
        100,
        settings(5, false),
        &mut t,
    );
    assert_eq!(all.active, ["pg-4", "pg-1", "pg-6"]);
    assert!(all.sync_confirmed.is_empty(), "nobody is listed yet");
}

/// A standby further behind the most advanced one than `maximum_lag_on_syncnode` is not
/// chosen; with a single standby the primary's position is the reference.
#[test]
fn lagging_standby_is_swapped_out() {
    let c = cluster(
        vec![
            member("pg-1", "running", json!({})),
            member("pg-2", "running", json!({})),
        ],
        sync_state(Some(ME), &["pg-1"]),
    );
    let senders = [
        sender("pg-1", SenderSyncState::Sync, 1_000),
        sender("pg-2", SenderSyncState::Potential, 9_000),
    ];
    let mut t = SyncTracker::default();
    t.note_applied("\"pg-1\"", 900);
    let s = SyncSettings {
        max_lag: 4_000,
        ..settings(1, false)
    };
    let now = current_state(ME, &c, &senders, CommitLevel::Flush, 9_000, s, &mut t);
    assert_eq!(now.active, ["pg-2"]);
    assert_eq!(now.sync_confirmed, Vec::<String>::new());
    let s = SyncSettings { max_lag: 0, ..s };
    let now = current_state(ME, &c, &senders, CommitLevel::Flush, 9_000, s, &mut t);
    assert_eq!(
        now.active,
        ["pg-1"],
        "the current sync standby is kept first"
    );
    assert_eq!(now.sync_confirmed, ["pg-1"]);
}

/// A model of the primary: its applied `synchronous_standby_names`, `/sync`, and PostgreSQL
/// reporting listed streaming standbys as `sync` once they are listed.
struct Sim {
    cluster: Cluster,
    streaming: Vec<(String, u64)>,
    applied: String,
    primary_lsn: u64,
    tracker: SyncTracker,
    settings: SyncSettings,
    log: Vec<SyncStep>,
}

impl Sim {
    fn new(standbys: &[&str], sync: SyncState, settings: SyncSettings) -> Self {
        Self {
            cluster: cluster(
                standbys
                    .iter()
                    .map(|n| member(n, "running", json!({})))
                    .collect(),
                sync,
            ),
            streaming: standbys.iter().map(|n| ((*n).to_owned(), 500)).collect(),
            applied: String::new(),
            primary_lsn: 500,
            tracker: SyncTracker::default(),
            settings,
            log: Vec::new(),
        }
    }

    fn senders(&self) -> Vec<WalSender> {
        let listed = SyncStandbyNames::parse(&self.applied).expect("valid");
        self.streaming
            .iter()
            .map(|(n, lsn)| {
                let state = if listed.contains(n) {
                    SenderSyncState::Sync
                } else {
                    SenderSyncState::Async
                };
                sender(n, state, *lsn)
            })
            .collect()
    }

    /// Runs steps until done (at most 10), as the runtime does within one cycle.
    fn cycle(&mut self) -> bool {
        let mut waited = false;
        for _ in 0..10 {
            self.tracker.note_applied(&self.applied, self.primary_lsn);
            let senders = self.senders();
            let now = current_state(
                ME,
                &self.cluster,
                &senders,
                CommitLevel::Flush,
                self.primary_lsn,
                self.settings,
                &mut self.tracker,
            );
            let step = next_step(ME, &self.cluster.sync, &now, self.settings, waited);
            self.log.push(step.clone());
            match step {
                SyncStep::WriteSync { standbys } => {
                    self.cluster.sync = SyncState {
                        version: Some("2".into()),
                        leader: Some(ME.into()),
                        sync_standby: standbys,
                        quorum: 0,
                    };
                }
                SyncStep::DeleteSync => self.cluster.sync = SyncState::default(),
                SyncStep::SetNames { standbys, num } => {
                    self.applied = render(&standbys, num, false).unwrap_or_default();
                }
                SyncStep::WaitForConfirmation => waited = true,
                SyncStep::Done { strict_waiting } => return strict_waiting,
            }
            self.check();
        }
        panic!("no end after 10 steps: {:?}", self.log);
    }

    /// `/sync` lists only standbys listed in the applied value.
    fn check(&self) {
        let listed = SyncStandbyNames::parse(&self.applied).expect("valid");
        for v in &self.cluster.sync.sync_standby {
            assert!(
                listed.contains(v),
                "/sync lists {v} but the server lists {:?}",
                self.applied
            );
        }
    }
}

/// From an empty `/sync`: enable, list the standby, confirm, publish; then nothing changes.
#[test]
fn growing_lists_first_and_publishes_after() {
    let mut sim = Sim::new(&["pg-1", "pg-2"], SyncState::default(), settings(1, false));
    assert!(!sim.cycle());
    assert_eq!(sim.cluster.sync.leader.as_deref(), Some(ME));
    assert_eq!(sim.cluster.sync.sync_standby, ["pg-1"]);
    assert_eq!(sim.applied, "\"pg-1\"");
    assert_eq!(
        sim.log,
        [
            SyncStep::WriteSync { standbys: vec![] },
            SyncStep::SetNames {
                standbys: vec!["pg-1".into()],
                num: None
            },
            SyncStep::WriteSync {
                standbys: vec!["pg-1".into()]
            },
            SyncStep::Done {
                strict_waiting: false
            },
        ]
    );
    sim.log.clear();
    sim.cycle();
    assert_eq!(
        sim.log,
        [SyncStep::Done {
            strict_waiting: false
        }]
    );
    sim.settings.node_count = 2;
    sim.cycle();
    assert_eq!(names(&sim.cluster.sync.sync_standby), ["pg-1", "pg-2"]);
    assert_eq!(sim.applied, "2 (\"pg-1\",\"pg-2\")");
}

/// The synchronous standby leaves: `/sync` shrinks before the server lists the other one,
/// which is published once confirmed.
#[test]
fn shrinking_unpublishes_first() {
    let mut sim = Sim::new(&["pg-1", "pg-2"], SyncState::default(), settings(1, false));
    sim.cycle();
    sim.streaming.retain(|(n, _)| n != "pg-1");
    sim.cluster.members.retain(|m| m.name != "pg-1");
    sim.log.clear();
    sim.cycle();
    assert_eq!(
        sim.log[0],
        SyncStep::WriteSync { standbys: vec![] },
        "{:?}",
        sim.log
    );
    assert_eq!(sim.cluster.sync.sync_standby, ["pg-2"]);
    assert_eq!(sim.applied, "\"pg-2\"");
}

/// A listed standby that PostgreSQL does not report synchronous yet is waited for once, and
/// not published.
#[test]
fn unconfirmed_standby_is_not_published() {
    let c = cluster(
        vec![member("pg-1", "running", json!({}))],
        sync_state(Some(ME), &[]),
    );
    let mut t = SyncTracker::default();
    t.note_applied("\"pg-1\"", 500);
    let senders = [sender("pg-1", SenderSyncState::Sync, 400)];
    let now = current_state(
        ME,
        &c,
        &senders,
        CommitLevel::Flush,
        500,
        settings(1, false),
        &mut t,
    );
    assert!(
        now.sync_confirmed.is_empty(),
        "behind the position of the change"
    );
    assert_eq!(
        next_step(ME, &c.sync, &now, settings(1, false), false),
        SyncStep::WaitForConfirmation
    );
    assert_eq!(
        next_step(ME, &c.sync, &now, settings(1, false), true),
        SyncStep::Done {
            strict_waiting: false
        }
    );
}

/// Strict mode without standbys: the placeholder is listed (commits wait) and `/sync` keeps
/// the leader alone; non-strict mode lists nobody.
#[test]
fn strict_mode_without_standbys() {
    let mut sim = Sim::new(&[], SyncState::default(), settings(1, true));
    assert!(sim.cycle());
    assert_eq!(sim.applied, STRICT_PLACEHOLDER);
    assert_eq!(sim.cluster.sync.leader.as_deref(), Some(ME));
    assert!(sim.cycle(), "stays waiting");
    let mut sim = Sim::new(&[], sync_state(Some(ME), &[]), settings(1, false));
    sim.applied = "\"pg-1\"".into();
    assert!(!sim.cycle());
    assert_eq!(sim.applied, "");
}

/// `/sync` of another leader is taken over (emptied) first.
#[test]
fn another_leaders_sync_is_replaced() {
    let c = cluster(vec![], sync_state(Some("pg-9"), &["pg-1"]));
    let mut t = SyncTracker::default();
    let now = current_state(
        ME,
        &c,
        &[],
        CommitLevel::Flush,
        0,
        settings(1, false),
        &mut t,
    );
    assert_eq!(
        next_step(ME, &c.sync, &now, settings(1, false), false),
        SyncStep::WriteSync { standbys: vec![] }
    );
}

/// Turned off: `/sync` is emptied when a primary had published it.
#[test]
fn turning_off() {
    assert_eq!(
        when_off(&sync_state(Some(ME), &["pg-1"])),
        Some(SyncStep::DeleteSync)
    );
    assert_eq!(when_off(&SyncState::default()), None);
}

/// Before promoting: non-strict lists nobody; strict keeps the former synchronous set (the
/// old leader included, itself excluded), or the placeholder count when there was none.
#[test]
fn before_promotion() {
    let sync = sync_state(Some("pg-0"), &["pg-1", "pg-2"]);
    assert_eq!(
        prepromote("pg-1", &sync, settings(1, false)),
        (vec![], None)
    );
    assert_eq!(
        prepromote("pg-1", &sync, settings(1, true)),
        (vec!["pg-0".to_owned(), "pg-2".to_owned()], None)
    );
    assert_eq!(
        prepromote("pg-1", &SyncState::default(), settings(2, true)),
        (vec![], Some(2))
    );
}

fn quorum_settings(node_count: u32, strict: bool) -> SyncSettings {
    SyncSettings {
        quorum: true,
        ..settings(node_count, strict)
    }
}

fn candidates(sync_type: SyncType, numsync: u32, sync: &[&str], active: &[&str]) -> SyncCandidates {
    let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    SyncCandidates {
        sync_type,
        numsync,
        sync: v(sync),
        sync_confirmed: v(sync),
        active: v(active),
    }
}

/// Quorum mode, strict, no standby streams: the voters stay listed as `ANY n`, or nothing is
/// set when they already are; with standbys the resolver's transitions come.
#[test]
fn quorum_plan_strict_and_steady() {
    let sync = SyncState {
        quorum: 1,
        ..sync_state(Some(ME), &["pg-1", "pg-2"])
    };
    let none = candidates(SyncType::Priority, 1, &["pg-1"], &[]);
    assert_eq!(
        quorum_plan(ME, &sync, &none, quorum_settings(1, true)),
        Ok(QuorumPlan::Strict {
            set: Some((vec!["pg-1".to_owned(), "pg-2".to_owned()], 1))
        })
    );
    let listed = candidates(SyncType::Quorum, 1, &["pg-1", "pg-2"], &[]);
    assert_eq!(
        quorum_plan(ME, &sync, &listed, quorum_settings(1, true)),
        Ok(QuorumPlan::Strict { set: None })
    );
    let steady = candidates(SyncType::Quorum, 1, &["pg-1", "pg-2"], &["pg-1", "pg-2"]);
    let Ok(QuorumPlan::Transitions {
        clear_first,
        resolution,
    }) = quorum_plan(ME, &sync, &steady, quorum_settings(1, false))
    else {
        panic!("transitions expected");
    };
    assert!(!clear_first);
    assert!(resolution.transitions.is_empty(), "{resolution:?}");
}

/// Before promoting in quorum mode: the former leader and the other voters are listed, with
/// as many required as keep the overlap (`|members| − quorum − 1`, this member excluded).
#[test]
fn quorum_before_promotion() {
    let sync = SyncState {
        quorum: 1,
        ..sync_state(Some("pg-0"), &["pg-1", "pg-2"])
    };
    assert_eq!(
        quorum_prepromote("pg-1", &sync, quorum_settings(1, false)),
        (vec!["pg-0".to_owned(), "pg-2".to_owned()], 1)
    );
    assert_eq!(
        quorum_prepromote("pg-3", &sync, quorum_settings(1, false)),
        (
            vec!["pg-0".to_owned(), "pg-1".to_owned(), "pg-2".to_owned()],
            2
        )
    );
    assert_eq!(
        quorum_prepromote("pg-1", &SyncState::default(), quorum_settings(1, true)),
        (vec![], 1)
    );
}
