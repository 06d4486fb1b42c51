//! Whether this member's WAL history diverged from the leader's (Patroni's
//! `_check_timeline_and_lsn`), as a pure function of where the local server stands, the
//! leader's timeline and the leader's timeline history.
//!
//! Where the local server stands comes from the live server when it runs (its replay
//! position and timeline: a running standby's `pg_control` lags what it replayed, and a
//! standby that streamed past the leader's switch point must be rewound although its
//! checkpoint is behind it), else from `pg_controldata` of a cleanly stopped data directory
//! ([`LocalPosition::from_controldata`]). A data directory that crashed has no trustworthy
//! position until crash recovery ran ([`Action::RecoverCrash`](super::Action::RecoverCrash)).

use serde_json::Value;

use super::{ControlState, TimelineVerdict};

/// Where the local server's WAL ends, for the divergence check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPosition {
    /// In recovery (a standby), or a former primary.
    pub in_recovery: bool,
    /// The timeline it is on.
    pub timeline: u64,
    /// Its replay position (standby) or last checkpoint (former primary).
    pub lsn: u64,
}

/// What the divergence check found, or what it still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// The verdict.
    Verdict(TimelineVerdict),
    /// A former primary's last checkpoint (at `lsn` on `timeline`) is before the leader's
    /// switch point: it is in sync exactly when that checkpoint record ends at
    /// `switchpoint` (a clean switchover). Read the record's end (`pg_waldump`) and call
    /// [`after_checkpoint_end`].
    NeedCheckpointEnd {
        /// Timeline of the checkpoint.
        timeline: u64,
        /// Location of the checkpoint record.
        lsn: u64,
        /// Where the local timeline ended in the leader's history.
        switchpoint: u64,
    },
}

// === impl LocalPosition ===

impl LocalPosition {
    /// The position of a stopped data directory from `pg_controldata`, as Patroni's
    /// `_get_local_timeline_lsn_from_controldata`: a standby's minimum recovery point (a
    /// standby without one was a primary when it stopped), a cleanly shut down primary's last
    /// checkpoint; `None` for a data directory that did not shut down cleanly.
    pub fn from_controldata(
        state: ControlState,
        checkpoint: (u64, u64),
        min_recovery: (u64, u64),
    ) -> Option<Self> {
        let (checkpoint_tl, checkpoint_lsn) = checkpoint;
        let (min_tl, min_lsn) = min_recovery;
        match state {
            ControlState::ShutDownInRecovery | ControlState::InArchiveRecovery
                if min_lsn != 0 && min_tl != 0 =>
            {
                Some(Self {
                    in_recovery: true,
                    timeline: min_tl,
                    lsn: min_lsn,
                })
            }
            ControlState::ShutDown
            | ControlState::ShutDownInRecovery
            | ControlState::InArchiveRecovery => Some(Self {
                in_recovery: false,
                timeline: checkpoint_tl,
                lsn: checkpoint_lsn,
            }),
            _ => None,
        }
    }
}

/// `(timeline, switch point)` of each line of the DCS `history` (`[timeline, lsn, reason,
/// ...]`); unreadable lines are skipped.
pub fn history_switchpoints(lines: &[Value]) -> Vec<(u64, u64)> {
    lines
        .iter()
        .filter_map(|line| {
            let line = line.as_array()?;
            Some((line.first()?.as_u64()?, line.get(1)?.as_u64()?))
        })
        .collect()
}

/// Compares `local` with the leader on `leader_timeline` whose history is `history`
/// (`(timeline, switch point)`, oldest first):
/// - local timeline ahead of the leader's: rewind (a former primary promoted past it);
/// - the same: in sync;
/// - behind: the history line of the local timeline decides. A standby diverged when it
///   replayed past the switch point; a former primary when its last checkpoint is at or past
///   it, or ends anywhere but at it. A line of a newer timeline before the local one's, or
///   no line at all, means the local timeline is not in the leader's history: rewind;
/// - a history that does not reach the leader's timeline yet (the leader publishes it after
///   its promotion): undetermined, asked again later.
pub fn divergence(
    local: LocalPosition,
    leader_timeline: u64,
    history: &[(u64, u64)],
) -> Divergence {
    use TimelineVerdict::{InSync, NeedsRewind};
    if local.timeline > leader_timeline {
        return Divergence::Verdict(NeedsRewind);
    }
    if local.timeline == leader_timeline {
        return Divergence::Verdict(InSync);
    }
    // The DCS history is written by the leader after its promotion; until it names the switch
    // to the leader's timeline it says nothing about where the local timeline ended.
    let newest = history.iter().map(|(tl, _)| tl + 1).max().unwrap_or(1);
    if newest < leader_timeline {
        return Divergence::Verdict(TimelineVerdict::Undetermined);
    }
    for &(parent, switchpoint) in history {
        if parent == local.timeline {
            let verdict = if local.in_recovery {
                if local.lsn > switchpoint {
                    NeedsRewind
                } else {
                    InSync
                }
            } else if local.lsn >= switchpoint {
                NeedsRewind
            } else {
                return Divergence::NeedCheckpointEnd {
                    timeline: local.timeline,
                    lsn: local.lsn,
                    switchpoint,
                };
            };
            return Divergence::Verdict(verdict);
        }
        if parent > local.timeline {
            return Divergence::Verdict(NeedsRewind);
        }
    }
    Divergence::Verdict(NeedsRewind)
}

/// The verdict for [`Divergence::NeedCheckpointEnd`] once the checkpoint record's end is
/// known (`None`: it could not be read, so the former primary is rewound).
pub fn after_checkpoint_end(checkpoint_end: Option<u64>, switchpoint: u64) -> TimelineVerdict {
    if checkpoint_end == Some(switchpoint) {
        TimelineVerdict::InSync
    } else {
        TimelineVerdict::NeedsRewind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TimelineVerdict::{InSync, NeedsRewind};

    fn standby(timeline: u64, lsn: u64) -> LocalPosition {
        LocalPosition {
            in_recovery: true,
            timeline,
            lsn,
        }
    }

    fn former_primary(timeline: u64, lsn: u64) -> LocalPosition {
        LocalPosition {
            in_recovery: false,
            timeline,
            lsn,
        }
    }

    /// Leader history `1 → 2 at 100`, `2 → 3 at 200`, `3 → 4 at 300`.
    const HISTORY: [(u64, u64); 3] = [(1, 100), (2, 200), (3, 300)];

    /// Same timeline: in sync; local ahead: rewind (the member that was promoted while the
    /// leader it should follow stayed on the older timeline).
    #[test]
    fn same_timeline_in_sync_and_ahead_rewinds() {
        assert_eq!(
            divergence(standby(4, 999), 4, &HISTORY),
            Divergence::Verdict(InSync)
        );
        assert_eq!(
            divergence(former_primary(4, 350), 3, &HISTORY),
            Divergence::Verdict(NeedsRewind)
        );
    }

    /// A running standby that streamed from the old primary past the switch point diverged;
    /// one that stopped at or before it follows as it is.
    #[test]
    fn standby_past_the_switch_point_rewinds() {
        assert_eq!(
            divergence(standby(3, 301), 4, &HISTORY),
            Divergence::Verdict(NeedsRewind)
        );
        assert_eq!(
            divergence(standby(3, 300), 4, &HISTORY),
            Divergence::Verdict(InSync)
        );
    }

    /// A former primary: at or past the switch point diverged; before it, the end of its
    /// checkpoint record decides (a clean switchover ends exactly there).
    #[test]
    fn former_primary_needs_the_checkpoint_end() {
        assert_eq!(
            divergence(former_primary(3, 300), 4, &HISTORY),
            Divergence::Verdict(NeedsRewind)
        );
        assert_eq!(
            divergence(former_primary(3, 290), 4, &HISTORY),
            Divergence::NeedCheckpointEnd {
                timeline: 3,
                lsn: 290,
                switchpoint: 300
            }
        );
        assert_eq!(after_checkpoint_end(Some(300), 300), InSync);
        assert_eq!(after_checkpoint_end(Some(310), 300), NeedsRewind);
        assert_eq!(after_checkpoint_end(None, 300), NeedsRewind);
    }

    /// A killed leader on timeline 4 after a switchover to 5 and a failover to 6 (the e2e
    /// case): its timeline is in the history, so its position decides; a timeline missing
    /// from the history (it forked off elsewhere) or a history without lines rewinds.
    #[test]
    fn timelines_missing_from_the_history_rewind() {
        let history = [(1, 100), (2, 200), (3, 300), (4, 400), (5, 500)];
        assert_eq!(
            divergence(standby(4, 400), 6, &history),
            Divergence::Verdict(InSync)
        );
        assert_eq!(
            divergence(former_primary(4, 450), 6, &history),
            Divergence::Verdict(NeedsRewind)
        );
        let forked = [(1, 100), (3, 300)];
        assert_eq!(
            divergence(standby(2, 150), 4, &forked),
            Divergence::Verdict(NeedsRewind)
        );
        assert_eq!(
            divergence(standby(1, 150), 2, &[]),
            Divergence::Verdict(TimelineVerdict::Undetermined),
            "the leader has not published the switch to its timeline yet"
        );
        assert_eq!(
            divergence(standby(3, 150), 5, &[(1, 100), (2, 200), (3, 300)]),
            Divergence::Verdict(TimelineVerdict::Undetermined)
        );
    }

    /// `pg_controldata`: a standby's minimum recovery point; one without was a primary; a
    /// clean primary's checkpoint; a crashed primary has no position yet.
    #[test]
    fn positions_from_controldata() {
        assert_eq!(
            LocalPosition::from_controldata(ControlState::ShutDownInRecovery, (2, 50), (3, 70)),
            Some(standby(3, 70))
        );
        assert_eq!(
            LocalPosition::from_controldata(ControlState::InArchiveRecovery, (2, 50), (0, 0)),
            Some(former_primary(2, 50))
        );
        assert_eq!(
            LocalPosition::from_controldata(ControlState::ShutDown, (4, 80), (0, 0)),
            Some(former_primary(4, 80))
        );
        for crashed in [
            ControlState::InProduction,
            ControlState::ShuttingDown,
            ControlState::InCrashRecovery,
        ] {
            assert_eq!(
                LocalPosition::from_controldata(crashed, (4, 80), (0, 0)),
                None
            );
        }
    }

    /// DCS history lines with reasons and timestamps; junk is skipped.
    #[test]
    fn history_lines_are_read() {
        let lines: Vec<Value> = serde_json::from_str(
            r#"[[1, 100, "no recovery target specified"], [2, 200, "x", "2026-12-06T00:00:00+00:00", "m1"], "junk"]"#,
        )
        .expect("json");
        assert_eq!(history_switchpoints(&lines), [(1, 100), (2, 200)]);
    }
}
