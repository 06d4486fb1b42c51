//! ha-loop.md §8: switchover and manual failover, scheduled or not, from
//! the leader's side and from the others'.

use super::fixtures::*;
use crate::ha::{Action, DemoteMode, LockOutcome, ReleaseLsn};

fn locked_with(f: crate::Failover) -> crate::Cluster {
    let mut c = cluster(Some("pg-0"), &["pg-0", "pg-1", "pg-2"]);
    c.failover = Some(f);
    c
}

fn unlocked_with(f: crate::Failover) -> crate::Cluster {
    let mut c = cluster(None, &["pg-1", "pg-2"]);
    c.failover = Some(f);
    c
}

fn hand_over() -> Vec<Action> {
    vec![
        Action::Demote {
            mode: DemoteMode::Graceful,
            stop_timeout: None,
        },
        Action::ReleaseLeader {
            last_lsn: ReleaseLsn::ShutdownCheckpoint,
        },
    ]
}

fn clear() -> Action {
    Action::ClearFailover {
        version: Some("9".into()),
    }
}

fn leader_cycle(f: crate::Failover, peers: Vec<crate::ha::PeerStatus>) -> Cycle {
    let o = obs("pg-0", locked_with(f), primary(LAST_LSN));
    let rt = Runtime::none().renew(LockOutcome::Renewed).peers(peers);
    run(o, &cfg(), NOW, &rt)
}

const NO_ACTION: &str = "no action. I am (pg-0), the leader with the lock";

/// A switchover to a healthy named candidate: the leader stops gracefully
/// (shutdown checkpoint), then releases the lock publishing that position.
#[test]
fn switchover_to_named_candidate_demotes_gracefully_then_releases() {
    let c = leader_cycle(
        failover(Some("pg-0"), Some("pg-1"), None),
        vec![peer("pg-1", LAST_LSN), peer("pg-2", LAST_LSN)],
    );
    assert_eq!(
        c.queries,
        [
            Action::RenewLeader {
                last_lsn: Some(LAST_LSN),
                failsafe: None
            },
            Action::CheckPeers {
                members: vec![target("pg-1"), target("pg-2")]
            },
        ]
    );
    assert_final(&c, &hand_over(), "switchover: demoting myself");
}

/// A cleared failover key (the object kept, its values removed, as the new
/// leader leaves it) requests nothing: the new leader must not hand over
/// again. Regression: treating it as "failover to anyone" made every new
/// leader demote itself right after promoting.
#[test]
fn cleared_failover_key_requests_nothing() {
    let c = leader_cycle(
        failover(None, None, None),
        vec![peer("pg-1", LAST_LSN), peer("pg-2", LAST_LSN)],
    );
    assert_eq!(
        c.queries,
        [Action::RenewLeader {
            last_lsn: Some(LAST_LSN),
            failsafe: None
        }]
    );
    assert_final(&c, &[], NO_ACTION);
}

/// A switchover to an unhealthy (unreachable or lagging) candidate is dropped; the leader stays.
#[test]
fn switchover_to_unhealthy_candidate_is_cancelled() {
    for pg1 in [
        crate::ha::PeerStatus::unreachable("pg-1"),
        peer("pg-1", LAST_LSN - 2_000_000),
    ] {
        let c = leader_cycle(
            failover(Some("pg-0"), Some("pg-1"), None),
            vec![pg1, peer("pg-2", LAST_LSN)],
        );
        assert_final(&c, &[clear()], NO_ACTION);
    }
}

/// A switchover naming another leader, or naming the leader as candidate, is dropped.
#[test]
fn switchover_with_mismatching_names_is_cancelled() {
    for f in [
        failover(Some("pg-9"), Some("pg-1"), None),
        failover(Some("pg-0"), Some("pg-0"), None),
    ] {
        let c = leader_cycle(f, vec![peer("pg-1", LAST_LSN)]);
        assert_eq!(c.queries.len(), 1, "no peer check needed");
        assert_final(&c, &[clear()], NO_ACTION);
    }
}

/// A switchover without candidate hands over when any member is healthy.
/// (A key with neither leader nor candidate is no request at all: see
/// `cleared_failover_key_requests_nothing`.)
#[test]
fn switchover_without_candidate_hands_over_to_anyone_healthy() {
    let c = leader_cycle(
        failover(Some("pg-0"), None, None),
        vec![
            crate::ha::PeerStatus::unreachable("pg-1"),
            peer("pg-2", LAST_LSN),
        ],
    );
    assert_final(&c, &hand_over(), "switchover: demoting myself");
}

/// A switchover scheduled beyond `loop_wait` does nothing yet and keeps the key.
#[test]
fn scheduled_switchover_in_the_future_does_nothing_yet() {
    let c = leader_cycle(
        failover(
            Some("pg-0"),
            Some("pg-1"),
            Some("2025-03-01T11:00:00+00:00"),
        ),
        Vec::new(),
    );
    assert_eq!(c.queries.len(), 1, "only the renewal");
    assert_final(&c, &[], NO_ACTION);
    assert_eq!(c.decision.next_cycle_at, None);
}

/// A switchover due within `loop_wait` wakes the loop at the scheduled time.
#[test]
fn scheduled_switchover_within_loop_wait_wakes_at_its_time() {
    let c = leader_cycle(
        failover(
            Some("pg-0"),
            Some("pg-1"),
            Some("2025-03-01T10:00:04+00:00"),
        ),
        Vec::new(),
    );
    assert_final(&c, &[], NO_ACTION);
    assert_eq!(c.decision.next_cycle_at, Some(NOW + secs(4)));
}

/// A switchover whose time has come runs.
#[test]
fn scheduled_switchover_runs_when_due() {
    let c = leader_cycle(
        failover(
            Some("pg-0"),
            Some("pg-1"),
            Some("2025-03-01T09:59:55+00:00"),
        ),
        vec![peer("pg-1", LAST_LSN)],
    );
    assert_final(&c, &hand_over(), "switchover: demoting myself");
}

/// A switchover more than 1.5 × `loop_wait` overdue, or with an unreadable time, is dropped.
#[test]
fn stale_or_invalid_scheduled_switchover_is_cleared() {
    for at in ["2025-03-01T09:59:00+00:00", "2025-03-01T10:00:00", "soon"] {
        let c = leader_cycle(failover(Some("pg-0"), Some("pg-1"), Some(at)), Vec::new());
        assert_final(&c, &[clear()], NO_ACTION);
    }
}

/// After the leader stepped down, the named candidate takes the lock,
/// clears the key and promotes, without waiting for anyone.
#[test]
fn failover_without_leader_goes_to_named_candidate() {
    let o = obs(
        "pg-2",
        unlocked_with(failover(Some("pg-0"), Some("pg-2"), None)),
        replica(None, LAST_LSN),
    );
    let c = run(
        o,
        &cfg(),
        NOW,
        &Runtime::none().acquire(LockOutcome::Acquired),
    );
    assert_eq!(c.queries, [Action::AcquireLeader]);
    assert_final(
        &c,
        &[Action::ClearFailover { version: None }, Action::Promote],
        "promoted self to leader by acquiring session lock",
    );
}

/// The other members leave the lock to a healthy named candidate, even when ahead of it.
#[test]
fn other_members_defer_to_a_healthy_candidate() {
    let o = obs(
        "pg-1",
        unlocked_with(failover(Some("pg-0"), Some("pg-2"), None)),
        replica(None, LAST_LSN + 10),
    );
    let c = run(
        o,
        &cfg(),
        NOW,
        &Runtime::none().peers(vec![peer("pg-2", LAST_LSN)]),
    );
    assert_final(
        &c,
        &[],
        "following a different leader because i am not the healthiest node",
    );
}

/// When the named candidate cannot take over, the healthiest other member does.
#[test]
fn unreachable_candidate_is_replaced_by_the_healthiest_member() {
    let o = obs(
        "pg-1",
        unlocked_with(failover(Some("pg-0"), Some("pg-2"), None)),
        replica(None, LAST_LSN),
    );
    let rt = Runtime::none()
        .peers(vec![crate::ha::PeerStatus::unreachable("pg-2")])
        .acquire(LockOutcome::Acquired);
    let c = run(o, &cfg(), NOW, &rt);
    assert_final(
        &c,
        &[Action::ClearFailover { version: None }, Action::Promote],
        "promoted self to leader by acquiring session lock",
    );
}

/// A named candidate too far behind is never promoted; the others take over instead.
#[test]
fn lagging_candidate_is_never_promoted() {
    let f = failover(Some("pg-0"), Some("pg-2"), None);
    let o = obs(
        "pg-2",
        unlocked_with(f.clone()),
        replica(None, LAST_LSN - 2_000_000),
    );
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert!(c.queries.is_empty());
    assert_final(
        &c,
        &[],
        "following a different leader because i am not the healthiest node",
    );

    let o = obs("pg-1", unlocked_with(f), replica(None, LAST_LSN));
    let rt = Runtime::none()
        .peers(vec![peer("pg-2", LAST_LSN - 2_000_000)])
        .acquire(LockOutcome::Acquired);
    let c = run(o, &cfg(), NOW, &rt);
    assert_final(
        &c,
        &[Action::ClearFailover { version: None }, Action::Promote],
        "promoted self to leader by acquiring session lock",
    );
}

/// In pause a switchover needs a candidate; with one, the leader hands over
/// and the candidate promotes, keeping its name in the key until promoted.
#[test]
fn paused_switchover_only_to_a_named_candidate() {
    let mut o = obs(
        "pg-0",
        locked_with(failover(Some("pg-0"), None, None)),
        primary(LAST_LSN),
    );
    o.paused = true;
    let c = run(
        o.clone(),
        &cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(&c, &[clear()], &format!("PAUSE: {NO_ACTION}"));

    o.dcs = crate::ha::DcsView::reachable(locked_with(failover(Some("pg-0"), Some("pg-1"), None)));
    let rt = Runtime::none()
        .renew(LockOutcome::Renewed)
        .peers(vec![peer("pg-1", LAST_LSN)]);
    let c = run(o, &cfg(), NOW, &rt);
    assert_final(&c, &hand_over(), "PAUSE: switchover: demoting myself");

    let mut o = obs(
        "pg-1",
        unlocked_with(failover(Some("pg-0"), Some("pg-1"), None)),
        replica(None, LAST_LSN),
    );
    o.paused = true;
    let c = run(
        o,
        &cfg(),
        NOW,
        &Runtime::none().acquire(LockOutcome::Acquired),
    );
    assert_final(
        &c,
        &[
            Action::RetargetFailover {
                candidate: "pg-1".into(),
                scheduled_at: None,
                version: "9".into(),
            },
            Action::Promote,
        ],
        "PAUSE: promoted self to leader by acquiring session lock",
    );
}

/// In pause the new lock holder waits for its promotion instead of releasing the lock.
#[test]
fn paused_candidate_with_lock_waits_for_its_promotion() {
    let mut cl = cluster(Some("pg-1"), &["pg-0", "pg-1"]);
    cl.failover = Some(failover(None, Some("pg-1"), None));
    let mut o = obs("pg-1", cl, replica(None, LAST_LSN));
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "PAUSE: waiting to become primary after promote...");
}

/// In pause a scheduled switchover is never executed (and not cleared).
#[test]
fn paused_scheduled_switchover_is_not_executed() {
    let mut o = obs(
        "pg-0",
        locked_with(failover(
            Some("pg-0"),
            Some("pg-1"),
            Some("2025-03-01T09:59:59+00:00"),
        )),
        primary(LAST_LSN),
    );
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Renewed));
    assert_final(&c, &[], &format!("PAUSE: {NO_ACTION}"));
}
