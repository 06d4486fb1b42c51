//! The invariant checker catches each unsafe decision, and no decision over
//! a wide grid of situations breaks an invariant.

use super::fixtures::*;
use crate::ha::invariants::{Violation, check};
use crate::ha::{
    Action, ControlState, Decision, Finished, LocalPostgres, LockOutcome, MemberTags, PgRole,
    ReinitRequest, RemovalReason, StartRole, TimelineVerdict,
};

fn three() -> crate::Cluster {
    cluster(Some("pg-0"), &["pg-0", "pg-1", "pg-2"])
}

fn only(action: Action) -> Decision {
    Decision::new(vec![action], "test")
}

/// Promoting without a successful lock write this cycle is caught.
#[test]
fn checker_rejects_promote_without_lock() {
    let o = obs("pg-1", three(), replica(Some("pg-0"), LAST_LSN));
    assert_eq!(
        check(&o, &cfg(), NOW, &only(Action::Promote)),
        Err(Violation::PromoteWithoutLock)
    );
}

/// Promoting a `nofailover` or lagging member is caught, even with the lock.
#[test]
fn checker_rejects_promote_of_nofailover_or_lagging_member() {
    let mut o = with_tags(
        obs("pg-1", three(), replica(None, LAST_LSN)),
        MemberTags::default().with_nofailover(true),
    );
    o.cycle.lock = Some(LockOutcome::Acquired);
    assert_eq!(
        check(&o, &cfg(), NOW, &only(Action::Promote)),
        Err(Violation::PromoteNofailover)
    );
    let mut o = obs("pg-1", three(), replica(None, LAST_LSN - 2_000_000));
    o.cycle.lock = Some(LockOutcome::Renewed);
    assert_eq!(
        check(&o, &cfg(), NOW, &only(Action::Promote)),
        Err(Violation::PromoteLagging { lag: 2_000_000 })
    );
}

/// A primary that neither holds a fresh lock nor demotes is caught.
#[test]
fn checker_rejects_primary_running_without_lock() {
    let o = obs("pg-1", three(), primary(LAST_LSN));
    assert_eq!(
        check(&o, &cfg(), NOW, &Decision::report("x")),
        Err(Violation::PrimaryWithoutLock)
    );
}

/// A primary kept running past its lease is caught (here a `retry_timeout` longer than the
/// lease, which the configuration never allows, lets the outage grace outlive it); a renewal
/// in this cycle clears it.
#[test]
fn checker_rejects_primary_running_past_its_lease() {
    let mut o = obs("pg-1", three(), primary(LAST_LSN));
    o.dcs = crate::ha::DcsView::Unreachable;
    o.memory.last_lock_renewal = Some(NOW - secs(29));
    let short = crate::ha::HaConfig {
        ttl: secs(29),
        retry_timeout: secs(60),
        ..cfg()
    };
    assert_eq!(
        check(&o, &short, NOW, &Decision::report("x")),
        Err(Violation::PrimaryPastLease)
    );
    o.dcs = crate::ha::DcsView::reachable(three());
    o.cycle.lock = Some(LockOutcome::Renewed);
    assert_eq!(check(&o, &short, NOW, &Decision::report("x")), Ok(()));
}

/// Bootstrapping or cloning over existing data is caught.
#[test]
fn checker_rejects_overwriting_data() {
    let mut o = obs("pg-1", three(), replica(None, 1));
    o.cycle.initialize = Some(true);
    assert_eq!(
        check(&o, &cfg(), NOW, &only(Action::Bootstrap)),
        Err(Violation::WouldOverwriteData)
    );
    let o = obs("pg-1", three(), LocalPostgres::Empty);
    assert_eq!(
        check(&o, &cfg(), NOW, &only(Action::Bootstrap)),
        Err(Violation::BootstrapWithoutInitializeKey)
    );
}

/// Removing data without a request or a permitting setting is caught.
#[test]
fn checker_rejects_unallowed_data_removal() {
    let o = obs("pg-1", three(), stopped(ControlState::ShutDown, None));
    for reason in [
        RemovalReason::ReinitRequested,
        RemovalReason::RewindFailed,
        RemovalReason::DivergedTimelines,
    ] {
        assert_eq!(
            check(
                &o,
                &cfg(),
                NOW,
                &only(Action::RemoveDataDirectory { reason })
            ),
            Err(Violation::RemovalNotAllowed(reason))
        );
    }
    let mut o = obs("pg-1", three(), replica(None, 1));
    o.requests.reinit = Some(ReinitRequest::default());
    assert_eq!(
        check(
            &o,
            &cfg(),
            NOW,
            &only(Action::RemoveDataDirectory {
                reason: RemovalReason::ReinitRequested
            })
        ),
        Err(Violation::RemovalWhileRunning)
    );
}

/// Starting Postgres in pause, or mixing a query with effects, is caught.
#[test]
fn checker_rejects_pause_breaches_and_mixed_queries() {
    let mut o = obs("pg-1", three(), stopped(ControlState::ShutDown, None));
    o.paused = true;
    let start = Action::StartPostgres {
        role: StartRole::Replica { upstream: None },
        timeout: None,
    };
    assert!(matches!(
        check(&o, &cfg(), NOW, &only(start.clone())),
        Err(Violation::PostgresTouchedInPause(_))
    ));
    o.paused = false;
    assert_eq!(
        check(
            &o,
            &cfg(),
            NOW,
            &Decision::new(vec![Action::AcquireLeader, start], "x")
        ),
        Err(Violation::QueryNotAlone)
    );
}

fn postgres_states() -> Vec<LocalPostgres> {
    vec![
        LocalPostgres::Empty,
        primary(LAST_LSN),
        replica(Some("pg-0"), LAST_LSN),
        replica(None, LAST_LSN - 5_000_000),
        stopped(ControlState::InProduction, Some(PgRole::Primary)),
        stopped(ControlState::ShutDownInRecovery, None),
        starting(PgRole::Primary, NOW - secs(400)),
        starting(PgRole::Replica, NOW - secs(5)),
    ]
}

fn clusters() -> Vec<crate::Cluster> {
    let mut out = Vec::new();
    for leader in [Some("pg-0"), Some("pg-2"), None] {
        for f in [
            None,
            Some(failover(Some("pg-0"), Some("pg-1"), None)),
            Some(failover(None, Some("pg-2"), None)),
        ] {
            for init in [Some(SYSID.to_string()), None] {
                let mut c = cluster(leader, &["pg-0", "pg-1", "pg-2"]);
                c.failover = f.clone();
                c.initialize = init;
                out.push(c);
            }
        }
    }
    out
}

fn runtimes() -> [Runtime; 3] {
    [
        Runtime::none()
            .renew(LockOutcome::Renewed)
            .acquire(LockOutcome::Acquired)
            .initialize(true)
            .peers(vec![peer("pg-0", 1), peer("pg-1", 1), peer("pg-2", 1)])
            .timeline(TimelineVerdict::NeedsRewind),
        Runtime::none()
            .renew(LockOutcome::Refused)
            .acquire(LockOutcome::Refused)
            .initialize(false)
            .peers(vec![peer_primary("pg-0"), peer("pg-1", LAST_LSN * 2)])
            .timeline(TimelineVerdict::RewindFailed),
        Runtime::none()
            .renew(LockOutcome::Refused)
            .acquire(LockOutcome::Acquired)
            .initialize(true)
            .peers(Vec::new())
            .timeline(TimelineVerdict::Undetermined),
    ]
}

fn configs() -> [crate::ha::HaConfig; 2] {
    let mut permissive = cfg();
    permissive.use_pg_rewind = true;
    permissive.remove_data_directory_on_rewind_failure = true;
    permissive.remove_data_directory_on_diverged_timelines = true;
    permissive.primary_start_timeout = secs(0);
    permissive.check_timeline = true;
    [cfg(), permissive]
}

/// Over every combination of member, cluster, Postgres state, pause, tags,
/// memory, configuration and query answers, every step of every cycle
/// keeps the invariants (checked inside `run`) and the cycle ends.
#[test]
fn no_decision_in_the_grid_breaks_an_invariant() {
    let mut cycles = 0;
    for me in ["pg-0", "pg-1", "pg-2"] {
        for cl in clusters() {
            for reachable in [true, false] {
                for pg in postgres_states() {
                    for paused in [false, true] {
                        for nofailover in [false, true] {
                            for memory in 0..6 {
                                let mut o = obs(me, cl.clone(), pg.clone());
                                if !reachable {
                                    o.dcs = crate::ha::DcsView::Unreachable;
                                }
                                o.paused = paused;
                                o.me.tags = MemberTags::default().with_nofailover(nofailover);
                                o.memory.last_healthy = Some(NOW - secs(30));
                                o.memory.last_lock_renewal = Some(NOW - secs(5 * memory));
                                match memory {
                                    0 => o.memory.first_cycle = true,
                                    1 => o.memory.in_progress = Some(Action::Promote),
                                    2 => {
                                        o.memory.finished = Some(Finished {
                                            action: Action::Bootstrap,
                                            succeeded: true,
                                        });
                                    }
                                    3 => o.requests.reinit = Some(ReinitRequest::default()),
                                    4 => {
                                        o.memory.in_progress = Some(Action::StartPostgres {
                                            role: StartRole::Primary,
                                            timeout: None,
                                        });
                                    }
                                    _ => {
                                        o.memory.finished = Some(Finished {
                                            action: Action::StartPostgres {
                                                role: StartRole::Primary,
                                                timeout: None,
                                            },
                                            succeeded: false,
                                        });
                                    }
                                }
                                for config in configs() {
                                    for rt in runtimes() {
                                        let c = run(o.clone(), &config, NOW, &rt);
                                        assert!(c.decision.is_final());
                                        cycles += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cycles, 3 * 18 * 2 * 8 * 2 * 2 * 6 * 2 * 3);
}

/// Extreme clock readings and odd schedules neither panic nor break an invariant.
#[test]
fn extreme_clock_values_do_not_panic() {
    let max = std::time::Duration::MAX;
    for now in [std::time::Duration::ZERO, NOW, max] {
        for at in ["9999-12-31T23:59:59+00:00", "0000-01-01T00:00:00Z", "x"] {
            let mut cl = three();
            cl.failover = Some(failover(Some("pg-0"), Some("pg-1"), Some(at)));
            let mut o = obs("pg-0", cl, starting(PgRole::Primary, max));
            o.wall_clock = max;
            o.memory.last_lock_renewal = Some(max);
            o.memory.last_healthy = Some(max);
            o.memory.unlocked_since = Some(max);
            let rt = Runtime::none()
                .renew(LockOutcome::Renewed)
                .peers(vec![peer("pg-1", LAST_LSN)]);
            let c = run(o.clone(), &cfg(), now, &rt);
            assert!(c.decision.is_final());
            o.postgres = primary(LAST_LSN);
            let c = run(o, &cfg(), now, &rt);
            assert!(c.decision.is_final());
        }
    }
}
