//! The `etcd3:` section (and `PATRONI_ETCD3_*`): how this member reaches its etcd cluster.
//!
//! Read as Patroni 4 reads it (`patroni/dcs/etcd.py` `get_etcd_client`, `patroni/validator.py`
//! `validate_etcd`): one of `host`, `hosts`, `url`, `proxy` (or `srv`/`srv_suffix`) says where
//! etcd is; `protocol` (`http` by default) applies to `host`/`hosts`; `url` and `proxy` carry
//! their own scheme (and may carry `user:password@`); `username`/`password` authenticate;
//! `cacert`, `cert` and `key` configure TLS. Patroni's precedence is kept: `proxy` wins over
//! everything (`srv` included), `url` wins over `hosts`, which wins over `host`. A `proxy` is
//! used alone (Patroni's `use_proxies`); otherwise the etcd cluster's member list is
//! discovered from the first endpoints that answer.
//!
//! `srv` (Patroni's aliases `discovery_srv` and `srv_domain`, the last one given winning as in
//! Patroni's `get_etcd_client`) names a DNS domain whose SRV records list the etcd cluster;
//! `srv_suffix` selects records such as `_etcd-client-<suffix>._tcp.<srv>`. The records are
//! resolved at run time (`patroni_dcs::etcd3`); `host`/`hosts`/`url` are then only used when
//! the domain has no usable records, as in Patroni's `_get_machines_cache_from_config`.
//!
//! The top-level `namespace` (default `/service`) is the first component of every key,
//! `/<namespace>/<scope>/...`, with repeated slashes collapsed as Patroni does.

use std::path::PathBuf;

use crate::validate::{Checker, Node, Presence};

/// etcd's client port when a host has none.
pub const DEFAULT_PORT: u16 = 2379;
/// The default top-level namespace of Patroni's keys.
pub const DEFAULT_NAMESPACE: &str = "/service";

/// Settings of the `etcd3` section Patroni's validator and client read.
const KNOWN_KEYS: [&str; 17] = [
    "host",
    "hosts",
    "port",
    "url",
    "proxy",
    "srv",
    "srv_suffix",
    "discovery_srv",
    "srv_domain",
    "protocol",
    "username",
    "password",
    "cacert",
    "cert",
    "key",
    "use_proxies",
    "verify",
];

/// Settings naming the SRV domain, in the order Patroni applies them (a later one wins).
const SRV_KEYS: [&str; 3] = ["srv", "discovery_srv", "srv_domain"];

/// Typed `etcd3:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etcd3Config {
    /// The top-level `namespace`, the first component of every key; default
    /// [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// Client URLs to try first (`http://host:port`), in order.
    pub endpoints: Vec<String>,
    /// `proxy` was given: use only these endpoints, never the discovered member list (nor
    /// [`srv`](Self::srv)).
    pub use_proxies: bool,
    /// DNS SRV discovery: the etcd cluster is found through the SRV records of this domain;
    /// [`endpoints`](Self::endpoints) are used only when it has none. `None` with `proxy`.
    pub srv: Option<SrvDiscovery>,
    /// User to authenticate as, with [`password`](Self::password).
    pub username: Option<String>,
    /// Password of [`username`](Self::username).
    pub password: Option<String>,
    /// CA bundle that signed the etcd servers' certificates.
    pub cacert: Option<PathBuf>,
    /// Client certificate, with [`key`](Self::key).
    pub cert: Option<PathBuf>,
    /// Private key of [`cert`](Self::cert).
    pub key: Option<PathBuf>,
}

/// Where DNS SRV discovery looks (`etcd3.srv`, `etcd3.srv_suffix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvDiscovery {
    /// The domain whose `_etcd…._tcp.<domain>` records are looked up.
    pub domain: String,
    /// Appended to each record's service name: `_etcd-client-<suffix>._tcp.<domain>`.
    pub suffix: Option<String>,
}

// === impl Etcd3Config ===

impl Etcd3Config {
    /// Reads the section at `node`; `top_namespace` is the top-level `namespace`, if set.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>, top_namespace: Option<&str>) -> Self {
        c.warn_unknown(node, &KNOWN_KEYS);
        let where_keys = ["host", "hosts", "url", "proxy", "srv_suffix"];
        if node.exists()
            && !where_keys.iter().any(|k| node.has(k))
            && !SRV_KEYS.iter().any(|k| node.has(k))
        {
            c.error(
                node.path(),
                "missing required setting: one of host, hosts, srv, srv_suffix, url, proxy",
            );
        }
        let srv = read_srv(c, node);
        let protocol = match c.string(node, "protocol", Presence::Optional) {
            None => "http".to_owned(),
            Some(p) if p == "http" || p == "https" => p,
            Some(p) => {
                c.error(
                    node.path_of("protocol"),
                    format!("expected \"http\" or \"https\", got {p:?}"),
                );
                "http".to_owned()
            }
        };
        let mut username = c.string(node, "username", Presence::Optional);
        let mut password = c.string(node, "password", Presence::Optional);
        let default_port = match node.get("port") {
            Some(v) => c
                .int_value(
                    &node.path_of("port"),
                    v,
                    crate::validate::IntRule::between(1, 65535),
                )
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(DEFAULT_PORT),
            None => DEFAULT_PORT,
        };
        let mut use_proxies = c.boolean_or(node, "use_proxies", false);
        let mut endpoints = Vec::new();
        let url_key = if node.has("proxy") {
            use_proxies = true;
            Some("proxy")
        } else if node.has("url") {
            Some("url")
        } else {
            None
        };
        if let Some(key) = url_key {
            if let Some(text) = c.string(node, key, Presence::Optional) {
                match parse_url(&text) {
                    Ok(url) => {
                        endpoints.push(url.endpoint);
                        username = url.username.or(username);
                        password = url.password.or(password);
                    }
                    Err(why) => c.error(node.path_of(key), why),
                }
            }
        } else if node.has("hosts") {
            let items = match node.get("hosts") {
                Some(serde_json::Value::String(s)) => {
                    Some(s.split(',').map(|h| h.trim().to_owned()).collect())
                }
                _ => c.string_list(node, "hosts"),
            };
            for (i, item) in items.unwrap_or_default().iter().enumerate() {
                match split_host_port(item, default_port) {
                    Ok((host, port)) => endpoints.push(endpoint(&protocol, &host, port)),
                    Err(why) => c.error(format!("{}.{i}", node.path_of("hosts")), why),
                }
            }
        } else if let Some(host) = c.string(node, "host", Presence::Optional) {
            match split_host_port(&host, default_port) {
                Ok((host, port)) => endpoints.push(endpoint(&protocol, &host, port)),
                Err(why) => c.error(node.path_of("host"), why),
            }
        }
        let path = |c: &mut Checker, key: &str| {
            c.string(node, key, Presence::Optional)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        };
        let (cacert, cert, key) = (path(c, "cacert"), path(c, "cert"), path(c, "key"));
        if key.is_some() && cert.is_none() {
            c.error(node.path_of("key"), "a client key needs etcd3.cert as well");
        }
        if cert.is_some() && key.is_none() {
            c.error(
                node.path_of("cert"),
                "a client certificate needs etcd3.key as well",
            );
        }
        if username.is_some() != password.is_some() {
            c.error(
                node.path(),
                "username and password go together: set both or neither",
            );
        }
        Self {
            srv: srv.filter(|_| !use_proxies),
            namespace: top_namespace
                .filter(|n| !n.is_empty())
                .unwrap_or(DEFAULT_NAMESPACE)
                .to_owned(),
            endpoints,
            use_proxies,
            username,
            password,
            cacert,
            cert,
            key,
        }
    }

    /// The path every key of cluster `scope` starts with: `/<namespace>/<scope>`, repeated
    /// slashes collapsed (Patroni's `_base_path`).
    pub fn base_path(&self, scope: &str) -> String {
        let joined = format!("/{}/{}", self.namespace, scope);
        let mut out = String::with_capacity(joined.len());
        for ch in joined.chars() {
            if !(ch == '/' && out.ends_with('/')) {
                out.push(ch);
            }
        }
        out
    }

    /// Whether the endpoints are reached with TLS.
    pub fn uses_tls(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
    }
}

/// The SRV domain and suffix of `node`, if a domain is named. `srv_suffix` without a domain
/// is an error when nothing else says where etcd is (Patroni's validator accepts it, and its
/// client then stops with "Neither srv, hosts, host nor url are defined"), else a warning
/// (Patroni ignores it).
fn read_srv(c: &mut Checker, node: &Node<'_>) -> Option<SrvDiscovery> {
    let mut domain = None;
    for key in SRV_KEYS {
        if node.has(key) {
            match c.string(node, key, Presence::Optional) {
                Some(d) if !d.trim().is_empty() => domain = Some(d.trim().to_owned()),
                _ => c.error(node.path_of(key), "expected a DNS domain"),
            }
        }
    }
    let suffix = c
        .string(node, "srv_suffix", Presence::Optional)
        .filter(|s| !s.is_empty());
    if suffix.is_some() && domain.is_none() {
        let message = "srv_suffix needs etcd3.srv, the domain it applies to";
        if ["host", "hosts", "url", "proxy"]
            .iter()
            .any(|k| node.has(k))
        {
            c.warn(node.path_of("srv_suffix"), format!("{message}; ignored"));
        } else {
            c.error(node.path_of("srv_suffix"), message);
        }
    }
    Some(SrvDiscovery {
        domain: domain?,
        suffix,
    })
}

/// `protocol://host:port`, an IPv6 host in brackets.
fn endpoint(protocol: &str, host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("{protocol}://[{host}]:{port}")
    } else {
        format!("{protocol}://{host}:{port}")
    }
}

/// Patroni's `split_host_port`: the port after the last `:` (default `default_port`), IPv6 hosts
/// in brackets.
fn split_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let text = text.trim();
    let expected = || format!("expected \"host[:port]\" (port 1-65535), got {text:?}");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(expected)?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(expected()),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => (text, None),
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(expected)?,
        None => default_port,
    };
    if host.is_empty() {
        return Err(expected());
    }
    Ok((host.to_owned(), port))
}

/// A `url`/`proxy` setting taken apart.
struct ParsedUrl {
    endpoint: String,
    username: Option<String>,
    password: Option<String>,
}

/// `http(s)://[user[:password]@]host[:port][/...]`, port 2379 by default (Patroni's
/// `urlparse` use in `get_etcd_client`).
fn parse_url(text: &str) -> Result<ParsedUrl, String> {
    let bad = || format!("expected \"http(s)://[user:password@]host[:port]\", got {text:?}");
    let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport, DEFAULT_PORT).map_err(|_| bad())?;
    let (username, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (Some(user.to_owned()), Some(pass.to_owned())),
            None => (Some(u.to_owned()), None),
        },
        None => (None, None),
    };
    Ok(ParsedUrl {
        endpoint: endpoint(scheme, &host, port),
        username: username.filter(|u| !u.is_empty()),
        password,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(section: serde_json::Value, ns: Option<&str>) -> (Etcd3Config, Vec<String>) {
        let doc = json!({ "etcd3": section });
        let mut c = Checker::default();
        let root = Node::root(&doc);
        let node = c.section(&root, "etcd3", Presence::Required);
        let cfg = Etcd3Config::read(&mut c, &node, ns);
        let errors = c
            .errors
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        (cfg, errors)
    }

    /// `hosts` as a string or a list, ports defaulted, `protocol` applied.
    #[test]
    fn hosts_become_endpoints() {
        let (cfg, errors) = read(json!({"hosts": "10.0.0.1:2379, etcd-b,[::1]:2380"}), None);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            cfg.endpoints,
            [
                "http://10.0.0.1:2379",
                "http://etcd-b:2379",
                "http://[::1]:2380"
            ]
        );
        let (cfg, _) = read(
            json!({"hosts": ["a:1", "b:2"], "protocol": "https", "cacert": "/ca.pem"}),
            Some("/pg/"),
        );
        assert_eq!(cfg.endpoints, ["https://a:1", "https://b:2"]);
        assert!(cfg.uses_tls());
        assert_eq!(cfg.base_path("demo"), "/pg/demo");
        assert_eq!(cfg.cacert, Some(PathBuf::from("/ca.pem")));
    }

    /// Patroni's precedence: proxy over url over hosts over host; credentials from the URL.
    #[test]
    fn proxy_and_url_win_and_carry_credentials() {
        let (cfg, errors) = read(
            json!({"proxy": "http://u:p@proxy:2379", "url": "http://x:1", "host": "h:2"}),
            None,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cfg.endpoints, ["http://proxy:2379"]);
        assert!(cfg.use_proxies);
        assert_eq!(
            (cfg.username.as_deref(), cfg.password.as_deref()),
            (Some("u"), Some("p"))
        );
        let (cfg, _) = read(json!({"url": "https://etcd/v3", "host": "h:2"}), None);
        assert_eq!(cfg.endpoints, ["https://etcd:2379"]);
        assert!(!cfg.use_proxies);
        assert_eq!(cfg.base_path("demo"), "/service/demo");
    }

    /// `srv` (or its aliases, the last one winning) with `srv_suffix` is SRV discovery, the
    /// hosts kept as the fallback; `proxy` turns discovery off (Patroni's precedence).
    #[test]
    fn srv_is_discovery_with_the_hosts_as_fallback() {
        let (cfg, errors) = read(
            json!({"srv": "etcd.example.org", "srv_suffix": "prod", "hosts": "a:1"}),
            None,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            cfg.srv,
            Some(SrvDiscovery {
                domain: "etcd.example.org".into(),
                suffix: Some("prod".into())
            })
        );
        assert_eq!(cfg.endpoints, ["http://a:1"]);
        let (cfg, errors) = read(json!({"srv": "a.org", "srv_domain": "b.org"}), None);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(cfg.endpoints.is_empty());
        assert_eq!(cfg.srv.map(|s| s.domain).as_deref(), Some("b.org"));
        let (cfg, errors) = read(json!({"discovery_srv": "c.org"}), None);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cfg.srv.map(|s| s.domain).as_deref(), Some("c.org"));
        let (cfg, _) = read(json!({"srv": "a.org", "proxy": "http://p:2379"}), None);
        assert_eq!((cfg.srv, cfg.use_proxies), (None, true));
    }

    /// Every mistake names its setting.
    #[test]
    fn mistakes_are_errors_naming_the_setting() {
        let (_, errors) = read(json!({"protocol": "ftp"}), None);
        assert_eq!(
            errors,
            [
                "etcd3: missing required setting: one of host, hosts, srv, srv_suffix, url, proxy",
                "etcd3.protocol: expected \"http\" or \"https\", got \"ftp\""
            ]
        );
        let (_, errors) = read(json!({"srv_suffix": "a"}), None);
        assert_eq!(
            errors,
            ["etcd3.srv_suffix: srv_suffix needs etcd3.srv, the domain it applies to"]
        );
        let (_, errors) = read(json!({"srv": ""}), None);
        assert_eq!(errors, ["etcd3.srv: expected a DNS domain"]);
        let (_, errors) = read(json!({"hosts": ["a:0"]}), None);
        assert_eq!(
            errors,
            ["etcd3.hosts.0: expected \"host[:port]\" (port 1-65535), got \"a:0\""]
        );
        let (_, errors) = read(json!({"host": "a:99999", "cert": "/c"}), None);
        assert_eq!(
            errors,
            [
                "etcd3.host: expected \"host[:port]\" (port 1-65535), got \"a:99999\"",
                "etcd3.cert: a client certificate needs etcd3.key as well"
            ]
        );
        let (_, errors) = read(json!({"url": "etcd:2379", "username": "u"}), None);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
