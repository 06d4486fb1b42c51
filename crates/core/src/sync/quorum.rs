//! Quorum commit (`synchronous_mode: quorum`): the safe sequence of changes to
//! `synchronous_standby_names` (`ANY numsync (sync)`) and `/sync` (`quorum` of `voters`), as
//! Patroni's `QuorumStateResolver` (`patroni/quorum.py`) computes it.
//!
//! The invariant: any set of standbys that can acknowledge a commit overlaps any set of voters
//! that can elect a new leader, i.e. `|voters ∪ sync| ≤ quorum + numsync + 1` (the leader
//! counted), and one of `voters`, `sync` contains the other while they change. Increases
//! happen first, decreases last; each transition is checked against the invariant before it
//! is returned. Like Patroni, the whole sequence is computed before any of it is carried out:
//! an error means nothing is done this cycle.

use std::collections::BTreeMap;

/// Names compared case-insensitively (PostgreSQL compares `application_name` so), keeping the
/// spelling last given.
#[derive(Debug, Clone, Default)]
pub struct NameSet(BTreeMap<String, String>);

impl PartialEq for NameSet {
    fn eq(&self, other: &Self) -> bool {
        self.0.keys().eq(other.0.keys())
    }
}

impl Eq for NameSet {}

impl<S: AsRef<str>> FromIterator<S> for NameSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|s| (s.as_ref().to_lowercase(), s.as_ref().to_owned()))
                .collect(),
        )
    }
}

// === impl NameSet ===

impl NameSet {
    /// How many names.
    pub fn len(&self) -> i64 {
        i64::try_from(self.0.len()).unwrap_or(i64::MAX)
    }

    /// No names.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, sorted as written.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.values().cloned().collect();
        v.sort();
        v
    }

    fn union(&self, o: &Self) -> Self {
        let mut out = self.clone();
        out.0
            .extend(o.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    fn minus(&self, o: &Self) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(k, _)| !o.0.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    fn and(&self, o: &Self) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(k, _)| o.0.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    fn subset(&self, o: &Self) -> bool {
        self.0.keys().all(|k| o.0.contains_key(k))
    }

    fn proper_subset(&self, o: &Self) -> bool {
        self.subset(o) && self.0.len() < o.0.len()
    }

    fn one(name: &str) -> Self {
        std::iter::once(name).collect()
    }

    /// The first `n` names in sorted order (`reverse`: from the end).
    fn first(&self, n: i64, reverse: bool) -> Self {
        let mut v = self.names();
        if reverse {
            v.reverse();
        }
        v.into_iter()
            .take(usize::try_from(n.max(0)).unwrap_or(usize::MAX))
            .collect()
    }
}

/// One change, in order: the new state of what it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Set `synchronous_standby_names` to `ANY num (names)`.
    Sync {
        /// How many must confirm.
        num: u32,
        /// The standbys listed.
        names: Vec<String>,
    },
    /// Write `/sync`: `leader`, `quorum` of `voters`.
    Quorum {
        /// The leader.
        leader: String,
        /// How many voters a new leader must see.
        quorum: u32,
        /// The voters.
        voters: Vec<String>,
    },
    /// Observe again and compute the sequence anew (the state changed in a way only a fresh
    /// observation shows).
    Restart,
}

/// The state would break the invariant, or a value is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuorumError(pub String);

/// What the resolver starts from.
#[derive(Debug, Clone)]
pub struct QuorumInput {
    /// `/sync`'s leader.
    pub leader: String,
    /// `/sync`'s quorum.
    pub quorum: u32,
    /// `/sync`'s voters.
    pub voters: Vec<String>,
    /// How many standbys `synchronous_standby_names` requires.
    pub numsync: u32,
    /// The standbys it lists.
    pub sync: Vec<String>,
    /// How many listed standbys are confirmed to have every commit.
    pub numsync_confirmed: u32,
    /// Standbys streaming and allowed to be synchronous.
    pub active: Vec<String>,
    /// `synchronous_node_count`.
    pub sync_wanted: u32,
    /// This member, which should be the leader.
    pub leader_wanted: String,
}

struct Resolver {
    leader: String,
    quorum: i64,
    voters: NameSet,
    numsync: i64,
    sync: NameSet,
    numsync_confirmed: i64,
    active: NameSet,
    sync_wanted: i64,
    leader_wanted: String,
    out: Vec<Transition>,
    warning: Option<String>,
}

/// The transitions to carry out, and the invariant problem found on the way (Patroni logs it
/// as a warning and repairs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// In order.
    pub transitions: Vec<Transition>,
    /// What was wrong with the state found, if anything.
    pub warning: Option<String>,
}

/// The transitions from `input` to the desired state (`sync = voters = active`,
/// `numsync = min(sync_wanted, |active|)`, `quorum = |active| − numsync`), consecutive ones of
/// the same kind merged, ending at the first [`Transition::Restart`].
///
/// # Errors
/// The state cannot be moved safely (Patroni logs it and does nothing this cycle).
pub fn resolve(input: &QuorumInput) -> Result<Resolution, QuorumError> {
    let sync: NameSet = input.sync.iter().collect();
    let mut r = Resolver {
        leader: input.leader.clone(),
        quorum: i64::from(input.quorum),
        voters: input.voters.iter().collect(),
        numsync: i64::from(input.numsync).min(sync.len()),
        sync,
        numsync_confirmed: i64::from(input.numsync_confirmed),
        active: input.active.iter().collect(),
        sync_wanted: i64::from(input.sync_wanted),
        leader_wanted: input.leader_wanted.clone(),
        out: Vec::new(),
        warning: None,
    };
    r.generate()?;
    let all = std::mem::take(&mut r.out);
    let mut merged = Vec::new();
    for (i, t) in all.iter().enumerate() {
        if all
            .get(i + 1)
            .is_some_and(|n| std::mem::discriminant(n) == std::mem::discriminant(t))
        {
            continue;
        }
        merged.push(t.clone());
        if *t == Transition::Restart {
            break;
        }
    }
    Ok(Resolution {
        transitions: merged,
        warning: r.warning,
    })
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

// === impl Resolver ===

impl Resolver {
    fn check_invariants(&self) -> Result<(), QuorumError> {
        let voters = self.voters.union(&NameSet::one(&self.leader));
        let sync = self.sync.union(&NameSet::one(&self.leader_wanted));
        let all = voters.union(&sync).len();
        if !self.voters.is_empty() && all > self.quorum + self.numsync + 1 {
            return Err(QuorumError(format!(
                "Quorum and sync not guaranteed to overlap: nodes {all} >= quorum {} + sync {:?} + 1",
                self.quorum,
                self.sync.names()
            )));
        }
        if !(voters.subset(&sync) || sync.subset(&voters)) {
            return Err(QuorumError(format!(
                "Mismatched sets: voter only={:?} sync only={:?}",
                voters.minus(&sync).names(),
                sync.minus(&voters).names()
            )));
        }
        Ok(())
    }

    fn quorum_update(
        &mut self,
        mut quorum: i64,
        mut voters: NameSet,
        leader: Option<&str>,
        adjust_quorum: bool,
    ) -> Result<(), QuorumError> {
        if quorum < 0 {
            return Err(QuorumError(format!(
                "Quorum {quorum} < 0 of ({:?})",
                voters.names()
            )));
        }
        if quorum > 0 && quorum >= voters.len() {
            return Err(QuorumError(format!(
                "Quorum {quorum} >= N of ({:?})",
                voters.names()
            )));
        }
        let old_leader = self.leader.clone();
        if let Some(l) = leader {
            l.clone_into(&mut self.leader);
        } else if self.numsync_confirmed == 0 && self.voters.is_empty() {
            // Nobody known to have caught up: reset quorum and voters.
            quorum = 0;
            voters = NameSet::default();
        } else if adjust_quorum {
            // Fewer confirmed than listed: a larger quorum makes sure the race sees one.
            quorum += (self.numsync - self.numsync_confirmed).max(0);
        }
        if self.leader == old_leader && quorum == self.quorum && voters == self.voters {
            if !self.voters.is_empty() {
                return Ok(());
            }
            self.out.push(Transition::Restart);
        }
        self.quorum = quorum;
        self.voters = voters;
        self.check_invariants()?;
        self.out.push(Transition::Quorum {
            leader: self.leader.clone(),
            quorum: count(self.quorum),
            voters: self.voters.names(),
        });
        Ok(())
    }

    fn sync_update(&mut self, numsync: i64, sync: NameSet) -> Result<(), QuorumError> {
        if numsync < 0 {
            return Err(QuorumError(format!(
                "Sync {numsync} < 0 of ({:?})",
                sync.names()
            )));
        }
        if numsync > sync.len() {
            return Err(QuorumError(format!(
                "Sync {numsync} > N of ({:?})",
                sync.names()
            )));
        }
        self.numsync = numsync;
        self.sync = sync;
        self.check_invariants()?;
        self.out.push(Transition::Sync {
            num: count(self.numsync),
            names: self.sync.names(),
        });
        Ok(())
    }

    fn generate(&mut self) -> Result<(), QuorumError> {
        let attempt: Result<bool, QuorumError> = if self.leader_wanted != self.leader {
            // A failover: the old leader becomes a voter.
            let voters = self
                .voters
                .minus(&NameSet::one(&self.leader_wanted))
                .union(&NameSet::one(&self.leader));
            (|| {
                if self.sync.is_empty() {
                    let numsync = voters.len() - self.quorum;
                    self.sync_update(numsync, voters.clone())?;
                }
                let wanted = self.leader_wanted.clone();
                self.quorum_update(self.quorum, voters, Some(&wanted), true)?;
                // Right after a promotion replicas may not have reconnected yet.
                Ok(!self.sync.and(&self.active).is_empty())
            })()
        } else {
            self.check_invariants().map(|()| true)
        };
        match attempt {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                // Patroni logs it and moves the quorum to match the listed standbys.
                self.warning = Some(e.0);
                let sync = self.sync.clone();
                self.quorum_update(sync.len() - self.numsync, sync, None, true)?;
            }
        }
        if self.leader != self.leader_wanted {
            return Err(QuorumError(format!(
                "the leader {} is not {}",
                self.leader, self.leader_wanted
            )));
        }
        let live_sync = self.sync.and(&self.active);
        if self.numsync_confirmed == 0 && !live_sync.is_empty() {
            // After a restart or failover: derived from the quorum.
            self.numsync_confirmed = live_sync.len().min(self.voters.len() - self.quorum);
        }
        self.non_steady()?;
        self.remove_gone()?;
        self.add_new()?;
        self.factor_change()
    }

    /// A sequence interrupted earlier: one set is a proper subset of the other.
    fn non_steady(&mut self) -> Result<(), QuorumError> {
        if self.sync.proper_subset(&self.voters) {
            // Case 1: in the middle of changing voters.
            let remove = self.voters.minus(&self.sync.union(&self.active));
            if !remove.is_empty() {
                let adjust = self.sync.minus(&self.active).is_empty();
                let quorum = self.voters.len() - remove.len() - self.numsync;
                let voters = self.voters.minus(&remove);
                self.quorum_update(quorum, voters, None, adjust)?;
            }
            let add = self.voters.and(&self.active).minus(&self.sync);
            if !add.is_empty() {
                let sync = self.sync.union(&add);
                self.sync_update(self.numsync, sync)?;
            }
        } else if self.voters.proper_subset(&self.sync) {
            // Case 2: in the middle of changing the replication factor.
            let remove = self.sync.minus(&self.active);
            let kept = self.sync.minus(&remove);
            if !remove.is_empty()
                && !kept.is_empty()
                && (self.voters.is_empty() || !kept.and(&self.voters).is_empty())
            {
                let numsync = self.numsync.min(self.sync.len() - remove.len());
                self.sync_update(numsync, kept)?;
            }
            let add = self.sync.minus(&self.voters).and(&self.active);
            if !add.is_empty() {
                let voters = self.voters.union(&add);
                self.quorum_update(voters.len() - self.numsync, voters, None, true)?;
            }
            let remove = self.sync.minus(&self.voters);
            if !remove.is_empty() {
                let numsync = self.numsync.min(self.sync.len() - remove.len());
                let sync = self.sync.minus(&remove);
                self.sync_update(numsync, sync)?;
            }
        }
        if self.voters != self.sync {
            return Err(QuorumError(format!(
                "voters {:?} and synchronous standbys {:?} still differ",
                self.voters.names(),
                self.sync.names()
            )));
        }
        let all = self.voters.union(&self.sync).len();
        let margin = self.quorum + self.numsync.min(self.numsync_confirmed) - all;
        if margin > 0 {
            if self.numsync > self.sync_wanted {
                // Case 3: replication factor above what is wanted.
                let numsync = self.sync_wanted.max(self.voters.len() - self.quorum);
                let sync = self.sync.clone();
                self.sync_update(numsync, sync)?;
            } else {
                // Case 4: quorum above what is needed.
                let voters = self.voters.clone();
                self.quorum_update(self.sync.len() - self.numsync, voters, None, true)?;
            }
        } else {
            let margin = self.quorum + self.numsync - all;
            if self.numsync == self.sync_wanted
                && margin > 0
                && self.numsync > self.numsync_confirmed
            {
                let voters = self.voters.clone();
                self.quorum_update(self.sync.len() - self.numsync, voters, None, true)?;
            }
        }
        Ok(())
    }

    /// Standbys that stopped streaming leave `synchronous_standby_names` and `/sync`.
    fn remove_gone(&mut self) -> Result<(), QuorumError> {
        let mut to_remove = self.sync.minus(&self.active);
        if to_remove.is_empty() {
            return Ok(());
        }
        if self.sync == to_remove {
            self.quorum_update(0, NameSet::default(), None, false)?;
            return self.sync_update(0, NameSet::default());
        }
        if self.quorum > 0 {
            // Reduce the quorum first when it allows.
            let remove = to_remove.first(self.quorum, true);
            let sync = self.sync.minus(&remove);
            let wanted = if self.sync_wanted > self.numsync {
                self.sync_wanted
            } else {
                self.numsync
            };
            self.sync_update(wanted.min(sync.len()), sync)?;
            let voters = self.voters.minus(&remove);
            to_remove = to_remove.and(&self.sync);
            let adjust = to_remove.is_empty();
            self.quorum_update(voters.len() - self.numsync, voters, None, adjust)?;
        }
        if !to_remove.is_empty() {
            if self.quorum != 0 {
                return Err(QuorumError(format!(
                    "quorum {} left while removing {:?}",
                    self.quorum,
                    to_remove.names()
                )));
            }
            let numsync = self.numsync - to_remove.len();
            let sync = self.sync.minus(&to_remove);
            let voters = self.voters.minus(&to_remove);
            let decrease = numsync - self.sync_wanted.min(sync.len());
            let quorum = if decrease == 0 {
                0
            } else {
                decrease.min(voters.len() - 1)
            };
            self.quorum_update(quorum, voters, None, false)?;
            self.sync_update(numsync, sync)?;
        }
        Ok(())
    }

    /// Streaming standbys not listed yet join.
    fn add_new(&mut self) -> Result<(), QuorumError> {
        let mut to_add = self.active.minus(&self.sync);
        if to_add.is_empty() {
            return Ok(());
        }
        let sync_wanted = self.sync_wanted.min(self.sync.union(&to_add).len());
        let mut increase = sync_wanted - self.numsync;
        if increase > 0 {
            let add = if self.sync.is_empty() {
                // Only the leader: all may be added at once.
                to_add.clone()
            } else {
                let add = to_add.first(increase, false);
                increase = add.len();
                add
            };
            let sync = self.sync.union(&add);
            self.sync_update(self.numsync + increase, sync)?;
            let voters = self.voters.union(&add);
            self.quorum_update(voters.len() - sync_wanted, voters, None, true)?;
            to_add = to_add.minus(&self.sync);
        }
        if !to_add.is_empty() {
            let voters = self.voters.union(&to_add);
            let adjust = sync_wanted > self.numsync_confirmed;
            self.quorum_update(voters.len() - sync_wanted, voters, None, adjust)?;
            let sync = self.sync.union(&to_add);
            self.sync_update(sync_wanted, sync)?;
        }
        Ok(())
    }

    /// `synchronous_node_count` changed.
    fn factor_change(&mut self) -> Result<(), QuorumError> {
        let increase = self.sync_wanted.min(self.sync.len()) - self.numsync;
        if increase > 0 {
            let sync = self.sync.clone();
            self.sync_update(self.numsync + increase, sync)?;
            let voters = self.voters.clone();
            self.quorum_update(voters.len() - self.numsync, voters, None, true)?;
        } else if increase < 0 {
            if self.quorum - increase < self.voters.len() {
                let voters = self.voters.clone();
                let quorum = voters.len() - self.numsync - increase;
                let adjust = self.sync_wanted > self.numsync_confirmed;
                self.quorum_update(quorum, voters, None, adjust)?;
            }
            let sync = self.sync.clone();
            self.sync_update(self.numsync + increase, sync)?;
        }
        Ok(())
    }
}
