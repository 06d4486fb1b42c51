//! ha-loop.md §6.1, §7 and §17: members without the lock follow the right
//! upstream, restart a stopped server as replica, and repair diverged
//! timelines; reinitialise requests.

use super::fixtures::*;
use crate::ha::{
    Action, CloneSource, ControlState, DemoteMode, MemberTags, PgRole, ReinitRequest,
    RemovalReason, StartRole, StopMode, TimelineCheck, TimelineVerdict,
};

fn three() -> crate::Cluster {
    cluster(Some("pg-0"), &["pg-0", "pg-1", "pg-2"])
}

const FOLLOWING: &str = "no action. I am (pg-1), a secondary, and following a leader (pg-0)";

fn start_following(leader: &str) -> Action {
    Action::StartPostgres {
        role: StartRole::Replica {
            upstream: Some(up(leader)),
        },
        timeout: None,
    }
}

fn rewinding() -> crate::ha::HaConfig {
    let mut c = cfg();
    c.use_pg_rewind = true;
    c
}

/// A replica that follows the leader needs nothing.
#[test]
fn replica_following_the_leader_does_nothing() {
    let c = run(
        obs("pg-1", three(), replica(Some("pg-0"), LAST_LSN)),
        &cfg(),
        NOW,
        &Runtime::none(),
    );
    assert!(c.queries.is_empty());
    assert_final(&c, &[], FOLLOWING);
}

/// A replica streaming from a former leader is pointed at the current one.
#[test]
fn replica_following_wrong_leader_is_repointed() {
    for current in [Some("pg-2"), None] {
        let c = run(
            obs("pg-1", three(), replica(current, LAST_LSN)),
            &cfg(),
            NOW,
            &Runtime::none(),
        );
        assert_final(
            &c,
            &[Action::FollowLeader {
                upstream: Some(up("pg-0")),
            }],
            FOLLOWING,
        );
    }
}

/// `replicatefrom` picks the upstream; `nostream` streams from nobody.
#[test]
fn replicatefrom_and_nostream_tags_choose_the_upstream() {
    let mut tags = MemberTags {
        replicatefrom: Some("pg-2".into()),
        ..Default::default()
    };
    let o = with_tags(
        obs("pg-1", three(), replica(Some("pg-0"), LAST_LSN)),
        tags.clone(),
    );
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::FollowLeader {
            upstream: Some(up("pg-2")),
        }],
        FOLLOWING,
    );
    tags.nostream = true;
    let o = with_tags(obs("pg-1", three(), replica(Some("pg-0"), LAST_LSN)), tags);
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[Action::FollowLeader { upstream: None }], FOLLOWING);
}

/// While the leader's address is unknown the configured upstream is kept.
#[test]
fn leader_without_conn_url_keeps_current_upstream() {
    let mut cl = three();
    for m in &mut cl.members {
        if m.name == "pg-0" {
            m.data.conn_url = None;
        }
    }
    if let Some(l) = cl.leader.as_mut() {
        l.member = None;
    }
    let c = run(
        obs("pg-1", cl, replica(Some("pg-2"), LAST_LSN)),
        &cfg(),
        NOW,
        &Runtime::none(),
    );
    assert_final(&c, &[], FOLLOWING);
}

/// A running primary without the lock, while another member holds it, stops at once.
#[test]
fn primary_without_lock_in_locked_cluster_demotes() {
    let c = run(
        obs("pg-1", three(), primary(LAST_LSN)),
        &cfg(),
        NOW,
        &Runtime::none(),
    );
    assert_final(
        &c,
        &[Action::Demote {
            mode: DemoteMode::ImmediateNoLock,
            stop_timeout: None,
        }],
        "demoting self because I do not have the lock and I was a leader",
    );
}

/// A crashed replica is restarted as a replica of the leader.
#[test]
fn crashed_replica_restarts_as_secondary() {
    let o = obs(
        "pg-1",
        three(),
        stopped(ControlState::InArchiveRecovery, Some(PgRole::Replica)),
    );
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert!(
        c.queries.is_empty(),
        "no timeline check without rewind or reclone"
    );
    assert_final(&c, &[start_following("pg-0")], "starting as a secondary");
}

/// A crashed primary without the lock is first recovered in single-user mode (Patroni:
/// `doing crash recovery in a single user mode`), then restarts as replica after checking
/// its timeline when rewind is possible.
#[test]
fn crashed_primary_without_lock_recovers_then_restarts_as_replica_after_timeline_check() {
    let o = obs(
        "pg-1",
        three(),
        stopped(ControlState::InProduction, Some(PgRole::Primary)),
    );
    let c = run(o, &rewinding(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::RecoverCrash],
        "doing crash recovery in a single user mode",
    );
    let mut o = obs("pg-1", three(), stopped(ControlState::ShutDown, None));
    o.memory.finished = Some(crate::ha::Finished {
        action: Action::RecoverCrash,
        succeeded: true,
    });
    let c = run(
        o,
        &rewinding(),
        NOW,
        &Runtime::none().timeline(TimelineVerdict::InSync),
    );
    assert_eq!(c.queries, [Action::CheckTimeline { leader: up("pg-0") }]);
    assert_final(&c, &[start_following("pg-0")], "starting as a secondary");
}

/// Diverged timelines are repaired by pg_rewind when allowed and usable.
#[test]
fn diverged_timeline_is_rewound_when_rewind_is_usable() {
    let o = obs("pg-1", three(), stopped(ControlState::ShutDown, None));
    let c = run(
        o,
        &rewinding(),
        NOW,
        &Runtime::none().timeline(TimelineVerdict::NeedsRewind),
    );
    assert_final(
        &c,
        &[Action::Rewind { from: up("pg-0") }],
        "running pg_rewind from pg-0",
    );
}

/// Without usable rewind, diverged timelines are recloned only when
/// `remove_data_directory_on_diverged_timelines` allows it.
#[test]
fn diverged_timeline_is_recloned_only_when_allowed() {
    let pg = without_rewind(stopped(ControlState::ShutDown, None));
    let mut config = rewinding();
    config.remove_data_directory_on_diverged_timelines = true;
    let c = run(
        obs("pg-1", three(), pg.clone()),
        &config,
        NOW,
        &Runtime::none().timeline(TimelineVerdict::NeedsRewind),
    );
    assert_final(
        &c,
        &[
            Action::RemoveDataDirectory {
                reason: RemovalReason::DivergedTimelines,
            },
            Action::CloneReplica {
                source: CloneSource::Leader(up("pg-0")),
            },
        ],
        "reinitializing due to diverged timelines",
    );

    // Neither rewind nor removal allowed: no check, no removal, just start.
    let c = run(
        obs("pg-1", three(), pg),
        &rewinding(),
        NOW,
        &Runtime::none(),
    );
    assert!(c.queries.is_empty());
    assert_final(&c, &[start_following("pg-0")], "starting as a secondary");
}

/// After a failed rewind the data is removed only when
/// `remove_data_directory_on_rewind_failure` allows it; otherwise the
/// member starts as it is and the rewind is not retried.
#[test]
fn failed_rewind_removes_data_only_when_allowed() {
    let mut o = obs("pg-1", three(), stopped(ControlState::ShutDown, None));
    o.memory.timeline_check = Some(TimelineCheck {
        leader: "pg-0".into(),
        leader_timeline: 1,
        verdict: TimelineVerdict::RewindFailed,
        checked_at: NOW - secs(10),
    });
    let mut config = rewinding();
    config.remove_data_directory_on_rewind_failure = true;
    let c = run(o.clone(), &config, NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::RemoveDataDirectory {
            reason: RemovalReason::RewindFailed,
        }],
        "removing data directory after pg_rewind failure",
    );
    let c = run(o, &rewinding(), NOW, &Runtime::none());
    assert_final(&c, &[start_following("pg-0")], "starting as a secondary");
}

/// A running replica behind the leader's timeline checks for divergence and rewinds.
#[test]
fn running_replica_behind_leader_timeline_is_rewound() {
    let mut cl = three();
    for m in &mut cl.members {
        if m.name == "pg-0" {
            m.data.timeline = Some(2);
        }
    }
    let o = obs("pg-1", cl, replica(Some("pg-0"), LAST_LSN));
    let c = run(
        o,
        &rewinding(),
        NOW,
        &Runtime::none().timeline(TimelineVerdict::NeedsRewind),
    );
    assert_eq!(c.queries, [Action::CheckTimeline { leader: up("pg-0") }]);
    assert_final(
        &c,
        &[Action::Rewind { from: up("pg-0") }],
        "running pg_rewind from pg-0",
    );
}

/// A check that could not be made is asked again in a later cycle, not in the same one.
#[test]
fn undetermined_timeline_check_is_retried_next_cycle() {
    let o = obs("pg-1", three(), stopped(ControlState::ShutDown, None));
    let c = run(
        o.clone(),
        &rewinding(),
        NOW,
        &Runtime::none().timeline(TimelineVerdict::Undetermined),
    );
    assert_eq!(c.queries.len(), 1);
    assert_final(&c, &[start_following("pg-0")], "starting as a secondary");

    let mut o = o;
    o.memory.timeline_check = Some(TimelineCheck {
        leader: "pg-0".into(),
        leader_timeline: 1,
        verdict: TimelineVerdict::Undetermined,
        checked_at: NOW,
    });
    let later = NOW + secs(10);
    let c = run(
        o,
        &rewinding(),
        later,
        &Runtime::none().timeline(TimelineVerdict::InSync),
    );
    assert_eq!(c.queries.len(), 1);
}

/// A reinitialise request stops Postgres, removes the data and clones again.
#[test]
fn reinit_request_stops_removes_and_clones() {
    let mut o = obs("pg-1", three(), replica(Some("pg-0"), LAST_LSN));
    o.requests.reinit = Some(ReinitRequest { from_leader: true });
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[
            Action::StopPostgres {
                mode: StopMode::Immediate,
            },
            Action::RemoveDataDirectory {
                reason: RemovalReason::ReinitRequested,
            },
            Action::CloneReplica {
                source: CloneSource::Leader(up("pg-0")),
            },
        ],
        "reinitialize: bootstrap from leader 'pg-0'",
    );
}

/// The leader ignores a reinitialise request (the REST API refuses it).
#[test]
fn reinit_request_is_ignored_on_the_leader() {
    let mut o = obs("pg-0", three(), primary(LAST_LSN));
    o.requests.reinit = Some(ReinitRequest::default());
    let c = run(
        o,
        &cfg(),
        NOW,
        &Runtime::none().renew(crate::ha::LockOutcome::Renewed),
    );
    assert_final(&c, &[], "no action. I am (pg-0), the leader with the lock");
}

/// A cloned (stopped, never run) replica is started by the next cycle.
#[test]
fn freshly_cloned_replica_is_started() {
    let o = obs("pg-2", three(), stopped(ControlState::InProduction, None));
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[start_following("pg-0")], "starting as a secondary");
}

/// A server that did not shut down cleanly as a primary (crashed, or stopped immediately
/// after losing the lock) is first recovered in single-user mode; after that attempt failed
/// it is not repeated in the next cycle.
#[test]
fn unclean_primary_data_is_recovered_in_single_user_mode_first() {
    for control in [
        ControlState::InProduction,
        ControlState::ShuttingDown,
        ControlState::InCrashRecovery,
    ] {
        let o = obs("pg-1", three(), stopped(control, None));
        let c = run(o, &rewinding(), NOW, &Runtime::none());
        assert_final(
            &c,
            &[Action::RecoverCrash],
            "doing crash recovery in a single user mode",
        );
    }
    let mut o = obs("pg-1", three(), stopped(ControlState::InProduction, None));
    o.memory.finished = Some(crate::ha::Finished {
        action: Action::RecoverCrash,
        succeeded: false,
    });
    let c = run(
        o,
        &rewinding(),
        NOW,
        &Runtime::none().timeline(TimelineVerdict::Undetermined),
    );
    assert_final(&c, &[start_following("pg-0")], "starting as a secondary");
}

/// A verdict for an older timeline of the same leader is not used: the leader promoted
/// again (or had not published its new timeline when the check ran), so it is asked anew.
#[test]
fn timeline_check_against_an_older_leader_timeline_is_asked_again() {
    let mut cl = three();
    for m in &mut cl.members {
        if m.name == "pg-0" {
            m.data.timeline = Some(2);
        }
    }
    let mut o = obs("pg-1", cl, replica(Some("pg-0"), LAST_LSN));
    o.memory.timeline_check = Some(TimelineCheck {
        leader: "pg-0".into(),
        leader_timeline: 1,
        verdict: TimelineVerdict::InSync,
        checked_at: NOW - secs(10),
    });
    let c = run(
        o,
        &rewinding(),
        NOW,
        &Runtime::none().timeline(TimelineVerdict::NeedsRewind),
    );
    assert_eq!(c.queries, [Action::CheckTimeline { leader: up("pg-0") }]);
    assert_final(
        &c,
        &[Action::Rewind { from: up("pg-0") }],
        "running pg_rewind from pg-0",
    );
}

/// A forced reinitialise runs while the server keeps failing to start (issue #11).
#[test]
fn reinit_request_runs_after_a_failed_start() {
    let mut o = obs(
        "pg-1",
        three(),
        stopped(ControlState::ShutDownInRecovery, None),
    );
    o.memory.finished = Some(crate::ha::Finished {
        action: start_following("pg-0"),
        succeeded: false,
    });
    o.requests.reinit = Some(crate::ha::ReinitRequest { from_leader: false });
    let c = run(o, &rewinding(), NOW, &Runtime::none());
    assert_eq!(
        c.decision.actions,
        [
            Action::RemoveDataDirectory {
                reason: RemovalReason::ReinitRequested
            },
            Action::CloneReplica {
                source: CloneSource::Leader(up("pg-0"))
            }
        ]
    );
}

/// A standby behind the leader's timeline that does not stream although judged in sync
/// (judged while it still received from the old primary past the fork point) is judged
/// again once per loop; one that streams is left alone.
#[test]
fn in_sync_standby_that_does_not_stream_is_judged_again() {
    let mut cl = three();
    for m in &mut cl.members {
        if m.name == "pg-0" {
            m.data.timeline = Some(2);
        }
    }
    let mut pg = replica(Some("pg-0"), LAST_LSN);
    if let crate::ha::LocalPostgres::Data(d) = &mut pg
        && let crate::ha::PgServer::Replica(r) = &mut d.server
    {
        r.streaming = false;
    }
    let mut o = obs("pg-1", cl, pg);
    o.memory.timeline_check = Some(TimelineCheck {
        leader: "pg-0".into(),
        leader_timeline: 2,
        verdict: TimelineVerdict::InSync,
        checked_at: NOW - secs(10),
    });
    let c = run(
        o.clone(),
        &rewinding(),
        NOW,
        &Runtime::none().timeline(TimelineVerdict::NeedsRewind),
    );
    assert_eq!(c.queries, [Action::CheckTimeline { leader: up("pg-0") }]);
    assert_final(
        &c,
        &[Action::Rewind { from: up("pg-0") }],
        "running pg_rewind from pg-0",
    );
    if let crate::ha::LocalPostgres::Data(d) = &mut o.postgres
        && let crate::ha::PgServer::Replica(r) = &mut d.server
    {
        r.streaming = true;
    }
    let c = run(o, &rewinding(), NOW, &Runtime::none());
    assert!(c.queries.is_empty(), "{:?}", c.queries);
}

/// A fresh base backup (`backup_label`, state `in production`) is started as it is, never
/// recovered in single-user mode (that would end its recovery as a primary).
#[test]
fn base_backup_is_not_recovered_in_single_user_mode() {
    let mut pg = stopped(ControlState::InProduction, None);
    if let crate::ha::LocalPostgres::Data(d) = &mut pg
        && let crate::ha::PgServer::Stopped(s) = &mut d.server
    {
        s.restored_from_backup = true;
    }
    let c = run(
        obs("pg-1", three(), pg),
        &rewinding(),
        NOW,
        &Runtime::none().timeline(TimelineVerdict::Undetermined),
    );
    assert_final(&c, &[start_following("pg-0")], "starting as a secondary");
}
