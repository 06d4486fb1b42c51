//! The steps every DCS backend's 3-member cluster test takes, whatever the store: t50
//! (Kubernetes), t57 (etcd3) and t58 (ZooKeeper) bootstrap, list the cluster with Python
//! Patroni's `patronictl` (and ours), `kill -9` the leader and see another take over within
//! `ttl + loop_wait`, rejoin the old one and switch over; t56 (the API server), t57's outage
//! and t58 freeze their store and check the primary keeps its writes under failsafe mode, or
//! demotes without it. Each test keeps its own store-specific checks (role labels, timeline
//! history, `-d etcd3://`) in its own file; the store appears here only as a [`Ctl`] (how
//! patronictl finds the cluster) and as a `freeze` function returning a guard that thaws it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use patroni_testlab::{AgentSpec, Host};
use tokio::time::Instant;

use super::cluster::*;

/// How long patronictl gets to list a just-formed cluster: members publish their state once
/// per loop, so a few loops.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a healthy candidate may take to be accepted for a switchover (it may still be
/// catching up after a failover: the API refuses with 412 until then, as Patroni does).
const SWITCHOVER_ACCEPTED: Duration = Duration::from_secs(60);

// === never two writable ===

/// What a [`WritabilityPoll`] saw.
pub struct Polled {
    /// Every poll in which more than one member accepted writes (their names).
    pub doubles: Vec<String>,
    /// How many polls ran.
    pub polls: u64,
    /// The most members writable in one poll.
    pub max_writable: usize,
}

/// A thread asking every target `select pg_is_in_recovery()` every `every` until stopped (or
/// dropped: a test failing half-way stops it too).
pub struct WritabilityPoll {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Polled>>,
}

// === impl WritabilityPoll ===

impl WritabilityPoll {
    /// Starts polling `targets` (host, its member's spec, member name).
    pub fn start(targets: Vec<(Host, AgentSpec, String)>, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Polled {
                doubles: Vec::new(),
                polls: 0,
                max_writable: 0,
            };
            while !flag.load(Ordering::Relaxed) {
                let now: Vec<&String> = targets
                    .iter()
                    .filter(|(h, s, _)| {
                        sql(h, h, s, "select pg_is_in_recovery()").as_deref() == Some("f")
                    })
                    .map(|t| &t.2)
                    .collect();
                if now.len() > 1 {
                    seen.doubles.push(format!("{now:?}"));
                }
                seen.max_writable = seen.max_writable.max(now.len());
                seen.polls += 1;
                std::thread::sleep(every);
            }
            seen
        });
        WritabilityPoll {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops polling; what it saw.
    pub fn stop(mut self) -> Polled {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("stopped once")
            .join()
            .expect("writability poll")
    }
}

impl Drop for WritabilityPoll {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every member polled for writability (every 200 ms) until [`finish`]ed: the "never two
/// writable members" invariant, checked throughout a scenario.
///
/// [`finish`]: NeverTwoWritable::finish
pub struct NeverTwoWritable(WritabilityPoll);

// === impl NeverTwoWritable ===

impl NeverTwoWritable {
    /// Starts polling `members`.
    pub fn start(members: &[Member]) -> Self {
        tracing::info!("--- a checker polls every member for writability throughout");
        let targets = members
            .iter()
            .map(|m| {
                (
                    Host::attach(m.host.info().clone()),
                    m.spec.clone(),
                    m.name.clone(),
                )
            })
            .collect();
        NeverTwoWritable(WritabilityPoll::start(targets, Duration::from_millis(200)))
    }

    /// Stops polling and checks that no two members were ever writable at once, and that one
    /// was at some point.
    pub fn finish(self, members: &[Member]) {
        let seen = self.0.stop();
        assert!(
            seen.doubles.is_empty(),
            "two writable members at once: {:?}\n{}",
            seen.doubles,
            logs(members)
        );
        assert_eq!(seen.max_writable, 1);
    }
}

// === the cluster scenario ===

/// The index of the only writable member, once there is exactly one (within `timeout`).
pub async fn only_primary(members: &[Member], timeout: Duration, what: &str) -> usize {
    let name = wait_for(timeout, what, members, || {
        let w = writable(members);
        (w.len() == 1).then(|| w[0].clone())
    })
    .await;
    index(members, &name)
}

/// The cluster forms: one primary, then two replicas streaming from it; its index.
pub async fn formed(members: &[Member]) -> usize {
    tracing::info!("--- the cluster forms: one primary, two streaming replicas");
    let p = only_primary(members, FORM_TIMEOUT, "one writable member").await;
    let m = &members[p];
    wait_for(
        FORM_TIMEOUT,
        "two replicas streaming from the primary",
        members,
        || (sql(&m.host, &m.host, &m.spec, STREAMING_REPLICAS)? == "2").then_some(()),
    )
    .await;
    p
}

/// A write on the primary (table `t`, row 1) reaches both replicas.
pub async fn writes_reach_replicas(members: &[Member], primary: usize) {
    tracing::info!("--- writes on the primary reach the replicas");
    let (p, s) = (&members[primary].host, &members[primary].spec);
    sql(p, p, s, "create table t(v int); insert into t values (1)").expect("write on the primary");
    for m in members.iter().filter(|m| m.name != members[primary].name) {
        wait_for(Duration::from_secs(30), "row replicated", members, || {
            (sql(&m.host, &m.host, &m.spec, "select count(*) from t").as_deref() == Some("1"))
                .then_some(())
        })
        .await;
    }
}

/// `kill -9` of the leader's agent and postmaster: another member accepts writes (row 2 of
/// `t`) within `ttl + loop_wait + slack` (the lock expires after ttl, the next loop takes it;
/// `slack` is for the promotion itself on a loaded machine); the new primary's index.
pub async fn kill_leader_fails_over(
    members: &mut [Member],
    primary: usize,
    slack: Duration,
) -> usize {
    tracing::info!("--- kill -9 of the leader's agent and postmaster: another member takes over");
    let old = members[primary].name.clone();
    let start = tokio::time::Instant::now();
    kill_member(&mut members[primary]);
    let members = &*members;
    let np = wait_for(FAILOVER_TIMEOUT, "a new writable member", members, || {
        let w = writable(members);
        (w.len() == 1 && w[0] != old).then(|| w[0].clone())
    })
    .await;
    let took = start.elapsed();
    tracing::info!(?took, new = %np, "failed over");
    let bound = Duration::from_secs(u64::from(TTL + LOOP_WAIT)) + slack;
    assert!(
        took <= bound,
        "failover took {took:?} (bound {bound:?})\n{}",
        logs(members)
    );
    let i = index(members, &np);
    let (h, s) = (&members[i].host, &members[i].spec);
    sql(h, h, s, "insert into t values (2)").expect("the new primary accepts writes");
    i
}

/// The killed member, restarted with `kubeconfig`, rejoins as a replica that has the new
/// primary's write (row 2 of `t`).
pub async fn rejoins(members: &mut [Member], old: usize, kubeconfig: &Path) {
    tracing::info!("--- the old member, restarted, rejoins as a replica of the new primary");
    restart_member(&mut members[old], kubeconfig);
    let m = &members[old];
    wait_for(
        FORM_TIMEOUT,
        "old primary replicates the new write",
        members,
        || {
            (sql(&m.host, &m.host, &m.spec, "select count(*) from t").as_deref() == Some("2")
                && sql(&m.host, &m.host, &m.spec, "select pg_is_in_recovery()").as_deref()
                    == Some("t"))
            .then_some(())
        },
    )
    .await;
}

/// `POST /switchover` on `leader`'s REST API to `candidate`: the answer once accepted (200).
pub fn rest_switchover(leader: &Member, candidate: &Member) -> Option<String> {
    let body = format!(
        r#"{{"leader":"{}","candidate":"{}"}}"#,
        leader.name, candidate.name
    );
    let (code, text) = rest(leader, "POST", "/switchover", Some(&body), None)?;
    (code == 200).then_some(text)
}

/// A planned switchover from `leader` to a replica, asked by `request` (retried until it
/// answers, for up to a minute): the answer names the candidate, which becomes the only
/// writable member and still is three loops later (no cascade); the candidate's index.
pub async fn switches_over(
    members: &[Member],
    leader: usize,
    mut request: impl FnMut(&Member, &Member) -> Option<String>,
) -> usize {
    tracing::info!("--- planned switchover to a named replica; it stays the leader");
    let (leader, candidate) = (
        &members[leader],
        members
            .iter()
            .find(|m| m.name != members[leader].name)
            .expect("a replica"),
    );
    let answer = wait_for(
        SWITCHOVER_ACCEPTED,
        "the switchover is accepted",
        members,
        || request(leader, candidate),
    )
    .await;
    assert!(
        answer.contains(&format!(
            "Successfully switched over to \"{}\"",
            candidate.name
        )),
        "{answer}"
    );
    tracing::info!(%answer, leader = %leader.name, candidate = %candidate.name, "switchover answered");
    let name = vec![candidate.name.clone()];
    wait_for(
        Duration::from_secs(30),
        "the candidate is the only writable member",
        members,
        || (writable(members) == name).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(u64::from(3 * LOOP_WAIT))).await;
    assert_eq!(
        writable(members),
        name,
        "the switchover must not cascade\n{}",
        logs(members)
    );
    index(members, &candidate.name)
}

// === patronictl ===

/// How `patronictl` (Python Patroni's or ours) finds a cluster from a member's host: its
/// configuration file's text and, on Kubernetes, the kubeconfig.
pub struct Ctl {
    /// The configuration: `scope` and the store's section.
    pub config: String,
    /// `KUBECONFIG` for the Kubernetes store.
    pub kubeconfig: Option<PathBuf>,
}

// === impl Ctl ===

impl Ctl {
    /// Cluster `scope` in Kubernetes namespace `namespace` (the lab's `testenv` context of
    /// `kubeconfig`, which must work from inside the lab).
    pub fn kubernetes(scope: &str, namespace: &str, use_endpoints: bool, kubeconfig: &Path) -> Ctl {
        Ctl {
            config: format!(
                "scope: {scope}\nkubernetes:\n  namespace: {namespace}\n  labels:\n    application: patroni\n  scope_label: cluster-name\n  use_endpoints: {use_endpoints}\n  context: testenv\n"
            ),
            kubeconfig: Some(kubeconfig.to_path_buf()),
        }
    }

    /// Cluster `scope` on the etcd at `endpoint` (`host:port`).
    pub fn etcd3(scope: &str, endpoint: &str) -> Ctl {
        Ctl {
            config: format!("scope: {scope}\netcd3:\n  hosts: {endpoint}\n"),
            kubeconfig: None,
        }
    }

    /// Cluster `scope` on the ZooKeeper at `hosts` (`host:port`).
    pub fn zookeeper(scope: &str, hosts: &str) -> Ctl {
        Ctl {
            config: format!("scope: {scope}\nzookeeper:\n  hosts: ['{hosts}']\n"),
            kubeconfig: None,
        }
    }

    /// `program -c FILE` run on `on`'s host, FILE (next to `on`'s configuration) holding
    /// [`config`](Self::config).
    pub fn command(&self, program: &Path, on: &Member) -> std::process::Command {
        let cfg = on.config.with_file_name("patronictl.yml");
        std::fs::write(&cfg, &self.config).expect("write patronictl's configuration");
        let mut cmd = on.host.command(program);
        if let Some(kubeconfig) = &self.kubeconfig {
            cmd.env("KUBECONFIG", kubeconfig);
        }
        cmd.arg("-c").arg(cfg);
        cmd
    }
}

/// The leaders' names and how many members stream, as `patronictl list -f json` shows.
pub fn leader_and_streaming(rows: &[serde_json::Value]) -> (Vec<String>, usize) {
    let leaders = rows
        .iter()
        .filter(|r| r["Role"] == "Leader")
        .filter_map(|r| r["Member"].as_str().map(String::from))
        .collect();
    let streaming = rows.iter().filter(|r| r["State"] == "streaming").count();
    (leaders, streaming)
}

/// `program list -f json` (Python Patroni's `patronictl` or ours), run on `members[on]`'s
/// host, shows `members[on]` as the leader and two streaming replicas (within 30 s); fails
/// with its last output.
pub async fn patronictl_lists(program: &Path, ctl: &Ctl, members: &[Member], on: usize) {
    tracing::info!(program = %program.display(), "--- patronictl list reads the cluster");
    let leader = members[on].name.clone();
    let mut last = String::new();
    let listed = patroni_testlab::wait_until(
        LIST_TIMEOUT,
        format!("{} list: our leader and two streaming", program.display()),
        || {
            let out = ctl
                .command(program, &members[on])
                .args(["list", "-f", "json"])
                .output();
            let found = out.as_ref().ok().and_then(|o| {
                let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).ok()?;
                (leader_and_streaming(&rows) == (vec![leader.clone()], 2)).then_some(())
            });
            last = match out {
                Ok(o) => format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => e.to_string(),
            };
            async move { found }
        },
    )
    .await;
    assert!(listed.is_ok(), "{listed:?}: {last}\n{}", logs(members));
}

// === a frozen store ===

/// Turns `failsafe_mode` on live through `members[primary]` (`PATCH /config`) and waits
/// until its `GET /failsafe` lists every member at its REST address.
pub async fn failsafe_on(members: &[Member], primary: usize) {
    tracing::info!("--- failsafe_mode on: every member in /failsafe");
    patch_config(&members[primary], r#"{"failsafe_mode": true}"#);
    wait_for(
        Duration::from_secs(30),
        "GET /failsafe lists every member",
        members,
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

/// Turns `failsafe_mode` off live through `members[primary]` and gives every agent two
/// loops to apply it.
pub async fn failsafe_off(members: &[Member], primary: usize) {
    tracing::info!("--- failsafe_mode off");
    patch_config(&members[primary], r#"{"failsafe_mode": false}"#);
    wait_for(
        Duration::from_secs(30),
        "failsafe_mode off in GET /config",
        members,
        || {
            let (_, doc) = get_json(&members[primary], "/config")?;
            (doc["failsafe_mode"] == false).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(u64::from(LOOP_WAIT) * 2)).await;
}

/// With the store frozen by `freeze` (thawed when its guard drops) for `outage`, failsafe
/// mode keeps `members[primary]` the only writable member: every second it takes a write
/// (table `t`) and `each(elapsed)` runs; the number of writes acknowledged.
pub async fn primary_keeps_writes_while_frozen<G>(
    members: &[Member],
    primary: usize,
    outage: Duration,
    freeze: impl FnOnce() -> G,
    mut each: impl FnMut(Duration),
) -> usize {
    tracing::info!(
        ?outage,
        "--- the store frozen: the primary keeps taking writes"
    );
    let old = std::slice::from_ref(&members[primary].name);
    let frozen = freeze();
    let start = Instant::now();
    let mut writes = 0;
    while start.elapsed() < outage {
        assert_eq!(
            writable(members),
            old,
            "{:?} into the outage only the primary accepts writes\n{}",
            start.elapsed(),
            logs(members)
        );
        let (h, s) = (&members[primary].host, &members[primary].spec);
        sql(h, h, s, &format!("insert into t values ({writes})"))
            .unwrap_or_else(|| panic!("{:?}: a write failed\n{}", start.elapsed(), logs(members)));
        writes += 1;
        each(start.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(frozen);
    tracing::info!(writes, "writes acknowledged through the outage");
    writes
}

/// Checks every second until `until` that no member accepts writes.
pub async fn nobody_writable_until(members: &[Member], until: Instant) {
    while Instant::now() < until {
        assert_eq!(
            writable(members),
            Vec::<String>::new(),
            "nobody promotes while the store is away\n{}",
            logs(members)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// With the store frozen by `freeze` (thawed when its guard drops) for `outage`, without
/// failsafe mode: the primary demotes within `demote_within` and nobody promotes until the
/// store is back.
pub async fn primary_demotes_while_frozen<G>(
    members: &[Member],
    outage: Duration,
    demote_within: Duration,
    freeze: impl FnOnce() -> G,
) {
    tracing::info!(
        ?outage,
        "--- the store frozen: the primary demotes, nobody promotes"
    );
    let frozen = freeze();
    let start = Instant::now();
    wait_for(demote_within, "the primary demoted", members, || {
        writable(members).is_empty().then_some(())
    })
    .await;
    tracing::info!(after = ?start.elapsed(), "the primary demoted without failsafe");
    nobody_writable_until(members, start + outage).await;
    drop(frozen);
}
