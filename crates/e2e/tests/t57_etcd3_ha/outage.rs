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
use crate::common::scenario::*;
use crate::common::*;
use patroni_testlab::{EtcdServer, Lab};

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
    let freeze = || etcd.freeze().expect("SIGSTOP etcd");
    let old = members[primary].name.clone();
    failsafe_on(&members, primary).await;
    primary_keeps_writes_while_frozen(&members, primary, OUTAGE, freeze, |_| {}).await;
    let after = healthy(&members, "healthy after etcd is back").await;
    assert_eq!(members[after].name, old, "the primary kept its role");
    failsafe_off(&members, after).await;
    primary_demotes_while_frozen(&members, OUTAGE, DEMOTE_WITHIN, freeze).await;
    healthy(&members, "healthy after etcd is back").await;
    stop_all(&mut members);
    drop(etcd);
}
