//! Issue #11: a member suspended for longer than `ttl` (SIGSTOP, a frozen VM) must not take
//! the lock from a view it read before the suspension.

use super::fixtures::*;
use crate::ha::{Action, Decision, LockOutcome, invariants, invariants::Violation};

/// pg-0 (the old leader) is gone; pg-1 and pg-2 are replicas.
fn leaderless() -> crate::Cluster {
    cluster(None, &["pg-1", "pg-2"])
}

/// A view read before the agent last resumed: no race, the view is read again at once.
#[test]
fn view_read_before_a_pause_is_never_raced_from() {
    let mut o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    o.view_read_at = Some(NOW - secs(40));
    o.memory.resumed_at = Some(NOW - secs(1));
    let rt = Runtime::none().peers(vec![peer("pg-2", LAST_LSN - 10)]);
    let c = run(o, &cfg(), NOW, &rt);
    assert!(
        !c.queries.contains(&Action::AcquireLeader),
        "raced from a stale view: {:?}",
        c.queries
    );
    assert!(c.decision.actions.is_empty(), "{:?}", c.decision);
    assert_eq!(
        c.decision.next_cycle_at,
        Some(NOW),
        "reads the DCS again at once"
    );
}

/// A primary whose own lock looks expired in a view older than its pause does not re-take it.
#[test]
fn resumed_primary_does_not_retake_its_lock_from_an_old_view() {
    let mut o = obs("pg-1", leaderless(), primary(LAST_LSN));
    o.view_read_at = Some(NOW - secs(40));
    o.memory.resumed_at = Some(NOW);
    let c = run(o, &cfg(), NOW, &Runtime::none().peers(vec![]));
    assert!(
        !c.queries.contains(&Action::AcquireLeader),
        "{:?}",
        c.queries
    );
}

/// Once the view is read after the resumption, the usual race applies.
#[test]
fn view_read_after_the_pause_races_as_usual() {
    let mut o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    o.memory.resumed_at = Some(NOW - secs(1));
    o.view_read_at = Some(NOW - std::time::Duration::from_millis(999));
    let rt = Runtime::none()
        .peers(vec![peer("pg-2", LAST_LSN - 10)])
        .acquire(LockOutcome::Acquired);
    let c = run(o, &cfg(), NOW, &rt);
    assert!(
        c.queries.contains(&Action::AcquireLeader),
        "{:?}",
        c.queries
    );
    assert_eq!(c.decision.actions, [Action::Promote]);
}

/// The invariants checker flags a race decided from a view that predates the pause, and a
/// view of unknown age after a pause.
#[test]
fn invariants_flag_acquire_from_a_stale_view() {
    let acquire = Decision::ask(Action::AcquireLeader, "racing for the leader lock");
    for read in [Some(NOW - secs(40)), Some(NOW - secs(1)), None] {
        let mut o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
        o.view_read_at = read;
        o.memory.resumed_at = Some(NOW - secs(1));
        assert_eq!(
            invariants::check(&o, &cfg(), NOW, &acquire),
            Err(Violation::AcquireFromStaleView),
            "view read at {read:?}"
        );
    }
    let mut o = obs("pg-1", leaderless(), replica(None, LAST_LSN));
    o.view_read_at = Some(NOW);
    o.memory.resumed_at = Some(NOW - secs(1));
    assert_eq!(invariants::check(&o, &cfg(), NOW, &acquire), Ok(()));
}
