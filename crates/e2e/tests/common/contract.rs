//! The DCS contract: what every backend must do, checked only through the [`Dcs`] trait and
//! the views it returns, so the same functions run against Kubernetes and etcd3. A backend's
//! test file supplies a [`Backend`] (a factory of member handles on one fresh cluster) and
//! checks its own storage format separately.
//!
//! Each function is one property; they read like the specification:
//! - [`lock_race_renew_release_expiry`]: contenders race and exactly one wins each round; only
//!   the holder renews and releases; a release frees the lock at once, silence after `ttl`.
//! - [`leader_and_config_changes_wake_members`]: the watch wakes the loop on the lock changing
//!   hands, on someone else's renewal (not one's own) and on configuration changes.
//! - [`a_race_from_an_old_view_never_takes_a_newer_lock`]: issue #11.
//! - [`compare_and_set_on_config_failover_sync_and_initialize`]: writes conditional on a
//!   version lose once someone else wrote; the bootstrap race has one winner.
//! - [`an_unreachable_store_is_classified_unreachable`]: a store that stops answering is
//!   [`Error::is_unreachable`](patroni_dcs::Error::is_unreachable) within `retry_timeout`, and
//!   works again once it answers.

use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use patroni_core::MemberData;
use patroni_dcs::{Dcs, FailoverRequest, LeaderStatusUpdate};
use patroni_testlab::wait_until;

/// How many lock rounds [`lock_race_renew_release_expiry`] plays (even: release, odd: expiry).
pub const ROUNDS: usize = 4;

/// A factory of member handles on one cluster of one backend.
pub trait Backend {
    /// The backend's DCS handle.
    type D: Dcs;
    /// A handle for member `name`, whose lock writes promise `ttl`; `retry_timeout` is the
    /// budget of one operation.
    fn member(
        &self,
        name: &str,
        ttl: Duration,
        retry_timeout: Duration,
    ) -> impl Future<Output = Self::D>;
}

/// Renewal carrying a WAL position only.
pub fn optime(lsn: u64) -> LeaderStatusUpdate {
    LeaderStatusUpdate {
        last_lsn: Some(lsn),
        ..LeaderStatusUpdate::default()
    }
}

/// Reads `node`'s view and races for the lock from it.
pub async fn acquire<D: Dcs>(node: &D) -> bool {
    let seen = node
        .get_cluster()
        .await
        .expect("view")
        .leader
        .map(|l| l.version);
    node.attempt_to_acquire_leader(seen.as_deref())
        .await
        .expect("acquire")
}

/// Waits until `node`'s view satisfies `check`.
pub async fn wait_view<D: Dcs>(
    node: &D,
    timeout: Duration,
    what: &str,
    check: impl Fn(&patroni_core::Cluster) -> bool,
) {
    wait_until(timeout, what.to_string(), || async {
        let v = node.get_cluster().await.ok()?;
        check(&v).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// Contenders race and exactly one wins each round; the winner renews (publishing its WAL
/// position), the others can neither renew nor release; a release frees the lock at once
/// (recording the last position), a silent holder's lock expires after `ttl`, not before.
pub async fn lock_race_renew_release_expiry<B: Backend>(backend: &B, ttl: Duration) {
    let retry = Duration::from_secs(4);
    let mut contenders = Vec::new();
    for i in 0..3 {
        let name = format!("m{i}");
        contenders.push((name.clone(), backend.member(&name, ttl, retry).await));
    }
    for round in 0..ROUNDS {
        tracing::info!("--- round {round}: everyone races for the free lock");
        let mut seen = Vec::new();
        for (name, d) in &contenders {
            let view = d.get_cluster().await.expect("view");
            assert!(
                !view.is_locked(),
                "round {round}: {name} sees {:?}",
                view.leader_name()
            );
            seen.push(view.leader.map(|l| l.version));
        }
        let results = join_all(
            contenders
                .iter()
                .zip(&seen)
                .map(|((_, d), v)| d.attempt_to_acquire_leader(v.as_deref())),
        )
        .await;
        let winners: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| *r.as_ref().expect("no DCS error"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner: {winners:?}"
        );
        let (winner, w) = &contenders[winners[0]];

        tracing::info!("--- round {round}: the winner renews, the others cannot");
        for (_, d) in &contenders {
            d.get_cluster().await.expect("view");
        }
        let lsn = 1000 + round as u64;
        // A backend whose views come from a watched cache renews once its view shows the lock.
        wait_until(
            Duration::from_secs(5),
            "the holder renews".into(),
            || async {
                w.update_leader(&optime(lsn))
                    .await
                    .expect("renew")
                    .then_some(())
            },
        )
        .await
        .expect("the holder renews");
        for (name, d) in contenders.iter().filter(|(n, _)| n != winner) {
            wait_view(d, Duration::from_secs(5), "others see the holder", |v| {
                v.leader_name() == Some(winner.as_str())
            })
            .await;
            assert!(
                !d.update_leader(&optime(1)).await.expect("renew"),
                "{name} must not renew"
            );
            assert!(
                !d.delete_leader(None).await.expect("release"),
                "{name} must not release"
            );
        }
        wait_view(
            w,
            Duration::from_secs(5),
            "the renewal published the position",
            |v| v.leader_name() == Some(winner.as_str()) && v.status.last_lsn == lsn,
        )
        .await;

        if round % 2 == 0 {
            tracing::info!("--- round {round}: voluntary release frees the lock at once");
            assert!(w.delete_leader(Some(2000 + lsn)).await.expect("release"));
            for (_, d) in &contenders {
                let what = "the released lock is free, the release recorded the position";
                wait_view(d, Duration::from_secs(5), what, |v| {
                    !v.is_locked() && v.status.last_lsn == 2000 + lsn
                })
                .await;
            }
        } else {
            tracing::info!("--- round {round}: the holder goes silent; the lock expires after ttl");
            let start = tokio::time::Instant::now();
            for (name, d) in contenders.iter().filter(|(n, _)| n != winner) {
                assert!(
                    d.get_cluster().await.expect("view").is_locked(),
                    "{name}: still held"
                );
            }
            for (name, d) in &contenders {
                wait_view(d, ttl * 4, &format!("{name} sees expiry"), |v| {
                    !v.is_locked()
                })
                .await;
            }
            assert!(
                start.elapsed() >= ttl - Duration::from_millis(500),
                "expired too early: {:?}",
                start.elapsed()
            );
        }
    }
}

/// The watch wakes a member when the lock changes hands, when someone else renews (the
/// holder's own renewal does not wake the holder), and when the configuration changes.
pub async fn leader_and_config_changes_wake_members<B: Backend>(backend: &B) {
    let (ttl, retry) = (Duration::from_secs(30), Duration::from_secs(4));
    let m0 = backend.member("m0", ttl, retry).await;
    let m1 = backend.member("m1", ttl, retry).await;
    m0.get_cluster().await.expect("view");
    m1.get_cluster().await.expect("view");
    assert!(
        m0.set_config_value(r#"{"ttl":30}"#, None)
            .await
            .expect("config")
    );
    // Let the config creation's own event pass before watching.
    while m1.watch(Duration::from_millis(300)).await {}
    let long = Duration::from_secs(30);
    {
        tracing::info!("--- the lock changing hands wakes the other member at once");
        let start = tokio::time::Instant::now();
        let (woke, acquired) = tokio::join!(m1.watch(long), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            acquire(&m0).await
        });
        assert!(acquired);
        assert!(
            woke && start.elapsed() < Duration::from_secs(5),
            "woke={woke} after {:?}",
            start.elapsed()
        );
    }
    {
        tracing::info!("--- someone else's renewal wakes a member; one's own renewal does not");
        m0.get_cluster().await.expect("view");
        m1.get_cluster().await.expect("view");
        while m0.watch(Duration::from_millis(300)).await {}
        while m1.watch(Duration::from_millis(300)).await {}
        let (own, other, renewed) =
            tokio::join!(m0.watch(Duration::from_secs(2)), m1.watch(long), async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                m0.update_leader(&optime(5)).await
            });
        assert!(renewed.expect("renew"));
        assert!(other, "the replica wakes on the leader's renewal");
        assert!(!own, "the holder is not woken by its own renewal");
    }
    {
        tracing::info!("--- a configuration change wakes members");
        while m1.watch(Duration::from_millis(300)).await {}
        let start = tokio::time::Instant::now();
        let (woke, set) = tokio::join!(m1.watch(long), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            m0.set_config_value(r#"{"ttl":40}"#, None).await
        });
        assert!(set.expect("config"));
        assert!(
            woke && start.elapsed() < Duration::from_secs(5),
            "woke={woke} after {:?}",
            start.elapsed()
        );
    }
}

/// Issue #11: a race decided from an old view never takes a lock that was taken since, even
/// when another reader of the same member built a newer view in between; a lock kept renewed
/// never shows free.
pub async fn a_race_from_an_old_view_never_takes_a_newer_lock<B: Backend>(
    backend: &B,
    ttl: Duration,
) {
    let retry = Duration::from_secs(4);
    let m0 = backend.member("m0", ttl, retry).await;
    let m1 = backend.member("m1", ttl, retry).await;
    let old_view = {
        tracing::info!("--- m1 sees the lock free");
        let view = m1.get_cluster().await.expect("view");
        assert!(!view.is_locked());
        view.leader.map(|l| l.version)
    };
    {
        tracing::info!("--- m0 takes it; another reader of m1 sees that");
        assert!(acquire(&m0).await);
        wait_view(&m1, Duration::from_secs(10), "m1 sees m0", |v| {
            v.leader_name() == Some("m0")
        })
        .await;
    }
    {
        tracing::info!("--- m1 acts on its old decision: refused, m0 keeps the lock");
        assert!(
            !m1.attempt_to_acquire_leader(old_view.as_deref())
                .await
                .expect("acquire")
        );
        let view = m0.get_cluster().await.expect("view");
        assert_eq!(view.leader_name(), Some("m0"));
    }
    {
        tracing::info!("--- m0 keeps renewing: m1's view never shows the lock free");
        for _ in 0..6 {
            tokio::time::sleep(ttl / 2).await;
            m0.get_cluster().await.expect("view");
            assert!(
                m0.update_leader(&LeaderStatusUpdate::default())
                    .await
                    .expect("renew")
            );
            let view = m1.get_cluster().await.expect("view");
            assert_eq!(view.leader_name(), Some("m0"));
        }
    }
}

/// Writes conditional on a version lose once someone else wrote (config, failover, sync);
/// the bootstrap race has exactly one winner; history and member data read back. Reads of
/// another member's writes wait for them (a backend may serve views from a watched cache).
pub async fn compare_and_set_on_config_failover_sync_and_initialize<B: Backend>(backend: &B) {
    let (ttl, retry) = (Duration::from_secs(30), Duration::from_secs(4));
    let m0 = backend.member("m0", ttl, retry).await;
    let m1 = backend.member("m1", ttl, retry).await;
    let soon = Duration::from_secs(10);
    {
        tracing::info!("--- the bootstrap race: one winner, then the system id");
        m0.get_cluster().await.expect("view");
        m1.get_cluster().await.expect("view");
        let (a, b) = tokio::join!(m0.initialize(""), m1.initialize(""));
        let won = [a.expect("initialize"), b.expect("initialize")];
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        let winner = if won[0] { &m0 } else { &m1 };
        wait_view(winner, soon, "the claim", |v| v.initialize.is_some()).await;
        assert!(
            winner
                .initialize("7345678901234567890")
                .await
                .expect("sysid")
        );
        wait_view(&m0, soon, "the system id", |v| {
            v.initialize.as_deref() == Some("7345678901234567890")
        })
        .await;
        assert!(m0.cancel_initialization().await.expect("cancel"));
        wait_view(&m1, soon, "no initialize key", |v| v.initialize.is_none()).await;
    }
    {
        tracing::info!("--- config: a write at a stale version loses");
        assert!(
            m0.set_config_value(r#"{"ttl":30}"#, None)
                .await
                .expect("config")
        );
        let ttl_is = |n: i64| {
            move |v: &patroni_core::Cluster| {
                v.config
                    .as_ref()
                    .is_some_and(|c| c.data.get("ttl") == Some(&serde_json::json!(n)))
            }
        };
        wait_view(&m1, soon, "config ttl 30", ttl_is(30)).await;
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
        wait_view(&m1, soon, "config ttl 31", ttl_is(31)).await;
        let c = m1
            .get_cluster()
            .await
            .expect("view")
            .config
            .expect("config");
        assert_eq!(c.modify_version.as_deref(), Some(c.version.as_str()));
    }
    {
        tracing::info!("--- failover: a request, a stale clear loses, a current clear wins");
        let request = FailoverRequest::Request {
            leader: Some("m0"),
            candidate: Some("m1"),
            scheduled_at: None,
        };
        assert!(m1.manual_failover(request, None).await.expect("failover"));
        wait_view(&m0, soon, "the switchover request", |v| {
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
        wait_view(&m0, soon, "the scheduled request", |v| {
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
        wait_view(&m1, soon, "no request", |v| {
            !v.failover.as_ref().is_some_and(|f| f.is_requested())
        })
        .await;
    }
    {
        tracing::info!("--- sync: written at a version, a stale write and delete lose");
        let s = m0
            .write_sync_state(Some("m0"), &["m1".into()], None, None)
            .await
            .expect("sync")
            .expect("written");
        let version = s.version.clone().expect("version");
        wait_view(&m1, soon, "the sync state", |v| {
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
        wait_view(&m1, soon, "quorum 1", |v| {
            v.sync.version.as_deref() == Some(&v2) && v.sync.quorum == 1
        })
        .await;
        assert!(m1.delete_sync_state(Some(&v2)).await.expect("delete"));
        wait_view(&m0, soon, "no sync leader", |v| v.sync.leader.is_none()).await;
    }
    {
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
        wait_view(&m0, soon, "history and m1's data", |v| {
            v.history.as_ref().is_some_and(|h| h.lines.len() == 1)
                && v.members.iter().any(|m| m.name == "m1" && m.data == data)
        })
        .await;
    }
}

/// A store that stops answering is reported unreachable within `retry_timeout` (plus one
/// attempt's slack), by reads and by the lock holder's renewal; once it answers again, the
/// same handles work.
pub async fn an_unreachable_store_is_classified_unreachable<B: Backend>(
    backend: &B,
    suspend: impl FnOnce(),
    resume: impl FnOnce(),
) {
    let (ttl, retry) = (Duration::from_secs(30), Duration::from_secs(3));
    let m0 = backend.member("m0", ttl, retry).await;
    assert!(acquire(&m0).await);
    m0.get_cluster().await.expect("view");
    assert!(m0.update_leader(&optime(7)).await.expect("renew"));
    {
        tracing::info!("--- the store stops answering");
        suspend();
        let start = tokio::time::Instant::now();
        let e = m0
            .get_cluster()
            .await
            .expect_err("no view without the store");
        assert!(e.is_unreachable(), "{e:?}");
        assert!(
            start.elapsed() < retry + Duration::from_secs(2),
            "after {:?}",
            start.elapsed()
        );
        let start = tokio::time::Instant::now();
        let e = m0
            .update_leader(&optime(8))
            .await
            .expect_err("no renewal without the store");
        assert!(e.is_unreachable(), "{e:?}");
        assert!(
            start.elapsed() < retry + Duration::from_secs(2),
            "after {:?}",
            start.elapsed()
        );
    }
    {
        tracing::info!("--- the store answers again");
        resume();
        wait_view(&m0, Duration::from_secs(20), "a view again", |v| {
            v.leader_name() == Some("m0")
        })
        .await;
        assert!(m0.update_leader(&optime(9)).await.expect("renew"));
    }
}
