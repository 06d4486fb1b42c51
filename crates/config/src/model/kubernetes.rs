//! The `kubernetes:` section: how this member finds and labels its cluster's objects.
//!
//! Defaults are those of Patroni 4.x (`patroni/dcs/kubernetes.py`); see
//! `kubernetes-dcs.md` §5.1. Two Patroni behaviours are kept on purpose:
//! * A top-level `namespace` (or `PATRONI_NAMESPACE`) overrides `kubernetes.namespace`, because
//!   Patroni's DCS loader copies it over. Here that value must then be a valid Kubernetes
//!   namespace name; Patroni would instead send broken API paths (`/service/`).
//! * `context` defaults to `kind-kind`, and is used only outside a cluster.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use serde_json::Value;

use crate::validate::{Checker, IntRule, Node, Presence};

/// Default Kubernetes namespace.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Default label key whose value is the cluster name (scope).
pub const DEFAULT_SCOPE_LABEL: &str = "cluster-name";
/// Default pod label key that carries the member's role.
pub const DEFAULT_ROLE_LABEL: &str = "role";
/// Default role label value of the leader (Patroni 4; `master` before).
pub const DEFAULT_LEADER_LABEL_VALUE: &str = "primary";
/// Default role label value of running replicas.
pub const DEFAULT_FOLLOWER_LABEL_VALUE: &str = "replica";
/// Default role label value of the leader of a standby cluster.
pub const DEFAULT_STANDBY_LEADER_LABEL_VALUE: &str = "primary";
/// Default kubeconfig context, used only when not running inside a cluster.
pub const DEFAULT_CONTEXT: &str = "kind-kind";
/// Default Postgres port published in the leader Endpoints.
pub const DEFAULT_PORT: u16 = 5432;

/// Settings of the `kubernetes` section.
const KNOWN_KEYS: [&str; 16] = [
    "namespace",
    "labels",
    "scope_label",
    "role_label",
    "leader_label_value",
    "follower_label_value",
    "standby_leader_label_value",
    "tmp_role_label",
    "bootstrap_labels",
    "use_endpoints",
    "pod_ip",
    "ports",
    "bypass_api_service",
    "cacert",
    "retriable_http_codes",
    "context",
];

/// Typed `kubernetes:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// Namespace of every object. The top-level `namespace` wins over `kubernetes.namespace`
    /// when set (Patroni behaviour); default [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// Selector labels, also put on every object Patroni creates. Required (may be empty).
    pub labels: BTreeMap<String, String>,
    /// Label key whose value is the scope; default [`DEFAULT_SCOPE_LABEL`].
    pub scope_label: String,
    /// Pod label key carrying the role; default [`DEFAULT_ROLE_LABEL`].
    pub role_label: String,
    /// Role value of the lock holder; default [`DEFAULT_LEADER_LABEL_VALUE`].
    pub leader_label_value: String,
    /// Role value of running replicas; default [`DEFAULT_FOLLOWER_LABEL_VALUE`].
    pub follower_label_value: String,
    /// Role value of a standby cluster's leader; default [`DEFAULT_STANDBY_LEADER_LABEL_VALUE`].
    pub standby_leader_label_value: String,
    /// Extra pod label carrying Patroni's built-in role names, if set.
    pub tmp_role_label: Option<String>,
    /// Labels present on the pod only while bootstrapping or creating a replica.
    pub bootstrap_labels: BTreeMap<String, String>,
    /// Keep state in Endpoints (true) or ConfigMaps (false, default).
    pub use_endpoints: bool,
    /// IP written into the leader Endpoints; `None` means the pod's `status.podIP`.
    pub pod_ip: Option<IpAddr>,
    /// Ports of the leader Endpoints; default one unnamed port [`DEFAULT_PORT`].
    pub ports: Vec<EndpointPort>,
    /// Talk to the API servers directly instead of through the `kubernetes` Service.
    pub bypass_api_service: bool,
    /// CA bundle for in-cluster TLS; `None` means the service account's `ca.crt`.
    pub cacert: Option<PathBuf>,
    /// HTTP status codes retried in addition to 500, 503 and 504.
    pub retriable_http_codes: Vec<u16>,
    /// kubeconfig context used outside a cluster; default [`DEFAULT_CONTEXT`].
    pub context: String,
}

/// One port of the leader Endpoints (`kubernetes.ports` item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    /// Port name; must match the leader Service's port name. Required when there are several.
    pub name: Option<String>,
    /// Port number.
    pub port: u16,
    /// Protocol (`TCP`, `UDP`, `SCTP`), if given.
    pub protocol: Option<String>,
}

// === impl KubernetesConfig ===

/// Patroni's defaults for an empty `kubernetes:` section (labels empty).
impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            labels: BTreeMap::new(),
            scope_label: DEFAULT_SCOPE_LABEL.to_owned(),
            role_label: DEFAULT_ROLE_LABEL.to_owned(),
            leader_label_value: DEFAULT_LEADER_LABEL_VALUE.to_owned(),
            follower_label_value: DEFAULT_FOLLOWER_LABEL_VALUE.to_owned(),
            standby_leader_label_value: DEFAULT_STANDBY_LEADER_LABEL_VALUE.to_owned(),
            tmp_role_label: None,
            bootstrap_labels: BTreeMap::new(),
            use_endpoints: false,
            pod_ip: None,
            ports: vec![EndpointPort {
                name: None,
                port: DEFAULT_PORT,
                protocol: None,
            }],
            bypass_api_service: false,
            cacert: None,
            retriable_http_codes: Vec::new(),
            context: DEFAULT_CONTEXT.to_owned(),
        }
    }
}

impl KubernetesConfig {
    /// Reads the section at `node`; `top_namespace` is the top-level `namespace`, if set.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>, top_namespace: Option<&str>) -> Self {
        c.warn_unknown(node, &KNOWN_KEYS);
        let own_namespace = c
            .string(node, "namespace", Presence::Optional)
            .filter(|n| !n.is_empty());
        let (namespace, namespace_path) =
            match (top_namespace.filter(|n| !n.is_empty()), own_namespace) {
                (Some(top), own) => {
                    if own.as_deref().is_some_and(|own| own != top) {
                        c.warn(
                            node.path_of("namespace"),
                            format!(
                                "overridden by the top-level namespace {top:?}, as Patroni does"
                            ),
                        );
                    }
                    (top.to_owned(), "namespace".to_owned())
                }
                (None, Some(own)) => (own, node.path_of("namespace")),
                (None, None) => (DEFAULT_NAMESPACE.to_owned(), String::new()),
            };
        if !is_dns_label(&namespace) {
            c.error(
                namespace_path,
                format!("{namespace:?} is not a valid Kubernetes namespace name"),
            );
        }
        if !node.has("labels") && node.exists() {
            c.error(node.path_of("labels"), "missing required setting");
        }
        Self {
            namespace,
            labels: c.string_map(node, "labels").unwrap_or_default(),
            scope_label: c.string_or(node, "scope_label", DEFAULT_SCOPE_LABEL),
            role_label: c.string_or(node, "role_label", DEFAULT_ROLE_LABEL),
            leader_label_value: c.string_or(node, "leader_label_value", DEFAULT_LEADER_LABEL_VALUE),
            follower_label_value: c.string_or(
                node,
                "follower_label_value",
                DEFAULT_FOLLOWER_LABEL_VALUE,
            ),
            standby_leader_label_value: c.string_or(
                node,
                "standby_leader_label_value",
                DEFAULT_STANDBY_LEADER_LABEL_VALUE,
            ),
            tmp_role_label: c.string(node, "tmp_role_label", Presence::Optional),
            bootstrap_labels: c.string_map(node, "bootstrap_labels").unwrap_or_default(),
            use_endpoints: c.boolean_or(node, "use_endpoints", false),
            pod_ip: read_pod_ip(c, node),
            ports: read_ports(c, node),
            bypass_api_service: c.boolean_or(node, "bypass_api_service", false),
            cacert: c
                .string(node, "cacert", Presence::Optional)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            retriable_http_codes: read_retriable_codes(c, node),
            context: c.string_or(node, "context", DEFAULT_CONTEXT),
        }
    }

    /// The label selector used to list and watch: `labels` plus `scope_label=scope`.
    pub fn selector_labels(&self, scope: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert(self.scope_label.clone(), scope.to_owned());
        labels
    }
}

fn read_pod_ip(c: &mut Checker, node: &Node<'_>) -> Option<IpAddr> {
    let text = c
        .string(node, "pod_ip", Presence::Optional)
        .filter(|s| !s.is_empty())?;
    match text.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            c.error(
                node.path_of("pod_ip"),
                format!("expected an IPv4 or IPv6 address, got {text:?}"),
            );
            None
        }
    }
}

fn read_ports(c: &mut Checker, node: &Node<'_>) -> Vec<EndpointPort> {
    let default = || {
        vec![EndpointPort {
            name: None,
            port: DEFAULT_PORT,
            protocol: None,
        }]
    };
    let Some(value) = node.get("ports") else {
        return default();
    };
    let path = node.path_of("ports");
    let Some(items) = value.as_array().filter(|a| !a.is_empty()) else {
        c.error(
            &path,
            format!("expected a non-empty list of {{name, port}}, got {}", value),
        );
        return default();
    };
    let mut ports = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}.{i}");
        let Some(map) = item.as_object() else {
            c.error(
                &item_path,
                format!("expected a mapping with name and port, got {item}"),
            );
            continue;
        };
        let item_node = Node::new(item_path.clone(), Some(map));
        let port = c.int(
            &item_node,
            "port",
            Presence::Required,
            IntRule::between(1, 65535),
        );
        let name = c.string(&item_node, "name", Presence::Optional);
        if name.is_none() && items.len() > 1 && map.get("name").is_none_or(Value::is_null) {
            c.error(
                item_node.path_of("name"),
                "missing required setting (several ports need names)",
            );
        }
        let protocol = c.string(&item_node, "protocol", Presence::Optional);
        if let Some(port) = port.and_then(|p| u16::try_from(p).ok()) {
            ports.push(EndpointPort {
                name,
                port,
                protocol,
            });
        }
    }
    ports
}

/// Accepts an integer, a list of integers, or a comma-separated string, as Patroni does.
fn read_retriable_codes(c: &mut Checker, node: &Node<'_>) -> Vec<u16> {
    let Some(value) = node.get("retriable_http_codes") else {
        return Vec::new();
    };
    let path = node.path_of("retriable_http_codes");
    let items: Vec<Value> = match value {
        Value::Array(items) => items.clone(),
        Value::String(s) => s
            .split(',')
            .map(|p| Value::String(p.trim().to_owned()))
            .collect(),
        other => vec![other.clone()],
    };
    let mut codes = Vec::new();
    for item in &items {
        match c.int_value(&path, item, IntRule::between(100, 599)) {
            Some(code) => codes.extend(u16::try_from(code).ok()),
            None => break,
        }
    }
    codes
}

/// Whether `s` is a DNS-1123 label (namespace names): 1-63 of `a-z0-9-`, alphanumeric ends.
pub(crate) fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(doc: &Value, top_namespace: Option<&str>) -> (KubernetesConfig, Checker) {
        let mut c = Checker::default();
        let root = Node::root(doc);
        let node = c.section(&root, "kubernetes", Presence::Required);
        (KubernetesConfig::read(&mut c, &node, top_namespace), c)
    }

    /// An almost empty section gets every Patroni 4 default.
    #[test]
    fn defaults_match_patroni_4() {
        let (k, c) = read(&json!({"kubernetes": {"labels": {}}}), None);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(k.namespace, "default");
        assert_eq!(k.scope_label, "cluster-name");
        assert_eq!(k.role_label, "role");
        assert_eq!(k.leader_label_value, "primary");
        assert_eq!(k.follower_label_value, "replica");
        assert_eq!(k.standby_leader_label_value, "primary");
        assert_eq!(k.tmp_role_label, None);
        assert!(!k.use_endpoints && !k.bypass_api_service);
        assert_eq!(
            k.ports,
            vec![EndpointPort {
                name: None,
                port: 5432,
                protocol: None
            }]
        );
        assert_eq!(k.context, "kind-kind");
        assert_eq!(k.pod_ip, None);
        assert!(k.retriable_http_codes.is_empty());
    }

    /// The top-level namespace overrides the section's, with a warning when they differ.
    #[test]
    fn top_level_namespace_wins() {
        let (k, c) = read(
            &json!({"kubernetes": {"labels": {}, "namespace": "a"}}),
            Some("b"),
        );
        assert_eq!(k.namespace, "b");
        assert_eq!(c.warnings.len(), 1);
        let (_, c) = read(&json!({"kubernetes": {"labels": {}}}), Some("/service/"));
        assert_eq!(
            c.errors[0].to_string(),
            "namespace: \"/service/\" is not a valid Kubernetes namespace name"
        );
    }

    /// Retriable codes accept an int, a list or a comma-separated string.
    #[test]
    fn retriable_codes_accept_three_spellings() {
        for v in [json!(401), json!([401, "403"]), json!("401, 403")] {
            let (k, c) = read(
                &json!({"kubernetes": {"labels": {}, "retriable_http_codes": v}}),
                None,
            );
            assert!(c.errors.is_empty(), "{:?}", c.errors);
            assert_eq!(k.retriable_http_codes[0], 401);
        }
    }
}
