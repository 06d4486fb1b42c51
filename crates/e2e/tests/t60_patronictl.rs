//! Our `patronictl` end to end, against a 3-member cluster of our agent on the lab (real
//! kube-apiserver, PostgreSQL 15 on network-namespace hosts), in both Kubernetes modes.
//! Python Patroni's `patronictl` is the referee: what ours changes, theirs must see.
//!
//! Every step is recorded and the test fails at the end listing each failed step, so one run
//! shows the state of every command (the REST endpoints some of them need may lag behind).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::{Host, Lab};
use serde_json::Value;

const SCOPE: &str = "ctl";

/// Runs our patronictl on `host` with a member's configuration and kubeconfig.
struct Ours<'a> {
    host: &'a Host,
    config: &'a Path,
    kubeconfig: &'a Path,
}

impl Ours<'_> {
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        self.run_env(args, stdin, &[])
    }

    fn run_env(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        use std::io::Write;
        let mut child = self
            .host
            .command(ctl_binary())
            .envs(env.iter().copied())
            .env("KUBECONFIG", self.kubeconfig)
            .env("PGPASSWORD", "lab-superuser-secret")
            .arg("-c")
            .arg(self.config)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn patronictl");
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(stdin.as_bytes());
        }
        child.wait_with_output().expect("patronictl output")
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Step results: every failed check, with what was seen.
#[derive(Default)]
struct Steps {
    failed: Vec<String>,
}

impl Steps {
    fn check(&mut self, step: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            tracing::info!("ok: {step}");
        } else {
            let d = detail();
            tracing::error!("FAILED: {step}\n{d}");
            self.failed.push(format!("{step}\n{d}"));
        }
    }
}

/// `(Member, Role, State)` of each row of `list -f json`.
fn roles(json: &[u8]) -> Option<Vec<(String, String, String)>> {
    let rows: Vec<Value> = serde_json::from_slice(json).ok()?;
    let mut v: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("Member"), s("Role"), s("State"))
        })
        .collect();
    v.sort();
    Some(v)
}

/// Waits until Python's patronictl shows `leader` as Leader and every other member streaming.
async fn python_sees_leader(
    lab: &Lab,
    dir: &Path,
    ns: &str,
    use_endpoints: bool,
    leader: &str,
    members: &[Member],
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(out) = patronictl(lab, dir, ns, SCOPE, use_endpoints)
            .args(["list", "-f", "json"])
            .output()
            && let Some(rows) = roles(&out.stdout)
        {
            let leaders: Vec<&str> = rows
                .iter()
                .filter(|r| r.1 == "Leader")
                .map(|r| r.0.as_str())
                .collect();
            let streaming = rows.iter().filter(|r| r.2 == "streaming").count();
            if leaders == [leader] && streaming == members.len() - 1 {
                return true;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn patronictl_commands(use_endpoints: bool) {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab
        .namespace(if use_endpoints { "t60-ep" } else { "t60-cm" })
        .await
        .expect("namespace");
    tracing::info!("--- a 3-member cluster of our agent");
    let (mut members, kubeconfig) = start_cluster(lab, &ns, SCOPE, use_endpoints, 3, |_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let first = wait_for(FORM_TIMEOUT, "one writable member", &members, || {
        let w = writable(&members);
        (w.len() == 1).then(|| w[0].clone())
    })
    .await;
    assert!(
        python_sees_leader(
            lab,
            dir.path(),
            &ns.name,
            use_endpoints,
            &first,
            &members,
            FORM_TIMEOUT
        )
        .await,
        "Python patronictl: {first} leader, two streaming\n{}",
        logs(&members)
    );
    let ours = Ours {
        host: &members[0].host,
        config: &members[0].config,
        kubeconfig: &kubeconfig,
    };
    let python = |args: &[&str]| {
        patronictl(lab, dir.path(), &ns.name, SCOPE, use_endpoints)
            .args(args)
            .output()
            .expect("run Python patronictl")
    };
    let mut steps = Steps::default();
    let python_here = |args: &[&str]| {
        members[0]
            .host
            .command(venv().join("bin/patronictl"))
            .env("KUBECONFIG", &kubeconfig)
            .arg("-c")
            .arg(&members[0].config)
            .args(args)
            .output()
            .expect("run Python patronictl on a member host")
    };
    // The same text from ours and Python's (a few tries: LSNs move while replicas stream).
    let same_text = |args: &[&str]| {
        let mut last = String::new();
        for _ in 0..5 {
            let (o, p) = (ours.run(args, ""), python_here(args));
            if o.status.success() && stdout(&o) == stdout(&p) {
                return (true, String::new());
            }
            last = format!("ours: {}\nPython: {}", text(&o), text(&p));
            std::thread::sleep(Duration::from_millis(300));
        }
        (false, last)
    };
    {
        tracing::info!("--- list: the same members, roles and states as Python's");
        let o = ours.run(&["list", "-f", "json"], "");
        let p = python(&["list", "-f", "json"]);
        steps.check(
            "list -f json equals Python's",
            o.status.success()
                && roles(&o.stdout).is_some()
                && roles(&o.stdout) == roles(&p.stdout),
            || format!("ours: {}\nPython: {}", text(&o), text(&p)),
        );
        let o = ours.run(&["list"], "");
        let out = stdout(&o);
        steps.check(
            "list (pretty) has the title border and every member",
            o.status.success()
                && out.starts_with(&format!("+ Cluster: {SCOPE} ("))
                && members
                    .iter()
                    .all(|m| out.contains(&format!("| {} ", m.name))),
            || text(&o),
        );
        let o = ours.run(&["topology"], "");
        let first_row = stdout(&o).lines().nth(3).unwrap_or_default().to_string();
        steps.check(
            "topology starts with the leader",
            o.status.success() && first_row.starts_with(&format!("| {first} ")),
            || text(&o),
        );
    }
    {
        tracing::info!("--- show-config, history, dsn, query, version");
        let o = ours.run(&["show-config"], "");
        steps.check(
            "show-config prints the dynamic configuration",
            o.status.success() && stdout(&o).contains("loop_wait: 2\n"),
            || text(&o),
        );
        let o = ours.run(&["history", "-f", "json"], "");
        steps.check("history -f json", o.status.success(), || text(&o));
        let ip = members
            .iter()
            .find(|m| m.name == first)
            .map(|m| m.host.ip().to_string())
            .unwrap_or_default();
        let o = ours.run(&["dsn"], "");
        steps.check(
            "dsn names the leader",
            stdout(&o) == format!("host={ip} port=5432\n"),
            || text(&o),
        );
        let o = ours.run(&["query", "-U", "postgres", "-c", "select 1 as one"], "");
        steps.check("query -c 'select 1'", stdout(&o) == "one\n1\n", || text(&o));
        let o = ours.run(&["version", SCOPE], "");
        let p = members[0]
            .host
            .command(venv().join("bin/patronictl"))
            .env("KUBECONFIG", &kubeconfig)
            .arg("-c")
            .arg(&members[0].config)
            .args(["version", SCOPE])
            .output()
            .expect("run Python patronictl on a member host");
        let tail = |o: &Output| {
            stdout(o)
                .lines()
                .skip(1)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        steps.check(
            "version CLUSTER answers like Python's, one line per member",
            o.status.success()
                && tail(&o) == tail(&p)
                && members.iter().all(|m| {
                    tail(&o)
                        .iter()
                        .any(|l| l.starts_with(&format!("{}: Patroni ", m.name)))
                }),
            || format!("ours: {}\nPython: {}", text(&o), text(&p)),
        );
    }
    {
        tracing::info!("--- edit-config --set/--pg --force: Python's show-config sees the change");
        let o = ours.run(
            &[
                "edit-config",
                "-s",
                "maximum_lag_on_failover=2097152",
                "-p",
                "work_mem=8MB",
                "--force",
            ],
            "",
        );
        let p = python(&["show-config"]);
        let shown = stdout(&p);
        steps.check(
            "edit-config --set/--pg",
            o.status.success()
                && stdout(&o).contains("Configuration changed")
                && shown.contains("maximum_lag_on_failover: 2097152")
                && shown.contains("work_mem: 8MB"),
            || format!("ours: {}\nPython show-config: {}", text(&o), text(&p)),
        );
        let editor = dir.path().join("editor.sh");
        std::fs::write(&editor, "#!/bin/sh\nsed -i 's/^ttl: .*/ttl: 25/' \"$1\"\n")
            .expect("write editor");
        std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod editor");
        let o = ours.run_env(
            &["edit-config"],
            "y\n",
            &[("EDITOR", editor.to_str().unwrap_or_default())],
        );
        let p = python(&["show-config"]);
        steps.check(
            "edit-config with $EDITOR: diff, confirmation, written",
            stdout(&o).contains("-ttl: 20\n+ttl: 25\n")
                && stdout(&o).contains("Apply these changes? [y/N]: Configuration changed")
                && stdout(&p).contains("ttl: 25\n"),
            || format!("ours: {}\nPython show-config: {}", text(&o), text(&p)),
        );
        let o = ours.run(
            &[
                "edit-config",
                "-s",
                "maximum_lag_on_failover=2097152",
                "--force",
            ],
            "",
        );
        steps.check(
            "edit-config without a change says so",
            stdout(&o).contains("Not changed"),
            || text(&o),
        );
    }
    let mut leader = first.clone();
    {
        tracing::info!("--- the same text as Python's patronictl");
        for args in [
            &["list"][..],
            &["list", "-e"],
            &["list", "-f", "tsv"],
            &["list", "-f", "yaml"],
            &["topology"],
            &["show-config"],
            &["history"],
            &["dsn", "-r", "replica"],
        ] {
            let (ok, detail) = same_text(args);
            steps.check(
                &format!("{args:?} prints exactly what Python prints"),
                ok,
                || detail,
            );
        }
    }
    {
        tracing::info!("--- switchover --candidate X --force; failover --candidate Y --force");
        let target = members
            .iter()
            .map(|m| m.name.clone())
            .find(|n| *n != leader)
            .unwrap_or_default();
        let o = ours.run(&["switchover", "--candidate", &target, "--force"], "");
        let seen = python_sees_leader(
            lab,
            dir.path(),
            &ns.name,
            use_endpoints,
            &target,
            &members,
            Duration::from_secs(90),
        )
        .await;
        steps.check(
            "switchover: Python's list shows the candidate as Leader",
            o.status.success() && seen,
            || text(&o),
        );
        if seen {
            leader = target;
        }
        let target = members
            .iter()
            .map(|m| m.name.clone())
            .find(|n| *n != leader)
            .unwrap_or_default();
        let o = ours.run(&["failover", "--candidate", &target, "--force"], "");
        let seen = python_sees_leader(
            lab,
            dir.path(),
            &ns.name,
            use_endpoints,
            &target,
            &members,
            Duration::from_secs(90),
        )
        .await;
        steps.check(
            "failover: Python's list shows the candidate as Leader",
            o.status.success() && seen,
            || text(&o),
        );
        if seen {
            leader = target;
        }
        let target = members
            .iter()
            .map(|m| m.name.clone())
            .find(|n| *n != leader)
            .unwrap_or_default();
        let o = ours.run(&["switchover"], &format!("\n{target}\n\ny\n"));
        let seen = python_sees_leader(
            lab,
            dir.path(),
            &ns.name,
            use_endpoints,
            &target,
            &members,
            Duration::from_secs(90),
        )
        .await;
        steps.check(
            "switchover answering the prompts (Primary, Candidate, When, confirm)",
            o.status.success()
                && stdout(&o).contains(&format!("Are you sure you want to switchover cluster {SCOPE}, demoting current leader {leader}? [y/N]: "))
                && seen,
            || text(&o),
        );
        if seen {
            leader = target;
        }
        let o = ours.run(&["history"], "");
        steps.check(
            "history lists the new timelines",
            o.status.success() && stdout(&o).lines().count() >= 5,
            || text(&o),
        );
    }
    {
        tracing::info!("--- pause --wait / resume --wait");
        let o = ours.run(&["pause", "--wait"], "");
        let p = python(&["list"]);
        steps.check(
            "pause --wait",
            stdout(&o).contains("Success: cluster management is paused")
                && stdout(&p).contains("Maintenance mode: on"),
            || format!("ours: {}\nPython list: {}", text(&o), text(&p)),
        );
        let o = ours.run(&["pause"], "");
        steps.check(
            "pause when paused is an error",
            o.status.code() == Some(1)
                && String::from_utf8_lossy(&o.stderr).contains("Error: Cluster is already paused"),
            || text(&o),
        );
        let o = ours.run(&["resume", "--wait"], "");
        let p = python(&["list"]);
        steps.check(
            "resume --wait",
            stdout(&o).contains("Success: cluster management is resumed")
                && !stdout(&p).contains("Maintenance mode: on"),
            || format!("ours: {}\nPython list: {}", text(&o), text(&p)),
        );
    }
    let replica = members
        .iter()
        .map(|m| m.name.clone())
        .find(|n| *n != leader)
        .unwrap_or_default();
    {
        tracing::info!("--- reload, restart, reinit");
        let o = ours.run(&["reload", SCOPE, "--force"], "");
        let out = stdout(&o);
        steps.check(
            "reload --force",
            o.status.success()
                && members.iter().all(|m| {
                    out.contains(&format!("Reload request received for member {}", m.name))
                        || out.contains(&format!("No changes to apply on member {}", m.name))
                }),
            || text(&o),
        );
        let o = ours.run(&["restart", SCOPE, &replica, "--force"], "");
        steps.check(
            "restart --force of a replica",
            stdout(&o).contains(&format!("Success: restart on member {replica}")),
            || text(&o),
        );
        let o = ours.run(&["reinit", SCOPE, &replica, "--force", "--wait"], "");
        steps.check(
            "reinit --force --wait of a replica",
            stdout(&o).contains(&format!("Success: reinitialize for member {replica}"))
                && stdout(&o).contains(&format!("Reinitialize is completed on: {replica}")),
            || text(&o),
        );
        let o = ours.run(&["reinit", SCOPE, &leader, "--force"], "");
        steps.check(
            "reinit of the leader is refused",
            o.status.code() == Some(1)
                && String::from_utf8_lossy(&o.stderr)
                    .contains("Error: No replica among provided members"),
            || text(&o),
        );
    }
    {
        tracing::info!("--- remove a scratch cluster");
        let scratch = "scratch";
        let dcs = common::dcs(
            lab,
            scratch,
            "s0",
            kubernetes_config(&ns.name, use_endpoints),
            Duration::from_secs(30),
        )
        .await;
        let _ = dcs.get_cluster().await;
        let wrote = dcs.initialize("12345").await.unwrap_or(false)
            && dcs
                .set_config_value("{\"ttl\":30}", None)
                .await
                .unwrap_or(false);
        drop(dcs);
        let o = ours.run(&["remove", scratch], "scratch\nYes I am aware\n");
        let p = python(&["show-config", scratch]);
        let gone = patronictl(lab, dir.path(), &ns.name, scratch, use_endpoints)
            .args(["list", "-f", "json"])
            .output()
            .map(|p| String::from_utf8_lossy(&p.stdout).trim() == "[]")
            .unwrap_or(false);
        steps.check(
            "remove deletes the scratch cluster",
            wrote && o.status.success() && stdout(&p).trim().is_empty() && gone,
            || {
                format!(
                    "wrote: {wrote}\nours: {}\nPython show-config: {}",
                    text(&o),
                    text(&p)
                )
            },
        );
        let o = ours.run(&["remove", SCOPE], "ctl\nno\n");
        steps.check(
            "remove refuses without the exact phrase",
            o.status.code() == Some(1)
                && String::from_utf8_lossy(&o.stderr).contains("You did not exactly type"),
            || text(&o),
        );
    }
    {
        tracing::info!("--- errors");
        let err = |o: &Output, code: i32, msg: &str| {
            o.status.code() == Some(code) && String::from_utf8_lossy(&o.stderr).contains(msg)
        };
        let o = ours.run(&["dsn", "-m", "nosuch"], "");
        steps.check(
            "unknown member",
            err(&o, 1, "Error: Can not find a suitable member"),
            || text(&o),
        );
        let o = ours.run(&["failover", "--candidate", "nosuch", "--force"], "");
        steps.check(
            "failover to an unknown member",
            err(
                &o,
                1,
                "Error: Member nosuch does not exist in cluster ctl or is tagged as nofailover",
            ),
            || text(&o),
        );
        let o = ours.run(&["failover", "--force"], "");
        steps.check(
            "failover without candidate",
            err(
                &o,
                1,
                "Error: Failover could be performed only to a specific candidate",
            ),
            || text(&o),
        );
        let o = ours.run(&["-d", "etcd://127.0.0.1:2379", "list"], "");
        steps.check(
            "-d with another DCS",
            err(&o, 1, "supports only kubernetes"),
            || text(&o),
        );
        let o = members[0]
            .host
            .command(ctl_binary())
            .args(["-c", "/nonexistent/patronictl.yaml", "list"])
            .output()
            .expect("run");
        steps.check(
            "unreadable config file",
            err(&o, 1, "Error: Provided config file /nonexistent/patronictl.yaml not existing or no read rights"),
            || text(&o),
        );
        let o = ours.run(&["restart"], "");
        steps.check("usage errors exit 2", o.status.code() == Some(2), || {
            text(&o)
        });
    }
    stop_all(&mut members);
    assert!(
        steps.failed.is_empty(),
        "{} step(s) failed:\n\n{}",
        steps.failed.len(),
        steps.failed.join("\n\n")
    );
}

/// Every patronictl command works on a ConfigMaps-mode cluster of our agent.
#[tokio::test]
async fn patronictl_commands_work_in_configmaps_mode() {
    patronictl_commands(false).await;
}

/// Every patronictl command works on an Endpoints-mode cluster of our agent.
#[tokio::test]
async fn patronictl_commands_work_in_endpoints_mode() {
    patronictl_commands(true).await;
}
