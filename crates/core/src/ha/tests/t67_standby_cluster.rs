//! Standby clusters (`standby_cluster`, Patroni's `is_standby_cluster`): the lock holder is a
//! standby leader that replicates from the remote primary and never promotes; the others
//! follow it; a new standby cluster clones from the remote instead of running `initdb`;
//! turning the section off promotes the standby leader, turning it on demotes a primary; a
//! member whose history diverged from the remote's is rewound from the remote.

use super::fixtures::*;
use crate::ha::lease::{Fence, fence, fence_lease, holder_fence};
use crate::ha::{
    Action, ControlState, DemoteMode, Finished, HaConfig, LocalPostgres, LockOutcome, PgRole,
    PgServer, ReplicaState, StartRole, StopMode, TimelineCheck, TimelineVerdict, Upstream,
    invariants,
};

/// The remote primary every test's standby cluster follows.
fn remote() -> Upstream {
    Upstream::remote(Some(("10.0.0.9", 5433)))
}

/// The default configuration with `standby_cluster` pointing at [`remote`].
fn standby_cfg() -> HaConfig {
    HaConfig {
        standby_cluster: Some(remote()),
        ..cfg()
    }
}

/// A running replica streaming from `upstream` at `lsn`.
fn replica_of(upstream: Option<Upstream>, lsn: u64) -> LocalPostgres {
    let LocalPostgres::Data(mut d) = replica(None, lsn) else {
        unreachable!("replica() has data")
    };
    d.server = PgServer::Replica(ReplicaState {
        upstream,
        receive_lsn: Some(lsn),
        replay_lsn: lsn,
        timeline: Some(1),
        streaming: true,
    });
    LocalPostgres::Data(d)
}

/// A standby cluster whose lock `pg-0` (the standby leader) holds.
fn standby_cluster(leader: Option<&str>) -> crate::Cluster {
    let mut c = cluster(leader, &["pg-0", "pg-1", "pg-2"]);
    for m in &mut c.members {
        m.data.role = Some(if Some(m.name.as_str()) == leader {
            "standby_leader".into()
        } else {
            "replica".into()
        });
    }
    c
}

fn start_following(upstream: Option<Upstream>) -> Action {
    Action::StartPostgres {
        role: StartRole::Replica { upstream },
        timeout: None,
    }
}

/// The member that wins the bootstrap race of a new standby cluster clones from the remote
/// primary; it never runs `initdb`.
#[test]
fn a_new_standby_cluster_is_cloned_from_the_remote_not_initdb() {
    let mut c = cluster(None, &["pg-0", "pg-1"]);
    c.initialize = None;
    c.config = None;
    let o = obs("pg-0", c, LocalPostgres::Empty);
    let c = run(o, &standby_cfg(), NOW, &Runtime::none().initialize(true));
    assert_eq!(c.queries, [Action::TakeInitializeKey]);
    assert_final(
        &c,
        &[Action::BootstrapStandby { remote: remote() }],
        "trying to bootstrap a new standby leader",
    );
}

/// The others wait for the standby leader while it clones (`initialize` is empty).
#[test]
fn the_others_wait_for_the_standby_leader_to_bootstrap() {
    let mut c = cluster(None, &["pg-0", "pg-1"]);
    c.initialize = Some(String::new());
    let o = obs("pg-1", c, LocalPostgres::Empty);
    let c = run(o, &standby_cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "waiting for standby_leader to bootstrap");
}

/// After its clone of the remote runs as a replica, the new standby leader takes the lock and
/// publishes the system identifier and the dynamic configuration.
#[test]
fn a_finished_standby_bootstrap_takes_the_lock_and_initializes() {
    let mut c = cluster(None, &["pg-0", "pg-1"]);
    c.initialize = Some(String::new());
    c.config = None;
    let mut o = obs("pg-0", c, replica_of(Some(remote()), 500));
    o.memory.finished = Some(Finished {
        action: Action::BootstrapStandby { remote: remote() },
        succeeded: true,
    });
    let c = run(
        o,
        &standby_cfg(),
        NOW,
        &Runtime::none().acquire(LockOutcome::Acquired),
    );
    assert_eq!(c.queries, [Action::AcquireLeader]);
    assert_final(
        &c,
        &[
            Action::WriteInitializeKey {
                sysid: SYSID.into(),
            },
            Action::WriteConfig,
        ],
        "initialized a new cluster",
    );
}

/// A failed clone of the remote gives the `initialize` key back and stops the agent, as a
/// failed bootstrap does.
#[test]
fn a_failed_standby_bootstrap_is_fatal() {
    let mut c = cluster(None, &["pg-0", "pg-1"]);
    c.initialize = Some(String::new());
    let mut o = obs("pg-0", c, LocalPostgres::Empty);
    o.memory.finished = Some(Finished {
        action: Action::BootstrapStandby { remote: remote() },
        succeeded: false,
    });
    let c = run(o, &standby_cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[
            Action::DeleteInitializeKey,
            Action::StopPostgres {
                mode: StopMode::Immediate,
            },
            Action::MoveDataDirectoryAside,
            Action::Fatal {
                reason: "Failed to bootstrap cluster".into(),
            },
        ],
        "removing initialize key after failed attempt to bootstrap the cluster",
    );
}

/// The standby leader renews its lock, publishing how far it replayed, and stays a replica
/// of the remote.
#[test]
fn the_standby_leader_renews_and_keeps_following_the_remote() {
    let o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        replica_of(Some(remote()), LAST_LSN),
    );
    let c = run(
        o,
        &standby_cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_eq!(
        c.queries,
        [Action::RenewLeader {
            last_lsn: Some(LAST_LSN),
            failsafe: None
        }]
    );
    assert_final(
        &c,
        &[],
        "no action. I am (pg-0), the standby leader with the lock",
    );
}

/// A lock holder not yet following the remote is re-pointed at it, never promoted.
#[test]
fn a_lock_holder_replica_is_pointed_at_the_remote_not_promoted() {
    let o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        replica_of(None, LAST_LSN),
    );
    let c = run(
        o,
        &standby_cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[Action::FollowLeader {
            upstream: Some(remote()),
        }],
        "promoted self to a standby leader because i had the session lock",
    );
}

/// When the standby leader is gone, the healthiest replica takes the lock and becomes the new
/// standby leader by following the remote (no promotion).
#[test]
fn the_healthiest_replica_becomes_the_new_standby_leader() {
    let o = obs(
        "pg-1",
        standby_cluster(None),
        replica_of(Some(up("pg-0")), LAST_LSN),
    );
    let rt = Runtime::none()
        .peers(vec![peer("pg-2", LAST_LSN - 10)])
        .acquire(LockOutcome::Acquired);
    let c = run(o, &standby_cfg(), NOW, &rt);
    assert_eq!(c.queries.last(), Some(&Action::AcquireLeader));
    assert_final(
        &c,
        &[Action::FollowLeader {
            upstream: Some(remote()),
        }],
        "promoted self to a standby leader by acquiring session lock",
    );
}

/// The other members follow the standby leader.
#[test]
fn the_others_follow_the_standby_leader() {
    let o = obs(
        "pg-1",
        standby_cluster(Some("pg-0")),
        replica_of(Some(up("pg-0")), LAST_LSN),
    );
    let c = run(o, &standby_cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[],
        "no action. I am (pg-1), a secondary, and following a standby leader (pg-0)",
    );
    // One still streaming from the remote (during a standby leader change) moves over.
    let o = obs(
        "pg-1",
        standby_cluster(Some("pg-0")),
        replica_of(Some(remote()), LAST_LSN),
    );
    let c = run(o, &standby_cfg(), NOW, &Runtime::none());
    assert_eq!(
        c.decision.actions,
        [Action::FollowLeader {
            upstream: Some(up("pg-0"))
        }]
    );
}

/// A stopped standby leader restarts as a replica of the remote; a stopped member of a
/// standby cluster without a leader starts following the remote too.
#[test]
fn stopped_members_start_following_the_remote() {
    let mut o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        stopped(ControlState::InArchiveRecovery, Some(PgRole::Replica)),
    );
    o.memory.last_healthy = Some(NOW);
    let c = run(
        o,
        &standby_cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[start_following(Some(remote()))],
        "starting as a standby leader because i had the session lock",
    );
    let o = obs(
        "pg-1",
        standby_cluster(None),
        stopped(ControlState::ShutDownInRecovery, None),
    );
    let c = run(o, &standby_cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[start_following(Some(remote()))],
        "trying to follow a remote member because standby cluster is unhealthy",
    );
}

/// Turning `standby_cluster` off (`PATCH /config` with `null`) promotes the standby leader.
#[test]
fn turning_standby_cluster_off_promotes_the_standby_leader() {
    let o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        replica_of(Some(remote()), LAST_LSN),
    );
    let c = run(o, &cfg(), NOW, &Runtime::none().renew(LockOutcome::Renewed));
    assert_final(
        &c,
        &[Action::Promote],
        "promoted self to leader because I had the session lock",
    );
}

/// Turning `standby_cluster` on demotes the primary with a shutdown checkpoint, keeping the
/// lock, and restarts it as the standby leader following the remote.
#[test]
fn turning_standby_cluster_on_demotes_the_primary_to_a_standby_leader() {
    let mut o = obs(
        "pg-0",
        cluster(Some("pg-0"), &["pg-0", "pg-1"]),
        primary(LAST_LSN),
    );
    o.memory.last_lock_renewal = Some(NOW - secs(1));
    let c = run(
        o,
        &standby_cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[
            Action::Demote {
                mode: DemoteMode::Graceful,
                stop_timeout: None,
            },
            start_following(Some(remote())),
        ],
        "demoting to a standby cluster",
    );
    assert!(
        !c.decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::ReleaseLeader { .. })),
        "the lock is kept"
    );
}

/// In pause the standby leader keeps its lock (it is not a primary that stopped running).
#[test]
fn a_paused_standby_leader_keeps_its_lock() {
    let mut o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        replica_of(Some(remote()), LAST_LSN),
    );
    o.paused = true;
    let c = run(
        o,
        &standby_cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[],
        "PAUSE: no action. I am (pg-0), the standby leader with the lock",
    );
}

/// The lease fence stays disarmed on a standby leader (it never acknowledges writes), also
/// right after it started; a primary being turned into a standby leader is still fenced.
#[test]
fn the_lease_fence_is_disarmed_on_a_standby_leader() {
    let mut o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        replica_of(Some(remote()), LAST_LSN),
    );
    o.memory.last_lock_renewal = Some(NOW);
    o.cycle.lock = Some(LockOutcome::Renewed);
    assert_eq!(fence(&o, &standby_cfg()), Fence::Disarmed);
    assert_eq!(holder_fence(&o, &standby_cfg()), Fence::Disarmed);
    // The same member in a primary cluster (about to promote) is fenced.
    assert_ne!(fence(&o, &cfg()), Fence::Disarmed);
    let mut p = obs("pg-0", standby_cluster(Some("pg-0")), primary(LAST_LSN));
    p.memory.last_lock_renewal = Some(NOW);
    assert_eq!(
        fence(&p, &standby_cfg()),
        Fence::Armed {
            until: NOW + fence_lease(cfg().ttl)
        }
    );
}

/// The invariant checker refuses a promotion or an `initdb` in a standby cluster.
#[test]
fn the_checker_refuses_a_primary_in_a_standby_cluster() {
    let mut o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        replica_of(Some(remote()), LAST_LSN),
    );
    o.cycle.lock = Some(LockOutcome::Renewed);
    let promote = crate::ha::Decision::new(vec![Action::Promote], "x");
    assert!(matches!(
        invariants::check(&o, &standby_cfg(), NOW, &promote),
        Err(invariants::Violation::PrimaryInStandbyCluster(_))
    ));
    assert!(invariants::check(&o, &cfg(), NOW, &promote).is_ok());
}

/// A switchover in a standby cluster stops the standby leader and hands the lock over; the
/// candidate then becomes the standby leader.
#[test]
fn a_switchover_stops_the_standby_leader_and_releases_the_lock() {
    let mut c = standby_cluster(Some("pg-0"));
    c.failover = Some(failover(Some("pg-0"), Some("pg-1"), None));
    let o = obs("pg-0", c, replica_of(Some(remote()), LAST_LSN));
    let rt = Runtime::none()
        .renew(LockOutcome::Renewed)
        .peers(vec![peer("pg-1", LAST_LSN)]);
    let c = run(o, &standby_cfg(), NOW, &rt);
    assert_final(
        &c,
        &[
            Action::StopPostgres {
                mode: StopMode::Fast,
            },
            Action::ReleaseLeader {
                last_lsn: crate::ha::ReleaseLsn::ShutdownCheckpoint,
            },
        ],
        "switchover: demoting myself",
    );
}

/// [`standby_cfg`] with `use_pg_rewind`.
fn rewind_cfg() -> HaConfig {
    HaConfig {
        use_pg_rewind: true,
        ..standby_cfg()
    }
}

/// The standby leader following the remote without streaming from it (a demoted primary
/// cluster whose remote was promoted past it).
fn not_streaming_from_remote() -> LocalPostgres {
    let LocalPostgres::Data(mut d) = replica_of(Some(remote()), LAST_LSN) else {
        unreachable!("replica_of() has data")
    };
    if let PgServer::Replica(r) = &mut d.server {
        r.streaming = false;
        r.receive_lsn = None;
    }
    LocalPostgres::Data(d)
}

/// A verdict against the remote made at `at`.
fn remote_check(verdict: TimelineVerdict, at: crate::Tick) -> TimelineCheck {
    TimelineCheck {
        leader: Upstream::REMOTE_NAME.into(),
        leader_timeline: 0,
        verdict,
        checked_at: at,
    }
}

/// A standby leader that follows the remote but does not stream from it (the primary cluster
/// was demoted to follow a cluster promoted past it) compares its history with the remote's
/// and, diverged, is rewound from the remote (Patroni's `RemoteMember`), not re-cloned.
#[test]
fn a_diverged_standby_leader_is_rewound_from_the_remote() {
    let o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        not_streaming_from_remote(),
    );
    let rt = Runtime::none()
        .renew(LockOutcome::Renewed)
        .timeline(TimelineVerdict::NeedsRewind);
    let c = run(o, &rewind_cfg(), NOW, &rt);
    assert_eq!(c.queries[1..], [Action::CheckTimeline { leader: remote() }]);
    assert_final(
        &c,
        &[Action::Rewind { from: remote() }],
        "running pg_rewind from remote_member",
    );
    // In sync: it keeps following; asked again only a loop later.
    let mut o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        not_streaming_from_remote(),
    );
    o.memory.timeline_check = Some(remote_check(TimelineVerdict::InSync, NOW - secs(1)));
    let c = run(
        o.clone(),
        &rewind_cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[],
        "no action. I am (pg-0), the standby leader with the lock",
    );
    let later = NOW + rewind_cfg().loop_wait;
    let rt = Runtime::none()
        .renew(LockOutcome::Renewed)
        .timeline(TimelineVerdict::InSync);
    let c = run(o, &rewind_cfg(), later, &rt);
    assert_eq!(c.queries[1..], [Action::CheckTimeline { leader: remote() }]);
}

/// A standby leader streaming from the remote is not checked; without `use_pg_rewind` nothing
/// is checked either, and a standby cluster's diverged standby leader is never re-cloned nor
/// removed (Patroni re-initialises only members of a primary cluster), also after a failed
/// rewind, which is not tried again.
#[test]
fn a_standby_leader_is_never_recloned_because_of_divergence() {
    let o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        replica_of(Some(remote()), LAST_LSN),
    );
    let c = run(
        o,
        &rewind_cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[],
        "no action. I am (pg-0), the standby leader with the lock",
    );
    let reclone = HaConfig {
        remove_data_directory_on_diverged_timelines: true,
        remove_data_directory_on_rewind_failure: true,
        ..standby_cfg()
    };
    let mut o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        not_streaming_from_remote(),
    );
    o.memory.timeline_check = Some(remote_check(TimelineVerdict::NeedsRewind, NOW - secs(60)));
    let c = run(
        o,
        &reclone,
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[],
        "no action. I am (pg-0), the standby leader with the lock",
    );
    let mut o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        not_streaming_from_remote(),
    );
    o.memory.timeline_check = Some(remote_check(TimelineVerdict::RewindFailed, NOW - secs(60)));
    let c = run(
        o,
        &HaConfig {
            use_pg_rewind: true,
            ..reclone
        },
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[],
        "no action. I am (pg-0), the standby leader with the lock",
    );
}

/// A stopped standby leader whose history diverged from the remote's is rewound before it
/// starts again; without a verdict it starts following the remote (and is checked then).
#[test]
fn a_stopped_diverged_standby_leader_is_rewound_before_it_starts() {
    let mut o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        stopped(ControlState::ShutDownInRecovery, None),
    );
    o.memory.timeline_check = Some(remote_check(TimelineVerdict::NeedsRewind, NOW - secs(1)));
    let c = run(
        o.clone(),
        &rewind_cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[Action::Rewind { from: remote() }],
        "running pg_rewind from remote_member",
    );
    o.memory.timeline_check = None;
    let c = run(
        o,
        &rewind_cfg(),
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert_final(
        &c,
        &[start_following(Some(remote()))],
        "starting as a standby leader because i had the session lock",
    );
}

/// A remote known only by its `restore_command` cannot be asked nor rewound from.
#[test]
fn a_remote_without_an_address_is_not_checked() {
    let cfg = HaConfig {
        standby_cluster: Some(Upstream::remote(None)),
        use_pg_rewind: true,
        ..cfg()
    };
    let LocalPostgres::Data(mut d) = not_streaming_from_remote() else {
        unreachable!("has data")
    };
    if let PgServer::Replica(r) = &mut d.server {
        r.upstream = Some(Upstream::remote(None));
    }
    let o = obs(
        "pg-0",
        standby_cluster(Some("pg-0")),
        LocalPostgres::Data(d),
    );
    let c = run(o, &cfg, NOW, &Runtime::none().renew(LockOutcome::Renewed));
    assert_final(
        &c,
        &[],
        "no action. I am (pg-0), the standby leader with the lock",
    );
}

/// The other members of a standby cluster are judged against the remote too (Patroni's
/// `RemoteMember`), not against the standby leader, which is no primary: a replica that
/// diverged with its demoted primary cluster is rewound from the remote; a stopped one with
/// that verdict is rewound before it starts.
#[test]
fn a_diverged_replica_of_a_standby_cluster_is_rewound_from_the_remote() {
    let LocalPostgres::Data(mut d) = replica(Some("pg-0"), LAST_LSN) else {
        unreachable!("replica() has data")
    };
    if let PgServer::Replica(r) = &mut d.server {
        r.streaming = false;
    }
    let o = obs(
        "pg-1",
        standby_cluster(Some("pg-0")),
        LocalPostgres::Data(d),
    );
    let c = run(
        o,
        &rewind_cfg(),
        NOW,
        &Runtime::none().timeline(TimelineVerdict::NeedsRewind),
    );
    assert_eq!(c.queries, [Action::CheckTimeline { leader: remote() }]);
    assert_final(
        &c,
        &[Action::Rewind { from: remote() }],
        "running pg_rewind from remote_member",
    );
    let mut o = obs(
        "pg-1",
        standby_cluster(Some("pg-0")),
        stopped(ControlState::ShutDownInRecovery, None),
    );
    o.memory.timeline_check = Some(remote_check(TimelineVerdict::NeedsRewind, NOW - secs(1)));
    let c = run(o, &rewind_cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::Rewind { from: remote() }],
        "running pg_rewind from remote_member",
    );
}
