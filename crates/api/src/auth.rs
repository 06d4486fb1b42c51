//! Access control of the unsafe endpoints (everything that is not `GET`/`HEAD`/`OPTIONS`):
//! Patroni's `check_access`, in its order.
//!
//! 1. **Allowlist**: when `restapi.allowlist` is set or `allowlist_include_members` is on, the
//!    client IP must be in one of the networks (or be a member's `api_url` host) → else 403
//!    `Access is denied`.
//! 2. **Client certificate** (TLS `verify_client` `optional` or `required`): the connection
//!    must have presented a verified certificate ([`ClientCert`], set by
//!    [`serve_tls`](crate::serve_tls)) → else 403 `client certificate required`.
//! 3. **Basic auth**: when `restapi.authentication` is set, `Authorization: Basic <b64>` must
//!    equal `base64(user:password)` (constant-time) → else 401 with
//!    `WWW-Authenticate: Basic realm="Patroni"` and `no auth header received` or
//!    `not authenticated`.
//!
//! Safe endpoints are never checked. Allowlist host names are resolved once, when the policy
//! is built; member host names are resolved on each check (members come and go).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use patroni_config::{BasicAuth, RestApiConfig};
use patroni_core::Cluster;
use subtle::ConstantTimeEq;

use crate::backend::Backend;
use crate::reply::Reply;
use crate::server::AppState;
use crate::tls::ClientCert;

/// Port used to resolve allowlist host names (as Patroni; only the addresses matter).
const ALLOWLIST_RESOLVE_PORT: u16 = 8080;

/// Who may call the unsafe endpoints.
#[derive(Clone, Default)]
pub struct AccessPolicy {
    /// `base64("user:password")`, compared with the `Authorization: Basic` token.
    basic_key: Option<String>,
    /// Allowed client networks; empty means no allowlist.
    allowlist: Vec<IpNet>,
    /// Also allow the hosts of every member's `api_url`.
    include_members: bool,
}

/// An IP network (`10.0.0.0/8`, `fd00::/64`); a single address is a full-length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a request to an unsafe endpoint was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The client IP is not allowed (403).
    NotAllowed,
    /// A client certificate was asked for and none was presented (403).
    NoClientCert,
    /// Authentication is required and no `Authorization` header came (401).
    NoAuthHeader,
    /// The credentials are wrong or not `Basic` (401).
    NotAuthenticated,
}

/// Extractor that lets a handler run only when [`AccessPolicy::check`] passes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authorized;

/// An unsafe request that passed the access checks other than the members' hosts
/// ([`AccessPolicy::check_ignoring_members`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthorizedIgnoringMembers;

/// An `IpNet` that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP network {0:?}")]
pub struct ParseIpNetError(pub String);

// === impl AccessPolicy ===

impl std::fmt::Debug for AccessPolicy {
    /// Never prints the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("basic_auth", &self.basic_key.as_ref().map(|_| "<redacted>"))
            .field("allowlist", &self.allowlist)
            .field("include_members", &self.include_members)
            .finish()
    }
}

impl AccessPolicy {
    /// Everyone may call everything (no `authentication`, no allowlist).
    pub fn open() -> Self {
        Self::default()
    }

    /// Requires HTTP basic authentication with `auth`.
    pub fn with_basic_auth(mut self, auth: &BasicAuth) -> Self {
        self.basic_key = Some(STANDARD.encode(format!("{}:{}", auth.username, auth.password)));
        self
    }

    /// Allows only clients in `nets` (plus members, see [`AccessPolicy::with_members_allowed`]).
    pub fn with_allowlist(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.allowlist = nets.into_iter().collect();
        self
    }

    /// `allowlist_include_members`: allows the host of every member's `api_url`; when on, the
    /// allowlist is enforced even if empty.
    pub fn with_members_allowed(mut self, allowed: bool) -> Self {
        self.include_members = allowed;
        self
    }

    /// The policy of a `restapi` section. Allowlist entries with `/` are networks; others are
    /// IPs or host names, resolved now. Entries that do not parse or resolve are logged at
    /// ERROR and skipped, as Patroni does.
    pub async fn from_config(cfg: &RestApiConfig) -> Self {
        let mut nets = Vec::new();
        for entry in &cfg.allowlist {
            if entry.contains('/') {
                match entry.parse() {
                    Ok(net) => nets.push(net),
                    Err(e) => tracing::error!("invalid value {entry:?} in the allowlist: {e}"),
                }
            } else {
                nets.extend(resolve(entry, ALLOWLIST_RESOLVE_PORT).await);
            }
        }
        let policy = Self::open()
            .with_allowlist(nets)
            .with_members_allowed(cfg.allowlist_include_members);
        match &cfg.authentication {
            Some(auth) => policy.with_basic_auth(auth),
            None => policy,
        }
    }

    /// Checks a request from `client` carrying `authorization` on a connection without a
    /// client-certificate requirement; `members` gives the cluster view whose members are
    /// allowed (called only with `allowlist_include_members`).
    ///
    /// # Errors
    /// [`Denied`] says which check failed, in Patroni's order.
    pub async fn check(
        &self,
        client: Option<IpAddr>,
        authorization: Option<&HeaderValue>,
        members: impl FnOnce() -> Option<Cluster>,
    ) -> Result<(), Denied> {
        self.check_with_cert(client, ClientCert::NotAsked, authorization, members)
            .await
    }

    /// [`AccessPolicy::check`] on a connection whose client certificate is `cert`.
    ///
    /// # Errors
    /// [`Denied`] says which check failed, in Patroni's order: allowlist, client
    /// certificate, basic auth.
    pub async fn check_with_cert(
        &self,
        client: Option<IpAddr>,
        cert: ClientCert,
        authorization: Option<&HeaderValue>,
        members: impl FnOnce() -> Option<Cluster>,
    ) -> Result<(), Denied> {
        self.check_inner(client, cert, authorization, self.include_members, members)
            .await
    }

    /// [`AccessPolicy::check_with_cert`] without allowing or requiring the members' hosts
    /// (Patroni's `allowlist_check_members=False`, for `POST /failsafe`, which is called while
    /// the DCS, where the members are listed, is unreachable).
    ///
    /// # Errors
    /// As [`AccessPolicy::check_with_cert`].
    pub async fn check_ignoring_members(
        &self,
        client: Option<IpAddr>,
        cert: ClientCert,
        authorization: Option<&HeaderValue>,
    ) -> Result<(), Denied> {
        self.check_inner(client, cert, authorization, false, || None)
            .await
    }

    async fn check_inner(
        &self,
        client: Option<IpAddr>,
        cert: ClientCert,
        authorization: Option<&HeaderValue>,
        include_members: bool,
        members: impl FnOnce() -> Option<Cluster>,
    ) -> Result<(), Denied> {
        if !self.allowlist.is_empty() || include_members {
            let client = client
                .map(|ip| ip.to_canonical())
                .ok_or(Denied::NotAllowed)?;
            let mut allowed = self.allowlist.iter().any(|n| n.contains(client));
            if !allowed && include_members {
                allowed = member_ips(members())
                    .await
                    .iter()
                    .any(|n| n.contains(client));
            }
            if !allowed {
                return Err(Denied::NotAllowed);
            }
        }
        if cert == ClientCert::Missing {
            return Err(Denied::NoClientCert);
        }
        let Some(key) = &self.basic_key else {
            return Ok(());
        };
        let header = authorization.ok_or(Denied::NoAuthHeader)?;
        let token = header
            .as_bytes()
            .strip_prefix(b"Basic ")
            .ok_or(Denied::NotAuthenticated)?;
        if bool::from(token.ct_eq(key.as_bytes())) {
            Ok(())
        } else {
            Err(Denied::NotAuthenticated)
        }
    }
}

/// The addresses of every member's `api_url` host.
async fn member_ips(cluster: Option<Cluster>) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for member in cluster.iter().flat_map(|c| c.members.iter()) {
        let Some(url) = member.data.api_url.as_deref() else {
            continue;
        };
        let Some((host, port)) = crate::url::host_port(url) else {
            tracing::debug!("failed to parse url {url}");
            continue;
        };
        let default_port = if url.starts_with("https") { 443 } else { 80 };
        nets.extend(resolve(&host, port.unwrap_or(default_port)).await);
    }
    nets
}

/// The addresses of `host` (an IP or a name); none, logged at ERROR, when it does not resolve.
async fn resolve(host: &str, port: u16) -> Vec<IpNet> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![IpNet::host(ip)];
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.map(|a| IpNet::host(a.ip())).collect(),
        Err(e) => {
            tracing::error!("failed to resolve {host}: {e}");
            Vec::new()
        }
    }
}

// === impl IpNet ===

impl IpNet {
    /// The network holding only `addr`.
    pub fn host(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = ParseIpNetError;

    /// `addr/prefix` or a bare address. Host bits may be set (`10.0.0.1/8` is `10.0.0.0/8`),
    /// as Python's `ip_network(v, strict=False)` allows.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIpNetError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net = Self::host(addr.parse().map_err(|_| err())?);
        match prefix {
            None => Ok(net),
            Some(p) => {
                let prefix: u8 = p.parse().map_err(|_| err())?;
                if prefix > net.prefix {
                    return Err(err());
                }
                Ok(Self { prefix, ..net })
            }
        }
    }
}

// === impl Denied ===

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Denied::NotAllowed => (StatusCode::FORBIDDEN, "Access is denied"),
            Denied::NoClientCert => (StatusCode::FORBIDDEN, "client certificate required"),
            Denied::NoAuthHeader => (StatusCode::UNAUTHORIZED, "no auth header received"),
            Denied::NotAuthenticated => (StatusCode::UNAUTHORIZED, "not authenticated"),
        };
        let mut response = Reply::text(status, message).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Patroni\""),
            );
        }
        response
    }
}

// === impl Authorized ===

/// Runs the access checks on a request, with (`members`) or without the members' hosts in the
/// allowlist; a refusal is logged.
async fn authorize<B: Backend>(
    parts: &Parts,
    state: &AppState<B>,
    members: bool,
) -> Result<(), Denied> {
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let cert = parts
        .extensions
        .get::<ClientCert>()
        .copied()
        .unwrap_or(ClientCert::NotAsked);
    let authorization = parts.headers.get(header::AUTHORIZATION);
    let access = &state.settings.access;
    let result = if members {
        access
            .check_with_cert(client, cert, authorization, || {
                state.backend.cached_cluster()
            })
            .await
    } else {
        access
            .check_ignoring_members(client, cert, authorization)
            .await
    };
    if let Err(denied) = result {
        tracing::info!(?client, ?denied, "refused access to an unsafe endpoint");
    }
    result
}

impl<B: Backend> FromRequestParts<AppState<B>> for Authorized {
    type Rejection = Denied;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<B>,
    ) -> Result<Self, Self::Rejection> {
        authorize(parts, state, true).await.map(|()| Authorized)
    }
}

impl<B: Backend> FromRequestParts<AppState<B>> for AuthorizedIgnoringMembers {
    type Rejection = Denied;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<B>,
    ) -> Result<Self, Self::Rejection> {
        authorize(parts, state, false)
            .await
            .map(|()| AuthorizedIgnoringMembers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid IP")
    }

    /// Networks contain what Python's `ip_network(strict=False)` says they contain.
    #[test]
    fn networks_contain_like_python() {
        let net: IpNet = "10.1.2.3/8".parse().expect("valid");
        assert!(net.contains(ip("10.200.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(
            net.contains(ip("::ffff:10.0.0.7")),
            "IPv4-mapped counts as IPv4"
        );
        let all: IpNet = "0.0.0.0/0".parse().expect("valid");
        assert!(all.contains(ip("192.0.2.1")));
        let v6: IpNet = "fd00::/64".parse().expect("valid");
        assert!(v6.contains(ip("fd00::1")) && !v6.contains(ip("fd01::1")));
        let one: IpNet = "127.0.0.1".parse().expect("valid");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        for bad in ["10.0.0.0/33", "nonsense/8", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    /// Basic auth compares the whole token; a missing header and a wrong one differ.
    #[tokio::test]
    async fn basic_auth_compares_the_whole_token() {
        let auth = BasicAuth {
            username: "u".into(),
            password: "p".into(),
        };
        let policy = AccessPolicy::open().with_basic_auth(&auth);
        let good = HeaderValue::from_static("Basic dTpw");
        let bad = HeaderValue::from_static("Basic dTpx");
        let bearer = HeaderValue::from_static("Bearer dTpw");
        assert_eq!(policy.check(None, Some(&good), || None).await, Ok(()));
        assert_eq!(
            policy.check(None, Some(&bad), || None).await,
            Err(Denied::NotAuthenticated)
        );
        assert_eq!(
            policy.check(None, Some(&bearer), || None).await,
            Err(Denied::NotAuthenticated)
        );
        assert_eq!(
            policy.check(None, None, || None).await,
            Err(Denied::NoAuthHeader)
        );
        assert!(
            !format!("{policy:?}").contains("dTpw"),
            "Debug hides the credentials"
        );
    }

    /// The client-certificate check comes after the allowlist and before basic auth.
    #[tokio::test]
    async fn client_certificate_is_checked_between_allowlist_and_auth() {
        let auth = BasicAuth {
            username: "u".into(),
            password: "p".into(),
        };
        let loopback: IpNet = "127.0.0.0/8".parse().expect("valid");
        let policy = AccessPolicy::open()
            .with_allowlist([loopback])
            .with_basic_auth(&auth);
        let good = HeaderValue::from_static("Basic dTpw");
        let outside = Some(ip("10.0.0.1"));
        let inside = Some(ip("127.0.0.1"));
        let check = |client, cert, header| policy.check_with_cert(client, cert, header, || None);
        assert_eq!(
            check(outside, ClientCert::Missing, None).await,
            Err(Denied::NotAllowed)
        );
        assert_eq!(
            check(inside, ClientCert::Missing, Some(&good)).await,
            Err(Denied::NoClientCert)
        );
        assert_eq!(
            check(inside, ClientCert::Verified, None).await,
            Err(Denied::NoAuthHeader)
        );
        assert_eq!(
            check(inside, ClientCert::Verified, Some(&good)).await,
            Ok(())
        );
        assert_eq!(
            check(inside, ClientCert::NotAsked, Some(&good)).await,
            Ok(())
        );
    }
}
