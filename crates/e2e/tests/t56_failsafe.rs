//! Issue #16, failsafe mode on a real 3-member cluster while the Kubernetes API server is
//! frozen (SIGSTOP for 3 × ttl, as Patroni's acceptance tests take the DCS away):
//! - **failsafe on** (turned on live with `PATCH /config`): `GET /failsafe` lists every member;
//!   through the outage the primary keeps accepting writes and answers `GET /primary` 200 with
//!   `failsafe_mode_is_active`, the replicas report the call they accepted, and no replica
//!   ever accepts a write; after SIGCONT the same primary holds the lock again with both
//!   replicas streaming, without any manual action;
//! - **failsafe on, a replica killed in the outage**: the primary can no longer hear from
//!   every member and demotes; nobody promotes until the API server is back; then the cluster
//!   heals (Patroni's "check primary is demoted when one replica is shut down and DCS is
//!   down");
//! - **failsafe off**: the primary demotes once its last renewal is `retry_timeout` old
//!   (Patroni's behaviour) and nobody promotes until the API server is back; then a primary
//!   again, healthy.
//!
//! ConfigMaps mode runs all three; Endpoints mode (where the leader object is the cluster's
//! Endpoints) the first. The API server is shared by the whole lab: one test runs the
//! scenarios one after another, and a guard resumes the API server whatever happens.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::scenario::*;
use common::*;
use patroni_testlab::Lab;
use tokio::time::Instant;

/// How long the API server stays frozen.
const OUTAGE: Duration = Duration::from_secs(3 * TTL as u64);
/// A primary without failsafe demotes `retry_timeout` after its last renewal, which is at
/// most `loop_wait` plus a renewal attempt old; generous slack for a loaded machine.
const DEMOTE_WITHIN: Duration = Duration::from_secs((RETRY_TIMEOUT + LOOP_WAIT) as u64 + 20);

/// Whether `m` reports failsafe mode active in `GET /patroni`.
fn failsafe_active(m: &Member) -> bool {
    get_json(m, "/patroni").is_some_and(|(_, doc)| doc["failsafe_mode_is_active"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failsafe_mode_keeps_the_primary_through_an_api_server_outage() {
    init_tracing();
    let lab = Lab::shared();
    scenarios(lab, false, "t56-failsafe-cm", true).await;
    scenarios(lab, true, "t56-failsafe-ep", false).await;
}

async fn scenarios(lab: &'static Lab, use_endpoints: bool, namespace: &str, all: bool) {
    let ns = lab.namespace(namespace).await.expect("namespace");
    let (mut members, kubeconfig) =
        start_cluster(lab, &ns, "failsafe", use_endpoints, 3, |_| {}).await;
    let primary = healthy(&members, "one primary, two streaming").await;
    {
        let (h, s) = (&members[primary].host, &members[primary].spec);
        sql(h, h, s, "create table t(v bigint)").expect("create table");
    }

    tracing::info!(
        use_endpoints,
        "--- failsafe_mode on, the API server frozen for 3 x ttl"
    );
    let freeze = || lab.controlplane().freeze_apiserver().expect("freeze");
    failsafe_on(&members, primary).await;
    let old = members[primary].name.clone();
    {
        let mut primary_active = false;
        let mut replicas_active = false;
        primary_keeps_writes_while_frozen(&members, primary, OUTAGE, freeze, |elapsed| {
            if !primary_active && let Some((200, doc)) = get_json(&members[primary], "/primary") {
                primary_active = doc["failsafe_mode_is_active"] == true;
                if primary_active {
                    tracing::info!(after = ?elapsed, "GET /primary: failsafe active");
                }
            }
            replicas_active = replicas_active
                || members
                    .iter()
                    .filter(|m| m.name != old)
                    .all(failsafe_active);
        })
        .await;
        assert!(
            primary_active,
            "GET /primary never answered 200 with failsafe_mode_is_active\n{}",
            logs(&members)
        );
        assert!(
            replicas_active,
            "the replicas never reported the primary's failsafe call\n{}",
            logs(&members)
        );
    }
    let after = healthy(&members, "healthy after the API server is back").await;
    assert_eq!(members[after].name, old, "the primary kept its role");
    wait_for(
        Duration::from_secs(30),
        "failsafe inactive on the primary again",
        &members,
        || (!failsafe_active(&members[after])).then_some(()),
    )
    .await;

    if all {
        tracing::info!("--- failsafe on, a replica killed in the outage: the primary demotes");
        let primary = after;
        let replica = (0..members.len())
            .find(|&i| i != primary)
            .expect("a replica");
        {
            let frozen = freeze();
            wait_for(
                Duration::from_secs(30),
                "failsafe active on the primary",
                &members,
                || failsafe_active(&members[primary]).then_some(()),
            )
            .await;
            kill_member(&mut members[replica]);
            let killed = Instant::now();
            wait_for(DEMOTE_WITHIN, "the primary demoted", &members, || {
                writable(&members).is_empty().then_some(())
            })
            .await;
            tracing::info!(after = ?killed.elapsed(), "the primary demoted after the replica died");
            nobody_writable_until(
                &members,
                Instant::now() + Duration::from_secs(u64::from(TTL)),
            )
            .await;
            drop(frozen);
        }
        restart_member(&mut members[replica], &kubeconfig);
        let primary = healthy(
            &members,
            "healthy after the API server and the replica are back",
        )
        .await;

        tracing::info!("--- failsafe off: the primary demotes, nobody promotes");
        failsafe_off(&members, primary).await;
        primary_demotes_while_frozen(&members, OUTAGE, DEMOTE_WITHIN, freeze).await;
        healthy(&members, "healthy after the API server is back").await;
    }
    stop_all(&mut members);
}
