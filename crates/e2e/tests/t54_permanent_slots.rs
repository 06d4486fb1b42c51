//! Issue #12, permanent replication slots, on the ground of Patroni's
//! `features/permanent_slots.feature`, with 4 real members: m0 leads, m1 replicates, m2 is
//! `nofailover`, m3 cascades from m2 (`replicatefrom`). After `PATCH /config` adds a
//! permanent physical slot, a permanent slot named like member m3, a logical slot and an
//! `ignore_slots` entry:
//! - the leader has every member slot and the permanent ones, m2 only the slot of m3, and
//!   every failover candidate has copies of all (the logical one copied from the primary);
//! - slots nobody manages are dropped on the primary and on replicas, ignored ones are kept;
//! - consuming the logical slot and advancing the physical one on the primary moves the
//!   copies on the replicas to the same position;
//! - the leader publishes the positions in `slots` and member slots in `retain_slots`;
//! - after the leader dies, the new primary has the permanent slots (the logical one usable)
//!   and the absent members' slots, and the old leader rejoins without the `xmin` its slot
//!   for the new leader carried while it was primary.

mod common;

use std::collections::BTreeMap;

use common::cluster::*;
use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use patroni_testlab::Lab;

const SCOPE: &str = "slots";
const PATCH: &str = r#"{"slots":{"test_physical":0,"m3":null,"test_logical":{"type":"logical","database":"postgres","plugin":"test_decoding"}},"ignore_slots":[{"name":"ignored_slot"}]}"#;

/// `physical`, `logical/PLUGIN`, or `None` when `m` has no slot `name`.
fn slot(m: &Member, name: &str) -> Option<String> {
    sql(
        &m.host,
        &m.host,
        &m.spec,
        &format!(
            "select slot_type || coalesce('/' || plugin, '') from pg_replication_slots \
             where slot_name = '{name}'"
        ),
    )
    .filter(|s| !s.is_empty())
}

/// `column` of slot `name` on `m`.
fn slot_column(m: &Member, name: &str, column: &str) -> Option<String> {
    sql(
        &m.host,
        &m.host,
        &m.spec,
        &format!("select {column} from pg_replication_slots where slot_name = '{name}'"),
    )
    .filter(|s| !s.is_empty())
}

/// Whether slot `name` has the same `column` on `a` and `b`.
fn in_sync(a: &Member, b: &Member, name: &str, column: &str) -> bool {
    let x = slot_column(a, name, column);
    x.is_some() && x == slot_column(b, name, column)
}

/// `PATCH /config` on `m`'s API; the HTTP status.
fn patch_config(m: &Member, body: &str) -> Option<u16> {
    let out = m
        .host
        .command("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PATCH"])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .arg(format!("http://{}:8008/config", m.host.ip()))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The leader ConfigMap's annotations.
async fn leader_annotations(client: &kube::Client, ns: &str) -> BTreeMap<String, String> {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), ns);
    api.get(&format!("{SCOPE}-leader"))
        .await
        .ok()
        .and_then(|c| c.metadata.annotations)
        .unwrap_or_default()
}

#[tokio::test]
async fn permanent_slots_follow_patroni() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t54-slots").await.expect("namespace");
    let (mut members, kubeconfig) = start_cluster_m0_first(lab, &ns, SCOPE, false, 4, |spec| {
        spec.dcs_parameters
            .insert("wal_level".into(), "logical".into());
        match spec.name.as_str() {
            "m2" => {
                spec.tags.insert("nofailover".into(), "true".into());
            }
            "m3" => {
                spec.tags.insert("replicatefrom".into(), "m2".into());
            }
            _ => {}
        }
    })
    .await;
    let count = |m: &Member, q: &str| sql(&m.host, &m.host, &m.spec, q);
    {
        tracing::info!("--- m0 leads, m1 and m2 stream from it, m3 from m2");
        wait_for(FORM_TIMEOUT, "the cascade formed", &members, || {
            (writable(&members) == ["m0"]
                && count(&members[0], STREAMING_REPLICAS)? == "2"
                && count(&members[2], STREAMING_REPLICAS)? == "1")
                .then_some(())
        })
        .await;
        let status = wait_for(FORM_TIMEOUT, "PATCH /config answered", &members, || {
            patch_config(&members[0], PATCH)
        })
        .await;
        assert_eq!(status, 200);
    }
    {
        tracing::info!("--- the slots each member must have");
        let m = &members;
        wait_for(FORM_TIMEOUT, "slots created", m, || {
            let physical = Some("physical".to_owned());
            let logical = Some("logical/test_decoding".to_owned());
            let ok = [
                (0, "test_physical", &physical),
                (0, "m1", &physical),
                (0, "m2", &physical),
                (0, "m3", &physical),
                (0, "test_logical", &logical),
                (2, "m3", &physical),
                (1, "test_logical", &logical),
                (3, "test_logical", &logical),
                (1, "test_physical", &physical),
                (3, "test_physical", &physical),
                (1, "m0", &physical),
                (1, "m2", &physical),
                (1, "m3", &physical),
                (3, "m0", &physical),
                (3, "m1", &physical),
                (3, "m2", &physical),
            ]
            .iter()
            .all(|(i, name, want)| slot(&m[*i], name) == **want);
            ok.then_some(())
        })
        .await;
        for name in ["test_physical", "test_logical", "m0", "m1"] {
            assert_eq!(slot(&m[2], name), None, "m2 (nofailover) has {name}");
        }
    }
    {
        tracing::info!("--- unmanaged slots are dropped, ignored ones kept");
        for q in [
            "select pg_create_physical_replication_slot('stray')",
            "select pg_create_physical_replication_slot('ignored_slot')",
        ] {
            assert!(count(&members[0], q).is_some(), "{q}");
        }
        assert!(
            count(
                &members[1],
                "select pg_create_physical_replication_slot('stray_on_replica')"
            )
            .is_some()
        );
        wait_for(FORM_TIMEOUT, "stray slots dropped", &members, || {
            (slot(&members[0], "stray").is_none()
                && slot(&members[1], "stray_on_replica").is_none())
            .then_some(())
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(2 * LOOP_WAIT))).await;
        assert_eq!(
            slot(&members[0], "ignored_slot").as_deref(),
            Some("physical")
        );
        count(
            &members[0],
            "select pg_drop_replication_slot('ignored_slot')",
        );
    }
    {
        tracing::info!("--- consumed on the primary, the copies follow");
        for q in [
            "create table replicate_me (id int)",
            "insert into replicate_me values (1)",
            "select count(*) from pg_logical_slot_get_changes('test_logical', NULL, NULL)",
            "select pg_replication_slot_advance('test_physical', pg_current_wal_lsn())",
        ] {
            assert!(count(&members[0], q).is_some(), "{q}");
        }
        let m = &members;
        for (a, b, name, column) in [
            (0, 1, "test_logical", "confirmed_flush_lsn"),
            (0, 3, "test_logical", "confirmed_flush_lsn"),
            (0, 1, "test_physical", "restart_lsn"),
            (0, 3, "test_physical", "restart_lsn"),
            (0, 3, "m1", "restart_lsn"),
            (2, 0, "m3", "restart_lsn"),
            (2, 1, "m3", "restart_lsn"),
        ] {
            wait_for(
                FORM_TIMEOUT,
                &format!("{name} in sync on m{a} and m{b}"),
                m,
                || in_sync(&m[a], &m[b], name, column).then_some(()),
            )
            .await;
        }
    }
    {
        tracing::info!("--- the leader publishes slots and retain_slots");
        let ann = leader_annotations(&ns.client, &ns.name).await;
        let slots: BTreeMap<String, u64> =
            serde_json::from_str(ann.get("slots").expect("slots")).expect("slots JSON");
        for name in ["test_physical", "test_logical", "m0", "m1", "m2", "m3"] {
            assert!(slots.contains_key(name), "{name} not in {slots:?}");
        }
        let retain: Vec<String> =
            serde_json::from_str(ann.get("retain_slots").expect("retain_slots")).expect("JSON");
        // m3 was retained before it became permanent: it stays until member_slots_ttl.
        for name in ["m0", "m1", "m2"] {
            assert!(
                retain.contains(&name.to_owned()),
                "{name} not in {retain:?}"
            );
        }
    }
    {
        tracing::info!("--- m3, m2, then the leader die: m1 leads with the permanent slots");
        for i in [3, 2, 0] {
            kill_member(&mut members[i]);
        }
        wait_for(FAILOVER_TIMEOUT, "m1 promoted", &members, || {
            (writable(&members) == ["m1"]).then_some(())
        })
        .await;
        let m = &members;
        wait_for(FORM_TIMEOUT, "slots kept on the new primary", m, || {
            ["test_physical", "m0", "m3"]
                .iter()
                .all(|n| slot(&m[1], n).as_deref() == Some("physical"))
                .then_some(())
        })
        .await;
        assert_eq!(
            slot(&m[1], "test_logical").as_deref(),
            Some("logical/test_decoding")
        );
        let changes = count(
            &m[1],
            "select count(*) from pg_logical_slot_get_changes('test_logical', NULL, NULL)",
        );
        assert!(changes.is_some(), "the logical slot is usable on m1");
        // A fresh leader never retains m3: its slot is permanent.
        let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
        loop {
            let ann = leader_annotations(&ns.client, &ns.name).await;
            let retain = ann.get("retain_slots").cloned().unwrap_or_default();
            if retain == r#"["m0", "m1", "m2"]"# {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "retain_slots {retain}\n{}",
                logs(m)
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    {
        tracing::info!("--- m0 rejoins as a replica; its slot for m1 holds no xmin");
        restart_member(&mut members[0], &kubeconfig);
        let m = &members;
        wait_for(FAILOVER_TIMEOUT, "m0 streams from m1", m, || {
            (count(&m[1], STREAMING_REPLICAS)? == "1").then_some(())
        })
        .await;
        wait_for(FORM_TIMEOUT, "m0 keeps slots for the others", m, || {
            let xmin = sql(
                &m[0].host,
                &m[0].host,
                &m[0].spec,
                "select coalesce(xmin::text, 'none') from pg_replication_slots where slot_name = 'm1'",
            )?;
            (xmin == "none"
                && slot(&m[0], "m2").is_some()
                && slot(&m[0], "m3").is_some()
                && slot(&m[0], "test_physical").is_some())
            .then_some(())
        })
        .await;
    }
    stop_all(&mut members);
}
