//! The HA runtime's loop with fakes (STYLE rule 17): three in-process members on one in-memory
//! DCS, each with a fake Postgres, under paused tokio time. One member bootstraps, the others
//! clone and follow; when the leader's agent dies and its server crashes, exactly one other
//! member promotes; SIGTERM on the leader hands over cleanly; a DCS outage demotes the primary;
//! two primaries never run at once.

use std::sync::Arc;
use std::time::Duration;

use patroni::agent::api_backend::Shared;
use patroni::agent::fake_pg::FakeWorld;
use patroni::agent::initial_snapshot;
use patroni::agent::runtime::{Fatal, Runtime};
use patroni_config::{Config, Environment, load};
use patroni_core::ha::PgRole;
use patroni_dcs::{Dcs, MemoryStore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Lock ttl of the test cluster.
const TTL: Duration = Duration::from_secs(20);
/// How often the invariants are checked.
const STEP: Duration = Duration::from_millis(250);

/// A member's configuration: host `10.0.0.<i>`, APIs nobody answers (peers count as
/// unreachable, which the race ignores).
fn config(dir: &std::path::Path, i: usize) -> Config {
    let text = format!(
        "scope: fake\nname: m{i}\n\
         restapi: {{listen: '127.0.0.1:1', connect_address: '127.0.0.1:1'}}\n\
         kubernetes: {{namespace: default, labels: {{application: patroni}}}}\n\
         bootstrap: {{dcs: {{ttl: 20, loop_wait: 2, retry_timeout: 5}}}}\n\
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
    let agents: Vec<Agent> = (0..3)
        .map(|i| start(store, world, config(dir, i), i))
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
