//! The facts every rule asks about, derived once from the observation.
//!
//! [`Ctx`] is private to the `ha` module: a borrowed view of one
//! observation with the DCS answered, plus the derived facts (who holds the
//! lock after this cycle's writes, this member's WAL position and lag, the
//! cluster timeline, whom to follow). Keeping them here means every rule
//! computes them the same way.

use super::{
    CloneSource, DataDirectory, HaConfig, LockOutcome, MemberTags, Observation, PeerReply,
    PeerStatus, PeerTarget, PgRole, PgServer, SynchronousMode, Upstream,
};
use crate::{Cluster, Failover, Member, Tick};

/// One observation with a reachable DCS, and its configuration and time.
pub(super) struct Ctx<'a> {
    /// The observation.
    pub obs: &'a Observation,
    /// The configuration.
    pub cfg: &'a HaConfig,
    /// Monotonic now.
    pub now: Tick,
    /// The DCS view.
    pub cluster: &'a Cluster,
}

/// Whom a replica should stream from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FollowTarget {
    /// Nobody (no leader, or `nostream`).
    Nobody,
    /// A member whose `conn_url` is not known yet: keep what is configured.
    Unknown,
    /// This member.
    Member(Upstream),
}

/// An answer that may need the peers' health first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Need<T> {
    /// Known.
    Ready(T),
    /// Ask [`super::Action::CheckPeers`] first.
    Peers,
}

// === impl Ctx ===

impl<'a> Ctx<'a> {
    /// This member's name.
    pub fn me(&self) -> &'a str {
        &self.obs.me.name
    }

    /// This member's tags.
    pub fn tags(&self) -> &'a MemberTags {
        &self.obs.me.tags
    }

    /// Maintenance mode.
    pub fn paused(&self) -> bool {
        self.obs.paused
    }

    /// The data directory, when it holds a cluster.
    pub fn data(&self) -> Option<&'a DataDirectory> {
        self.obs.postgres.data()
    }

    /// The server, when there is a data directory.
    pub fn server(&self) -> Option<&'a PgServer> {
        self.obs.postgres.server()
    }

    /// Whether Postgres runs as primary.
    pub fn is_primary(&self) -> bool {
        self.obs.postgres.is_primary()
    }

    /// Whether Postgres runs as primary or is starting as one.
    pub fn is_primary_or_starting_primary(&self) -> bool {
        matches!(
            self.server(),
            Some(PgServer::Primary(_))
                | Some(PgServer::Starting {
                    role: PgRole::Primary,
                    ..
                })
        )
    }

    /// Whether Postgres is starting.
    pub fn is_starting(&self) -> bool {
        matches!(self.server(), Some(PgServer::Starting { .. }))
    }

    /// This cycle's lock outcome.
    pub fn lock(&self) -> Option<LockOutcome> {
        self.obs.cycle.lock
    }

    /// Whether the DCS view names this member as the lock holder.
    pub fn view_says_leader(&self) -> bool {
        self.cluster.leader_name() == Some(self.me())
    }

    /// This member's WAL position (see [`PgServer::wal_position`]).
    pub fn my_wal(&self) -> u64 {
        self.server().map_or(0, PgServer::wal_position)
    }

    /// This member's timeline, when running and known.
    pub fn my_timeline(&self) -> Option<u64> {
        self.server().and_then(PgServer::timeline)
    }

    /// How far `wal` is behind the leader's last published position.
    pub fn lag(&self, wal: u64) -> u64 {
        self.cluster.status.last_lsn.saturating_sub(wal)
    }

    /// Whether `wal` is too far behind to be promoted.
    pub fn is_lagging(&self, wal: u64) -> bool {
        self.lag(wal) > self.cfg.maximum_lag_on_failover
    }

    /// The cluster timeline: last `/history` entry + 1; 1 for an empty
    /// history; 0 (unknown) when missing or unreadable.
    pub fn cluster_timeline(&self) -> u64 {
        cluster_timeline(self.cluster)
    }

    /// The failover key, when it requests something (a cleared key does not).
    pub fn failover(&self) -> Option<&'a Failover> {
        self.cluster.pending_failover()
    }

    /// The failover key's candidate.
    pub fn failover_candidate(&self) -> Option<&'a str> {
        self.failover()
            .and_then(|f| f.candidate.as_deref())
            .filter(|c| !c.is_empty())
    }

    /// Whether the failover key names this member as candidate.
    pub fn i_am_candidate(&self) -> bool {
        self.failover_candidate() == Some(self.me())
    }

    /// The tags a member published in the DCS.
    pub fn member_tags(member: &Member) -> MemberTags {
        member
            .data
            .tags
            .as_ref()
            .map(MemberTags::from_json)
            .unwrap_or_default()
    }

    /// `member` as something to stream or clone from, when its `conn_url`
    /// is known.
    pub fn upstream(member: &Member) -> Option<Upstream> {
        member
            .data
            .conn_url
            .as_ref()
            .filter(|u| !u.is_empty())
            .map(|u| Upstream::member(member.name.clone(), u.clone()))
    }

    /// The lock holder as an upstream (not this member, `conn_url` known).
    pub fn leader_upstream(&self) -> Option<Upstream> {
        let name = self.cluster.leader_name().filter(|n| *n != self.me())?;
        self.leader_member(name).and_then(Self::upstream)
    }

    /// The member record of the lock holder `name`.
    fn leader_member(&self, name: &str) -> Option<&'a Member> {
        self.cluster
            .leader
            .as_ref()
            .and_then(|l| l.member.as_ref())
            .filter(|m| m.name == name)
            .or_else(|| self.cluster.member(name))
    }

    /// The remote primary, when this is a standby cluster (`standby_cluster`).
    pub fn standby_remote(&self) -> Option<&'a Upstream> {
        self.cfg.standby_cluster.as_ref()
    }

    /// The remote primary to judge (and `pg_rewind`) a standby cluster's member against, as
    /// Patroni does: when the remote has an address (not only a `restore_command`).
    pub fn standby_remote_with_address(&self) -> Option<Upstream> {
        self.standby_remote()
            .filter(|r| !r.conn_url.is_empty())
            .cloned()
    }

    /// Whether this is a standby cluster: its lock holder is a standby leader, never a primary.
    pub fn is_standby_cluster(&self) -> bool {
        self.cfg.standby_cluster.is_some()
    }

    /// Whom to stream from (ha-loop.md §7.1): nobody with `nostream`; in a standby cluster
    /// the remote primary for the lock holder, and for everybody while nobody holds the lock
    /// (not in pause); the `replicatefrom` member when it exists; else the leader; never
    /// myself.
    pub fn node_to_follow(&self) -> FollowTarget {
        if self.tags().nostream {
            return FollowTarget::Nobody;
        }
        if let Some(remote) = self.standby_remote()
            && (self.view_says_leader() || (!self.cluster.is_locked() && !self.paused()))
        {
            return FollowTarget::Member(remote.clone());
        }
        let replicatefrom = self
            .tags()
            .replicatefrom
            .as_deref()
            .filter(|r| *r != self.me())
            .and_then(|r| self.cluster.member(r));
        let wanted = replicatefrom.or_else(|| {
            self.cluster
                .leader_name()
                .and_then(|name| self.leader_member(name))
        });
        match (wanted, self.cluster.leader_name()) {
            (Some(m), _) if m.name == self.me() => FollowTarget::Nobody,
            (Some(m), _) => Self::upstream(m).map_or(FollowTarget::Unknown, FollowTarget::Member),
            (None, Some(leader)) if leader != self.me() => FollowTarget::Unknown,
            (None, _) => FollowTarget::Nobody,
        }
    }

    /// Where a new replica clones from (ha-loop.md §3.2): the first running
    /// member tagged `clonefrom` (neither me nor the leader), else the
    /// leader. Patroni picks among `clonefrom` members at random; the first
    /// by name keeps the decision deterministic.
    pub fn clone_source(&self) -> Option<CloneSource> {
        let leader = self.cluster.leader_name();
        let replica = self.cluster.members.iter().find(|m| {
            m.name != self.me()
                && Some(m.name.as_str()) != leader
                && m.data.state.as_deref() == Some("running")
                && Self::member_tags(m).clonefrom
        });
        match replica.and_then(Self::upstream) {
            Some(u) => Some(CloneSource::Replica(u)),
            None => self.leader_upstream().map(CloneSource::Leader),
        }
    }

    /// Every other member with an `api_url` (in failsafe mode also the failsafe topology's
    /// members without a member key): whom [`super::Action::CheckPeers`] asks.
    pub fn peer_targets(&self) -> Vec<PeerTarget> {
        let extra = super::failsafe::extra_members(self);
        self.cluster
            .members
            .iter()
            .chain(&extra)
            .filter(|m| m.name != self.me())
            .filter_map(|m| {
                let api_url = m.data.api_url.as_ref().filter(|u| !u.is_empty())?;
                Some(PeerTarget {
                    name: m.name.clone(),
                    api_url: api_url.clone(),
                })
            })
            .collect()
    }

    /// This cycle's peer answers, when asked already.
    pub fn peers(&self) -> Option<&'a [PeerStatus]> {
        self.obs.cycle.peers.as_deref()
    }

    /// The answer of member `name` if it may be promoted (reachable, not
    /// `nofailover`, watchdog fine). A member missing from the answers counts
    /// as unreachable.
    pub fn eligible_peer(&self, name: &str) -> Option<&'a PeerReply> {
        self.peers()?
            .iter()
            .find(|p| p.name == name)
            .and_then(PeerStatus::eligible)
    }

    /// Synchronous replication requested (on or quorum).
    pub fn sync_mode(&self) -> bool {
        self.cfg.synchronous_mode != SynchronousMode::Off
    }

    /// Synchronous replication requested and published by a primary
    /// (`/sync` has a leader).
    pub fn sync_active(&self) -> bool {
        self.sync_mode()
            && self
                .cluster
                .sync
                .leader
                .as_deref()
                .is_some_and(|l| !l.is_empty())
    }

    /// Quorum commit requested and published.
    pub fn quorum_active(&self) -> bool {
        self.cfg.synchronous_mode == SynchronousMode::Quorum && self.sync_active()
    }

    /// Whether `name` is listed in `/sync` (or is its leader, with
    /// `check_leader`). False when `/sync` is empty.
    pub fn sync_matches(&self, name: &str, check_leader: bool) -> bool {
        let sync = &self.cluster.sync;
        let Some(leader) = sync.leader.as_deref().filter(|l| !l.is_empty()) else {
            return false;
        };
        sync.sync_standby.iter().any(|s| s == name) || (check_leader && leader == name)
    }

    /// The message prefix Patroni uses for the failover key's kind.
    pub fn failover_action_name(&self) -> &'static str {
        match self.failover() {
            None => "failover",
            Some(f) if f.leader.as_deref().is_some_and(|l| !l.is_empty()) => "switchover",
            Some(_) => "manual failover",
        }
    }
}

/// The cluster timeline of `cluster` (see [`Ctx::cluster_timeline`]).
pub(super) fn cluster_timeline(cluster: &Cluster) -> u64 {
    let Some(history) = &cluster.history else {
        return 0;
    };
    match history.lines.last() {
        None => 1,
        Some(line) => line
            .get(0)
            .and_then(|tl| {
                tl.as_u64()
                    .or_else(|| tl.as_str().and_then(|s| s.parse().ok()))
            })
            .map_or(0, |tl| tl.saturating_add(1)),
    }
}

/// Whether `sysid` looks like a PostgreSQL system identifier (ten or more
/// digits; it starts with the initdb time shifted left by 32 bits).
pub(super) fn sysid_valid(sysid: Option<&str>) -> bool {
    sysid.is_some_and(|s| s.len() >= 10 && s.bytes().all(|b| b.is_ascii_digit()))
}
