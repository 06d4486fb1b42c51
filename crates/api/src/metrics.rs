//! `GET /metrics`: the Prometheus text exposition of Patroni 4.1.x's `get_metrics`, built by
//! the pure function [`render_metrics`].
//!
//! Same metric names, `# HELP` texts, order, labels (`{scope="..",name=".."}`) and values as
//! Patroni, including the `# Values: 0=initdb, ...` comment before `patroni_postgres_state`.
//! `patroni_master` is gone, as in Patroni 4.
//!
//! # Deviations from Patroni
//! - Patroni declares `patroni_xlog_location`, `patroni_xlog_received_location` and
//!   `patroni_xlog_replayed_location` as `counter` without the `_total` suffix, which
//!   `promtool check metrics` rejects. Dashboards depend on the names, so the names stay and
//!   only their `# TYPE` becomes `gauge` (Prometheus does not store the type; `rate()` and
//!   `irate()` work the same).
//! - A replica LSN that is unknown (`null` in the status document) is `0` here; Patroni would
//!   print `None`, which no scraper parses.
//! - Label values are escaped (`\`, `"`, newline) as the exposition format requires.
//!
//! # Why by hand
//! The `prometheus-client` crate writes OpenMetrics, appends `_total` to counters and cannot
//! write the `# Values:` comment, so it cannot reproduce Patroni's output; the text is a
//! short list of lines.

use std::fmt::Write as _;

use patroni_core::{Cluster, Role};

use crate::backend::HaSnapshot;
use crate::dynamic::GlobalFlags;
use crate::node::{NodeStatus, Xlog};
use crate::patch::py_float;
use crate::units::{parse_bool, parse_int};
use patroni_core::python_truthy;

/// PostgreSQL states in the order of Patroni's `PostgresqlState` indexes: `(state string,
/// enum name)`. The index is what `patroni_postgres_state` reports.
const POSTGRES_STATES: [(&str, &str); 15] = [
    ("initializing new cluster", "initdb"),
    ("initdb failed", "initdb_failed"),
    ("running custom bootstrap script", "custom_bootstrap"),
    ("custom bootstrap failed", "custom_bootstrap_failed"),
    ("creating replica", "creating_replica"),
    ("running", "running"),
    ("starting", "starting"),
    ("starting after custom bootstrap", "bootstrap_starting"),
    ("start failed", "start_failed"),
    ("restarting", "restarting"),
    ("restart failed", "restart_failed"),
    ("stopping", "stopping"),
    ("stopped", "stopped"),
    ("stop failed", "stop_failed"),
    ("crashed", "crashed"),
];

/// The first server version that reports `replication_state` (9.6).
const REPLICATION_STATE_SINCE: u32 = 90_600;

/// The metrics of this member, as Patroni's `GET /metrics` writes them.
///
/// `status` is the fresh status (Patroni queries with retries), `ha` gives the configured
/// tags (failover priority) and the agent's last good dynamic configuration, `cluster` is the
/// cached DCS view (for `failsafe_mode` and the `/failsafe` members).
pub fn render_metrics(status: &NodeStatus, ha: &HaSnapshot, cluster: Option<&Cluster>) -> String {
    let labels = format!(
        "{{scope=\"{}\",name=\"{}\"}}",
        escape(&status.patroni.scope),
        escape(&status.patroni.name)
    );
    let mut out = Metrics {
        text: String::new(),
        labels,
    };
    let (location, received, replayed, replayed_at, paused) = match &status.xlog {
        Some(Xlog::Primary { location }) => (*location, 0, 0, None, false),
        Some(Xlog::Replica {
            received_location,
            replayed_location,
            replayed_timestamp,
            paused,
        }) => (
            0,
            received_location.unwrap_or(0),
            replayed_location.unwrap_or(0),
            replayed_timestamp.as_deref(),
            *paused,
        ),
        None => (0, 0, 0, None, false),
    };
    let flags = GlobalFlags::resolve(cluster, &ha.global);
    let failsafe_member = cluster
        .and_then(|c| c.failsafe.as_ref())
        .is_some_and(|f| f.contains_key(&status.patroni.name));
    let server_version = status.server_version.unwrap_or(0);
    let replication_state = status.replication_state.as_deref();

    out.gauge(
        "patroni_version",
        "Patroni semver without periods.",
        padded_version(&status.patroni.version),
    );
    out.gauge(
        "patroni_postgres_running",
        "Value is 1 if Postgres is running, 0 otherwise.",
        flag(status.is_running()),
    );
    out.gauge(
        "patroni_postmaster_start_time",
        "Epoch seconds since Postgres started.",
        epoch(status.postmaster_start_time.as_deref()),
    );
    out.gauge(
        "patroni_primary",
        "Value is 1 if this node is the leader, 0 otherwise.",
        flag(status.role == Role::Primary),
    );
    out.counter(
        "patroni_xlog_location",
        "Current location of the Postgres transaction log, 0 if this node is not the leader.",
        location,
    );
    out.gauge(
        "patroni_standby_leader",
        "Value is 1 if this node is the standby_leader, 0 otherwise.",
        flag(status.role == Role::StandbyLeader),
    );
    out.gauge(
        "patroni_replica",
        "Value is 1 if this node is a replica, 0 otherwise.",
        flag(status.role == Role::Replica),
    );
    out.gauge(
        "patroni_sync_standby",
        "Value is 1 if this node is a sync standby, 0 otherwise.",
        flag(status.sync_standby),
    );
    out.gauge(
        "patroni_quorum_standby",
        "Value is 1 if this node is a quorum standby, 0 otherwise.",
        flag(status.quorum_standby),
    );
    out.counter("patroni_xlog_received_location", "Current location of the received Postgres transaction log, 0 if this node is not a replica.", received);
    out.counter("patroni_xlog_replayed_location", "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.", replayed);
    out.gauge(
        "patroni_xlog_replayed_timestamp",
        "Current timestamp of the replayed Postgres transaction log, 0 if null.",
        epoch(replayed_at),
    );
    out.gauge(
        "patroni_xlog_paused",
        "Value is 1 if the Postgres xlog is paused, 0 otherwise.",
        flag(paused),
    );
    if server_version >= REPLICATION_STATE_SINCE {
        out.gauge(
            "patroni_postgres_streaming",
            "Value is 1 if Postgres is streaming, 0 otherwise.",
            flag(replication_state == Some("streaming")),
        );
        out.gauge(
            "patroni_postgres_in_archive_recovery",
            "Value is 1 if Postgres is replicating from archive, 0 otherwise.",
            flag(replication_state == Some("in archive recovery")),
        );
    }
    out.gauge(
        "patroni_postgres_server_version",
        "Version of Postgres (if running), 0 otherwise.",
        server_version,
    );
    out.gauge(
        "patroni_cluster_unlocked",
        "Value is 1 if the cluster is unlocked, 0 if locked.",
        flag(status.cluster_unlocked),
    );
    out.gauge(
        "patroni_failsafe_mode_is_active",
        "Value is 1 if failsafe mode is active, 0 if inactive.",
        flag(status.failsafe_mode_is_active),
    );
    out.gauge(
        "patroni_failsafe_mode_enabled",
        "Value is 1 if failsafe_mode is enabled, 0 otherwise.",
        flag(flags.failsafe_mode),
    );
    out.gauge(
        "patroni_failsafe_member",
        "Value is 1 if this node is a member of failsafe, 0 otherwise.",
        flag(failsafe_member),
    );
    out.gauge(
        "patroni_postgres_timeline",
        "Postgres timeline of this node (if running), 0 otherwise.",
        status.timeline.unwrap_or(0),
    );
    out.gauge(
        "patroni_dcs_last_seen",
        "Epoch timestamp when DCS was last contacted successfully by Patroni.",
        status.dcs_last_seen,
    );
    out.gauge(
        "patroni_pending_restart",
        "Value is 1 if the node needs a restart, 0 otherwise.",
        flag(!status.pending_restart_reason.is_empty()),
    );
    out.gauge(
        "patroni_is_paused",
        "Value is 1 if auto failover is disabled, 0 otherwise.",
        flag(status.pause),
    );
    out.help(
        "patroni_postgres_state",
        "Numeric representation of Postgres state.",
    );
    let values: Vec<String> = POSTGRES_STATES
        .iter()
        .enumerate()
        .map(|(i, (_, name))| format!("{i}={name}"))
        .collect();
    out.line(format_args!("# Values: {}", values.join(", ")));
    out.sample(
        "patroni_postgres_state",
        "gauge",
        state_index(&status.state),
    );
    out.gauge(
        "patroni_failover_priority",
        "Failover priority of this node.",
        failover_priority(ha),
    );
    out.text
}

/// The exposition being written.
struct Metrics {
    text: String,
    labels: String,
}

// === impl Metrics ===

impl Metrics {
    fn line(&mut self, line: std::fmt::Arguments<'_>) {
        // Writing to a String cannot fail.
        let _ = self.text.write_fmt(line);
        self.text.push('\n');
    }

    fn help(&mut self, name: &str, help: &str) {
        self.line(format_args!("# HELP {name} {help}"));
    }

    fn sample(&mut self, name: &str, kind: &str, value: impl std::fmt::Display) {
        self.line(format_args!("# TYPE {name} {kind}"));
        let labels = std::mem::take(&mut self.labels);
        self.line(format_args!("{name}{labels} {value}"));
        self.labels = labels;
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.help(name, help);
        self.sample(name, "gauge", value);
    }

    /// One of Patroni's three `counter`s without `_total`, declared `gauge` (module doc).
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.gauge(name, help, value);
    }
}

/// `1`/`0`, as Python's `int(bool)`.
fn flag(b: bool) -> u8 {
    u8::from(b)
}

/// Each dotted part zero-padded to two digits: `4.1.5` → `040105` (Python's `zfill(2)`).
fn padded_version(version: &str) -> String {
    version.split('.').map(|p| format!("{p:0>2}")).collect()
}

/// Seconds since the epoch of a time as Python prints it (`2024-08-28 19:39:26.352526+00:00`),
/// as Python's `total_seconds()` (a float); `0` when absent or unparsable.
fn epoch(time: Option<&str>) -> String {
    let Some(at) = time.and_then(|t| t.trim().parse::<jiff::Timestamp>().ok()) else {
        return "0".into();
    };
    let micros = at.as_microsecond();
    // Exact below 2^53 µs (year 2255); the division rounds as Python's true division.
    py_float(micros as f64 / 1e6)
}

/// Patroni's `PostgresqlState` index of a state string; `-1` for anything else (`unknown`).
fn state_index(state: &str) -> i64 {
    POSTGRES_STATES
        .iter()
        .position(|(s, _)| *s == state)
        .and_then(|i| i64::try_from(i).ok())
        .unwrap_or(-1)
}

/// Patroni's `failover_priority`: 0 when the `nofailover` tag is set, else the
/// `failover_priority` tag, else 1.
fn failover_priority(ha: &HaSnapshot) -> i64 {
    let tags = &ha.configured_tags;
    let nofailover = tags
        .get("nofailover")
        .is_some_and(|v| parse_bool(v).unwrap_or_else(|| python_truthy(v)));
    if nofailover {
        return 0;
    }
    tags.get("failover_priority")
        .and_then(parse_int)
        .unwrap_or(1)
}

/// A label value escaped as the exposition format requires.
pub(crate) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
