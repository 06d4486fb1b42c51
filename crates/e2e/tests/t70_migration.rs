//! Migrating a running cluster from Python Patroni to this agent, member by
//! member: three members started with the real Patroni 4.1.5 daemon (PyPI)
//! form a cluster; each replica in turn has its Python daemon stopped with
//! SIGTERM and our `patroni` started on the same host with the same
//! configuration file and data directory; the Python leader then hands the
//! leadership to a migrated member with Patroni's own `patronictl switchover`,
//! and is migrated last. At the end every member runs our agent, a switchover
//! through our REST API works, every write is on every member and Patroni's
//! `patronictl list` shows a consistent cluster. A checker polling every
//! member throughout never sees two writable members.
//!
//! With `synchronous_mode: true` (issue #16) the Python and our members share
//! one `/sync`: at every step (all Python, each replica migrated, after the
//! switchover to our member, all ours) every member's `GET /cluster` and
//! Patroni's `patronictl list` name the same synchronous standby, the
//! primary's PostgreSQL lists it in `synchronous_standby_names` and reports
//! it `sync`, and it confirms a commit. Switchovers then go to that standby,
//! as Patroni allows no other candidate in synchronous mode.

mod common;
#[path = "t70_migration/sync.rs"]
mod sync;

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::cluster::{FORM_TIMEOUT, LOOP_WAIT, RETRY_TIMEOUT, TTL, sql};
use common::*;
use patroni_testlab::{AgentSpec, Host, Lab, PG_USER, chown_to_pg_user};
use serde_json::Value;
use sync::{acknowledged_by_sync_standby, sync_agreed};

/// How long a daemon gets to stop PostgreSQL and exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// One member: its host, configuration and whichever daemon runs it.
struct Node {
    name: String,
    host: Host,
    spec: AgentSpec,
    config: PathBuf,
    log: PathBuf,
    /// The running daemon (Python Patroni or ours), killed on drop.
    daemon: Option<Child>,
    /// Whether `daemon` is Python Patroni.
    python: bool,
    _dir: tempfile::TempDir,
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

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A virtualenv with Patroni 4.1.5 that the postgres OS user can run.
///
/// The suite's venv lives under root's home, which other users cannot
/// traverse (and its interpreter may be a pyenv build under /root too). So
/// this test keeps its own copy, built once per requirements file from the
/// system interpreter, in `/var/tmp/patroni-rs-venv-<hash>`: owned by root,
/// readable and executable by everyone, writable by root only. It is built
/// under a temporary name and renamed into place, so its console scripts'
/// shebangs are stale: run it as `bin/python -m patroni`.
fn daemon_venv() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let req_path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/py/requirements.txt"));
        let req = std::fs::read(req_path).expect("read requirements.txt");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        req.hash(&mut h);
        let dir = PathBuf::from(format!("/var/tmp/patroni-rs-venv-{:016x}", h.finish()));
        let trusted = |d: &Path| {
            std::fs::symlink_metadata(d)
                .map(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0)
                .unwrap_or(false)
        };
        let ready = |d: &Path| {
            trusted(d) && std::fs::read(d.join(".requirements")).ok() == Some(req.clone())
        };
        if !ready(&dir) {
            let tmp = tempfile::Builder::new()
                .prefix("patroni-rs-venv-build-")
                .tempdir_in("/var/tmp")
                .expect("tempdir for the venv")
                .keep();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                .expect("chmod venv");
            let python = if Path::new("/usr/bin/python3").exists() {
                "/usr/bin/python3"
            } else {
                "python3"
            };
            run_ok(
                &format!("{python} -m venv (Debian: apt-get install python3-venv)"),
                Command::new(python).args(["-m", "venv"]).arg(&tmp),
            );
            run_ok(
                "pip install -r requirements.txt",
                Command::new(tmp.join("bin/python"))
                    .args(["-m", "pip", "install", "-q", "-r"])
                    .arg(req_path),
            );
            // Readable by the postgres user whatever the umask.
            run_ok(
                "chmod the venv",
                Command::new("chmod").args(["-R", "a+rX"]).arg(&tmp),
            );
            std::fs::write(tmp.join(".requirements"), &req).expect("write marker");
            if std::fs::symlink_metadata(&dir).is_ok() && !ready(&dir) {
                // Stale, half-built or not ours: replace it.
                let _ = std::fs::remove_dir_all(&dir).or_else(|_| std::fs::remove_file(&dir));
            }
            if std::fs::rename(&tmp, &dir).is_err() {
                // Another test process won the race.
                let _ = std::fs::remove_dir_all(&tmp);
            }
            assert!(ready(&dir), "venv at {} is not usable", dir.display());
        }
        run_ok(
            "the postgres user imports patroni and psycopg2 from the venv",
            Command::new("setpriv")
                .arg(format!("--reuid={PG_USER}"))
                .arg(format!("--regid={PG_USER}"))
                .args(["--init-groups", "--"])
                .arg(dir.join("bin/python"))
                .args(["-c", "import patroni.__main__, psycopg2"]),
        );
        dir
    })
    .clone()
}

/// Every member's log, the last lines of each.
fn logs(nodes: &[Node]) -> String {
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

fn daemon_kind(n: &Node) -> &'static str {
    if n.python {
        "Python Patroni"
    } else {
        "patroni-rs"
    }
}

/// Polls `check` every 500 ms; fails with every log after `timeout`.
async fn wait<T>(
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

fn q(n: &Node, query: &str) -> Option<String> {
    sql(&n.host, &n.host, &n.spec, query)
}

/// Members that accept writes right now.
fn writable(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| q(n, "select pg_is_in_recovery()").as_deref() == Some("f"))
        .map(|n| n.name.clone())
        .collect()
}

/// Starts Python Patroni (`python -m patroni CONFIG`) on `n`'s host as the
/// postgres user, the way `Host::spawn_agent` starts ours.
fn spawn_python(n: &Node, kubeconfig: &Path) -> Child {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&n.log)
        .expect("open log");
    let err = out.try_clone().expect("clone log");
    n.host
        .command_as(PG_USER, daemon_venv().join("bin/python"))
        .args(["-m", "patroni"])
        .arg(&n.config)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", n.config.parent().expect("config dir"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start Python Patroni")
}

/// SIGTERM to `n`'s daemon; waits for it to exit and for PostgreSQL to be
/// gone from the host.
async fn stop_gracefully(nodes: &mut [Node], i: usize) {
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
async fn published_stopped(ctl: &Ctl<'_>, nodes: &[Node], i: usize) {
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
fn status_doc(n: &Node) -> Option<Value> {
    let url = format!("http://{}:8008/patroni", n.host.ip());
    let out = n
        .host
        .command("curl")
        .args(["-s", "-m", "5", &url])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Patroni's own `patronictl` for the test cluster.
struct Ctl<'a> {
    lab: &'a Lab,
    dir: tempfile::TempDir,
    namespace: String,
    scope: &'a str,
    use_endpoints: bool,
}

impl Ctl<'_> {
    /// `patronictl list -f json` rows.
    fn list(&self) -> Option<Vec<Value>> {
        let out = patronictl(
            self.lab,
            self.dir.path(),
            &self.namespace,
            self.scope,
            self.use_endpoints,
        )
        .args(["list", "-f", "json"])
        .output()
        .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

/// A `patronictl list` row of a replica: `Replica`, or `Sync Standby` in
/// synchronous mode.
fn replica_row(r: &Value) -> bool {
    r["Role"] == "Replica" || r["Role"] == "Sync Standby"
}

/// Patroni's `patronictl list` shows `leader` as the only Leader (running)
/// and every other member a streaming replica, all on the leader's timeline.
fn ctl_consistent(rows: &[Value], nodes: &[Node], leader: &str) -> bool {
    let leader_tl = rows
        .iter()
        .find(|r| r["Member"] == leader)
        .map(|r| r["TL"].clone());
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
async fn rows_everywhere(nodes: &[Node], v: u32) {
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
async fn step_done(
    setup: Setup,
    ctl: &Ctl<'_>,
    nodes: &[Node],
    primary: usize,
    v: u32,
) -> Option<usize> {
    let sync = if setup.synchronous {
        let s = sync_agreed(ctl, nodes, primary).await;
        acknowledged_by_sync_standby(nodes, primary, s, v);
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
async fn rejoined_as_replica(ctl: &Ctl<'_>, nodes: &[Node], i: usize) {
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
async fn migrate(ctl: &Ctl<'_>, nodes: &mut [Node], i: usize, kubeconfig: &Path) {
    assert!(nodes[i].python, "{} already migrated", nodes[i].name);
    tracing::info!(member = %nodes[i].name, "--- stop Python Patroni (SIGTERM), start patroni-rs");
    stop_gracefully(nodes, i).await;
    published_stopped(ctl, nodes, i).await;
    let n = &mut nodes[i];
    let agent = n
        .host
        .spawn_agent(&agent_binary(), &n.config, kubeconfig, &n.log)
        .expect("start our agent");
    n.daemon = Some(agent);
    n.python = false;
}

/// What one migration run covers.
#[derive(Debug, Clone, Copy)]
struct Setup {
    /// Endpoints (true) or ConfigMaps mode.
    use_endpoints: bool,
    /// `synchronous_mode: true` in `bootstrap.dcs`, and every step checks
    /// that the members agree on the synchronous standby.
    synchronous: bool,
}

async fn migration(setup: Setup) {
    init_tracing();
    let Setup { use_endpoints, .. } = setup;
    let lab = Lab::shared();
    let ns = lab
        .namespace(match (use_endpoints, setup.synchronous) {
            (_, true) => "t70-sync",
            (true, false) => "t70-ep",
            (false, false) => "t70-cm",
        })
        .await
        .expect("namespace");
    let scope = "mig";
    let ctl = Ctl {
        lab,
        dir: tempfile::tempdir().expect("tempdir"),
        namespace: ns.name.clone(),
        scope,
        use_endpoints,
    };
    // Built up front: the first member must not wait for cargo or pip.
    let _ = (agent_binary(), daemon_venv());

    tracing::info!(
        "--- three member hosts with pods, each running Python Patroni 4.1.5 as postgres"
    );
    let kubeconfig = restricted_kubeconfig(lab, &ns.name, use_endpoints, true, 0).await;
    let mut nodes = Vec::new();
    for (i, host) in member_pods(lab, &ns, scope, 3)
        .await
        .into_iter()
        .enumerate()
    {
        let name = format!("m{i}");
        let mut spec = AgentSpec::new(scope, &name, &ns.name, use_endpoints);
        (spec.ttl, spec.loop_wait, spec.retry_timeout) = (TTL, LOOP_WAIT, RETRY_TIMEOUT);
        if setup.synchronous {
            spec.dcs_extra
                .insert("synchronous_mode".into(), "true".into());
        }
        let dir = tempfile::tempdir().expect("tempdir");
        chown_to_pg_user(dir.path()).expect("chown");
        let config = spec.write(host.ip(), dir.path()).expect("write config");
        let log = dir.path().join("patroni.log");
        let mut node = Node {
            name,
            host,
            spec,
            config,
            log,
            daemon: None,
            python: true,
            _dir: dir,
        };
        node.daemon = Some(spawn_python(&node, &kubeconfig));
        nodes.push(node);
    }

    let stop = Arc::new(AtomicBool::new(false));
    // Stops the checker even when the test fails half-way.
    let _stop_guard = StopOnDrop(stop.clone());
    let checker = {
        tracing::info!("--- a checker polls every member for writability throughout");
        let targets: Vec<(Host, AgentSpec, String)> = nodes
            .iter()
            .map(|n| {
                (
                    Host::attach(n.host.info().clone()),
                    n.spec.clone(),
                    n.name.clone(),
                )
            })
            .collect();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut doubles, mut polls) = (Vec::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let now: Vec<&String> = targets
                    .iter()
                    .filter(|(h, s, _)| {
                        sql(h, h, s, "select pg_is_in_recovery()").as_deref() == Some("f")
                    })
                    .map(|t| &t.2)
                    .collect();
                if now.len() > 1 {
                    doubles.push(format!("{now:?}"));
                }
                polls += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            (doubles, polls)
        })
    };

    tracing::info!("--- Python Patroni forms the cluster: one primary, two streaming replicas");
    let mut primary = {
        let p = wait(FORM_TIMEOUT, "one writable member", &nodes, || {
            let w = writable(&nodes);
            (w.len() == 1).then(|| w[0].clone())
        })
        .await;
        nodes.iter().position(|n| n.name == p).expect("member")
    };
    wait(FORM_TIMEOUT, "two replicas streaming", &nodes, || {
        (q(
            &nodes[primary],
            "select count(*) from pg_stat_replication where state = 'streaming'",
        )
        .as_deref()
            == Some("2"))
        .then_some(())
    })
    .await;
    q(&nodes[primary], "create table t(v int)").expect("create table on the primary");
    let mut sync = step_done(setup, &ctl, &nodes, primary, 1).await;
    let leader = nodes[primary].name.clone();
    wait(
        Duration::from_secs(60),
        "Python patronictl list: the leader and two streaming replicas",
        &nodes,
        || {
            let rows = ctl.list()?;
            ctl_consistent(&rows, &nodes, &leader).then_some(())
        },
    )
    .await;

    let replicas: Vec<usize> = (0..nodes.len()).filter(|&i| i != primary).collect();
    let mut v = 1;
    for &r in &replicas {
        migrate(&ctl, &mut nodes, r, &kubeconfig).await;
        rejoined_as_replica(&ctl, &nodes, r).await;
        v += 1;
        sync = step_done(setup, &ctl, &nodes, primary, v).await;
        assert_eq!(
            writable(&nodes),
            std::slice::from_ref(&leader),
            "the leader stays\n{}",
            logs(&nodes)
        );
    }

    // A careful operator does not SIGTERM the Python leader: that leaves the
    // cluster without a primary until a replica wins the race. Instead the
    // leadership moves first, with Patroni's own patronictl, to a member that
    // already runs our agent; the Python member then is a replica like the
    // others and is migrated the same way. In synchronous mode Patroni only
    // switches over to the synchronous standby (by now one of ours).
    let target = sync.unwrap_or(replicas[0]);
    {
        tracing::info!(
            from = %leader, to = %nodes[target].name,
            "--- Python patronictl switchover from the Python leader to a migrated member"
        );
        let ctl_cfg = nodes[target].config.with_file_name("patronictl.yml");
        let text = format!(
            "scope: {scope}\nkubernetes:\n  namespace: {}\n  labels:\n    application: patroni\n  use_endpoints: {use_endpoints}\n  context: testenv\n",
            ns.name
        );
        std::fs::write(&ctl_cfg, text).expect("write patronictl config");
        let candidate = nodes[target].name.clone();
        let mut last = String::new();
        let answer = wait(
            Duration::from_secs(60),
            "patronictl switchover is accepted",
            &nodes,
            || {
                let out = nodes[target]
                    .host
                    .command(venv().join("bin/patronictl"))
                    .env("KUBECONFIG", &kubeconfig)
                    .arg("-c")
                    .arg(&ctl_cfg)
                    .args([
                        "switchover",
                        "--leader",
                        &leader,
                        "--candidate",
                        &candidate,
                        "--force",
                    ])
                    .output()
                    .ok()?;
                last = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let ok = last.contains("Successfully switched over");
                if !ok {
                    tracing::info!(answer = %last, "patronictl switchover not accepted yet");
                }
                ok.then(|| last.clone())
            },
        )
        .await;
        tracing::info!(%answer, "patronictl switchover answered");
        assert!(
            answer.contains(&format!("Successfully switched over to \"{candidate}\"")),
            "{answer}"
        );
        let want = [candidate.clone()];
        wait(
            Duration::from_secs(60),
            "the migrated member is the only writable one",
            &nodes,
            || (writable(&nodes) == want).then_some(()),
        )
        .await;
        let old = primary;
        primary = target;
        rejoined_as_replica(&ctl, &nodes, old).await;
        v += 1;
        step_done(setup, &ctl, &nodes, primary, v).await;
        // The last Python member, now a replica, is migrated like the others.
        migrate(&ctl, &mut nodes, old, &kubeconfig).await;
        rejoined_as_replica(&ctl, &nodes, old).await;
        v += 1;
        sync = step_done(setup, &ctl, &nodes, primary, v).await;
    }

    tracing::info!("--- every member runs patroni-rs");
    let ours = agent_binary();
    for n in &nodes {
        assert!(!n.python);
        let pid = n.daemon.as_ref().expect("running daemon").id();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe of the daemon");
        assert_eq!(exe, ours, "{} runs {}", n.name, exe.display());
    }

    {
        let candidate = sync.map_or(leader.clone(), |s| nodes[s].name.clone());
        let from = nodes[primary].name.clone();
        tracing::info!(%from, to = %candidate, "--- switchover through our REST API");
        let url = format!("http://{}:8008/switchover", nodes[primary].host.ip());
        let body = format!(r#"{{"leader":"{from}","candidate":"{candidate}"}}"#);
        let answer = wait(
            Duration::from_secs(60),
            "POST /switchover is accepted",
            &nodes,
            || {
                let out = nodes[primary]
                    .host
                    .command("curl")
                    .args(["-s", "-m", "60", "-XPOST", &url, "-d", &body])
                    .output()
                    .ok()?;
                let a = String::from_utf8_lossy(&out.stdout).to_string();
                (!a.contains("no good candidates") && !a.is_empty()).then_some(a)
            },
        )
        .await;
        assert!(
            answer.contains(&format!("Successfully switched over to \"{candidate}\"")),
            "{answer}\n{}",
            logs(&nodes)
        );
        let want = [candidate.clone()];
        wait(
            Duration::from_secs(60),
            "the candidate is the only writable member",
            &nodes,
            || (writable(&nodes) == want).then_some(()),
        )
        .await;
        primary = nodes
            .iter()
            .position(|n| n.name == candidate)
            .expect("member");
        let old = nodes.iter().position(|n| n.name == from).expect("member");
        rejoined_as_replica(&ctl, &nodes, old).await;
        v += 1;
        step_done(setup, &ctl, &nodes, primary, v).await;
    }

    {
        tracing::info!("--- our leader publishes slots and retain_slots as Patroni's does");
        let leader_object = if use_endpoints {
            scope.to_string()
        } else {
            format!("{scope}-leader")
        };
        let mut names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        names.sort();
        let published = patroni_testlab::wait_until(
            Duration::from_secs(30),
            "slots and retain_slots on the leader object".into(),
            || async {
                let annotations = if use_endpoints {
                    let api: kube::Api<k8s_openapi::api::core::v1::Endpoints> =
                        kube::Api::namespaced(ns.client.clone(), &ns.name);
                    api.get(&leader_object).await.ok()?.metadata.annotations?
                } else {
                    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                        kube::Api::namespaced(ns.client.clone(), &ns.name);
                    api.get(&leader_object).await.ok()?.metadata.annotations?
                };
                let retain: Vec<String> =
                    serde_json::from_str(annotations.get("retain_slots")?).ok()?;
                let slots: serde_json::Map<String, Value> =
                    serde_json::from_str(annotations.get("slots")?).ok()?;
                let mut keys: Vec<String> = slots.keys().cloned().collect();
                keys.sort();
                (retain == names && keys == names).then_some(())
            },
        )
        .await;
        assert!(published.is_ok(), "{published:?}\n{}", logs(&nodes));
    }

    tracing::info!("--- every write on every member; patronictl list is consistent");
    let all: String = (1..=v).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    for n in &nodes {
        assert_eq!(
            q(n, "select string_agg(v::text, ',' order by v) from t").as_deref(),
            Some(all.as_str()),
            "rows on {}",
            n.name
        );
    }
    let final_leader = nodes[primary].name.clone();
    wait(
        Duration::from_secs(60),
        "patronictl list: our leader and two streaming replicas",
        &nodes,
        || {
            let rows = ctl.list()?;
            ctl_consistent(&rows, &nodes, &final_leader).then_some(())
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    let (doubles, polls) = checker.join().expect("checker");
    tracing::info!(polls, "writability checks");
    assert!(polls > 10, "the checker ran ({polls} polls)");
    assert!(
        doubles.is_empty(),
        "two writable members at once: {doubles:?}\n{}",
        logs(&nodes)
    );
    for n in &mut nodes {
        if let Some(mut d) = n.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// ConfigMaps mode.
#[tokio::test]
async fn python_patroni_cluster_migrates_member_by_member_in_configmaps_mode() {
    migration(Setup {
        use_endpoints: false,
        synchronous: false,
    })
    .await;
}

/// Endpoints mode.
#[tokio::test]
async fn python_patroni_cluster_migrates_member_by_member_in_endpoints_mode() {
    migration(Setup {
        use_endpoints: true,
        synchronous: false,
    })
    .await;
}

/// ConfigMaps mode with `synchronous_mode: true`: Python and our members
/// agree on `/sync` and the synchronous standby at every step.
#[tokio::test]
async fn python_and_our_members_agree_on_the_synchronous_standby_while_migrating() {
    migration(Setup {
        use_endpoints: false,
        synchronous: true,
    })
    .await;
}
