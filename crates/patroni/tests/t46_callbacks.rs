//! `postgresql.callbacks` with the real `patroni` binary on two lab hosts (PostgreSQL 15,
//! Kubernetes as the DCS): every callback points to a script that appends its arguments to a
//! file. The bootstrapping member records `on_start primary t46`, the cloned one
//! `on_start replica t46`; after a switchover through the REST API the candidate records
//! `on_role_change primary t46` and the former leader `on_stop primary t46` followed by
//! `on_role_change replica t46`. No callback is ever told `master`.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use patroni_testlab::{Lab, chown_to_pg_user, wait_until};

/// Cluster name.
const SCOPE: &str = "t46";
/// How long a bootstrap plus a clone may take on a slow 2-core machine.
const FORM_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a switchover may take.
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an asynchronous callback may take to show up in its file.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The callbacks every member is configured with.
const ACTIONS: [&str; 5] = [
    "on_start",
    "on_stop",
    "on_restart",
    "on_reload",
    "on_role_change",
];

/// Writes the callback script into `dir` and adds `postgresql.callbacks` to `config`.
fn configure_callbacks(dir: &Path, config: &Path) {
    let out = dir.join("callbacks.out");
    let script = dir.join("callback.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", out.display()),
    )
    .expect("write callback script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("chmod callback script");
    chown_to_pg_user(&script).expect("chown callback script");

    let text = std::fs::read_to_string(config).expect("read config");
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("parse config");
    let mut callbacks = serde_yaml_ng::Mapping::new();
    for action in ACTIONS {
        callbacks.insert(action.into(), script.display().to_string().into());
    }
    yaml.get_mut("postgresql")
        .and_then(serde_yaml_ng::Value::as_mapping_mut)
        .expect("postgresql section")
        .insert("callbacks".into(), callbacks.into());
    std::fs::write(
        config,
        serde_yaml_ng::to_string(&yaml).expect("render config"),
    )
    .expect("write config");
}

/// Bootstrap, clone and switchover fire the callbacks Patroni fires, with Patroni's arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_fire_on_start_stop_and_role_changes() {
    let lab = Lab::shared();
    let root = tempfile::tempdir().expect("tempdir");
    chown_to_pg_user(root.path()).expect("chown root");
    let mut members = start_members(lab, root.path(), SCOPE, 2, configure_callbacks).await;
    let result = scenario(&members).await;
    if result.is_err() || std::env::var_os("T46_PRINT_LOGS").is_some() {
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

/// Waits until `member` has recorded `lines`, in this order (other lines may come between).
async fn wait_for_calls(member: &Member, lines: &[&str]) -> Result<(), String> {
    let what = format!("{} records {lines:?}", member.name);
    wait_until(CALLBACK_TIMEOUT, what, || async {
        let calls = member.calls();
        let mut rest = calls.iter();
        lines
            .iter()
            .all(|want| rest.any(|got| got == want))
            .then_some(())
    })
    .await
    .map_err(|e| format!("{e}; recorded {:?}", member.calls()))
}

async fn scenario(members: &[Member]) -> Result<(), String> {
    eprintln!("--- one member bootstraps, the other clones and streams");
    let leader = wait_until(
        FORM_TIMEOUT,
        "a primary and a streaming replica".into(),
        || async {
            let primary = members
                .iter()
                .position(|m| m.role().as_deref() == Some("primary"))?;
            members[1 - primary].streaming().then_some(primary)
        },
    )
    .await
    .map_err(|e| format!("{e}"))?;
    let replica = 1 - leader;
    let on_start_primary = format!("on_start primary {SCOPE}");
    let on_start_replica = format!("on_start replica {SCOPE}");
    wait_for_calls(&members[leader], &[&on_start_primary]).await?;
    wait_for_calls(&members[replica], &[&on_start_replica]).await?;

    eprintln!("--- a switchover through the REST API");
    let (from, to) = (&members[leader], &members[replica]);
    switchover(from, to)?;
    wait_until(
        SWITCHOVER_TIMEOUT,
        "the candidate leads, the old leader streams".into(),
        || async {
            (members[replica].role().as_deref() == Some("primary") && members[leader].streaming())
                .then_some(())
        },
    )
    .await
    .map_err(|e| format!("{e}"))?;
    wait_for_calls(
        &members[replica],
        &[
            &on_start_replica,
            &format!("on_role_change primary {SCOPE}"),
        ],
    )
    .await?;
    wait_for_calls(
        &members[leader],
        &[
            &on_start_primary,
            &format!("on_stop primary {SCOPE}"),
            &format!("on_role_change replica {SCOPE}"),
        ],
    )
    .await?;
    for m in members {
        let calls = m.calls();
        eprintln!("{}: {calls:?}", m.name);
        if calls.iter().any(|c| c.contains("master")) {
            return Err(format!("{} was told master: {calls:?}", m.name));
        }
        if calls.iter().any(|c| !c.ends_with(&format!(" {SCOPE}"))) {
            return Err(format!(
                "{}: a callback without the scope: {calls:?}",
                m.name
            ));
        }
    }
    Ok(())
}
