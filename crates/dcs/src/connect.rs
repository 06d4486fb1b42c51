//! The one place a DCS backend is chosen and constructed: [`connect`] turns the
//! configuration's DCS choice ([`DcsConfig`]) and the loop timings ([`Settings`]) into an
//! [`AnyDcs`]. The agent and patronictl call nothing else to get a DCS, so a new backend
//! (ZooKeeper, Consul) is a new module and a new arm here, not an edit of the callers.
//!
//! The process environment is not read here: the caller reads it once and says what it
//! offers ([`Settings::in_cluster`], from [`in_cluster_offered`]).

use std::path::PathBuf;
use std::time::Duration;

use patroni_config::{DcsConfig, DcsKind, Environment};

use crate::{AnyDcs, Error, Etcd3Dcs, KubernetesDcs, Result, ZookeeperDcs};

/// Environment variable whose presence says a pod's in-cluster Kubernetes credentials are
/// offered (Patroni checks the same one).
const KUBERNETES_SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";

/// What opening a DCS needs to know, whichever backend.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cluster name.
    pub scope: String,
    /// This member's name (Kubernetes: its pod's name).
    pub name: String,
    /// The configuration's DCS choice and its section.
    pub dcs: DcsConfig,
    /// Lock ttl a leader write promises.
    pub ttl: Duration,
    /// HA loop interval (tunes TCP keepalive of DCS connections).
    pub loop_wait: Duration,
    /// Budget of one DCS operation, retries included.
    pub retry_timeout: Duration,
    /// Kubernetes: a kubeconfig to use instead of in-cluster credentials or `$KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes: the caller's environment offers in-cluster credentials (see
    /// [`in_cluster_offered`]); without them the kubeconfig is used.
    pub in_cluster: bool,
}

/// Whether `env` (the caller's one snapshot of the process environment) offers in-cluster
/// Kubernetes credentials: `KUBERNETES_SERVICE_HOST` is set.
pub fn in_cluster_offered(env: &Environment) -> bool {
    env.get(KUBERNETES_SERVICE_HOST).is_some()
}

/// Whether this build has a backend for DCS `kind`.
pub fn supports(kind: DcsKind) -> bool {
    matches!(
        kind,
        DcsKind::Kubernetes | DcsKind::Etcd3 | DcsKind::Zookeeper
    )
}

/// How messages name DCS `kind` ("Kubernetes", "etcd3", …).
pub fn backend_name(kind: DcsKind) -> &'static str {
    match kind {
        DcsKind::Consul => "Consul",
        DcsKind::Etcd => "etcd",
        DcsKind::Etcd3 => "etcd3",
        DcsKind::Exhibitor => "Exhibitor",
        DcsKind::Kubernetes => "Kubernetes",
        DcsKind::Raft => "Raft",
        DcsKind::Zookeeper => "ZooKeeper",
    }
}

/// Opens the DCS `settings.dcs` selects.
///
/// # Errors
/// [`Error::Config`] for a DCS this build has no backend for (naming it), or when the
/// backend finds no usable client configuration.
pub async fn connect(settings: Settings) -> Result<AnyDcs> {
    match &settings.dcs {
        DcsConfig::Kubernetes(_) => KubernetesDcs::start(settings).await.map(AnyDcs::Kubernetes),
        DcsConfig::Zookeeper(_) => ZookeeperDcs::start(settings).await.map(AnyDcs::Zookeeper),
        DcsConfig::Etcd3(_) => Etcd3Dcs::start(settings).await.map(AnyDcs::Etcd3),
        DcsConfig::Unsupported { kind, .. } => Err(Error::Config {
            what: format!("the \"{kind}\" DCS is not supported"),
            source: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DCS without a backend is refused by name, before anything is opened.
    #[tokio::test]
    async fn an_unsupported_dcs_is_a_config_error_naming_it() {
        let settings = Settings {
            scope: "demo".into(),
            name: "m0".into(),
            dcs: DcsConfig::Unsupported {
                kind: DcsKind::Consul,
                section: serde_json::json!({"host": "127.0.0.1:8500"}),
            },
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
            kubeconfig: None,
            in_cluster: false,
        };
        let Err(e) = connect(settings).await else {
            panic!("Consul has no backend");
        };
        assert!(matches!(e, Error::Config { source: None, .. }), "{e:?}");
        assert_eq!(e.to_string(), "the \"consul\" DCS is not supported");
        assert!(!supports(DcsKind::Consul) && supports(DcsKind::Kubernetes));
        assert!(supports(DcsKind::Etcd3) && supports(DcsKind::Zookeeper));
    }

    /// In-cluster credentials are offered exactly when the snapshot has
    /// `KUBERNETES_SERVICE_HOST`.
    #[test]
    fn in_cluster_follows_the_environment_snapshot() {
        assert!(!in_cluster_offered(&Environment::new()));
        let env = Environment::new().with_var(KUBERNETES_SERVICE_HOST, "10.96.0.1");
        assert!(in_cluster_offered(&env));
    }
}
