//! The DCS contract: what every backend must do, checked only through the [`Dcs`] trait and
//! the views it returns, so the same functions run against Kubernetes (t30), etcd3 (t36) and
//! ZooKeeper (t34). A backend's test file supplies a [`Backend`] (a factory of member handles
//! on one fresh cluster, plus the few [`Traits`] in which backends legitimately differ, as
//! Patroni's own backends do) and checks its own storage format separately.
//!
//! Each function is one property; they read like the specification:
//! - [`lock_race_renew_release_expiry`]: contenders race and exactly one wins each round; only
//!   the holder renews and releases; a release frees the lock at once, silence after `ttl`.
//! - [`leader_and_config_changes_wake_members`]: the watch wakes the loop on the lock changing
//!   hands or being released, on someone else's renewal (not one's own, where a renewal is a
//!   write at all) and on configuration changes; member data wakes nobody.
//! - [`a_race_from_an_old_view_never_takes_a_newer_lock`]: issue #11.
//! - [`compare_and_set_on_config_failover_sync_and_initialize`]: writes conditional on a
//!   version lose once someone else wrote; the bootstrap race has one winner; the cluster
//!   can be deleted.
//! - [`an_unreachable_store_is_classified_unreachable`]: a store that stops answering is
//!   [`Error::is_unreachable`](patroni_dcs::Error::is_unreachable) within `retry_timeout`, and
//!   works again once it answers.

mod cas;

use std::future::Future;
use std::time::Duration;

#[allow(
    unused_imports,
    reason = "used by the backends' test files, not every test binary"
)]
pub use cas::compare_and_set_on_config_failover_sync_and_initialize;
use futures::future::join_all;
use patroni_core::{Cluster, MemberData};
use patroni_dcs::{Dcs, LeaderStatusUpdate};
use patroni_testlab::wait_until;

/// How many lock rounds [`lock_race_renew_release_expiry`] plays (even: release, odd: expiry).
pub const ROUNDS: usize = 4;

/// How many half-ttl renewals [`a_race_from_an_old_view_never_takes_a_newer_lock`] watches.
const STALE_VIEW_RENEWALS: usize = 8;

/// A factory of member handles on one cluster of one backend.
pub trait Backend {
    /// The backend's DCS handle.
    type D: Dcs;
    /// Where this backend differs from the others.
    const TRAITS: Traits;
    /// A handle for member `name`, whose lock writes promise `ttl`; `retry_timeout` is the
    /// budget of one operation.
    fn member(
        &self,
        name: &str,
        ttl: Duration,
        retry_timeout: Duration,
    ) -> impl Future<Output = Self::D>;
    /// Makes member `name` silent (`true`): nothing keeps its lock alive any more, as with a
    /// frozen or partitioned holder; `false` lets it be heard again. Where a lock lives only
    /// as long as its holder renews it (Kubernetes, etcd3), a holder that stops renewing is
    /// silent already: nothing to do. ZooKeeper's client keeps the session, and so the lock,
    /// alive by itself: its backend cuts the member's connection.
    fn silence(&self, name: &str, silent: bool) {
        let _ = (name, silent);
    }
}

/// The ways backends legitimately differ (each as Patroni's backend of the same store does).
/// The contract checks both sides of each: a backend says which side it is on.
#[derive(Debug, Clone, Copy)]
pub struct Traits {
    /// Views come from a watched cache, so another member's write shows in a view only after
    /// a moment (Kubernetes). `false`: each view reads the store (etcd3, ZooKeeper), and the
    /// contract expects every write in the very next view.
    pub cached_views: bool,
    /// The holder's renewal is a write the others watch, so it wakes them (Kubernetes: the
    /// leader object; etcd3: `/status`). `false`: the session keeps the lock and a renewal
    /// changes nothing the others watch (ZooKeeper).
    pub renewal_wakes_others: bool,
    /// The lock goes with the holder's session: once it expired, the former holder cannot
    /// renew it (ZooKeeper's ephemeral znode). `false`: a former holder's renewal may take a
    /// lock nobody else took since (Kubernetes: the record still names it; etcd3: the renewal
    /// re-creates the free key, as Patroni's `_update_leader` does), so the contract does not
    /// try it.
    pub lock_goes_with_session: bool,
    /// The configuration's `modify_version` is its version (Kubernetes' `resourceVersion`,
    /// etcd3's `mod_revision`). `false`: they differ (ZooKeeper: the znode's version and its
    /// `mzxid`, as Patroni).
    pub config_modify_version_is_version: bool,
    /// `delete_cluster` removes the members' records too (etcd3, ZooKeeper: everything under
    /// the prefix). `false`: members outlive it (Kubernetes: they are pods).
    pub delete_cluster_removes_members: bool,
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
    check: impl Fn(&Cluster) -> bool,
) {
    wait_until(timeout, what.to_string(), || async {
        let v = node.get_cluster().await.ok()?;
        check(&v).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// Checks that `node`'s view satisfies `check`: in the very next view where views read the
/// store, within `timeout` where they come from a watched cache ([`Traits::cached_views`]).
pub async fn expect_view<B: Backend>(
    node: &B::D,
    timeout: Duration,
    what: &str,
    check: impl Fn(&Cluster) -> bool,
) {
    if B::TRAITS.cached_views {
        wait_view(node, timeout, what, check).await;
    } else {
        let v = node.get_cluster().await.expect("view");
        assert!(check(&v), "{what}: {v:?}");
    }
}

/// One round of the race for a free lock: every contender reads its view (which must show
/// the lock free), then all race at once from what they saw. Returns the index of the one
/// winner; fails unless there is exactly one.
pub async fn race<D: Dcs>(round: usize, contenders: &[(&str, &D)]) -> usize {
    let mut seen = Vec::new();
    for (name, d) in contenders {
        let view = d.get_cluster().await.expect("view");
        assert!(
            !view.is_locked(),
            "round {round}: {name} sees the lock held by {:?}",
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
    let winners: Vec<&str> = contenders
        .iter()
        .zip(&results)
        .filter(|(_, r)| *r.as_ref().expect("no DCS error"))
        .map(|((name, _), _)| *name)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "round {round}: exactly one winner: {winners:?}"
    );
    contenders
        .iter()
        .position(|(name, _)| *name == winners[0])
        .expect("the winner is a contender")
}

/// Contenders race and exactly one wins each round; the winner renews (publishing its WAL
/// position), the others can neither renew nor release; a release frees the lock at once
/// (recording the last position); a silent holder's lock expires after `ttl`, not before,
/// and the former holder, heard again, sees it free (and, where the lock went with its
/// session, cannot renew it).
pub async fn lock_race_renew_release_expiry<B: Backend>(backend: &B, ttl: Duration) {
    let retry = Duration::from_secs(4);
    let mut contenders = Vec::new();
    for i in 0..3 {
        let name = format!("m{i}");
        contenders.push((name.clone(), backend.member(&name, ttl, retry).await));
    }
    let refs: Vec<(&str, &B::D)> = contenders.iter().map(|(n, d)| (n.as_str(), d)).collect();
    for round in 0..ROUNDS {
        tracing::info!("--- round {round}: everyone races for the free lock");
        let (winner, w) = refs[race(round, &refs).await];
        let others = || refs.iter().filter(|(n, _)| *n != winner);

        tracing::info!("--- round {round}: the winner renews, the others cannot");
        for (_, d) in &refs {
            d.get_cluster().await.expect("view");
        }
        let lsn = 1000 + round as u64;
        renew::<B>(w, lsn).await;
        for (name, d) in others() {
            expect_view::<B>(d, Duration::from_secs(5), "others see the holder", |v| {
                v.leader_name() == Some(winner)
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
        expect_view::<B>(
            w,
            Duration::from_secs(5),
            "the renewal published the position",
            |v| v.leader_name() == Some(winner) && v.status.last_lsn == lsn,
        )
        .await;

        if round % 2 == 0 {
            tracing::info!("--- round {round}: voluntary release frees the lock at once");
            assert!(w.delete_leader(Some(2000 + lsn)).await.expect("release"));
            for (_, d) in &refs {
                let what = "the released lock is free, the release recorded the position";
                expect_view::<B>(d, Duration::from_secs(5), what, |v| {
                    !v.is_locked() && v.status.last_lsn == 2000 + lsn
                })
                .await;
            }
        } else {
            tracing::info!("--- round {round}: the holder goes silent; the lock expires after ttl");
            backend.silence(winner, true);
            let start = tokio::time::Instant::now();
            for (name, d) in others() {
                assert!(
                    d.get_cluster().await.expect("view").is_locked(),
                    "{name}: still held"
                );
            }
            for (name, d) in others() {
                wait_view(*d, ttl * 4, &format!("{name} sees expiry"), |v| {
                    !v.is_locked()
                })
                .await;
            }
            assert!(
                start.elapsed() >= ttl - Duration::from_millis(500),
                "expired too early: {:?}",
                start.elapsed()
            );
            tracing::info!("--- round {round}: the former holder is heard again, without the lock");
            backend.silence(winner, false);
            // Its own clock started when it last saw its renewal: it waits out a ttl too.
            wait_view(w, ttl * 4, "the former holder sees expiry", |v| {
                !v.is_locked()
            })
            .await;
            if B::TRAITS.lock_goes_with_session {
                assert!(
                    !w.update_leader(&optime(1)).await.expect("renew"),
                    "the lock went with the session"
                );
            }
        }
    }
}

/// The holder renews publishing `lsn`: at once where views read the store, once its view
/// shows the lock where they come from a watched cache.
async fn renew<B: Backend>(w: &B::D, lsn: u64) {
    if B::TRAITS.cached_views {
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
    } else {
        assert!(
            w.update_leader(&optime(lsn)).await.expect("renew"),
            "the holder renews"
        );
    }
}

/// Drains the wake-ups already pending on `node`.
async fn settle<D: Dcs>(node: &D) {
    while node.watch(Duration::from_millis(300)).await {}
}

/// Watches `node` while `act` runs (200 ms after the watch started) and checks that the
/// watch woke within 5 s; returns `act`'s output.
async fn wakes_at_once<D: Dcs, T>(node: &D, act: impl Future<Output = T>) -> T {
    let start = tokio::time::Instant::now();
    let (woke, out) = tokio::join!(node.watch(Duration::from_secs(30)), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        act.await
    });
    assert!(
        woke && start.elapsed() < Duration::from_secs(5),
        "woke={woke} after {:?}",
        start.elapsed()
    );
    out
}

/// The watch wakes a member when the lock changes hands or is released, when someone else
/// renews (where a renewal is a watched write; the holder's own renewal does not wake the
/// holder), and when the configuration changes; a member's data changing wakes nobody.
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
    // Let the session's and the config creation's own events pass before watching.
    settle(&m1).await;
    {
        tracing::info!("--- the lock changing hands wakes the other member at once");
        assert!(wakes_at_once(&m1, acquire(&m0)).await);
    }
    if B::TRAITS.renewal_wakes_others {
        tracing::info!("--- someone else's renewal wakes a member; one's own renewal does not");
        m0.get_cluster().await.expect("view");
        m1.get_cluster().await.expect("view");
        settle(&m0).await;
        settle(&m1).await;
        let (own, other, renewed) = tokio::join!(
            m0.watch(Duration::from_secs(2)),
            m1.watch(Duration::from_secs(30)),
            async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                m0.update_leader(&optime(5)).await
            }
        );
        assert!(renewed.expect("renew"));
        assert!(other, "the replica wakes on the leader's renewal");
        assert!(!own, "the holder is not woken by its own renewal");
    }
    {
        tracing::info!("--- the lock being released wakes the other member at once");
        m0.get_cluster().await.expect("view");
        settle(&m1).await;
        let released = wakes_at_once(&m1, m0.delete_leader(None)).await;
        assert!(released.expect("release"));
    }
    {
        tracing::info!("--- a configuration change wakes members");
        settle(&m1).await;
        let set = wakes_at_once(&m1, m0.set_config_value(r#"{"ttl":40}"#, None)).await;
        assert!(set.expect("config"));
    }
    {
        tracing::info!("--- a member's own data changing wakes nobody");
        settle(&m1).await;
        let (woke, touched) = tokio::join!(m1.watch(Duration::from_secs(2)), async {
            m0.touch_member(&MemberData::default()).await
        });
        assert!(touched.expect("touch"));
        assert!(!woke, "member data is not a change the loop waits for");
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
        for _ in 0..STALE_VIEW_RENEWALS {
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
