//! Golden tests of [`render_metrics`](super::render_metrics).

use std::collections::BTreeMap;
use std::time::Duration;

use patroni_core::{Cluster, ClusterConfig, Role};
use serde_json::json;

use super::*;
use crate::node::PatroniInfo;

fn info() -> PatroniInfo {
    PatroniInfo {
        version: "4.1.5".into(),
        scope: "demo".into(),
        name: "pg-1".into(),
    }
}

fn replica() -> NodeStatus {
    let mut s = NodeStatus::minimal("running", Role::Replica, info());
    s.postmaster_start_time = Some("2024-08-28 19:39:26.352526+00:00".into());
    s.server_version = Some(160_004);
    s.xlog = Some(Xlog::Replica {
        received_location: Some(67_395_656),
        replayed_location: Some(67_395_000),
        replayed_timestamp: Some("2024-08-28 19:40:00+00:00".into()),
        paused: false,
    });
    s.sync_standby = true;
    s.timeline = Some(3);
    s.replication_state = Some("streaming".into());
    s.dcs_last_seen = 1_692_356_718;
    s
}

/// A running synchronous replica renders exactly as Patroni 4.1.5 renders it.
#[test]
fn replica_renders_like_patroni() {
    let mut ha = HaSnapshot::new(Duration::from_secs(30));
    ha.configured_tags = BTreeMap::from([("failover_priority".into(), json!(3))]);
    let cluster = Cluster {
        config: Some(ClusterConfig {
            version: "1".into(),
            modify_version: Some("1".into()),
            data: json!({"failsafe_mode": true})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }),
        failsafe: Some(BTreeMap::from([(
            "pg-1".into(),
            "http://pg-1:8008/patroni".into(),
        )])),
        ..Default::default()
    };
    let text = render_metrics(&replica(), &ha, Some(&cluster));
    let l = r#"{scope="demo",name="pg-1"}"#;
    let want = format!(
        "# HELP patroni_version Patroni semver without periods.
# TYPE patroni_version gauge
patroni_version{l} 040105
# HELP patroni_postgres_running Value is 1 if Postgres is running, 0 otherwise.
# TYPE patroni_postgres_running gauge
patroni_postgres_running{l} 1
# HELP patroni_postmaster_start_time Epoch seconds since Postgres started.
# TYPE patroni_postmaster_start_time gauge
patroni_postmaster_start_time{l} 1724873966.352526
# HELP patroni_primary Value is 1 if this node is the leader, 0 otherwise.
# TYPE patroni_primary gauge
patroni_primary{l} 0
# HELP patroni_xlog_location Current location of the Postgres transaction log, 0 if this node is not the leader.
# TYPE patroni_xlog_location gauge
patroni_xlog_location{l} 0
# HELP patroni_standby_leader Value is 1 if this node is the standby_leader, 0 otherwise.
# TYPE patroni_standby_leader gauge
patroni_standby_leader{l} 0
# HELP patroni_replica Value is 1 if this node is a replica, 0 otherwise.
# TYPE patroni_replica gauge
patroni_replica{l} 1
# HELP patroni_sync_standby Value is 1 if this node is a sync standby, 0 otherwise.
# TYPE patroni_sync_standby gauge
patroni_sync_standby{l} 1
# HELP patroni_quorum_standby Value is 1 if this node is a quorum standby, 0 otherwise.
# TYPE patroni_quorum_standby gauge
patroni_quorum_standby{l} 0
# HELP patroni_xlog_received_location Current location of the received Postgres transaction log, 0 if this node is not a replica.
# TYPE patroni_xlog_received_location gauge
patroni_xlog_received_location{l} 67395656
# HELP patroni_xlog_replayed_location Current location of the replayed Postgres transaction log, 0 if this node is not a replica.
# TYPE patroni_xlog_replayed_location gauge
patroni_xlog_replayed_location{l} 67395000
# HELP patroni_xlog_replayed_timestamp Current timestamp of the replayed Postgres transaction log, 0 if null.
# TYPE patroni_xlog_replayed_timestamp gauge
patroni_xlog_replayed_timestamp{l} 1724874000.0
# HELP patroni_xlog_paused Value is 1 if the Postgres xlog is paused, 0 otherwise.
# TYPE patroni_xlog_paused gauge
patroni_xlog_paused{l} 0
# HELP patroni_postgres_streaming Value is 1 if Postgres is streaming, 0 otherwise.
# TYPE patroni_postgres_streaming gauge
patroni_postgres_streaming{l} 1
# HELP patroni_postgres_in_archive_recovery Value is 1 if Postgres is replicating from archive, 0 otherwise.
# TYPE patroni_postgres_in_archive_recovery gauge
patroni_postgres_in_archive_recovery{l} 0
# HELP patroni_postgres_server_version Version of Postgres (if running), 0 otherwise.
# TYPE patroni_postgres_server_version gauge
patroni_postgres_server_version{l} 160004
# HELP patroni_cluster_unlocked Value is 1 if the cluster is unlocked, 0 if locked.
# TYPE patroni_cluster_unlocked gauge
patroni_cluster_unlocked{l} 0
# HELP patroni_failsafe_mode_is_active Value is 1 if failsafe mode is active, 0 if inactive.
# TYPE patroni_failsafe_mode_is_active gauge
patroni_failsafe_mode_is_active{l} 0
# HELP patroni_failsafe_mode_enabled Value is 1 if failsafe_mode is enabled, 0 otherwise.
# TYPE patroni_failsafe_mode_enabled gauge
patroni_failsafe_mode_enabled{l} 1
# HELP patroni_failsafe_member Value is 1 if this node is a member of failsafe, 0 otherwise.
# TYPE patroni_failsafe_member gauge
patroni_failsafe_member{l} 1
# HELP patroni_postgres_timeline Postgres timeline of this node (if running), 0 otherwise.
# TYPE patroni_postgres_timeline gauge
patroni_postgres_timeline{l} 3
# HELP patroni_dcs_last_seen Epoch timestamp when DCS was last contacted successfully by Patroni.
# TYPE patroni_dcs_last_seen gauge
patroni_dcs_last_seen{l} 1692356718
# HELP patroni_pending_restart Value is 1 if the node needs a restart, 0 otherwise.
# TYPE patroni_pending_restart gauge
patroni_pending_restart{l} 0
# HELP patroni_is_paused Value is 1 if auto failover is disabled, 0 otherwise.
# TYPE patroni_is_paused gauge
patroni_is_paused{l} 0
# HELP patroni_postgres_state Numeric representation of Postgres state.
# Values: 0=initdb, 1=initdb_failed, 2=custom_bootstrap, 3=custom_bootstrap_failed, 4=creating_replica, 5=running, 6=starting, 7=bootstrap_starting, 8=start_failed, 9=restarting, 10=restart_failed, 11=stopping, 12=stopped, 13=stop_failed, 14=crashed
# TYPE patroni_postgres_state gauge
patroni_postgres_state{l} 5
# HELP patroni_failover_priority Failover priority of this node.
# TYPE patroni_failover_priority gauge
patroni_failover_priority{l} 3
"
    );
    assert_eq!(text, want);
}

/// A stopped member without a server version omits the 9.6+ metrics and reports zeros.
#[test]
fn stopped_member_reports_zeros_and_omits_replication_metrics() {
    let mut status = NodeStatus::minimal("stopped", Role::Uninitialized, info());
    status.cluster_unlocked = true;
    status.pause = true;
    let mut ha = HaSnapshot::new(Duration::from_secs(30));
    ha.configured_tags = BTreeMap::from([
        ("nofailover".into(), json!(true)),
        ("failover_priority".into(), json!(5)),
    ]);
    let text = render_metrics(&status, &ha, None);
    let l = r#"{scope="demo",name="pg-1"}"#;
    for line in [
        format!("patroni_postgres_running{l} 0"),
        format!("patroni_postmaster_start_time{l} 0"),
        format!("patroni_replica{l} 0"),
        format!("patroni_xlog_replayed_timestamp{l} 0"),
        format!("patroni_postgres_server_version{l} 0"),
        format!("patroni_cluster_unlocked{l} 1"),
        format!("patroni_is_paused{l} 1"),
        format!("patroni_postgres_state{l} 12"),
        format!("patroni_failover_priority{l} 0"),
        format!("patroni_failsafe_member{l} 0"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("patroni_postgres_streaming"));
    assert!(!text.contains("patroni_master"));
    status.state = "unknown".into();
    assert!(render_metrics(&status, &ha, None).contains(&format!("patroni_postgres_state{l} -1")));
}

/// Versions pad each part to two digits; label values are escaped.
#[test]
fn versions_pad_and_labels_escape() {
    assert_eq!(padded_version("4.1.5"), "040105");
    assert_eq!(padded_version("4.0.10"), "040010");
    assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
}
