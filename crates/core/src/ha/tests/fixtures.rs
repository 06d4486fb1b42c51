//! Building blocks for the decision tests: a three-member cluster, local
//! Postgres states, peer answers, and a scripted runtime that answers the
//! queries of one cycle.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Tick;
use crate::ha::MemberTags;
use crate::ha::{
    Action, ControlState, DataDirectory, DcsView, Decision, HaConfig, LocalMember, LocalPostgres,
    LockOutcome, Observation, PeerReply, PeerStatus, PeerTarget, PgRole, PgServer, PrimaryState,
    ReplicaState, Stopped, TimelineCheck, TimelineVerdict, Upstream, decide, invariants,
};
use crate::{Cluster, ClusterConfig, Failover, History, Leader, LeaderStatus, Member, MemberData};

/// The cluster's system identifier.
pub const SYSID: &str = "7000000000000000001";
/// The leader's last published WAL position.
pub const LAST_LSN: u64 = 100_000_000;
/// Monotonic now.
pub const NOW: Tick = Duration::from_secs(10_000);
/// Wall clock now: 2025-03-01T10:00:00Z.
pub const WALL: Duration = Duration::from_secs(1_740_823_200);

/// `s` seconds.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Default configuration.
pub fn cfg() -> HaConfig {
    HaConfig::default()
}

/// A running member record with `role`, addresses derived from its name,
/// at the leader's position on timeline 1.
pub fn member(name: &str, role: &str) -> Member {
    Member {
        name: name.into(),
        version: "1".into(),
        data: MemberData {
            conn_url: Some(format!("postgres://{name}:5432/postgres")),
            api_url: Some(format!("http://{name}:8008/patroni")),
            state: Some("running".into()),
            role: Some(role.into()),
            xlog_location: Some(LAST_LSN),
            timeline: Some(1),
            ..Default::default()
        },
    }
}

/// `m` with `tags`.
pub fn tagged(mut m: Member, tags: Value) -> Member {
    let map: BTreeMap<String, Value> = tags
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    m.data.tags = Some(map);
    m
}

/// Members `names`, `leader` holding the lock (and running as primary),
/// `initialize` and `config` set, history `[]` (timeline 1).
pub fn cluster(leader: Option<&str>, names: &[&str]) -> Cluster {
    let members: Vec<Member> = names
        .iter()
        .map(|n| {
            member(
                n,
                if Some(*n) == leader {
                    "primary"
                } else {
                    "replica"
                },
            )
        })
        .collect();
    with_members(leader, members)
}

/// Like [`cluster`], with prepared member records.
pub fn with_members(leader: Option<&str>, members: Vec<Member>) -> Cluster {
    let leader = leader.map(|name| Leader {
        version: "7".into(),
        name: name.into(),
        member: members.iter().find(|m| m.name == name).cloned(),
    });
    Cluster {
        initialize: Some(SYSID.into()),
        config: Some(ClusterConfig {
            version: "3".into(),
            modify_version: Some("3".into()),
            data: json!({"ttl": 30}).as_object().cloned().unwrap_or_default(),
        }),
        leader,
        status: LeaderStatus {
            last_lsn: LAST_LSN,
            ..Default::default()
        },
        members,
        failover: None,
        sync: Default::default(),
        history: Some(History {
            version: "3".into(),
            lines: Vec::new(),
        }),
        failsafe: None,
    }
}

/// A failover key.
pub fn failover(leader: Option<&str>, candidate: Option<&str>, at: Option<&str>) -> Failover {
    Failover {
        version: "9".into(),
        leader: leader.map(str::to_string),
        candidate: candidate.map(str::to_string),
        scheduled_at: at.map(str::to_string),
    }
}

/// The upstream for member `name`.
pub fn up(name: &str) -> Upstream {
    Upstream::member(name, format!("postgres://{name}:5432/postgres"))
}

/// The peer target for member `name`.
pub fn target(name: &str) -> PeerTarget {
    PeerTarget {
        name: name.into(),
        api_url: format!("http://{name}:8008/patroni"),
    }
}

fn data(server: PgServer) -> LocalPostgres {
    LocalPostgres::Data(DataDirectory {
        sysid: SYSID.into(),
        pg_rewind_usable: true,
        server,
    })
}

/// Running as primary at `lsn` on timeline 1.
pub fn primary(lsn: u64) -> LocalPostgres {
    primary_on(lsn, 1)
}

/// Running as primary at `lsn` on `timeline`.
pub fn primary_on(lsn: u64, timeline: u64) -> LocalPostgres {
    data(PgServer::Primary(PrimaryState {
        wal_lsn: lsn,
        timeline,
        ..Default::default()
    }))
}

/// Running as a streaming replica of `upstream` at `lsn` on timeline 1.
pub fn replica(upstream: Option<&str>, lsn: u64) -> LocalPostgres {
    data(PgServer::Replica(ReplicaState {
        upstream: upstream.map(up),
        receive_lsn: Some(lsn),
        replay_lsn: lsn,
        timeline: Some(1),
        streaming: true,
    }))
}

/// Stopped with `control` state; `crashed_as` as the agent saw it.
pub fn stopped(control: ControlState, crashed_as: Option<PgRole>) -> LocalPostgres {
    data(PgServer::Stopped(Stopped {
        control,
        crashed_as,
        recovery_signal: crashed_as == Some(PgRole::Replica),
        restored_from_backup: false,
    }))
}

/// Starting in `role` since `since`.
pub fn starting(role: PgRole, since: Tick) -> LocalPostgres {
    data(PgServer::Starting { role, since })
}

/// `pg` with pg_rewind not usable.
pub fn without_rewind(pg: LocalPostgres) -> LocalPostgres {
    match pg {
        LocalPostgres::Data(d) => LocalPostgres::Data(DataDirectory {
            pg_rewind_usable: false,
            ..d
        }),
        other => other,
    }
}

/// Member `me` observing `cluster` and `pg` (not paused, no memory).
pub fn obs(me: &str, cluster: Cluster, pg: LocalPostgres) -> Observation {
    let mut o = Observation::new(LocalMember::named(me), DcsView::reachable(cluster), pg);
    o.wall_clock = WALL;
    o
}

/// `o` with local tags.
pub fn with_tags(mut o: Observation, tags: MemberTags) -> Observation {
    o.me.tags = tags;
    o
}

/// A reachable replica peer at `wal` on timeline 1.
pub fn peer(name: &str, wal: u64) -> PeerStatus {
    PeerStatus::answered(
        name,
        PeerReply {
            in_recovery: true,
            wal_position: wal,
            timeline: 1,
            ..Default::default()
        },
    )
}

/// A reachable peer with tags.
pub fn peer_tagged(name: &str, wal: u64, tags: MemberTags) -> PeerStatus {
    let mut p = peer(name, wal);
    if let Some(r) = p.reply.as_mut() {
        r.tags = tags;
    }
    p
}

/// A reachable peer running as primary.
pub fn peer_primary(name: &str) -> PeerStatus {
    PeerStatus::answered(
        name,
        PeerReply {
            in_recovery: false,
            wal_position: 0,
            timeline: 1,
            ..Default::default()
        },
    )
}

/// What the scripted runtime answers to each query; an unscripted query
/// fails the test.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    /// Answer to `TakeInitializeKey`.
    pub initialize: Option<bool>,
    /// Answer to `AcquireLeader`.
    pub acquire: Option<LockOutcome>,
    /// Answer to `RenewLeader`.
    pub renew: Option<LockOutcome>,
    /// Answers to `CheckPeers` (members not listed are unreachable).
    pub peers: Option<Vec<PeerStatus>>,
    /// Answer to `CheckTimeline`.
    pub timeline: Option<TimelineVerdict>,
    /// Answer to `CheckFailsafe`: whether every member accepted.
    pub failsafe: Option<bool>,
    /// Answer to `ActivateWatchdog`: whether it was armed safely.
    pub watchdog: Option<bool>,
}

/// One cycle: the queries asked, in order, and the final decision.
#[derive(Debug)]
pub struct Cycle {
    /// Queries, in the order asked.
    pub queries: Vec<Action>,
    /// The final decision.
    pub decision: Decision,
}

// === impl Runtime ===

impl Runtime {
    /// A runtime that expects no query.
    pub fn none() -> Self {
        Self::default()
    }

    /// Answers `RenewLeader` with `outcome`.
    pub fn renew(mut self, outcome: LockOutcome) -> Self {
        self.renew = Some(outcome);
        self
    }

    /// Answers `AcquireLeader` with `outcome`.
    pub fn acquire(mut self, outcome: LockOutcome) -> Self {
        self.acquire = Some(outcome);
        self
    }

    /// Answers `CheckPeers` with `peers`.
    pub fn peers(mut self, peers: Vec<PeerStatus>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// Answers `TakeInitializeKey` with `won`.
    pub fn initialize(mut self, won: bool) -> Self {
        self.initialize = Some(won);
        self
    }

    /// Answers `CheckFailsafe` with `accepted`.
    pub fn failsafe(mut self, accepted: bool) -> Self {
        self.failsafe = Some(accepted);
        self
    }

    /// Answers `ActivateWatchdog` with `armed` (and marks the device armed when it is).
    pub fn watchdog(mut self, armed: bool) -> Self {
        self.watchdog = Some(armed);
        self
    }

    /// Answers `CheckTimeline` with `verdict`.
    pub fn timeline(mut self, verdict: TimelineVerdict) -> Self {
        self.timeline = Some(verdict);
        self
    }
}

/// Runs one cycle of `obs` at `now`, answering queries from `rt` and
/// checking the invariants after every step.
pub fn run(mut obs: Observation, cfg: &HaConfig, now: Tick, rt: &Runtime) -> Cycle {
    let mut queries: Vec<Action> = Vec::new();
    for _ in 0..8 {
        let d = decide(&obs, cfg, now);
        if let Err(v) = invariants::check(&obs, cfg, now, &d) {
            panic!("invariant broken: {v} by {d:?}\nobservation: {obs:#?}");
        }
        let Some(q) = d.query().cloned() else {
            return Cycle {
                queries,
                decision: d,
            };
        };
        assert!(!queries.contains(&q), "query asked twice: {q:?}");
        answer(&mut obs, now, rt, &q);
        queries.push(q);
    }
    panic!("cycle did not end: {queries:?}");
}

fn answer(obs: &mut Observation, now: Tick, rt: &Runtime, q: &Action) {
    fn missing<T>(q: &Action) -> impl FnOnce() -> T + '_ {
        move || panic!("unscripted query {q:?}")
    }
    match q {
        Action::TakeInitializeKey => {
            obs.cycle.initialize = Some(rt.initialize.unwrap_or_else(missing(q)))
        }
        Action::AcquireLeader => obs.cycle.lock = Some(rt.acquire.unwrap_or_else(missing(q))),
        Action::RenewLeader { .. } => obs.cycle.lock = Some(rt.renew.unwrap_or_else(missing(q))),
        Action::CheckPeers { members } => {
            let known = rt.peers.clone().unwrap_or_else(missing(q));
            obs.cycle.peers = Some(
                members
                    .iter()
                    .map(|t| {
                        known
                            .iter()
                            .find(|p| p.name == t.name)
                            .cloned()
                            .unwrap_or_else(|| PeerStatus::unreachable(&t.name))
                    })
                    .collect(),
            );
        }
        Action::CheckTimeline { leader } => {
            let leader_timeline = obs
                .cluster()
                .and_then(|c| c.member(&leader.member))
                .and_then(|m| m.data.timeline)
                .unwrap_or(0);
            obs.memory.timeline_check = Some(TimelineCheck {
                leader: leader.member.clone(),
                leader_timeline,
                verdict: rt.timeline.unwrap_or_else(missing(q)),
                checked_at: now,
            });
        }
        Action::CheckFailsafe { .. } => {
            obs.cycle.failsafe = Some(rt.failsafe.unwrap_or_else(missing(q)))
        }
        Action::ActivateWatchdog { .. } => {
            let armed = rt.watchdog.unwrap_or_else(missing(q));
            obs.cycle.watchdog = Some(armed);
            obs.watchdog.armed = armed;
        }
        other => panic!("not a query: {other:?}"),
    }
}

/// Asserts the final actions and message of `c`.
#[track_caller]
pub fn assert_final(c: &Cycle, actions: &[Action], message: &str) {
    assert_eq!(
        c.decision.actions, actions,
        "actions (message: {})",
        c.decision.message
    );
    assert_eq!(c.decision.message, message);
}

/// What a primary cut off from the DCS does: stop, then restart read-only following nobody.
pub fn offline() -> Vec<Action> {
    vec![
        Action::Demote {
            mode: crate::ha::DemoteMode::Offline,
            stop_timeout: None,
        },
        Action::StartPostgres {
            role: crate::ha::StartRole::Replica { upstream: None },
            timeout: None,
        },
    ]
}
