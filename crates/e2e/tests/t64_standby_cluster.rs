//! Standby clusters (#20) on the lab's Kubernetes, as Patroni's `standby_cluster.feature`
//! exercises them from outside: cluster A (3 members, namespace `t64-a`) and cluster B
//! (3 members, namespace `t64-b`) whose `bootstrap.dcs.standby_cluster` points at A's primary.
//!
//! 1. B's first member clones A (no `initdb`) and is B's standby leader; the others follow it;
//!    rows written on A appear on every member of B, and nobody in B accepts writes.
//! 2. B's standby leader shows as such everywhere: `GET /patroni` role `standby_leader`,
//!    `GET /standby-leader` 200, the pod's role label the configured
//!    `standby_leader_label_value`, Python `patronictl list` (PyPI 4.1.5) "Standby Leader".
//! 3. `kill -9` of B's standby leader: another member of B becomes the standby leader (with
//!    the label) and keeps replicating from A.
//! 4. `PATCH /config {"standby_cluster": null}` on B promotes B's standby leader: B accepts
//!    writes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::*;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use patroni_testlab::{Lab, TestNamespace};

/// The role label value B's standby leader carries.
const STANDBY_LABEL: &str = "standby-leader";

/// The member of `members` whose `GET /patroni` says `standby_leader`, once at least
/// `streaming` replicas stream from it (not counting `pg_basebackup`).
fn standby_leader(members: &[Member], streaming: usize) -> Option<usize> {
    let leaders: Vec<usize> = members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.agent.is_some())
        .filter(|(_, m)| {
            get_json(m, "/patroni").is_some_and(|(_, doc)| doc["role"] == "standby_leader")
        })
        .map(|(i, _)| i)
        .collect();
    let [l] = leaders.as_slice() else {
        return None;
    };
    let (h, s) = (&members[*l].host, &members[*l].spec);
    let n: usize = sql(h, h, s, STREAMING_REPLICAS)?.parse().ok()?;
    (n >= streaming).then_some(*l)
}

/// Whether every running member of `members` has replayed the row `x = value` of table `t`.
fn replicated(members: &[Member], value: u32) -> bool {
    members.iter().filter(|m| m.agent.is_some()).all(|m| {
        sql(
            &m.host,
            &m.host,
            &m.spec,
            &format!("select count(*) from t where x = {value}"),
        )
        .as_deref()
            == Some("1")
    })
}

/// Inserts `x = value` into table `t` on `m`; panics if it is refused.
fn insert(m: &Member, value: u32) {
    sql(
        &m.host,
        &m.host,
        &m.spec,
        &format!("insert into t values ({value})"),
    )
    .unwrap_or_else(|| panic!("insert {value} on {}", m.name));
}

async fn pod_labels(ns: &TestNamespace, name: &str) -> BTreeMap<String, String> {
    let api: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    api.get(name)
        .await
        .expect("read pod")
        .metadata
        .labels
        .unwrap_or_default()
}

/// The standby leader's pod carries the configured label within a few loops.
async fn wait_for_label(ns: &TestNamespace, members: &[Member], name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let labels = pod_labels(ns, name).await;
        if labels.get("role").map(String::as_str) == Some(STANDBY_LABEL) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}'s role label: {labels:?}\n{}",
            logs(members)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_cluster_replicates_fails_over_and_is_promoted() {
    init_tracing();
    let lab = Lab::shared();
    let ns_a = lab.namespace("t64-a").await.expect("namespace a");
    let ns_b = lab.namespace("t64-b").await.expect("namespace b");
    let (mut a, _) = start_cluster(lab, &ns_a, "alpha", false, 3, |_| {}).await;
    let p = healthy(&a, "cluster A formed").await;
    let remote = a[p].host.ip().to_owned();
    insert_table(&a[p]);

    let (mut b, _) = {
        tracing::info!("--- cluster B: a standby cluster of A ({remote})");
        let remote = remote.clone();
        start_cluster(lab, &ns_b, "beta", false, 3, move |s| {
            s.dcs_extra.insert(
                "standby_cluster".into(),
                format!("{{host: {remote}, port: 5432}}"),
            );
            s.kubernetes_extra
                .insert("standby_leader_label_value".into(), STANDBY_LABEL.into());
        })
        .await
    };
    let sl = wait_for(
        FORM_TIMEOUT,
        "B's standby leader with two replicas",
        &b,
        || standby_leader(&b, 2),
    )
    .await;

    {
        tracing::info!("--- rows written on A appear on every member of B; B refuses writes");
        insert(&a[p], 2);
        wait_for(Duration::from_secs(60), "row 2 on B", &b, || {
            replicated(&b, 2).then_some(())
        })
        .await;
        assert!(writable(&b).is_empty(), "nobody in B is writable");
        let (h, s) = (&b[sl].host, &b[sl].spec);
        assert_eq!(
            sql(
                h,
                h,
                s,
                "select count(*) from pg_stat_wal_receiver where status = 'streaming'"
            )
            .as_deref(),
            Some("1"),
            "the standby leader streams from A"
        );
    }

    {
        tracing::info!("--- B's standby leader as the API, the pod label and patronictl show it");
        let name = b[sl].name.clone();
        assert_eq!(
            get_json(&b[sl], "/standby-leader").map(|(s, _)| s),
            Some(200)
        );
        let (_, cluster) = get_json(&b[sl], "/cluster").expect("GET /cluster");
        let roles: Vec<(String, String)> = cluster["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| (m["name"].to_string(), m["role"].to_string()))
            .collect();
        assert!(
            roles
                .iter()
                .any(|(n, r)| n.trim_matches('"') == name && r == "\"standby_leader\""),
            "{roles:?}"
        );
        wait_for_label(&ns_b, &b, &name).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let out = patronictl(lab, dir.path(), &ns_b.name, "beta", false)
            .args(["list", "-f", "json"])
            .output()
            .expect("run patronictl");
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).expect("patronictl list -f json");
        assert!(
            rows.iter()
                .any(|r| r["Member"] == name.as_str() && r["Role"] == "Standby Leader"),
            "{rows:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let new_sl = {
        tracing::info!("--- kill -9 of B's standby leader: another member takes over");
        let old = b[sl].name.clone();
        kill_member(&mut b[sl]);
        let started = tokio::time::Instant::now();
        let new_sl = wait_for(FAILOVER_TIMEOUT, "a new standby leader in B", &b, || {
            standby_leader(&b, 0).filter(|i| b[*i].name != old)
        })
        .await;
        tracing::info!(
            "new standby leader {} after {:?}",
            b[new_sl].name,
            started.elapsed()
        );
        wait_for_label(&ns_b, &b, &b[new_sl].name.clone()).await;
        insert(&a[p], 3);
        wait_for(
            Duration::from_secs(60),
            "row 3 on what is left of B",
            &b,
            || replicated(&b, 3).then_some(()),
        )
        .await;
        assert!(writable(&b).is_empty(), "nobody in B is writable");
        assert_eq!(streams_from(&b[new_sl]).as_deref(), Some(remote.as_str()));
        new_sl
    };

    {
        tracing::info!("--- PATCH /config standby_cluster: null promotes B's standby leader");
        patch_config(&b[new_sl], r#"{"standby_cluster": null}"#);
        let name = b[new_sl].name.clone();
        wait_for(FAILOVER_TIMEOUT, "B's leader promoted", &b, || {
            (writable(&b) == [name.clone()]).then_some(())
        })
        .await;
        insert(&b[new_sl], 100);
        wait_for(Duration::from_secs(60), "B's own row on B", &b, || {
            replicated(&b, 100).then_some(())
        })
        .await;
        assert_eq!(writable(&a), [a[p].name.clone()], "A keeps its primary");
    }

    stop_all(&mut b);
    stop_all(&mut a);
}

/// The address `m`'s WAL receiver streams from.
fn streams_from(m: &Member) -> Option<String> {
    sql(
        &m.host,
        &m.host,
        &m.spec,
        "select sender_host from pg_stat_wal_receiver where status = 'streaming'",
    )
}

/// Creates table `t` with row 1 on A's primary `m`.
fn insert_table(m: &Member) {
    sql(
        &m.host,
        &m.host,
        &m.spec,
        "create table t (x int); insert into t values (1)",
    )
    .expect("create t on A");
}
