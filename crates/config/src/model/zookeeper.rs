//! The `zookeeper:` section (and `PATRONI_ZOOKEEPER_*`): how this member reaches its ZooKeeper
//! ensemble.
//!
//! Read as Patroni 4 reads it (`patroni/dcs/zookeeper.py`, `patroni/validator.py`): `hosts` is a
//! list of `host:port` or one comma-separated string of them (a host without a port gets
//! ZooKeeper's 2181, as kazoo gives it); `auth_data` (`{scheme: credential}`, e.g.
//! `{digest: "user:password"}`) is sent on every new session, as kazoo's `auth_data`.
//!
//! The top-level `namespace` (default `/service`) is the first component of every znode path,
//! `/<namespace>/<scope>/...`, with repeated slashes collapsed as Patroni does.
//!
//! Not implemented, and refused with an error naming the setting (never read and ignored):
//! TLS (`use_ssl: true`, `cacert`, `cert`, `key`, `key_password`, `verify`) and ACLs on the
//! znodes Patroni creates (`set_acls`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::validate::{Checker, Node};

/// ZooKeeper's client port when a host has none.
pub const DEFAULT_PORT: u16 = 2181;
/// The default top-level namespace of Patroni's znodes.
pub const DEFAULT_NAMESPACE: &str = "/service";

/// Settings of the `zookeeper` section Patroni's validator and client read.
const KNOWN_KEYS: [&str; 9] = [
    "hosts",
    "use_ssl",
    "cacert",
    "cert",
    "key",
    "key_password",
    "verify",
    "set_acls",
    "auth_data",
];

/// TLS settings, which this build does not implement: refused by name.
const TLS_KEYS: [&str; 5] = ["cacert", "cert", "key", "key_password", "verify"];

/// Typed `zookeeper:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZookeeperConfig {
    /// The top-level `namespace`, the first component of every znode path; default
    /// [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// The ensemble's servers as `host:port`, in order.
    pub hosts: Vec<String>,
    /// Credentials sent on every session, `(scheme, credential)` (kazoo's `auth_data`).
    pub auth_data: Vec<(String, String)>,
}

// === impl ZookeeperConfig ===

impl ZookeeperConfig {
    /// Reads the section at `node`; `top_namespace` is the top-level `namespace`, if set.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>, top_namespace: Option<&str>) -> Self {
        c.warn_unknown(node, &KNOWN_KEYS);
        if c.boolean_or(node, "use_ssl", false) {
            c.error(
                node.path_of("use_ssl"),
                "TLS to ZooKeeper is not supported by patroni-rs yet",
            );
        }
        for key in TLS_KEYS.into_iter().filter(|k| node.has(k)) {
            c.error(
                node.path_of(key),
                "TLS to ZooKeeper is not supported by patroni-rs yet",
            );
        }
        if node.has("set_acls") {
            c.error(
                node.path_of("set_acls"),
                "ACLs on Patroni's znodes (set_acls) are not supported by patroni-rs yet",
            );
        }
        let hosts = read_hosts(c, node);
        let auth_data = c
            .string_map(node, "auth_data")
            .map(BTreeMap::into_iter)
            .map(Iterator::collect)
            .unwrap_or_default();
        Self {
            namespace: top_namespace
                .filter(|n| !n.is_empty())
                .unwrap_or(DEFAULT_NAMESPACE)
                .to_owned(),
            hosts,
            auth_data,
        }
    }

    /// The path every znode of cluster `scope` lives under: `/<namespace>/<scope>`, repeated
    /// slashes collapsed and no trailing slash (Patroni's `_base_path`).
    pub fn base_path(&self, scope: &str) -> String {
        collapse_slashes(&format!("/{}/{}", self.namespace, scope))
    }

    /// The connect string of the ensemble: `host:port,host:port`.
    pub fn connect_string(&self) -> String {
        self.hosts.join(",")
    }
}

/// `hosts`: required, a list or one comma-separated string; every item `host[:port]`.
fn read_hosts(c: &mut Checker, node: &Node<'_>) -> Vec<String> {
    if !node.exists() {
        return Vec::new();
    }
    let path = node.path_of("hosts");
    let items = match node.get("hosts") {
        None => {
            c.error(&path, "missing required setting");
            return Vec::new();
        }
        Some(Value::String(s)) => s.split(',').map(|h| h.trim().to_owned()).collect(),
        Some(_) => c.string_list(node, "hosts").unwrap_or_default(),
    };
    let mut hosts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match host_port(item) {
            Ok(h) => hosts.push(h),
            Err(why) => c.error(format!("{path}.{i}"), why),
        }
    }
    if hosts.is_empty() && items.iter().all(|i| host_port(i).is_ok()) {
        c.error(&path, "expected at least one host:port");
    }
    hosts
}

/// One `host[:port]` item as `host:port` (IPv6 in brackets).
fn host_port(item: &str) -> Result<String, String> {
    let item = item.trim();
    if item.is_empty() {
        return Err("expected host:port, got an empty item".into());
    }
    if item.contains('/') {
        return Err(format!(
            "expected host:port, got {item:?} (a chroot path in hosts is not supported)"
        ));
    }
    let (host, port) = match item.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((h, "")) => (format!("[{h}]"), None),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (format!("[{h}]"), Some(p)),
                None => return Err(format!("expected host:port, got {item:?}")),
            },
            None => return Err(format!("expected host:port, got {item:?}")),
        },
        None => match item.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p)),
            Some(_) => return Err(format!("an IPv6 host goes in brackets: {item:?}")),
            None => (item.to_owned(), None),
        },
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("expected host:port, got {item:?}"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("expected a port between 1 and 65535, got {p:?}"))?,
    };
    Ok(format!("{host}:{port}"))
}

fn collapse_slashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if ch == '/' && out.ends_with('/') {
            continue;
        }
        out.push(ch);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(doc: &Value, top_namespace: Option<&str>) -> (ZookeeperConfig, Checker) {
        let mut c = Checker::default();
        let root = Node::root(doc);
        let node = c.section(&root, "zookeeper", crate::validate::Presence::Required);
        (ZookeeperConfig::read(&mut c, &node, top_namespace), c)
    }

    /// `hosts` reads as a list or a comma string; a missing port is 2181.
    #[test]
    fn hosts_read_as_a_list_or_a_comma_string() {
        for hosts in [
            json!("zk1:2181, zk2 ,[::1]:2182"),
            json!(["zk1:2181", "zk2", "[::1]:2182"]),
        ] {
            let (z, c) = read(&json!({"zookeeper": {"hosts": hosts}}), None);
            assert!(c.errors.is_empty(), "{:?}", c.errors);
            assert_eq!(z.hosts, ["zk1:2181", "zk2:2181", "[::1]:2182"]);
            assert_eq!(z.connect_string(), "zk1:2181,zk2:2181,[::1]:2182");
            assert_eq!(z.base_path("demo"), "/service/demo");
        }
    }

    /// The top-level namespace is the first path component, slashes collapsed.
    #[test]
    fn namespace_prefixes_the_base_path() {
        let (z, _) = read(&json!({"zookeeper": {"hosts": "zk:2181"}}), Some("/db//"));
        assert_eq!(z.base_path("demo"), "/db/demo");
        let (z, _) = read(&json!({"zookeeper": {"hosts": "zk:2181"}}), Some("db"));
        assert_eq!(z.base_path("demo"), "/db/demo");
    }

    /// `auth_data` is kept as (scheme, credential) pairs.
    #[test]
    fn auth_data_is_kept() {
        let (z, c) = read(
            &json!({"zookeeper": {"hosts": "zk", "auth_data": {"digest": "u:p"}}}),
            None,
        );
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(z.auth_data, [("digest".to_owned(), "u:p".to_owned())]);
    }

    /// Bad hosts, TLS and ACL settings are errors naming the setting.
    #[test]
    fn unsupported_and_invalid_settings_are_refused_by_name() {
        let (_, c) = read(
            &json!({"zookeeper": {
                "hosts": ["zk:0", "zk:x", "", "zk:2181/chroot"],
                "use_ssl": true, "cacert": "/ca", "set_acls": {"admin": ["ALL"]},
            }}),
            None,
        );
        let paths: Vec<&str> = c.errors.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "zookeeper.use_ssl",
                "zookeeper.cacert",
                "zookeeper.set_acls",
                "zookeeper.hosts.0",
                "zookeeper.hosts.1",
                "zookeeper.hosts.2",
                "zookeeper.hosts.3",
            ],
            "{:?}",
            c.errors
        );
        let (_, c) = read(&json!({"zookeeper": {"use_ssl": false}}), None);
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert_eq!(c.errors[0].path, "zookeeper.hosts");
    }
}
