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

/// Checks `-d/--dcs-url`: every scheme Patroni accepts there names a DCS other than Kubernetes.
///
/// # Errors
/// Always, when a URL is given.
pub fn check_dcs_url(url: Option<&str>) -> anyhow::Result<()> {
    let Some(url) = url else { return Ok(()) };
    let scheme = url.split_once("://").map_or("etcd", |(s, _)| s);
    bail!(
        "--dcs-url {url}: the \"{scheme}\" DCS is not supported; patroni-rs supports only kubernetes and etcd3, configured in the configuration file"
    )
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
    /// A named file that cannot be read; an unusable configuration; a DCS other than Kubernetes.
    pub fn load(
        config_file: Option<&Path>,
        dcs_url: Option<&str>,
        insecure: bool,
        env: &Environment,
    ) -> anyhow::Result<Self> {
        check_dcs_url(dcs_url)?;
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
