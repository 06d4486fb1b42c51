//! The `etcd3:` section (and `PATRONI_ETCD3_*`): how this member reaches its etcd cluster.
//!
//! Read as Patroni 4 reads it (`patroni/dcs/etcd.py` `get_etcd_client`, `patroni/validator.py`
//! `validate_etcd`): one of `host`, `hosts`, `url`, `proxy` (or `srv`/`srv_suffix`) says where
//! etcd is; `protocol` (`http` by default) applies to `host`/`hosts`; `url` and `proxy` carry
//! their own scheme (and may carry `user:password@`); `username`/`password` authenticate;
//! `cacert`, `cert` and `key` configure TLS. Patroni's precedence is kept: `proxy` wins over
//! `url`, which wins over `hosts`, which wins over `host`. A `proxy` is used alone (Patroni's
//! `use_proxies`); otherwise the etcd cluster's member list is discovered from the first
//! endpoints that answer.
//!
//! The top-level `namespace` (default `/service`) is the first component of every key,
//! `/<namespace>/<scope>/...`, with repeated slashes collapsed as Patroni does.
//!
//! Not implemented yet, and refused with an error naming the setting (never read and ignored):
//! DNS SRV discovery (`srv`, `srv_suffix`, and Patroni's aliases `discovery_srv`,
//! `srv_domain`).

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

/// Settings this build recognises but does not implement: refused by name.
const NOT_IMPLEMENTED: [&str; 4] = ["srv", "srv_suffix", "discovery_srv", "srv_domain"];

/// Typed `etcd3:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etcd3Config {
    /// The top-level `namespace`, the first component of every key; default
    /// [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// Client URLs to try first (`http://host:port`), in order.
    pub endpoints: Vec<String>,
    /// `proxy` was given: use only these endpoints, never the discovered member list.
    pub use_proxies: bool,
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

// === impl Etcd3Config ===

impl Etcd3Config {
    /// Reads the section at `node`; `top_namespace` is the top-level `namespace`, if set.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>, top_namespace: Option<&str>) -> Self {
        c.warn_unknown(node, &KNOWN_KEYS);
        for key in NOT_IMPLEMENTED {
            if node.has(key) {
                c.error(
                    node.path_of(key),
                    "DNS SRV discovery of etcd is not supported by patroni-rs yet; \
                     list the endpoints in etcd3.hosts instead",
                );
            }
        }
        let where_keys = ["host", "hosts", "url", "proxy"];
        if node.exists()
            && !where_keys.iter().any(|k| node.has(k))
            && !NOT_IMPLEMENTED.iter().any(|k| node.has(k))
        {
            c.error(
                node.path(),
                "missing required setting: one of host, hosts, srv, srv_suffix, url, proxy",
            );
        }
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

    /// Every mistake names its setting; SRV discovery is refused by name.
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
        let (_, errors) = read(json!({"srv": "example.org"}), None);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("etcd3.srv: DNS SRV discovery"),
            "{errors:?}"
        );
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
