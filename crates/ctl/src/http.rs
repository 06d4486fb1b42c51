//! Requests to members' REST APIs (`api_url` from the DCS), as Patroni's `PatroniRequest`
//! makes them for patronictl: basic auth from `ctl.authentication` (fallback
//! `restapi.authentication`), HTTPS verified against `ctl.cacert` (fallback `restapi.cafile`)
//! or the system roots, optional client certificate, `-k` skipping verification.
//!
//! Every request has a connect timeout ([`CONNECT_TIMEOUT`]) and an overall one
//! ([`REQUEST_TIMEOUT`]), so an unreachable member fails with a clear error instead of hanging.

use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
pub use patroni_api::ClientTls;
use serde_json::Value;

/// How long connecting to a member may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take: `POST /restart` waits for PostgreSQL to start and
/// `POST /switchover` for the new leader, so this is generous.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// A member API's answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body, as text.
    pub body: String,
}

/// The REST client. Cheap to clone.
#[derive(Clone)]
pub struct Rest {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    auth: Option<String>,
}

// === impl Rest ===

impl Rest {
    /// A client with optional basic auth `(user, password)`.
    ///
    /// # Errors
    /// Unreadable certificate files.
    pub fn new(auth: Option<(String, String)>, tls: &ClientTls) -> anyhow::Result<Self> {
        let config = tls.client_config().context("set up TLS")?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            auth: auth.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
        })
    }

    /// `METHOD <api_url with path /endpoint>` with an optional JSON body; `endpoint` `None`
    /// keeps `api_url`'s own path (`/patroni`).
    ///
    /// # Errors
    /// Bad URL, connection failure, timeout.
    pub async fn request(
        &self,
        api_url: &str,
        method: &str,
        endpoint: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let url = endpoint_url(api_url, endpoint)?;
        let mut req = hyper::Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&url)
            .header(
                "User-Agent",
                concat!("patronictl-rs/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("Content-Type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .with_context(|| format!("build the request to {url}"))?;
        let fetch = async {
            let resp = self.client.request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>(Response {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, fetch).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e).with_context(|| format!("{method} {url}")),
            Err(_) => bail!("{method} {url}: no answer within {REQUEST_TIMEOUT:?}"),
        }
    }
}

/// `api_url` with its path replaced by `/endpoint` (Patroni's `Member.get_endpoint_url`).
///
/// # Errors
/// `api_url` is not `scheme://authority/...`.
pub fn endpoint_url(api_url: &str, endpoint: Option<&str>) -> anyhow::Result<String> {
    let Some(endpoint) = endpoint else {
        return Ok(api_url.to_string());
    };
    let Some((scheme, rest)) = api_url.split_once("://") else {
        bail!("invalid api_url {api_url}");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    Ok(format!("{scheme}://{authority}/{endpoint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoint replaces the path of `api_url`.
    #[test]
    fn endpoint_urls_as_patroni() {
        assert_eq!(
            endpoint_url("http://10.0.0.1:8008/patroni", Some("restart")).expect("url"),
            "http://10.0.0.1:8008/restart"
        );
        assert_eq!(
            endpoint_url("https://h:8008/patroni", None).expect("url"),
            "https://h:8008/patroni"
        );
        assert!(endpoint_url("nonsense", Some("x")).is_err());
    }
}
