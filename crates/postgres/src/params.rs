//! The server parameters (GUCs) the agent runs PostgreSQL with: the user's `parameters`, plus
//! the ones Patroni controls (`listen_addresses`, `port`, `cluster_name`, `wal_level`,
//! `hot_standby`, `max_connections`, `max_wal_senders`, `wal_keep_size`, …; configuration
//! reference §6).
//!
//! Controlled parameters are taken only from the dynamic configuration (so every member agrees
//! on them), validated, and replaced by Patroni's default with a warning when invalid. They are
//! passed on the postmaster command line too (`--name=value`), so `ALTER SYSTEM` cannot override
//! them. Everything else is merged, local over dynamic, and passed through unvalidated (Patroni
//! also checks them against a per-version catalogue; this crate does not yet).
//!
//! Names are case-insensitive in PostgreSQL and are kept lower-cased here.

use std::collections::BTreeMap;
use std::path::Path;

use patroni_config::Address;
use patroni_config::coerce::{parse_bool, parse_int};
use serde_json::Value;

use crate::ControlData;

/// How a controlled parameter's value is checked.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Set by the agent from `listen`/`scope`; never taken from configuration.
    AgentOwned,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A boolean that must be true.
    True,
    /// Any boolean.
    Bool,
    /// An integer, at least `min`, in `unit` when the value carries a unit.
    IntAtLeast(i64, Option<&'static str>),
}

/// A parameter Patroni controls: name, default, rule, first major version that has it.
struct Controlled {
    name: &'static str,
    default: &'static str,
    rule: Rule,
    since_major: u32,
    /// Whether it goes on the postmaster command line (`wal_keep_*` do not).
    on_command_line: bool,
}

/// Patroni's `CMDLINE_OPTIONS`, in Patroni's order (which is the command-line order).
const CONTROLLED: [Controlled; 15] = [
    controlled("listen_addresses", "", Rule::AgentOwned, 0, true),
    controlled("port", "", Rule::AgentOwned, 0, true),
    controlled("cluster_name", "", Rule::AgentOwned, 0, true),
    controlled(
        "wal_level",
        "hot_standby",
        Rule::OneOf(&["hot_standby", "replica", "logical"]),
        0,
        true,
    ),
    controlled("hot_standby", "on", Rule::True, 0, true),
    controlled(
        "max_connections",
        "100",
        Rule::IntAtLeast(25, None),
        0,
        true,
    ),
    controlled("max_wal_senders", "10", Rule::IntAtLeast(3, None), 0, true),
    controlled(
        "wal_keep_segments",
        "8",
        Rule::IntAtLeast(1, None),
        0,
        false,
    ),
    controlled(
        "wal_keep_size",
        "128MB",
        Rule::IntAtLeast(16, Some("MB")),
        13,
        false,
    ),
    controlled(
        "max_prepared_transactions",
        "0",
        Rule::IntAtLeast(0, None),
        0,
        true,
    ),
    controlled(
        "max_locks_per_transaction",
        "64",
        Rule::IntAtLeast(32, None),
        0,
        true,
    ),
    controlled("track_commit_timestamp", "off", Rule::Bool, 0, true),
    controlled(
        "max_replication_slots",
        "10",
        Rule::IntAtLeast(4, None),
        0,
        true,
    ),
    controlled(
        "max_worker_processes",
        "8",
        Rule::IntAtLeast(2, None),
        0,
        true,
    ),
    controlled("wal_log_hints", "on", Rule::True, 0, true),
];

const fn controlled(
    name: &'static str,
    default: &'static str,
    rule: Rule,
    since_major: u32,
    on_command_line: bool,
) -> Controlled {
    Controlled {
        name,
        default,
        rule,
        since_major,
        on_command_line,
    }
}

/// Settings a replica must run with at least the primary's value, and the `pg_controldata`
/// line holding the value the data directory was last run with.
const AT_LEAST_CONTROLDATA: [(&str, &str); 5] = [
    ("max_connections", "max_connections setting"),
    ("max_prepared_transactions", "max_prepared_xacts setting"),
    ("max_locks_per_transaction", "max_locks_per_xact setting"),
    ("max_worker_processes", "max_worker_processes setting"),
    ("max_wal_senders", "max_wal_senders setting"),
];

/// What [`ServerParameters::build`] works from.
#[derive(Debug, Clone, Copy)]
pub struct ServerParametersInput<'a> {
    /// Cluster name (`scope`), which becomes `cluster_name`.
    pub scope: &'a str,
    /// `postgresql.listen`: `listen_addresses` and `port`.
    pub listen: &'a Address,
    /// Major version of the server binaries.
    pub major_version: u32,
    /// Where configuration files live; relative `hba_file`/`ident_file` are resolved in it.
    pub config_dir: &'a Path,
    /// Local `postgresql.parameters`.
    pub local: &'a BTreeMap<String, Value>,
    /// Dynamic `postgresql.parameters` (from the DCS `config` key).
    pub dynamic: &'a BTreeMap<String, Value>,
}

/// A controlled parameter had an invalid value and runs with Patroni's default instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterWarning {
    /// The parameter.
    pub name: String,
    /// The rejected value.
    pub rejected: String,
    /// The value used instead.
    pub used: String,
}

/// The parameters PostgreSQL runs with, names lower-cased, values as PostgreSQL reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerParameters(BTreeMap<String, String>);

// === impl ServerParameters ===

impl ServerParameters {
    /// Builds the parameters from the configuration, as Patroni's `get_server_parameters` and
    /// effective-configuration rules do. Pure.
    pub fn build(input: &ServerParametersInput<'_>) -> (Self, Vec<ParameterWarning>) {
        let is_controlled = |name: &str| CONTROLLED.iter().any(|c| c.name == name);
        let mut params = BTreeMap::new();
        for source in [input.dynamic, input.local] {
            for (name, value) in source {
                let name = name.to_lowercase();
                if !is_controlled(&name) {
                    params.insert(name, value_to_string(value));
                }
            }
        }
        let dynamic: BTreeMap<String, String> = input
            .dynamic
            .iter()
            .map(|(k, v)| (k.to_lowercase(), value_to_string(v)))
            .collect();
        let mut warnings = Vec::new();
        for c in CONTROLLED
            .iter()
            .filter(|c| input.major_version >= c.since_major)
        {
            if matches!(c.rule, Rule::AgentOwned) {
                continue;
            }
            let value = match dynamic.get(c.name) {
                Some(v) => match normalize(c.rule, v) {
                    Some(ok) => ok,
                    None => {
                        warnings.push(ParameterWarning {
                            name: c.name.to_owned(),
                            rejected: v.clone(),
                            used: c.default.to_owned(),
                        });
                        c.default.to_owned()
                    }
                },
                None => c.default.to_owned(),
            };
            params.insert(c.name.to_owned(), value);
        }
        convert_wal_keep(&mut params, &dynamic, input.major_version);
        if input.major_version >= 10
            && params.get("wal_level").map(String::as_str) == Some("hot_standby")
        {
            params.insert("wal_level".into(), "replica".into());
        }
        params.insert("listen_addresses".into(), input.listen.host.clone());
        params.insert("port".into(), input.listen.port.to_string());
        params.insert("cluster_name".into(), input.scope.to_owned());
        for file in ["hba_file", "ident_file"] {
            if let Some(v) = params.get_mut(file) {
                *v = input.config_dir.join(&*v).to_string_lossy().into_owned();
            }
        }
        (ServerParameters(params), warnings)
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_lowercase()).map(String::as_str)
    }

    /// Sets `name` (e.g. `synchronous_standby_names`, owned by the agent in synchronous mode).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_lowercase(), value.into());
    }

    /// Sets `name` (consuming builder).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(&name.to_lowercase())
    }

    /// Every parameter, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The postmaster's command-line options: `--name=value` for every controlled parameter
    /// except `wal_keep_*`, in Patroni's order.
    pub fn postmaster_options(&self) -> Vec<String> {
        CONTROLLED
            .iter()
            .filter(|c| c.on_command_line)
            .filter_map(|c| Some(format!("--{}={}", c.name, self.0.get(c.name)?)))
            .collect()
    }

    /// Raises the settings a hot standby needs at least as high as the data directory was last
    /// run with (`max_connections`, …) to the values in `controldata`, as Patroni does for
    /// replicas; a lower value would keep the standby from starting. Returns the names raised
    /// (the caller reports a pending restart).
    pub fn raise_to_controldata(&mut self, controldata: &ControlData) -> Vec<String> {
        let mut raised = Vec::new();
        for (name, line) in AT_LEAST_CONTROLDATA {
            let ours = self.0.get(name).and_then(|v| parse_int(v, None));
            let theirs = controldata.get(line).and_then(|v| parse_int(v, None));
            if let (Some(ours), Some(theirs)) = (ours, theirs)
                && theirs > ours
            {
                self.0.insert(name.to_owned(), theirs.to_string());
                raised.push(name.to_owned());
            }
        }
        raised
    }
}

/// `wal_keep_segments` became `wal_keep_size` in PostgreSQL 13; like Patroni, convert whichever
/// was configured into the one the server has, assuming 16MB segments.
fn convert_wal_keep(
    params: &mut BTreeMap<String, String>,
    dynamic: &BTreeMap<String, String>,
    major_version: u32,
) {
    let segments_rule = Rule::IntAtLeast(1, None);
    let size_rule = Rule::IntAtLeast(16, Some("MB"));
    let given_segments = dynamic
        .get("wal_keep_segments")
        .and_then(|v| normalize(segments_rule, v))
        .and_then(|v| parse_int(&v, None));
    let given_size_mb = dynamic
        .get("wal_keep_size")
        .and_then(|v| normalize(size_rule, v))
        .and_then(|v| parse_int(&v, Some("MB")));
    if major_version >= 13 {
        params.remove("wal_keep_segments");
        if let (Some(segments), None) = (given_segments, given_size_mb) {
            params.insert("wal_keep_size".into(), format!("{}MB", segments * 16));
        }
    } else if let (None, Some(mb)) = (given_segments, given_size_mb) {
        params.insert("wal_keep_segments".into(), ((mb + 8) / 16).to_string());
    }
}

/// A configuration value as PostgreSQL reads it: booleans as `on`/`off`.
fn value_to_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "on".to_owned(),
        Value::Bool(false) => "off".to_owned(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The normalized value when `value` satisfies `rule`.
fn normalize(rule: Rule, value: &str) -> Option<String> {
    match rule {
        Rule::AgentOwned => None,
        Rule::OneOf(words) => {
            let lower = value.to_lowercase();
            words.contains(&lower.as_str()).then_some(lower)
        }
        Rule::True => parse_bool(value).filter(|b| *b).map(|_| "on".to_owned()),
        Rule::Bool => parse_bool(value).map(|b| if b { "on" } else { "off" }.to_owned()),
        Rule::IntAtLeast(min, unit) => parse_int(value, unit)
            .filter(|n| *n >= min)
            .map(|_| value.trim().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(
        local: serde_json::Value,
        dynamic: serde_json::Value,
        major: u32,
    ) -> (ServerParameters, Vec<ParameterWarning>) {
        let to_map = |v: serde_json::Value| -> BTreeMap<String, Value> {
            serde_json::from_value(v).expect("object")
        };
        let (local, dynamic) = (to_map(local), to_map(dynamic));
        let listen = Address {
            host: "10.0.0.1".into(),
            port: 5432,
        };
        ServerParameters::build(&ServerParametersInput {
            scope: "demo",
            listen: &listen,
            major_version: major,
            config_dir: Path::new("/etc/pg"),
            local: &local,
            dynamic: &dynamic,
        })
    }

    /// With no configuration, Patroni's defaults apply (PostgreSQL 15).
    #[test]
    fn defaults_follow_patroni() {
        let (p, warnings) = build(json!({}), json!({}), 15);
        assert!(warnings.is_empty());
        let all: Vec<_> = p.iter().collect();
        assert_eq!(
            all,
            [
                ("cluster_name", "demo"),
                ("hot_standby", "on"),
                ("listen_addresses", "10.0.0.1"),
                ("max_connections", "100"),
                ("max_locks_per_transaction", "64"),
                ("max_prepared_transactions", "0"),
                ("max_replication_slots", "10"),
                ("max_wal_senders", "10"),
                ("max_worker_processes", "8"),
                ("port", "5432"),
                ("track_commit_timestamp", "off"),
                ("wal_keep_size", "128MB"),
                ("wal_level", "replica"),
                ("wal_log_hints", "on"),
            ]
        );
        assert_eq!(
            p.postmaster_options(),
            [
                "--listen_addresses=10.0.0.1",
                "--port=5432",
                "--cluster_name=demo",
                "--wal_level=replica",
                "--hot_standby=on",
                "--max_connections=100",
                "--max_wal_senders=10",
                "--max_prepared_transactions=0",
                "--max_locks_per_transaction=64",
                "--track_commit_timestamp=off",
                "--max_replication_slots=10",
                "--max_worker_processes=8",
                "--wal_log_hints=on",
            ]
        );
    }

    /// Controlled parameters come only from dynamic config; invalid ones fall back with a
    /// warning; other parameters merge local over dynamic.
    #[test]
    fn controlled_parameters_only_from_dynamic_and_validated() {
        let (p, warnings) = build(
            json!({"max_connections": 500, "shared_buffers": "1GB", "Work_Mem": "8MB"}),
            json!({"max_connections": "200", "max_wal_senders": 1, "wal_log_hints": false,
                   "shared_buffers": "256MB", "wal_level": "logical", "port": 1}),
            15,
        );
        assert_eq!(p.get("max_connections"), Some("200"));
        assert_eq!(p.get("shared_buffers"), Some("1GB"));
        assert_eq!(p.get("work_mem"), Some("8MB"));
        assert_eq!(p.get("wal_level"), Some("logical"));
        assert_eq!(p.get("port"), Some("5432"));
        assert_eq!(
            warnings,
            [
                ParameterWarning {
                    name: "max_wal_senders".into(),
                    rejected: "1".into(),
                    used: "10".into()
                },
                ParameterWarning {
                    name: "wal_log_hints".into(),
                    rejected: "off".into(),
                    used: "on".into()
                },
            ]
        );
    }

    /// `wal_keep_segments` converts to `wal_keep_size` on 13+, and stays itself before.
    #[test]
    fn wal_keep_segments_converts_by_version() {
        let (p, _) = build(json!({}), json!({"wal_keep_segments": 4}), 15);
        assert_eq!(p.get("wal_keep_size"), Some("64MB"));
        assert_eq!(p.get("wal_keep_segments"), None);
        let (p, _) = build(json!({}), json!({"wal_keep_size": "1GB"}), 15);
        assert_eq!(p.get("wal_keep_size"), Some("1GB"));
        let (p, _) = build(json!({}), json!({}), 12);
        assert_eq!(p.get("wal_keep_segments"), Some("8"));
        assert_eq!(p.get("wal_keep_size"), None);
        let (p, _) = build(json!({}), json!({"wal_keep_size": "256MB"}), 12);
        assert_eq!(p.get("wal_keep_segments"), Some("16"));
    }

    /// A relative `hba_file` is resolved in the configuration directory.
    #[test]
    fn relative_hba_file_is_resolved() {
        let (p, _) = build(
            json!({"hba_file": "custom_hba.conf", "ident_file": "/abs/ident"}),
            json!({}),
            15,
        );
        assert_eq!(p.get("hba_file"), Some("/etc/pg/custom_hba.conf"));
        assert_eq!(p.get("ident_file"), Some("/abs/ident"));
    }

    /// A replica runs with at least the values in pg_control.
    #[test]
    fn replica_settings_are_raised_to_controldata() {
        let (mut p, _) = build(json!({}), json!({}), 15);
        let cd = ControlData::parse(
            "max_connections setting:              200\nmax_wal_senders setting:              5\n",
        );
        assert_eq!(p.raise_to_controldata(&cd), ["max_connections"]);
        assert_eq!(p.get("max_connections"), Some("200"));
        assert_eq!(p.get("max_wal_senders"), Some("10"));
    }
}
