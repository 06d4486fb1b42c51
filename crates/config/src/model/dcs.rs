//! Which distributed configuration store (DCS) the configuration selects.
//!
//! Patroni selects the DCS by which top-level section is present (`etcd`, `etcd3`, `consul`,
//! `zookeeper`, `exhibitor`, `kubernetes`, `raft`). patroni-rs implements Kubernetes, etcd v3
//! (`etcd3`) and ZooKeeper; the other sections are recognised so that the binary can say
//! plainly that they are not supported, and their minimal required keys are checked like
//! Patroni's validator does.
//!
//! Patroni silently picks the first section in module order when several are present. Here
//! that is an error: a leftover `PATRONI_ETCD3_HOSTS` next to a `kubernetes` section is more
//! likely a mistake than a choice.

use std::fmt;

use serde_json::Value;

use super::etcd3::Etcd3Config;
use super::kubernetes::KubernetesConfig;
use super::zookeeper::ZookeeperConfig;
use crate::validate::{Checker, Node, Presence};

/// A DCS kind Patroni knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DcsKind {
    /// Consul.
    Consul,
    /// etcd, API v2.
    Etcd,
    /// etcd, API v3.
    Etcd3,
    /// Exhibitor (ZooKeeper discovery).
    Exhibitor,
    /// Kubernetes (ConfigMaps or Endpoints).
    Kubernetes,
    /// Patroni's built-in Raft (deprecated upstream).
    Raft,
    /// ZooKeeper.
    Zookeeper,
}

// === impl DcsKind ===

impl DcsKind {
    /// Every kind, in Patroni's module order.
    pub const ALL: [Self; 7] = [
        Self::Consul,
        Self::Etcd,
        Self::Etcd3,
        Self::Exhibitor,
        Self::Kubernetes,
        Self::Raft,
        Self::Zookeeper,
    ];

    /// The configuration section name (`etcd3`).
    pub fn section(self) -> &'static str {
        match self {
            Self::Consul => "consul",
            Self::Etcd => "etcd",
            Self::Etcd3 => "etcd3",
            Self::Exhibitor => "exhibitor",
            Self::Kubernetes => "kubernetes",
            Self::Raft => "raft",
            Self::Zookeeper => "zookeeper",
        }
    }

    /// Keys of which the section needs at least one (Patroni's validator `Or(...)`), and keys
    /// it needs all of.
    fn required_keys(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::Etcd | Self::Etcd3 => {
                (&["host", "hosts", "srv", "srv_suffix", "url", "proxy"], &[])
            }
            Self::Consul => (&["host", "url"], &[]),
            Self::Exhibitor => (&[], &["hosts", "port"]),
            Self::Raft => (&[], &["self_addr", "partner_addrs"]),
            Self::Zookeeper => (&[], &["hosts"]),
            Self::Kubernetes => (&[], &[]),
        }
    }
}

impl fmt::Display for DcsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.section())
    }
}

/// The selected DCS and its settings.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once at startup; a Box would only add noise at every use"
)]
pub enum DcsConfig {
    /// Kubernetes (ConfigMaps or Endpoints).
    Kubernetes(KubernetesConfig),
    /// ZooKeeper.
    Zookeeper(ZookeeperConfig),
    /// etcd, API v3.
    Etcd3(Etcd3Config),
    /// A DCS Patroni supports but patroni-rs does not (yet). The binary refuses to start with it.
    Unsupported {
        /// Which one.
        kind: DcsKind,
        /// Its section as written, for messages.
        section: Value,
    },
}

// === impl DcsConfig ===

impl DcsConfig {
    /// The kind of the selected DCS.
    pub fn kind(&self) -> DcsKind {
        match self {
            Self::Kubernetes(_) => DcsKind::Kubernetes,
            Self::Zookeeper(_) => DcsKind::Zookeeper,
            Self::Etcd3(_) => DcsKind::Etcd3,
            Self::Unsupported { kind, .. } => *kind,
        }
    }

    /// Finds the one DCS section in the document at `root` and reads it. `None` (with an error
    /// recorded) when there is none or more than one.
    pub(crate) fn read(
        c: &mut Checker,
        root: &Node<'_>,
        top_namespace: Option<&str>,
    ) -> Option<Self> {
        // Legacy layout: `zookeeper.exhibitor` means the exhibitor DCS.
        let legacy_exhibitor = root
            .get("zookeeper")
            .and_then(|z| z.get("exhibitor"))
            .filter(|v| !v.is_null());
        let present: Vec<DcsKind> = DcsKind::ALL
            .into_iter()
            .filter(|k| match k {
                DcsKind::Exhibitor => root.has("exhibitor") || legacy_exhibitor.is_some(),
                DcsKind::Zookeeper => root.has("zookeeper") && legacy_exhibitor.is_none(),
                other => root.has(other.section()),
            })
            .collect();
        let names: Vec<&str> = DcsKind::ALL.iter().map(|k| k.section()).collect();
        let kind = match present.as_slice() {
            [kind] => *kind,
            [] => {
                c.error(
                    "",
                    format!(
                        "no DCS section found; expected exactly one of {}",
                        names.join(", ")
                    ),
                );
                return None;
            }
            several => {
                let found: Vec<&str> = several.iter().map(|k| k.section()).collect();
                c.error(
                    "",
                    format!(
                        "expected exactly one DCS section, found {}",
                        found.join(", ")
                    ),
                );
                return None;
            }
        };
        if kind == DcsKind::Kubernetes {
            let node = c.section(root, "kubernetes", Presence::Required);
            return Some(Self::Kubernetes(KubernetesConfig::read(
                c,
                &node,
                top_namespace,
            )));
        }
        if kind == DcsKind::Zookeeper {
            let node = c.section(root, "zookeeper", Presence::Required);
            return Some(Self::Zookeeper(ZookeeperConfig::read(
                c,
                &node,
                top_namespace,
            )));
        }
        if kind == DcsKind::Etcd3 {
            let node = c.section(root, "etcd3", Presence::Required);
            return Some(Self::Etcd3(Etcd3Config::read(c, &node, top_namespace)));
        }
        let (section, path) = match (kind, legacy_exhibitor) {
            (DcsKind::Exhibitor, Some(legacy)) => (legacy, "zookeeper.exhibitor"),
            _ => (
                root.get(kind.section()).unwrap_or(&Value::Null),
                kind.section(),
            ),
        };
        check_unsupported(c, kind, section, path);
        Some(Self::Unsupported {
            kind,
            section: section.clone(),
        })
    }
}

/// The minimal checks Patroni's validator makes on the other DCS sections.
fn check_unsupported(c: &mut Checker, kind: DcsKind, section: &Value, path: &str) {
    let Some(map) = section.as_object() else {
        c.error(path, format!("expected a mapping, got {section}"));
        return;
    };
    let node = Node::new(path.to_owned(), Some(map));
    let (any_of, all_of) = kind.required_keys();
    if !any_of.is_empty() && !any_of.iter().any(|k| node.has(k)) {
        c.error(
            path,
            format!("missing required setting: one of {}", any_of.join(", ")),
        );
    }
    for key in all_of {
        if !node.has(key) {
            c.error(node.path_of(key), "missing required setting");
        }
    }
}
