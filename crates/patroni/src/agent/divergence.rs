//! The I/O half of [`Action::CheckTimeline`](patroni_core::ha::Action): where the local server
//! stands (the live replay position and timeline of a running standby, else `pg_controldata`
//! of the stopped data directory), the leader's timeline and history from the DCS, and, when
//! the core's rule asks for it, the end of a former primary's last checkpoint record
//! (`pg_waldump`). The rule itself is [`patroni_core::ha::timeline::divergence`]. A standby
//! cluster's members are compared with the remote primary instead, whose timeline and history
//! come from the remote itself.

use patroni_core::Role;
use patroni_core::ha::timeline::{self, Divergence, LocalPosition};
use patroni_core::ha::{ControlState, Observation, PgServer, TimelineVerdict, Upstream};
use patroni_dcs::Dcs;

use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

// === impl Runtime (divergence) ===

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// Compares this member's timeline and position with `leader`'s, as Patroni's
    /// `_check_timeline_and_lsn`, with the leader's timeline history taken from the DCS
    /// `history` key instead of a replication connection. Returns the verdict and the leader
    /// timeline it holds for: the one the leader writes on, or the one it published when that
    /// is newer or the leader could not be asked (a verdict is used only while it matches the
    /// published timeline, so one made ahead of it is asked again once the leader publishes).
    pub(super) async fn check_timeline(
        &self,
        obs: &Observation,
        leader: &str,
    ) -> (TimelineVerdict, u64) {
        let cluster = obs.cluster();
        let Some(leader_member) = cluster.and_then(|c| c.member(leader)) else {
            return (TimelineVerdict::Undetermined, 0);
        };
        let published = leader_member.data.timeline.unwrap_or(0);
        if leader_member
            .data
            .role
            .as_deref()
            .and_then(|r| r.parse::<Role>().ok())
            != Some(Role::Primary)
        {
            tracing::info!(%leader, "the leader is not running as primary yet: no timeline check");
            return (TimelineVerdict::Undetermined, published);
        }
        // The timeline the leader writes on now, asked from it as Patroni does: the one it
        // published lags a fresh promotion (a verdict against it let a diverged member start).
        let address = leader_member
            .data
            .conn_url
            .as_deref()
            .and_then(super::execute::parse_conn_url);
        let leader_tl = match address {
            Some(a) => match self.pg.leader_timeline(&a).await {
                Ok(Some(tl)) => tl,
                Ok(None) => {
                    tracing::info!(%leader, "Leader is still in_recovery and therefore can't be used for rewind");
                    return (TimelineVerdict::Undetermined, published);
                }
                Err(e) => {
                    tracing::warn!(%leader, "failed to ask the leader for its timeline: {e:#}");
                    return (TimelineVerdict::Undetermined, published);
                }
            },
            None => return (TimelineVerdict::Undetermined, published),
        };
        let Some(local) = self.local_position(obs).await else {
            return (TimelineVerdict::Undetermined, leader_tl);
        };
        tracing::info!(
            timeline = local.timeline,
            lsn = %patroni_postgres::Lsn(local.lsn),
            in_recovery = local.in_recovery,
            leader_timeline = leader_tl,
            "local timeline and position"
        );
        let history = cluster
            .and_then(|c| c.history.as_ref())
            .map(|h| timeline::history_switchpoints(&h.lines))
            .unwrap_or_default();
        let verdict = self.verdict(local, leader_tl, &history).await;
        (verdict, published.max(leader_tl))
    }

    /// As [`Self::check_timeline`] against a standby cluster's remote primary (Patroni's
    /// `_check_timeline_and_lsn` with a `RemoteMember`): its timeline and history are asked from
    /// the remote itself (its history file), with the rewind credentials. Returns the verdict
    /// and the remote's timeline.
    pub(super) async fn check_remote_timeline(
        &self,
        obs: &Observation,
        remote: &Upstream,
    ) -> (TimelineVerdict, u64) {
        let Some(address) = super::execute::parse_conn_url(&remote.conn_url) else {
            return (TimelineVerdict::Undetermined, 0);
        };
        let remote_tl = match self.pg.leader_timeline(&address).await {
            Ok(Some(tl)) => tl,
            Ok(None) => {
                tracing::info!(remote = %address.host, "the remote primary is still in recovery and therefore can't be used for rewind");
                return (TimelineVerdict::Undetermined, 0);
            }
            Err(e) => {
                tracing::warn!(remote = %address.host, "failed to ask the remote primary for its timeline: {e:#}");
                return (TimelineVerdict::Undetermined, 0);
            }
        };
        let Some(local) = self.local_position(obs).await else {
            return (TimelineVerdict::Undetermined, remote_tl);
        };
        tracing::info!(
            timeline = local.timeline,
            lsn = %patroni_postgres::Lsn(local.lsn),
            in_recovery = local.in_recovery,
            remote_timeline = remote_tl,
            "local timeline and position"
        );
        let history = if local.timeline < remote_tl {
            let Ok(tl) = u32::try_from(remote_tl) else {
                return (TimelineVerdict::Undetermined, remote_tl);
            };
            match self.pg.leader_timeline_history(&address, tl).await {
                Ok(lines) => lines
                    .iter()
                    .map(|l| (u64::from(l.timeline), l.switch_lsn.0))
                    .collect(),
                Err(e) => {
                    tracing::warn!(remote = %address.host, "failed to read the remote primary's timeline history: {e:#}");
                    return (TimelineVerdict::Undetermined, remote_tl);
                }
            }
        } else {
            Vec::new()
        };
        (self.verdict(local, remote_tl, &history).await, remote_tl)
    }

    /// [`timeline::divergence`], reading a former primary's checkpoint end when it asks.
    async fn verdict(
        &self,
        local: LocalPosition,
        leader_tl: u64,
        history: &[(u64, u64)],
    ) -> TimelineVerdict {
        match timeline::divergence(local, leader_tl, history) {
            Divergence::Verdict(v) => v,
            Divergence::NeedCheckpointEnd {
                timeline,
                lsn,
                switchpoint,
            } => {
                let end = match u32::try_from(timeline) {
                    Ok(tl) => self.pg.checkpoint_end(tl, lsn).await,
                    Err(_) => None,
                };
                timeline::after_checkpoint_end(end, switchpoint)
            }
        }
    }

    /// Where the local server stands: a running standby's replay position and timeline, else
    /// the cleanly stopped data directory's `pg_controldata`; `None` when unknown (starting,
    /// crashed and not yet recovered).
    async fn local_position(&self, obs: &Observation) -> Option<LocalPosition> {
        match obs.postgres.server() {
            Some(PgServer::Replica(r)) if r.timeline.is_some() => {
                return Some(LocalPosition {
                    in_recovery: true,
                    timeline: r.timeline.unwrap_or_default(),
                    lsn: r.replay_lsn,
                });
            }
            Some(PgServer::Stopped(_) | PgServer::Replica(_)) => {}
            _ => return None,
        }
        let cd = self.pg.controldata().await.ok()?;
        let state =
            ControlState::from_controldata(cd.get("Database cluster state").unwrap_or_default());
        let checkpoint = (
            u64::from(cd.checkpoint_timeline().ok()?),
            cd.checkpoint_lsn().ok()?.0,
        );
        let min_recovery = cd
            .min_recovery_end()
            .map(|(lsn, tl)| (u64::from(tl), lsn.0))
            .unwrap_or((0, 0));
        LocalPosition::from_controldata(state, checkpoint, min_recovery)
    }
}
