//! The HA runtime's loop with fakes (STYLE rule 17): three in-process members on one in-memory
//! DCS, each with a fake Postgres, under paused tokio time. One member bootstraps, the others
//! clone and follow; when the leader's agent dies and its server crashes, exactly one other
//! member promotes; SIGTERM on the leader hands over cleanly; a DCS outage demotes the primary;
//! a primary partitioned alone from the DCS demotes before its lock expires and another member
//! takes over; a single refused lock renewal demotes the primary; a partitioned replica never
//! promotes; in failsafe mode a primary cut off from the DCS that hears from no member demotes;
//! two primaries never run at once.

use std::sync::Arc;
use std::time::Duration;

use patroni::agent::api_backend::Shared;
use patroni::agent::fake_pg::FakeWorld;
use patroni::agent::initial_snapshot;
use patroni::agent::runtime::{Fatal, Runtime};
use patroni_config::{Config, Environment, load};
use patroni_core::MemberData;
use patroni_core::ha::PgRole;
use patroni_dcs::{Dcs, Fault, MemoryStore, Op};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Lock ttl of the test cluster.
const TTL: Duration = Duration::from_secs(20);
/// How often the invariants are checked.
const STEP: Duration = Duration::from_millis(250);

/// A member's configuration: host `10.0.0.<i>`, APIs nobody answers (peers count as
/// unreachable, which the race ignores).
/// `dcs`: more `bootstrap.dcs` settings (`, key: value` flow-mapping entries), or empty.
fn config_with(dir: &std::path::Path, i: usize, dcs: &str) -> Config {
    let text = format!(
        "scope: fake\nname: m{i}\n\
         restapi: {{listen: '127.0.0.1:1', connect_address: '127.0.0.1:1'}}\n\
         kubernetes: {{namespace: default, labels: {{application: patroni}}}}\n\
         bootstrap: {{dcs: {{ttl: 20, loop_wait: 2, retry_timeout: 5{dcs}}}}}\n\
         postgresql: {{listen: '10.0.0.{i}:5432', connect_address: '10.0.0.{i}:5432', data_dir: {d}/m{i},\n\
         \x20 authentication: {{superuser: {{username: postgres}}, replication: {{username: standby}}}}}}\n",
        d = dir.display()
    );
    let path = dir.join(format!("m{i}.yml"));
    std::fs::write(&path, text).expect("write config");
    load(Some(&path), &Environment::new())
        .expect("valid configuration")
        .config
}

struct Agent {
    task: JoinHandle<Result<(), Fatal>>,
    stop: CancellationToken,
}

fn start(store: &MemoryStore, world: &FakeWorld, config: Config, i: usize) -> Agent {
    let dcs = Arc::new(store.member(&config.name, TTL));
    let shared = Arc::new(Shared::new(initial_snapshot(&config)));
    let pg = world.member(&format!("10.0.0.{i}"));
    let runtime = Runtime::new(Arc::new(config), dcs, pg, 15, shared);
    let stop = CancellationToken::new();
    let task = tokio::spawn(runtime.run(stop.clone()));
    Agent { task, stop }
}

/// Advances time step by step until `done` holds, checking after every step that at most one
/// fake server runs as primary. Panics after `limit`.
async fn run_until(world: &FakeWorld, limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let mut waited = Duration::ZERO;
    while !done() {
        let primaries = world.primaries();
        assert!(primaries.len() <= 1, "two primaries: {primaries:?}");
        assert!(
            waited < limit,
            "{what}: not reached after {limit:?}: {:?}",
            world.servers()
        );
        tokio::time::sleep(STEP).await;
        waited += STEP;
    }
}

/// Three members on one store and one fake world, formed into a cluster: one primary, two
/// running replicas, all of the same system identifier. Returns the primary's index.
async fn form_cluster(
    dir: &std::path::Path,
    store: &MemoryStore,
    world: &FakeWorld,
) -> (Vec<Agent>, usize) {
    form_cluster_with(dir, store, world, "").await
}

/// [`form_cluster`] with more `bootstrap.dcs` settings (see [`config_with`]).
async fn form_cluster_with(
    dir: &std::path::Path,
    store: &MemoryStore,
    world: &FakeWorld,
    dcs: &str,
) -> (Vec<Agent>, usize) {
    let agents: Vec<Agent> = (0..3)
        .map(|i| start(store, world, config_with(dir, i, dcs), i))
        .collect();
    run_until(world, Duration::from_secs(60), "cluster formed", || {
        let servers = world.servers();
        let replicas = servers
            .values()
            .filter(|s| s.running == Some(PgRole::Replica))
            .count();
        world.primaries().len() == 1 && replicas == 2
    })
    .await;
    let primary = world.primaries()[0].clone();
    let index = primary
        .rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("host index");
    (agents, index)
}

/// One bootstrap, two clones; after the leader dies exactly one member promotes and the
/// other keeps running as a replica; never two primaries.
#[tokio::test(start_paused = true)]
async fn one_member_bootstraps_and_exactly_one_takes_over_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MemoryStore::new();
    let world = FakeWorld::new();
    let (mut agents, old_index) = form_cluster(dir.path(), &store, &world).await;
    {
        tracing::info!("--- one primary and two running replicas of the same cluster");
        let sysids: Vec<u64> = world
            .servers()
            .values()
            .filter_map(|s| s.data.as_ref().map(|d| d.sysid))
            .collect();
        assert_eq!(sysids.len(), 3);
        assert!(
            sysids.iter().all(|s| *s == sysids[0]),
            "one cluster: {sysids:?}"
        );
    }
    let old = world.primaries()[0].clone();
    {
        tracing::info!("--- the leader's agent dies and its server crashes");
        agents[old_index].task.abort();
        world.crash(&old);
        run_until(&world, Duration::from_secs(90), "failover", || {
            let primaries = world.primaries();
            primaries.len() == 1 && primaries[0] != old
        })
        .await;
    }
    {
        tracing::info!("--- the new primary holds the lock; the third member stays a replica");
        let new = world.primaries()[0].clone();
        let view = store
            .member("observer", TTL)
            .get_cluster()
            .await
            .expect("view");
        let holder = view.leader_name().expect("a leader").to_owned();
        assert_eq!(format!("10.0.0.{}", &holder[1..]), new);
        run_until(
            &world,
            Duration::from_secs(30),
            "third member replica",
            || {
                world
                    .servers()
                    .iter()
                    .filter(|(h, s)| **h != old && **h != new && s.running == Some(PgRole::Replica))
                    .count()
                    == 1
            },
        )
        .await;
        // A few more cycles: still exactly one primary.
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(world.primaries(), vec![new]);
    }
    for a in &mut agents {
        a.task.abort();
    }
}

/// SIGTERM on the leader stops its server, releases the lock and ends the loop with success;
/// another member takes over without waiting for the ttl.
#[tokio::test(start_paused = true)]
async fn sigterm_on_the_leader_stops_postgres_releases_the_lock_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MemoryStore::new();
    let world = FakeWorld::new();
    let (mut agents, leader) = form_cluster(dir.path(), &store, &world).await;
    let old = format!("10.0.0.{leader}");
    {
        tracing::info!("--- SIGTERM: the loop ends with success, the server is stopped");
        agents[leader].stop.cancel();
        let result = (&mut agents[leader].task).await.expect("loop task");
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(world.servers()[&old].running, None);
        let view = store
            .member("observer", TTL)
            .get_cluster()
            .await
            .expect("view");
        assert_ne!(view.leader_name(), Some(format!("m{leader}").as_str()));
    }
    {
        tracing::info!("--- another member promotes well within the ttl");
        run_until(&world, TTL / 2, "new primary", || {
            let p = world.primaries();
            p.len() == 1 && p[0] != old
        })
        .await;
    }
    for a in &mut agents {
        a.task.abort();
    }
}

/// Without the DCS the primary demotes once its last renewal is `retry_timeout` old and no
/// replica promotes; when the DCS is back, exactly one primary runs again.
#[tokio::test(start_paused = true)]
async fn dcs_outage_demotes_the_primary_and_nobody_promotes_until_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MemoryStore::new();
    let world = FakeWorld::new();
    let (mut agents, _) = form_cluster(dir.path(), &store, &world).await;
    {
        tracing::info!("--- the DCS becomes unreachable: no primary after retry_timeout");
        store.set_reachable(false);
        run_until(&world, Duration::from_secs(30), "primary demoted", || {
            world.primaries().is_empty()
        })
        .await;
        let running = world
            .servers()
            .values()
            .filter(|s| s.running == Some(PgRole::Replica))
            .count();
        assert_eq!(running, 3, "everyone runs read-only: {:?}", world.servers());
        tokio::time::sleep(TTL * 2).await;
        assert!(world.primaries().is_empty(), "{:?}", world.servers());
    }
    {
        tracing::info!("--- the DCS is back: exactly one primary again");
        store.set_reachable(true);
        run_until(&world, Duration::from_secs(90), "a primary again", || {
            world.primaries().len() == 1
        })
        .await;
    }
    for a in &mut agents {
        a.task.abort();
    }
}

/// Issue #11: a member suspended right after it read a view in which the lock was free
/// (SIGSTOP, a frozen VM) never races from that view once it resumes, after another member
/// took the lock meanwhile; it follows the new leader.
#[tokio::test(start_paused = true)]
async fn a_member_resumed_after_a_pause_never_races_from_its_old_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MemoryStore::new();
    let world = FakeWorld::new();
    let (mut agents, old_index) = form_cluster(dir.path(), &store, &world).await;
    let old = format!("10.0.0.{old_index}");
    let others: Vec<usize> = (0..3).filter(|i| *i != old_index).collect();
    let (frozen, racer) = (others[0], others[1]);
    {
        tracing::info!(
            "--- the leader dies; once its lock expired, both replicas freeze after their next read"
        );
        agents[old_index].task.abort();
        world.crash(&old);
        run_until(&world, TTL * 2, "lock expired", || {
            store.holder().0.is_none()
        })
        .await;
        store.freeze_after_read(&format!("m{frozen}"), TTL + Duration::from_secs(10));
        store.freeze_after_read(&format!("m{racer}"), Duration::from_secs(3));
    }
    {
        tracing::info!("--- the briefly frozen member takes over");
        let want = format!("10.0.0.{racer}");
        run_until(&world, Duration::from_secs(30), "racer promoted", || {
            world.primaries() == [want.clone()]
        })
        .await;
    }
    {
        tracing::info!("--- the long-frozen member resumes: no race from its old view, it follows");
        let want = format!("10.0.0.{frozen}");
        tokio::time::sleep(TTL + Duration::from_secs(10)).await;
        run_until(
            &world,
            Duration::from_secs(30),
            "frozen member replica",
            || world.servers()[&want].running == Some(PgRole::Replica),
        )
        .await;
        assert_eq!(store.stale_acquire_attempts(), Vec::<String>::new());
        assert_eq!(store.holder().0, Some(format!("m{racer}")));
        assert_eq!(world.primaries(), [format!("10.0.0.{racer}")]);
    }
    for a in &mut agents {
        a.task.abort();
    }
}

/// Lets `time` pass step by step, checking after every step that at most one fake server
/// runs as primary.
async fn steps(world: &FakeWorld, time: Duration) {
    let mut waited = Duration::ZERO;
    run_until(world, time + STEP, "time passed", || {
        waited += STEP;
        waited > time
    })
    .await;
}

/// The lock holder in a fresh view, and what member `name` last published.
async fn published(store: &MemoryStore, name: &str) -> (Option<String>, Option<MemberData>) {
    let view = store
        .member("observer", TTL)
        .get_cluster()
        .await
        .expect("view");
    let data = view.member(name).map(|m| m.data.clone());
    (view.leader_name().map(String::from), data)
}

/// The timeline of `host`'s data.
fn timeline(world: &FakeWorld, host: &str) -> u32 {
    world.servers()[host]
        .data
        .as_ref()
        .map_or(0, |d| d.timeline)
}

/// A primary cut off from the DCS alone (the others still reach it) demotes itself once its
/// last renewal is `retry_timeout` old, well before its lock expires (ttl); after the ttl
/// another member takes the lock and promotes; healed, the old primary runs as a replica of
/// the new one. Never two primaries.
#[tokio::test(start_paused = true)]
async fn a_primary_partitioned_from_the_dcs_demotes_before_another_takes_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MemoryStore::new();
    let world = FakeWorld::new();
    let (mut agents, old_index) = form_cluster(dir.path(), &store, &world).await;
    let (old, old_name) = (format!("10.0.0.{old_index}"), format!("m{old_index}"));
    {
        tracing::info!("--- the primary is cut off: it demotes while its lock still stands");
        store.partition(&old_name, true);
        // retry_timeout (5 s) after the last renewal, which is at most loop_wait (2 s) old.
        run_until(
            &world,
            Duration::from_secs(8),
            "old primary demoted",
            || world.primaries().is_empty(),
        )
        .await;
        assert_eq!(
            store.holder().0.as_deref(),
            Some(old_name.as_str()),
            "demoted before its lock expired: nobody else could have promoted yet"
        );
        assert_eq!(
            world.servers()[&old].running,
            Some(PgRole::Replica),
            "restarted read-only"
        );
    }
    {
        tracing::info!("--- after the ttl another member takes the lock and promotes");
        run_until(&world, TTL + Duration::from_secs(10), "new primary", || {
            world.primaries().len() == 1
        })
        .await;
        let new = world.primaries()[0].clone();
        assert_ne!(new, old);
        let holder = store.holder().0.expect("a holder");
        assert_eq!(format!("10.0.0.{}", &holder[1..]), new);
        steps(&world, TTL).await;
        assert_eq!(
            world.primaries(),
            std::slice::from_ref(&new),
            "the cut-off member stays down"
        );
    }
    {
        tracing::info!("--- healed: the old primary publishes itself again, as a running replica");
        let cut_off = published(&store, &old_name).await.1;
        store.partition(&old_name, false);
        let new = world.primaries()[0].clone();
        steps(&world, TTL * 2).await;
        assert_eq!(world.primaries(), [new]);
        assert_eq!(world.servers()[&old].running, Some(PgRole::Replica));
        let (leader, data) = published(&store, &old_name).await;
        assert_ne!(leader.as_deref(), Some(old_name.as_str()));
        let data = data.expect("the old primary is a member");
        assert_ne!(Some(&data), cut_off.as_ref(), "it publishes itself again");
        assert_eq!(
            (data.role.as_deref(), data.state.as_deref()),
            (Some("replica"), Some("running"))
        );
    }
    for a in &mut agents {
        a.task.abort();
    }
}

/// One refused lock renewal: the primary demotes at once (Patroni: "failed to update leader
/// lock" → `demote('immediate-nolock')`); its lock, still its own and unexpired, is renewed
/// on the next cycle and it promotes again (a new timeline). Nobody else takes over; never
/// two primaries.
#[tokio::test(start_paused = true)]
async fn a_single_refused_renewal_demotes_the_primary_which_then_takes_its_lock_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MemoryStore::new();
    let world = FakeWorld::new();
    let (mut agents, index) = form_cluster(dir.path(), &store, &world).await;
    let (host, name) = (format!("10.0.0.{index}"), format!("m{index}"));
    let before = timeline(&world, &host);
    {
        tracing::info!("--- the next renewal is refused once");
        store.fail_next(&name, Op::UpdateLeader, Fault::Refused);
        run_until(
            &world,
            Duration::from_secs(30),
            "demoted and promoted again",
            || {
                store.pending_faults().is_empty()
                    && world.primaries() == [host.clone()]
                    && timeline(&world, &host) > before
            },
        )
        .await;
        assert_eq!(
            timeline(&world, &host),
            before + 1,
            "one demotion, one promotion"
        );
        assert_eq!(store.holder().0.as_deref(), Some(name.as_str()));
    }
    {
        tracing::info!("--- the others stay replicas; still one primary a while later");
        steps(&world, TTL * 2).await;
        assert_eq!(world.primaries(), std::slice::from_ref(&host));
        let replicas = world
            .servers()
            .values()
            .filter(|s| s.running == Some(PgRole::Replica))
            .count();
        assert_eq!(replicas, 2, "{:?}", world.servers());
    }
    for a in &mut agents {
        a.task.abort();
    }
}

/// A replica cut off from the DCS keeps running read-only and never promotes, however long
/// the partition; the primary and the lock are unaffected; healed, the replica publishes
/// itself again.
#[tokio::test(start_paused = true)]
async fn a_replica_partitioned_from_the_dcs_keeps_replicating_and_never_promotes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MemoryStore::new();
    let world = FakeWorld::new();
    let (mut agents, leader) = form_cluster(dir.path(), &store, &world).await;
    let primary = format!("10.0.0.{leader}");
    let index = (leader + 1) % 3;
    let (host, name) = (format!("10.0.0.{index}"), format!("m{index}"));
    let observer = store.member("observer", TTL);
    let published = |c: &patroni_core::Cluster| c.member(&name).map(|m| m.version.clone());
    let before = published(&observer.get_cluster().await.expect("view"));
    {
        tracing::info!("--- the replica is cut off for three ttls");
        store.partition(&name, true);
        let mut waited = Duration::ZERO;
        run_until(&world, TTL * 4, "three ttls", || {
            assert_eq!(
                world.servers()[&host].running,
                Some(PgRole::Replica),
                "the cut-off replica keeps running read-only"
            );
            assert_eq!(world.primaries(), std::slice::from_ref(&primary));
            waited += STEP;
            waited >= TTL * 3
        })
        .await;
        assert_eq!(store.holder().0, Some(format!("m{leader}")));
        assert_eq!(
            published(&observer.get_cluster().await.expect("view")),
            before,
            "nothing published while cut off"
        );
    }
    {
        tracing::info!("--- healed: it publishes itself again and stays a replica");
        store.partition(&name, false);
        let mut waited = Duration::ZERO;
        while published(&observer.get_cluster().await.expect("view")) == before {
            assert!(waited < Duration::from_secs(10), "not published again");
            tokio::time::sleep(STEP).await;
            waited += STEP;
        }
        assert_eq!(world.servers()[&host].running, Some(PgRole::Replica));
        assert_eq!(world.primaries(), [primary]);
    }
    for a in &mut agents {
        a.task.abort();
    }
}

/// Failsafe mode: the leader publishes every member's API with its lock; cut off from the
/// DCS, the primary calls the members, and as none of them answers (their APIs are closed
/// here) it demotes as without failsafe mode, before its lock expires. Never two primaries.
#[tokio::test(start_paused = true)]
async fn failsafe_primary_that_hears_from_nobody_demotes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MemoryStore::new();
    let world = FakeWorld::new();
    let (mut agents, old_index) =
        form_cluster_with(dir.path(), &store, &world, ", failsafe_mode: true").await;
    let old_name = format!("m{old_index}");
    steps(&world, Duration::from_secs(4)).await;
    let topology = store
        .member("observer", TTL)
        .get_cluster()
        .await
        .expect("view")
        .failsafe
        .expect("the leader published the failsafe topology");
    assert_eq!(
        topology.keys().map(String::as_str).collect::<Vec<_>>(),
        ["m0", "m1", "m2"]
    );
    assert!(topology.values().all(|u| u == "http://127.0.0.1:1/patroni"));
    store.partition(&old_name, true);
    run_until(
        &world,
        Duration::from_secs(12),
        "old primary demoted",
        || world.primaries().is_empty(),
    )
    .await;
    assert_eq!(
        store.holder().0.as_deref(),
        Some(old_name.as_str()),
        "demoted before its lock expired"
    );
    store.partition(&old_name, false);
    for a in &mut agents {
        a.task.abort();
    }
}

/// One member alone, bootstrapped: no other member's write wakes it early, so it runs one
/// cycle per `loop_wait` (2 s). Its host, and the agent.
async fn bootstrapped_alone(
    store: &MemoryStore,
    world: &FakeWorld,
    dir: &std::path::Path,
) -> (&'static str, Agent) {
    let host = "10.0.0.0";
    let agent = start(store, world, config_with(dir, 0, ""), 0);
    run_until(world, Duration::from_secs(60), "bootstrapped", || {
        world.primaries() == [host]
    })
    .await;
    (host, agent)
}

/// An idle cycle queries its server once: what it publishes is the observation it decided on
/// (nothing acted on the server in between), not a second status query (idle CPU, issue #19).
#[tokio::test(start_paused = true)]
async fn an_idle_member_queries_its_server_once_per_cycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, world) = (MemoryStore::new(), FakeWorld::new());
    let (host, mut agent) = bootstrapped_alone(&store, &world, dir.path()).await;
    steps(&world, Duration::from_secs(10)).await;
    {
        tracing::info!("--- 20 s idle: ten cycles, about ten status queries");
        let before = world.status_queries(host);
        steps(&world, Duration::from_secs(20)).await;
        let queries = world.status_queries(host) - before;
        assert!(
            (9..=11).contains(&queries),
            "{queries} status queries in ten idle cycles"
        );
        let (leader, data) = published(&store, "m0").await;
        assert_eq!(leader.as_deref(), Some("m0"));
        let data = data.expect("member key");
        assert_eq!(data.role.as_deref(), Some("primary"));
        assert_eq!(data.state.as_deref(), Some("running"));
    }
    agent.stop.cancel();
    let _ = (&mut agent.task).await;
}

/// The cycle that starts a crashed server again publishes it running, not a cycle later:
/// publishing observes again after an action. (Alone, so no other member's write wakes it
/// early; a start, unlike a promotion, is not followed by an immediate cycle.)
#[tokio::test(start_paused = true)]
async fn the_cycle_that_starts_a_crashed_server_publishes_it_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, world) = (MemoryStore::new(), FakeWorld::new());
    let (host, mut agent) = bootstrapped_alone(&store, &world, dir.path()).await;
    steps(&world, Duration::from_secs(5)).await;
    world.crash(host);
    run_until(&world, Duration::from_secs(10), "started again", || {
        world.primaries() == [host]
    })
    .await;
    let (_, data) = published(&store, "m0").await;
    let data = data.expect("member key");
    assert_eq!(data.state.as_deref(), Some("running"), "{data:?}");
    assert_eq!(data.role.as_deref(), Some("primary"), "{data:?}");
    agent.stop.cancel();
    let _ = (&mut agent.task).await;
}
