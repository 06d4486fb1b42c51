//! The real `patroni` binary on three lab hosts, Kubernetes as the DCS: one member bootstraps,
//! the others clone and stream from it; when the leader's agent and postmaster are killed,
//! exactly one other member promotes and the last one follows it; the old leader, restarted,
//! rejoins as a streaming replica (crash recovery and `pg_rewind`); a switchover through the
//! REST API moves the lock back to it; SIGTERM stops the leader's agent cleanly (exit 0).

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

use patroni_testlab::{Lab, chown_to_pg_user, wait_until};

/// Cluster name.
const SCOPE: &str = "t45";
/// How long a bootstrap plus two clones may take on a slow 2-core machine.
const FORM_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a failover may take: ttl plus a few loops.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a clean shutdown may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// Roles of the members that answer, by index.
fn roles(members: &[Member]) -> Vec<Option<String>> {
    members.iter().map(Member::role).collect()
}

/// Never two primaries among the members that answer.
fn assert_at_most_one_primary(members: &[Member]) {
    let primaries: Vec<&str> = members
        .iter()
        .filter(|m| m.role().as_deref() == Some("primary"))
        .map(|m| m.name.as_str())
        .collect();
    assert!(primaries.len() <= 1, "two primaries: {primaries:?}");
}

fn kill(pid: i32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

/// Bootstrap, clone, stream; kill the leader; exactly one promotion; clean SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_form_a_cluster_and_fail_over() {
    let lab = Lab::shared();
    let root = tempfile::tempdir().expect("tempdir");
    chown_to_pg_user(root.path()).expect("chown root");
    let mut members = start_members(lab, root.path(), SCOPE, 3, |_, _| {}).await;
    let result = scenario(&mut members, &kubeconfig(root.path())).await;
    if result.is_err() || std::env::var_os("T45_PRINT_LOGS").is_some() {
        for m in &members {
            m.print_log();
        }
    }
    for m in &mut members {
        if let Some(mut child) = m.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn scenario(members: &mut [Member], kubeconfig: &Path) -> Result<(), String> {
    let leader = {
        eprintln!("--- one member bootstraps, the other two stream from it");
        let members_ref = &*members;
        wait_until(
            FORM_TIMEOUT,
            "a primary and two streaming replicas".into(),
            || async {
                assert_at_most_one_primary(members_ref);
                let r = roles(members_ref);
                let primary = r.iter().position(|x| x.as_deref() == Some("primary"))?;
                let streaming = members_ref.iter().filter(|m| m.streaming()).count();
                (streaming == 2).then_some(primary)
            },
        )
        .await
        .map_err(|e| format!("{e}"))?
    };
    {
        eprintln!("--- kill the leader's agent and its postmaster");
        let old = &mut members[leader];
        if let Some(mut child) = old.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in old.host.pids() {
            kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let new_leader = {
        eprintln!("--- exactly one other member promotes; the last one follows it");
        let others: Vec<usize> = (0..members.len()).filter(|i| *i != leader).collect();
        let members_ref = &*members;
        wait_until(
            FAILOVER_TIMEOUT,
            "a new primary and a streaming replica".into(),
            || {
                let others = others.clone();
                async move {
                    assert_at_most_one_primary(members_ref);
                    let primary = others
                        .iter()
                        .copied()
                        .find(|i| members_ref[*i].role().as_deref() == Some("primary"))?;
                    let follower = others.iter().copied().find(|i| *i != primary)?;
                    members_ref[follower].streaming().then_some(primary)
                }
            },
        )
        .await
        .map_err(|e| format!("{e}"))?
    };
    {
        eprintln!(
            "--- the old leader, restarted, rejoins as a streaming replica on the new timeline"
        );
        let old = &mut members[leader];
        let agent = old
            .host
            .spawn_agent(
                Path::new(env!("CARGO_BIN_EXE_patroni")),
                &old.config,
                kubeconfig,
                &old.log(),
            )
            .map_err(|e| e.to_string())?;
        old.agent = Some(agent);
        let members_ref = &*members;
        let timeline = |m: &Member| m.status().and_then(|s| s.get("timeline")?.as_u64());
        wait_until(
            FORM_TIMEOUT,
            "the old leader streams again".into(),
            || async {
                assert_at_most_one_primary(members_ref);
                let old = &members_ref[leader];
                (old.streaming() && timeline(old) == timeline(&members_ref[new_leader]))
                    .then_some(())
            },
        )
        .await
        .map_err(|e| format!("{e}"))?;
    }
    {
        eprintln!("--- a switchover through the REST API hands the lock back to the old leader");
        let (from, to) = (&members[new_leader], &members[leader]);
        switchover(from, to)?;
        let members_ref = &*members;
        wait_until(
            FAILOVER_TIMEOUT,
            "the candidate leads, the old leader streams".into(),
            || async {
                assert_at_most_one_primary(members_ref);
                (members_ref[leader].role().as_deref() == Some("primary")
                    && members_ref[new_leader].streaming())
                .then_some(())
            },
        )
        .await
        .map_err(|e| format!("{e}"))?;
    }
    {
        eprintln!("--- SIGTERM stops the leader's agent cleanly");
        let m = &mut members[leader];
        let mut child = m.agent.take().ok_or("no agent")?;
        kill(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                return Err("the agent did not stop on SIGTERM".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if status.code() != Some(0) {
            return Err(format!("the agent exited with {status}"));
        }
    }
    Ok(())
}
