//! The lease fence (`ha::lease`): armed while this member is or becomes the primary, from the
//! latest proof that nobody else can be, disarmed otherwise.

use super::fixtures::*;
use crate::ha::lease::{Fence, fence, fence_lease, holder_fence};
use crate::ha::{Action, DcsView, LockOutcome};

fn leader_obs() -> crate::ha::Observation {
    let mut o = obs(
        "pg-0",
        cluster(Some("pg-0"), &["pg-0", "pg-1"]),
        primary(100),
    );
    o.memory.last_lock_renewal = Some(NOW - secs(3));
    o
}

fn armed_from(t: crate::Tick) -> Fence {
    Fence::Armed {
        until: t + fence_lease(cfg().ttl),
    }
}

#[test]
fn a_primary_is_fenced_from_its_last_renewal() {
    assert_eq!(fence(&leader_obs(), &cfg()), armed_from(NOW - secs(3)));
}

#[test]
fn a_primary_cut_off_from_the_dcs_keeps_its_old_deadline() {
    let mut o = leader_obs();
    o.dcs = DcsView::Unreachable;
    o.memory.last_lock_renewal = Some(NOW - secs(40));
    // The deadline passed: the fence fires at once.
    let Fence::Armed { until } = fence(&o, &cfg()) else {
        panic!("disarmed");
    };
    assert!(until < NOW);
}

#[test]
fn a_primary_that_lost_the_lock_is_still_fenced() {
    let mut o = leader_obs();
    o.cycle.lock = Some(LockOutcome::Refused);
    assert_eq!(fence(&o, &cfg()), armed_from(NOW - secs(3)));
}

#[test]
fn failsafe_acceptance_extends_the_lease() {
    let mut o = leader_obs();
    o.dcs = DcsView::Unreachable;
    o.memory.failsafe_confirmed_at = Some(NOW - secs(1));
    assert_eq!(fence(&o, &cfg()), armed_from(NOW - secs(1)));
}

#[test]
fn a_replica_is_not_fenced_unless_it_holds_the_lock() {
    let mut o = obs(
        "pg-1",
        cluster(Some("pg-0"), &["pg-0", "pg-1"]),
        replica(Some("pg-0"), 100),
    );
    // An old renewal from when it was the leader does not fence it.
    o.memory.last_lock_renewal = Some(NOW - secs(300));
    assert_eq!(fence(&o, &cfg()), Fence::Disarmed);
    // Nor does the leader record naming it, before this cycle took or renewed the lock: a
    // lock holder demoted during a DCS outage runs as a replica, and the first cycle after the
    // outage renews the lock before it promotes (found by the nemesis: killing that replica
    // at the cycle's start left the promotion waiting on a dead server).
    let mut held = obs(
        "pg-1",
        cluster(Some("pg-1"), &["pg-0", "pg-1"]),
        replica(None, 100),
    );
    held.memory.last_lock_renewal = Some(NOW - secs(300));
    assert_eq!(fence(&held, &cfg()), Fence::Disarmed);
    held.cycle.lock = Some(LockOutcome::Refused);
    assert_eq!(fence(&held, &cfg()), Fence::Disarmed);
    held.memory.last_lock_renewal = Some(NOW);
    held.cycle.lock = Some(LockOutcome::Renewed);
    assert_eq!(fence(&held, &cfg()), armed_from(NOW));
    // Taking the lock (about to promote) arms it.
    o.memory.last_lock_renewal = Some(NOW);
    o.cycle.lock = Some(LockOutcome::Acquired);
    assert_eq!(fence(&o, &cfg()), armed_from(NOW));
    // So does a promotion running in the background.
    o.cycle.lock = None;
    o.memory.in_progress = Some(Action::Promote);
    assert_eq!(fence(&o, &cfg()), armed_from(NOW));
}

#[test]
fn nothing_is_fenced_in_pause_or_without_a_server_or_a_lease() {
    let mut o = leader_obs();
    o.paused = true;
    assert_eq!(fence(&o, &cfg()), Fence::Disarmed);
    assert_eq!(holder_fence(&o, &cfg()), Fence::Disarmed);
    let mut o = leader_obs();
    o.postgres = stopped(crate::ha::ControlState::ShutDown, None);
    assert_eq!(fence(&o, &cfg()), Fence::Disarmed);
    // Bootstrapping: a primary that never held the lock.
    let mut o = leader_obs();
    o.memory.last_lock_renewal = None;
    assert_eq!(fence(&o, &cfg()), Fence::Disarmed);
}

#[test]
fn a_server_started_by_the_holder_is_fenced() {
    let mut o = leader_obs();
    o.postgres = stopped(crate::ha::ControlState::ShutDown, None);
    o.cycle.lock = Some(LockOutcome::Renewed);
    assert_eq!(holder_fence(&o, &cfg()), armed_from(NOW - secs(3)));
    o.cycle.lock = Some(LockOutcome::Refused);
    assert_eq!(holder_fence(&o, &cfg()), Fence::Disarmed);
}

#[test]
fn a_store_that_keeps_the_lock_shorter_than_ttl_shortens_the_fence() {
    let mut o = leader_obs();
    o.store_lease_limit = Some(secs(4));
    assert_eq!(
        fence(&o, &cfg()),
        Fence::Armed {
            until: NOW - secs(3) + fence_lease(secs(4))
        }
    );
    o.store_lease_limit = Some(secs(3600));
    assert_eq!(fence(&o, &cfg()), armed_from(NOW - secs(3)));
}
