//! ha-loop.md §5, §6 and §11: the lock holder renews, demotes when it
//! cannot, promotes itself, restarts a crashed primary or fails over, and
//! handles a slow start and background work.

use super::fixtures::*;
use crate::ha::{
    Action, ControlState, DemoteMode, Finished, LockOutcome, PeerStatus, PgRole, ReleaseLsn,
    StartRole,
};

fn three() -> crate::Cluster {
    cluster(Some("pg-0"), &["pg-0", "pg-1", "pg-2"])
}

fn release() -> Action {
    Action::ReleaseLeader {
        last_lsn: ReleaseLsn::Unchanged,
    }
}

fn demote(mode: DemoteMode) -> Action {
    Action::Demote {
        mode,
        stop_timeout: None,
    }
}

/// The lock holder running as primary renews its lock (publishing its WAL
/// position) and does nothing else.
#[test]
fn lock_holder_renews_and_reports_no_action() {
    let o = obs("pg-0", three(), primary(LAST_LSN + 5));
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Renewed));
    assert_eq!(
        c.queries,
        [Action::RenewLeader {
            last_lsn: Some(LAST_LSN + 5),
            failsafe: None
        }]
    );
    assert_final(&c, &[], "no action. I am (pg-0), the leader with the lock");
}

/// A primary whose renewal is refused (lock lost) stops at once, without a lock to release.
#[test]
fn primary_that_loses_lock_demotes_immediately() {
    let o = obs("pg-0", three(), primary(LAST_LSN));
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Refused));
    assert_final(
        &c,
        &[demote(DemoteMode::ImmediateNoLock)],
        "demoted self because failed to update leader lock in DCS",
    );
}

/// A lock holder that is not primary does not promote when the renewal fails.
#[test]
fn replica_lock_holder_does_not_promote_when_renewal_fails() {
    let o = obs("pg-0", three(), replica(None, LAST_LSN));
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Refused));
    assert_final(
        &c,
        &[],
        "not promoting because failed to update leader lock in DCS",
    );
}

/// A lock holder running as replica promotes once its renewal succeeded.
#[test]
fn lock_holder_replica_promotes_after_renewal() {
    let o = obs("pg-0", three(), replica(None, LAST_LSN));
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Renewed));
    assert_eq!(
        c.queries,
        [Action::RenewLeader {
            last_lsn: None,
            failsafe: None
        }]
    );
    assert_final(
        &c,
        &[Action::Promote],
        "promoted self to leader because I had the session lock",
    );
}

/// A `nofailover` lock holder never promotes: it gives the lock back.
#[test]
fn nofailover_lock_holder_releases_instead_of_promoting() {
    let o = with_tags(
        obs("pg-0", three(), replica(None, LAST_LSN)),
        crate::ha::MemberTags::default().with_nofailover(true),
    );
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Renewed));
    assert_final(
        &c,
        &[release()],
        "released leader lock because I am not allowed to promote",
    );
}

/// A lock holder too far behind the last leader position never promotes.
#[test]
fn lagging_lock_holder_releases_instead_of_promoting() {
    let o = obs("pg-0", three(), replica(None, LAST_LSN - 2_000_000));
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Renewed));
    assert_final(
        &c,
        &[release()],
        "released leader lock because my wal position exceeds maximum replication lag",
    );
}

/// The lock holder fills in a missing `initialize` key and `config`.
#[test]
fn lock_holder_writes_missing_initialize_and_config() {
    let mut cl = three();
    cl.initialize = Some(String::new());
    cl.config = None;
    let c = run(
        obs("pg-0", cl, primary(LAST_LSN)),
        &cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[
            Action::WriteInitializeKey {
                sysid: SYSID.into(),
            },
            Action::WriteConfig,
        ],
        "no action. I am (pg-0), the leader with the lock",
    );
}

/// A lock holder whose primary crashed restarts it as primary (no lock change).
#[test]
fn crashed_primary_lock_holder_restarts_as_primary() {
    let mut o = obs(
        "pg-0",
        three(),
        stopped(ControlState::InProduction, Some(PgRole::Primary)),
    );
    o.memory.last_healthy = Some(NOW - secs(10));
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Renewed));
    assert_eq!(
        c.queries,
        [Action::RenewLeader {
            last_lsn: None,
            failsafe: None
        }]
    );
    assert_final(
        &c,
        &[Action::StartPostgres {
            role: StartRole::Primary,
            timeout: Some(secs(300)),
        }],
        "starting primary after failure",
    );
}

/// With `primary_start_timeout` 0 a crashed primary fails over when a healthy replica exists.
#[test]
fn crashed_primary_fails_over_when_start_timeout_is_zero() {
    let mut config = cfg();
    config.primary_start_timeout = secs(0);
    let mut o = obs(
        "pg-0",
        three(),
        stopped(ControlState::InProduction, Some(PgRole::Primary)),
    );
    o.memory.last_healthy = Some(NOW - secs(10));
    let rt = Runtime::none()
        .renew(LockOutcome::Renewed)
        .peers(vec![peer("pg-1", LAST_LSN), peer("pg-2", LAST_LSN)]);
    let c = run(o.clone(), &config, NOW, &rt);
    assert_eq!(c.queries.len(), 2);
    assert_eq!(
        c.queries[1],
        Action::CheckPeers {
            members: vec![target("pg-1"), target("pg-2")]
        }
    );
    assert_final(
        &c,
        &[release()],
        "stopped PostgreSQL to fail over after a crash",
    );

    // Nobody to fail over to: start read-only and promote later.
    let rt = Runtime::none()
        .renew(LockOutcome::Renewed)
        .peers(vec![PeerStatus::unreachable("pg-1"), peer("pg-2", 1)]);
    let c = run(o, &config, NOW, &rt);
    assert_final(
        &c,
        &[Action::StartPostgres {
            role: StartRole::Replica { upstream: None },
            timeout: None,
        }],
        "starting as readonly because i had the session lock",
    );
}

/// A primary down longer than `primary_start_timeout` is failed over rather than restarted.
#[test]
fn primary_down_past_start_timeout_fails_over() {
    let mut o = obs(
        "pg-0",
        three(),
        stopped(ControlState::InProduction, Some(PgRole::Primary)),
    );
    o.memory.last_healthy = Some(NOW - secs(301));
    let rt = Runtime::none()
        .renew(LockOutcome::Renewed)
        .peers(vec![peer("pg-1", LAST_LSN)]);
    let c = run(o, &cfg(), NOW, &rt);
    assert_final(
        &c,
        &[release()],
        "stopped PostgreSQL to fail over after a crash",
    );
}

/// A failed start makes the lock holder give the lock up.
#[test]
fn failed_start_releases_lock() {
    let mut o = obs("pg-0", three(), stopped(ControlState::InProduction, None));
    o.memory.finished = Some(Finished {
        action: Action::StartPostgres {
            role: StartRole::Primary,
            timeout: Some(secs(300)),
        },
        succeeded: false,
    });
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[release()],
        "removed leader key after trying and failing to start postgres",
    );
}

/// A primary still starting within `primary_start_timeout` is waited for.
#[test]
fn starting_primary_within_timeout_is_waited_for() {
    let o = obs("pg-0", three(), starting(PgRole::Primary, NOW - secs(100)));
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Renewed));
    assert_final(
        &c,
        &[],
        "PostgreSQL is still starting up, 200 seconds until timeout",
    );
    assert_eq!(c.decision.next_cycle_at, Some(NOW + secs(200)));
}

/// A primary starting for longer than `primary_start_timeout` is stopped
/// and the lock released when a replica can take over; else it is waited for.
#[test]
fn starting_primary_past_timeout_fails_over_only_when_possible() {
    let o = obs("pg-0", three(), starting(PgRole::Primary, NOW - secs(301)));
    let rt = Runtime::none()
        .renew(LockOutcome::Renewed)
        .peers(vec![peer("pg-1", LAST_LSN)]);
    let c = run(o.clone(), &cfg(), NOW, &rt);
    assert_final(
        &c,
        &[demote(DemoteMode::Immediate), release()],
        "stopped PostgreSQL because of startup timeout",
    );
    let rt = Runtime::none()
        .renew(LockOutcome::Renewed)
        .peers(vec![peer("pg-1", 5)]);
    let c = run(o, &cfg(), NOW, &rt);
    assert_final(
        &c,
        &[],
        "primary start has timed out, but continuing to wait because failover is not possible",
    );
}

/// A starting primary whose lock is lost is stopped.
#[test]
fn starting_primary_that_loses_lock_is_stopped() {
    let o = obs("pg-0", three(), starting(PgRole::Primary, NOW - secs(1)));
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Refused));
    assert_final(
        &c,
        &[demote(DemoteMode::ImmediateNoLock)],
        "stopped PostgreSQL while starting up because leader key was lost",
    );
}

/// During background work the lock holder only renews its lock.
#[test]
fn lock_holder_renews_during_background_work() {
    let mut o = obs("pg-0", three(), replica(None, LAST_LSN));
    o.memory.in_progress = Some(Action::Promote);
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Renewed));
    assert_final(&c, &[], "updated leader lock during promote");
}

/// A promotion still running when the lock is gone is cancelled.
#[test]
fn promotion_is_cancelled_when_lock_is_lost() {
    let mut o = obs("pg-0", three(), replica(None, LAST_LSN));
    o.memory.in_progress = Some(Action::Promote);
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Refused));
    assert_final(&c, &[Action::CancelAsync], "lost leader before promote");
}

/// A primary being (re)started in the background without the lock is stopped.
#[test]
fn primary_starting_in_background_without_lock_is_stopped() {
    let mut o = obs("pg-1", three(), starting(PgRole::Primary, NOW));
    o.memory.in_progress = Some(Action::StartPostgres {
        role: StartRole::Primary,
        timeout: Some(secs(300)),
    });
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::CancelAsync, demote(DemoteMode::ImmediateNoLock)],
        "lost leader lock during starting primary after failure",
    );
}

/// Other background work of a member without the lock just runs on.
#[test]
fn background_work_of_a_replica_is_reported() {
    let mut o = obs("pg-2", three(), crate::ha::LocalPostgres::Empty);
    o.memory.in_progress = Some(Action::CloneReplica {
        source: crate::ha::CloneSource::Leader(up("pg-0")),
    });
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "bootstrap from leader 'pg-0' in progress");
}

/// A promotion abandoned because the `pre_promote` script failed: the lock holder gives the
/// lock back in the next cycle (Patroni: "Promotion cancelled because the pre-promote script
/// failed") and stays out of the race for `ttl`, then races again.
#[test]
fn failed_pre_promote_gives_the_lock_back_and_backs_off() {
    let mut o = obs("pg-0", three(), replica(None, LAST_LSN));
    o.memory.finished = Some(Finished {
        action: Action::Promote,
        succeeded: false,
    });
    o.memory.pre_promote_failed_at = Some(NOW - secs(2));
    let c = run(
        o.clone(),
        &cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[release()],
        "Promotion cancelled because the pre-promote script failed",
    );

    let mut unlocked = obs(
        "pg-0",
        cluster(None, &["pg-0", "pg-1", "pg-2"]),
        replica(None, LAST_LSN),
    );
    unlocked.memory.pre_promote_failed_at = Some(NOW - secs(2));
    let backing_off = run(unlocked.clone(), &cfg(), NOW, &Runtime::none());
    assert!(backing_off.queries.is_empty(), "{:?}", backing_off.queries);
    let later = run(
        unlocked,
        &cfg(),
        NOW + cfg().ttl,
        &Runtime::none()
            .peers(vec![peer("pg-1", LAST_LSN), peer("pg-2", LAST_LSN)])
            .acquire(LockOutcome::Acquired),
    );
    assert!(
        later.queries.contains(&Action::AcquireLeader),
        "{:?}",
        later.queries
    );
}
