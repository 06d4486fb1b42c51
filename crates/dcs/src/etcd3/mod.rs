//! The etcd v3 DCS, with Patroni 4's exact key layout (`patroni/dcs/etcd3.py`).
//!
//! Every key lives under `/<namespace>/<scope>/` ([`keys`]); values are Patroni's encodings
//! ([`values`], [`crate::encoding`]). Each member holds one lease of `ttl` seconds; its
//! `members/<name>` key and, while it leads, the `leader` key are bound to it, so both vanish
//! when the member stops renewing. Compare-and-set writes compare the key's `mod_revision`
//! (the version every view reports); taking the lock is "create if absent"
//! (`create_revision == 0`); renewing it is a lease keepalive, plus a write of the `leader`
//! key when the view showed it under another lease (Patroni's `_update_leader`).
//!
//! Reads: [`Dcs::get_cluster`](crate::Dcs::get_cluster) reads the prefix from the store
//! (linearizable) every time, so a lock reported free always comes from a fresh read; the
//! one watch ([`watcher`]) only wakes the HA loop. Every operation retries within
//! `retry_timeout` ([`retry`]) and then fails as unreachable.
//!
//! Endpoints: the configured ones first (or, with `etcd3.srv`, those its DNS SRV records give,
//! [`srv`]), then (unless `proxy` is used) the client URLs of every member of the etcd
//! cluster, discovered at start and every 5 minutes (endpoints are added, never removed);
//! requests are balanced over the endpoints that answer, so losing one fails over to the
//! others. With SRV discovery, a request that finds no endpoint answering has the records
//! resolved again (Patroni's `_load_machines_cache` when every machine failed).
//!
//! What breaks if this stalls: a stuck request is cut at its share of `retry_timeout`; the
//! watch task may stall without harm (cycles still run every `loop_wait`).

mod dcs_impl;
pub mod keys;
mod lease;
mod retry;
pub mod srv;
pub mod view;
mod watcher;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use patroni_config::{DcsConfig, Etcd3Config, SrvDiscovery};
use patroni_core::{Cluster, MemberData};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::keys::Keys;
use self::lease::Lease;
use self::retry::Retry;
use self::srv::SrvError;
use self::view::Node;
use crate::values::StatusValue;
use crate::{Error, Result, Settings};

/// Extra time non-holders wait in `watch`, so their cycles trail the leader's (Patroni).
const NON_LEADER_EXTRA_WAIT: Duration = Duration::from_millis(500);
/// How often the etcd cluster's member list is read again for new endpoints (Patroni's
/// machines cache ttl, `cache_ttl=300`).
const MEMBERS_REFRESH: Duration = Duration::from_secs(300);
/// Least time given to connecting to one endpoint.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between SRV lookups at start while they give no endpoint (Patroni's "waiting on
/// etcd" sleeps 5 s).
const SRV_START_WAIT: Duration = Duration::from_secs(5);
/// Least pause between two re-resolutions of the SRV records after failed requests, so a
/// long outage does not turn into a stream of DNS queries.
const SRV_RELOAD_PAUSE: Duration = Duration::from_secs(1);

/// Loop timings that dynamic configuration can change at run time.
#[derive(Debug, Clone, Copy)]
struct Timing {
    ttl: Duration,
    retry_timeout: Duration,
}

/// The etcd v3 DCS of one member (or of `patronictl`).
pub struct Etcd3Dcs {
    inner: Arc<Inner>,
    /// The watch, and (unless `proxy` is used) the member list refresh; aborted on drop.
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    name: String,
    keys: Keys,
    client: Client,
    /// Written by `set_timing`, read by every operation.
    timing: Mutex<Timing>,
    /// This member's lease; refreshed by touch_member, acquire and renew.
    lease: Lease,
    /// The last view built, and the leases of its leader and member keys; written by
    /// `get_cluster`, read by writes that depend on it (touch_member, update_leader,
    /// initialize) and by `watch`.
    last: Mutex<Option<view::View>>,
    /// The last `/status` written (Patroni's `_last_status`): unchanged values are not
    /// written again, and a release copies its slots.
    last_status: Mutex<Option<StatusValue>>,
    /// The last `/failsafe` written (Patroni's `_last_failsafe`).
    last_failsafe: Mutex<Option<BTreeMap<String, String>>>,
    /// The member data last written with the lease it was bound to.
    last_member: Mutex<Option<(i64, MemberData)>>,
    /// Set by `set_timing` when the ttl changed: the next `watch` returns at once (Patroni's
    /// `__do_not_watch`), so the new lease is taken without waiting a cycle.
    skip_next_watch: AtomicBool,
    /// Wakes `watch`; notified by the watcher task.
    wake: Arc<Notify>,
    /// The endpoints in use (configured and discovered).
    endpoints: Mutex<Vec<String>>,
    /// `etcd3.srv`: resolved again after requests found no endpoint answering.
    srv: Option<SrvDiscovery>,
    /// The configured endpoints (`host`/`hosts`/`url`): with `srv`, used when the records
    /// give nothing.
    fallback: Vec<String>,
    /// With `srv`: notified by every retried failure of a request, waited on by the refresher
    /// task, which then resolves the records again.
    srv_reload: Option<Arc<Notify>>,
}

// === impl Etcd3Dcs ===

impl Etcd3Dcs {
    /// Connects with the `etcd3` section of `settings.dcs`, discovers the etcd cluster's
    /// members and starts the watch.
    ///
    /// # Errors
    /// [`Error::Config`] when `settings.dcs` is not etcd3, a TLS file cannot be read or the
    /// client cannot be built; [`Error::Unreachable`] or [`Error::Refused`] when no endpoint
    /// answers the first request within `retry_timeout` or it is refused (bad credentials).
    pub async fn start(settings: Settings) -> Result<Self> {
        let DcsConfig::Etcd3(cfg) = &settings.dcs else {
            return Err(Error::Config {
                what: format!(
                    "the etcd3 DCS cannot start with the {} section",
                    settings.dcs.kind()
                ),
                source: None,
            });
        };
        let initial = initial_endpoints(cfg, &settings).await?;
        let options = connect_options(cfg, &initial, &settings)?;
        let client = Retry::new(settings.retry_timeout)
            .run("connect to etcd", || {
                Client::connect(initial.clone(), Some(options.clone()))
            })
            .await?;
        let keys = Keys::new(&cfg.base_path(&settings.scope));
        let inner = Arc::new(Inner {
            name: settings.name.clone(),
            keys: keys.clone(),
            client: client.clone(),
            timing: Mutex::new(Timing {
                ttl: settings.ttl,
                retry_timeout: settings.retry_timeout,
            }),
            lease: Lease::new(settings.ttl, settings.loop_wait),
            last: Mutex::new(None),
            last_status: Mutex::new(None),
            last_failsafe: Mutex::new(None),
            last_member: Mutex::new(None),
            skip_next_watch: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            endpoints: Mutex::new(initial),
            srv: cfg.srv.clone(),
            fallback: cfg.endpoints.clone(),
            srv_reload: cfg.srv.as_ref().map(|_| Arc::new(Notify::new())),
        });
        if !cfg.use_proxies {
            match inner.discover_members(inner.retry()).await {
                // Patroni waits for etcd at start; here the HA loop's first cycles report it
                // unreachable instead, with the configured endpoints in use.
                Err(e) if e.is_unreachable() => {
                    tracing::warn!("failed to list the etcd cluster's members: {e:#}");
                }
                other => other?,
            }
        }
        let rules = watcher::WakeRules {
            keys,
            me: settings.name.clone(),
        };
        let mut tasks = vec![tokio::spawn(watcher::run(
            client,
            rules,
            inner.wake.clone(),
        ))];
        if !cfg.use_proxies {
            let failed = inner.srv_reload.clone();
            tasks.push(tokio::spawn(refresh(Arc::downgrade(&inner), failed)));
        }
        Ok(Etcd3Dcs { inner, tasks })
    }

    /// The prefix of every key of this cluster (`/service/<scope>/`).
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// The endpoints in use: the configured ones and those discovered from the etcd cluster's
    /// member list.
    pub fn endpoints(&self) -> Vec<String> {
        lock(&self.inner.endpoints).clone()
    }

    /// The lease this member's keys are bound to, if it has one.
    pub fn lease_id(&self) -> Option<i64> {
        self.inner.lease.current()
    }
}

impl Drop for Etcd3Dcs {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Refreshes the endpoints until the DCS is dropped: the etcd cluster's member list every
/// [`MEMBERS_REFRESH`]; with SRV discovery also when `failed` is notified (a request found no
/// endpoint answering): the records are resolved again first, then the member list is read.
async fn refresh(inner: Weak<Inner>, failed: Option<Arc<Notify>>) {
    loop {
        let after_failure = tokio::select! {
            () = tokio::time::sleep(MEMBERS_REFRESH) => false,
            () = notified(failed.as_deref()) => true,
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if after_failure {
            inner.rediscover_srv().await;
        }
        // Not signalling failures itself: the requests of the HA loop do that.
        if let Err(e) = inner
            .discover_members(Retry::new(inner.timing().retry_timeout))
            .await
        {
            tracing::debug!("failed to {e:#}");
        }
        drop(inner);
        if after_failure {
            tokio::time::sleep(SRV_RELOAD_PAUSE).await;
        }
    }
}

/// Waits for `n`, or forever without one.
async fn notified(n: Option<&Notify>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// The endpoints to start with: the configured ones, or with `etcd3.srv` those its SRV
/// records give (the configured ones when the records give none). Without configured ones,
/// waits until the records give some, as Patroni's "waiting on etcd" does.
///
/// # Errors
/// [`Error::Config`] when the system's DNS configuration cannot be used and no endpoint is
/// configured.
async fn initial_endpoints(cfg: &Etcd3Config, settings: &Settings) -> Result<Vec<String>> {
    let Some(srv) = cfg.srv.as_ref().filter(|_| !cfg.use_proxies) else {
        return Ok(cfg.endpoints.clone());
    };
    loop {
        match srv::discover(srv, settings.retry_timeout / 2).await {
            Ok(found) => {
                tracing::info!(kind = ?found.kind, endpoints = ?found.endpoints,
                    "found etcd through the DNS SRV records of {}", srv.domain);
                return Ok(found.endpoints);
            }
            Err(e) if !cfg.endpoints.is_empty() => {
                tracing::warn!("failed to {e:#}; using the configured etcd3 hosts");
                return Ok(cfg.endpoints.clone());
            }
            Err(e @ SrvError::SystemConfig(_)) => {
                return Err(Error::Config {
                    what: "use DNS SRV discovery of etcd (etcd3.srv)".into(),
                    source: Some(Box::new(e)),
                });
            }
            Err(e) => {
                tracing::warn!("failed to {e:#}; waiting on etcd");
                tokio::time::sleep(SRV_START_WAIT).await;
            }
        }
    }
}

/// The client options of `cfg` for `endpoints`: credentials, TLS, timeouts and keepalive
/// (Patroni sets TCP keepalive to notice a dead server within `ttl`). TLS is on when an
/// endpoint is `https`, or, without SRV discovery, when a CA or client certificate is set.
fn connect_options(
    cfg: &Etcd3Config,
    endpoints: &[String],
    settings: &Settings,
) -> Result<ConnectOptions> {
    let per_request = (settings.retry_timeout / 2).max(MIN_CONNECT_TIMEOUT);
    let keepalive = (settings.ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut options = ConnectOptions::new()
        .with_connect_timeout(per_request)
        .with_keep_alive(keepalive, keepalive)
        .with_keep_alive_while_idle(true)
        .with_tcp_keepalive(keepalive)
        .with_auto_token_refresh(true);
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        options = options.with_user(user.clone(), password.clone());
    }
    let https = endpoints.iter().any(|e| e.starts_with("https://"));
    if https || (cfg.srv.is_none() && (cfg.cacert.is_some() || cfg.cert.is_some())) {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path).map_err(|e| Error::Config {
                what: format!("read etcd3.{what} {}", path.display()),
                source: Some(Box::new(e)),
            })
        };
        let mut tls = TlsOptions::new();
        tls = match &cfg.cacert {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "cacert")?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) {
            tls = tls.identity(Identity::from_pem(read(cert, "cert")?, read(key, "key")?));
        }
        options = options.with_tls(tls);
    }
    Ok(options)
}

/// The guarded value, also after a panic elsewhere (the data stays consistent: every
/// critical section is a plain assignment).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === impl Inner ===

impl Inner {
    fn timing(&self) -> Timing {
        *lock(&self.timing)
    }

    /// The retry budget of one operation; with SRV discovery, its failed attempts ask for
    /// the records to be resolved again.
    fn retry(&self) -> Retry {
        Retry::new(self.timing().retry_timeout).with_failure_signal(self.srv_reload.clone())
    }

    /// Adds the client URLs of every etcd member to the endpoints (Patroni's machines cache).
    async fn discover_members(&self, retry: Retry) -> Result<()> {
        let client = self.client.clone();
        let members = retry
            .run("list the etcd cluster's members", || {
                let mut c = client.cluster_client();
                async move { c.member_list().await }
            })
            .await?;
        let urls: Vec<String> = members
            .members()
            .iter()
            .flat_map(|m| m.client_urls().iter().cloned())
            .collect();
        self.add_endpoints(&urls).await;
        Ok(())
    }

    /// Resolves the SRV records again and adds the endpoints they give (the configured ones
    /// when they give none).
    async fn rediscover_srv(&self) {
        let Some(srv) = &self.srv else {
            return;
        };
        match srv::discover(srv, self.timing().retry_timeout / 2).await {
            Ok(found) => {
                tracing::debug!(endpoints = ?found.endpoints, "resolved the SRV records again");
                self.add_endpoints(&found.endpoints).await;
            }
            Err(e) => {
                tracing::warn!("failed to {e:#}");
                self.add_endpoints(&self.fallback).await;
            }
        }
    }

    /// Adds the endpoints not in use yet to the client.
    async fn add_endpoints(&self, urls: &[String]) {
        for url in urls {
            let known = lock(&self.endpoints).contains(url);
            if !known {
                match self.client.add_endpoint(url).await {
                    Ok(()) => {
                        tracing::info!(url, "added etcd endpoint");
                        lock(&self.endpoints).push(url.clone());
                    }
                    Err(e) => tracing::warn!(url, "failed to add etcd endpoint: {e}"),
                }
            }
        }
    }

    /// Reads every key of the cluster (linearizable) and builds the view.
    async fn read_view(&self) -> Result<view::View> {
        let client = self.client.clone();
        let prefix = self.keys.prefix().to_string();
        let resp = self
            .retry()
            .run("read the cluster", || {
                let mut kv = client.kv_client();
                let prefix = prefix.clone();
                async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let nodes: BTreeMap<String, Node> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let rel = self.keys.relative(&key)?.to_string();
                Some((
                    rel,
                    Node {
                        value: String::from_utf8_lossy(kv.value()).into_owned(),
                        mod_revision: kv.mod_revision(),
                        lease: kv.lease(),
                    },
                ))
            })
            .collect();
        Ok(view::build(&nodes))
    }

    async fn get_cluster(&self) -> Result<Cluster> {
        let view = self.read_view().await?;
        let previous = lock(&self.last).take();
        let known: &[String] = previous.as_ref().map_or(&[], |p| &p.warnings);
        for w in view.warnings.iter().filter(|w| !known.contains(w)) {
            tracing::warn!("unreadable cluster state, ignored: {w}");
        }
        if view.cluster.leader_name() == Some(self.name.as_str())
            && let (Some(theirs), Some(ours)) = (view.leader_lease, self.lease.current())
            && theirs != ours
        {
            tracing::warn!("I am the leader but not owner of the lease");
        }
        let cluster = view.cluster.clone();
        *lock(&self.last) = Some(view);
        Ok(cluster)
    }

    /// The last view's leader name.
    fn last_leader(&self) -> Option<String> {
        lock(&self.last)
            .as_ref()
            .and_then(|v| v.cluster.leader_name().map(String::from))
    }

    /// Waits up to `timeout` (+0.5 s for non-holders) for a change that matters.
    async fn watch(&self, timeout: Duration) -> bool {
        // Patroni's `_last_lease_refresh = 0`: the next cycle's touch_member keeps the lease
        // alive whatever the time since the last refresh.
        self.lease.refresh_due();
        if self.skip_next_watch.swap(false, Ordering::SeqCst) {
            return true;
        }
        let timeout = if self.last_leader().as_deref() == Some(self.name.as_str()) {
            timeout
        } else {
            timeout + NON_LEADER_EXTRA_WAIT
        };
        tokio::time::timeout(timeout, self.wake.notified())
            .await
            .is_ok()
    }

    fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        let old = std::mem::replace(&mut *lock(&self.timing), Timing { ttl, retry_timeout });
        if old.ttl != ttl {
            // Patroni's `set_ttl`: a lease of the old ttl is dropped, a new one is granted by
            // the next write that needs it.
            self.lease.set_ttl(ttl);
            self.skip_next_watch.store(true, Ordering::SeqCst);
        }
    }
}
