//! The `bootstrap:` section, used only by the member that wins the race to initialise a new
//! cluster: the initial dynamic configuration, and how to create the first data directory.

use serde_json::{Map, Value};

use super::{
    dynamic::{DynamicConfig, SynchronousMode},
    tool_options::{ToolOption, read_tool_options},
};
use crate::validate::{Checker, Node, Presence};

/// Default bootstrap method.
pub const DEFAULT_METHOD: &str = "initdb";

/// `initdb` options Patroni sets itself and refuses from the configuration.
const FORBIDDEN_INITDB_OPTIONS: [&str; 5] = ["pgdata", "nosync", "pwfile", "sync-only", "version"];

/// Typed `bootstrap:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapConfig {
    /// The initial dynamic configuration, typed, with Patroni's defaults filled in.
    pub dcs: DynamicConfig,
    /// `bootstrap.dcs` exactly as written (an empty object when absent): this is what gets
    /// stored in the DCS `config` key when this member initialises the cluster.
    pub dcs_raw: Value,
    /// `initdb`, or the name of a custom bootstrap section under `bootstrap`.
    pub method: String,
    /// The custom method's section (`command`, `no_params`, ...) when `method` is not `initdb`.
    pub method_config: Option<Map<String, Value>>,
    /// Options passed to `initdb`.
    pub initdb: Vec<ToolOption>,
    /// Script run with the superuser connection URL after the first start (`post_bootstrap`,
    /// or its old name `post_init`).
    pub post_bootstrap: Option<String>,
    /// Lines appended to `pg_hba.conf` after `initdb`, when `postgresql.pg_hba` is not set.
    pub pg_hba: Option<Vec<String>>,
}

// === impl BootstrapConfig ===

impl BootstrapConfig {
    /// Reads the optional section at `node`. `citus` makes quorum the default synchronous mode,
    /// as Patroni does for Citus clusters.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>, citus: bool) -> Self {
        let dcs_node = c.section(node, "dcs", Presence::Optional);
        let default_sync = if citus {
            SynchronousMode::Quorum
        } else {
            SynchronousMode::Off
        };
        let dcs = DynamicConfig::read(c, &dcs_node, default_sync);
        let mut dcs_raw = node
            .get("dcs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if citus {
            dcs_raw
                .entry("synchronous_mode")
                .or_insert_with(|| Value::from("quorum"));
        }
        let dcs_raw = Value::Object(dcs_raw);
        let method = c.string_or(node, "method", DEFAULT_METHOD);
        let method_config = read_method(c, node, &method);
        let initdb = read_tool_options(c, node, "initdb");
        for (i, option) in initdb.iter().enumerate() {
            if FORBIDDEN_INITDB_OPTIONS.contains(&option.name()) {
                c.error(
                    format!("{}.{i}", node.path_of("initdb")),
                    format!(
                        "option {:?} is set by Patroni and cannot be configured",
                        option.name()
                    ),
                );
            }
        }
        let post_key = if node.has("post_bootstrap") {
            "post_bootstrap"
        } else {
            "post_init"
        };
        let post_bootstrap = c.string(node, post_key, Presence::Optional);
        if node.has("users") {
            c.warn(
                node.path_of("users"),
                "user creation was removed in Patroni 4.0; ignored (create users in a post_bootstrap \
                 script)",
            );
        }
        Self {
            dcs,
            dcs_raw,
            method,
            method_config,
            initdb,
            post_bootstrap,
            pg_hba: c.string_list(node, "pg_hba"),
        }
    }
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            dcs: DynamicConfig::default(),
            dcs_raw: Value::Object(Map::new()),
            method: DEFAULT_METHOD.to_owned(),
            method_config: None,
            initdb: Vec::new(),
            post_bootstrap: None,
            pg_hba: None,
        }
    }
}

/// A custom method needs a section of its own with a `command`.
fn read_method(c: &mut Checker, node: &Node<'_>, method: &str) -> Option<Map<String, Value>> {
    if method == DEFAULT_METHOD {
        return None;
    }
    let section = c.section(node, method, Presence::Required);
    c.string(&section, "command", Presence::Required);
    node.get(method).and_then(Value::as_object).cloned()
}
