//! `patroni-k8s-callback [--endpoints NAME] ACTION ROLE SCOPE`: the callback way of routing
//! traffic to the primary in ConfigMaps mode, as Patroni's `kubernetes/callback.py`.
//!
//! Configured as the `on_start` and `on_role_change` callbacks (the agent appends ACTION, ROLE
//! and SCOPE), it points the Endpoints `NAME` (default: SCOPE) of a Service without selector at
//! this pod's IP when ROLE is `primary` (`master` from Patroni before 4.0); other calls do
//! nothing, as Patroni's script. It runs in the member's pod: the pod IP comes from `POD_IP`
//! (else `PATRONI_KUBERNETES_POD_IP`), the namespace from `KUBERNETES_NAMESPACE` (else
//! `PATRONI_KUBERNETES_NAMESPACE`, else the service account's), the API from the in-cluster
//! configuration. API errors are retried with Patroni's backoff (0.5 s doubling, 10 times).
//! The ServiceAccount needs `get` and `patch` on that Endpoints object.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::core::v1::Endpoints;
use kube::Api;
use kube::api::{Patch, PatchParams};
use patroni::agent::callbacks::CallbackAction;
use serde_json::json;

/// Points the primary's Endpoints at this pod (a Patroni `on_start`/`on_role_change` callback).
#[derive(Debug, Parser)]
#[command(name = "patroni-k8s-callback", version)]
struct Cli {
    /// The Endpoints object to point at this pod (default: the cluster's scope).
    #[arg(long)]
    endpoints: Option<String>,
    /// The PostgreSQL port to publish.
    #[arg(long, default_value_t = 5432)]
    port: u16,
    /// The port's name (must match the Service's port name, if it has one).
    #[arg(long)]
    port_name: Option<String>,
    /// `on_start`, `on_stop`, `on_restart`, `on_reload` or `on_role_change`.
    action: String,
    /// The member's role (`primary`, `replica`, …).
    role: String,
    /// The cluster's scope.
    scope: String,
}

const RETRIES: u32 = 10;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !CallbackAction::ALL.iter().any(|a| a.as_str() == cli.action) {
        let names: Vec<&str> = CallbackAction::ALL.iter().map(|a| a.as_str()).collect();
        eprintln!(
            "patroni-k8s-callback: unknown action {:?}; expected one of {}",
            cli.action,
            names.join(", ")
        );
        return ExitCode::from(64);
    }
    let leads = matches!(cli.role.as_str(), "primary" | "master");
    if !leads || !matches!(cli.action.as_str(), "on_start" | "on_role_change") {
        return ExitCode::SUCCESS;
    }
    match point_endpoints(&cli).await {
        Ok(name) => {
            eprintln!("patroni-k8s-callback: Endpoints {name} point at this pod");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("patroni-k8s-callback: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Patches the Endpoints; their name.
async fn point_endpoints(cli: &Cli) -> anyhow::Result<String> {
    let ip = env_first(&["POD_IP", "PATRONI_KUBERNETES_POD_IP"])
        .context("POD_IP (or PATRONI_KUBERNETES_POD_IP) is not set")?;
    let ip: std::net::IpAddr = ip
        .parse()
        .with_context(|| format!("POD_IP: not an IP address: {ip:?}"))?;
    let client = kube::Client::try_default()
        .await
        .context("in-cluster Kubernetes configuration")?;
    let namespace = env_first(&["KUBERNETES_NAMESPACE", "PATRONI_KUBERNETES_NAMESPACE"])
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let name = cli.endpoints.clone().unwrap_or_else(|| cli.scope.clone());
    let mut port = json!({"port": cli.port, "protocol": "TCP"});
    if let Some(n) = &cli.port_name {
        port["name"] = json!(n);
    }
    let body = json!({"subsets": [{"addresses": [{"ip": ip.to_string()}], "ports": [port]}]});
    let api: Api<Endpoints> = Api::namespaced(client, &namespace);
    let mut delay = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => return Ok(name),
            Err(kube::Error::Api(e)) if e.code < 500 && e.code != 429 => {
                anyhow::bail!("patch Endpoints {namespace}/{name}: {e}")
            }
            Err(e) if attempt >= RETRIES => {
                return Err(e).with_context(|| format!("patch Endpoints {namespace}/{name}"));
            }
            Err(e) => {
                eprintln!("patroni-k8s-callback: throttling API requests ({e})");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}
