//! Which DCS the bench's cluster keeps its state in (`--dcs`): starting the store in the
//! bench's lab, pointing a member's configuration at it, and counting the requests it served.
//!
//! - **Kubernetes**: the lab's API server. A FlowSchema of the bench's own routes the members'
//!   identity to the default priority level, so
//!   `apiserver_flowcontrol_dispatched_requests_total{flow_schema=…}` counts exactly the
//!   members' requests (a watch once, when it is opened).
//! - **etcd v3**: the lab's etcd (`testenv etcd`, one member) on a host of its own. Its
//!   `/metrics` (an embedded etcd has no per-method `grpc_server_*` counters) give
//!   `etcd_server_client_requests_total`: one per unary call (Range, Txn, Put, DeleteRange,
//!   LeaseGrant, …) and one per stream opened (watch, lease keep-alive), plus
//!   `etcd_debugging_lease_renewed_total`: one per lease renewal, i.e. per keep-alive message
//!   on an open stream. The sum is what the bench counts. Nothing but the members talks to it.
//! - **ZooKeeper**: Debian's ZooKeeper, standalone, on a host of its own. The four-letter word
//!   `srvr` reports `Received`: packets received from clients, i.e. every request and every
//!   session ping (four-letter words themselves are not counted). Nothing but the members
//!   talks to it.
//!
//! The store's server is stopped (by pid) when the `Store` is dropped.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use patroni_testlab::{AgentSpec, EtcdServer, Host, Lab, ZookeeperServer};

/// A FlowSchema of our own that catches every request of the members' identity.
const FLOW_SCHEMA: &str = "patroni-bench-members";
/// The members' static-token identity (user #0 of the control plane).
const MEMBER_USER: &str = "testenv-user-00";
/// How long one read of a store's counter may take.
const COUNTER_TIMEOUT: Duration = Duration::from_secs(10);

/// `--dcs`: the store the cluster's state lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DcsKind {
    /// The lab's Kubernetes API server (ConfigMaps, or Endpoints with `--use-endpoints`).
    Kubernetes,
    /// A real etcd (v3 API) on a lab host: an `etcd3:` section.
    Etcd3,
    /// A real ZooKeeper on a lab host: a `zookeeper:` section.
    Zookeeper,
}

// === impl DcsKind ===

impl DcsKind {
    /// The `--dcs` value.
    pub fn arg(self) -> &'static str {
        match self {
            DcsKind::Kubernetes => "kubernetes",
            DcsKind::Etcd3 => "etcd3",
            DcsKind::Zookeeper => "zookeeper",
        }
    }
}

/// A running store and how its requests are counted.
pub(crate) enum Store {
    /// The lab's API server; requests counted under `flow_schema`.
    Kubernetes { flow_schema: String },
    /// etcd on `host`.
    Etcd3 { server: EtcdServer, host: Host },
    /// ZooKeeper on `host`.
    Zookeeper { server: ZookeeperServer, host: Host },
}

// === impl Store ===

impl Store {
    /// Starts the store of `kind` in `lab` (for Kubernetes, only the FlowSchema).
    ///
    /// # Errors
    /// The store's server could not be started.
    pub async fn start(kind: DcsKind, lab: &Lab) -> anyhow::Result<Self> {
        Ok(match kind {
            DcsKind::Kubernetes => Store::Kubernetes {
                flow_schema: api_flow_schema(lab).await,
            },
            DcsKind::Etcd3 => {
                let host = lab.host("etcd").context("etcd host")?;
                let server = EtcdServer::start_on(&host).context("start etcd")?;
                println!("bench: etcd at {}", server.client_url());
                Store::Etcd3 { server, host }
            }
            DcsKind::Zookeeper => {
                let host = lab.host("zookeeper").context("ZooKeeper host")?;
                let server = ZookeeperServer::start_on(&host).context("start ZooKeeper")?;
                println!("bench: ZooKeeper at {}", server.host_port());
                Store::Zookeeper { server, host }
            }
        })
    }

    /// Points a member's configuration at this store (Kubernetes members keep their
    /// `kubernetes` section).
    pub fn configure(&self, spec: &mut AgentSpec) {
        match self {
            Store::Kubernetes { .. } => {}
            Store::Etcd3 { server, .. } => spec.etcd3_hosts = vec![server.host_port().to_owned()],
            Store::Zookeeper { server, .. } => {
                spec.zookeeper_hosts = vec![server.host_port().to_owned()];
            }
        }
    }

    /// The store and its version, for the report (`etcd 3.6.5`).
    pub fn describe(&self, lab: &Lab) -> String {
        match self {
            Store::Kubernetes { .. } => format!("Kubernetes {}", lab.controlplane().version),
            Store::Etcd3 { server, host } => {
                let version = host
                    .command("curl")
                    .args(["-s", "--max-time", "5"])
                    .arg(format!("{}/version", server.client_url()))
                    .output()
                    .ok()
                    .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
                    .and_then(|v| v["etcdserver"].as_str().map(String::from))
                    .unwrap_or_else(|| "(version unknown)".into());
                format!("etcd {version} (one member, on a lab host of its own)")
            }
            Store::Zookeeper { server, host } => {
                let version = four_letter_word(host, server.host_port(), "srvr")
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("Zookeeper version: "))
                            .map(|v| v.split([',', '-']).next().unwrap_or(v).trim().to_owned())
                    })
                    .unwrap_or_else(|| "(version unknown)".into());
                format!("ZooKeeper {version} (standalone, on a lab host of its own)")
            }
        }
    }

    /// The report's name of what [`Store::requests`] counts.
    pub fn requests_label(&self) -> &'static str {
        match self {
            Store::Kubernetes { .. } => "Kubernetes API requests",
            Store::Etcd3 { .. } => "etcd requests (calls, streams opened, lease renewals)",
            Store::Zookeeper { .. } => "ZooKeeper requests and pings (packets received)",
        }
    }

    /// How [`Store::requests`] counts, for the report's "How measured".
    pub fn requests_how(&self) -> &'static str {
        match self {
            Store::Kubernetes { .. } => {
                "delta of the API server's `apiserver_flowcontrol_dispatched_requests_total` \
                 for a FlowSchema the bench creates that matches only the members' user \
                 (`testenv-user-00`), read from the API server's `/metrics` — so it counts \
                 every request of the three agents (a watch once, when it is opened) and \
                 nothing else"
            }
            Store::Etcd3 { .. } => {
                "delta of etcd's `etcd_server_client_requests_total` (one per unary gRPC \
                 call — Range, Txn, Put, DeleteRange, LeaseGrant, … — and one per stream \
                 opened, such as a watch or a lease keep-alive stream) plus \
                 `etcd_debugging_lease_renewed_total` (one per lease renewal, i.e. per \
                 keep-alive message on an open stream), read from etcd's `/metrics`; a \
                 watch's events and further messages on an open watch stream are not \
                 counted; only the three agents talk to this etcd"
            }
            Store::Zookeeper { .. } => {
                "delta of `Received` in ZooKeeper's `srvr` four-letter word: packets \
                 received from clients, i.e. every request and every session ping (a ping \
                 every third of the session timeout on an idle session); only the three \
                 agents talk to this ZooKeeper"
            }
        }
    }

    /// Requests the store served so far (see the module doc); `None` if it cannot say.
    pub fn requests(&self, lab: &Lab) -> Option<f64> {
        match self {
            Store::Kubernetes { flow_schema } => api_requests(lab, flow_schema),
            Store::Etcd3 { server, host } => {
                let out = host
                    .command("curl")
                    .args(["-s", "--max-time", "10"])
                    .arg(format!("{}/metrics", server.client_url()))
                    .output()
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout);
                Some(
                    sum_metric(&text, "etcd_server_client_requests_total", None)?
                        + sum_metric(&text, "etcd_debugging_lease_renewed_total", None)?,
                )
            }
            Store::Zookeeper { server, host } => {
                four_letter_word(host, server.host_port(), "srvr")?
                    .lines()
                    .find_map(|l| l.strip_prefix("Received: "))?
                    .trim()
                    .parse()
                    .ok()
            }
        }
    }
}

/// Sends the four-letter word `word` to ZooKeeper at `addr` from `host`; the answer.
fn four_letter_word(host: &Host, addr: &str, word: &str) -> Option<String> {
    let (addr, word) = (addr.to_owned(), word.to_owned());
    host.run_inside(move || {
        let addr = addr.parse().ok()?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, COUNTER_TIMEOUT).ok()?;
        s.set_read_timeout(Some(COUNTER_TIMEOUT)).ok()?;
        s.write_all(word.as_bytes()).ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        Some(answer)
    })
    .ok()
    .flatten()
}

/// The sum of every sample of the Prometheus counter `name` in `text` (only the samples that
/// carry `label`, if given); `None` if `text` has no such metric at all. A counter that has
/// no sample yet is zero when its family is known (`# TYPE` line).
fn sum_metric(text: &str, name: &str, label: Option<&str>) -> Option<f64> {
    let mut found = false;
    let sum = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| label.is_none_or(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .inspect(|_| found = true)
        .sum();
    (found || text.contains(&format!("# TYPE {name} "))).then_some(sum)
}

/// Creates a FlowSchema routing the members' identity to the default
/// priority level, so the API server's
/// `apiserver_flowcontrol_dispatched_requests_total{flow_schema=…}` counts
/// exactly the members' requests. Falls back to `global-default` (where a
/// plain authenticated user lands anyway) if it cannot be created.
async fn api_flow_schema(lab: &Lab) -> String {
    let created = async {
        let client = lab.controlplane().admin_client().await?;
        let gvk = GroupVersionKind::gvk("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema");
        let api: Api<DynamicObject> = Api::all_with(client, &ApiResource::from_gvk(&gvk));
        let fs: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": FLOW_SCHEMA},
            "spec": {
                "priorityLevelConfiguration": {"name": "global-default"},
                "matchingPrecedence": 100,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [{
                    "subjects": [{"kind": "User", "user": {"name": MEMBER_USER}}],
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                        "namespaces": ["*"], "clusterScope": true}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
                }]
            }
        }))?;
        api.create(&PostParams::default(), &fs).await?;
        anyhow::Ok(())
    }
    .await;
    match created {
        Ok(()) => FLOW_SCHEMA.to_string(),
        Err(e) => {
            eprintln!("bench: no FlowSchema of our own ({e:#}); counting global-default");
            "global-default".to_string()
        }
    }
}

/// Requests the API server dispatched under `flow_schema` so far.
fn api_requests(lab: &Lab, flow_schema: &str) -> Option<f64> {
    let cp = lab.controlplane();
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(&cp.ca_file)
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", cp.admin_token))
        .arg(format!("{}/metrics", cp.server.trim_end_matches('/')))
        .output()
        .ok()?;
    sum_metric(
        &String::from_utf8_lossy(&out.stdout),
        "apiserver_flowcontrol_dispatched_requests_total",
        Some(&format!("flow_schema=\"{flow_schema}\"")),
    )
}

#[cfg(test)]
mod tests {
    use super::sum_metric;

    /// Samples of one counter are summed, other counters and other labels are not.
    #[test]
    fn a_counter_is_summed_over_its_samples() {
        let text = "\
# TYPE etcd_server_client_requests_total counter
etcd_server_client_requests_total{client_api_version=\"3.6\",type=\"unary\"} 12
etcd_server_client_requests_total{client_api_version=\"3.6\",type=\"stream\"} 30
etcd_server_client_requests_total_other 99
etcd_debugging_lease_renewed_total 7
";
        assert_eq!(
            sum_metric(text, "etcd_server_client_requests_total", None),
            Some(42.0)
        );
        assert_eq!(
            sum_metric(text, "etcd_debugging_lease_renewed_total", None),
            Some(7.0)
        );
        assert_eq!(
            sum_metric(
                text,
                "etcd_server_client_requests_total",
                Some("type=\"unary\"")
            ),
            Some(12.0)
        );
        assert_eq!(sum_metric(text, "no_such_total", None), None);
        assert_eq!(
            sum_metric(
                "# TYPE x_total counter\n",
                "x_total",
                Some("flow_schema=\"a\"")
            ),
            Some(0.0)
        );
    }
}
