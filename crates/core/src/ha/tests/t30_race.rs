//! ha-loop.md §4: the leader race when nobody holds the lock.

use super::fixtures::*;
use crate::ha::{
    Action, DemoteMode, LockOutcome, MemberTags, PeerStatus, SynchronousMode, WatchdogMode,
    WatchdogPolicy,
};

/// pg-0 (the old leader) is gone; pg-1 and pg-2 are replicas.
fn leaderless() -> crate::Cluster {
    cluster(None, &["pg-1", "pg-2"])
}

fn peers_query() -> Action {
    Action::CheckPeers {
        members: vec![target("pg-2")],
    }
}

/// The replica nobody is ahead of takes the lock and promotes.
#[test]
fn healthiest_replica_acquires_lock_and_promotes() {
    let o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    let rt = Runtime::none()
        .peers(vec![peer("pg-2", LAST_LSN - 10)])
        .acquire(LockOutcome::Acquired);
    let c = run(o, &cfg(), NOW, &rt);
    assert_eq!(c.queries, [peers_query(), Action::AcquireLeader]);
    assert_final(
        &c,
        &[Action::Promote],
        "promoted self to leader by acquiring session lock",
    );
}

/// A replica behind another eligible replica does not race, and stops
/// streaming from the vanished leader.
#[test]
fn replica_behind_a_peer_does_not_race() {
    let o = obs("pg-1", leaderless(), replica(Some("pg-0"), LAST_LSN));
    let rt = Runtime::none().peers(vec![peer("pg-2", LAST_LSN + 10)]);
    let c = run(o, &cfg(), NOW, &rt);
    assert_eq!(c.queries, [peers_query()]);
    assert_final(
        &c,
        &[Action::FollowLeader { upstream: None }],
        "following a different leader because i am not the healthiest node",
    );
}

/// Unreachable, `nofailover` and watchdog-failed members are ignored, even when ahead.
#[test]
fn ineligible_peers_are_ignored() {
    for other in [
        PeerStatus::unreachable("pg-2"),
        peer_tagged(
            "pg-2",
            LAST_LSN + 10,
            MemberTags::default().with_nofailover(true),
        ),
    ] {
        let o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
        let rt = Runtime::none()
            .peers(vec![other])
            .acquire(LockOutcome::Acquired);
        let c = run(o, &cfg(), NOW, &rt);
        assert_final(
            &c,
            &[Action::Promote],
            "promoted self to leader by acquiring session lock",
        );
    }
}

/// A reachable primary means the old leader is alive: nobody races.
#[test]
fn live_primary_peer_blocks_the_race() {
    let o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    let c = run(
        o,
        &cfg(),
        NOW,
        &Runtime::none().peers(vec![peer_primary("pg-2")]),
    );
    assert_final(
        &c,
        &[],
        "following a different leader because i am not the healthiest node",
    );
}

/// A replica further behind than `maximum_lag_on_failover` never races (nor asks its peers).
#[test]
fn lagging_replica_is_not_promoted() {
    let o = obs("pg-1", leaderless(), replica(None, LAST_LSN - 1_048_577));
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert!(c.queries.is_empty());
    assert_final(
        &c,
        &[],
        "following a different leader because i am not the healthiest node",
    );
}

/// A `nofailover` member never races, however healthy.
#[test]
fn nofailover_member_never_races() {
    for tags in [
        MemberTags::default().with_nofailover(true),
        MemberTags::default().with_failover_priority(0),
    ] {
        let o = with_tags(
            obs("pg-1", leaderless(), replica(None, LAST_LSN + 50)),
            tags,
        );
        let c = run(o, &cfg(), NOW, &Runtime::none());
        assert!(c.queries.is_empty());
        assert_final(
            &c,
            &[],
            "following a different leader because I am not allowed to promote",
        );
    }
}

/// Of equally advanced replicas, the one with the higher `failover_priority` races.
#[test]
fn higher_failover_priority_wins_between_equal_replicas() {
    let o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    let higher = peer_tagged(
        "pg-2",
        LAST_LSN,
        MemberTags::default().with_failover_priority(5),
    );
    let c = run(o.clone(), &cfg(), NOW, &Runtime::none().peers(vec![higher]));
    assert_final(
        &c,
        &[],
        "following a different leader because i am not the healthiest node",
    );

    let lower = peer_tagged(
        "pg-2",
        LAST_LSN,
        MemberTags::default().with_failover_priority(1),
    );
    let o = with_tags(o, MemberTags::default().with_failover_priority(2));
    let rt = Runtime::none()
        .peers(vec![lower])
        .acquire(LockOutcome::Acquired);
    let c = run(o, &cfg(), NOW, &rt);
    assert_final(
        &c,
        &[Action::Promote],
        "promoted self to leader by acquiring session lock",
    );
}

/// A member that loses the lock race follows the winner.
#[test]
fn lost_lock_race_follows_new_leader() {
    let o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    let rt = Runtime::none()
        .peers(vec![peer("pg-2", LAST_LSN)])
        .acquire(LockOutcome::Refused);
    let c = run(o, &cfg(), NOW, &rt);
    assert_eq!(c.queries, [peers_query(), Action::AcquireLeader]);
    assert_final(
        &c,
        &[],
        "following new leader after trying and failing to obtain lock",
    );
}

/// With `check_timeline`, a replica behind the cluster timeline does not race.
#[test]
fn replica_behind_cluster_timeline_does_not_race() {
    let mut cl = leaderless();
    if let Some(h) = cl.history.as_mut() {
        h.lines = vec![serde_json::json!([1, 5000, "no recovery target specified"])];
    }
    let mut config = cfg();
    config.check_timeline = true;
    let c = run(
        obs("pg-1", cl, replica(None, LAST_LSN)),
        &config,
        NOW,
        &Runtime::none(),
    );
    assert!(c.queries.is_empty());
    assert_final(
        &c,
        &[],
        "following a different leader because i am not the healthiest node",
    );
}

/// A primary without lock on an older timeline than the cluster's (a
/// promoted replica replaced it) must not grab the lock back: it demotes.
#[test]
fn stale_primary_on_older_timeline_demotes_instead_of_racing() {
    let mut cl = leaderless();
    if let Some(h) = cl.history.as_mut() {
        h.lines = vec![serde_json::json!([1, 5000, "no recovery target specified"])];
    }
    let c = run(
        obs("pg-1", cl, primary_on(LAST_LSN, 1)),
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
        "demoting self because i am not the healthiest node",
    );
}

/// A primary without lock on the cluster timeline takes the lock back without promoting.
#[test]
fn primary_without_lock_reacquires_it() {
    let o = obs("pg-1", leaderless(), primary(LAST_LSN));
    let c = run(
        o,
        &cfg(),
        NOW,
        &Runtime::none().acquire(LockOutcome::Acquired),
    );
    assert_eq!(c.queries, [Action::AcquireLeader]);
    assert_final(&c, &[], "acquired session lock as a leader");
}

/// `primary_race_backoff`: a streaming replica whose WAL still moves waits
/// before racing, and always skips the first cycle.
#[test]
fn race_backoff_postpones_the_race_while_wal_moves() {
    let mut config = cfg();
    config.primary_race_backoff = secs(30);
    let mut o = obs("pg-1", leaderless(), replica(Some("pg-0"), LAST_LSN));
    o.memory.previous_wal = Some(LAST_LSN - 100);
    o.memory.unlocked_since = Some(NOW - secs(12));
    let c = run(o.clone(), &config, NOW, &Runtime::none());
    assert!(c.queries.is_empty());
    assert_final(
        &c,
        &[],
        "My (pg-1) wal position moved since last heart beat loop, 18 seconds until leader race",
    );
    assert_eq!(c.decision.next_cycle_at, Some(NOW + secs(10)));

    // WAL stopped moving and the first loop passed: race.
    o.memory.previous_wal = Some(LAST_LSN);
    let rt = Runtime::none()
        .peers(vec![peer("pg-2", 1)])
        .acquire(LockOutcome::Acquired);
    let c = run(o, &config, NOW, &rt);
    assert_eq!(c.queries, [peers_query(), Action::AcquireLeader]);
}

/// In synchronous mode only members listed in `/sync` race.
#[test]
fn synchronous_mode_limits_the_race_to_sync_members() {
    let mut cl = leaderless();
    cl.sync.leader = Some("pg-0".into());
    cl.sync.sync_standby = vec!["pg-2".into()];
    cl.sync.version = Some("4".into());
    let mut config = cfg();
    config.synchronous_mode = SynchronousMode::On;
    let c = run(
        obs("pg-1", cl.clone(), replica(None, LAST_LSN + 99)),
        &config,
        NOW,
        &Runtime::none(),
    );
    assert!(c.queries.is_empty());
    assert_final(
        &c,
        &[],
        "following a different leader because i am not the healthiest node",
    );

    let rt = Runtime::none().acquire(LockOutcome::Acquired);
    let c = run(obs("pg-2", cl, replica(None, LAST_LSN)), &config, NOW, &rt);
    // pg-1 is not in /sync, so it is not even asked.
    assert_eq!(c.queries, [Action::AcquireLeader]);
}

/// In quorum mode a replica needs votes from enough equally advanced voters.
#[test]
fn quorum_mode_needs_votes() {
    let mut cl = cluster(None, &["pg-1", "pg-2", "pg-3"]);
    cl.sync.leader = Some("pg-0".into());
    cl.sync.sync_standby = vec!["pg-2".into(), "pg-3".into()];
    cl.sync.quorum = 1;
    let mut config = cfg();
    config.synchronous_mode = SynchronousMode::Quorum;
    // pg-1 is not a voter: it starts at -1 and needs two votes.
    let one_vote = Runtime::none().peers(vec![
        peer("pg-2", LAST_LSN),
        PeerStatus::unreachable("pg-3"),
    ]);
    let c = run(
        obs("pg-1", cl.clone(), replica(None, LAST_LSN)),
        &config,
        NOW,
        &one_vote,
    );
    assert_final(
        &c,
        &[],
        "following a different leader because i am not the healthiest node",
    );
    let two_votes = Runtime::none()
        .peers(vec![peer("pg-2", LAST_LSN), peer("pg-3", LAST_LSN)])
        .acquire(LockOutcome::Acquired);
    let c = run(
        obs("pg-1", cl, replica(None, LAST_LSN)),
        &config,
        NOW,
        &two_votes,
    );
    assert_final(
        &c,
        &[Action::Promote],
        "promoted self to leader by acquiring session lock",
    );
}

fn watchdog_cfg(mode: WatchdogMode) -> crate::ha::HaConfig {
    let mut config = cfg();
    config.watchdog = WatchdogPolicy {
        mode,
        timeout: WatchdogPolicy::timeout_for(config.ttl, 5),
    };
    config
}

fn activate(config: &crate::ha::HaConfig) -> Action {
    Action::ActivateWatchdog {
        timeout: config.watchdog.timeout,
    }
}

/// `watchdog.mode: required` without a usable device: no race (Patroni's "Watchdog device is
/// not usable"), and a lock holder whose activation fails never promotes (it releases the
/// lock) or stays primary (it demotes), as Patroni.
#[test]
fn required_watchdog_that_is_unusable_never_leads() {
    let config = watchdog_cfg(WatchdogMode::Required);
    let mut o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    o.watchdog.device_usable = false;
    let c = run(o, &config, NOW, &Runtime::none());
    assert!(
        !c.queries.contains(&Action::AcquireLeader),
        "{:?}",
        c.queries
    );
    let o = obs("pg-1", leaderless(), primary(LAST_LSN));
    let rt = Runtime::none()
        .peers(vec![])
        .acquire(LockOutcome::Acquired)
        .watchdog(false);
    let c = run(o, &config, NOW, &rt);
    assert_eq!(
        c.queries,
        [Action::AcquireLeader, activate(&config)],
        "{:?}",
        c.decision
    );
    assert_eq!(
        c.decision.message,
        "Demoting self because watchdog could not be activated"
    );
    assert!(matches!(
        c.decision.actions.as_slice(),
        [.., Action::Demote { .. }, Action::ReleaseLeader { .. }]
    ));
    let o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    let rt = Runtime::none()
        .peers(vec![peer("pg-2", LAST_LSN - 10)])
        .acquire(LockOutcome::Acquired)
        .watchdog(false);
    let c = run(o, &config, NOW, &rt);
    assert_eq!(
        c.decision.message,
        "Not promoting self because watchdog could not be activated"
    );
    assert!(matches!(
        c.decision.actions.as_slice(),
        [Action::ReleaseLeader { .. }]
    ));
}

/// A timeout shorter than `loop_wait` makes a required watchdog unhealthy: no race.
#[test]
fn required_watchdog_with_a_timeout_below_loop_wait_does_not_race() {
    let mut config = watchdog_cfg(WatchdogMode::Required);
    config.watchdog.timeout = config.loop_wait - secs(1);
    let o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    assert!(!crate::ha::watchdog::healthy(&o, &config));
    let c = run(o, &config, NOW, &Runtime::none());
    assert!(!c.queries.contains(&Action::AcquireLeader));
}

/// The winner of the race arms its watchdog (ttl - safety_margin) after taking the lock and
/// before promoting; `automatic` promotes without one when it cannot be armed.
#[test]
fn the_winner_arms_the_watchdog_before_it_promotes() {
    for (mode, armed) in [
        (WatchdogMode::Required, true),
        (WatchdogMode::Automatic, true),
        (WatchdogMode::Automatic, false),
    ] {
        let config = watchdog_cfg(mode);
        let o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
        let rt = Runtime::none()
            .peers(vec![peer("pg-2", LAST_LSN - 10)])
            .acquire(LockOutcome::Acquired)
            .watchdog(armed);
        let c = run(o, &config, NOW, &rt);
        assert_eq!(
            c.queries,
            [peers_query(), Action::AcquireLeader, activate(&config)],
            "{mode:?}"
        );
        assert_eq!(
            activate(&config),
            Action::ActivateWatchdog { timeout: secs(25) }
        );
        assert_final(
            &c,
            &[Action::Promote],
            "promoted self to leader by acquiring session lock",
        );
    }
}

/// A primary whose watchdog is armed only renews (the runtime keeps it alive); with `off`
/// nothing is ever armed.
#[test]
fn an_armed_or_disabled_watchdog_asks_nothing() {
    let config = watchdog_cfg(WatchdogMode::Required);
    let mut o = obs(
        "pg-1",
        cluster(Some("pg-1"), &["pg-1", "pg-2"]),
        primary(LAST_LSN),
    );
    o.watchdog.armed = true;
    let c = run(
        o,
        &config,
        NOW,
        &Runtime::none().renew(LockOutcome::Renewed),
    );
    assert!(
        !c.queries
            .iter()
            .any(|q| matches!(q, Action::ActivateWatchdog { .. })),
        "{:?}",
        c.queries
    );
    let o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    let rt = Runtime::none()
        .peers(vec![peer("pg-2", LAST_LSN - 10)])
        .acquire(LockOutcome::Acquired);
    let c = run(o, &watchdog_cfg(WatchdogMode::Off), NOW, &rt);
    assert_eq!(c.queries, [peers_query(), Action::AcquireLeader]);
}

/// The device stays armed while this member is (or is becoming) the primary, and is
/// disarmed in pause, once stopped, as a replica without the lock, and with `off`.
#[test]
fn the_watchdog_is_kept_armed_only_while_leading() {
    use crate::ha::watchdog::keep_armed;
    let config = watchdog_cfg(WatchdogMode::Required);
    let leading = obs(
        "pg-1",
        cluster(Some("pg-1"), &["pg-1", "pg-2"]),
        primary(LAST_LSN),
    );
    assert!(keep_armed(&leading, &config));
    let holder = obs(
        "pg-1",
        cluster(Some("pg-1"), &["pg-1", "pg-2"]),
        replica(None, LAST_LSN),
    );
    assert!(keep_armed(&holder, &config));
    let follower = obs(
        "pg-1",
        cluster(Some("pg-2"), &["pg-1", "pg-2"]),
        replica(Some("pg-2"), LAST_LSN),
    );
    assert!(!keep_armed(&follower, &config));
    let mut paused = leading.clone();
    paused.paused = true;
    assert!(!keep_armed(&paused, &config));
    assert!(!keep_armed(&leading, &watchdog_cfg(WatchdogMode::Off)));
    let down = obs(
        "pg-1",
        cluster(Some("pg-1"), &["pg-1", "pg-2"]),
        stopped(crate::ha::ControlState::ShutDown, None),
    );
    assert!(!keep_armed(&down, &config));
}

/// The cycle that promotes asks for the next one right after it (Patroni's async executor
/// wakes the loop when the promotion ends), so the new role is published at once.
#[test]
fn promotion_runs_the_next_cycle_at_once() {
    let o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    let rt = Runtime::none()
        .peers(vec![peer("pg-2", LAST_LSN - 10)])
        .acquire(LockOutcome::Acquired);
    let c = run(o, &cfg(), NOW, &rt);
    assert_eq!(c.decision.actions, [Action::Promote]);
    assert_eq!(c.decision.next_cycle_at, Some(NOW));
}

/// After a promotion that failed, the retry waits for the usual cycle (no busy loop).
#[test]
fn a_failed_promotion_is_not_retried_at_once() {
    let mut o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    o.memory.finished = Some(crate::ha::Finished {
        action: Action::Promote,
        succeeded: false,
    });
    let rt = Runtime::none()
        .peers(vec![peer("pg-2", LAST_LSN - 10)])
        .acquire(LockOutcome::Acquired);
    let c = run(o, &cfg(), NOW, &rt);
    assert_eq!(c.decision.actions, [Action::Promote]);
    assert_eq!(c.decision.next_cycle_at, None);
}
