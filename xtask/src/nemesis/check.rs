//! The checker: what a round's recorded traffic says about safety, as pure functions of the
//! records (unit-tested below).
//!
//! - **Split brain**: a probe tick in which more than one member committed a write. Probes of
//!   one tick start at the same instant and each is bounded by the probe timeout, so two
//!   commits in one tick mean two members accepted writes within about a second of each other;
//!   a legitimate hand-over never does that (the old primary stops before the new one is
//!   promoted, seconds apart). A window is a run of consecutive split-brain ticks.
//! - **Lost rows**: acknowledged ids missing from the final primary.
//! - **Write outage**: the longest time between two acknowledgements.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One acknowledged row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    /// The row's unique id.
    pub id: i64,
    /// The member whose primary acknowledged it.
    pub member: usize,
    /// When the acknowledgement arrived, from the round's origin.
    pub at: Duration,
}

/// One probe of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// The tick (sampling instant) the probe started on.
    pub tick: u64,
    /// The member probed.
    pub member: usize,
    /// Whether its write transaction committed within the probe timeout.
    pub committed: bool,
    /// When the probe ended, from the round's origin.
    pub at: Duration,
}

/// Split-brain samples of a round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SplitBrain {
    /// Ticks in which more than one member committed.
    pub samples: usize,
    /// The longest run of consecutive such ticks, as a duration (ticks × period).
    pub longest: Duration,
    /// The first such tick, its members and when it ended (for the timeline).
    pub first: Option<(u64, Vec<usize>, Duration)>,
}

/// Counts the split-brain ticks of `samples` (see the module doc); `period` is the tick length.
pub(crate) fn split_brain(samples: &[Sample], period: Duration) -> SplitBrain {
    let mut by_tick: BTreeMap<u64, (BTreeSet<usize>, Duration)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.committed) {
        let e = by_tick.entry(s.tick).or_default();
        e.0.insert(s.member);
        e.1 = e.1.max(s.at);
    }
    let bad: Vec<(u64, Vec<usize>, Duration)> = by_tick
        .into_iter()
        .filter(|(_, (m, _))| m.len() > 1)
        .map(|(t, (m, at))| (t, m.into_iter().collect(), at))
        .collect();
    let mut longest = 0u32;
    let mut run = 0u32;
    let mut previous: Option<u64> = None;
    for (tick, _, _) in &bad {
        run = if previous.is_some_and(|p| p + 1 == *tick) {
            run + 1
        } else {
            1
        };
        longest = longest.max(run);
        previous = Some(*tick);
    }
    SplitBrain {
        samples: bad.len(),
        longest: period * longest,
        first: bad.into_iter().next(),
    }
}

/// Acknowledged ids of `acked` that are not in `present`.
pub(crate) fn lost(acked: &[Ack], present: &BTreeSet<i64>) -> Vec<i64> {
    acked
        .iter()
        .map(|a| a.id)
        .filter(|id| !present.contains(id))
        .collect()
}

/// The longest time between two consecutive acknowledgements in `acked` (in order), and when
/// it started; `None` with fewer than two.
pub(crate) fn longest_gap(acked: &[Ack]) -> Option<(Duration, Duration)> {
    acked
        .windows(2)
        .map(|w| (w[1].at.saturating_sub(w[0].at), w[0].at))
        .max_by_key(|(gap, _)| *gap)
}

/// Members that acknowledged rows, in the order they first did, with how many each.
pub(crate) fn writers(acked: &[Ack]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for a in acked {
        match out.iter_mut().find(|(m, _)| *m == a.member) {
            Some((_, n)) => *n += 1,
            None => out.push((a.member, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_millis(150);

    fn s(tick: u64, member: usize, committed: bool) -> Sample {
        Sample {
            tick,
            member,
            committed,
            at: P * u32::try_from(tick).expect("small tick"),
        }
    }

    fn ack(id: i64, member: usize, ms: u64) -> Ack {
        Ack {
            id,
            member,
            at: Duration::from_millis(ms),
        }
    }

    /// A hand-over (one member stops committing, another starts later) is no split brain.
    #[test]
    fn a_hand_over_has_no_split_brain_samples() {
        let samples = [
            s(1, 0, true),
            s(1, 1, false),
            s(2, 0, false),
            s(2, 1, false),
            s(3, 0, false),
            s(3, 1, true),
        ];
        assert_eq!(split_brain(&samples, P), SplitBrain::default());
    }

    /// Two members committing in the same ticks are counted, and the longest consecutive run
    /// is the window.
    #[test]
    fn two_committing_members_in_one_tick_are_split_brain() {
        let samples = [
            s(4, 0, true),
            s(4, 2, true),
            s(5, 0, true),
            s(5, 2, true),
            s(6, 0, true),
            s(6, 2, false),
            s(9, 1, true),
            s(9, 0, true),
        ];
        let sb = split_brain(&samples, P);
        assert_eq!(sb.samples, 3);
        assert_eq!(sb.longest, P * 2);
        assert_eq!(sb.first.map(|f| (f.0, f.1)), Some((4, vec![0, 2])));
    }

    /// Lost rows are the acknowledged ids the final primary does not have; unacknowledged
    /// rows that made it are not counted.
    #[test]
    fn lost_rows_are_acknowledged_ids_missing_from_the_final_primary() {
        let acked = [ack(1, 0, 10), ack(2, 0, 20), ack(4, 1, 900)];
        let present: BTreeSet<i64> = [1, 3, 4].into();
        assert_eq!(lost(&acked, &present), vec![2]);
    }

    /// The write outage is the longest gap between acknowledgements.
    #[test]
    fn write_outage_is_the_longest_gap() {
        let acked = [
            ack(1, 0, 10),
            ack(2, 0, 30),
            ack(3, 1, 2030),
            ack(4, 1, 2050),
        ];
        assert_eq!(
            longest_gap(&acked),
            Some((Duration::from_millis(2000), Duration::from_millis(30)))
        );
        assert_eq!(longest_gap(&acked[..1]), None);
        assert_eq!(writers(&acked), vec![(0, 2), (1, 2)]);
    }
}
