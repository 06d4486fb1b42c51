//! Failsafe mode (`failsafe_mode: true`): what the lock holder publishes, what a primary cut
//! off from the DCS does on its members' word, and how replicas treat a primary that called
//! them (Patroni's `Failsafe`, `check_failsafe_topology`, `_handle_dcs_error`).

use std::collections::BTreeMap;

use super::fixtures::*;
use crate::ha::{Action, DcsView, FailsafeLeader, HaConfig, LockOutcome, Observation};

fn failsafe_cfg() -> HaConfig {
    HaConfig {
        failsafe_mode: true,
        ..cfg()
    }
}

fn api(name: &str) -> String {
    format!("http://{name}:8008/patroni")
}

fn topology(names: &[&str]) -> BTreeMap<String, String> {
    names.iter().map(|n| ((*n).to_owned(), api(n))).collect()
}

/// `pg-0`, primary, cut off from the DCS `since` its last renewal, having seen `seen`.
fn cut_off(seen: Option<BTreeMap<String, String>>, since: u64) -> Observation {
    let mut o = obs(
        "pg-0",
        cluster(Some("pg-0"), &["pg-0", "pg-1", "pg-2"]),
        primary(LAST_LSN),
    );
    o.dcs = DcsView::Unreachable;
    o.memory.last_lock_renewal = Some(NOW - secs(since));
    o.memory.failsafe_topology = seen;
    o
}

const CONTINUE: &str =
    "continue to run as a leader because failsafe mode is enabled and all members are accessible";
const DEMOTED: &str = "demoted self because DCS is not accessible and I was a leader";

/// The lock holder publishes every member's API with its renewal, itself included even
/// before its own member key shows its API; without failsafe mode nothing.
#[test]
fn renewal_publishes_the_topology() {
    let mut c = cluster(Some("pg-0"), &["pg-0", "pg-1", "pg-2"]);
    c.members[0].data.api_url = None;
    let mut o = obs("pg-0", c, primary(LAST_LSN));
    o.me.api_url = Some(api("pg-0"));
    let rt = Runtime::none().renew(LockOutcome::Renewed);
    let with = run(o.clone(), &failsafe_cfg(), NOW, &rt);
    assert_eq!(
        with.queries,
        [Action::RenewLeader {
            last_lsn: Some(LAST_LSN),
            failsafe: Some(topology(&["pg-0", "pg-1", "pg-2"])),
        }]
    );
    let without = run(o, &cfg(), NOW, &rt);
    assert_eq!(
        without.queries,
        [Action::RenewLeader {
            last_lsn: Some(LAST_LSN),
            failsafe: None,
        }]
    );
}

/// Past the renewal grace the primary asks every other member of the topology it last saw;
/// when all accept it keeps running, else it demotes as without failsafe mode.
#[test]
fn primary_runs_on_while_every_member_accepts() {
    let o = cut_off(Some(topology(&["pg-0", "pg-1", "pg-2"])), 20);
    let accepted = run(
        o.clone(),
        &failsafe_cfg(),
        NOW,
        &Runtime::none().failsafe(true),
    );
    assert_eq!(
        accepted.queries,
        [Action::CheckFailsafe {
            members: vec![target("pg-1"), target("pg-2")],
        }]
    );
    assert_final(&accepted, &[], CONTINUE);
    let refused = run(o, &failsafe_cfg(), NOW, &Runtime::none().failsafe(false));
    assert_final(&refused, &offline(), DEMOTED);
}

/// Within `retry_timeout` of the last renewal nobody is asked yet (the DCS may answer
/// again); without failsafe mode nobody is asked at all.
#[test]
fn nobody_is_asked_within_the_grace_or_without_failsafe_mode() {
    let o = cut_off(Some(topology(&["pg-0", "pg-1"])), 4);
    let c = run(o, &failsafe_cfg(), NOW, &Runtime::none());
    assert_final(&c, &[], "DCS is not accessible");
    let o = cut_off(Some(topology(&["pg-0", "pg-1"])), 20);
    let c = run(o, &cfg(), NOW, &Runtime::none());
    assert_final(&c, &offline(), DEMOTED);
}

/// A primary without a topology, or missing from it, demotes without asking; alone in it,
/// it keeps running without asking.
#[test]
fn topology_decides_who_may_be_asked() {
    for seen in [None, Some(topology(&["pg-1", "pg-2"]))] {
        let c = run(cut_off(seen, 20), &failsafe_cfg(), NOW, &Runtime::none());
        assert_final(&c, &offline(), DEMOTED);
    }
    let c = run(
        cut_off(Some(topology(&["pg-0"])), 20),
        &failsafe_cfg(),
        NOW,
        &Runtime::none(),
    );
    assert_final(&c, &[], CONTINUE);
}

/// A replica that sees no lock but was called by the primary less than `ttl` ago follows
/// that primary and does not race; once the call is `ttl` old it races (and asks the
/// members, the caller among them).
#[test]
fn replica_follows_the_primary_that_called_it() {
    let mut c = cluster(None, &["pg-0", "pg-1", "pg-2"]);
    c.failsafe = Some(topology(&["pg-0", "pg-1", "pg-2"]));
    let mut o = obs("pg-1", c, replica(Some("pg-0"), LAST_LSN));
    o.memory.failsafe_leader = Some(FailsafeLeader {
        name: "pg-0".into(),
        conn_url: Some("postgres://pg-0:5432/postgres".into()),
        api_url: Some(api("pg-0")),
        slots: None,
        heard_at: NOW - secs(25),
    });
    let fresh = run(o.clone(), &failsafe_cfg(), NOW, &Runtime::none());
    assert!(fresh.queries.is_empty(), "{:?}", fresh.queries);
    assert_final(
        &fresh,
        &[],
        "no action. I am (pg-1), a secondary, and following a leader (pg-0)",
    );
    // Without failsafe mode the call means nothing.
    let off = run(
        o.clone(),
        &cfg(),
        NOW,
        &Runtime::none().peers(vec![peer_primary("pg-0")]),
    );
    assert!(matches!(off.queries[0], Action::CheckPeers { .. }));
    let stale = run(
        o,
        &failsafe_cfg(),
        NOW + secs(5),
        &Runtime::none().peers(vec![peer_primary("pg-0")]),
    );
    assert!(matches!(stale.queries[..], [Action::CheckPeers { .. }]));
    assert_eq!(
        stale.decision.message,
        "following a different leader because i am not the healthiest node"
    );
}

/// A member missing from a non-empty topology never races; the race also asks the
/// topology's members without a member key, and a primary among them stops it.
#[test]
fn race_is_limited_by_the_topology() {
    let mut c = cluster(None, &["pg-1", "pg-2"]);
    c.failsafe = Some(topology(&["pg-0", "pg-2"]));
    let o = obs("pg-1", c.clone(), replica(None, LAST_LSN));
    let outsider = run(o, &failsafe_cfg(), NOW, &Runtime::none());
    assert!(outsider.queries.is_empty(), "{:?}", outsider.queries);

    c.failsafe = Some(topology(&["pg-0", "pg-1", "pg-2"]));
    let o = obs("pg-1", c, replica(None, LAST_LSN));
    let rt = Runtime::none().peers(vec![peer_primary("pg-0"), peer("pg-2", LAST_LSN)]);
    let member = run(o, &failsafe_cfg(), NOW, &rt);
    assert_eq!(
        member.queries,
        [Action::CheckPeers {
            members: vec![target("pg-2"), target("pg-0")],
        }]
    );
    assert!(member.decision.actions.is_empty());
}
