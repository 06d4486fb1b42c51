//! The [`Dcs`] trait for [`KubernetesDcs`]: each operation is the Kubernetes method of the
//! same name.

use std::time::Duration;

use patroni_core::{Cluster, MemberData, SyncState};

use super::KubernetesDcs;
use crate::Result;
use crate::dcs::{Dcs, FailoverRequest, LeaderStatusUpdate};

// === impl Dcs for KubernetesDcs ===

impl Dcs for KubernetesDcs {
    async fn get_cluster(&self) -> Result<Cluster> {
        KubernetesDcs::get_cluster(self).await
    }

    async fn attempt_to_acquire_leader(&self, seen: Option<&str>) -> Result<bool> {
        KubernetesDcs::attempt_to_acquire_leader(self, seen).await
    }

    async fn update_leader(&self, s: &LeaderStatusUpdate) -> Result<bool> {
        KubernetesDcs::update_leader(
            self,
            s.last_lsn,
            s.slots.as_ref(),
            s.retain_slots.as_deref(),
            s.failsafe.as_ref(),
        )
        .await
    }

    async fn delete_leader(&self, last_lsn: Option<u64>) -> Result<bool> {
        KubernetesDcs::delete_leader(self, last_lsn).await
    }

    async fn touch_member(&self, data: &MemberData) -> Result<bool> {
        KubernetesDcs::touch_member(self, data).await
    }

    async fn initialize(&self, sysid: &str) -> Result<bool> {
        KubernetesDcs::initialize(self, sysid).await
    }

    async fn cancel_initialization(&self) -> Result<bool> {
        KubernetesDcs::cancel_initialization(self).await
    }

    async fn set_config_value(&self, value: &str, version: Option<&str>) -> Result<bool> {
        KubernetesDcs::set_config_value(self, value, version).await
    }

    async fn set_history_value(&self, value: &str) -> Result<bool> {
        KubernetesDcs::set_history_value(self, value).await
    }

    async fn manual_failover(
        &self,
        request: FailoverRequest<'_>,
        version: Option<&str>,
    ) -> Result<bool> {
        KubernetesDcs::manual_failover(self, request, version).await
    }

    async fn write_sync_state(
        &self,
        leader: Option<&str>,
        sync_standby: &[String],
        quorum: Option<u32>,
        version: Option<&str>,
    ) -> Result<Option<SyncState>> {
        KubernetesDcs::write_sync_state(self, leader, sync_standby, quorum, version).await
    }

    async fn delete_sync_state(&self, version: Option<&str>) -> Result<bool> {
        KubernetesDcs::delete_sync_state(self, version).await
    }

    async fn delete_cluster(&self) -> Result<bool> {
        KubernetesDcs::delete_cluster(self).await
    }

    async fn watch(&self, timeout: Duration) -> bool {
        KubernetesDcs::watch(self, timeout).await
    }

    fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        KubernetesDcs::set_timing(self, ttl, retry_timeout);
    }
}
