//! The etcd store going away under a 3-member cluster (etcd frozen with SIGSTOP for 3 × ttl,
//! as Patroni's acceptance tests take the DCS away), the etcd3 counterpart of t56; run one
//! at a time with t57's other cluster test ([`super::SERIAL`]):
//! - **failsafe on** (turned on live with `PATCH /config`): the primary keeps accepting
//!   writes through the outage, no replica ever accepts one, and after SIGCONT the same
//!   primary holds the lock again (its lease expired in etcd meanwhile: it takes a new one)
//!   with both replicas streaming;
//! - **failsafe off**: the primary demotes once its last renewal is `retry_timeout` old, and
//!   nobody promotes until etcd is back; then the cluster heals by itself.

use std::time::Duration;

use crate::common::cluster::*;
use crate::common::*;
use patroni_testlab::{EtcdServer, Lab};
use tokio::time::Instant;

/// How long etcd stays frozen: well past the lease ttl.
const OUTAGE: Duration = Duration::from_secs(3 * TTL as u64);
/// A primary without failsafe demotes `retry_timeout` after its last renewal, which is at
/// most `loop_wait` plus a renewal attempt old; generous slack for a loaded machine.
const DEMOTE_WITHIN: Duration = Duration::from_secs((RETRY_TIMEOUT + LOOP_WAIT) as u64 + 20);

/// Failsafe mode holds the primary through an etcd outage; without it the primary demotes;
/// either way the cluster heals after SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_demotes_the_primary_unless_failsafe_holds_it() {
    let _serial = super::SERIAL.lock().await;
    init_tracing();
    let lab = Lab::shared();
    let etcd_host = lab.host("etcd").expect("etcd host");
    let etcd = EtcdServer::start_on(&etcd_host).expect("etcd on its host");
    let endpoint = etcd.host_port().to_string();
    let (mut members, _) = start_etcd3_cluster(lab, &endpoint, "outage", 3, |_| {});
    let primary = healthy(&members, "one primary, two streaming").await;
    {
        let (h, s) = (&members[primary].host, &members[primary].spec);
        sql(h, h, s, "create table t(v bigint)").expect("create table");
    }
    {
        tracing::info!("--- failsafe_mode on: every member in /failsafe");
        patch_config(&members[primary], r#"{"failsafe_mode": true}"#);
        wait_for(
            Duration::from_secs(30),
            "GET /failsafe lists every member",
            &members,
            || {
                let (status, doc) = get_json(&members[primary], "/failsafe")?;
                let all = members.iter().all(|m| {
                    doc[m.name.as_str()] == format!("http://{}:8008/patroni", m.host.ip()).as_str()
                });
                (status == 200 && all).then_some(())
            },
        )
        .await;
    }
    let old = members[primary].name.clone();
    {
        tracing::info!("--- etcd frozen for 3 x ttl: the primary keeps taking writes");
        etcd.suspend().expect("SIGSTOP etcd");
        let start = Instant::now();
        let mut writes = 0;
        while start.elapsed() < OUTAGE {
            let w = writable(&members);
            assert_eq!(
                w,
                std::slice::from_ref(&old),
                "{:?} into the outage\n{}",
                start.elapsed(),
                logs(&members)
            );
            let (h, s) = (&members[primary].host, &members[primary].spec);
            sql(h, h, s, &format!("insert into t values ({writes})")).unwrap_or_else(|| {
                panic!("{:?}: a write failed\n{}", start.elapsed(), logs(&members))
            });
            writes += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tracing::info!(writes, "writes acknowledged through the outage");
        etcd.resume().expect("SIGCONT etcd");
    }
    let after = healthy(&members, "healthy after etcd is back").await;
    assert_eq!(members[after].name, old, "the primary kept its role");
    {
        tracing::info!("--- failsafe off: the primary demotes, nobody promotes");
        patch_config(&members[after], r#"{"failsafe_mode": false}"#);
        wait_for(
            Duration::from_secs(30),
            "failsafe_mode off in GET /config",
            &members,
            || {
                let (_, doc) = get_json(&members[after], "/config")?;
                (doc["failsafe_mode"] == false).then_some(())
            },
        )
        .await;
        // One more loop, so every agent has applied it.
        tokio::time::sleep(Duration::from_secs(u64::from(LOOP_WAIT) * 2)).await;
        etcd.suspend().expect("SIGSTOP etcd");
        let start = Instant::now();
        wait_for(DEMOTE_WITHIN, "the primary demoted", &members, || {
            writable(&members).is_empty().then_some(())
        })
        .await;
        tracing::info!(after = ?start.elapsed(), "the primary demoted without failsafe");
        while start.elapsed() < OUTAGE {
            assert_eq!(
                writable(&members),
                Vec::<String>::new(),
                "nobody promotes while etcd is away\n{}",
                logs(&members)
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        etcd.resume().expect("SIGCONT etcd");
    }
    healthy(&members, "healthy after etcd is back").await;
    stop_all(&mut members);
    drop(etcd);
}
