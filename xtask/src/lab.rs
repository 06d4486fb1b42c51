//! `cargo xtask lab`: a lab that outlives the command, for hands-on use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use patroni_testlab::{Host, Lab, PodSpec};

/// Lab commands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start the control plane and N member hosts, each with a Running/Ready
    /// pod at its address; write DIR/lab.json.
    Up(UpArgs),
    /// Run a command on a host: `cargo xtask lab exec member-0 -- ip addr`.
    Exec(ExecArgs),
    /// Send a signal to every process on a host (default SIGKILL): the way
    /// to crash a member's agent and PostgreSQL at once.
    Kill(KillArgs),
    /// Stop everything the lab started (by pid) and remove its namespaces.
    Down(DirArg),
}

/// Where the lab keeps its state.
#[derive(Debug, Args)]
pub struct DirArg {
    /// State directory (certificates, logs, lab.json).
    #[arg(long, default_value = ".lab")]
    dir: PathBuf,
}

/// `lab up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Member hosts to create.
    #[arg(long, default_value_t = 3)]
    members: u32,
    /// Also start a real node (containerd, kubelet, kube-proxy, kube-scheduler, CoreDNS) and
    /// import the patroni-rs image (`cargo xtask image`) into it.
    #[arg(long)]
    node: bool,
    #[command(flatten)]
    dir: DirArg,
}

/// `lab exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Host name (`member-0`, …) or `controlplane`.
    host: String,
    #[command(flatten)]
    dir: DirArg,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// `lab kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Host name (`member-0`, …).
    host: String,
    /// Signal name (KILL, TERM, INT, STOP, CONT).
    #[arg(long, default_value = "KILL")]
    signal: String,
    #[command(flatten)]
    dir: DirArg,
}

pub fn run(cmd: LabCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LabCommand::Up(args) => up(args),
        LabCommand::Exec(args) => exec(args),
        LabCommand::Kill(args) => kill(args),
        LabCommand::Down(args) => down(&args.dir),
    }
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let info_path = args.dir.dir.join("lab.json");
    if info_path.exists() && Lab::attach(&info_path).is_ok() {
        bail!(
            "a lab is already running at {}; `cargo xtask lab down` first",
            args.dir.dir.display()
        );
    }
    let mut lab = Lab::start(&args.dir.dir, 0).context("start the lab")?;
    let runtime = tokio::runtime::Runtime::new().context("start tokio")?;
    let namespace = "default";
    let hosts = runtime.block_on(async {
        let client = lab.controlplane().admin_client().await?;
        let mut hosts = Vec::new();
        for i in 0..args.members {
            let host = lab.host(&format!("member-{i}"))?;
            let labels = BTreeMap::from([("application".to_string(), "patroni".to_string())]);
            lab.pod(
                &client,
                namespace,
                &host,
                PodSpec {
                    name: host.name().to_string(),
                    labels,
                    service_account: None,
                },
            )
            .await?;
            hosts.push(host);
        }
        anyhow::Ok(hosts)
    })?;
    let infos: Vec<_> = hosts.into_iter().map(Host::keep).collect();
    lab.remember_hosts(infos.clone(), namespace)?;
    if args.node {
        let node = lab.start_node(0).context("start the real node")?;
        let image = crate::image::build(
            std::path::Path::new("target/image/patroni-rs.oci.tar"),
            env!("CARGO_PKG_VERSION"),
        )?;
        patroni_testlab::import_image(&node, &image.archive, crate::image::IMAGE_NAME)?;
        println!(
            "  node {} {} (containerd {}), image {}:{}",
            node.name,
            node.ip,
            node.containerd.display(),
            crate::image::IMAGE_NAME,
            env!("CARGO_PKG_VERSION")
        );
    }
    let info = lab.detach();
    println!("lab is up: {}", info.dir.join("lab.json").display());
    println!(
        "  kubernetes {} at {} (kubeconfig {})",
        info.controlplane.version,
        info.controlplane.server,
        info.controlplane.kubeconfig.display()
    );
    println!(
        "  inside the lab: {} (kubeconfig {})",
        info.controlplane.lab_server,
        info.controlplane.lab_kubeconfig.display()
    );
    for h in &infos {
        println!(
            "  host {:<10} {:<12} netns {}  pod {namespace}/{}",
            h.name, h.ip, h.netns, h.name
        );
    }
    println!("run a command on a host: cargo xtask lab exec member-0 -- ip addr");
    println!("stop it: cargo xtask lab down");
    Ok(ExitCode::SUCCESS)
}

fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::attach(&args.dir.dir.join("lab.json"))?;
    let info = lab.info();
    let netns = if args.host == "controlplane" {
        info.controlplane_netns.clone()
    } else {
        match info.hosts.iter().find(|h| h.name == args.host) {
            Some(h) => h.netns.clone(),
            None => {
                let names: Vec<_> = info.hosts.iter().map(|h| h.name.as_str()).collect();
                bail!(
                    "no host {:?} in the lab; hosts: controlplane, {}",
                    args.host,
                    names.join(", ")
                );
            }
        }
    };
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &netns])
        .args(&args.command)
        .status()
        .with_context(|| format!("run {:?} on {}", args.command, args.host))?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// Stops the lab whose state is in `dir`.
pub fn down(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let path = dir.join("lab.json");
    if !path.exists() {
        println!("no lab at {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let lab = Lab::open(&path)?;
    lab.stop();
    lab.detach();
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    println!("lab at {} is down", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn kill(args: KillArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::attach(&args.dir.dir.join("lab.json"))?;
    let Some(info) = lab.info().hosts.iter().find(|h| h.name == args.host) else {
        bail!("no host {:?} in the lab", args.host);
    };
    let signal: nix::sys::signal::Signal = format!("SIG{}", args.signal.trim_start_matches("SIG"))
        .parse()
        .with_context(|| format!("unknown signal {:?}", args.signal))?;
    let host = Host::attach(info.clone());
    let pids = host.pids();
    for pid in &pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal);
    }
    println!(
        "sent {signal} to {} process(es) on {}: {pids:?}",
        pids.len(),
        args.host
    );
    Ok(ExitCode::SUCCESS)
}
