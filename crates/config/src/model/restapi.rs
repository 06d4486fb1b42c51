//! The `restapi:` section (this member's REST API server) and the `ctl:` section (how
//! `patronictl` and the daemon call other members' REST APIs).

use std::{collections::BTreeMap, path::PathBuf};

use super::address::{Address, AddressRule};
use crate::validate::{Checker, IntRule, Node, Presence};

/// Default listen backlog of the REST API server.
pub const DEFAULT_REQUEST_QUEUE_SIZE: u32 = 5;

/// Settings of the `restapi` section.
const RESTAPI_KEYS: [&str; 16] = [
    "listen",
    "connect_address",
    "authentication",
    "certfile",
    "keyfile",
    "keyfile_password",
    "cafile",
    "ciphers",
    "verify_client",
    "allowlist",
    "allowlist_include_members",
    "http_extra_headers",
    "https_extra_headers",
    "request_queue_size",
    "server_tokens",
    "thread_pool_size",
];

/// Settings of the `ctl` section.
const CTL_KEYS: [&str; 6] = [
    "authentication",
    "insecure",
    "cacert",
    "certfile",
    "keyfile",
    "keyfile_password",
];

/// Typed `restapi:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestApiConfig {
    /// Address to bind. Required.
    pub listen: Address,
    /// Address other members and clients use; published as `http(s)://<this>/patroni`. Required.
    pub connect_address: Address,
    /// Basic-auth credentials required for unsafe endpoints, if any.
    pub authentication: Option<BasicAuth>,
    /// Server certificate; TLS is on exactly when this is set.
    pub certfile: Option<PathBuf>,
    /// Server private key (defaults to the certificate file when unset).
    pub keyfile: Option<PathBuf>,
    /// Password of the private key.
    pub keyfile_password: Option<String>,
    /// CA bundle used to verify client certificates.
    pub cafile: Option<PathBuf>,
    /// OpenSSL cipher list.
    pub ciphers: Option<String>,
    /// When client certificates are required.
    pub verify_client: VerifyClient,
    /// Hosts, IPs or CIDRs allowed to call unsafe endpoints; empty means everyone.
    pub allowlist: Vec<String>,
    /// Also allow the hosts of every member's `api_url`.
    pub allowlist_include_members: bool,
    /// Headers added to every response.
    pub http_extra_headers: BTreeMap<String, String>,
    /// Headers added to every response when TLS is on (after the HTTP ones).
    pub https_extra_headers: BTreeMap<String, String>,
    /// Listen backlog, 0-4096; default [`DEFAULT_REQUEST_QUEUE_SIZE`].
    pub request_queue_size: u32,
    /// What the `Server` response header reveals.
    pub server_tokens: ServerTokens,
}

/// A username and password for HTTP basic authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `restapi.verify_client`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifyClient {
    /// No client certificate is asked for (default).
    #[default]
    None,
    /// A certificate is required for unsafe endpoints only.
    Optional,
    /// A certificate is required for every request.
    Required,
}

/// `restapi.server_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServerTokens {
    /// `Server: Patroni/<version> Python/...`-like full header (default).
    #[default]
    Original,
    /// Only the product name.
    ProductOnly,
    /// The smallest header possible.
    Minimal,
}

/// Typed `ctl:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlConfig {
    /// Credentials for unsafe REST calls; falls back to `restapi.authentication`.
    pub authentication: Option<BasicAuth>,
    /// Skip server certificate verification.
    pub insecure: bool,
    /// CA bundle to verify servers; falls back to `restapi.cafile`.
    pub cacert: Option<PathBuf>,
    /// Client certificate.
    pub certfile: Option<PathBuf>,
    /// Client private key.
    pub keyfile: Option<PathBuf>,
    /// Password of the client private key.
    pub keyfile_password: Option<String>,
}

// === impl RestApiConfig ===

impl RestApiConfig {
    /// Reads the required `restapi` section. `None` when a required address is missing or bad
    /// (the problem is recorded).
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>) -> Option<Self> {
        c.warn_unknown(node, &RESTAPI_KEYS);
        // Read every field before giving up on a missing address, so all problems are found.
        let listen = c.address(node, "listen", Presence::Required, AddressRule::Listen);
        let connect_address = c.address(
            node,
            "connect_address",
            Presence::Required,
            AddressRule::Connect,
        );
        let path =
            |c: &mut Checker, key| c.string(node, key, Presence::Optional).map(PathBuf::from);
        let authentication = read_auth(c, node, true);
        let certfile = path(c, "certfile");
        let keyfile = path(c, "keyfile");
        let keyfile_password = c.string(node, "keyfile_password", Presence::Optional);
        let cafile = path(c, "cafile");
        let ciphers = c.string(node, "ciphers", Presence::Optional);
        let verify_client = c
            .choice(
                node,
                "verify_client",
                &[
                    ("none", VerifyClient::None),
                    ("optional", VerifyClient::Optional),
                    ("required", VerifyClient::Required),
                ],
                true,
            )
            .unwrap_or_default();
        let allowlist = c.string_list(node, "allowlist").unwrap_or_default();
        let allowlist_include_members = c.boolean_or(node, "allowlist_include_members", false);
        let http_extra_headers = c.string_map(node, "http_extra_headers").unwrap_or_default();
        let https_extra_headers = c
            .string_map(node, "https_extra_headers")
            .unwrap_or_default();
        let request_queue_size = c
            .int(
                node,
                "request_queue_size",
                Presence::Optional,
                IntRule::between(0, 4096),
            )
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(DEFAULT_REQUEST_QUEUE_SIZE);
        let server_tokens = c
            .choice(
                node,
                "server_tokens",
                &[
                    ("original", ServerTokens::Original),
                    ("productonly", ServerTokens::ProductOnly),
                    ("minimal", ServerTokens::Minimal),
                ],
                false,
            )
            .unwrap_or_default();
        Some(Self {
            listen: listen?,
            connect_address: connect_address?,
            authentication,
            certfile,
            keyfile,
            keyfile_password,
            cafile,
            ciphers,
            verify_client,
            allowlist,
            allowlist_include_members,
            http_extra_headers,
            https_extra_headers,
            request_queue_size,
            server_tokens,
        })
    }

    /// Whether the server uses TLS.
    pub fn tls(&self) -> bool {
        self.certfile.is_some()
    }
}

// === impl CtlConfig ===

impl CtlConfig {
    /// Reads the optional `ctl` section.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>) -> Self {
        c.warn_unknown(node, &CTL_KEYS);
        let path =
            |c: &mut Checker, key| c.string(node, key, Presence::Optional).map(PathBuf::from);
        Self {
            authentication: read_auth(c, node, false),
            insecure: c.boolean_or(node, "insecure", false),
            cacert: path(c, "cacert"),
            certfile: path(c, "certfile"),
            keyfile: path(c, "keyfile"),
            keyfile_password: c.string(node, "keyfile_password", Presence::Optional),
        }
    }
}

/// `authentication: {username, password}`. Patroni's validator requires both for `restapi`;
/// for `ctl` a missing password is allowed (empty).
fn read_auth(c: &mut Checker, parent: &Node<'_>, password_required: bool) -> Option<BasicAuth> {
    if !parent.has("authentication") {
        return None;
    }
    let node = c.section(parent, "authentication", Presence::Optional);
    let username = c.string(&node, "username", Presence::Required);
    let presence = if password_required {
        Presence::Required
    } else {
        Presence::Optional
    };
    let password = c.string(&node, "password", presence);
    Some(BasicAuth {
        username: username?,
        password: password.unwrap_or_default(),
    })
}
