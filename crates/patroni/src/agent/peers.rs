//! Asking other members' REST APIs how they are (`GET <api_url>`), for the leader race
//! ([`Action::CheckPeers`](patroni_core::ha::Action::CheckPeers)) and the switchover
//! candidate probe of the API; and calling them as the primary through a DCS outage in
//! failsafe mode (`POST /failsafe`,
//! [`Action::CheckFailsafe`](patroni_core::ha::Action::CheckFailsafe)).
//!
//! Every request has [`PEER_TIMEOUT`]; `GET`s have no retries, a failsafe call one, as in
//! Patroni; a member that does not answer in time, or answers something unreadable, counts as
//! unreachable. Failsafe calls carry `ctl.authentication` (else `restapi.authentication`) as
//! basic auth, as Patroni's member requests do. `https` API URLs
//! are spoken to as Patroni's daemon does: without verifying the server's certificate unless
//! `ctl.certfile` is set (then its chain against `ctl.cacert`, else `restapi.cafile`, but not
//! the host name it is for), presenting
//! `ctl.certfile`/`ctl.keyfile` as client certificate.

use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use patroni_core::ha::{PeerReply, PeerStatus, PeerTarget};
use serde_json::Value;

/// How long one member may take to answer `GET /patroni` (Patroni: 2 s).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times a failsafe call is sent at most (Patroni: one retry).
const FAILSAFE_ATTEMPTS: usize = 2;

/// An HTTP client for member APIs. Cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `Authorization: Basic …` for requests that change something.
    authorization: Option<HeaderValue>,
}

/// A member's answer to a failsafe call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailsafeAnswer {
    /// The member.
    pub name: String,
    /// It answered 200 `Accepted`.
    pub accepted: bool,
    /// Its received/replayed WAL position (`lsn` header), when given.
    pub lsn: Option<u64>,
}

// === impl PeerClient ===

impl Default for PeerClient {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerClient {
    /// A client with Patroni's timeouts that accepts any server certificate.
    pub fn new() -> Self {
        let tls = patroni_api::ClientTls {
            insecure: true,
            ..Default::default()
        };
        // An insecure client without a client certificate reads no file: it cannot fail.
        Self::with_tls(&tls).unwrap_or_else(|_| unreachable!("insecure TLS reads no file"))
    }

    /// A client for the members of a cluster configured as `config` says.
    ///
    /// # Errors
    /// A `ctl` certificate file cannot be used.
    pub fn from_config(
        config: &patroni_config::Config,
    ) -> Result<Self, patroni_api::ClientTlsError> {
        let ctl = &config.ctl;
        let mut client = Self::with_tls(&patroni_api::ClientTls {
            insecure: ctl.certfile.is_none(),
            cacert: ctl.cacert.clone().or_else(|| config.restapi.cafile.clone()),
            certfile: ctl.certfile.clone(),
            keyfile: ctl.keyfile.clone(),
            verify_hostname: false,
        })?;
        let auth = ctl
            .authentication
            .as_ref()
            .or(config.restapi.authentication.as_ref());
        client.authorization = auth.and_then(|a| {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", a.username, a.password));
            HeaderValue::from_str(&format!("Basic {token}")).ok()
        });
        Ok(client)
    }

    fn with_tls(tls: &patroni_api::ClientTls) -> Result<Self, patroni_api::ClientTlsError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(PEER_TIMEOUT));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.client_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            authorization: None,
        })
    }

    /// Whether `GET url` gets any HTTP answer (whatever its status) within `timeout`.
    pub async fn answers(&self, url: &str, timeout: std::time::Duration) -> bool {
        let Ok(uri) = url.parse::<hyper::Uri>() else {
            return false;
        };
        matches!(
            tokio::time::timeout(timeout, self.client.get(uri)).await,
            Ok(Ok(_))
        )
    }

    /// `GET url` as JSON, within [`PEER_TIMEOUT`]; `None` on any failure.
    pub async fn get_json(&self, url: &str) -> Option<Value> {
        let uri: hyper::Uri = url.parse().ok()?;
        let fetch = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?
                .to_bytes();
            serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
        };
        match tokio::time::timeout(PEER_TIMEOUT, fetch).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                tracing::warn!("Request failed: GET {url} ({e})");
                None
            }
            Err(_) => {
                tracing::warn!("Request failed: GET {url} (timed out)");
                None
            }
        }
    }

    /// `POST <api_url of target, path /failsafe>` with `body` to every target in parallel,
    /// each within [`PEER_TIMEOUT`] and retried once.
    pub async fn call_failsafe(
        &self,
        targets: &[PeerTarget],
        body: &serde_json::Value,
    ) -> Vec<FailsafeAnswer> {
        let body = Bytes::from(body.to_string());
        let mut tasks = tokio::task::JoinSet::new();
        for target in targets {
            let client = self.clone();
            let target = target.clone();
            let body = body.clone();
            tasks.spawn(async move {
                let url = endpoint_url(&target.api_url, "failsafe");
                let mut answer = FailsafeAnswer {
                    name: target.name.clone(),
                    accepted: false,
                    lsn: None,
                };
                for _ in 0..FAILSAFE_ATTEMPTS {
                    match client.post_once(&url, body.clone()).await {
                        Ok((status, text, lsn)) => {
                            tracing::info!("Got response from {} {url}: {text}", target.name);
                            answer.accepted = status == 200 && text == "Accepted";
                            answer.lsn = lsn;
                            break;
                        }
                        Err(e) => {
                            tracing::warn!("Request failed to {}: POST {url} ({e})", target.name);
                        }
                    }
                }
                answer
            });
        }
        let mut answers = Vec::with_capacity(targets.len());
        while let Some(joined) = tasks.join_next().await {
            if let Ok(answer) = joined {
                answers.push(answer);
            }
        }
        answers
    }

    /// One `POST url` with a JSON `body`: status, body text and `lsn` header.
    async fn post_once(
        &self,
        url: &str,
        body: Bytes,
    ) -> Result<(u16, String, Option<u64>), String> {
        let mut request = hyper::Request::post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        if let Some(auth) = &self.authorization {
            request.headers_mut().insert(AUTHORIZATION, auth.clone());
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
            let status = response.status().as_u16();
            let lsn = response
                .headers()
                .get("lsn")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let text = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&text).into_owned(), lsn))
        };
        tokio::time::timeout(PEER_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    }

    /// Asks every target in parallel.
    pub async fn check(&self, targets: &[PeerTarget]) -> Vec<PeerStatus> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, target) in targets.iter().enumerate() {
            let client = self.clone();
            let url = target.api_url.clone();
            tasks.spawn(async move { (i, client.get_json(&url).await) });
        }
        let mut replies: Vec<Option<PeerReply>> = vec![None; targets.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, Some(body))) = joined
                && let Some(slot) = replies.get_mut(i)
            {
                *slot = PeerReply::from_patroni_json(&body);
            }
        }
        targets
            .iter()
            .zip(replies)
            .map(|(t, reply)| PeerStatus {
                name: t.name.clone(),
                reply,
            })
            .collect()
    }
}

/// `api_url` with its path replaced by `/<endpoint>` (Patroni's `Member.get_endpoint_url`).
fn endpoint_url(api_url: &str, endpoint: &str) -> String {
    let Some((scheme, rest)) = api_url.split_once("://") else {
        return format!("{}/{endpoint}", api_url.trim_end_matches('/'));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    format!("{scheme}://{authority}/{endpoint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Endpoints replace the `api_url`'s path, as Patroni's `get_endpoint_url`.
    #[test]
    fn endpoint_urls_replace_the_path() {
        assert_eq!(
            endpoint_url("http://10.0.0.1:8008/patroni", "failsafe"),
            "http://10.0.0.1:8008/failsafe"
        );
        assert_eq!(
            endpoint_url("https://[::1]:8008", "failsafe"),
            "https://[::1]:8008/failsafe"
        );
    }

    /// A member nobody listens for does not accept a failsafe call.
    #[tokio::test]
    async fn unreachable_member_does_not_accept() {
        let targets = vec![PeerTarget {
            name: "pg-9".into(),
            api_url: "http://127.0.0.1:1/patroni".into(),
        }];
        let out = PeerClient::new()
            .call_failsafe(&targets, &serde_json::json!({"name": "pg-0"}))
            .await;
        assert_eq!(
            out,
            vec![FailsafeAnswer {
                name: "pg-9".into(),
                accepted: false,
                lsn: None
            }]
        );
    }

    /// A member nobody listens for counts as unreachable, quickly.
    #[tokio::test]
    async fn unreachable_member_has_no_reply() {
        let targets = vec![PeerTarget {
            name: "pg-9".into(),
            api_url: "http://127.0.0.1:1/patroni".into(),
        }];
        let out = PeerClient::new().check(&targets).await;
        assert_eq!(out, vec![PeerStatus::unreachable("pg-9")]);
    }
}
