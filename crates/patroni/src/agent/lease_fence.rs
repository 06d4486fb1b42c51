//! Keeps the lease fence ([`crate::fence`]) where the core says: armed with the leader lease
//! while this member is, or becomes, the primary, disarmed otherwise
//! (`patroni_core::ha::lease`). Applied after every renewal, after every start, promotion,
//! demotion or stop, and at the start of every cycle.

use patroni_core::ha::lease::{self, Fence};
use patroni_core::ha::{Action, Observation};
use patroni_dcs::Dcs;

use crate::fence::FenceClient;

use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// Applies the fence this observation calls for.
    pub(super) fn fence_for(&mut self, obs: &Observation) {
        let fence = lease::fence(obs, &self.ha);
        self.apply_fence(fence);
    }

    /// Applies the fence after `action` succeeded: a stopped or demoted server has nothing to
    /// fence; a started or promoted one is fenced with the lease this member holds.
    pub(super) fn fence_after(&mut self, action: &Action, obs: &Observation) {
        match action {
            Action::Demote { .. } | Action::StopPostgres { .. } => {
                self.apply_fence(Fence::Disarmed)
            }
            Action::StartPostgres { .. } | Action::Promote => {
                let fence = lease::holder_fence(obs, &self.ha);
                if fence != Fence::Disarmed {
                    self.apply_fence(fence);
                }
            }
            _ => {}
        }
    }

    fn apply_fence(&mut self, fence: Fence) {
        let pid = self.pg.postmaster_pid();
        let now = self.tick();
        let Some(client) = self.fence.as_mut() else {
            return;
        };
        let instruction = match (fence, pid) {
            (Fence::Armed { until }, Some(pid)) => {
                if until <= now {
                    tracing::error!(
                        "the leader lease ran out {:?} ago without a renewal: fencing PostgreSQL now",
                        now.saturating_sub(until)
                    );
                }
                Some((pid, until.saturating_sub(now)))
            }
            _ => None,
        };
        let send = |c: &mut FenceClient| match instruction {
            Some((pid, left)) => c.arm(pid, left),
            None => c.disarm(),
        };
        if let Err(e) = send(client) {
            tracing::error!("{:#}; starting a new one", anyhow::Error::from(e));
            // A new process starts disarmed: it gets this instruction at once.
            if let Err(e) = client.restart().and_then(|()| send(client)) {
                tracing::error!("{:#}", anyhow::Error::from(e));
            }
        }
    }
}
