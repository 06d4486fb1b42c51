//! The harness of the agent's lab tests: members running the real `patroni`
//! binary on lab hosts (as postgres, with the in-lab kubeconfig), their REST
//! status and logs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Child;

use patroni_testlab::{AgentSpec, Host, Lab, PodSpec, chown_to_pg_user};
use serde_json::Value;

/// One member: its host, directory, configuration and agent process.
pub struct Member {
    pub name: String,
    pub host: Host,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub agent: Option<Child>,
}

impl Member {
    pub fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// Where a test's callback script appends its arguments.
    pub fn calls_file(&self) -> PathBuf {
        self.dir.join("callbacks.out")
    }

    /// The callback lines recorded so far.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.calls_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `GET /patroni` from inside the member's own host.
    pub fn status(&self) -> Option<Value> {
        let url = format!("http://{}:8008/patroni", self.host.ip());
        let out = self
            .host
            .command("curl")
            .args(["-s", "-m", "2", &url])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The role of a running member.
    pub fn role(&self) -> Option<String> {
        let s = self.status()?;
        (s.get("state")?.as_str()? == "running").then_some(())?;
        Some(s.get("role")?.as_str()?.to_owned())
    }

    /// Whether the member is a streaming replica.
    pub fn streaming(&self) -> bool {
        self.status().is_some_and(|s| {
            s.get("role").and_then(Value::as_str) == Some("replica")
                && s.get("replication_state").and_then(Value::as_str) == Some("streaming")
        })
    }

    /// The tail of the agent's log (and callbacks, if any) on stderr.
    pub fn print_log(&self) {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(80).collect();
        eprintln!("===== {} (last lines) =====", self.name);
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
        if self.calls_file().exists() {
            eprintln!("----- {} callbacks: {:?}", self.name, self.calls());
        }
    }
}

/// The kubeconfig the agents use (inside the lab, readable by postgres).
pub fn kubeconfig(root: &Path) -> PathBuf {
    root.join("lab.kubeconfig")
}

/// Starts `n` members `<scope>-m<i>` of `scope` (Endpoints mode, ttl 20,
/// loop_wait 3, retry_timeout 5) under `root`; `configure` may edit each
/// member's directory and configuration before its agent starts.
pub async fn start_members(
    lab: &Lab,
    root: &Path,
    scope: &str,
    n: usize,
    configure: impl Fn(&Path, &Path),
) -> Vec<Member> {
    let ns = lab.namespace(scope).await.expect("namespace");
    let kubeconfig = kubeconfig(root);
    std::fs::copy(&lab.controlplane().lab_kubeconfig, &kubeconfig).expect("copy kubeconfig");
    chown_to_pg_user(&kubeconfig).expect("chown kubeconfig");
    let mut members = Vec::new();
    for i in 0..n {
        let name = format!("{scope}-m{i}");
        let host = lab.host(&name).expect("host");
        let mut spec = AgentSpec::new(scope, &name, &ns.name, true);
        (spec.ttl, spec.loop_wait, spec.retry_timeout) = (20, 3, 5);
        let pod = PodSpec {
            name: name.clone(),
            labels: spec.pod_labels(),
            service_account: None,
        };
        lab.pod(&ns.client, &ns.name, &host, pod)
            .await
            .expect("pod");
        let dir = root.join(&name);
        let config = spec.write(host.ip(), &dir).expect("write config");
        configure(&dir, &config);
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
            config,
            agent: Some(agent),
        });
    }
    members
}

/// `POST /switchover` from `from` (the leader) to `to`, sent from the
/// leader's own host; returns the answer's body.
pub fn switchover(from: &Member, to: &Member) -> Result<String, String> {
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
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("switchover: {answer}");
    Ok(answer)
}
