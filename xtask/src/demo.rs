//! `cargo xtask demo`: a 3-member patroni-rs cluster on the local lab (the
//! embedded default control plane), left running to play with.
//!
//! Each member is a lab host with a pod at its address and the `patroni`
//! agent running inside it as the postgres user. `cargo xtask demo down`
//! (= `lab down`) stops everything by pid.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use patroni_testlab::{AgentSpec, Host, Lab, chown_to_pg_user};

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    /// Members to start.
    #[arg(long, default_value_t = 3)]
    members: u32,
    /// Keep the cluster state in Endpoints instead of ConfigMaps.
    #[arg(long, conflicts_with = "node")]
    use_endpoints: bool,
    /// Run the members as pods of the lab's real node (kubelet, containerd) from the
    /// image and `deploy/kubernetes/patroni-rs.yaml`, as users deploy patroni-rs.
    #[arg(long)]
    node: bool,
    /// State directory.
    #[arg(long, default_value = ".lab", global = true)]
    dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Stop the demo cluster and its lab.
    Down,
}

const SCOPE: &str = "demo";
const NAMESPACE: &str = "default";
/// How long the first leader may take to appear.
const LEADER_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if let Some(DemoCommand::Down) = args.command {
        return crate::lab::down(&args.dir);
    }
    let info_path = args.dir.join("lab.json");
    if info_path.exists() && Lab::attach(&info_path).is_ok() {
        bail!(
            "a lab is already running at {}; `cargo xtask demo down` first",
            args.dir.display()
        );
    }
    if args.node {
        return crate::demo_node::run(&args.dir, args.members);
    }
    let binary = build_agent()?;
    let mut lab = Lab::start(&args.dir, 0).context("start the lab")?;
    let runtime = tokio::runtime::Runtime::new().context("start tokio")?;
    let members_dir = lab.info().dir.join("members");
    // Data directories of an earlier demo belong to a cluster that is gone.
    if members_dir.exists() {
        std::fs::remove_dir_all(&members_dir)
            .with_context(|| format!("remove {}", members_dir.display()))?;
    }
    std::fs::create_dir_all(&members_dir)?;
    // The agents run as postgres: give them their own copy of the in-lab kubeconfig.
    let lab_kubeconfig = members_dir.join("kubeconfig");
    let cp = lab.controlplane();
    cp.write_kubeconfig(&cp.admin_token, &lab_kubeconfig, true)?;
    chown_to_pg_user(&lab_kubeconfig)?;
    let hosts: Vec<Host> = runtime.block_on(async {
        let client = lab.controlplane().admin_client().await?;
        let mut hosts = Vec::new();
        for i in 0..args.members {
            let name = format!("member-{i}");
            let spec = AgentSpec::new(SCOPE, &name, NAMESPACE, args.use_endpoints);
            let dir = members_dir.join(&name);
            let (host, child) = lab
                .start_agent_member(&client, &spec, &binary, &lab_kubeconfig, &dir)
                .await?;
            println!(
                "started {name} (pid {}) at {}; log {}",
                child.id(),
                host.ip(),
                dir.join("patroni.log").display()
            );
            hosts.push(host);
        }
        anyhow::Ok(hosts)
    })?;
    chown_to_pg_user(&members_dir)?;
    let infos: Vec<_> = hosts.into_iter().map(Host::keep).collect();
    lab.remember_hosts(infos, NAMESPACE)?;
    let info = lab.detach();
    let ctl = write_patronictl_config(&info.dir, args.use_endpoints)?;
    let kubeconfig = info.controlplane.kubeconfig.clone();
    let ours = binary
        .parent()
        .map(|d| d.join("patronictl"))
        .context("locate our patronictl")?;
    let python = venv().join("bin/patronictl");
    println!("waiting for a leader and streaming replicas …");
    let deadline = std::time::Instant::now() + LEADER_TIMEOUT;
    let first = info.hosts.first().context("the demo has members")?.clone();
    let members = loop {
        if let Some(members) = cluster_members(&first.netns, &first.ip)
            && members
                .iter()
                .filter(|m| m["role"] == "leader" && m["state"] == "running")
                .count()
                == 1
            && members.iter().filter(|m| m["state"] == "streaming").count() + 1
                == args.members as usize
        {
            break members;
        }
        if std::time::Instant::now() > deadline {
            eprintln!(
                "no leader after {LEADER_TIMEOUT:?}; see the logs under {}",
                members_dir.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    match patronictl(&ours, &ctl, &kubeconfig, &["list"]) {
        Some(table) => println!("{table}"),
        None => {
            for m in &members {
                println!(
                    "  {:<10} {:<12} {:<8} {}",
                    m["name"].as_str().unwrap_or(""),
                    m["host"].as_str().unwrap_or(""),
                    m["role"].as_str().unwrap_or(""),
                    m["state"].as_str().unwrap_or("")
                );
            }
        }
    }
    let field = |m: &serde_json::Value, k: &str| m[k].as_str().unwrap_or_default().to_owned();
    let leader = members
        .iter()
        .find(|m| m["role"] == "leader")
        .context("a leader")?;
    let (leader_name, leader_ip) = (field(leader, "name"), field(leader, "host"));
    let replica = members
        .iter()
        .find(|m| m["role"] != "leader")
        .map(|m| field(m, "name"))
        .unwrap_or_default();
    let k = kubeconfig.display();
    println!("The cluster is running. Try:");
    println!(
        "  watch it:      KUBECONFIG={k} {} -c {} list",
        ours.display(),
        ctl.display()
    );
    if python.exists() {
        println!(
            "  or Patroni's:  KUBECONFIG={k} {} -c {} list",
            python.display(),
            ctl.display()
        );
    }
    if !replica.is_empty() {
        println!(
            "  switchover:    cargo xtask lab exec {leader_name} -- curl -s -XPOST http://{leader_ip}:8008/switchover -d '{{\"leader\":\"{leader_name}\",\"candidate\":\"{replica}\"}}'"
        );
    }
    println!(
        "  kill primary:  cargo xtask lab kill {leader_name}   (SIGKILL to its agent and postmaster), then watch the failover"
    );
    println!("  stop:          cargo xtask demo down");
    Ok(ExitCode::SUCCESS)
}

/// Builds the `patroni` and `patronictl` binaries and returns the agent's path.
fn build_agent() -> anyhow::Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "patroni",
            "-p",
            "patroni-ctl",
            "--bins",
        ])
        .status()?;
    if !status.success() {
        bail!("cargo build -p patroni -p patroni-ctl failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target
        .join("debug/patroni")
        .canonicalize()
        .context("locate the patroni binary")?;
    Ok(bin)
}

fn venv() -> PathBuf {
    patroni_testlab::cache_dir().join("venv")
}

fn write_patronictl_config(dir: &Path, use_endpoints: bool) -> anyhow::Result<PathBuf> {
    let path = dir.join("patronictl.yml");
    let text = format!(
        "scope: {SCOPE}\nkubernetes:\n  namespace: {NAMESPACE}\n  labels:\n    application: patroni\n  use_endpoints: {use_endpoints}\n  context: testenv\n"
    );
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Members as a member's REST API reports them (`GET /cluster`), asked from
/// inside that member's host.
fn cluster_members(netns: &str, ip: &str) -> Option<Vec<serde_json::Value>> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "curl",
            "-s",
            "--max-time",
            "2",
            &format!("http://{ip}:8008/cluster"),
        ])
        .output()
        .ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    doc["members"].as_array().cloned()
}

/// `program` (a `patronictl`) output, if it runs and succeeds.
fn patronictl(program: &Path, config: &Path, kubeconfig: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .env("KUBECONFIG", kubeconfig)
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
