//! The parts of Kubernetes objects the DCS keeps in its caches.
//!
//! Both modes store the same thing (annotations on a named object), so the
//! caches hold one shape, [`KindObject`], whether it came from a ConfigMap
//! or an Endpoints; pods become [`PodObject`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EndpointSubset, Pod};
use kube::api::DynamicObject;

/// A ConfigMap or Endpoints holding cluster state in its annotations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindObject {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `subsets` (Endpoints only; empty for ConfigMaps).
    pub subsets: Vec<EndpointSubset>,
}

/// A pod: one member.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodObject {
    /// `metadata.name` (= member name).
    pub name: String,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.annotations` (`status` holds the member data).
    pub annotations: BTreeMap<String, String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `status.podIP`.
    pub pod_ip: Option<String>,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// `spec.hostname`.
    pub hostname: Option<String>,
}

/// Something the caches store: it has a name and a resourceVersion.
pub trait Versioned {
    /// `metadata.name`.
    fn name(&self) -> &str;
    /// `metadata.resourceVersion`.
    fn resource_version(&self) -> &str;
}

impl Versioned for KindObject {
    fn name(&self) -> &str {
        &self.name
    }
    fn resource_version(&self) -> &str {
        &self.resource_version
    }
}

impl Versioned for PodObject {
    fn name(&self) -> &str {
        &self.name
    }
    fn resource_version(&self) -> &str {
        &self.resource_version
    }
}

/// Whether `new` is a later version than `old`. resourceVersions are
/// compared as integers, as Patroni does (etcd-backed servers use
/// integers); non-numeric ones count as newer when different.
pub fn is_newer(new: &str, old: &str) -> bool {
    match (new.parse::<u64>(), old.parse::<u64>()) {
        (Ok(n), Ok(o)) => n > o,
        _ => new != old,
    }
}

// === impl KindObject ===

impl From<DynamicObject> for KindObject {
    fn from(o: DynamicObject) -> Self {
        let subsets = o
            .data
            .get("subsets")
            .and_then(|s| serde_json::from_value::<Vec<EndpointSubset>>(s.clone()).ok())
            .unwrap_or_default();
        KindObject {
            name: o.metadata.name.unwrap_or_default(),
            resource_version: o.metadata.resource_version.unwrap_or_default(),
            annotations: o.metadata.annotations.unwrap_or_default(),
            labels: o.metadata.labels.unwrap_or_default(),
            subsets,
        }
    }
}

// === impl PodObject ===

impl From<Pod> for PodObject {
    fn from(p: Pod) -> Self {
        let spec = p.spec.unwrap_or_default();
        PodObject {
            name: p.metadata.name.unwrap_or_default(),
            resource_version: p.metadata.resource_version.unwrap_or_default(),
            uid: p.metadata.uid.unwrap_or_default(),
            annotations: p.metadata.annotations.unwrap_or_default(),
            labels: p.metadata.labels.unwrap_or_default(),
            pod_ip: p.status.and_then(|s| s.pod_ip),
            node_name: spec.node_name,
            hostname: spec.hostname,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numeric versions compare as numbers, not strings.
    #[test]
    fn resource_versions_compare_as_integers() {
        assert!(is_newer("10", "9"));
        assert!(!is_newer("9", "10"));
        assert!(!is_newer("10", "10"));
        assert!(is_newer("b", "a"));
    }
}
