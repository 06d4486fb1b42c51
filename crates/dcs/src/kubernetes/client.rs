//! The Kubernetes clients of the DCS: where the API server is, who we are,
//! and the timeouts, derived from the settings as Patroni derives them.
//!
//! - In a pod (the caller saw `KUBERNETES_SERVICE_HOST` in its environment,
//!   [`ClientSource::in_cluster`], and the service account token is present):
//!   the service's address, the token (re-read by kube when rotated) and
//!   `kubernetes.cacert` or the service account CA.
//! - Elsewhere, or when the in-cluster configuration is unusable: the
//!   kubeconfig at `$KUBECONFIG` or `~/.kube/config`, with context
//!   `kubernetes.context` (Patroni's default is `kind-kind`, not the current
//!   context). When both fail, the error carries both causes.
//! - `bypass_api_service`: the API server's own addresses from
//!   `default/endpoints/kubernetes`, verified against the in-cluster name
//!   `kubernetes.default.svc` instead of the IP; a 403 turns the bypass off.
//!
//! Connections use TCP keepalive tuned like Patroni's ([`Keepalive`]).
//! Two clients: one for requests, each bounded by half the retry budget
//! (Patroni allows two attempts per `retry_timeout`) while its connection
//! stays pooled between cycles, and one for watches, which must sit idle for
//! as long as nothing changes.

use std::time::Duration;

use k8s_openapi::api::core::v1::Endpoints;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::accounting::{CountingLayer, RequestCounter};
use crate::{Error, Result};

/// Path of the service account token kube's in-cluster configuration reads.
const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Why no Kubernetes client could be configured; the cause of
/// [`Error::Config`] from [`KubernetesDcs::start`](super::KubernetesDcs::start).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `kubernetes.cacert` cannot be read.
    #[error("read kubernetes.cacert {}", path.display())]
    ReadCacert {
        /// The configured path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `kubernetes.cacert` is not a PEM bundle.
    #[error("kubernetes.cacert")]
    ParseCacert(#[source] rustls_pki_types::pem::Error),
    /// `kubernetes.cacert` holds no certificate.
    #[error("kubernetes.cacert: no certificate in the file")]
    NoCertificate,
    /// The kubeconfig cannot be read.
    #[error("read kubeconfig")]
    ReadKubeconfig(#[source] kube::config::KubeconfigError),
    /// The kubeconfig has no usable context of this name.
    #[error("kubeconfig context {context:?}")]
    Context {
        /// `kubernetes.context`.
        context: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// In-cluster credentials were offered but unusable, and the kubeconfig tried next
    /// failed too: both causes.
    #[error("in-cluster configuration unusable ({in_cluster}), and the kubeconfig failed")]
    NeitherSource {
        /// Why the in-cluster configuration failed.
        in_cluster: kube::config::InClusterError,
        /// Why the kubeconfig failed.
        #[source]
        kubeconfig: Box<ClientError>,
    },
    /// An API server address from `default/endpoints/kubernetes` is not a URL.
    #[error("API server address {address}")]
    Address {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// The HTTP client cannot be built from the configuration (TLS, authentication).
    #[error("build the HTTP client")]
    Build(#[source] kube::Error),
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        Error::Config {
            what: "configure the Kubernetes client".into(),
            source: Some(Box::new(e)),
        }
    }
}

/// Clients and the identity they were built with.
#[derive(Clone)]
pub struct Clients {
    /// For reads and writes (read timeout applies).
    pub request: kube::Client,
    /// For watches (no read timeout).
    pub watch: kube::Client,
    /// The API server URL in use.
    pub server: String,
    /// Whether requests go straight to an API server (`bypass_api_service`
    /// in effect) rather than through the configured address.
    pub bypassing: bool,
}

/// Timeouts derived from the loop settings.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// `retry_timeout`: the budget of one operation, retries included.
    pub retry: Duration,
}

// === impl Timeouts ===

impl Timeouts {
    /// One attempt: half the budget (two attempts fit in it).
    pub fn request(self) -> Duration {
        self.retry / 2
    }

    /// Connecting: half an attempt, at least 1 s.
    pub fn connect(self) -> Duration {
        (self.request() / 2).max(Duration::from_secs(1))
    }
}

/// Where the client configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ClientSource {
    /// kubeconfig context used outside a cluster.
    pub context: String,
    /// CA bundle overriding the service account's, in a cluster.
    pub cacert: Option<std::path::PathBuf>,
    /// Go straight to the API server addresses.
    pub bypass_api_service: bool,
    /// Explicit kubeconfig path (else `$KUBECONFIG` / `~/.kube/config`).
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The caller's environment offers in-cluster credentials
    /// (`KUBERNETES_SERVICE_HOST` is set); read once by the caller, never here.
    pub in_cluster: bool,
}

/// Builds the request and watch clients, counting every request.
///
/// # Errors
/// [`Error::Config`] (caused by a [`ClientError`]) when neither in-cluster
/// credentials nor the kubeconfig context can be used.
pub async fn connect(
    source: &ClientSource,
    timeouts: Timeouts,
    keepalive: Keepalive,
    counter: &RequestCounter,
) -> Result<Clients> {
    let mut config = base_config(source).await?;
    config.default_retry = false;
    config.connect_timeout = Some(timeouts.connect());
    config.write_timeout = Some(timeouts.request());
    if let Ok(ua) =
        http::HeaderValue::from_str(&format!("patroni-rs/{}", env!("CARGO_PKG_VERSION")))
    {
        config.headers.push((http::header::USER_AGENT, ua));
    }
    let mut bypassing = false;
    if source.bypass_api_service {
        let probe = build(config.clone(), Some(timeouts.request()), keepalive, counter)?;
        match api_server_addresses(&probe).await {
            Ok(addrs) if !addrs.is_empty() => {
                let pick = &addrs[jitter_index(addrs.len())];
                tracing::info!(server = %pick, "bypassing the kubernetes Service");
                config.cluster_url = pick.parse().map_err(|source| ClientError::Address {
                    address: pick.clone(),
                    source,
                })?;
                config.tls_server_name = Some("kubernetes.default.svc".into());
                bypassing = true;
            }
            Ok(_) => tracing::warn!(
                "default/endpoints/kubernetes lists no API server; using the Service"
            ),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                tracing::warn!(
                    "bypass_api_service disabled: no permission to read default/endpoints/kubernetes"
                )
            }
            Err(e) => tracing::warn!(
                "failed to get default/endpoints/kubernetes: {e}; using the Service address"
            ),
        }
    }
    let server = config.cluster_url.to_string();
    Ok(Clients {
        request: build(config.clone(), Some(timeouts.request()), keepalive, counter)?,
        watch: build(config, None, keepalive, counter)?,
        server,
        bypassing,
    })
}

async fn base_config(source: &ClientSource) -> Result<kube::Config, ClientError> {
    let in_cluster = source.in_cluster && std::path::Path::new(SERVICE_ACCOUNT_TOKEN).exists();
    configure(source, in_cluster).await
}

/// In-cluster credentials when `in_cluster` and no kubeconfig is named, else (or when they
/// are unusable) the kubeconfig.
async fn configure(source: &ClientSource, in_cluster: bool) -> Result<kube::Config, ClientError> {
    let mut in_cluster_error = None;
    if in_cluster && source.kubeconfig.is_none() {
        match kube::Config::incluster() {
            Ok(mut c) => {
                if let Some(ca) = &source.cacert {
                    let pem = std::fs::read(ca).map_err(|e| ClientError::ReadCacert {
                        path: ca.clone(),
                        source: e,
                    })?;
                    c.root_cert = Some(pem_certs(&pem)?);
                    c.root_cert_file = Some(ca.clone());
                }
                return Ok(c);
            }
            Err(e) => {
                tracing::warn!("in-cluster configuration unusable ({e}); trying the kubeconfig");
                in_cluster_error = Some(e);
            }
        }
    }
    kubeconfig(source)
        .await
        .map_err(|e| match in_cluster_error {
            Some(in_cluster) => ClientError::NeitherSource {
                in_cluster,
                kubeconfig: Box::new(e),
            },
            None => e,
        })
}

/// The configuration of context `source.context` of the kubeconfig.
async fn kubeconfig(source: &ClientSource) -> Result<kube::Config, ClientError> {
    let kc = match &source.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(ClientError::ReadKubeconfig)?;
    let options = KubeConfigOptions {
        context: Some(source.context.clone()),
        ..Default::default()
    };
    kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| ClientError::Context {
            context: source.context.clone(),
            source: e,
        })
}

fn pem_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(ClientError::ParseCacert)?;
    if certs.is_empty() {
        return Err(ClientError::NoCertificate);
    }
    Ok(certs)
}

fn build(
    config: kube::Config,
    request_timeout: Option<Duration>,
    keepalive: Keepalive,
    counter: &RequestCounter,
) -> Result<kube::Client, ClientError> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use kube::client::ConfigExt;
    use tower::ServiceBuilder;

    let client_err = ClientError::Build;
    // kube's default stack, with TCP keepalive on the connector so a dead
    // connection (a watch in particular) is noticed, as Patroni tunes it.
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_keepalive(Some(keepalive.idle));
    http.set_keepalive_interval(Some(keepalive.interval));
    http.set_keepalive_retries(Some(KEEPALIVE_PROBES));
    let https = config
        .rustls_https_connector_with_connector(http)
        .map_err(client_err)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_write_timeout(config.write_timeout);
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    // The timeout bounds each request, not the connection: as a connector read timeout it also
    // ran on pooled idle connections and closed them after `request_timeout` (5 s with the
    // default timings), so every request a loop_wait apart opened a new TCP connection and TLS
    // session (Patroni's urllib3 pool keeps its connection; issue #19, idle CPU).
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(client_err)?)
        .layer(config.extra_headers_layer().map_err(client_err)?)
        .layer(CountingLayer(counter.clone()))
        .option_layer(request_timeout.map(tower::timeout::TimeoutLayer::new))
        .map_err(tower::BoxError::from)
        .service(client);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// Probes before a silent connection counts as dead (Patroni: 3).
const KEEPALIVE_PROBES: u32 = 3;

/// TCP keepalive of API connections, from the loop timings (Patroni:
/// idle = loop_wait + retry_timeout, interval = max(1 s, (ttl - idle) / 3)).
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
}

// === impl Keepalive ===

impl Keepalive {
    /// Patroni's values for these timings.
    pub fn new(ttl: Duration, loop_wait: Duration, retry_timeout: Duration) -> Self {
        let idle = loop_wait + retry_timeout;
        let interval = (ttl.saturating_sub(idle) / 3).max(Duration::from_secs(1));
        Keepalive { idle, interval }
    }
}

/// `https://IP:PORT` of every API server, from `default/endpoints/kubernetes`
/// (port named `https`, TCP).
async fn api_server_addresses(client: &kube::Client) -> Result<Vec<String>, kube::Error> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = api.get("kubernetes").await?;
    let mut out = Vec::new();
    for subset in ep.subsets.unwrap_or_default() {
        let Some(port) = subset.ports.iter().flatten().find(|p| {
            p.name.as_deref() == Some("https") && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        }) else {
            continue;
        };
        for a in subset.addresses.iter().flatten() {
            let host = if a.ip.contains(':') {
                format!("[{}]", a.ip)
            } else {
                a.ip.clone()
            };
            out.push(format!("https://{host}:{}", port.port));
        }
    }
    Ok(out)
}

fn jitter_index(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(n);
    (h.finish() as usize) % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When in-cluster credentials are offered but unusable and the kubeconfig fails too,
    /// the error keeps both causes.
    #[tokio::test]
    async fn a_failed_fallback_keeps_both_causes() {
        let source = ClientSource {
            context: "no-such-context-patroni-rs-test".into(),
            ..Default::default()
        };
        let Err(e) = configure(&source, true).await else {
            // Running in a pod with a service account: in-cluster credentials work.
            return;
        };
        let ClientError::NeitherSource { kubeconfig, .. } = &e else {
            panic!("both causes expected: {e:?}");
        };
        assert!(
            matches!(
                **kubeconfig,
                ClientError::ReadKubeconfig(_) | ClientError::Context { .. }
            ),
            "{kubeconfig:?}"
        );
        let Error::Config {
            source: Some(cause),
            ..
        } = Error::from(e)
        else {
            panic!("a configuration error with its cause");
        };
        assert!(
            cause
                .to_string()
                .starts_with("in-cluster configuration unusable (")
        );
    }

    /// Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10) give
    /// 20 s idle and 3.33 s between probes; short ttls floor at 1 s.
    #[test]
    fn keepalive_follows_patroni() {
        let s = Duration::from_secs;
        let k = Keepalive::new(s(30), s(10), s(10));
        assert_eq!(
            (k.idle, k.interval),
            (
                s(20),
                Duration::from_millis(3333) + Duration::from_nanos(333_333)
            )
        );
        let k = Keepalive::new(s(3), s(1), s(4));
        assert_eq!((k.idle, k.interval), (s(5), s(1)));
    }

    /// One attempt gets half the retry budget; connecting half of that, at least 1 s.
    #[test]
    fn timeouts_split_the_retry_budget() {
        let t = Timeouts {
            retry: Duration::from_secs(10),
        };
        assert_eq!(
            (t.request(), t.connect()),
            (Duration::from_secs(5), Duration::from_millis(2500))
        );
        let t = Timeouts {
            retry: Duration::from_secs(2),
        };
        assert_eq!(t.connect(), Duration::from_secs(1));
    }
}
