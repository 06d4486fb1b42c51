//! The core's settings ([`HaConfig`]) from the local and the dynamic configuration, and the
//! one parse of a dynamic configuration document (the DCS `config` key, the cached
//! `patroni.dynamic.json`) whose problems are logged, not dropped.

use std::time::Duration;

use patroni_config::{Config, DynamicConfig};
use patroni_core::ha::{HaConfig, SynchronousMode, Upstream, WatchdogMode, WatchdogPolicy};

/// Parses a dynamic configuration document read from `source`; each problem (a value of the
/// wrong type, out of range: it falls back to its default, as Patroni does) is logged.
pub fn parse_dynamic(raw: &serde_json::Value, source: &str) -> DynamicConfig {
    let (dynamic, problems) = DynamicConfig::from_value(raw);
    for p in problems {
        tracing::warn!("{source}: {p}");
    }
    dynamic
}

/// The replica creation methods a clone runs: in a standby cluster the `standby_cluster`
/// section's `create_replica_methods` (default `basebackup`), as Patroni's `RemoteMember`,
/// else `postgresql.create_replica_methods`.
pub fn replica_method_names<'a>(d: &'a DynamicConfig, config: &'a Config) -> Vec<&'a str> {
    match d.standby_cluster.as_ref().filter(|_| is_standby_cluster(d)) {
        Some(sc) => match sc.create_replica_methods.as_deref() {
            Some(methods) if !methods.is_empty() => methods.iter().map(String::as_str).collect(),
            _ => vec!["basebackup"],
        },
        None => config
            .postgresql
            .create_replica_methods
            .iter()
            .map(String::as_str)
            .collect(),
    }
}

/// Whether `standby_cluster` makes this a standby cluster (Patroni's
/// `global_config.is_standby_cluster`: the section has a `host`, `port` or `restore_command`).
pub fn is_standby_cluster(d: &DynamicConfig) -> bool {
    patroni_api::GlobalFlags::from_dynamic(d).standby_cluster
}

/// The remote primary of a standby cluster, as the core names it.
fn standby_remote(d: &DynamicConfig) -> Option<Upstream> {
    if !is_standby_cluster(d) {
        return None;
    }
    let sc = d.standby_cluster.as_ref()?;
    let host = sc.host.as_deref().filter(|h| !h.is_empty());
    let address = match (host, sc.port) {
        (None, None) => None,
        (host, port) => Some((host.unwrap_or("localhost"), port.unwrap_or(5432))),
    };
    Some(Upstream::remote(address))
}

/// Whether a configured replica creation method can run without a member to clone from
/// (`no_leader`), as Patroni's `can_create_replica_without_replication_connection`.
fn replica_method_without_leader(d: &DynamicConfig, config: &Config) -> bool {
    let pg = &config.postgresql;
    replica_method_names(d, config).into_iter().any(|name| {
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
        // Patroni's `is_synchronous_mode`: never in a standby cluster.
        synchronous_mode: if is_standby_cluster(d) {
            SynchronousMode::Off
        } else {
            d.synchronous_mode
        },
        synchronous_mode_strict: d.synchronous_mode_strict,
        synchronous_node_count: d.synchronous_node_count,
        maximum_lag_on_syncnode: d.maximum_lag_on_syncnode,
        failsafe_mode: d.failsafe_mode,
        can_bootstrap: true,
        create_replica_without_leader: replica_method_without_leader(d, config),
        watchdog: WatchdogPolicy {
            mode: match config.watchdog.mode {
                patroni_config::WatchdogMode::Off => WatchdogMode::Off,
                patroni_config::WatchdogMode::Automatic => WatchdogMode::Automatic,
                patroni_config::WatchdogMode::Required => WatchdogMode::Required,
            },
            timeout: WatchdogPolicy::timeout_for(secs(d.ttl.into()), config.watchdog.safety_margin),
        },
        standby_cluster: standby_remote(d),
    }
}
