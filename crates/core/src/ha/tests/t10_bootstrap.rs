//! ha-loop.md §3 and §2.9–10: members without data, the end of a bootstrap,
//! and the system identifier checks.

use super::fixtures::*;
use crate::ha::{
    Action, CloneSource, ControlState, Finished, LocalPostgres, LockOutcome, MemberTags, StopMode,
};

fn empty_cluster() -> crate::Cluster {
    let mut c = cluster(None, &["pg-1", "pg-2"]);
    c.initialize = None;
    c.config = None;
    c.history = None;
    c.status = Default::default();
    c
}

/// The member that creates the `initialize` key bootstraps the cluster.
#[test]
fn wins_initialize_race_and_bootstraps_a_new_cluster() {
    let o = obs("pg-1", empty_cluster(), LocalPostgres::Empty);
    let c = run(o, &cfg(), NOW, &Runtime::none().initialize(true));
    assert_eq!(c.queries, [Action::TakeInitializeKey]);
    assert_final(
        &c,
        &[Action::Bootstrap],
        "trying to bootstrap a new cluster",
    );
}

/// A member that loses the `initialize` race does nothing.
#[test]
fn loses_initialize_race_and_waits() {
    let o = obs("pg-2", empty_cluster(), LocalPostgres::Empty);
    let c = run(o, &cfg(), NOW, &Runtime::none().initialize(false));
    assert_eq!(c.queries, [Action::TakeInitializeKey]);
    assert_final(&c, &[], "failed to acquire initialize lock");
}

/// While another member bootstraps (`initialize` empty), nobody clones.
#[test]
fn waits_for_leader_while_another_member_bootstraps() {
    let mut cl = empty_cluster();
    cl.initialize = Some(String::new());
    let mut config = cfg();
    config.create_replica_without_leader = true;
    let c = run(
        obs("pg-2", cl, LocalPostgres::Empty),
        &config,
        NOW,
        &Runtime::none(),
    );
    assert!(c.queries.is_empty());
    assert_final(&c, &[], "waiting for leader to bootstrap");
}

/// A `nofailover` member, or one without a `bootstrap` section, never races for `initialize`.
#[test]
fn nofailover_or_unconfigured_member_never_bootstraps() {
    let o = with_tags(
        obs("pg-1", empty_cluster(), LocalPostgres::Empty),
        MemberTags::default().with_nofailover(true),
    );
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "waiting for leader to bootstrap");

    let mut config = cfg();
    config.can_bootstrap = false;
    let c = run(
        obs("pg-1", empty_cluster(), LocalPostgres::Empty),
        &config,
        NOW,
        &Runtime::none(),
    );
    assert_final(&c, &[], "waiting for leader to bootstrap");
}

/// Without a leader a member may clone only with a `no_leader` method.
#[test]
fn clones_without_leader_only_with_a_no_leader_method() {
    let mut cl = cluster(None, &["pg-0", "pg-1"]);
    cl.leader = None;
    let mut config = cfg();
    config.create_replica_without_leader = true;
    let c = run(
        obs("pg-1", cl.clone(), LocalPostgres::Empty),
        &config,
        NOW,
        &Runtime::none(),
    );
    assert_final(
        &c,
        &[Action::CloneReplica {
            source: CloneSource::WithoutLeader,
        }],
        "trying to bootstrap (without leader)",
    );
    let c = run(
        obs("pg-1", cl, LocalPostgres::Empty),
        &cfg(),
        NOW,
        &Runtime::none(),
    );
    assert_final(&c, &[], "waiting for leader to bootstrap");
}

/// A new member clones from the leader.
#[test]
fn clones_replica_from_leader() {
    let o = obs(
        "pg-2",
        cluster(Some("pg-0"), &["pg-0", "pg-1", "pg-2"]),
        LocalPostgres::Empty,
    );
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::CloneReplica {
            source: CloneSource::Leader(up("pg-0")),
        }],
        "trying to bootstrap from leader 'pg-0'",
    );
}

/// A running member tagged `clonefrom` is preferred over the leader.
#[test]
fn clones_replica_from_clonefrom_member() {
    let members = vec![
        member("pg-0", "primary"),
        tagged(
            member("pg-1", "replica"),
            serde_json::json!({"clonefrom": true}),
        ),
        member("pg-2", "replica"),
    ];
    let o = obs(
        "pg-2",
        with_members(Some("pg-0"), members),
        LocalPostgres::Empty,
    );
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::CloneReplica {
            source: CloneSource::Replica(up("pg-1")),
        }],
        "trying to bootstrap from replica 'pg-1'",
    );
}

/// After its bootstrap the winner takes the lock, then publishes sysid and config.
#[test]
fn after_bootstrap_takes_lock_then_writes_initialize_and_config() {
    let mut cl = empty_cluster();
    cl.initialize = Some(String::new());
    let mut o = obs("pg-1", cl, primary(100));
    o.memory.finished = Some(Finished {
        action: Action::Bootstrap,
        succeeded: true,
    });
    let c = run(
        o,
        &cfg(),
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

/// A failed bootstrap gives the `initialize` key back, keeps the data aside and stops the agent.
#[test]
fn failed_bootstrap_removes_initialize_key_and_exits() {
    let mut cl = empty_cluster();
    cl.initialize = Some(String::new());
    let mut o = obs("pg-1", cl, stopped(ControlState::ShutDown, None));
    o.memory.finished = Some(Finished {
        action: Action::Bootstrap,
        succeeded: false,
    });
    let c = run(o, &cfg(), NOW, &Runtime::none());
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

/// An existing primary found in the first cycle is adopted: its sysid goes
/// into `initialize`, it races and keeps running; nothing is initialised.
#[test]
fn existing_primary_is_adopted_never_reinitialised() {
    let mut cl = empty_cluster();
    cl.members = vec![member("pg-1", "primary")];
    let mut o = obs("pg-1", cl, primary(100));
    o.memory.first_cycle = true;
    let c = run(
        o,
        &cfg(),
        NOW,
        &Runtime::none().acquire(LockOutcome::Acquired),
    );
    assert_eq!(c.queries, [Action::AcquireLeader]);
    assert_final(
        &c,
        &[Action::WriteInitializeKey {
            sysid: SYSID.into(),
        }],
        "acquired session lock as a leader",
    );
}

/// A replica without `initialize` key in the first cycle stops the agent.
#[test]
fn replica_without_initialize_key_aborts_start() {
    let mut cl = empty_cluster();
    cl.members = vec![member("pg-1", "replica")];
    let mut o = obs("pg-1", cl, replica(None, 100));
    o.memory.first_cycle = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    let reason = "No initialize key in DCS and PostgreSQL is running as replica, aborting start";
    assert_final(
        &c,
        &[Action::Fatal {
            reason: reason.into(),
        }],
        reason,
    );
}

/// Data of another cluster stops the agent; in pause the lock holder only gives the lock up.
#[test]
fn sysid_mismatch_is_fatal_and_releases_lock_in_pause() {
    let mut cl = cluster(Some("pg-0"), &["pg-0", "pg-1"]);
    cl.initialize = Some("7999999999999999999".into());
    let c = run(
        obs("pg-1", cl.clone(), replica(Some("pg-0"), LAST_LSN)),
        &cfg(),
        NOW,
        &Runtime::none(),
    );
    let reason = format!(
        "system ID mismatch, node pg-1 belongs to a different cluster: 7999999999999999999 != {SYSID}"
    );
    assert_final(
        &c,
        &[Action::Fatal {
            reason: reason.clone(),
        }],
        &reason,
    );

    let mut o = obs("pg-0", cl, primary(LAST_LSN));
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::ReleaseLeader {
            last_lsn: crate::ha::ReleaseLsn::Unchanged,
        }],
        "PAUSE: released leader key voluntarily due to the system ID mismatch",
    );
}

/// A lock holder whose data directory vanished gives the lock up.
#[test]
fn leader_with_empty_data_directory_releases_lock() {
    let o = obs(
        "pg-0",
        cluster(Some("pg-0"), &["pg-0", "pg-1"]),
        LocalPostgres::Empty,
    );
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(
        &c,
        &[Action::ReleaseLeader {
            last_lsn: crate::ha::ReleaseLsn::Unchanged,
        }],
        "released leader key voluntarily as data dir empty and currently leader",
    );
}

/// In pause an empty data directory is left alone.
#[test]
fn paused_member_with_empty_data_directory_does_nothing() {
    let mut o = obs(
        "pg-2",
        cluster(Some("pg-0"), &["pg-0", "pg-2"]),
        LocalPostgres::Empty,
    );
    o.paused = true;
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "PAUSE: running with empty data directory");
}

/// A data directory without a valid system identifier asks for reinitialise.
#[test]
fn invalid_sysid_asks_for_reinitialize() {
    let mut pg = replica(Some("pg-0"), 1);
    if let LocalPostgres::Data(d) = &mut pg {
        d.sysid = "garbage".into();
    }
    let c = run(
        obs("pg-1", cluster(Some("pg-0"), &["pg-0", "pg-1"]), pg),
        &cfg(),
        NOW,
        &Runtime::none(),
    );
    assert_final(
        &c,
        &[],
        "data dir for the cluster is not empty, but system ID is invalid; consider doing reinitialize",
    );
}

/// A sysid pg_controldata could not read is neither published nor compared: after a
/// bootstrap the key keeps saying "in progress", and a member of a known cluster goes on.
#[test]
fn unreadable_sysid_is_never_published_nor_fatal() {
    fn forget_sysid(o: &mut crate::ha::Observation) {
        if let LocalPostgres::Data(d) = &mut o.postgres {
            d.sysid.clear();
        }
    }
    let mut cl = empty_cluster();
    cl.initialize = Some(String::new());
    let mut o = obs("pg-1", cl, primary(100));
    forget_sysid(&mut o);
    o.memory.finished = Some(Finished {
        action: Action::Bootstrap,
        succeeded: true,
    });
    let c = run(
        o,
        &cfg(),
        NOW,
        &Runtime::none().acquire(LockOutcome::Acquired),
    );
    assert_final(
        &c,
        &[Action::WriteConfig],
        "initialized a new cluster; its system identifier is not readable yet",
    );

    let mut cl = cluster(Some("pg-0"), &["pg-0", "pg-1"]);
    cl.initialize = Some(SYSID.into());
    let mut o = obs("pg-1", cl, replica(Some("pg-0"), LAST_LSN));
    forget_sysid(&mut o);
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert!(
        !c.decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::Fatal { .. } | Action::WriteInitializeKey { .. })),
        "{:?}",
        c.decision
    );
}
