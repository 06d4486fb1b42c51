//! Operator restarts (Patroni's `restart_matches`, `restart`, `evaluate_scheduled_restart`):
//! conditions, role and start timeout of an immediate restart, and when a scheduled one runs,
//! waits or is dropped.

use super::fixtures::*;
use crate::Role;
use crate::ha::restart::{
    Dropped, RestartConditions, RestartFacts, RestartVerdict, ScheduledRestart, ScheduledVerdict,
    restart_verdict, scheduled_restart_verdict,
};
use crate::ha::{ControlState, HaConfig, PgRole};

fn three() -> crate::Cluster {
    cluster(Some("pg-0"), &["pg-0", "pg-1", "pg-2"])
}

fn facts() -> RestartFacts {
    RestartFacts {
        last_role: None,
        server_version: Some(150_004),
        pending_restart: false,
        pg_ctl_timeout: secs(60),
    }
}

fn ha() -> HaConfig {
    HaConfig {
        ttl: secs(30),
        loop_wait: secs(10),
        primary_start_timeout: secs(300),
        ..cfg()
    }
}

/// The leader restarts as primary with `primary_start_timeout` capped at half the ttl (it
/// renews no lock meanwhile); a replica with `pg_ctl_timeout`; a request's timeout wins,
/// still capped on the leader.
#[test]
fn role_and_timeout() {
    let none = RestartConditions::default();
    let leader = obs("pg-0", three(), primary(LAST_LSN));
    assert_eq!(
        restart_verdict(&none, &facts(), &leader, &ha()),
        RestartVerdict::Restart {
            role: PgRole::Primary,
            timeout: secs(15),
        }
    );
    let replica = obs("pg-1", three(), replica(Some("pg-0"), LAST_LSN));
    assert_eq!(
        restart_verdict(&none, &facts(), &replica, &ha()),
        RestartVerdict::Restart {
            role: PgRole::Replica,
            timeout: secs(60),
        }
    );
    let short = RestartConditions {
        timeout: Some(secs(5)),
        ..none.clone()
    };
    assert_eq!(
        restart_verdict(&short, &facts(), &replica, &ha()),
        RestartVerdict::Restart {
            role: PgRole::Replica,
            timeout: secs(5),
        }
    );
    let long = RestartConditions {
        timeout: Some(secs(100)),
        ..none
    };
    assert_eq!(
        restart_verdict(&long, &facts(), &leader, &ha()),
        RestartVerdict::Restart {
            role: PgRole::Primary,
            timeout: secs(15),
        }
    );
}

/// Each condition refuses with Patroni's reason; a starting server is "still starting"; a
/// stopped one restarts in the role it last ran in, or not at all when it never ran.
#[test]
fn conditions() {
    let replica = obs("pg-1", three(), replica(Some("pg-0"), LAST_LSN));
    let as_primary = RestartConditions {
        role: Some(Role::Primary),
        ..Default::default()
    };
    assert_eq!(
        restart_verdict(&as_primary, &facts(), &replica, &ha()),
        RestartVerdict::NotSatisfied("host role mismatch")
    );
    for (wanted, runs) in [(150_004, false), (150_003, false), (150_005, true)] {
        let c = RestartConditions {
            postgres_version: Some(wanted),
            ..Default::default()
        };
        let v = restart_verdict(&c, &facts(), &replica, &ha());
        assert_eq!(
            matches!(v, RestartVerdict::Restart { .. }),
            runs,
            "{wanted}"
        );
    }
    let pending = RestartConditions {
        restart_pending: true,
        ..Default::default()
    };
    assert_eq!(
        restart_verdict(&pending, &facts(), &replica, &ha()),
        RestartVerdict::NotSatisfied("pending restart flag is not set")
    );
    let with_pending = RestartFacts {
        pending_restart: true,
        ..facts()
    };
    assert!(matches!(
        restart_verdict(&pending, &with_pending, &replica, &ha()),
        RestartVerdict::Restart { .. }
    ));
    let starting = obs("pg-1", three(), starting(PgRole::Replica, NOW));
    assert_eq!(
        restart_verdict(&pending, &facts(), &starting, &ha()),
        RestartVerdict::StillStarting
    );
    let stopped = obs(
        "pg-1",
        three(),
        stopped(ControlState::ShutDownInRecovery, None),
    );
    assert_eq!(
        restart_verdict(&Default::default(), &facts(), &stopped, &ha()),
        RestartVerdict::NotSatisfied("postgres is not running")
    );
    let ran = RestartFacts {
        last_role: Some(PgRole::Replica),
        ..facts()
    };
    assert!(matches!(
        restart_verdict(&Default::default(), &ran, &stopped, &ha()),
        RestartVerdict::Restart {
            role: PgRole::Replica,
            ..
        }
    ));
}

/// Scheduled `offset` seconds from [`WALL`] (before it when negative).
fn at(offset: i64) -> ScheduledRestart {
    let d = secs(offset.unsigned_abs());
    ScheduledRestart {
        at: if offset >= 0 { WALL + d } else { WALL - d },
        start_time_then: Some("2025-03-01 09:00:00+00".into()),
    }
}

/// Patroni's window: waits until its time, runs from then until 1.5 × `loop_wait` (whole
/// seconds) late, drops it when later.
#[test]
fn scheduled_restart_window() {
    let o = obs("pg-1", three(), replica(Some("pg-0"), LAST_LSN));
    let start = Some("2025-03-01 09:00:00+00");
    let v = |offset| scheduled_restart_verdict(&at(offset), start, false, &o, &ha());
    assert_eq!(
        v(100),
        ScheduledVerdict::Wait {
            due_in: Some(secs(100))
        }
    );
    assert_eq!(
        v(3),
        ScheduledVerdict::Wait {
            due_in: Some(secs(3))
        }
    );
    assert_eq!(v(0), ScheduledVerdict::Run);
    assert_eq!(v(-15), ScheduledVerdict::Run);
    assert_eq!(v(-16), ScheduledVerdict::Drop(Dropped::Stale));
}

/// A restart of the server since scheduling drops it; a busy cycle, maintenance mode or a
/// cluster without a leader make it wait.
#[test]
fn scheduled_restart_gates() {
    let o = obs("pg-1", three(), replica(Some("pg-0"), LAST_LSN));
    let due = at(-1);
    assert_eq!(
        scheduled_restart_verdict(&due, Some("2025-03-01 09:30:00+00"), false, &o, &ha()),
        ScheduledVerdict::Drop(Dropped::RestartedSince)
    );
    assert_eq!(
        scheduled_restart_verdict(&due, None, false, &o, &ha()),
        ScheduledVerdict::Run
    );
    let wait = ScheduledVerdict::Wait { due_in: None };
    assert_eq!(scheduled_restart_verdict(&due, None, true, &o, &ha()), wait);
    let mut paused = o.clone();
    paused.paused = true;
    assert_eq!(
        scheduled_restart_verdict(&due, None, false, &paused, &ha()),
        wait
    );
    let leaderless = obs(
        "pg-1",
        cluster(None, &["pg-0", "pg-1", "pg-2"]),
        replica(Some("pg-0"), LAST_LSN),
    );
    assert_eq!(
        scheduled_restart_verdict(&due, None, false, &leaderless, &ha()),
        wait
    );
}
