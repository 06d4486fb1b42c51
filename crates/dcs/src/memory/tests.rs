//! Unit tests of the in-memory DCS: its lock semantics and its fault injection.

use super::*;

const TTL: Duration = Duration::from_secs(30);

/// The leader version in `m`'s current view.
async fn seen(m: &MemoryDcs) -> Option<String> {
    m.get_cluster().await.expect("ok").leader.map(|l| l.version)
}

/// A decision made from a view older than the lock's last change never takes the lock,
/// even once the lock is free again.
#[tokio::test(start_paused = true)]
async fn acquire_from_an_old_view_is_refused() {
    let store = MemoryStore::new();
    let (a, b) = (store.member("a", TTL), store.member("b", TTL));
    assert!(a.attempt_to_acquire_leader(None).await.expect("ok"));
    let old = seen(&b).await;
    assert!(
        a.update_leader(&LeaderStatusUpdate::default())
            .await
            .expect("ok")
    );
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    assert!(
        !b.attempt_to_acquire_leader(old.as_deref())
            .await
            .expect("ok")
    );
    assert!(
        b.attempt_to_acquire_leader(seen(&b).await.as_deref())
            .await
            .expect("ok")
    );
}

/// A frozen read returns the view as it was before the pause.
#[tokio::test(start_paused = true)]
async fn freeze_after_read_returns_the_old_view() {
    let store = MemoryStore::new();
    let (a, b) = (store.member("a", TTL), store.member("b", TTL));
    store.freeze_after_read("b", Duration::from_secs(10));
    let (view, taken) = tokio::join!(b.get_cluster(), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        a.attempt_to_acquire_leader(None).await
    });
    assert!(taken.expect("ok"));
    assert!(
        !view.expect("ok").is_locked(),
        "the view predates the acquisition"
    );
    assert!(b.get_cluster().await.expect("ok").is_locked());
}

/// The sync state is a compare-and-swap on its version; deleting the cluster empties the
/// state and keeps the members.
#[tokio::test(start_paused = true)]
async fn sync_state_and_cluster_deletion() {
    let store = MemoryStore::new();
    let a = store.member("a", TTL);
    let standbys = ["c".to_string(), "b".to_string()];
    let written = a
        .write_sync_state(Some("a"), &standbys, Some(1), None)
        .await
        .expect("reachable")
        .expect("written");
    assert_eq!(written.sync_standby, ["b", "c"]);
    assert_eq!(written.quorum, 1);
    assert_eq!(a.get_cluster().await.expect("ok").sync, written);
    assert!(
        a.write_sync_state(Some("a"), &[], None, Some("stale"))
            .await
            .expect("reachable")
            .is_none(),
        "a write from an old version is refused"
    );
    assert!(
        a.delete_sync_state(written.version.as_deref())
            .await
            .expect("ok")
    );
    let emptied = a.get_cluster().await.expect("ok").sync;
    assert_eq!((emptied.leader, emptied.quorum), (None, 0));
    assert!(emptied.sync_standby.is_empty());

    a.touch_member(&MemberData::default()).await.expect("ok");
    assert!(a.initialize("7").await.expect("ok"));
    assert!(a.attempt_to_acquire_leader(None).await.expect("ok"));
    assert!(a.delete_cluster().await.expect("ok"));
    let c = a.get_cluster().await.expect("ok");
    assert_eq!(c.initialize, None);
    assert!(!c.is_locked());
    assert_eq!(c.members.len(), 1);
}

/// A changed `ttl` (the dynamic configuration) holds from the next lock write.
#[tokio::test(start_paused = true)]
async fn set_timing_changes_what_the_next_write_promises() {
    let store = MemoryStore::new();
    let (a, b) = (store.member("a", TTL), store.member("b", TTL));
    a.set_timing(Duration::from_secs(5), Duration::from_secs(2));
    assert!(a.attempt_to_acquire_leader(None).await.expect("reachable"));
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(
        !b.get_cluster().await.expect("ok").is_locked(),
        "the lock written after set_timing lasts the new ttl"
    );
}

/// Exactly one of several members takes a free lock; it expires ttl
/// after the last renewal and then counts a transition.
#[tokio::test(start_paused = true)]
async fn one_winner_then_expiry_after_ttl() {
    let store = MemoryStore::new();
    let (a, b) = (store.member("a", TTL), store.member("b", TTL));
    assert!(a.attempt_to_acquire_leader(None).await.expect("reachable"));
    assert!(!b.attempt_to_acquire_leader(None).await.expect("reachable"));
    tokio::time::advance(Duration::from_secs(20)).await;
    assert!(
        a.update_leader(&LeaderStatusUpdate {
            last_lsn: Some(7),
            ..Default::default()
        })
        .await
        .expect("ok")
    );
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(b.get_cluster().await.expect("ok").leader_name(), Some("a"));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(!b.get_cluster().await.expect("ok").is_locked());
    assert!(
        !a.update_leader(&LeaderStatusUpdate::default())
            .await
            .expect("ok"),
        "expired lock cannot be renewed"
    );
    assert!(
        b.attempt_to_acquire_leader(seen(&b).await.as_deref())
            .await
            .expect("ok")
    );
    let s = store.lock();
    assert_eq!((s.transitions, s.status.last_lsn), (1, 7));
}

/// Release frees the lock at once; an unreachable store fails as a DCS error.
#[tokio::test(start_paused = true)]
async fn release_and_unreachable() {
    let store = MemoryStore::new();
    let (a, b) = (store.member("a", TTL), store.member("b", TTL));
    assert!(a.attempt_to_acquire_leader(None).await.expect("ok"));
    assert!(
        !b.delete_leader(None).await.expect("ok"),
        "only the holder releases"
    );
    assert!(a.delete_leader(Some(9)).await.expect("ok"));
    assert!(
        b.attempt_to_acquire_leader(seen(&b).await.as_deref())
            .await
            .expect("ok")
    );
    store.set_reachable(false);
    assert!(
        b.get_cluster()
            .await
            .expect_err("unreachable")
            .is_unreachable()
    );
}

/// A partitioned member gets `Unreachable` for everything and hears no change; the
/// others carry on, see its lock expire and take it; healed, it sees the new holder.
#[tokio::test(start_paused = true)]
async fn a_partition_cuts_off_one_member_only() {
    let store = MemoryStore::new();
    let (a, b) = (store.member("a", TTL), store.member("b", TTL));
    assert!(a.attempt_to_acquire_leader(None).await.expect("ok"));
    store.partition("a", true);
    let e = a.get_cluster().await.expect_err("cut off");
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    assert!(
        a.update_leader(&LeaderStatusUpdate::default())
            .await
            .expect_err("cut off")
            .is_unreachable()
    );
    assert!(a.touch_member(&MemberData::default()).await.is_err());
    assert_eq!(
        b.get_cluster().await.expect("b works").leader_name(),
        Some("a")
    );
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    let (woke, taken) = tokio::join!(a.watch(Duration::from_secs(5)), async {
        b.attempt_to_acquire_leader(seen(&b).await.as_deref()).await
    });
    assert!(taken.expect("b works"), "the cut-off holder's lock expired");
    assert!(!woke, "no change reaches a partitioned member");
    store.partition("a", false);
    assert_eq!(
        a.get_cluster().await.expect("healed").leader_name(),
        Some("b")
    );
    assert!(
        !a.update_leader(&LeaderStatusUpdate::default())
            .await
            .expect("healed"),
        "the lock is b's now"
    );
}

/// `fail_next` fails one operation of one member once, as unreachable or refused
/// (nothing written), then it works again; other members and operations are untouched.
#[tokio::test(start_paused = true)]
async fn fail_next_fails_one_operation_of_one_member_once() {
    let store = MemoryStore::new();
    let (a, b) = (store.member("a", TTL), store.member("b", TTL));
    assert!(a.attempt_to_acquire_leader(None).await.expect("ok"));
    let version = store.holder().1;
    store.fail_next("a", Op::UpdateLeader, Fault::Refused);
    store.fail_next("b", Op::GetCluster, Fault::Unreachable);
    assert!(
        b.update_leader(&LeaderStatusUpdate::default())
            .await
            .is_ok()
    );
    assert!(a.get_cluster().await.is_ok(), "only b's read fails");
    assert!(
        !a.update_leader(&LeaderStatusUpdate::default())
            .await
            .expect("refused, not an error")
    );
    assert_eq!(
        store.holder(),
        (Some("a".into()), version),
        "nothing written"
    );
    assert!(
        a.update_leader(&LeaderStatusUpdate::default())
            .await
            .expect("ok"),
        "once only"
    );
    assert!(
        b.get_cluster()
            .await
            .expect_err("fails once")
            .is_unreachable()
    );
    assert!(b.get_cluster().await.is_ok());
    store.fail_next("b", Op::GetCluster, Fault::Refused);
    let e = b.get_cluster().await.expect_err("refused");
    assert!(matches!(e, Error::Refused { .. }), "{e:?}");
    store.fail_next("b", Op::WriteSyncState, Fault::Refused);
    assert_eq!(
        b.write_sync_state(Some("a"), &[], None, None)
            .await
            .expect("refused, not an error"),
        None
    );
    assert_eq!(store.pending_faults(), Vec::new());
}

/// Lock changes wake watchers.
#[tokio::test(start_paused = true)]
async fn lock_changes_wake_watchers() {
    let store = MemoryStore::new();
    let (a, b) = (store.member("a", TTL), store.member("b", TTL));
    let (woke, _) = tokio::join!(b.watch(Duration::from_secs(10)), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        a.attempt_to_acquire_leader(None).await
    });
    assert!(woke);
    assert!(!b.watch(Duration::from_secs(10)).await, "nothing changed");
}
