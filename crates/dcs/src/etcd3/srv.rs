//! DNS SRV discovery of the etcd cluster (`etcd3.srv`, `etcd3.srv_suffix`), as Patroni's
//! `_get_machines_cache_from_srv` (`patroni/dcs/etcd.py`) does it.
//!
//! The record kinds are tried in Patroni's order, `_etcd-client-ssl`, `_etcd-client`,
//! `_etcd-ssl`, `_etcd`, `_etcd-server-ssl`, `_etcd-server` (each with `-<srv_suffix>` when
//! set), under `._tcp.<srv>`; the first kind that yields an endpoint wins. Client kinds give
//! `http(s)://<target>:<port>` directly (`https` for the `-ssl` kinds). Server kinds name
//! etcd's *peer* port: each target is asked `GET /members` there (the peer API, HTTP/1.1
//! JSON; over TLS for `-server-ssl` without verifying the certificate, as Patroni's
//! `verify=False`) and the first that answers gives every member's client URLs. etcd's v3
//! gRPC member list is no substitute here: it is served on the client port, which a server
//! record does not name.
//!
//! Names are looked up with the system's resolver configuration (`/etc/resolv.conf`), read
//! afresh by each [`discover`], so a changed configuration or record is seen at the next
//! discovery (no answer is cached between discoveries).
//!
//! What breaks if this stalls: nothing beyond the caller's wait; each lookup and each peer
//! request has its own timeout.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use patroni_config::SrvDiscovery;

/// How long one DNS query may take before it is sent again (twice at most).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts of one DNS query.
const LOOKUP_ATTEMPTS: usize = 2;
/// Least time a peer's `GET /members` is given.
const MIN_PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// One kind of etcd SRV record, in the order Patroni looks them up ([`RecordKind::ORDER`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// `_etcd-client-ssl`: client endpoints over TLS.
    ClientSsl,
    /// `_etcd-client`: client endpoints.
    Client,
    /// `_etcd-ssl`: client endpoints over TLS (the older name).
    Ssl,
    /// `_etcd`: client endpoints (the older name).
    Plain,
    /// `_etcd-server-ssl`: peer endpoints over TLS, asked for the members' client URLs.
    ServerSsl,
    /// `_etcd-server`: peer endpoints, asked for the members' client URLs.
    Server,
}

/// Where SRV discovery found the etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The kind of record that gave the endpoints.
    pub kind: RecordKind,
    /// Client URLs (`http(s)://host:port`), without duplicates, in the order found.
    pub endpoints: Vec<String>,
}

/// Why SRV discovery found no endpoint.
#[derive(Debug, thiserror::Error)]
pub enum SrvError {
    /// The system's resolver configuration cannot be used.
    #[error("read the system's DNS configuration")]
    SystemConfig(#[source] hickory_resolver::net::NetError),
    /// No record of any kind led to an endpoint. Every lookup and peer request that failed
    /// is listed, in order (a name without records is not a failure).
    #[error("find etcd through the SRV records of {domain}: none leads to an endpoint{}",
        failures_text(.failures))]
    NothingFound {
        /// The domain searched.
        domain: String,
        /// What failed, one line each.
        failures: Vec<String>,
    },
}

// === impl RecordKind ===

impl RecordKind {
    /// Patroni's lookup order.
    pub const ORDER: [RecordKind; 6] = [
        RecordKind::ClientSsl,
        RecordKind::Client,
        RecordKind::Ssl,
        RecordKind::Plain,
        RecordKind::ServerSsl,
        RecordKind::Server,
    ];

    /// The service label without the suffix (`_etcd-client-ssl`).
    fn service(self) -> &'static str {
        match self {
            RecordKind::ClientSsl => "_etcd-client-ssl",
            RecordKind::Client => "_etcd-client",
            RecordKind::Ssl => "_etcd-ssl",
            RecordKind::Plain => "_etcd",
            RecordKind::ServerSsl => "_etcd-server-ssl",
            RecordKind::Server => "_etcd-server",
        }
    }

    /// The absolute name looked up: `_etcd-client-<suffix>._tcp.<domain>.`.
    pub fn record_name(self, srv: &SrvDiscovery) -> String {
        let suffix = srv
            .suffix
            .as_deref()
            .map(|s| format!("-{s}"))
            .unwrap_or_default();
        let domain = srv.domain.trim_end_matches('.');
        format!("{}{suffix}._tcp.{domain}.", self.service())
    }

    /// `https` for the `-ssl` kinds, else `http`.
    pub fn scheme(self) -> &'static str {
        match self {
            RecordKind::ClientSsl | RecordKind::Ssl | RecordKind::ServerSsl => "https",
            RecordKind::Client | RecordKind::Plain | RecordKind::Server => "http",
        }
    }

    /// Whether the records name peer ports (asked `GET /members`).
    pub fn is_server(self) -> bool {
        matches!(self, RecordKind::ServerSsl | RecordKind::Server)
    }
}

fn failures_text(failures: &[String]) -> String {
    if failures.is_empty() {
        String::new()
    } else {
        format!(" ({})", failures.join("; "))
    }
}

/// Looks the etcd cluster up through the SRV records of `srv`, in Patroni's order.
/// `peer_timeout` bounds each peer's `GET /members`.
///
/// # Errors
/// [`SrvError::SystemConfig`] when the resolver configuration cannot be read,
/// [`SrvError::NothingFound`] when no kind of record gives an endpoint.
pub async fn discover(srv: &SrvDiscovery, peer_timeout: Duration) -> Result<Found, SrvError> {
    let mut builder =
        hickory_resolver::Resolver::builder_tokio().map_err(SrvError::SystemConfig)?;
    let options = builder.options_mut();
    options.timeout = LOOKUP_TIMEOUT;
    options.attempts = LOOKUP_ATTEMPTS;
    let resolver = builder.build().map_err(SrvError::SystemConfig)?;
    let mut failures = Vec::new();
    for kind in RecordKind::ORDER {
        let name = kind.record_name(srv);
        let targets = match resolver.srv_lookup(name.as_str()).await {
            Ok(lookup) => targets_of(lookup.answers()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => continue,
            Err(e) => {
                tracing::debug!(name, "failed to look up SRV records: {e}");
                failures.push(format!("look up {name}: {e}"));
                continue;
            }
        };
        let mut endpoints = Vec::new();
        for (host, port) in targets {
            let url = format!("{}://{host}:{port}", kind.scheme());
            if !kind.is_server() {
                endpoints.push(url);
                continue;
            }
            match peer_client_urls(&url, peer_timeout).await {
                Ok(urls) => {
                    endpoints.extend(urls);
                    break;
                }
                Err(e) => {
                    tracing::warn!("failed to GET {url}/members: {e}");
                    failures.push(format!("GET {url}/members: {e}"));
                }
            }
        }
        let endpoints = dedup(endpoints);
        if !endpoints.is_empty() {
            tracing::debug!(name, ?endpoints, "etcd found through SRV records");
            return Ok(Found { kind, endpoints });
        }
    }
    Err(SrvError::NothingFound {
        domain: srv.domain.clone(),
        failures,
    })
}

/// `(host, port)` of each SRV answer, the host without its final dot; a target of `.`
/// ("no service here", RFC 2782) is skipped.
fn targets_of(answers: &[hickory_resolver::proto::rr::Record]) -> Vec<(String, u16)> {
    answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_resolver::proto::rr::RData::SRV(srv) => {
                let host = srv.target.to_ascii();
                let host = host.trim_end_matches('.');
                (!host.is_empty()).then(|| (host.to_owned(), srv.port))
            }
            _ => None,
        })
        .collect()
}

/// The first occurrence of each URL, in order.
fn dedup(urls: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(urls.len());
    for u in urls {
        if !out.contains(&u) {
            out.push(u);
        }
    }
    out
}

/// Why a peer's member list could not be had.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error("set up TLS")]
    Tls(#[source] patroni_api::ClientTlsError),
    #[error("bad URL")]
    Url(#[source] http::Error),
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("reading the answer failed")]
    Body(#[source] hyper::Error),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("answered {0}")]
    Status(http::StatusCode),
    #[error("the member list does not parse")]
    Parse(#[source] serde_json::Error),
}

/// `GET <peer>/members`: every member's client URLs (etcd's peer API answers
/// `[{"id":…,"name":…,"peerURLs":[…],"clientURLs":[…]}]`). TLS certificates are not verified
/// (Patroni's `requests_get(..., verify=False)`).
async fn peer_client_urls(peer: &str, timeout: Duration) -> Result<Vec<String>, PeerError> {
    let tls = patroni_api::ClientTls {
        insecure: true,
        ..Default::default()
    }
    .client_config()
    .map_err(PeerError::Tls)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let request = http::Request::get(format!("{peer}/members"))
        .body(Empty::new())
        .map_err(PeerError::Url)?;
    let timeout = timeout.max(MIN_PEER_TIMEOUT);
    let body = tokio::time::timeout(timeout, async {
        let response = client.request(request).await.map_err(PeerError::Request)?;
        let status = response.status();
        if status.as_u16() >= 400 {
            return Err(PeerError::Status(status));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(PeerError::Body)?;
        Ok(body.to_bytes())
    })
    .await
    .map_err(|_| PeerError::TimedOut(timeout))??;
    client_urls_of(&body).map_err(PeerError::Parse)
}

/// Every client URL in etcd's peer-API member list.
fn client_urls_of(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct PeerMember {
        #[serde(rename = "clientURLs", default)]
        client_urls: Vec<String>,
    }
    let members: Vec<PeerMember> = serde_json::from_slice(body)?;
    Ok(members.into_iter().flat_map(|m| m.client_urls).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(domain: &str, suffix: Option<&str>) -> SrvDiscovery {
        SrvDiscovery {
            domain: domain.into(),
            suffix: suffix.map(String::from),
        }
    }

    /// The names and schemes, in Patroni's order, with and without a suffix.
    #[test]
    fn record_names_follow_patronis_order_and_suffix() {
        let names: Vec<(String, &str)> = RecordKind::ORDER
            .iter()
            .map(|k| (k.record_name(&srv("example.org", None)), k.scheme()))
            .collect();
        let expected = [
            ("_etcd-client-ssl._tcp.example.org.", "https"),
            ("_etcd-client._tcp.example.org.", "http"),
            ("_etcd-ssl._tcp.example.org.", "https"),
            ("_etcd._tcp.example.org.", "http"),
            ("_etcd-server-ssl._tcp.example.org.", "https"),
            ("_etcd-server._tcp.example.org.", "http"),
        ];
        let expected: Vec<(String, &str)> =
            expected.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        assert_eq!(names, expected);
        assert_eq!(
            RecordKind::Plain.record_name(&srv("example.org.", Some("prod"))),
            "_etcd-prod._tcp.example.org."
        );
        assert_eq!(
            RecordKind::ServerSsl.record_name(&srv("example.org", Some("prod"))),
            "_etcd-server-ssl-prod._tcp.example.org."
        );
        assert!(RecordKind::Server.is_server() && !RecordKind::Client.is_server());
    }

    /// etcd's peer `/members` answer gives every member's client URLs.
    #[test]
    fn peer_member_list_gives_client_urls() {
        let body = br#"[{"id":1,"name":"a","peerURLs":["http://a:2380"],"clientURLs":["http://a:2379"]},
            {"id":2,"name":"b","peerURLs":["http://b:2380"],"clientURLs":["http://b:2379","http://b:2381"]},
            {"id":3,"name":"","peerURLs":["http://c:2380"]}]"#;
        assert_eq!(
            client_urls_of(body).expect("parses"),
            ["http://a:2379", "http://b:2379", "http://b:2381"]
        );
        assert!(client_urls_of(b"{}").is_err());
        assert_eq!(dedup(vec!["a".into(), "b".into(), "a".into()]), ["a", "b"]);
    }
}
