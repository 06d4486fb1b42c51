//! Asking other members' REST APIs how they are (`GET <api_url>`), for the leader race
//! ([`Action::CheckPeers`](patroni_core::ha::Action::CheckPeers)) and the switchover
//! candidate probe of the API.
//!
//! Every request has [`PEER_TIMEOUT`] and no retries, as in Patroni; a member that does not
//! answer in time, or answers something unreadable, counts as unreachable.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
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
    client: Client<HttpConnector, Empty<Bytes>>,
}

// === impl PeerClient ===

impl Default for PeerClient {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerClient {
    /// A client with Patroni's timeouts.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(PEER_TIMEOUT));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// `GET url` as JSON, within [`PEER_TIMEOUT`]; `None` on any failure.
    pub async fn get_json(&self, url: &str) -> Option<Value> {
        let uri: hyper::Uri = url.parse().ok()?;
        let fetch = async {
            let response = self.client.get(uri).await.ok()?;
            let body = response.into_body().collect().await.ok()?.to_bytes();
            serde_json::from_slice::<Value>(&body).ok()
        };
        tokio::time::timeout(PEER_TIMEOUT, fetch).await.ok()?
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
