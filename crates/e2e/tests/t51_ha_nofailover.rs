//! A member tagged `nofailover` is never promoted: with the primary dead and
//! only a `nofailover` replica left, the cluster stays without a writable
//! member past the lock's ttl, and the old primary takes over again when its
//! agent comes back.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::Lab;

/// ConfigMaps mode (the rule does not depend on the mode).
#[tokio::test]
async fn nofailover_replica_is_never_promoted() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t51-nofailover").await.expect("namespace");
    let scope = "nofo";
    let (mut members, kubeconfig) = start_cluster(lab, &ns, scope, false, 2, |spec| {
        if spec.name == "m1" {
            spec.tags.insert("nofailover".into(), "true".into());
        }
    })
    .await;
    {
        tracing::info!("--- m0 bootstraps (a nofailover member never does), m1 streams");
        wait_for(FORM_TIMEOUT, "m0 primary, m1 streaming", &members, || {
            let n = sql(
                &members[0].host,
                &members[0].host,
                &members[0].spec,
                "select count(*) from pg_stat_replication where state = 'streaming'",
            )?;
            (writable(&members) == ["m0"] && n == "1").then_some(())
        })
        .await;
    }
    {
        tracing::info!("--- m0 killed: m1 stays a replica well past the ttl");
        kill_member(&mut members[0]);
        let watch_for = Duration::from_secs(u64::from(TTL + 6 * LOOP_WAIT));
        let deadline = tokio::time::Instant::now() + watch_for;
        while tokio::time::Instant::now() < deadline {
            assert!(
                writable(&members).is_empty(),
                "nofailover member promoted\n{}",
                logs(&members)
            );
            assert_eq!(
                sql(
                    &members[1].host,
                    &members[1].host,
                    &members[1].spec,
                    "select pg_is_in_recovery()"
                )
                .as_deref(),
                Some("t")
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    {
        tracing::info!("--- m0 comes back and leads again; m1 follows it");
        restart_member(&mut members[0], &kubeconfig);
        wait_for(
            FORM_TIMEOUT,
            "m0 writable again with m1 streaming",
            &members,
            || {
                let n = sql(
                    &members[0].host,
                    &members[0].host,
                    &members[0].spec,
                    "select count(*) from pg_stat_replication where state = 'streaming'",
                )?;
                (writable(&members) == ["m0"] && n == "1").then_some(())
            },
        )
        .await;
    }
    stop_all(&mut members);
}
