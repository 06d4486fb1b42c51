//! Restarts an operator asks for (`POST /restart`, `patronictl restart`): whether a
//! request's conditions hold, in which role and with which start timeout the server restarts,
//! and whether a scheduled restart runs now, waits, or is dropped. Patroni's
//! `restart_matches`, `restart`, `evaluate_scheduled_restart` and
//! `should_run_scheduled_action`, as pure functions of the observation; the runtime stops and
//! starts the server.

use std::time::Duration;

use super::{HaConfig, Observation, PgRole, PgServer};
use crate::{Cluster, Role};

/// How much of `ttl` a restart of the leader may spend starting: the loop does not renew the
/// lock while a restart runs.
const LEADER_START_SHARE: f64 = 0.5;

/// A restart's own conditions, as the request gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartConditions {
    /// Only while this member runs in this role.
    pub role: Option<Role>,
    /// Only while the running server's version (`server_version` form) is lower.
    pub postgres_version: Option<u32>,
    /// Only when a parameter change waits for a restart.
    pub restart_pending: bool,
    /// How long the start may take.
    pub timeout: Option<Duration>,
}

/// What the runtime knows of the server beyond the observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartFacts {
    /// The role the server last ran in (for a server found stopped).
    pub last_role: Option<PgRole>,
    /// The running server's version (`server_version` form).
    pub server_version: Option<u32>,
    /// Whether a parameter change waits for a restart.
    pub pending_restart: bool,
    /// `postgresql.pg_ctl_timeout`: a replica's start timeout.
    pub pg_ctl_timeout: Duration,
}

/// What to do with an immediate restart request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartVerdict {
    /// The server is still starting (Patroni: 503 "postgres is still starting").
    StillStarting,
    /// A condition does not hold; Patroni's reason.
    NotSatisfied(&'static str),
    /// Stop the server and start it again in `role`, waiting at most `timeout`.
    Restart {
        /// The role to start in.
        role: PgRole,
        /// Start timeout.
        timeout: Duration,
    },
}

/// Whether and how `conditions` restart this member now.
pub fn restart_verdict(
    conditions: &RestartConditions,
    facts: &RestartFacts,
    obs: &Observation,
    ha: &HaConfig,
) -> RestartVerdict {
    let role = match obs.postgres.server() {
        Some(PgServer::Starting { .. }) => return RestartVerdict::StillStarting,
        Some(PgServer::Primary(_)) => PgRole::Primary,
        Some(PgServer::Replica(_)) => PgRole::Replica,
        Some(PgServer::Stopped(_)) => match facts.last_role {
            Some(role) => role,
            None => return RestartVerdict::NotSatisfied("postgres is not running"),
        },
        None => return RestartVerdict::NotSatisfied("no data directory"),
    };
    let reported = match role {
        PgRole::Primary => Role::Primary,
        PgRole::Replica => Role::Replica,
    };
    if conditions.role.is_some_and(|r| r != reported) {
        return RestartVerdict::NotSatisfied("host role mismatch");
    }
    if conditions
        .postgres_version
        .is_some_and(|wanted| facts.server_version.is_none_or(|v| v >= wanted))
    {
        return RestartVerdict::NotSatisfied("postgres version mismatch");
    }
    if conditions.restart_pending && !facts.pending_restart {
        return RestartVerdict::NotSatisfied("pending restart flag is not set");
    }
    let is_leader = obs
        .cluster()
        .and_then(Cluster::leader_name)
        .is_some_and(|l| l == obs.me.name);
    let mut timeout = conditions.timeout.unwrap_or(if is_leader {
        ha.primary_start_timeout
    } else {
        facts.pg_ctl_timeout.max(Duration::from_secs(1))
    });
    if is_leader {
        timeout = timeout.min(ha.ttl.mul_f64(LEADER_START_SHARE));
    }
    RestartVerdict::Restart {
        role,
        timeout: timeout.max(Duration::from_secs(1)),
    }
}

/// A restart waiting for its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRestart {
    /// When: wall-clock time since the Unix epoch.
    pub at: Duration,
    /// The server's `postmaster_start_time` when it was scheduled.
    pub start_time_then: Option<String>,
}

/// Why a scheduled restart is dropped without running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The server restarted since it was scheduled.
    RestartedSince,
    /// Its time passed more than 1.5 × `loop_wait` ago (a badly delayed loop).
    Stale,
}

/// What to do with the scheduled restart this cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduledVerdict {
    /// Not now; `due_in` is how long until its time, when known (the runtime may run its next
    /// cycle then instead of a whole `loop_wait` later).
    Wait {
        /// Time until the restart is due; `None` while something else prevents it.
        due_in: Option<Duration>,
    },
    /// Forget it, for this reason.
    Drop(Dropped),
    /// Its time has come: restart now (its conditions are then checked as an immediate
    /// restart's, and it is forgotten whatever the outcome).
    Run,
}

/// Patroni's `evaluate_scheduled_restart` for `scheduled`, with `start_time_now` the running
/// server's `postmaster_start_time` and `busy` whether an action of this cycle runs. Only a
/// cluster with a leader restarts on schedule, and never in maintenance mode (it waits).
pub fn scheduled_restart_verdict(
    scheduled: &ScheduledRestart,
    start_time_now: Option<&str>,
    busy: bool,
    obs: &Observation,
    ha: &HaConfig,
) -> ScheduledVerdict {
    const WAIT: ScheduledVerdict = ScheduledVerdict::Wait { due_in: None };
    if busy {
        return WAIT;
    }
    if let (Some(now), Some(then)) = (start_time_now, scheduled.start_time_then.as_deref())
        && now != then
    {
        return ScheduledVerdict::Drop(Dropped::RestartedSince);
    }
    let has_leader = obs.cluster().is_some_and(Cluster::is_locked);
    if obs.paused || !has_leader {
        return WAIT;
    }
    if let Some(due_in) = scheduled.at.checked_sub(obs.wall_clock)
        && !due_in.is_zero()
    {
        return ScheduledVerdict::Wait {
            due_in: Some(due_in),
        };
    }
    let late = obs.wall_clock.saturating_sub(scheduled.at);
    // Patroni: `delta < -int(loop_wait * 1.5)`, whole seconds.
    let stale_after = Duration::from_secs(ha.loop_wait.mul_f64(1.5).as_secs());
    if late > stale_after {
        return ScheduledVerdict::Drop(Dropped::Stale);
    }
    ScheduledVerdict::Run
}
