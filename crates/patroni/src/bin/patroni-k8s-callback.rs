//! `patroni-k8s-callback [--endpoints NAME | --role-label LABEL …] ACTION ROLE SCOPE`: Patroni
//! callbacks that route Kubernetes traffic to the primary, in two ways.
//!
//! - **Endpoints** (the default), as Patroni's `kubernetes/callback.py`: configured as the
//!   `on_start` and `on_role_change` callbacks (the agent appends ACTION, ROLE and SCOPE), it
//!   points the Endpoints `NAME` (default: SCOPE) of a Service without selector at this pod's
//!   IP when ROLE is `primary` (`master` from Patroni before 4.0); other calls do nothing, as
//!   Patroni's script. The ServiceAccount needs `patch` on that Endpoints object.
//! - **Role label** (`--role-label LABEL`), as Spilo's `callback_role.py`, for members whose DCS
//!   is not Kubernetes (etcd, ZooKeeper: Patroni labels pods only with its Kubernetes DCS):
//!   configured as `on_start`, `on_stop`, `on_restart` and `on_role_change`, it sets the label
//!   on this pod to the value of ROLE (`--leader-label-value` for `primary`/`master`,
//!   `--follower-label-value` for `replica`, `--standby-leader-label-value` for
//!   `standby_leader`, the role's own name otherwise) and removes it on `on_stop`, so Services
//!   that select `LABEL=<leader value>` follow the primary. The pod is `POD_NAME` (else
//!   `HOSTNAME`, which Kubernetes sets to the pod's name). The ServiceAccount needs `patch` on
//!   pods.
//!
//! It runs in the member's pod, where the agent gives callbacks its environment minus the
//! `PATRONI_*` variables: the pod IP comes from `POD_IP` (else `PATRONI_KUBERNETES_POD_IP`),
//! the namespace from `POD_NAMESPACE` or `KUBERNETES_NAMESPACE` (else
//! `PATRONI_KUBERNETES_NAMESPACE`, else the service account's), the API from the in-cluster
//! configuration. API errors are retried with Patroni's backoff (0.5 s doubling, 10 times).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};
use patroni::agent::callbacks::CallbackAction;
use serde_json::json;

/// Points the primary's Endpoints at this pod, or labels this pod with its role (a Patroni
/// callback).
#[derive(Debug, Parser)]
#[command(name = "patroni-k8s-callback", version)]
struct Cli {
    /// The Endpoints object to point at this pod (default: the cluster's scope).
    #[arg(long, conflicts_with = "role_label")]
    endpoints: Option<String>,
    /// Label this pod with its role instead (Spilo's `callback_role.py`): the label's name.
    #[arg(long)]
    role_label: Option<String>,
    /// With `--role-label`: the value for `primary` (Patroni's `leader_label_value`).
    #[arg(long, default_value = "primary", requires = "role_label")]
    leader_label_value: String,
    /// With `--role-label`: the value for `replica` (`follower_label_value`).
    #[arg(long, default_value = "replica", requires = "role_label")]
    follower_label_value: String,
    /// With `--role-label`: the value for `standby_leader` (`standby_leader_label_value`).
    #[arg(long, default_value = "primary", requires = "role_label")]
    standby_leader_label_value: String,
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
    if let Some(label) = &cli.role_label {
        let Some(value) = label_value(&cli, &cli.action, &cli.role) else {
            return ExitCode::SUCCESS;
        };
        return match label_pod(label, value.as_deref()).await {
            Ok(pod) => {
                eprintln!(
                    "patroni-k8s-callback: pod {pod} labelled {label}={}",
                    value.as_deref().unwrap_or("(removed)")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("patroni-k8s-callback: {e:#}");
                ExitCode::FAILURE
            }
        };
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

/// What the role label becomes for `action` with `role`: `None` when the callback leaves it
/// alone (`on_reload`), `Some(None)` when it is removed (`on_stop`: Postgres is down, no
/// Service should route here), `Some(Some(value))` otherwise.
fn label_value(cli: &Cli, action: &str, role: &str) -> Option<Option<String>> {
    match action {
        "on_stop" => Some(None),
        "on_start" | "on_restart" | "on_role_change" => Some(Some(
            match role {
                "primary" | "master" => &cli.leader_label_value,
                "replica" => &cli.follower_label_value,
                "standby_leader" => &cli.standby_leader_label_value,
                other => other,
            }
            .to_owned(),
        )),
        _ => None,
    }
}

/// Sets (or, with `None`, removes) the label `label` on this pod; the pod's name.
async fn label_pod(label: &str, value: Option<&str>) -> anyhow::Result<String> {
    let pod = env_first(&["POD_NAME", "HOSTNAME"])
        .context("POD_NAME (or HOSTNAME) is not set: which pod to label")?;
    let client = kube::Client::try_default()
        .await
        .context("in-cluster Kubernetes configuration")?;
    let namespace = namespace(&client);
    let body = json!({"metadata": {"labels": {label: value}}});
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let (params, patch) = (PatchParams::default(), Patch::Merge(&body));
    with_retries(&format!("label pod {namespace}/{pod}"), || {
        api.patch(&pod, &params, &patch)
    })
    .await?;
    Ok(pod)
}

/// The pod's namespace: `POD_NAMESPACE`, `KUBERNETES_NAMESPACE`,
/// `PATRONI_KUBERNETES_NAMESPACE`, else the client's (the service account's).
fn namespace(client: &kube::Client) -> String {
    env_first(&[
        "POD_NAMESPACE",
        "KUBERNETES_NAMESPACE",
        "PATRONI_KUBERNETES_NAMESPACE",
    ])
    .unwrap_or_else(|| client.default_namespace().to_owned())
}

/// Runs `request` until it succeeds, fails for good (a 4xx answer other than 429), or has been
/// retried [`RETRIES`] times with Patroni's backoff.
async fn with_retries<T, F, Fut>(what: &str, mut request: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        match request().await {
            Ok(v) => return Ok(v),
            Err(kube::Error::Api(e)) if e.code < 500 && e.code != 429 => {
                anyhow::bail!("{what}: {e}")
            }
            Err(e) if attempt >= RETRIES => return Err(e).context(what.to_owned()),
            Err(e) => {
                eprintln!("patroni-k8s-callback: throttling API requests ({e})");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
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
    let namespace = namespace(&client);
    let name = cli.endpoints.clone().unwrap_or_else(|| cli.scope.clone());
    let mut port = json!({"port": cli.port, "protocol": "TCP"});
    if let Some(n) = &cli.port_name {
        port["name"] = json!(n);
    }
    let body = json!({"subsets": [{"addresses": [{"ip": ip.to_string()}], "ports": [port]}]});
    let api: Api<Endpoints> = Api::namespaced(client, &namespace);
    let (params, patch) = (PatchParams::default(), Patch::Merge(&body));
    with_retries(&format!("patch Endpoints {namespace}/{name}"), || {
        api.patch(&name, &params, &patch)
    })
    .await?;
    Ok(name)
}

fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(["patroni-k8s-callback"].iter().chain(args)).expect("arguments")
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Each role maps to the chart's label value; unknown roles keep their name (as Spilo's
    /// script writes the role it is given); `on_stop` removes the label; `on_reload` leaves it.
    #[test]
    fn role_label_values_follow_patronis_label_settings() {
        let c = cli(&[
            "--role-label",
            "spilo-role",
            "--leader-label-value",
            "master",
            "--follower-label-value",
            "replica",
            "--standby-leader-label-value",
            "standby",
            "on_start",
            "primary",
            "pg",
        ]);
        let v = |action: &str, role: &str| label_value(&c, action, role);
        assert_eq!(v("on_start", "primary"), Some(Some("master".into())));
        assert_eq!(v("on_role_change", "master"), Some(Some("master".into())));
        assert_eq!(v("on_role_change", "replica"), Some(Some("replica".into())));
        assert_eq!(
            v("on_restart", "standby_leader"),
            Some(Some("standby".into()))
        );
        assert_eq!(v("on_role_change", "demoted"), Some(Some("demoted".into())));
        assert_eq!(v("on_stop", "primary"), Some(None));
        assert_eq!(v("on_reload", "replica"), None);
    }

    /// The label values default to Patroni's `leader_label_value` and friends.
    #[test]
    fn label_values_default_to_patronis() {
        let c = cli(&["--role-label", "role", "on_start", "standby_leader", "pg"]);
        assert_eq!(
            label_value(&c, "on_start", "standby_leader"),
            Some(Some("primary".into()))
        );
        assert_eq!(
            label_value(&c, "on_start", "replica"),
            Some(Some("replica".into()))
        );
    }

    /// A label value without `--role-label`, or both ways at once, is refused.
    #[test]
    fn label_options_need_the_label_and_exclude_endpoints() {
        for args in [
            &["--leader-label-value", "m", "on_start", "primary", "pg"][..],
            &[
                "--role-label",
                "r",
                "--endpoints",
                "e",
                "on_start",
                "primary",
                "pg",
            ][..],
        ] {
            assert!(
                Cli::try_parse_from(["patroni-k8s-callback"].iter().chain(args)).is_err(),
                "{args:?}"
            );
        }
    }
}
