//! The core's settings ([`HaConfig`]) from the local and the dynamic configuration, and the
//! one parse of a dynamic configuration document (the DCS `config` key, the cached
//! `patroni.dynamic.json`) whose problems are logged, not dropped.

use std::time::Duration;

use patroni_config::{Config, DynamicConfig};
use patroni_core::ha::HaConfig;

/// Parses a dynamic configuration document read from `source`; each problem (a value of the
/// wrong type, out of range: it falls back to its default, as Patroni does) is logged.
pub fn parse_dynamic(raw: &serde_json::Value, source: &str) -> DynamicConfig {
    let (dynamic, problems) = DynamicConfig::from_value(raw);
    for p in problems {
        tracing::warn!("{source}: {p}");
    }
    dynamic
}

/// Whether a configured replica creation method can run without a member to clone from
/// (`no_leader`), as Patroni's `can_create_replica_without_replication_connection`.
fn replica_method_without_leader(config: &Config) -> bool {
    let pg = &config.postgresql;
    pg.create_replica_methods.iter().any(|name| {
        patroni_postgres::ReplicaMethod::from_config(
            name,
            pg.replica_method_sections.get(name),
            &pg.basebackup,
        )
        .works_without_leader()
    })
}

/// The core's settings from the dynamic and local configuration.
pub fn ha_config(d: &DynamicConfig, config: &Config) -> HaConfig {
    let secs = |s: u64| Duration::from_secs(s);
    HaConfig {
        ttl: secs(d.ttl.into()),
        loop_wait: secs(d.loop_wait.into()),
        retry_timeout: secs(d.retry_timeout.into()),
        maximum_lag_on_failover: d.maximum_lag_on_failover,
        primary_start_timeout: secs(d.primary_start_timeout),
        primary_stop_timeout: secs(d.primary_stop_timeout),
        primary_race_backoff: secs(d.primary_race_backoff),
        check_timeline: d.check_timeline,
        use_pg_rewind: d
            .postgresql
            .use_pg_rewind
            .unwrap_or(config.postgresql.use_pg_rewind),
        remove_data_directory_on_rewind_failure: config
            .postgresql
            .remove_data_directory_on_rewind_failure,
        remove_data_directory_on_diverged_timelines: config
            .postgresql
            .remove_data_directory_on_diverged_timelines,
        synchronous_mode: d.synchronous_mode,
        synchronous_mode_strict: d.synchronous_mode_strict,
        synchronous_node_count: d.synchronous_node_count,
        maximum_lag_on_syncnode: d.maximum_lag_on_syncnode,
        failsafe_mode: d.failsafe_mode,
        can_bootstrap: true,
        create_replica_without_leader: replica_method_without_leader(config),
        watchdog_unusable: config.watchdog.mode == patroni_config::WatchdogMode::Required,
    }
}
