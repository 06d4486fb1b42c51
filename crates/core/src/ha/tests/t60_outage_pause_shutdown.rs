//! ha-loop.md §13 (DCS unreachable), §16 (pause) and §19 (shutdown).

use super::fixtures::*;
use crate::ha::{Action, ControlState, DcsView, LockOutcome, ReleaseLsn, StopMode, decide};

fn three() -> crate::Cluster {
    cluster(Some("pg-0"), &["pg-0", "pg-1", "pg-2"])
}

fn unreachable(me: &str, pg: crate::ha::LocalPostgres) -> crate::ha::Observation {
    let mut o = obs(me, three(), pg);
    o.dcs = DcsView::Unreachable;
    o
}

/// A primary that cannot reach the DCS for `retry_timeout` since its last
/// renewal stops and restarts read-only following nobody.
#[test]
fn primary_demotes_when_dcs_unreachable_past_retry_timeout() {
    for renewed in [Some(NOW - secs(10)), Some(NOW - secs(25)), None] {
        let mut o = unreachable("pg-0", primary(LAST_LSN));
        o.memory.last_lock_renewal = renewed;
        let c = run(o, &cfg(), NOW, &Runtime::none());
        assert_final(
            &c,
            &offline(),
            "demoted self because DCS is not accessible and I was a leader",
        );
    }
}

/// Within `retry_timeout` of its last renewal a primary keeps running and
/// looks again when that time is up.
#[test]
fn primary_keeps_running_within_retry_timeout_of_last_renewal() {
    let mut o = unreachable("pg-0", primary(LAST_LSN));
    o.memory.last_lock_renewal = Some(NOW - secs(4));
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "DCS is not accessible");
    assert_eq!(c.decision.next_cycle_at, Some(NOW + secs(6)));
}

/// A renewal that fails with a DCS error is the same as an unreachable DCS.
#[test]
fn renewal_failing_with_dcs_error_demotes_the_primary() {
    let mut o = obs("pg-0", three(), primary(LAST_LSN));
    o.memory.last_lock_renewal = Some(NOW - secs(20));
    let first = decide(&o, &cfg(), NOW);
    assert!(matches!(first.query(), Some(Action::RenewLeader { .. })));
    o.dcs = DcsView::Unreachable;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &offline(),
        "demoted self because DCS is not accessible and I was a leader",
    );
}

/// Replicas keep running untouched while the DCS is unreachable.
#[test]
fn replica_does_nothing_when_dcs_unreachable() {
    let c = run(
        unreachable("pg-1", replica(Some("pg-0"), LAST_LSN)),
        &cfg(),
        NOW,
        &Runtime::none(),
    );
    assert_final(&c, &[], "DCS is not accessible");
}

/// In pause nothing is stopped, even a primary cut off from the DCS.
#[test]
fn paused_primary_does_nothing_when_dcs_unreachable() {
    let mut o = unreachable("pg-0", primary(LAST_LSN));
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "PAUSE: DCS is not accessible");
}

/// In pause replicas never race for a free lock.
#[test]
fn paused_replica_never_races() {
    let mut o = obs(
        "pg-1",
        cluster(None, &["pg-1", "pg-2"]),
        replica(None, LAST_LSN),
    );
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert!(c.queries.is_empty());
    assert_final(&c, &[], "PAUSE: no action. I am (pg-1)");
}

/// In pause a running primary of this cluster takes a free lock, and one of
/// another cluster is left running without it.
#[test]
fn paused_primary_takes_free_lock_only_when_sysid_matches() {
    let mut o = obs("pg-1", cluster(None, &["pg-1", "pg-2"]), primary(LAST_LSN));
    o.paused = true;
    let c = run(
        o.clone(),
        &cfg(),
        NOW,
        &Runtime::none().acquire(LockOutcome::Acquired),
    );
    assert_final(&c, &[], "PAUSE: acquired session lock as a leader");

    if let crate::ha::DcsView::Reachable(cl) = &mut o.dcs {
        cl.initialize = Some("7999999999999999999".into());
    }
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "PAUSE: continue to run as primary without lock");
}

/// In pause a stopped Postgres is not started; its lock holder gives the lock up.
#[test]
fn paused_stopped_postgres_is_not_started() {
    let mut o = obs(
        "pg-1",
        three(),
        stopped(ControlState::ShutDownInRecovery, None),
    );
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "PAUSE: postgres is not running");

    let mut o = obs("pg-0", three(), stopped(ControlState::ShutDown, None));
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::ReleaseLeader {
            last_lsn: ReleaseLsn::Unchanged,
        }],
        "PAUSE: removed leader lock because postgres is not running",
    );
}

/// In pause a primary that fails to renew, or that lost the lock, keeps running.
#[test]
fn paused_primary_keeps_running_without_lock() {
    let mut o = obs("pg-0", three(), primary(LAST_LSN));
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Refused));
    assert_final(
        &c,
        &[],
        "PAUSE: continue to run as primary after failing to update leader lock in DCS",
    );

    let mut o = obs("pg-1", three(), primary(LAST_LSN));
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "PAUSE: continue to run as primary without lock");
}

/// In pause replicas are still pointed at a new leader.
#[test]
fn paused_replica_still_follows_a_new_leader() {
    let mut o = obs("pg-1", three(), replica(Some("pg-2"), LAST_LSN));
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::FollowLeader {
            upstream: Some(up("pg-0")),
        }],
        "PAUSE: no action. I am (pg-1), a secondary, and following a leader (pg-0)",
    );
}

/// On shutdown the leader stops Postgres, then releases the lock with the
/// shutdown checkpoint position (skipped by the runtime if the stop fails).
#[test]
fn shutdown_of_the_leader_stops_then_releases() {
    let mut o = obs("pg-0", three(), primary(LAST_LSN));
    o.requests.shutdown = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[
            Action::StopPostgres {
                mode: StopMode::Fast,
            },
            Action::ReleaseLeader {
                last_lsn: ReleaseLsn::ShutdownCheckpoint,
            },
        ],
        "shutting down: stopping PostgreSQL, then releasing the leader lock",
    );
}

/// On shutdown a replica only stops Postgres; background work is cancelled first.
#[test]
fn shutdown_of_a_replica_stops_postgres() {
    let mut o = obs("pg-1", three(), replica(Some("pg-0"), LAST_LSN));
    o.requests.shutdown = true;
    o.memory.in_progress = Some(Action::FollowLeader {
        upstream: Some(up("pg-0")),
    });
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[
            Action::CancelAsync,
            Action::StopPostgres {
                mode: StopMode::Fast,
            },
        ],
        "shutting down: stopping PostgreSQL",
    );
}

/// On shutdown in pause Postgres and the lock are left as they are.
#[test]
fn paused_shutdown_leaves_postgres_and_lock() {
    let mut o = obs("pg-0", three(), primary(LAST_LSN));
    o.requests.shutdown = true;
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[],
        "PAUSE: shutting down: leaving PostgreSQL running and the leader lock in place",
    );
}

/// On shutdown without the DCS a primary still stops and tries to release.
#[test]
fn shutdown_without_dcs_stops_the_primary() {
    let mut o = unreachable("pg-0", primary(LAST_LSN));
    o.requests.shutdown = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_eq!(
        c.decision.actions,
        [
            Action::StopPostgres {
                mode: StopMode::Fast
            },
            Action::ReleaseLeader {
                last_lsn: ReleaseLsn::ShutdownCheckpoint
            },
        ]
    );
}
