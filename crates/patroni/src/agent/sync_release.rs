//! A synchronous standby about to stop (a restart, a shutdown) first asks to be released
//! (Patroni's `while_not_sync_standby`): it publishes its member key with `nosync: true` and
//! waits, polling the DCS every [`POLL`], up to 2 × `loop_wait` for the primary to drop it from
//! `/sync` and `synchronous_standby_names`, so commits on the primary do not wait on a standby
//! that is going away. Only a hint: a DCS error or the time limit ends the wait, and the stop
//! goes on. The next cycle publishes the configured tags again.

use std::time::Duration;

use patroni_core::ha::{Observation, SynchronousMode};
use patroni_core::sync::sync_lists;
use patroni_dcs::Dcs;
use tokio::time::Instant;

use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

/// How often the DCS is read while waiting (Patroni: 2 s).
const POLL: Duration = Duration::from_secs(2);

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    /// Before this member stops its server: when it is a synchronous standby, asks the primary
    /// to release it and waits for that (see the module doc).
    pub(super) async fn release_sync_standby(&mut self, obs: &Observation) {
        let Some(cluster) = obs.cluster() else {
            return;
        };
        let me = self.id.name.as_str();
        let nosync = self
            .id
            .tags
            .get("nosync")
            .is_some_and(patroni_core::python_truthy);
        if self.ha.synchronous_mode == SynchronousMode::Off
            || cluster.leader_name() == Some(me)
            || nosync
            || !sync_lists(&cluster.sync, me)
        {
            return;
        }
        let Some(mut data) = self.last_member_data.clone() else {
            return;
        };
        data.tags
            .get_or_insert_with(Default::default)
            .insert("nosync".into(), true.into());
        match self.dcs.touch_member(&data).await {
            Ok(true) => {}
            _ => {
                tracing::warn!(
                    "Updating member state failed, skipping synchronous standby disable"
                );
                return;
            }
        }
        let deadline = Instant::now() + self.ha.loop_wait * 2;
        while Instant::now() < deadline {
            match self.dcs.get_cluster().await {
                Ok(c) if !sync_lists(&c.sync, &self.id.name) => {
                    tracing::info!("released from synchronous standby");
                    return;
                }
                Ok(_) => {
                    tracing::info!("Waiting for primary to release us from synchronous standby")
                }
                Err(_) => {
                    tracing::warn!(
                        "Could not get cluster state, skipping synchronous standby disable"
                    );
                    return;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
