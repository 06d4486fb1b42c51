//! [`AnyDcs`]: whichever backend [`connect`](crate::connect) opened, behind the [`Dcs`]
//! trait. The trait returns `impl Future`, so it cannot be a trait object; this enum is the
//! one type the agent and patronictl hold, and every method delegates to the variant.

use std::time::Duration;

use patroni_config::DcsKind;
use patroni_core::{Cluster, MemberData, SyncState};

use crate::dcs::{Dcs, FailoverRequest, LeaderStatusUpdate};
use crate::{Etcd3Dcs, KubernetesDcs, Result, ZookeeperDcs};

/// An opened DCS, of whichever backend.
#[non_exhaustive]
pub enum AnyDcs {
    /// Kubernetes (ConfigMaps or Endpoints).
    Kubernetes(KubernetesDcs),
    /// ZooKeeper.
    Zookeeper(ZookeeperDcs),
    /// etcd, API v3.
    Etcd3(Etcd3Dcs),
}

/// `$body` with `$d` bound to the backend of `$dcs`.
macro_rules! each {
    ($dcs:expr, $d:ident => $body:expr) => {
        match $dcs {
            AnyDcs::Kubernetes($d) => $body,
            AnyDcs::Zookeeper($d) => $body,
            AnyDcs::Etcd3($d) => $body,
        }
    };
}

// === impl AnyDcs ===

impl AnyDcs {
    /// Which backend this is.
    pub fn kind(&self) -> DcsKind {
        match self {
            AnyDcs::Kubernetes(_) => DcsKind::Kubernetes,
            AnyDcs::Zookeeper(_) => DcsKind::Zookeeper,
            AnyDcs::Etcd3(_) => DcsKind::Etcd3,
        }
    }
}

impl std::fmt::Debug for AnyDcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AnyDcs").field(&self.kind()).finish()
    }
}

impl Dcs for AnyDcs {
    async fn get_cluster(&self) -> Result<Cluster> {
        each!(self, d => Dcs::get_cluster(d).await)
    }

    async fn attempt_to_acquire_leader(&self, seen: Option<&str>) -> Result<bool> {
        each!(self, d => Dcs::attempt_to_acquire_leader(d, seen).await)
    }

    async fn update_leader(&self, status: &LeaderStatusUpdate) -> Result<bool> {
        each!(self, d => Dcs::update_leader(d, status).await)
    }

    async fn delete_leader(&self, last_lsn: Option<u64>) -> Result<bool> {
        each!(self, d => Dcs::delete_leader(d, last_lsn).await)
    }

    async fn touch_member(&self, data: &MemberData) -> Result<bool> {
        each!(self, d => Dcs::touch_member(d, data).await)
    }

    async fn initialize(&self, sysid: &str) -> Result<bool> {
        each!(self, d => Dcs::initialize(d, sysid).await)
    }

    async fn cancel_initialization(&self) -> Result<bool> {
        each!(self, d => Dcs::cancel_initialization(d).await)
    }

    async fn set_config_value(&self, value: &str, version: Option<&str>) -> Result<bool> {
        each!(self, d => Dcs::set_config_value(d, value, version).await)
    }

    async fn set_history_value(&self, value: &str) -> Result<bool> {
        each!(self, d => Dcs::set_history_value(d, value).await)
    }

    async fn manual_failover(
        &self,
        request: FailoverRequest<'_>,
        version: Option<&str>,
    ) -> Result<bool> {
        each!(self, d => Dcs::manual_failover(d, request, version).await)
    }

    async fn write_sync_state(
        &self,
        leader: Option<&str>,
        sync_standby: &[String],
        quorum: Option<u32>,
        version: Option<&str>,
    ) -> Result<Option<SyncState>> {
        each!(self, d => Dcs::write_sync_state(d, leader, sync_standby, quorum, version).await)
    }

    async fn delete_sync_state(&self, version: Option<&str>) -> Result<bool> {
        each!(self, d => Dcs::delete_sync_state(d, version).await)
    }

    async fn delete_cluster(&self) -> Result<bool> {
        each!(self, d => Dcs::delete_cluster(d).await)
    }

    async fn watch(&self, timeout: Duration) -> bool {
        each!(self, d => Dcs::watch(d, timeout).await)
    }

    fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        each!(self, d => Dcs::set_timing(d, ttl, retry_timeout))
    }

    fn lease_limit(&self) -> Option<Duration> {
        each!(self, d => Dcs::lease_limit(d))
    }
}
