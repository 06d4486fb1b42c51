//! Typed, validated configuration, one module per section.
//!
//! [`Config::from_value`] reads a raw document (see [`crate::source`]) into these types, filling
//! in Patroni's defaults and collecting every problem along the way. Unknown settings are kept
//! in the raw document and reported as warnings, never rejected, as Patroni tolerates them.

pub mod address;
pub mod backup;
pub mod bootstrap;
pub mod citus;
pub mod dcs;
pub mod dynamic;
pub mod etcd3;
pub mod kubernetes;
pub mod log;
pub mod postgresql;
pub mod restapi;
pub mod tags;
pub mod tool_options;
pub mod watchdog;
pub mod zookeeper;

use serde_json::Value;

use self::{
    backup::BackupConfig, bootstrap::BootstrapConfig, citus::CitusConfig, dcs::DcsConfig, kubernetes::is_dns_label,
    log::LogConfig, postgresql::PostgresqlConfig, restapi::CtlConfig, restapi::RestApiConfig,
    tags::Tags, watchdog::WatchdogConfig,
};
use crate::{
    problem::{InvalidConfig, Problem},
    validate::{Checker, Node, Presence},
};

/// Member name Patroni reserves for itself in strict synchronous mode.
const SYNC_STRICT_PLACEHOLDER: &str = "__patroni_strict_sync_replica_placeholder__";

/// Top-level settings Patroni reads (besides the DCS sections).
const KNOWN_TOP_LEVEL: [&str; 22] = [
    "backup",
    "name",
    "scope",
    "namespace",
    "log",
    "restapi",
    "ctl",
    "citus",
    "bootstrap",
    "postgresql",
    "watchdog",
    "tags",
    "thread_pool_size",
    "thread_stack_size",
    "retriable_http_codes",
    "consul",
    "etcd",
    "etcd3",
    "exhibitor",
    "kubernetes",
    "raft",
    "zookeeper",
];

/// A complete, validated member configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// This member's name; with Kubernetes, the pod name.
    pub name: String,
    /// The cluster name.
    pub scope: String,
    /// Top-level `namespace`, if set. With Kubernetes it is already folded into
    /// [`kubernetes::KubernetesConfig::namespace`].
    pub namespace: Option<String>,
    /// Logging.
    pub log: LogConfig,
    /// This member's REST API server.
    pub restapi: RestApiConfig,
    /// Client settings for calling REST APIs.
    pub ctl: CtlConfig,
    /// The selected DCS.
    pub dcs: DcsConfig,
    /// Local Postgres settings.
    pub postgresql: PostgresqlConfig,
    /// Bootstrap settings (defaults when the section is absent).
    pub bootstrap: BootstrapConfig,
    /// Member tags.
    pub tags: Tags,
    /// Watchdog settings.
    pub watchdog: WatchdogConfig,
    /// Citus membership, when configured.
    pub citus: Option<CitusConfig>,
    /// Scheduled base backups on the leader (patroni-rs only), when configured.
    pub backup: Option<BackupConfig>,
}

// === impl Config ===

impl Config {
    /// Validates the raw document `raw` and builds the typed configuration.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] with every error (and the warnings) when anything is wrong.
    ///
    /// # Guarantees
    ///
    /// On success the second element holds the warnings, such as unknown settings.
    pub fn from_value(raw: &Value) -> Result<(Self, Vec<Problem>), InvalidConfig> {
        let mut c = Checker::default();
        let config = Self::read(&mut c, raw);
        match config {
            Some(config) if c.errors.is_empty() => Ok((config, c.warnings)),
            _ => {
                if c.errors.is_empty() {
                    c.error("", "invalid configuration");
                }
                Err(InvalidConfig {
                    errors: c.errors,
                    warnings: c.warnings,
                })
            }
        }
    }

    fn read(c: &mut Checker, raw: &Value) -> Option<Self> {
        if !raw.is_object() {
            c.error(
                "",
                format!("expected a mapping at the top level, got {raw}"),
            );
            return None;
        }
        let root = Node::root(raw);
        c.warn_unknown(&root, &KNOWN_TOP_LEVEL);
        let name = read_name(c, &root);
        let scope = c.string(&root, "scope", Presence::Required);
        let namespace = c.string(&root, "namespace", Presence::Optional);
        let node = c.section(&root, "log", Presence::Optional);
        let log = LogConfig::read(c, &node);
        let node = c.section(&root, "restapi", Presence::Required);
        let restapi = RestApiConfig::read(c, &node);
        let node = c.section(&root, "ctl", Presence::Optional);
        let ctl = CtlConfig::read(c, &node);
        let dcs = DcsConfig::read(c, &root, namespace.as_deref());
        let node = c.section(&root, "postgresql", Presence::Required);
        let postgresql = PostgresqlConfig::read(c, &node);
        let node = c.section(&root, "citus", Presence::Optional);
        let citus = if node.exists() {
            CitusConfig::read(c, &node)
        } else {
            None
        };
        let node = c.section(&root, "bootstrap", Presence::Optional);
        let bootstrap = BootstrapConfig::read(c, &node, citus.is_some());
        let node = c.section(&root, "tags", Presence::Optional);
        let tags = Tags::read(c, &node);
        let node = c.section(&root, "watchdog", Presence::Optional);
        let watchdog = WatchdogConfig::read(c, &node);
        let node = c.section(&root, "backup", Presence::Optional);
        let backup = BackupConfig::read(c, &node);
        if let Some(DcsConfig::Kubernetes(_)) = &dcs {
            check_kubernetes_names(c, name.as_deref(), scope.as_deref());
        }
        Some(Self {
            name: name?,
            scope: scope?,
            namespace,
            log,
            restapi: restapi?,
            ctl,
            dcs: dcs?,
            postgresql: postgresql?,
            bootstrap,
            tags,
            watchdog,
            citus,
            backup,
        })
    }
}

/// `name`, or the legacy `postgresql.name`.
fn read_name(c: &mut Checker, root: &Node<'_>) -> Option<String> {
    let name = if root.has("name") {
        c.string(root, "name", Presence::Required)
    } else {
        let postgresql = Node::new(
            "postgresql".to_owned(),
            root.get("postgresql").and_then(Value::as_object),
        );
        match postgresql.has("name") {
            true => c.string(&postgresql, "name", Presence::Required),
            false => c.string(root, "name", Presence::Required),
        }
    }?;
    if name.is_empty() {
        c.error("name", "must not be empty");
        return None;
    }
    if name == SYNC_STRICT_PLACEHOLDER {
        c.error(
            "name",
            format!("must not be {SYNC_STRICT_PLACEHOLDER:?} (reserved by Patroni)"),
        );
        return None;
    }
    Some(name)
}

/// With Kubernetes the member name is a pod name, and the scope is both a label value and the
/// prefix of object names; Kubernetes rejects anything else at the first write.
fn check_kubernetes_names(c: &mut Checker, name: Option<&str>, scope: Option<&str>) {
    if let Some(name) = name.filter(|n| !is_dns_subdomain(n, 253)) {
        c.error(
            "name",
            format!(
                "{name:?} cannot be used with Kubernetes: it must be the pod name (lowercase letters, digits, \
                 '-' and '.', starting and ending with a letter or digit)"
            ),
        );
    }
    if let Some(scope) = scope.filter(|s| !is_dns_subdomain(s, 63)) {
        c.error(
            "scope",
            format!(
                "{scope:?} cannot be used with Kubernetes: it must be a valid label value and object name (at \
                 most 63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
            ),
        );
    }
}

/// A DNS-1123 subdomain of at most `max_len` characters: dot-separated DNS labels.
fn is_dns_subdomain(s: &str, max_len: usize) -> bool {
    s.len() <= max_len && s.split('.').all(is_dns_label)
}

// === impl Checker (unknown keys) ===

impl Checker {
    /// Warns about keys of `node` that are not in `known`.
    pub(crate) fn warn_unknown(&mut self, node: &Node<'_>, known: &[&str]) {
        let unknown: Vec<String> = node
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            self.warn(node.path_of(&key), "unknown setting; ignored");
        }
    }
}
