//! What every command starts from: the configuration (file from `-c`,
//! `PATRONICTL_CONFIG_FILE` or `~/.config/patroni/patronictl.yaml`, plus `PATRONI_*`
//! variables), a read-only DCS for the cluster named on the command line (opened with
//! [`patroni_dcs::connect`], the backend the configuration selects), and the REST client for
//! members' APIs.
//!
//! # Guarantees
//! Opening the DCS only lists and watches: patronictl never publishes a member key nor
//! patches a pod. Writes happen only where a command asks for them (`edit-config`,
//! `remove`, the DCS fallbacks of `switchover`/`flush`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use patroni_api::{ClusterDocument, ClusterView, GlobalFlags};
use patroni_config::{Config, DcsConfig, Environment};
use patroni_core::Cluster;
use patroni_dcs::{AnyDcs, Dcs, Settings};
use serde_json::{Value, json};

use crate::cli::GroupArg;
use crate::http::{ClientTls, Rest};

/// Lock ttl the read-only DCS is opened with (it never holds the lock).
const CTL_TTL: Duration = Duration::from_secs(30);
/// Budget of one DCS operation (Patroni's default `retry_timeout`).
const CTL_RETRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Patroni's default `loop_wait`.
const DEFAULT_LOOP_WAIT: Duration = Duration::from_secs(10);

/// The loaded configuration and clients.
pub struct Ctl {
    /// `scope` from the configuration, if any.
    pub scope: Option<String>,
    /// The configuration's DCS choice; `None` when no DCS is configured.
    dcs: Option<DcsConfig>,
    /// The environment offers in-cluster DCS credentials (read once, in `main`).
    in_cluster: bool,
    /// REST client for members' APIs.
    pub rest: Rest,
    /// The one snapshot of the process environment (`main`'s): libpq's and `$EDITOR`.
    pub env: Environment,
}

/// One cluster opened in the DCS.
pub struct Opened {
    /// Cluster name.
    pub name: String,
    /// The DCS client (read-only unless a command writes).
    pub dcs: AnyDcs,
}

/// The default configuration path: `$XDG_CONFIG_HOME/patroni/patronictl.yaml` or
/// `~/.config/patroni/patronictl.yaml` (click's `get_app_dir`).
pub fn default_config_path(env: &Environment) -> Option<PathBuf> {
    let base = env
        .get("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".config")))?;
    Some(base.join("patroni").join("patronictl.yaml"))
}

/// What `-d/--dcs-url` replaces in the configuration (Patroni's `parse_dcs`): every DCS
/// section by `etcd3: {host: HOST:PORT}`, and `namespace` when the URL has a path.
#[derive(Debug, Clone, PartialEq)]
pub struct DcsOverride {
    /// The `etcd3` section.
    pub etcd3: Value,
    /// `/NAMESPACE` from the URL's path, if any.
    pub namespace: Option<String>,
}

/// Reads `-d/--dcs-url` `DCS://HOST:PORT/NAMESPACE` as Patroni does: `etcd3` is the one scheme
/// patroni-rs supports there (host `localhost` and port 2379 by default); every other scheme
/// Patroni accepts names a DCS patroni-rs does not support.
///
/// # Errors
/// Any URL whose scheme is not `etcd3`.
pub fn check_dcs_url(url: Option<&str>) -> anyhow::Result<Option<DcsOverride>> {
    let Some(url) = url else { return Ok(None) };
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or(("etcd", url.trim_start_matches("//")));
    if scheme != "etcd3" {
        bail!(
            "--dcs-url {url}: the \"{scheme}\" DCS is not supported; patroni-rs supports only kubernetes and etcd3, configured in the configuration file"
        )
    }
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(format!("/{p}"))),
        None => (rest, None),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    let host = if host.is_empty() { "localhost" } else { host };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| anyhow::anyhow!("--dcs-url {url}: invalid port {p:?}"))?,
        None => 2379,
    };
    Ok(Some(DcsOverride {
        etcd3: json!({"host": format!("{host}:{port}")}),
        namespace: path
            .filter(|p| p.trim() != "/")
            .map(|p| p.trim().to_string()),
    }))
}

/// Fills what a member's configuration requires but patronictl does not use, so that a
/// patronictl-only file (`scope` + `kubernetes`) validates: the `postgresql` section is
/// replaced by a placeholder (patronictl never reads it), `restapi` gets addresses, and a
/// missing DCS section becomes an empty `kubernetes` one. Returns whether a DCS was configured.
fn pad_for_validation(raw: &mut Value) -> bool {
    let Some(map) = raw.as_object_mut() else {
        return false;
    };
    map.entry("name").or_insert(json!("patronictl"));
    let restapi = map.entry("restapi").or_insert(json!({}));
    if !restapi.is_object() {
        *restapi = json!({});
    }
    if let Some(r) = restapi.as_object_mut() {
        r.entry("listen").or_insert(json!("127.0.0.1:8008"));
        r.entry("connect_address")
            .or_insert(json!("127.0.0.1:8008"));
    }
    map.insert(
        "postgresql".into(),
        json!({
            "data_dir": "/nonexistent",
            "listen": "127.0.0.1:5432",
            "connect_address": "127.0.0.1:5432",
            "authentication": {
                "superuser": {"username": "postgres"},
                "replication": {"username": "replicator"}
            }
        }),
    );
    let has_dcs = patroni_config::DcsKind::ALL
        .iter()
        .any(|k| map.contains_key(k.section()));
    if !has_dcs {
        map.insert("kubernetes".into(), json!({"labels": {}}));
    }
    has_dcs
}

// === impl Ctl ===

impl Ctl {
    /// Loads the configuration as patronictl does.
    ///
    /// # Errors
    /// A named file that cannot be read; an unusable configuration; a DCS other than Kubernetes
    /// and etcd3.
    pub fn load(
        config_file: Option<&Path>,
        dcs_url: Option<&str>,
        insecure: bool,
        env: &Environment,
    ) -> anyhow::Result<Self> {
        let dcs_override = check_dcs_url(dcs_url)?;
        let path = match config_file {
            Some(p) => {
                if std::fs::File::open(p).is_err() {
                    bail!(
                        "Provided config file {} not existing or no read rights. Check the -c/--config-file parameter",
                        p.display()
                    );
                }
                Some(p.to_path_buf())
            }
            None => default_config_path(env).filter(|p| std::fs::File::open(p).is_ok()),
        };
        let mut raw = match &path {
            Some(p) => {
                patroni_config::source::load_raw(&patroni_config::OsFilesystem, Some(p), env)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("read {}", p.display()))?
                    .value
            }
            None => patroni_config::environment_configuration(env).value,
        };
        if raw.is_null() {
            raw = json!({});
        }
        if let (Some(o), Some(map)) = (dcs_override, raw.as_object_mut()) {
            // Patroni's `load_config`: the URL's DCS replaces every DCS section.
            for kind in patroni_config::DcsKind::ALL {
                map.remove(kind.section());
            }
            map.insert("etcd3".into(), o.etcd3);
            if let Some(ns) = o.namespace {
                map.insert("namespace".into(), json!(ns));
            }
        }
        let has_scope = raw.get("scope").is_some();
        if !has_scope {
            raw["scope"] = json!("patronictl-no-scope");
        }
        let has_dcs = pad_for_validation(&mut raw);
        let (config, _warnings) = Config::from_value(&raw).map_err(|invalid| {
            let problems: Vec<String> = invalid.errors.iter().map(|p| p.to_string()).collect();
            anyhow::anyhow!("invalid configuration: {}", problems.join("; "))
        })?;
        let in_cluster = patroni_dcs::in_cluster_offered(env);
        let mut ctl = Self::from_config(config, has_scope, has_dcs, insecure, in_cluster)?;
        ctl.env = env.clone();
        Ok(ctl)
    }

    fn from_config(
        config: Config,
        has_scope: bool,
        has_dcs: bool,
        insecure: bool,
        in_cluster: bool,
    ) -> anyhow::Result<Self> {
        let kind = config.dcs.kind();
        if !patroni_dcs::supports(kind) {
            bail!(
                "the \"{kind}\" DCS is not supported; patroni-rs supports only kubernetes and etcd3"
            )
        }
        let auth = config
            .ctl
            .authentication
            .clone()
            .or_else(|| config.restapi.authentication.clone());
        let tls = ClientTls {
            insecure: insecure || config.ctl.insecure,
            verify_hostname: true,
            cacert: config
                .ctl
                .cacert
                .clone()
                .or_else(|| config.restapi.cafile.clone()),
            certfile: config.ctl.certfile.clone(),
            keyfile: config.ctl.keyfile.clone(),
        };
        let rest = Rest::new(auth.map(|a| (a.username, a.password)), &tls)?;
        Ok(Self {
            scope: has_scope.then_some(config.scope),
            dcs: has_dcs.then_some(config.dcs),
            in_cluster,
            rest,
            env: Environment::new(),
        })
    }

    /// The cluster name: the argument, else `scope`.
    ///
    /// # Errors
    /// Neither is set.
    pub fn cluster_name(&self, arg: Option<&str>) -> anyhow::Result<String> {
        match arg.map(String::from).or_else(|| self.scope.clone()) {
            Some(n) => Ok(n),
            None => bail!("Missing argument 'CLUSTER_NAME'"),
        }
    }

    /// Opens the DCS of `name` (read-only: caches only).
    ///
    /// # Errors
    /// `--group` other than 0; no DCS configured; no usable DCS client configuration.
    pub async fn open(&self, name: &str, group: &GroupArg) -> anyhow::Result<Opened> {
        if let Some(g) = group.group
            && g != 0
        {
            bail!("Citus groups are not supported by patroni-rs (--group {g})");
        }
        let Some(choice) = self.dcs.clone() else {
            bail!("Can not find suitable configuration of distributed configuration store");
        };
        let backend = patroni_dcs::backend_name(choice.kind());
        let dcs = patroni_dcs::connect(Settings {
            scope: name.to_string(),
            name: "patronictl".into(),
            dcs: choice,
            ttl: CTL_TTL,
            loop_wait: DEFAULT_LOOP_WAIT,
            retry_timeout: CTL_RETRY_TIMEOUT,
            kubeconfig: None,
            in_cluster: self.in_cluster,
        })
        .await
        .with_context(|| format!("connect to {backend}"))?;
        Ok(Opened {
            name: name.to_string(),
            dcs,
        })
    }
}

// === impl Opened ===

impl Opened {
    /// A fresh view of the cluster.
    ///
    /// # Errors
    /// The DCS cannot be read.
    pub async fn cluster(&self) -> anyhow::Result<Cluster> {
        self.dcs.get_cluster().await.with_context(|| {
            format!(
                "read the cluster from {}",
                patroni_dcs::backend_name(self.dcs.kind())
            )
        })
    }
}

/// The dynamic-configuration flags of `cluster` (Patroni's defaults without a `/config`).
pub fn flags(cluster: &Cluster) -> GlobalFlags {
    GlobalFlags::resolve(Some(cluster), &GlobalFlags::default())
}

/// `loop_wait` of the cluster's configuration, else 10.
pub fn loop_wait(cluster: &Cluster) -> u64 {
    flags(cluster).loop_wait
}

/// The `GET /cluster` document of `cluster`, as JSON.
pub fn cluster_json(cluster: &Cluster, name: &str) -> Value {
    let f = flags(cluster);
    let doc = ClusterDocument::from(ClusterView {
        cluster,
        flags: &f,
        scope: name,
    });
    serde_json::to_value(doc).unwrap_or_else(|_| json!({"members": []}))
}

#[cfg(test)]
mod dcs_url_tests {
    use super::*;

    /// `-d etcd3://HOST:PORT/NAMESPACE` as Patroni's `parse_dcs`; other schemes are refused.
    #[test]
    fn dcs_urls_parse_as_patroni_does() {
        let o = check_dcs_url(Some("etcd3://random.com:2399/customnamespace"))
            .expect("etcd3")
            .expect("an override");
        assert_eq!(o.etcd3, json!({"host": "random.com:2399"}));
        assert_eq!(o.namespace.as_deref(), Some("/customnamespace"));
        let o = check_dcs_url(Some("etcd3://:2399"))
            .expect("etcd3")
            .expect("an override");
        assert_eq!(o.etcd3, json!({"host": "localhost:2399"}));
        let o = check_dcs_url(Some("etcd3://etcd/"))
            .expect("etcd3")
            .expect("an override");
        assert_eq!((o.etcd3, o.namespace), (json!({"host": "etcd:2379"}), None));
        assert!(check_dcs_url(None).expect("none").is_none());
        let e = check_dcs_url(Some("etcd://127.0.0.1:2379")).expect_err("etcd v2");
        assert!(
            e.to_string().contains("supports only kubernetes and etcd3"),
            "{e}"
        );
        assert!(check_dcs_url(Some("127.0.0.1:2379")).is_err());
    }
}
