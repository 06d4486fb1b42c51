//! Migrating a running cluster from Python Patroni to this agent, member by member: the pieces
//! the migration tests share whatever the DCS (`t70_migration` on Kubernetes,
//! `t71_etcd3_migration` on etcd v3). A member ([`Node`]) runs either daemon on one host with
//! one configuration file and data directory; [`Daemons`] starts each kind; [`migrate`] swaps
//! Python for ours (SIGTERM, wait for exit, start ours); [`Ctl`] is a `patronictl` (Patroni's or
//! ours) for the cluster; the checks wait for streaming replicas, the rows on every member,
//! a consistent `patronictl list` and, in `sync`, one agreed synchronous standby.
//!
//! Every wait fails the test with the tail of every member's log.

pub mod agree;
pub mod sync;

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use patroni_testlab::{AgentSpec, Host, PG_USER, chown_to_pg_user};

use super::scenario::WritabilityPoll;
use serde_json::Value;

use super::cluster::{FORM_TIMEOUT, sql};
use super::{python_daemon_venv, run_ok};

/// How long a daemon gets to stop PostgreSQL and exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// One member: its host, configuration and whichever daemon runs it.
pub struct Node {
    pub name: String,
    pub host: Host,
    pub spec: AgentSpec,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The running daemon (Python Patroni or ours), killed on drop.
    pub daemon: Option<Child>,
    /// Whether `daemon` is Python Patroni.
    pub python: bool,
    _dir: tempfile::TempDir,
}

// === impl Node ===

impl Node {
    /// Member `spec.name` on `host`, its configuration written to a fresh directory the
    /// postgres user owns; no daemon yet.
    pub fn new(host: Host, spec: AgentSpec) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        chown_to_pg_user(dir.path()).expect("chown");
        let config = spec.write(host.ip(), dir.path()).expect("write config");
        Node {
            name: spec.name.clone(),
            log: dir.path().join("patroni.log"),
            host,
            spec,
            config,
            daemon: None,
            python: true,
            _dir: dir,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The daemon first; dropping `host` afterwards kills what is left in
        // its namespace (PostgreSQL) before the data directory is removed.
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// How the members' daemons are started: Python Patroni from a virtualenv the postgres user
/// can run, ours from the freshly built binary, both with the same `KUBECONFIG`.
pub struct Daemons {
    /// The virtualenv holding Patroni 4.1.5 (and the DCS's extra packages).
    pub venv: PathBuf,
    /// `KUBECONFIG` of both daemons ([`super::cluster::NO_KUBECONFIG`] off Kubernetes).
    pub kubeconfig: PathBuf,
}

// === impl Daemons ===

impl Daemons {
    /// Builds (once) the virtualenv of `requirements` (files under `crates/e2e/py/`) and our
    /// agent, and checks that the postgres user can import Patroni: the first member must not
    /// wait for pip or cargo.
    pub fn new(requirements: &[&str], kubeconfig: PathBuf) -> Self {
        let venv = python_daemon_venv(requirements);
        run_ok(
            "the postgres user imports patroni and psycopg2 from the venv",
            Command::new("setpriv")
                .arg(format!("--reuid={PG_USER}"))
                .arg(format!("--regid={PG_USER}"))
                .args(["--init-groups", "--"])
                .arg(venv.join("bin/python"))
                .args(["-c", "import patroni.__main__, psycopg2"]),
        );
        let _ = super::agent_binary();
        Daemons { venv, kubeconfig }
    }

    /// Starts Python Patroni (`python -m patroni CONFIG`) on `n`'s host as the postgres user,
    /// the way `Host::spawn_agent` starts ours.
    pub fn start_python(&self, n: &mut Node) {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("open log");
        let err = out.try_clone().expect("clone log");
        let child = n
            .host
            .command_as(PG_USER, self.venv.join("bin/python"))
            .args(["-m", "patroni"])
            .arg(&n.config)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", n.config.parent().expect("config dir"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start Python Patroni");
        n.daemon = Some(child);
        n.python = true;
    }

    /// Starts our agent on `n`'s host with its configuration.
    pub fn start_ours(&self, n: &mut Node) {
        let agent = n
            .host
            .spawn_agent(&super::agent_binary(), &n.config, &self.kubeconfig, &n.log)
            .expect("start our agent");
        n.daemon = Some(agent);
        n.python = false;
    }
}

/// Every member's log, the last lines of each.
pub fn logs(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(120)..].join("\n");
            format!("--- {} ({})\n{tail}\n", n.name, daemon_kind(n))
        })
        .collect()
}

/// Which daemon runs `n`, for messages.
pub fn daemon_kind(n: &Node) -> &'static str {
    if n.python {
        "Python Patroni"
    } else {
        "patroni-rs"
    }
}

/// Polls `check` every 500 ms; fails with every log after `timeout`.
pub async fn wait<T>(
    timeout: Duration,
    what: &str,
    nodes: &[Node],
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not after {timeout:?}\n{}",
            logs(nodes)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `query` on `n`'s PostgreSQL, from its own host.
pub fn q(n: &Node, query: &str) -> Option<String> {
    sql(&n.host, &n.host, &n.spec, query)
}

/// Members that accept writes right now.
pub fn writable(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| q(n, "select pg_is_in_recovery()").as_deref() == Some("f"))
        .map(|n| n.name.clone())
        .collect()
}

/// The index of the one writable member, once there is exactly one.
pub async fn one_writable(nodes: &[Node], timeout: Duration) -> usize {
    let p = wait(timeout, "one writable member", nodes, || {
        let w = writable(nodes);
        (w.len() == 1).then(|| w[0].clone())
    })
    .await;
    nodes.iter().position(|n| n.name == p).expect("member")
}

/// Every member polled for writability every 500 ms until [`Checker::finish`] (or drop):
/// it records every moment two members accepted writes.
pub struct Checker(WritabilityPoll);

// === impl Checker ===

impl Checker {
    /// Starts polling `nodes`.
    pub fn start(nodes: &[Node]) -> Self {
        let targets = nodes
            .iter()
            .map(|n| {
                (
                    Host::attach(n.host.info().clone()),
                    n.spec.clone(),
                    n.name.clone(),
                )
            })
            .collect();
        Checker(WritabilityPoll::start(targets, Duration::from_millis(500)))
    }

    /// Stops polling; fails unless it polled more than 10 times and never saw two writable
    /// members.
    pub fn finish(self, nodes: &[Node]) {
        let seen = self.0.stop();
        tracing::info!(polls = seen.polls, "writability checks");
        assert!(seen.polls > 10, "the checker ran ({} polls)", seen.polls);
        assert!(
            seen.doubles.is_empty(),
            "two writable members at once: {:?}\n{}",
            seen.doubles,
            logs(nodes)
        );
    }
}

/// SIGTERM to `n`'s daemon; waits for it to exit and for PostgreSQL to be
/// gone from the host.
pub async fn stop_gracefully(nodes: &mut [Node], i: usize) {
    let mut child = nodes[i].daemon.take().expect("a running daemon");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not exit {STOP_TIMEOUT:?} after SIGTERM\n{}",
                nodes[i].name,
                logs(nodes)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tracing::info!(member = %nodes[i].name, ?status, "daemon exited after SIGTERM");
    let n = &nodes[i];
    wait(
        Duration::from_secs(30),
        &format!("PostgreSQL stopped on {} with its daemon", n.name),
        nodes,
        || n.host.pids().is_empty().then_some(()),
    )
    .await;
}

/// Until `n`'s new daemon publishes, the DCS shows what the old one left:
/// Python Patroni, stopping, records its member as `stopped`. A later
/// `streaming` is therefore our agent's.
async fn published_stopped(ctl: &Ctl, nodes: &[Node], i: usize) {
    let name = nodes[i].name.as_str();
    wait(
        Duration::from_secs(30),
        &format!("patronictl list shows {name} stopped"),
        nodes,
        || {
            ctl.list()?
                .iter()
                .any(|r| r["Member"] == name && r["State"] == "stopped")
                .then_some(())
        },
    )
    .await;
}

/// `GET /patroni` on `n`'s own REST API.
pub fn status_doc(n: &Node) -> Option<Value> {
    get_doc(n, "/patroni")
}

/// `GET path` on `n`'s own REST API, as JSON.
pub fn get_doc(n: &Node, path: &str) -> Option<Value> {
    let url = format!("http://{}:8008{path}", n.host.ip());
    let out = n
        .host
        .command("curl")
        .args(["-s", "-m", "5", &url])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// A `patronictl` (Patroni's or ours) for the test cluster: `program -c config …`, run on a
/// lab host or on the machine, with extra environment.
pub struct Ctl {
    /// The executable.
    pub program: PathBuf,
    /// Its configuration file (the scope and the DCS section).
    pub config: PathBuf,
    /// Extra environment (`KUBECONFIG`).
    pub env: Vec<(String, PathBuf)>,
    /// The host it runs on; the machine itself if none.
    pub on: Option<Host>,
}

// === impl Ctl ===

impl Ctl {
    /// `program -c config ARGS…`.
    pub fn command(&self) -> Command {
        let mut cmd = match &self.on {
            Some(h) => h.command(&self.program),
            None => Command::new(&self.program),
        };
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(home) = self.config.parent() {
            cmd.env("HOME", home);
        }
        cmd.arg("-c").arg(&self.config);
        cmd
    }

    /// `patronictl list -f json` rows.
    pub fn list(&self) -> Option<Vec<Value>> {
        let out = self.command().args(["list", "-f", "json"]).output().ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `patronictl switchover --leader L --candidate C --force`, retried for a minute until
    /// it says it switched over; its answer.
    pub async fn switchover(&self, nodes: &[Node], leader: &str, candidate: &str) -> String {
        let answer = wait(
            Duration::from_secs(60),
            "patronictl switchover is accepted",
            nodes,
            || {
                let out = self
                    .command()
                    .args(["switchover", "--leader", leader])
                    .args(["--candidate", candidate, "--force"])
                    .output()
                    .ok()?;
                let last = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let ok = last.contains("Successfully switched over");
                if !ok {
                    tracing::info!(answer = %last, "patronictl switchover not accepted yet");
                }
                ok.then_some(last)
            },
        )
        .await;
        tracing::info!(%answer, "patronictl switchover answered");
        assert!(
            answer.contains(&format!("Successfully switched over to \"{candidate}\"")),
            "{answer}"
        );
        answer
    }
}

/// A `patronictl list` row of a replica: `Replica`, or `Sync Standby` in
/// synchronous mode.
pub fn replica_row(r: &Value) -> bool {
    r["Role"] == "Replica" || r["Role"] == "Sync Standby"
}

/// Patroni's `patronictl list` shows `leader` as the only Leader (running)
/// and every other member a streaming replica, all on the leader's timeline.
pub fn ctl_consistent(rows: &[Value], nodes: &[Node], leader: &str) -> bool {
    let leader_tl = rows
        .iter()
        .find(|r| r["Member"] == leader)
        .map(|r| r["TL"].clone())
        .filter(Value::is_number);
    rows.len() == nodes.len()
        && rows.iter().all(|r| {
            let ok_role = if r["Member"] == leader {
                r["Role"] == "Leader" && r["State"] == "running"
            } else {
                replica_row(r) && r["State"] == "streaming"
            };
            ok_role && Some(r["TL"].clone()) == leader_tl
        })
}

/// Waits until every member has row `v`.
pub async fn rows_everywhere(nodes: &[Node], v: u32) {
    for n in nodes {
        wait(
            Duration::from_secs(60),
            &format!("row {v} on {}", n.name),
            nodes,
            || {
                (q(n, &format!("select count(*) from t where v = {v}")).as_deref() == Some("1"))
                    .then_some(())
            },
        )
        .await;
    }
}

/// The end of a step: in synchronous mode every member agrees on the
/// synchronous standby, which confirms the commit of row `v`; row `v` is then
/// on every member. The synchronous standby, if any.
pub async fn step_done(
    synchronous: bool,
    ctl: &Ctl,
    nodes: &[Node],
    primary: usize,
    v: u32,
) -> Option<usize> {
    let sync = if synchronous {
        let s = sync::sync_agreed(ctl, nodes, primary).await;
        sync::acknowledged_by_sync_standby(nodes, primary, s, v);
        Some(s)
    } else {
        q(&nodes[primary], &format!("insert into t values ({v})"))
            .unwrap_or_else(|| panic!("insert {v} on the primary\n{}", logs(nodes)));
        None
    };
    rows_everywhere(nodes, v).await;
    sync
}

/// `n` is a replica streaming from the primary, and patronictl says so.
pub async fn rejoined_as_replica(ctl: &Ctl, nodes: &[Node], i: usize) {
    let n = &nodes[i];
    wait(
        FORM_TIMEOUT,
        &format!(
            "{} streams from the primary under {}",
            n.name,
            daemon_kind(n)
        ),
        nodes,
        || {
            (q(n, "select pg_is_in_recovery()").as_deref() == Some("t")
                && q(n, "select status from pg_stat_wal_receiver").as_deref() == Some("streaming"))
            .then_some(())
        },
    )
    .await;
    wait(
        Duration::from_secs(60),
        &format!("patronictl list shows {} as a streaming replica", n.name),
        nodes,
        || {
            let rows = ctl.list()?;
            rows.iter()
                .any(|r| {
                    r["Member"] == n.name.as_str() && replica_row(r) && r["State"] == "streaming"
                })
                .then_some(())
        },
    )
    .await;
    let doc = wait(
        Duration::from_secs(30),
        &format!("{}'s REST API reports a running replica", n.name),
        nodes,
        || {
            let d = status_doc(n)?;
            (d["role"] == "replica" && d["state"] == "running").then_some(d)
        },
    )
    .await;
    tracing::info!(member = %n.name, daemon = daemon_kind(n), %doc, "GET /patroni");
}

/// Replaces `nodes[i]`'s Python daemon with our agent: SIGTERM, wait for
/// exit, start `patroni` on the same configuration and data directory.
pub async fn migrate(ctl: &Ctl, daemons: &Daemons, nodes: &mut [Node], i: usize) {
    assert!(nodes[i].python, "{} already migrated", nodes[i].name);
    tracing::info!(member = %nodes[i].name, "--- stop Python Patroni (SIGTERM), start patroni-rs");
    stop_gracefully(nodes, i).await;
    published_stopped(ctl, nodes, i).await;
    daemons.start_ours(&mut nodes[i]);
}

/// Every member runs our agent binary.
pub fn all_ours(nodes: &[Node]) {
    let ours = super::agent_binary();
    for n in nodes {
        assert!(!n.python, "{} runs Python Patroni", n.name);
        let pid = n.daemon.as_ref().expect("running daemon").id();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe of the daemon");
        assert_eq!(exe, ours, "{} runs {}", n.name, exe.display());
    }
}

/// Rows `1..=v`, in order, on every member.
pub fn every_row_everywhere(nodes: &[Node], v: u32) {
    let all: String = (1..=v).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    for n in nodes {
        assert_eq!(
            q(n, "select string_agg(v::text, ',' order by v) from t").as_deref(),
            Some(all.as_str()),
            "rows on {}",
            n.name
        );
    }
}

/// Waits until `patronictl list` shows `leader` and every other member streaming from it.
pub async fn ctl_shows(ctl: &Ctl, nodes: &[Node], leader: &str, what: &str) {
    wait(Duration::from_secs(60), what, nodes, || {
        let rows = ctl.list()?;
        ctl_consistent(&rows, nodes, leader).then_some(())
    })
    .await;
}
