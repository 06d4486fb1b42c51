//! The core's queries, performed for the HA loop: the initialize key, the leader lock (taken
//! only from a view read since the last suspension, conditional on the version it saw;
//! renewed with the leader's slots and the failsafe topology), the peers' health, the
//! failsafe call to every member and the timeline check. Each records
//! its outcome in the cycle's [`Observation`] for the next decide step.

use std::sync::Arc;
use std::time::Duration;

use patroni_core::Tick;
use patroni_core::ha::{
    Action, DcsView, LockOutcome, Observation, PeerTarget, PgServer, TimelineCheck,
};
use patroni_dcs::{Dcs, LeaderStatusUpdate};

use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

/// Slack on top of `retry_timeout` and the peer timeout before a view counts as older than
/// a suspension.
const STALE_VIEW_MARGIN: Duration = Duration::from_secs(1);

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// Performs one query and records its outcome in `obs`.
    pub(super) async fn query(&mut self, query: Action, obs: &mut Observation, now: Tick) {
        let dcs = Arc::clone(&self.dcs);
        match query {
            Action::TakeInitializeKey => match dcs.initialize("").await {
                Ok(won) => obs.cycle.initialize = Some(won),
                Err(e) => self.dcs_failed(obs, "take the initialize key", e),
            },
            Action::AcquireLeader => {
                let age = self
                    .tick()
                    .saturating_sub(obs.view_read_at.unwrap_or_default());
                if age > self.stale_view_limit() {
                    // Reading the view, the peers and deciding take at most retry_timeout and
                    // the peer timeout: this process was suspended in between (issue #11).
                    let at = self.tick();
                    tracing::warn!(
                        age = ?age,
                        "not racing for the leader lock: the DCS view is too old, this agent was suspended"
                    );
                    self.memory.resumed_at = Some(at);
                    obs.memory.resumed_at = Some(at);
                    return;
                }
                let seen = obs
                    .cluster()
                    .and_then(|c| c.leader.as_ref())
                    .map(|l| l.version.clone());
                self.acquire(obs, now, seen.as_deref()).await;
            }
            other => self.query_more(other, obs, now).await,
        }
    }

    /// The oldest a DCS view may be when this member races for the lock with it: the read
    /// (at most `retry_timeout`), the peer checks and a margin.
    fn stale_view_limit(&self) -> Duration {
        self.ha.retry_timeout + super::peers::PEER_TIMEOUT + STALE_VIEW_MARGIN
    }

    /// [`Action::AcquireLeader`], conditional on the leader object version `seen`.
    async fn acquire(&mut self, obs: &mut Observation, now: Tick, seen: Option<&str>) {
        let dcs = Arc::clone(&self.dcs);
        match dcs.attempt_to_acquire_leader(seen).await {
            Ok(true) => {
                tracing::info!("acquired the leader lock");
                self.lock_held(obs, now, LockOutcome::Acquired);
            }
            Ok(false) => obs.cycle.lock = Some(LockOutcome::Refused),
            Err(e) => self.dcs_failed(obs, "acquire the leader lock", e),
        }
    }

    /// The queries other than taking the lock.
    async fn query_more(&mut self, query: Action, obs: &mut Observation, now: Tick) {
        let dcs = Arc::clone(&self.dcs);
        match query {
            Action::RenewLeader { last_lsn, failsafe } => {
                let (slots, retain_slots) = match last_lsn {
                    Some(lsn) => self.leader_slots(obs.cluster(), lsn, now).await,
                    None => (None, None),
                };
                let update = LeaderStatusUpdate {
                    last_lsn,
                    slots,
                    retain_slots,
                    failsafe,
                };
                match dcs.update_leader(&update).await {
                    Ok(true) => {
                        if update.failsafe.is_some() {
                            // As Patroni's `write_failsafe`: what was published is what an
                            // outage falls back on.
                            self.memory.failsafe_topology = update.failsafe;
                        }
                        self.lock_held(obs, now, LockOutcome::Renewed);
                    }
                    Ok(false) => {
                        tracing::warn!("the leader lock could not be renewed");
                        obs.cycle.lock = Some(LockOutcome::Refused);
                    }
                    Err(e) => self.dcs_failed(obs, "renew the leader lock", e),
                }
            }
            Action::CheckPeers { members } => {
                obs.cycle.peers = Some(self.peers.check(&members).await);
            }
            Action::CheckFailsafe { members } => {
                let accepted = self.call_failsafe(obs, &members, now).await;
                obs.cycle.failsafe = Some(accepted);
                if accepted {
                    self.memory.failsafe_confirmed_at = Some(now);
                    obs.memory.failsafe_confirmed_at = Some(now);
                    self.fence_for(obs);
                    self.watchdog_keepalive();
                }
            }
            Action::CheckTimeline { leader } => {
                let (verdict, leader_timeline) = if leader.remote {
                    self.check_remote_timeline(obs, &leader).await
                } else {
                    self.check_timeline(obs, &leader.member).await
                };
                tracing::info!(leader = %leader.member, ?verdict, "timeline check");
                let check = TimelineCheck {
                    leader: leader.member,
                    leader_timeline,
                    verdict,
                    checked_at: now,
                };
                self.memory.timeline_check = Some(check.clone());
                obs.memory.timeline_check = Some(check);
            }
            Action::ActivateWatchdog { timeout } => {
                obs.cycle.watchdog = Some(self.activate_watchdog(timeout));
                obs.watchdog.armed = self.watchdog.is_armed();
            }
            other => tracing::warn!(action = ?other, "not a query"),
        }
    }

    /// `POST /failsafe` to `members` with this primary's name, URLs and slots: whether all
    /// accepted (Patroni's `check_failsafe_topology`).
    async fn call_failsafe(
        &mut self,
        obs: &Observation,
        members: &[PeerTarget],
        now: Tick,
    ) -> bool {
        let lsn = obs.postgres.server().map_or(0, PgServer::wal_position);
        let (slots, _) = self.leader_slots(None, lsn, now).await;
        let body = serde_json::json!({
            "name": self.id.name,
            "conn_url": self.id.conn_url,
            "api_url": self.id.api_url,
            "slots": slots,
        });
        let answers = self.peers.call_failsafe(members, &body).await;
        let accepted = answers.len() == members.len() && answers.iter().all(|a| a.accepted);
        if accepted {
            tracing::info!(
                members = answers.len(),
                "every failsafe member accepted this primary"
            );
        } else {
            let refused: Vec<&str> = answers
                .iter()
                .filter(|a| !a.accepted)
                .map(|a| a.name.as_str())
                .collect();
            tracing::warn!(?refused, "a failsafe member did not accept this primary");
        }
        accepted
    }

    /// Records a lock taken or renewed by a request sent after `now` (the cycle's start, so
    /// the lease counts from before the request: `patroni_core::ha::lease`), moves the
    /// fence's deadline and pings the watchdog.
    fn lock_held(&mut self, obs: &mut Observation, now: Tick, outcome: LockOutcome) {
        self.memory.last_lock_renewal = Some(now);
        obs.memory.last_lock_renewal = Some(now);
        obs.cycle.lock = Some(outcome);
        self.fence_for(obs);
        self.watchdog_keepalive();
    }

    fn dcs_failed(&self, obs: &mut Observation, what: &str, e: patroni_dcs::Error) {
        let e = anyhow::Error::from(e);
        if obs.cycle.lock.is_none() {
            tracing::warn!("failed to {what}: {e:#}");
        }
        obs.dcs = DcsView::Unreachable;
    }
}
