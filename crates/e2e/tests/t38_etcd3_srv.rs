//! etcd found through DNS SRV records (`etcd3.srv`, `etcd3.srv_suffix`), as Patroni finds it:
//! a real CoreDNS on a lab host serves the zone `etcd.test`, a real etcd runs on another, and
//! the agent's host resolves names through that CoreDNS only (its own `/etc/resolv.conf`).
//!
//! The member is configured with nothing but `etcd3.srv`. At first the domain's
//! `_etcd-client` record names a port where nothing listens: the agent starts, asks for the
//! kinds in Patroni's order (`_etcd-client-ssl` first), and stays off (no primary). Then the
//! records are changed to a `_etcd-server` record naming etcd's *peer* port: the failing
//! requests make the agent resolve them again, ask the peer `GET /members` for the client
//! URLs, reach etcd and bootstrap. Finally our `patronictl` and Python Patroni 4.1.5's, each
//! configured with only `srv` + `srv_suffix` (where `_etcd-client-prod` must win over a dead
//! `_etcd-prod`), list the member as the leader.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::scenario::*;
use common::*;
use patroni_testlab::{AgentSpec, DnsServer, EtcdServer, Lab};

/// The zone the DNS server is authoritative for.
const ZONE: &str = "etcd.test";
/// How long the member stays off etcd while the records point nowhere: several HA cycles
/// (`loop_wait` 2 s, `retry_timeout` 5 s).
const OFF_ETCD: Duration = Duration::from_secs(12);
/// Bound on finding etcd again after the records changed, and bootstrapping (initdb and
/// start of PostgreSQL included).
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(90);

/// The zone's records: etcd's address, the `b` domain for patronictl, and `a_records`.
fn records(etcd_ip: &str, a_records: &str) -> String {
    format!(
        "etcd-0 IN A {etcd_ip}\n\
         _etcd-client-prod._tcp.b IN SRV 0 0 2379 etcd-0\n\
         _etcd-prod._tcp.b IN SRV 0 0 2999 etcd-0\n\
         {a_records}\n"
    )
}

/// A member with only `etcd3.srv` finds etcd through SRV records, follows a change of them
/// after its requests fail (a server record, through the peer's member list), bootstraps, and
/// both patronictls find it with `srv` + `srv_suffix`.
#[tokio::test]
async fn a_member_with_only_srv_finds_etcd_through_dns_and_follows_the_records() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "srv-etcd3";
    let etcd_host = lab.host("etcd").expect("etcd host");
    let etcd = EtcdServer::start_on(&etcd_host).expect("etcd on its host");
    let dns_host = lab.host("dns").expect("dns host");
    let mut dns = DnsServer::start_on(
        &dns_host,
        ZONE,
        &records(etcd_host.ip(), "_etcd-client._tcp.a IN SRV 0 0 2999 etcd-0"),
    )
    .expect("CoreDNS");
    let host = lab.host("m0").expect("member host");
    host.set_resolv_conf(&format!("nameserver {}\n", dns.ip()))
        .expect("resolv.conf");
    let mut spec = AgentSpec::new(scope, "m0", "", false);
    (spec.ttl, spec.loop_wait, spec.retry_timeout) = (TTL, LOOP_WAIT, RETRY_TIMEOUT);
    spec.etcd3_srv = Some(format!("a.{ZONE}"));
    let mut members = vec![prepare_member("m0".into(), host, spec)];
    {
        tracing::info!("--- the records name a dead client port: the agent runs, off etcd");
        restart_member(&mut members[0], NO_KUBECONFIG.as_ref());
        tokio::time::sleep(OFF_ETCD).await;
        let agent = members[0].agent.as_mut().expect("agent");
        assert!(
            agent.try_wait().expect("agent status").is_none(),
            "the agent keeps running: {}",
            logs(&members)
        );
        assert!(writable(&members).is_empty(), "{}", logs(&members));
        let log = dns.log();
        let ssl = log.find("_etcd-client-ssl._tcp.a.etcd.test.");
        let plain = log.find("_etcd-client._tcp.a.etcd.test.");
        assert!(
            matches!((ssl, plain), (Some(s), Some(p)) if s < p),
            "_etcd-client-ssl is asked before _etcd-client: {log}"
        );
    }
    {
        tracing::info!("--- a server record (peer port) replaces it: the agent finds etcd");
        dns.set_records(&records(
            etcd_host.ip(),
            "_etcd-server._tcp.a IN SRV 0 0 2380 etcd-0",
        ))
        .expect("new records");
        only_primary(
            &members,
            BOOTSTRAP_TIMEOUT,
            "m0 bootstraps through the new records",
        )
        .await;
        assert!(
            dns.log().contains("_etcd-server._tcp.a.etcd.test."),
            "the server record was looked up"
        );
    }
    {
        tracing::info!("--- both patronictls find the cluster with srv + srv_suffix alone");
        let ctl = Ctl {
            config: format!("scope: {scope}\netcd3:\n  srv: b.{ZONE}\n  srv_suffix: prod\n"),
            kubeconfig: None,
        };
        for program in [ctl_binary(), venv().join("bin/patronictl")] {
            let out = ctl
                .command(&program, &members[0])
                .args(["list", "-f", "json"])
                .env("HOME", members[0].config.parent().expect("dir"))
                .output()
                .expect("run patronictl");
            let rows: Vec<serde_json::Value> =
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                    panic!(
                        "{}: {e}: {}",
                        program.display(),
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            assert_eq!(
                leader_and_streaming(&rows),
                (vec!["m0".to_string()], 0),
                "{}",
                program.display()
            );
        }
    }
    stop_all(&mut members);
    drop(etcd);
}
