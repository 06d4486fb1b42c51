//! Asking other members' REST APIs how they are (`GET <api_url>`), for the leader race
//! ([`Action::CheckPeers`](patroni_core::ha::Action::CheckPeers)) and the switchover
//! candidate probe of the API.
//!
//! Every request has [`PEER_TIMEOUT`] and no retries, as in Patroni; a member that does not
//! answer in time, or answers something unreadable, counts as unreachable. `https` API URLs
//! are spoken to as Patroni's daemon does: without verifying the server's certificate unless
//! `ctl.certfile` is set (then its chain against `ctl.cacert`, else `restapi.cafile`, but not
//! the host name it is for), presenting
//! `ctl.certfile`/`ctl.keyfile` as client certificate.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use patroni_core::ha::{PeerReply, PeerStatus, PeerTarget};
use serde_json::Value;

/// How long one member may take to answer `GET /patroni` (Patroni: 2 s).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// An HTTP client for member APIs. Cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
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
        Self::with_tls(&patroni_api::ClientTls {
            insecure: ctl.certfile.is_none(),
            cacert: ctl.cacert.clone().or_else(|| config.restapi.cafile.clone()),
            certfile: ctl.certfile.clone(),
            keyfile: ctl.keyfile.clone(),
            verify_hostname: false,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

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
