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
                STREAMING_REPLICAS,
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
            // It may be briefly unreachable (re-pointed without an upstream),
            // but whenever it answers it is still in recovery.
            let answer = sql(
                &members[1].host,
                &members[1].host,
                &members[1].spec,
                "select pg_is_in_recovery()",
            );
            assert!(
                answer.is_none() || answer.as_deref() == Some("t"),
                "m1 answered {answer:?}"
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
                    STREAMING_REPLICAS,
                )?;
                (writable(&members) == ["m0"] && n == "1").then_some(())
            },
        )
        .await;
    }
    stop_all(&mut members);
}

/// A replica lagging past `maximum_lag_on_failover` (1 MiB) behind the last
/// position the leader published is never promoted.
#[tokio::test]
async fn lagging_replica_is_never_promoted() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t51-lagging").await.expect("namespace");
    let (mut members, _kubeconfig) = start_cluster(lab, &ns, "lag", false, 2, |_| {}).await;
    let p = {
        tracing::info!("--- one primary, one streaming replica");
        wait_for(
            FORM_TIMEOUT,
            "a primary with a streaming replica",
            &members,
            || {
                let w = writable(&members);
                let p = members.iter().position(|m| w == [m.name.clone()])?;
                let n = sql(
                    &members[p].host,
                    &members[p].host,
                    &members[p].spec,
                    STREAMING_REPLICAS,
                )?;
                (n == "1").then_some(p)
            },
        )
        .await
    };
    let replica = members[1 - p].name.clone();
    let on_primary = |m: &[Member], q: &str| sql(&m[p].host, &m[p].host, &m[p].spec, q);
    {
        tracing::info!(
            "--- cut replication (the replication user may not log in), then write 8 MB on the primary"
        );
        on_primary(&members, "alter role standby nologin").expect("alter role");
        on_primary(
            &members,
            "select pg_terminate_backend(pid) from pg_stat_replication",
        )
        .expect("terminate walsender");
        on_primary(
            &members,
            "create table big as select repeat('x', 1000) as v from generate_series(1, 8000)",
        )
        .expect("write");
        // The leader publishes its position with each renewal (every loop_wait).
        tokio::time::sleep(Duration::from_secs(u64::from(3 * LOOP_WAIT))).await;
        let lag = on_primary(
            &members,
            &format!(
                "select pg_current_wal_lsn() - restart_lsn from pg_replication_slots where slot_name = '{replica}'"
            ),
        );
        let lag: f64 = lag.and_then(|l| l.parse().ok()).expect("lag in bytes");
        assert!(
            lag > 1_048_576.0,
            "the replica must lag past maximum_lag_on_failover, lags {lag} bytes"
        );
    }
    {
        tracing::info!(
            "--- the primary killed: the lagging replica stays a replica well past the ttl"
        );
        kill_member(&mut members[p]);
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(u64::from(TTL + 6 * LOOP_WAIT));
        while tokio::time::Instant::now() < deadline {
            assert!(
                writable(&members).is_empty(),
                "lagging member promoted\n{}",
                logs(&members)
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    stop_all(&mut members);
}
