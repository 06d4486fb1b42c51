//! Dynamic (cluster-wide) configuration: the JSON kept in the DCS `config` key, first seeded
//! from `bootstrap.dcs` by the member that initialises the cluster.
//!
//! The same reader serves both sources. From `bootstrap.dcs` problems are errors, like
//! Patroni's `--validate-config`; from the DCS ([`DynamicConfig::from_value`]) each bad setting
//! falls back to its default and is reported, because a running cluster must not stop over a
//! typo someone saved with `patronictl edit-config`.
//!
//! Timeouts: Patroni requires `loop_wait + 2 * retry_timeout <= ttl` and, rather than rejecting
//! a violation, lowers `loop_wait` (or, when that is not enough, sets `loop_wait` to 1 and
//! `retry_timeout` to `(ttl - 1) / 2`) with a warning. The typed values here are the adjusted
//! ones; the raw document keeps what was written.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    coerce::parse_bool,
    problem::Problem,
    validate::{Checker, IntRule, Node, Presence},
};

/// Default leader key time-to-live, seconds.
pub const DEFAULT_TTL: u32 = 30;
/// Default pause between HA cycles, seconds.
pub const DEFAULT_LOOP_WAIT: u32 = 10;
/// Default budget for DCS and Postgres retries, seconds.
pub const DEFAULT_RETRY_TIMEOUT: u32 = 10;
/// Default maximum lag (bytes) for a replica to be a failover candidate.
pub const DEFAULT_MAXIMUM_LAG_ON_FAILOVER: u64 = 1_048_576;
/// Default seconds a primary may take to start before failing over.
pub const DEFAULT_PRIMARY_START_TIMEOUT: u64 = 300;
/// Default seconds member replication slots are kept after the member disappears.
pub const DEFAULT_MEMBER_SLOTS_TTL: u64 = 1800;

/// Postgres parameters whose range Patroni's validator checks in `bootstrap.dcs`.
const CHECKED_PARAMETERS: [(&str, i64, i64); 6] = [
    ("max_connections", 1, 262_143),
    ("max_locks_per_transaction", 10, 2_147_483_647),
    ("max_prepared_transactions", 0, 262_143),
    ("max_replication_slots", 0, 262_143),
    ("max_wal_senders", 0, 262_143),
    ("max_worker_processes", 0, 262_143),
];

/// Typed dynamic configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicConfig {
    /// Leader key time-to-live, seconds (≥ 20).
    pub ttl: u32,
    /// Pause between HA cycles, seconds (≥ 1), adjusted so `loop_wait + 2*retry_timeout <= ttl`.
    pub loop_wait: u32,
    /// Retry budget, seconds (≥ 3), adjusted likewise.
    pub retry_timeout: u32,
    /// Replicas lagging more bytes than this are not failover candidates.
    pub maximum_lag_on_failover: u64,
    /// Sync standbys lagging more bytes than this are swapped out; ≤ 0 disables.
    pub maximum_lag_on_syncnode: i64,
    /// Timeline history entries kept; 0 keeps all.
    pub max_timelines_history: u64,
    /// Seconds a primary may take to start before failing over (`master_start_timeout` is the
    /// old name, used only when this one is absent).
    pub primary_start_timeout: u64,
    /// Seconds to wait for a primary to stop in synchronous mode (`master_stop_timeout` alias).
    pub primary_stop_timeout: u64,
    /// Seconds a former primary waits before racing for the leader key.
    pub primary_race_backoff: u64,
    /// Compare timelines when choosing a failover candidate.
    pub check_timeline: bool,
    /// Synchronous replication mode.
    pub synchronous_mode: SynchronousMode,
    /// Refuse writes when no synchronous standby is available.
    pub synchronous_mode_strict: bool,
    /// Number of synchronous standbys (≥ 1).
    pub synchronous_node_count: u32,
    /// Keep the primary running through DCS outages when every member agrees.
    pub failsafe_mode: bool,
    /// Maintenance mode, when set.
    pub pause: Option<bool>,
    /// Seconds member replication slots outlive their member.
    pub member_slots_ttl: u64,
    /// Replicate from another cluster, if set.
    pub standby_cluster: Option<StandbyCluster>,
    /// Cluster-wide `postgresql` settings.
    pub postgresql: DynamicPostgresql,
}

/// `synchronous_mode`: the core's one enum (off, on, quorum).
pub use patroni_core::ha::SynchronousMode;

/// `standby_cluster`: follow a remote primary instead of running a primary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandbyCluster {
    /// Remote host.
    pub host: Option<String>,
    /// Remote port.
    pub port: Option<u16>,
    /// Slot to use on the remote primary.
    pub primary_slot_name: Option<String>,
    /// Replica creation methods for the standby leader.
    pub create_replica_methods: Option<Vec<String>>,
    /// `restore_command` for archive recovery.
    pub restore_command: Option<String>,
    /// `archive_cleanup_command`.
    pub archive_cleanup_command: Option<String>,
    /// `recovery_min_apply_delay`.
    pub recovery_min_apply_delay: Option<String>,
}

/// The `postgresql` part of dynamic configuration (only what the agent needs typed).
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicPostgresql {
    /// Use `pg_rewind`, when set cluster-wide.
    pub use_pg_rewind: Option<bool>,
    /// Use replication slots; default true.
    pub use_slots: bool,
    /// Postgres parameters as written.
    pub parameters: BTreeMap<String, Value>,
    /// `pg_hba.conf` lines, when managed cluster-wide.
    pub pg_hba: Option<Vec<String>>,
    /// `pg_ident.conf` lines, when managed cluster-wide.
    pub pg_ident: Option<Vec<String>>,
}

// === impl DynamicConfig ===

impl Default for DynamicConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            loop_wait: DEFAULT_LOOP_WAIT,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            maximum_lag_on_failover: DEFAULT_MAXIMUM_LAG_ON_FAILOVER,
            maximum_lag_on_syncnode: -1,
            max_timelines_history: 0,
            primary_start_timeout: DEFAULT_PRIMARY_START_TIMEOUT,
            primary_stop_timeout: 0,
            primary_race_backoff: 0,
            check_timeline: false,
            synchronous_mode: SynchronousMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            failsafe_mode: false,
            pause: None,
            member_slots_ttl: DEFAULT_MEMBER_SLOTS_TTL,
            standby_cluster: None,
            postgresql: DynamicPostgresql {
                use_pg_rewind: None,
                use_slots: true,
                parameters: BTreeMap::new(),
                pg_hba: None,
                pg_ident: None,
            },
        }
    }
}

impl DynamicConfig {
    /// Reads dynamic configuration as stored in the DCS, leniently: each bad setting keeps its
    /// default and is returned as a problem, and timeout adjustments are returned as problems
    /// too. A value that is not an object yields the defaults and one problem.
    pub fn from_value(value: &Value) -> (Self, Vec<Problem>) {
        let mut c = Checker::default();
        if !value.is_object() {
            c.error("", format!("expected a mapping, got {value}"));
        }
        let config = Self::read(&mut c, &Node::root(value), SynchronousMode::Off);
        let mut problems = c.errors;
        problems.extend(c.warnings);
        (config, problems)
    }

    /// Reads the mapping at `node`; `default_sync` is the default `synchronous_mode` (quorum
    /// when Citus is configured).
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>, default_sync: SynchronousMode) -> Self {
        let d = Self::default();
        let uint = |c: &mut Checker, key: &str, min: i64, default: u64| {
            c.int(node, key, Presence::Optional, IntRule::at_least(min))
                .map_or(default, |n| n.unsigned_abs())
        };
        // Below its minimum a timing is raised to it with Patroni's warning, not refused.
        let timing = |c: &mut Checker, key: &str, min: u64, default: u32| {
            let n = c.int_or(node, key, IntRule::ANY, default.into());
            if n < min as i64 {
                c.warn(
                    node.path_of(key),
                    format!("{key}={n} can't be smaller than {min}, adjusting..."),
                );
                min
            } else {
                n.unsigned_abs()
            }
        };
        let ttl = timing(c, "ttl", MIN_TTL, d.ttl);
        let loop_wait = timing(c, "loop_wait", 1, d.loop_wait);
        let retry_timeout = timing(c, "retry_timeout", MIN_RETRY_TIMEOUT, d.retry_timeout);
        for (key, value, patroni_min) in [
            ("ttl", ttl, PATRONI_MIN_TTL),
            ("retry_timeout", retry_timeout, PATRONI_MIN_RETRY_TIMEOUT),
        ] {
            if value < patroni_min && node.has(key) {
                c.warn(
                    node.path_of(key),
                    format!(
                        "{key}={value} is below Patroni's minimum of {patroni_min} (Patroni raises it); \
                         patroni-rs keeps it: a short lease, safe because the primary is fenced \
                         before the lease can expire (docs/lease.md). Python Patroni members of \
                         this cluster use {patroni_min}"
                    ),
                );
            }
        }
        let (loop_wait, retry_timeout) = adjust_timeouts(c, node, ttl, loop_wait, retry_timeout);
        let aliased = |c: &mut Checker, key: &str, old: &str, default| {
            let key = if node.has(key) || !node.has(old) {
                key
            } else {
                old
            };
            uint(c, key, 0, default)
        };
        Self {
            ttl: clamp_u32(ttl),
            loop_wait: clamp_u32(loop_wait),
            retry_timeout: clamp_u32(retry_timeout),
            maximum_lag_on_failover: uint(
                c,
                "maximum_lag_on_failover",
                0,
                d.maximum_lag_on_failover,
            ),
            maximum_lag_on_syncnode: c.int_or(
                node,
                "maximum_lag_on_syncnode",
                IntRule::at_least(-1),
                -1,
            ),
            max_timelines_history: uint(c, "max_timelines_history", 0, 0),
            primary_start_timeout: aliased(
                c,
                "primary_start_timeout",
                "master_start_timeout",
                d.primary_start_timeout,
            ),
            primary_stop_timeout: aliased(c, "primary_stop_timeout", "master_stop_timeout", 0),
            primary_race_backoff: uint(c, "primary_race_backoff", 0, 0),
            check_timeline: c.boolean_or(node, "check_timeline", false),
            synchronous_mode: read_sync_mode(c, node).unwrap_or(default_sync),
            synchronous_mode_strict: c.boolean_or(node, "synchronous_mode_strict", false),
            synchronous_node_count: clamp_u32(uint(c, "synchronous_node_count", 1, 1)),
            failsafe_mode: c.boolean_or(node, "failsafe_mode", false),
            pause: c.boolean(node, "pause"),
            member_slots_ttl: c
                .int(
                    node,
                    "member_slots_ttl",
                    Presence::Optional,
                    IntRule::at_least(0).with_unit("s"),
                )
                .map_or(d.member_slots_ttl, |n| n.unsigned_abs()),
            standby_cluster: read_standby_cluster(c, node),
            postgresql: read_postgresql(c, node),
        }
    }
}

/// The shortest `ttl` patroni-rs takes. Patroni's minimum is 20 ([`PATRONI_MIN_TTL`]); below
/// it the lease fence (`patroni_core::ha::lease`) keeps the primary from outliving its lease,
/// and `loop_wait + 2 * retry_timeout <= ttl` still holds with `loop_wait` and
/// `retry_timeout` of one second.
pub const MIN_TTL: u64 = 3;
/// Patroni's minimum `ttl`.
pub const PATRONI_MIN_TTL: u64 = 20;
/// The shortest `retry_timeout` patroni-rs takes (Patroni's is 3).
pub const MIN_RETRY_TIMEOUT: u64 = 1;
/// Patroni's minimum `retry_timeout`.
pub const PATRONI_MIN_RETRY_TIMEOUT: u64 = 3;

fn clamp_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Applies Patroni's `_validate_and_adjust_timeouts` rule, warning when it changes anything.
fn adjust_timeouts(
    c: &mut Checker,
    node: &Node<'_>,
    ttl: u64,
    loop_wait: u64,
    retry: u64,
) -> (u64, u64) {
    const MIN_LOOP_WAIT: u64 = 1;
    let rule = "violates \"loop_wait + 2*retry_timeout <= ttl\"";
    if MIN_LOOP_WAIT.saturating_add(retry.saturating_mul(2)) > ttl {
        let new_retry = (ttl - MIN_LOOP_WAIT) / 2;
        c.warn(
            node.path(),
            format!(
                "{rule} (ttl={ttl}); using loop_wait={MIN_LOOP_WAIT} instead of {loop_wait} and \
                 retry_timeout={new_retry} instead of {retry}, as Patroni does"
            ),
        );
        (MIN_LOOP_WAIT, new_retry)
    } else if loop_wait.saturating_add(retry.saturating_mul(2)) > ttl {
        let new_loop_wait = ttl - 2 * retry;
        c.warn(
            node.path(),
            format!(
                "{rule} (ttl={ttl}, retry_timeout={retry}); using loop_wait={new_loop_wait} instead of \
                 {loop_wait}, as Patroni does"
            ),
        );
        (new_loop_wait, retry)
    } else {
        (loop_wait, retry)
    }
}

/// `quorum` (any case), or any boolean spelling.
fn read_sync_mode(c: &mut Checker, node: &Node<'_>) -> Option<SynchronousMode> {
    let value = node.get("synchronous_mode")?;
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    if text.eq_ignore_ascii_case("quorum") {
        return Some(SynchronousMode::Quorum);
    }
    match parse_bool(&text) {
        Some(true) => Some(SynchronousMode::On),
        Some(false) => Some(SynchronousMode::Off),
        None => {
            c.error(
                node.path_of("synchronous_mode"),
                format!("expected a boolean or \"quorum\", got {value}"),
            );
            None
        }
    }
}

fn read_standby_cluster(c: &mut Checker, parent: &Node<'_>) -> Option<StandbyCluster> {
    if !parent.has("standby_cluster") {
        return None;
    }
    let node = c.section(parent, "standby_cluster", Presence::Optional);
    if !node.exists() {
        return None;
    }
    if !["host", "port", "restore_command"]
        .iter()
        .any(|k| node.has(k))
    {
        c.error(
            node.path(),
            "missing required setting: one of host, port, restore_command",
        );
    }
    let text = |c: &mut Checker, key| c.string(&node, key, Presence::Optional);
    Some(StandbyCluster {
        host: text(c, "host"),
        port: c
            .int(
                &node,
                "port",
                Presence::Optional,
                IntRule::between(1, 65535),
            )
            .and_then(|p| u16::try_from(p).ok()),
        primary_slot_name: text(c, "primary_slot_name"),
        create_replica_methods: c.string_list(&node, "create_replica_methods"),
        restore_command: text(c, "restore_command"),
        archive_cleanup_command: text(c, "archive_cleanup_command"),
        recovery_min_apply_delay: text(c, "recovery_min_apply_delay"),
    })
}

fn read_postgresql(c: &mut Checker, parent: &Node<'_>) -> DynamicPostgresql {
    let node = c.section(parent, "postgresql", Presence::Optional);
    let parameters_node = c.section(&node, "parameters", Presence::Optional);
    for (name, min, max) in CHECKED_PARAMETERS {
        c.int(
            &parameters_node,
            name,
            Presence::Optional,
            IntRule::between(min, max),
        );
    }
    if node.has("pg_ctl_timeout") {
        c.int(
            &node,
            "pg_ctl_timeout",
            Presence::Optional,
            IntRule::at_least(0),
        );
    }
    DynamicPostgresql {
        use_pg_rewind: c.boolean(&node, "use_pg_rewind"),
        use_slots: c.boolean_or(&node, "use_slots", true),
        parameters: c.map(&node, "parameters").unwrap_or_default(),
        pg_hba: c.string_list(&node, "pg_hba"),
        pg_ident: c.string_list(&node, "pg_ident"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Defaults are Patroni's: 30/10/10 and 1 MiB of lag.
    #[test]
    fn empty_config_has_patroni_defaults() {
        let (config, problems) = DynamicConfig::from_value(&json!({}));
        assert!(problems.is_empty());
        assert_eq!(config, DynamicConfig::default());
        assert_eq!(
            (config.ttl, config.loop_wait, config.retry_timeout),
            (30, 10, 10)
        );
        assert_eq!(config.maximum_lag_on_failover, 1_048_576);
    }

    /// loop_wait is lowered first; retry_timeout only when loop_wait=1 is not enough.
    #[test]
    fn adjusts_timeouts_like_patroni() {
        let (c, p) =
            DynamicConfig::from_value(&json!({"ttl": 25, "loop_wait": 10, "retry_timeout": 10}));
        assert_eq!((c.loop_wait, c.retry_timeout), (5, 10));
        assert_eq!(p.len(), 1);
        let (c, _) =
            DynamicConfig::from_value(&json!({"ttl": 20, "loop_wait": 5, "retry_timeout": 15}));
        assert_eq!((c.loop_wait, c.retry_timeout), (1, 9));
    }

    /// Timings below their minimum are raised to it with a warning, as Patroni does; a `ttl`
    /// or `retry_timeout` below Patroni's minimum but not ours is kept with a warning.
    #[test]
    fn timings_below_their_minimum_are_raised() {
        let (c, p) =
            DynamicConfig::from_value(&json!({"ttl": 10, "loop_wait": 0, "retry_timeout": 1}));
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (10, 1, 1));
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("ttl: ttl=10 is below Patroni's minimum of 20")),
            "{text:?}"
        );
        assert!(
            text.contains(
                &"loop_wait: loop_wait=0 can't be smaller than 1, adjusting...".to_owned()
            ),
            "{text:?}"
        );
        assert_eq!(p.len(), 3, "{text:?}");
        let (c, p) = DynamicConfig::from_value(&json!({"ttl": 2}));
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (3, 1, 1));
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"ttl: ttl=2 can't be smaller than 3, adjusting...".to_owned()),
            "{text:?}"
        );
    }

    /// The old master_* names apply only when the primary_* name is absent.
    #[test]
    fn master_aliases_yield_to_primary_names() {
        let (c, _) = DynamicConfig::from_value(
            &json!({"master_start_timeout": 10, "master_stop_timeout": 7}),
        );
        assert_eq!((c.primary_start_timeout, c.primary_stop_timeout), (10, 7));
        let (c, _) = DynamicConfig::from_value(
            &json!({"master_start_timeout": 10, "primary_start_timeout": 20}),
        );
        assert_eq!(c.primary_start_timeout, 20);
    }

    /// A bad setting in the DCS keeps its default and is reported, never fatal.
    #[test]
    fn bad_dcs_values_fall_back_to_defaults() {
        let (c, p) = DynamicConfig::from_value(
            &json!({"ttl": "abc", "synchronous_mode": "quorum", "member_slots_ttl": "1h"}),
        );
        assert_eq!(c.ttl, 30);
        assert_eq!(c.synchronous_mode, SynchronousMode::Quorum);
        assert_eq!(c.member_slots_ttl, 3600);
        assert_eq!(p[0].to_string(), "ttl: expected an integer, got \"abc\"");
    }
}
