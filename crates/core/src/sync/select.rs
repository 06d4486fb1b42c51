//! Which standbys are synchronous now and which should be (Patroni's `SyncHandler.current_state`
//! with `_ReplicaList` and the readiness memory `_ready_replicas`).
//!
//! A standby listed in `synchronous_standby_names` counts as confirmed only once it is known to
//! have every commit acknowledged since it was listed: it is in `/sync` already, or PostgreSQL
//! reports it `sync` and it reached the primary's position of the moment the list changed.

use std::collections::BTreeSet;

use super::names::{STRICT_PLACEHOLDER, SyncStandbyNames, SyncType, contains};
use crate::ha::{MemberTags, SenderSyncState, WalSender};
use crate::{Cluster, SyncState};

/// `synchronous_commit`: which position of a standby a commit waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitLevel {
    /// `remote_write`: written.
    Write,
    /// `on` (and the local levels): flushed.
    #[default]
    Flush,
    /// `remote_apply`: replayed.
    Apply,
}

// === impl CommitLevel ===

impl CommitLevel {
    /// Reads `synchronous_commit` as PostgreSQL reports it.
    pub fn parse(s: &str) -> Self {
        match s {
            "remote_write" => Self::Write,
            "remote_apply" => Self::Apply,
            _ => Self::Flush,
        }
    }

    fn of(self, s: &WalSender) -> u64 {
        match self {
            Self::Write => s.write_lsn,
            Self::Flush => s.flush_lsn,
            Self::Apply => s.replay_lsn,
        }
    }
}

/// What the primary remembers between cycles about `synchronous_standby_names` (Patroni's
/// `SyncHandler` fields): the value last seen, its parse, the primary's position when it
/// changed, and the standbys confirmed to have caught up with it since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTracker {
    seen: String,
    parsed: SyncStandbyNames,
    flush_lsn_at_change: u64,
    ready: BTreeSet<String>,
}

impl Default for SyncTracker {
    fn default() -> Self {
        Self {
            seen: String::new(),
            parsed: SyncStandbyNames::empty(),
            flush_lsn_at_change: 0,
            ready: BTreeSet::new(),
        }
    }
}

// === impl SyncTracker ===

impl SyncTracker {
    /// Notes the value the server applies and its position `primary_lsn`; true when it changed
    /// since the last call (the runtime then makes a little WAL so standbys report progress,
    /// as Patroni does). A value that does not parse reads as empty, with the reason.
    pub fn note_applied(&mut self, value: &str, primary_lsn: u64) -> (bool, Option<String>) {
        if value == self.seen {
            return (false, None);
        }
        value.clone_into(&mut self.seen);
        let (parsed, problem) = match SyncStandbyNames::parse(value) {
            Ok(p) => (p, None),
            Err(e) => (SyncStandbyNames::empty(), Some(e)),
        };
        self.ready.retain(|name| parsed.contains(name));
        self.parsed = parsed;
        self.flush_lsn_at_change = primary_lsn;
        (true, problem)
    }

    /// The applied value, parsed.
    pub fn applied(&self) -> &SyncStandbyNames {
        &self.parsed
    }
}

/// The dynamic settings the choice reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// `synchronous_node_count`.
    pub node_count: u32,
    /// `synchronous_mode_strict`: at least `node_count` standbys, else commits wait.
    pub strict: bool,
    /// `maximum_lag_on_syncnode` in bytes; ≤ 0 never swaps a lagging standby out.
    pub max_lag: i64,
    /// Quorum commit (`synchronous_mode: quorum`).
    pub quorum: bool,
}

// === impl SyncSettings ===

impl SyncSettings {
    /// Patroni's `min_synchronous_nodes`: `node_count` in strict mode, else 0.
    pub fn min_nodes(&self) -> u32 {
        if self.strict { self.node_count } else { 0 }
    }
}

/// The synchronous replication state of the primary now (Patroni's `_SyncState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCandidates {
    /// How the applied list works.
    pub sync_type: SyncType,
    /// How many standbys the applied list requires.
    pub numsync: u32,
    /// The names the applied list holds (the placeholder when it holds `*`).
    pub sync: Vec<String>,
    /// Listed standbys known to have every acknowledged commit.
    pub sync_confirmed: Vec<String>,
    /// Standbys that stream and may be synchronous, best first, at most `node_count` (the
    /// ones to list).
    pub active: Vec<String>,
}

struct Replica<'a> {
    name: &'a str,
    sync_state: SenderSyncState,
    lsn: u64,
    nofailover: bool,
    sync_priority: i64,
}

/// The state of synchronous replication on primary `me` from its WAL senders, the cluster's
/// members (running, `nosync`, `replicatefrom`, `sync_priority`, `nofailover`) and `/sync`; the
/// tracker learns which listed standbys caught up.
#[allow(clippy::too_many_arguments)]
pub fn current_state(
    me: &str,
    cluster: &Cluster,
    senders: &[WalSender],
    commit: CommitLevel,
    primary_lsn: u64,
    settings: SyncSettings,
    tracker: &mut SyncTracker,
) -> SyncCandidates {
    let eligible: Vec<(&str, MemberTags)> = cluster
        .members
        .iter()
        .filter(|m| m.data.state.as_deref() == Some("running"))
        .filter(|m| !m.name.eq_ignore_ascii_case(me))
        .map(|m| (m.name.as_str(), tags_of(m)))
        .filter(|(_, t)| !t.nosync())
        .collect();
    let streaming: Vec<&WalSender> = senders
        .iter()
        .filter(|s| {
            eligible
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(&s.application_name))
        })
        .collect();
    let mut replicas: Vec<Replica<'_>> = streaming
        .iter()
        .filter_map(|s| {
            let (name, tags) = eligible
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&s.application_name))?;
            (!should_cascade(&eligible, &streaming, tags)).then(|| Replica {
                name,
                sync_state: s.sync_state,
                lsn: commit.of(s),
                nofailover: tags.nofailover(),
                sync_priority: tags.sync_priority(),
            })
        })
        .collect();
    replicas.sort_by(|a, b| {
        (b.sync_priority, rank(b.sync_state), b.lsn).cmp(&(
            a.sync_priority,
            rank(a.sync_state),
            a.lsn,
        ))
    });
    let max_lsn = if replicas.len() > 1 {
        replicas.iter().map(|r| r.lsn).max().unwrap_or(primary_lsn)
    } else {
        primary_lsn
    };
    // Readiness (`_process_replica_readiness`).
    for r in &replicas {
        if tracker.ready.contains(&r.name.to_lowercase()) || !tracker.parsed.contains(r.name) {
            continue;
        }
        let ready = if settings.quorum {
            r.lsn >= tracker.flush_lsn_at_change && r.sync_state == SenderSyncState::Quorum
        } else {
            sync_lists(&cluster.sync, r.name)
                || (r.sync_state == SenderSyncState::Sync && r.lsn >= tracker.flush_lsn_at_change)
        };
        if ready {
            tracker.ready.insert(r.name.to_lowercase());
        }
    }
    let mut active: Vec<String> = Vec::new();
    let mut confirmed: Vec<String> = Vec::new();
    let count = usize::try_from(settings.node_count).unwrap_or(usize::MAX);
    let mut by_failover: Vec<&Replica<'_>> = replicas.iter().collect();
    by_failover.sort_by_key(|r| r.nofailover);
    for r in by_failover {
        let lag = max_lsn.saturating_sub(r.lsn);
        let within =
            settings.max_lag <= 0 || u64::try_from(settings.max_lag).is_ok_and(|m| lag <= m);
        if !within {
            continue;
        }
        let is_ready = tracker.ready.contains(&r.name.to_lowercase());
        if settings.quorum {
            if !r.nofailover || active.len() < count {
                if is_ready {
                    confirmed.push(r.name.to_owned());
                }
                active.push(r.name.to_owned());
            }
        } else {
            active.push(r.name.to_owned());
            if r.sync_state == SenderSyncState::Sync && is_ready {
                confirmed.push(r.name.to_owned());
            }
            if active.len() >= count {
                break;
            }
        }
    }
    let applied = &tracker.parsed;
    SyncCandidates {
        sync_type: applied.sync_type,
        numsync: applied.num,
        sync: if applied.has_star {
            vec![STRICT_PLACEHOLDER.to_owned()]
        } else {
            applied.members.clone()
        },
        sync_confirmed: confirmed,
        active,
    }
}

/// Whether `/sync` (with a leader) lists `name`.
pub fn sync_lists(sync: &SyncState, name: &str) -> bool {
    sync.leader.as_deref().is_some_and(|l| !l.is_empty()) && contains(&sync.sync_standby, name)
}

/// Patroni's ordering of `sync_state` strings, highest first: `sync`, `quorum`, `potential`,
/// `async`.
fn rank(s: SenderSyncState) -> u8 {
    match s {
        SenderSyncState::Sync => 3,
        SenderSyncState::Quorum => 2,
        SenderSyncState::Potential => 1,
        SenderSyncState::Async => 0,
    }
}

fn tags_of(m: &crate::Member) -> MemberTags {
    m.data
        .tags
        .as_ref()
        .map(MemberTags::from_json)
        .unwrap_or_default()
}

/// Patroni's `_should_cascade`: the member streams from another standby of the chain that
/// already streams from the primary.
fn should_cascade(
    eligible: &[(&str, MemberTags)],
    streaming: &[&WalSender],
    tags: &MemberTags,
) -> bool {
    let mut tags = tags.clone();
    for _ in 0..=eligible.len() {
        let Some(upstream) = tags.replicatefrom.as_deref() else {
            return false;
        };
        let Some((name, up)) = eligible
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(upstream))
        else {
            return false;
        };
        if up.replicatefrom.is_none() {
            return streaming
                .iter()
                .any(|s| s.application_name.eq_ignore_ascii_case(name));
        }
        tags = up.clone();
    }
    false
}
