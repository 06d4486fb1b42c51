//! Issue #20, `postgresql.pre_promote` and `postgresql.before_stop` on a real 3-member cluster
//! (Patroni's behaviour):
//! - a switchover to `m1`, whose `pre_promote` script exits 1: `m1` takes the lock but does
//!   not promote, gives the lock back ("Promotion cancelled because the pre-promote script
//!   failed") and stays a replica; another member, whose script exits 0, is promoted instead;
//! - the former primary's `before_stop` script runs before its server stops (its output is in
//!   the agent's log, and it ran while PostgreSQL was still up).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::{Lab, chown_to_pg_user};

/// The hook every member runs: `hook.sh <member> <hook> <exit code>`; it records the call
/// (with whether the member's PostgreSQL, at its lab address, still accepts connections) and
/// echoes a line for the agent's log.
const SCRIPT: &str = r#"#!/bin/sh
ip=$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -n1)
up=$(/usr/lib/postgresql/15/bin/pg_isready -q -h "$ip" -p 5432 && echo up || echo down)
echo "$1 $2 postgres=$up" >> "$(dirname "$0")/calls"
echo "hook $2 of $1 says hello"
exit "$3"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pre_promote_keeps_a_replica_and_before_stop_runs_first() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t57-hooks").await.expect("namespace");
    let dir = tempfile::tempdir().expect("tempdir");
    chown_to_pg_user(dir.path()).expect("chown");
    let script = dir.path().join("hook.sh");
    std::fs::write(&script, SCRIPT).expect("write the hook");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    chown_to_pg_user(&script).expect("chown the hook");
    let calls = dir.path().join("calls");
    std::fs::write(&calls, "").expect("create calls");
    chown_to_pg_user(&calls).expect("chown calls");
    let script_path = script.display().to_string();
    let (mut members, _) = start_cluster_m0_first(lab, &ns, "hooks", false, 3, |spec| {
        // m1's fencing refuses; everybody else's agrees.
        let code = if spec.name == "m1" { 1 } else { 0 };
        for (hook, exit) in [("pre_promote", code), ("before_stop", 0)] {
            spec.postgresql_extra.insert(
                hook.into(),
                format!("\"{script_path} {} {hook} {exit}\"", spec.name),
            );
        }
    })
    .await;
    let primary = wait_for(FORM_TIMEOUT, "one primary, two streaming", &members, || {
        primary_with_two_streaming(&members)
    })
    .await;
    assert_eq!(members[primary].name, "m0", "m0 bootstrapped");

    tracing::info!("--- switchover to m1, whose pre_promote fails");
    // m0 may not have seen m1's first member record with its WAL position yet: the API refuses
    // with 412 ("no good candidates") until then, as Patroni's does.
    let answer = wait_for(
        Duration::from_secs(60),
        "the switchover to m1 is accepted",
        &members,
        || {
            let answer = rest(
                &members[primary],
                "POST",
                "/switchover",
                Some(r#"{"leader": "m0", "candidate": "m1"}"#),
                None,
            );
            match answer {
                Some((412, _)) | None => None,
                other => other,
            }
        },
    )
    .await;
    tracing::info!(?answer, "switchover answered");
    let promoted = wait_for(
        FAILOVER_TIMEOUT,
        "another member promoted after m1's pre_promote failed",
        &members,
        || {
            let w = writable(&members);
            let [p] = w.as_slice() else { return None };
            (p != "m1").then(|| p.clone())
        },
    )
    .await;
    tracing::info!(%promoted, "promoted instead of m1");
    let m1 = &members[index(&members, "m1")];
    let log = std::fs::read_to_string(&m1.log).unwrap_or_default();
    assert!(
        log.contains("Promotion cancelled because the pre-promote script failed"),
        "m1 gave the lock back\n{}",
        logs(&members)
    );
    wait_for(
        Duration::from_secs(60),
        "m1 runs as a streaming replica",
        &members,
        || {
            let (h, s) = (&m1.host, &m1.spec);
            (sql(h, h, s, "select pg_is_in_recovery()")? == "t").then_some(())
        },
    )
    .await;
    let recorded = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        recorded.contains("m1 pre_promote"),
        "m1's pre_promote ran: {recorded}"
    );
    assert!(
        recorded.contains(&format!("{promoted} pre_promote")),
        "the promoted member's pre_promote ran: {recorded}"
    );
    assert!(
        recorded.contains("m0 before_stop postgres=up"),
        "m0's before_stop ran while its server was still up: {recorded}"
    );
    let m0_log = std::fs::read_to_string(&members[0].log).unwrap_or_default();
    assert!(
        m0_log.contains("hook before_stop of m0 says hello"),
        "the hook's output is in m0's log\n{m0_log}"
    );
    stop_all(&mut members);
}
