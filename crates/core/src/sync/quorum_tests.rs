//! Quorum commit transitions: Patroni's documented orders for adding a standby, and a
//! simulator that applies the transitions one by one (standbys confirm once listed) from many
//! starting states until nothing is left to do, checking the overlap invariant after every
//! transition and the desired state at the end.

use super::quorum::{QuorumInput, Transition, resolve};

fn set(s: &str) -> Vec<String> {
    s.chars().map(String::from).collect()
}

fn input(
    quorum: u32,
    voters: &str,
    numsync: u32,
    sync: &str,
    confirmed: u32,
    active: &str,
    wanted: u32,
) -> QuorumInput {
    QuorumInput {
        leader: "a".into(),
        quorum,
        voters: set(voters),
        numsync,
        sync: set(sync),
        numsync_confirmed: confirmed,
        active: set(active),
        sync_wanted: wanted,
        leader_wanted: "a".into(),
    }
}

fn sync(num: u32, names: &str) -> Transition {
    Transition::Sync {
        num,
        names: set(names),
    }
}

fn quorum(q: u32, voters: &str) -> Transition {
    Transition::Quorum {
        leader: "a".into(),
        quorum: q,
        voters: set(voters),
    }
}

/// With only the leader, new standbys are listed first (all at once) and become voters once
/// confirmed; the quorum makes up for the ones not confirmed yet.
#[test]
fn adding_from_nothing() {
    let r = resolve(&input(0, "", 0, "", 0, "b", 2)).expect("resolves");
    assert_eq!(r.transitions, [sync(1, "b"), Transition::Restart]);
    let r = resolve(&input(0, "", 1, "b", 1, "b", 2)).expect("resolves");
    assert_eq!(r.transitions, [quorum(0, "b")]);
    let r = resolve(&input(0, "", 0, "", 0, "bcde", 2)).expect("resolves");
    assert_eq!(r.transitions, [sync(2, "bcde"), Transition::Restart]);
    let r = resolve(&input(0, "", 2, "bcde", 1, "bcde", 2)).expect("resolves");
    assert_eq!(r.transitions, [quorum(3, "bcde")]);
}

/// Every transition keeps `|voters ∪ sync| ≤ quorum + numsync + 1` with one set inside the
/// other; applying them (standbys confirm once listed) ends in the desired state.
#[test]
fn converges_safely_from_many_states() {
    let names = ["", "b", "bc", "bcd", "bcde"];
    let mut cases = 0;
    for active in names {
        for sync_names in names {
            for wanted in 1..=3u32 {
                let n = u32::try_from(sync_names.len()).expect("small");
                let numsync = wanted.min(n);
                // A steady, safe start: voters = sync, quorum = |sync| − numsync.
                let start = input(
                    n - numsync,
                    sync_names,
                    numsync,
                    sync_names,
                    numsync,
                    active,
                    wanted,
                );
                run(start, active, wanted);
                cases += 1;
            }
        }
    }
    assert!(cases > 50);
}

/// A failover: the new leader (a former voter) turns the old leader into a voter first.
#[test]
fn failover_keeps_the_old_leader_as_voter() {
    let mut i = input(1, "bc", 1, "bc", 1, "c", 1);
    i.leader = "z".into();
    i.voters = set("ac");
    i.leader_wanted = "a".into();
    i.sync = set("");
    i.numsync = 0;
    let r = resolve(&i).expect("resolves");
    let first_quorum = r.transitions.iter().find_map(|t| match t {
        Transition::Quorum { leader, voters, .. } => Some((leader.clone(), voters.clone())),
        _ => None,
    });
    let (leader, voters) = first_quorum.expect("a /sync write");
    assert_eq!(leader, "a");
    assert!(voters.contains(&"z".to_owned()), "{voters:?}");
}

/// Applies transitions until none is left (at most 20 rounds), checking the invariant.
fn run(mut state: QuorumInput, active: &str, wanted: u32) {
    for _ in 0..20 {
        let r = resolve(&state).unwrap_or_else(|e| panic!("{e} from {state:?}"));
        if r.transitions.is_empty() {
            let a = set(active);
            let n = u32::try_from(a.len()).expect("small");
            assert_eq!(sorted(&state.sync), sorted(&a), "{state:?}");
            assert_eq!(state.numsync, wanted.min(n), "{state:?}");
            if n > 0 {
                assert_eq!(sorted(&state.voters), sorted(&a), "{state:?}");
                assert_eq!(state.quorum, n - wanted.min(n), "{state:?}");
            }
            return;
        }
        for t in r.transitions {
            match t {
                Transition::Sync { num, names } => {
                    state.numsync = num;
                    state.sync = names;
                }
                Transition::Quorum { quorum, voters, .. } => {
                    state.quorum = quorum;
                    state.voters = voters;
                }
                Transition::Restart => break,
            }
            check(&state);
        }
        // Listed standbys that stream confirm.
        let listed_active = state
            .sync
            .iter()
            .filter(|s| active.contains(s.as_str()))
            .count();
        state.numsync_confirmed = u32::try_from(listed_active)
            .expect("small")
            .min(state.numsync);
    }
    panic!("no steady state after 20 rounds: {state:?}");
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn check(s: &QuorumInput) {
    let mut voters = s.voters.clone();
    voters.push(s.leader.clone());
    let mut sync = s.sync.clone();
    sync.push(s.leader_wanted.clone());
    let mut all = voters.clone();
    all.extend(sync.iter().cloned());
    all.sort();
    all.dedup();
    if !s.voters.is_empty() {
        let n = u32::try_from(all.len()).expect("small");
        assert!(n <= s.quorum + s.numsync + 1, "overlap broken: {s:?}");
    }
    let subset = |a: &[String], b: &[String]| a.iter().all(|x| b.contains(x));
    assert!(
        subset(&voters, &sync) || subset(&sync, &voters),
        "mismatched: {s:?}"
    );
}
