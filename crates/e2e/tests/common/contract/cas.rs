//! The contract's compare-and-set property (see the parent module): kept apart because it is
//! long, one block per key.

use std::time::Duration;

use patroni_core::{Cluster, MemberData};
use patroni_dcs::{Dcs, FailoverRequest};

use super::{Backend, expect_view};

/// How long another member's write may take to show where views come from a watched cache.
const SOON: Duration = Duration::from_secs(10);

/// Writes conditional on a version lose once someone else wrote (config, failover, sync);
/// the bootstrap race has exactly one winner; history and member data read back; the
/// cluster can be deleted. Reads of another member's writes wait for them only where views
/// come from a watched cache ([`super::Traits::cached_views`]).
pub async fn compare_and_set_on_config_failover_sync_and_initialize<B: Backend>(backend: &B) {
    let (ttl, retry) = (Duration::from_secs(30), Duration::from_secs(4));
    let m0 = backend.member("m0", ttl, retry).await;
    let m1 = backend.member("m1", ttl, retry).await;
    initialize::<B>(&m0, &m1).await;
    config::<B>(&m0, &m1).await;
    failover::<B>(&m0, &m1).await;
    sync::<B>(&m0, &m1).await;
    history_members_and_deletion::<B>(&m0, &m1).await;
}

/// The bootstrap race: one winner, then the system id; a cancelled initialization is gone.
async fn initialize<B: Backend>(m0: &B::D, m1: &B::D) {
    tracing::info!("--- the bootstrap race: one winner, then the system id");
    m0.get_cluster().await.expect("view");
    m1.get_cluster().await.expect("view");
    let (a, b) = tokio::join!(m0.initialize(""), m1.initialize(""));
    let won = [a.expect("initialize"), b.expect("initialize")];
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let winner = if won[0] { m0 } else { m1 };
    expect_view::<B>(winner, SOON, "the claim", |v| v.initialize.is_some()).await;
    assert!(
        winner
            .initialize("7345678901234567890")
            .await
            .expect("sysid")
    );
    expect_view::<B>(m0, SOON, "the system id", |v| {
        v.initialize.as_deref() == Some("7345678901234567890")
    })
    .await;
    assert!(m0.cancel_initialization().await.expect("cancel"));
    expect_view::<B>(m1, SOON, "no initialize key", |v| v.initialize.is_none()).await;
}

/// Config: a write at a stale version loses.
async fn config<B: Backend>(m0: &B::D, m1: &B::D) {
    tracing::info!("--- config: a write at a stale version loses");
    assert!(
        m0.set_config_value(r#"{"ttl":30}"#, None)
            .await
            .expect("config")
    );
    let ttl_is = |n: i64| {
        move |v: &Cluster| {
            v.config
                .as_ref()
                .is_some_and(|c| c.data.get("ttl") == Some(&serde_json::json!(n)))
        }
    };
    expect_view::<B>(m1, SOON, "config ttl 30", ttl_is(30)).await;
    let v1 = m1
        .get_cluster()
        .await
        .expect("view")
        .config
        .expect("config")
        .version;
    assert!(
        m0.set_config_value(r#"{"ttl":31}"#, Some(&v1))
            .await
            .expect("config")
    );
    assert!(
        !m1.set_config_value(r#"{"ttl":32}"#, Some(&v1))
            .await
            .expect("config")
    );
    expect_view::<B>(m1, SOON, "config ttl 31", ttl_is(31)).await;
    let c = m1
        .get_cluster()
        .await
        .expect("view")
        .config
        .expect("config");
    if B::TRAITS.config_modify_version_is_version {
        assert_eq!(c.modify_version.as_deref(), Some(c.version.as_str()));
    } else {
        assert!(c.modify_version.is_some(), "{c:?}");
    }
}

/// Failover: a request, a stale clear loses, a current clear wins.
async fn failover<B: Backend>(m0: &B::D, m1: &B::D) {
    tracing::info!("--- failover: a request, a stale clear loses, a current clear wins");
    let request = FailoverRequest::Request {
        leader: Some("m0"),
        candidate: Some("m1"),
        scheduled_at: None,
    };
    assert!(m1.manual_failover(request, None).await.expect("failover"));
    expect_view::<B>(m0, SOON, "the switchover request", |v| {
        v.failover.as_ref().is_some_and(|f| {
            f.leader.as_deref() == Some("m0") && f.candidate.as_deref() == Some("m1")
        })
    })
    .await;
    let f = m0
        .get_cluster()
        .await
        .expect("view")
        .failover
        .expect("failover");
    assert!(f.is_requested());
    let at = "2030-01-01T00:00:00+00:00";
    let request = FailoverRequest::Request {
        leader: None,
        candidate: Some("m0"),
        scheduled_at: Some(at),
    };
    assert!(
        m1.manual_failover(request, Some(&f.version))
            .await
            .expect("failover")
    );
    assert!(
        !m0.manual_failover(FailoverRequest::Clear, Some(&f.version))
            .await
            .expect("failover"),
        "a clear at the old version loses"
    );
    expect_view::<B>(m0, SOON, "the scheduled request", |v| {
        v.failover
            .as_ref()
            .is_some_and(|f| f.scheduled_at.as_deref() == Some(at))
    })
    .await;
    let f = m0
        .get_cluster()
        .await
        .expect("view")
        .failover
        .expect("failover");
    assert!(
        m0.manual_failover(FailoverRequest::Clear, Some(&f.version))
            .await
            .expect("failover")
    );
    expect_view::<B>(m1, SOON, "no request", |v| {
        !v.failover.as_ref().is_some_and(|f| f.is_requested())
    })
    .await;
}

/// Sync: written at a version, a stale write and delete lose.
async fn sync<B: Backend>(m0: &B::D, m1: &B::D) {
    tracing::info!("--- sync: written at a version, a stale write and delete lose");
    let s = m0
        .write_sync_state(Some("m0"), &["m1".into()], None, None)
        .await
        .expect("sync")
        .expect("written");
    let version = s.version.clone().expect("version");
    expect_view::<B>(m1, SOON, "the sync state", |v| {
        v.sync.version.as_deref() == Some(&version)
    })
    .await;
    let read = m1.get_cluster().await.expect("view").sync;
    assert_eq!(
        (read.leader.as_deref(), read.sync_standby),
        (Some("m0"), vec!["m1".to_string()])
    );
    let s2 = m0
        .write_sync_state(Some("m0"), &["m1".into()], Some(1), Some(&version))
        .await
        .expect("sync")
        .expect("written");
    assert!(
        m1.write_sync_state(Some("m1"), &[], None, Some(&version))
            .await
            .expect("sync")
            .is_none()
    );
    assert!(!m1.delete_sync_state(Some(&version)).await.expect("delete"));
    let v2 = s2.version.clone().expect("version");
    expect_view::<B>(m1, SOON, "quorum 1", |v| {
        v.sync.version.as_deref() == Some(&v2)
            && v.sync.leader.as_deref() == Some("m0")
            && v.sync.quorum == 1
    })
    .await;
    assert!(m1.delete_sync_state(Some(&v2)).await.expect("delete"));
    expect_view::<B>(m0, SOON, "no sync leader", |v| v.sync.leader.is_none()).await;
}

/// History and member data read back; deleting the cluster removes its state.
async fn history_members_and_deletion<B: Backend>(m0: &B::D, m1: &B::D) {
    tracing::info!("--- history and member data read back");
    let history =
        r#"[[1,50331808,"no recovery target specified","2025-01-01T00:00:00+00:00","m0"]]"#;
    assert!(m0.set_history_value(history).await.expect("history"));
    let data = MemberData {
        conn_url: Some("postgres://10.0.0.1:5432/postgres".into()),
        api_url: Some("http://10.0.0.1:8008/patroni".into()),
        state: Some("running".into()),
        role: Some("replica".into()),
        ..MemberData::default()
    };
    m1.get_cluster().await.expect("view");
    assert!(m1.touch_member(&data).await.expect("touch"));
    expect_view::<B>(m0, SOON, "history and m1's data", |v| {
        v.history.as_ref().is_some_and(|h| h.lines.len() == 1)
            && v.members.iter().any(|m| m.name == "m1" && m.data == data)
    })
    .await;

    tracing::info!("--- the cluster can be deleted");
    assert!(m0.delete_cluster().await.expect("delete"));
    expect_view::<B>(m0, SOON, "no cluster state left", |v| {
        v.config.is_none()
            && v.history.is_none()
            && (v.members.is_empty() || !B::TRAITS.delete_cluster_removes_members)
    })
    .await;
}
