//! Object names, labels and the label selector of one cluster, as Patroni
//! derives them from the scope and the `kubernetes` section.

use std::collections::BTreeMap;

/// Which Kubernetes kind holds the cluster state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// ConfigMaps (`use_endpoints: false`, the default). Works without any
    /// right on Endpoints (OpenShift).
    ConfigMaps,
    /// Endpoints (`use_endpoints: true`): the leader lock and the leader's
    /// address change in one write.
    Endpoints,
}

/// Names and labels of one cluster's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The mode.
    pub mode: Mode,
    /// Cluster name.
    pub scope: String,
    /// Labels put on every object written: `kubernetes.labels` + `scope_label: scope`.
    pub labels: BTreeMap<String, String>,
    /// `k=v,…` selecting the cluster's pods and objects.
    pub selector: String,
}

// === impl Names ===

impl Names {
    /// Derives names and labels for `scope`.
    pub fn new(
        mode: Mode,
        scope: &str,
        labels: &BTreeMap<String, String>,
        scope_label: &str,
    ) -> Self {
        let mut all = labels.clone();
        all.insert(scope_label.to_string(), scope.to_string());
        let selector = labels
            .iter()
            .filter(|(k, _)| k.as_str() != scope_label)
            .map(|(k, v)| format!("{k}={v}"))
            .chain(std::iter::once(format!("{scope_label}={scope}")))
            .collect::<Vec<_>>()
            .join(",");
        Names {
            mode,
            scope: scope.to_string(),
            labels: all,
            selector,
        }
    }

    /// The leader object: Endpoints `SCOPE` (the leader Service's name) or
    /// ConfigMap `SCOPE-leader`.
    pub fn leader(&self) -> String {
        match self.mode {
            Mode::Endpoints => self.scope.clone(),
            Mode::ConfigMaps => format!("{}-leader", self.scope),
        }
    }

    /// The config object (`config`, `initialize`, `history`).
    pub fn config(&self) -> String {
        format!("{}-config", self.scope)
    }

    /// The failover object.
    pub fn failover(&self) -> String {
        format!("{}-failover", self.scope)
    }

    /// The sync object.
    pub fn sync(&self) -> String {
        format!("{}-sync", self.scope)
    }

    /// Name of the headless Service that keeps the config Endpoints alive
    /// (Endpoints mode only).
    pub fn config_service(&self) -> String {
        self.config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Object names follow Patroni in both modes.
    #[test]
    fn object_names_match_patroni_in_both_modes() {
        let labels = BTreeMap::from([("application".to_string(), "patroni".to_string())]);
        let e = Names::new(Mode::Endpoints, "demo", &labels, "cluster-name");
        assert_eq!(
            (e.leader(), e.config(), e.failover(), e.sync()),
            (
                "demo".into(),
                "demo-config".into(),
                "demo-failover".into(),
                "demo-sync".into()
            )
        );
        let c = Names::new(Mode::ConfigMaps, "demo", &labels, "cluster-name");
        assert_eq!(c.leader(), "demo-leader");
        assert_eq!(c.selector, "application=patroni,cluster-name=demo");
        assert_eq!(
            c.labels.get("cluster-name").map(String::as_str),
            Some("demo")
        );
    }

    /// The scope label is always last in the selector and never doubled.
    #[test]
    fn scope_label_is_not_doubled_in_the_selector() {
        let labels = BTreeMap::from([
            ("cluster-name".to_string(), "other".to_string()),
            ("app".to_string(), "x".to_string()),
        ]);
        let n = Names::new(Mode::ConfigMaps, "demo", &labels, "cluster-name");
        assert_eq!(n.selector, "app=x,cluster-name=demo");
        assert_eq!(
            n.labels.get("cluster-name").map(String::as_str),
            Some("demo")
        );
    }
}
