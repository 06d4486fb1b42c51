//! The ZooKeeper DCS against a real ZooKeeper server (Debian's package, started by each test
//! on the machine's loopback): the backend-neutral DCS contract (`common/contract.rs`, the same
//! functions the Kubernetes and etcd3 backends pass), and Patroni's znode layout read back
//! with a plain ZooKeeper client.

mod common;

use std::time::Duration;

use common::contract::{self, Backend};
use common::zookeeper::Zookeeper;
use patroni_core::MemberData;
use patroni_dcs::{Dcs, FailoverRequest, LeaderStatusUpdate};
use zookeeper_client as zk;

/// Session timeout of the lock tests: short, so expiry rounds stay quick.
const TTL: Duration = Duration::from_secs(4);

/// Contenders race and exactly one wins each round; renew, release, expiry with the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_race_renew_release_expiry() {
    common::init_tracing();
    let zk = Zookeeper::start("race");
    contract::lock_race_renew_release_expiry(&zk, TTL).await;
}

/// Lock and configuration changes wake the loop; member data does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_and_config_changes_wake_members() {
    common::init_tracing();
    let zk = Zookeeper::start("wake");
    contract::leader_and_config_changes_wake_members(&zk).await;
}

/// Issue #11: a race decided from an old view never takes a newer lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_from_an_old_view_never_takes_a_newer_lock() {
    common::init_tracing();
    let zk = Zookeeper::start("stale");
    contract::a_race_from_an_old_view_never_takes_a_newer_lock(&zk, TTL).await;
}

/// Compare-and-set on config, failover and sync; one bootstrap winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_on_config_failover_sync_and_initialize() {
    common::init_tracing();
    let zk = Zookeeper::start("cas");
    contract::compare_and_set_on_config_failover_sync_and_initialize(&zk).await;
}

/// A frozen server (SIGSTOP) is unreachable within retry_timeout; it heals after SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_classified_unreachable() {
    common::init_tracing();
    let zk = Zookeeper::start("down");
    contract::an_unreachable_store_is_classified_unreachable(
        &zk,
        || zk.server.suspend().expect("SIGSTOP"),
        || zk.server.resume().expect("SIGCONT"),
    )
    .await;
}

/// The znodes are where and what Patroni keeps: `/service/<scope>/leader` and
/// `members/<name>` ephemeral, owned by the member's session; `status`, `config`, `sync`,
/// `failover`, `history`, `initialize` persistent, with Patroni's values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn znodes_are_laid_out_as_patroni_keeps_them() {
    common::init_tracing();
    let zk = Zookeeper::start("layout");
    let m0 = zk
        .member("m0", Duration::from_secs(30), Duration::from_secs(4))
        .await;
    {
        tracing::info!("--- m0 bootstraps, leads and publishes everything");
        assert!(m0.initialize("").await.expect("race"));
        assert!(m0.initialize("7345678901234567890").await.expect("sysid"));
        assert!(contract::acquire(&m0).await);
        let data = MemberData {
            conn_url: Some("postgres://10.0.0.1:5432/postgres".into()),
            api_url: Some("http://10.0.0.1:8008/patroni".into()),
            state: Some("running".into()),
            role: Some("primary".into()),
            ..MemberData::default()
        };
        assert!(m0.touch_member(&data).await.expect("touch"));
        m0.get_cluster().await.expect("view");
        let status = LeaderStatusUpdate {
            last_lsn: Some(50331808),
            retain_slots: Some(vec!["m0".into()]),
            ..LeaderStatusUpdate::default()
        };
        assert!(m0.update_leader(&status).await.expect("renew"));
        assert!(
            m0.set_config_value(r#"{"ttl":30}"#, None)
                .await
                .expect("config")
        );
        assert!(m0.set_history_value("[]").await.expect("history"));
        let sync = m0
            .write_sync_state(Some("m0"), &[], None, None)
            .await
            .expect("sync");
        assert!(sync.is_some());
        let request = FailoverRequest::Request {
            leader: Some("m0"),
            candidate: None,
            scheduled_at: None,
        };
        assert!(m0.manual_failover(request, None).await.expect("failover"));
    }
    {
        tracing::info!("--- a plain client reads Patroni's paths and values");
        let client = zk::Client::connect(zk.server.host_port())
            .await
            .expect("connect");
        let session = m0.session_id().await.expect("m0's session");
        let read = |key: &'static str| {
            let client = client.clone();
            async move {
                let (data, stat) = client
                    .get_data(&format!("/service/layout/{key}"))
                    .await
                    .unwrap_or_else(|e| panic!("{key}: {e}"));
                (
                    String::from_utf8(data).expect("utf-8"),
                    stat.ephemeral_owner,
                )
            }
        };
        assert_eq!(read("leader").await, ("m0".into(), session));
        let (member, owner) = read("members/m0").await;
        assert_eq!(owner, session);
        assert_eq!(
            member,
            r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"primary"}"#
        );
        assert_eq!(read("initialize").await, ("7345678901234567890".into(), 0));
        assert_eq!(
            read("status").await,
            (r#"{"optime":50331808,"retain_slots":["m0"]}"#.into(), 0)
        );
        assert_eq!(read("config").await, (r#"{"ttl":30}"#.into(), 0));
        assert_eq!(read("history").await, ("[]".into(), 0));
        assert_eq!(
            read("sync").await,
            (
                r#"{"leader":"m0","quorum":null,"sync_standby":null}"#.into(),
                0
            )
        );
        assert_eq!(read("failover").await, (r#"{"leader":"m0"}"#.into(), 0));
    }
    {
        tracing::info!("--- m0's session ends: its leader and member znodes go with it");
        drop(m0);
        let client = zk::Client::connect(zk.server.host_port())
            .await
            .expect("connect");
        patroni_testlab::wait_until(
            Duration::from_secs(10),
            "ephemeral znodes gone".into(),
            || async {
                let leader = client.check_stat("/service/layout/leader").await.ok()?;
                let member = client.check_stat("/service/layout/members/m0").await.ok()?;
                (leader.is_none() && member.is_none()).then_some(())
            },
        )
        .await
        .expect("the session's znodes are removed with it");
        let config = client
            .check_stat("/service/layout/config")
            .await
            .expect("stat");
        assert!(config.is_some(), "persistent znodes stay");
    }
}
