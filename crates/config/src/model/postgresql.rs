//! The local `postgresql:` section: where Postgres lives, how to reach it, and the users Patroni
//! connects as.
//!
//! Only the local view is typed here. Settings Patroni also takes from dynamic configuration
//! (parameters, `pg_hba`, `use_pg_rewind`, ...) are merged with the DCS copy at run time, so the
//! raw values stay available through [`crate::Loaded::raw`].

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::{Map, Value};

use super::{
    address::{Address, AddressRule},
    tool_options::{ToolOption, read_tool_options},
};
use crate::{
    env::{AUTH_PARAMETERS, POSTGRES_BINARIES},
    validate::{Checker, IntRule, Node, Presence, join},
};

/// Default database Patroni connects to.
pub const DEFAULT_DATABASE: &str = "postgres";
/// Default base name of the generated configuration files (`postgresql.conf`).
pub const DEFAULT_CONFIG_BASE_NAME: &str = "postgresql";
/// Default seconds `pg_ctl` waits for start and stop.
pub const DEFAULT_PG_CTL_TIMEOUT: u64 = 60;
/// Default replica creation method.
pub const DEFAULT_CREATE_REPLICA_METHOD: &str = "basebackup";

/// Typed local `postgresql:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresqlConfig {
    /// `listen_addresses` and `port`; the first host is used for local connections. Required.
    pub listen: Address,
    /// Address advertised in the member's `conn_url`. Required.
    pub connect_address: Address,
    /// Connection pooler address advertised as `proxy_url`, if any.
    pub proxy_address: Option<Address>,
    /// The data directory. Required.
    pub data_dir: PathBuf,
    /// Where configuration files are written; `None` means `data_dir`.
    pub config_dir: Option<PathBuf>,
    /// Base name of `<name>.conf` and `<name>.base.conf`; default [`DEFAULT_CONFIG_BASE_NAME`].
    pub config_base_name: String,
    /// File included instead of `postgresql.base.conf`, if any.
    pub custom_conf: Option<PathBuf>,
    /// Directory of the Postgres binaries; `None` means search `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// Name of each binary (`pg_ctl`, `initdb`, ...); defaults to the binary's own name.
    pub bin_name: BTreeMap<String, String>,
    /// Database Patroni connects to; default [`DEFAULT_DATABASE`].
    pub database: String,
    /// Password file Patroni writes; `None` means `~/pgpass`.
    pub pgpass: Option<PathBuf>,
    /// Users Patroni connects as.
    pub authentication: PgAuthentication,
    /// Postgres settings (GUCs) as written; values are strings, numbers or booleans.
    pub parameters: BTreeMap<String, Value>,
    /// Lines for `pg_hba.conf`, if Patroni manages it.
    pub pg_hba: Option<Vec<String>>,
    /// Lines for `pg_ident.conf`, if Patroni manages it.
    pub pg_ident: Option<Vec<String>>,
    /// Seconds `pg_ctl` waits for start and stop; default [`DEFAULT_PG_CTL_TIMEOUT`].
    pub pg_ctl_timeout: u64,
    /// Use `pg_rewind` to rejoin a diverged former primary.
    pub use_pg_rewind: bool,
    /// Extra `pg_rewind` options.
    pub rewind: Vec<ToolOption>,
    /// Wipe the data directory when `pg_rewind` fails, then clone again.
    pub remove_data_directory_on_rewind_failure: bool,
    /// Wipe the data directory when timelines diverged and rewind is impossible.
    pub remove_data_directory_on_diverged_timelines: bool,
    /// Replica creation methods, in order; default `["basebackup"]`.
    pub create_replica_methods: Vec<String>,
    /// The section of each custom replica method (`postgresql.<method>`:
    /// `command`, `no_leader`, `keep_data`, `no_params`, extra `--key=value`
    /// arguments), by method name.
    pub replica_method_sections: BTreeMap<String, serde_json::Map<String, Value>>,
    /// Extra `pg_basebackup` options.
    pub basebackup: Vec<ToolOption>,
    /// Extra recovery settings.
    pub recovery_conf: BTreeMap<String, Value>,
    /// Scripts run on state changes.
    pub callbacks: Callbacks,
    /// Script run after acquiring the leader lock, before promoting.
    pub pre_promote: Option<String>,
    /// Script run before stopping Postgres.
    pub before_stop: Option<String>,
    /// Connect to the local Postgres through its Unix socket.
    pub use_unix_socket: bool,
    /// Replication connections to the local Postgres use its Unix socket.
    pub use_unix_socket_repl: bool,
    /// Kerberos service name for `primary_conninfo`.
    pub krbsrvname: Option<String>,
}

/// `postgresql.authentication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgAuthentication {
    /// Superuser (required).
    pub superuser: PgUser,
    /// Replication user (required).
    pub replication: PgUser,
    /// User for `pg_rewind` on Postgres 11+; `None` means the superuser.
    pub rewind: Option<PgUser>,
}

/// A Postgres user Patroni connects as.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUser {
    /// Role name.
    pub username: String,
    /// Password, if any.
    pub password: Option<String>,
    /// Other libpq connection parameters (`sslmode`, `sslcert`, `channel_binding`, ...).
    pub params: BTreeMap<String, String>,
}

impl std::fmt::Debug for PgUser {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUser")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("params", &self.params)
            .finish()
    }
}

/// `postgresql.callbacks`: commands run with `<action> <role> <scope>` appended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Callbacks {
    /// After Postgres starts.
    pub on_start: Option<String>,
    /// After Postgres stops.
    pub on_stop: Option<String>,
    /// After Postgres restarts.
    pub on_restart: Option<String>,
    /// After a configuration reload.
    pub on_reload: Option<String>,
    /// After a role change (promote, demote).
    pub on_role_change: Option<String>,
}

// === impl PostgresqlConfig ===

impl PostgresqlConfig {
    /// Reads the required `postgresql` section. `None` when a required setting is missing or bad
    /// (the problems are recorded).
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>) -> Option<Self> {
        let listen = c.address(node, "listen", Presence::Required, AddressRule::ListenMany);
        let connect_address = c.address(
            node,
            "connect_address",
            Presence::Required,
            AddressRule::Connect,
        );
        let proxy_address = c.address(
            node,
            "proxy_address",
            Presence::Optional,
            AddressRule::Connect,
        );
        let data_dir = c.string(node, "data_dir", Presence::Required);
        if data_dir.as_deref() == Some("") {
            c.error(node.path_of("data_dir"), "must not be empty");
        }
        let path =
            |c: &mut Checker, key| c.string(node, key, Presence::Optional).map(PathBuf::from);
        // Read every field before giving up on a missing one, so all problems are found.
        let authentication = read_authentication(c, node);
        let config_dir = path(c, "config_dir");
        let config_base_name = c.string_or(node, "config_base_name", DEFAULT_CONFIG_BASE_NAME);
        let custom_conf = path(c, "custom_conf");
        let bin_dir = path(c, "bin_dir").filter(|p| !p.as_os_str().is_empty());
        let bin_name = read_bin_names(c, node);
        let database = c.string_or(node, "database", DEFAULT_DATABASE);
        let pgpass = path(c, "pgpass");
        let parameters = read_parameters(c, node);
        let pg_hba = c.string_list(node, "pg_hba");
        let pg_ident = c.string_list(node, "pg_ident");
        let pg_ctl_timeout = c
            .int(
                node,
                "pg_ctl_timeout",
                Presence::Optional,
                IntRule::at_least(0),
            )
            .map_or(DEFAULT_PG_CTL_TIMEOUT, i64::unsigned_abs);
        let use_pg_rewind = c.boolean_or(node, "use_pg_rewind", false);
        let rewind = read_tool_options(c, node, "rewind");
        let remove_data_directory_on_rewind_failure =
            c.boolean_or(node, "remove_data_directory_on_rewind_failure", false);
        let remove_data_directory_on_diverged_timelines =
            c.boolean_or(node, "remove_data_directory_on_diverged_timelines", false);
        let create_replica_methods = read_replica_methods(c, node);
        let replica_method_sections = create_replica_methods
            .iter()
            .filter_map(|m| Some((m.clone(), node.get(m)?.as_object()?.clone())))
            .collect();
        let basebackup = read_tool_options(c, node, "basebackup");
        let recovery_conf = c.map(node, "recovery_conf").unwrap_or_default();
        let callbacks = read_callbacks(c, node);
        let pre_promote = c.string(node, "pre_promote", Presence::Optional);
        let before_stop = c.string(node, "before_stop", Presence::Optional);
        let use_unix_socket = c.boolean_or(node, "use_unix_socket", false);
        let use_unix_socket_repl = c.boolean_or(node, "use_unix_socket_repl", false);
        let krbsrvname = c.string(node, "krbsrvname", Presence::Optional);
        Some(Self {
            listen: listen?,
            connect_address: connect_address?,
            proxy_address,
            data_dir: PathBuf::from(data_dir.filter(|d| !d.is_empty())?),
            config_dir,
            config_base_name,
            custom_conf,
            bin_dir,
            bin_name,
            database,
            pgpass,
            authentication: authentication?,
            parameters,
            pg_hba,
            pg_ident,
            pg_ctl_timeout,
            use_pg_rewind,
            rewind,
            remove_data_directory_on_rewind_failure,
            remove_data_directory_on_diverged_timelines,
            create_replica_methods,
            replica_method_sections,
            basebackup,
            recovery_conf,
            callbacks,
            pre_promote,
            before_stop,
            use_unix_socket,
            use_unix_socket_repl,
            krbsrvname,
        })
    }

    /// Where configuration files go: `config_dir`, or else `data_dir`.
    pub fn effective_config_dir(&self) -> &std::path::Path {
        self.config_dir.as_deref().unwrap_or(&self.data_dir)
    }
}

/// `postgresql.authentication`, or the legacy layout with `superuser`, `replication` (and
/// `pg_rewind`) directly under `postgresql`.
fn read_authentication(c: &mut Checker, node: &Node<'_>) -> Option<PgAuthentication> {
    let legacy: Map<String, Value>;
    let auth = if !node.has("authentication") && (node.has("superuser") || node.has("replication"))
    {
        c.warn(
            node.path(),
            "superuser/replication outside postgresql.authentication is a legacy layout",
        );
        let mut users = Map::new();
        for key in ["superuser", "replication"] {
            if let Some(user) = node.get(key) {
                users.insert(key.to_owned(), user.clone());
            }
        }
        // Very old configurations named the superuser `pg_rewind`.
        if let (false, Some(user)) = (users.contains_key("superuser"), node.get("pg_rewind")) {
            users.insert("superuser".to_owned(), user.clone());
        }
        legacy = users;
        Node::new(node.path().to_owned(), Some(&legacy))
    } else {
        c.section(node, "authentication", Presence::Required)
    };
    if !auth.exists() {
        return None;
    }
    let superuser = read_user(c, &auth, "superuser", Presence::Required);
    let replication = read_user(c, &auth, "replication", Presence::Required);
    let rewind = read_user(c, &auth, "rewind", Presence::Optional);
    Some(PgAuthentication {
        superuser: superuser?,
        replication: replication?,
        rewind,
    })
}

fn read_user(c: &mut Checker, parent: &Node<'_>, key: &str, presence: Presence) -> Option<PgUser> {
    if presence == Presence::Optional && !parent.has(key) {
        return None;
    }
    let node = c.section(parent, key, presence);
    if !node.exists() {
        return None;
    }
    let username = c.string(&node, "username", Presence::Required);
    let password = c.string(&node, "password", Presence::Optional);
    let params = AUTH_PARAMETERS[2..]
        .iter()
        .filter_map(|p| Some(((*p).to_owned(), c.string(&node, p, Presence::Optional)?)))
        .collect();
    Some(PgUser {
        username: username?,
        password,
        params,
    })
}

fn read_bin_names(c: &mut Checker, node: &Node<'_>) -> BTreeMap<String, String> {
    let given = c.section(node, "bin_name", Presence::Optional);
    POSTGRES_BINARIES
        .iter()
        .map(|b| {
            let name = c
                .string(&given, b, Presence::Optional)
                .filter(|n| !n.is_empty());
            ((*b).to_owned(), name.unwrap_or_else(|| (*b).to_owned()))
        })
        .collect()
}

/// GUC values must be scalars.
fn read_parameters(c: &mut Checker, node: &Node<'_>) -> BTreeMap<String, Value> {
    let params = c.map(node, "parameters").unwrap_or_default();
    let path = node.path_of("parameters");
    params
        .into_iter()
        .filter(|(name, value)| {
            let ok = matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_));
            if !ok {
                c.error(
                    join(&path, name),
                    format!("expected a string, number or boolean, got {value}"),
                );
            }
            ok
        })
        .collect()
}

/// `create_replica_methods`, or its old name `create_replica_method`.
fn read_replica_methods(c: &mut Checker, node: &Node<'_>) -> Vec<String> {
    let key = if node.has("create_replica_methods") {
        "create_replica_methods"
    } else {
        "create_replica_method"
    };
    c.string_list(node, key)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec![DEFAULT_CREATE_REPLICA_METHOD.to_owned()])
}

fn read_callbacks(c: &mut Checker, node: &Node<'_>) -> Callbacks {
    let node = c.section(node, "callbacks", Presence::Optional);
    let mut cb = |key| c.string(&node, key, Presence::Optional);
    Callbacks {
        on_start: cb("on_start"),
        on_stop: cb("on_stop"),
        on_restart: cb("on_restart"),
        on_reload: cb("on_reload"),
        on_role_change: cb("on_role_change"),
    }
}
