//! `postgresql.callbacks` with the real `patroni` binary on two lab hosts (PostgreSQL 15,
//! Kubernetes as the DCS): every callback points to a script that appends its arguments to a
//! file. The bootstrapping member records `on_start primary t46`, the cloned one
//! `on_start replica t46`; after a switchover through the REST API the candidate records
//! `on_role_change primary t46` and the former leader `on_stop primary t46` followed by
//! `on_role_change replica t46`. No callback is ever told `master`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use patroni_testlab::{AgentSpec, Host, Lab, PodSpec, chown_to_pg_user, wait_until};
use serde_json::Value;

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

/// One member: its host, directory and agent process.
struct Member {
    name: String,
    host: Host,
    dir: PathBuf,
    agent: Option<Child>,
}

impl Member {
    fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// Where the callback script appends its arguments.
    fn calls_file(&self) -> PathBuf {
        self.dir.join("callbacks.out")
    }

    /// The callback lines recorded so far.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.calls_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `GET /patroni` from inside the member's own host.
    fn status(&self) -> Option<Value> {
        let url = format!("http://{}:8008/patroni", self.host.ip());
        let out = self
            .host
            .command("curl")
            .args(["-s", "-m", "2", &url])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn role(&self) -> Option<String> {
        let s = self.status()?;
        (s.get("state")?.as_str()? == "running").then_some(())?;
        Some(s.get("role")?.as_str()?.to_owned())
    }

    fn streaming(&self) -> bool {
        self.status().is_some_and(|s| {
            s.get("role").and_then(Value::as_str) == Some("replica")
                && s.get("replication_state").and_then(Value::as_str) == Some("streaming")
        })
    }

    fn print_log(&self) {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        eprintln!("===== {} (last lines) =====", self.name);
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
        eprintln!("----- {} callbacks: {:?}", self.name, self.calls());
    }
}

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

async fn start_members(lab: &Lab, root: &Path) -> Vec<Member> {
    let ns = lab.namespace("t46").await.expect("namespace");
    let kubeconfig = root.join("lab.kubeconfig");
    std::fs::copy(&lab.controlplane().lab_kubeconfig, &kubeconfig).expect("copy kubeconfig");
    chown_to_pg_user(&kubeconfig).expect("chown kubeconfig");
    let mut members = Vec::new();
    for i in 0..2 {
        let name = format!("t46-m{i}");
        let host = lab.host(&name).expect("host");
        let mut spec = AgentSpec::new(SCOPE, &name, &ns.name, true);
        spec.ttl = 20;
        spec.loop_wait = 3;
        spec.retry_timeout = 5;
        lab.pod(
            &ns.client,
            &ns.name,
            &host,
            PodSpec {
                name: name.clone(),
                labels: spec.pod_labels(),
                service_account: None,
            },
        )
        .await
        .expect("pod");
        let dir = root.join(&name);
        let config = spec.write(host.ip(), &dir).expect("write config");
        configure_callbacks(&dir, &config);
        let agent = host
            .spawn_agent(
                Path::new(env!("CARGO_BIN_EXE_patroni")),
                &config,
                &kubeconfig,
                &dir.join("agent.log"),
            )
            .expect("spawn agent");
        members.push(Member {
            name,
            host,
            dir,
            agent: Some(agent),
        });
    }
    members
}

/// Bootstrap, clone and switchover fire the callbacks Patroni fires, with Patroni's arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_fire_on_start_stop_and_role_changes() {
    let lab = Lab::shared();
    let root = tempfile::tempdir().expect("tempdir");
    chown_to_pg_user(root.path()).expect("chown root");
    let mut members = start_members(lab, root.path()).await;
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
    let body = format!(
        r#"{{"leader": "{}", "candidate": "{}"}}"#,
        from.name, to.name
    );
    let url = format!("http://{}:8008/switchover", from.host.ip());
    let out = from
        .host
        .command("curl")
        .args(["-s", "-m", "30", "-XPOST", "-d", &body, &url])
        .output()
        .map_err(|e| e.to_string())?;
    eprintln!("switchover: {}", String::from_utf8_lossy(&out.stdout));
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
