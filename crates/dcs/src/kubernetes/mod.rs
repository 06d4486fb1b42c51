//! The Kubernetes DCS, with Patroni 4's exact state layout.
//!
//! State lives in annotations of ConfigMaps (default) or Endpoints named
//! after the scope, members are the pods matching the label selector, and
//! the leader lock is a compare-and-swap (resourceVersion) write to the
//! leader object. Reads come from list+watch caches; the view is built by
//! the pure [`view::build`]; the lock's expiry is judged on the local
//! monotonic clock ([`lock::LockObserver`]).
//!
//! Module map: `names` (object names, labels, selector), `annotations`
//! (encodings), `objects` (cached shapes), `view` (cluster view), `labels`
//! (pod role labels), `cache` (list+watch), `client` (credentials,
//! timeouts), `errors` (`kube::Error` to [`crate::Error`]), `retry`,
//! `leader` (acquire, renew, release), `writes` (every other write).
//!
//! Callers outside this crate reach it through [`crate::connect`] and
//! [`crate::AnyDcs`]; [`KubernetesDcs`] itself is public for tests against a
//! real API server, which read its request counts and caches.

pub mod annotations;
mod cache;
mod client;
mod dcs_impl;
mod errors;
mod labels;
mod leader;
pub mod lock;
pub mod names;
pub mod objects;
mod retry;
pub mod view;
mod writes;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod};
use kube::Api;
use kube::api::{ApiResource, DynamicObject};
use patroni_config::{DcsConfig, KubernetesConfig};
use patroni_core::Cluster;

use self::lock::{LockObserver, LockState};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use self::cache::Cache;
pub use self::client::{ClientError, ClientSource};
pub use self::labels::{LabelPatch, labels_match, target_labels};
pub use self::names::{Mode, Names};
pub use self::objects::{KindObject, PodObject};
use self::retry::Retry;
use crate::accounting::RequestCounter;
use crate::{Error, Result, Settings};

/// Least time given to the read that confirms an expired lock.
const CONFIRM_MIN: Duration = Duration::from_secs(1);
/// Extra time non-holders wait in `watch`, so their cycles trail the leader's.
const NON_LEADER_EXTRA_WAIT: Duration = Duration::from_millis(500);

/// A lock is held while its expiry is not in the past: wake this much after it.
const PAST_EXPIRY: Duration = Duration::from_millis(5);

/// How long [`KubernetesDcs::watch`] waits: `timeout`, plus [`NON_LEADER_EXTRA_WAIT`] for a
/// member that does not hold the lock, but no later than just past the lock's expiry
/// (`expires_in`, on this member's clock) when someone else holds it. Pure.
fn watch_timeout(timeout: Duration, is_holder: bool, expires_in: Option<Duration>) -> Duration {
    if is_holder {
        return timeout;
    }
    let trailing = timeout + NON_LEADER_EXTRA_WAIT;
    expires_in.map_or(trailing, |e| trailing.min(e + PAST_EXPIRY))
}

/// Loop timings that dynamic configuration can change at run time.
#[derive(Debug, Clone, Copy)]
struct Timing {
    ttl: Duration,
    retry_timeout: Duration,
}

/// The Kubernetes DCS of one member (or of `patronictl`).
pub struct KubernetesDcs {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    name: String,
    k8s: KubernetesConfig,
    names: Names,
    timing: Mutex<Timing>,
    client: kube::Client,
    kinds_api: Api<DynamicObject>,
    pods_api: Api<Pod>,
    kinds: Arc<Cache<KindObject>>,
    pods: Arc<Cache<PodObject>>,
    /// Leader record observation; written by `get_cluster`, read by acquire.
    lock: Mutex<LockTrack>,
    /// The last view built; written by `get_cluster`, read by writes that
    /// depend on it (touch_member, initialize, manual_failover).
    last_cluster: Mutex<Option<Cluster>>,
    /// Warnings of the last view, to log each problem once.
    last_warnings: Mutex<Vec<String>>,
    /// Wakes `watch` (leader or config changes).
    wake: Arc<Notify>,
    /// Endpoints mode: the `-config` Service still needs creating.
    config_service_pending: AtomicBool,
    counter: RequestCounter,
    /// API server URL in use, and whether the bypass is in effect.
    server: (String, bool),
    /// Origin of the monotonic ticks fed to the lock observer.
    origin: tokio::time::Instant,
}

/// How many leader-object versions [`LockTrack`] remembers the record of.
const SEEN_VERSIONS: usize = 16;

#[derive(Debug, Default)]
struct LockTrack {
    observer: LockObserver,
    /// The leader record at each of the last [`SEEN_VERSIONS`] resourceVersions of the leader
    /// object that a view was built from, newest last. A lock write is conditional on the
    /// version the caller's decision was made from, and takes `transitions`/`acquireTime`
    /// from the record at that version, never from a newer view that another reader (the
    /// REST API, patronictl) built in the meantime.
    seen: std::collections::VecDeque<(String, BTreeMap<String, String>)>,
}

// === impl LockTrack ===

impl LockTrack {
    /// Remembers the record of the leader object at `version`.
    fn remember(&mut self, version: &str, annotations: &BTreeMap<String, String>) {
        if self.seen.iter().any(|(v, _)| v == version) {
            return;
        }
        self.seen
            .push_back((version.to_string(), lock::leader_record(annotations)));
        while self.seen.len() > SEEN_VERSIONS {
            self.seen.pop_front();
        }
    }

    /// The record of the leader object at `version`, if a view was built from it lately.
    fn record_at(&self, version: &str) -> Option<&BTreeMap<String, String>> {
        self.seen
            .iter()
            .rev()
            .find(|(v, _)| v == version)
            .map(|(_, r)| r)
    }
}

// === impl KubernetesDcs ===

impl KubernetesDcs {
    /// Connects and starts the pod and state-object caches, with the `kubernetes` section
    /// of `settings.dcs`.
    ///
    /// # Errors
    /// [`Error::Config`] when `settings.dcs` is not Kubernetes or no client configuration
    /// is usable (caused by a [`ClientError`]).
    pub async fn start(settings: Settings) -> Result<Self> {
        let DcsConfig::Kubernetes(k) = &settings.dcs else {
            return Err(Error::Config {
                what: format!(
                    "the Kubernetes DCS cannot start with the {} section",
                    settings.dcs.kind()
                ),
                source: None,
            });
        };
        let counter = RequestCounter::default();
        let source = ClientSource {
            context: k.context.clone(),
            cacert: k.cacert.clone(),
            bypass_api_service: k.bypass_api_service,
            kubeconfig: settings.kubeconfig.clone(),
            in_cluster: settings.in_cluster,
        };
        let keepalive =
            client::Keepalive::new(settings.ttl, settings.loop_wait, settings.retry_timeout);
        let timeouts = client::Timeouts {
            retry: settings.retry_timeout,
        };
        let clients = client::connect(&source, timeouts, keepalive, &counter).await?;
        let mode = if k.use_endpoints {
            Mode::Endpoints
        } else {
            Mode::ConfigMaps
        };
        let names = Names::new(mode, &settings.scope, &k.labels, &k.scope_label);
        let resource = match mode {
            Mode::Endpoints => ApiResource::erase::<Endpoints>(&()),
            Mode::ConfigMaps => ApiResource::erase::<ConfigMap>(&()),
        };
        let ns = k.namespace.as_str();
        let inner = Arc::new(Inner {
            name: settings.name.clone(),
            k8s: k.clone(),
            names: names.clone(),
            timing: Mutex::new(Timing {
                ttl: settings.ttl,
                retry_timeout: settings.retry_timeout,
            }),
            client: clients.request.clone(),
            kinds_api: Api::namespaced_with(clients.request.clone(), ns, &resource),
            pods_api: Api::namespaced(clients.request.clone(), ns),
            kinds: Cache::new(),
            pods: Cache::new(),
            lock: Mutex::new(LockTrack::default()),
            last_cluster: Mutex::new(None),
            last_warnings: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            config_service_pending: AtomicBool::new(mode == Mode::Endpoints),
            counter,
            server: (clients.server.clone(), clients.bypassing),
            origin: tokio::time::Instant::now(),
        });
        let kinds_watch: Api<DynamicObject> =
            Api::namespaced_with(clients.watch.clone(), ns, &resource);
        let pods_watch: Api<Pod> = Api::namespaced(clients.watch, ns);
        let wake_rules = WakeRules {
            leader: names.leader(),
            config: names.config(),
            me: settings.name.clone(),
            wake: inner.wake.clone(),
        };
        let tasks = vec![
            tokio::spawn(cache::run(
                kinds_watch,
                names.selector.clone(),
                inner.kinds.clone(),
                KindObject::from,
                move |(old, new)| wake_rules.on_change(old, new),
            )),
            tokio::spawn(cache::run(
                pods_watch,
                names.selector.clone(),
                inner.pods.clone(),
                PodObject::from,
                |_| {},
            )),
        ];
        Ok(KubernetesDcs { inner, tasks })
    }

    /// Names and labels of this cluster's objects.
    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    /// Counts of API requests made so far, by verb and resource.
    pub fn requests(&self) -> &RequestCounter {
        &self.inner.counter
    }

    /// The API server URL in use, and whether `bypass_api_service` is in
    /// effect (false when it was turned off, e.g. by a 403).
    pub fn api_server(&self) -> (&str, bool) {
        (&self.inner.server.0, self.inner.server.1)
    }

    /// Changes the lock ttl and the retry budget (dynamic configuration).
    pub fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        if let Ok(mut t) = self.inner.timing.lock() {
            *t = Timing { ttl, retry_timeout };
        }
    }

    /// Builds the cluster view from the caches, without API calls.
    ///
    /// # Errors
    /// [`Error::NotReady`] when the caches are not ready within `retry_timeout`.
    pub async fn get_cluster(&self) -> Result<Cluster> {
        self.inner.get_cluster().await
    }

    /// Waits up to `timeout` for a change that matters to the HA loop (the
    /// leader lock changed hands or was renewed by someone else, or the
    /// configuration changed). Members other than the lock holder wait
    /// 0.5 s longer, as in Patroni, but not past the moment another member's lock expires
    /// on this member's clock: a lock nobody renews produces no event to wake on, and
    /// this is the one backend whose expiry is judged here rather than by the server.
    /// Returns whether something happened.
    pub async fn watch(&self, timeout: Duration) -> bool {
        let holder = self
            .inner
            .last_cluster()
            .and_then(|c| c.leader_name().map(String::from));
        let is_holder = holder.as_deref() == Some(self.inner.name.as_str());
        let timeout = watch_timeout(timeout, is_holder, self.inner.lock_expires_in());
        tokio::time::timeout(timeout, self.inner.wake.notified())
            .await
            .is_ok()
    }

    /// Directly the cached pods (members) and state objects.
    pub fn cached_objects(&self) -> (BTreeMap<String, KindObject>, BTreeMap<String, PodObject>) {
        (
            self.inner.kinds.snapshot().unwrap_or_default(),
            self.inner.pods.snapshot().unwrap_or_default(),
        )
    }
}

impl Drop for KubernetesDcs {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

// === impl Inner ===

impl Inner {
    fn timing(&self) -> Timing {
        *self.timing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tick(&self) -> Duration {
        self.origin.elapsed()
    }

    fn last_cluster(&self) -> Option<Cluster> {
        self.last_cluster.lock().ok().and_then(|c| c.clone())
    }

    fn reset_cluster(&self) {
        if let Ok(mut c) = self.last_cluster.lock() {
            *c = None;
        }
    }

    /// How long until the lock, as last observed, expires on this member's clock; `None`
    /// when nobody holds it.
    fn lock_expires_in(&self) -> Option<Duration> {
        let track = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.tick();
        match track.observer.judge(now, self.timing().ttl) {
            LockState::Held { expires_at, .. } => Some(expires_at.saturating_sub(now)),
            LockState::Free => None,
        }
    }

    /// Feeds the leader object of `kinds` to the lock observer and judges the lock.
    fn observe_lock(&self, kinds: &BTreeMap<String, KindObject>) -> LockState {
        let leader_obj = kinds.get(&self.names.leader());
        let mut track = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        match leader_obj {
            Some(o) => {
                track.remember(&o.resource_version, &o.annotations);
                track
                    .observer
                    .observe(&o.annotations, self.tick(), self.timing().ttl)
            }
            None => {
                track
                    .observer
                    .observe(&BTreeMap::new(), self.tick(), self.timing().ttl);
                LockState::Free
            }
        }
    }

    async fn get_cluster(&self) -> Result<Cluster> {
        let retry = self.timing().retry_timeout;
        let deadline = tokio::time::Instant::now() + retry;
        for cache_ready in [
            self.pods.wait_ready(retry).await,
            self.kinds
                .wait_ready(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await,
        ] {
            if !cache_ready {
                return Err(Error::NotReady(retry));
            }
        }
        let (Some(kinds), Some(pods)) = (self.kinds.snapshot(), self.pods.snapshot()) else {
            return Err(Error::NotReady(retry));
        };
        let mut kinds = kinds;
        let mut lock_state = self.observe_lock(&kinds);
        if lock_state == LockState::Free
            && kinds
                .get(&self.names.leader())
                .is_some_and(|o| o.annotations.get("leader").is_some_and(|l| !l.is_empty()))
        {
            // The cache says a held lock expired. A cache can be arbitrarily stale (this
            // process may have been suspended, a watch may lag): confirm with a read from the
            // API server before anyone decides to take the lock (issue #11).
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let retry = Retry::new(remaining.max(CONFIRM_MIN), &self.k8s.retriable_http_codes);
            let name = self.names.leader();
            let fresh = retry
                .run("read the leader object", || self.kinds_api.get_opt(&name))
                .await?
                .map(KindObject::from);
            match fresh {
                Some(o) => {
                    self.kinds.set(o.clone());
                    kinds.insert(name, o);
                }
                None => {
                    kinds.remove(&name);
                }
            }
            lock_state = self.observe_lock(&kinds);
        }
        let view = view::build(&self.names, &kinds, &pods, &lock_state);
        if let Ok(mut last) = self.last_warnings.lock()
            && *last != view.warnings
        {
            for w in view.warnings.iter().filter(|w| !last.contains(w)) {
                tracing::warn!("unreadable cluster state, ignored: {w}");
            }
            *last = view.warnings.clone();
        }
        if let Ok(mut c) = self.last_cluster.lock() {
            *c = Some(view.cluster.clone());
        }
        Ok(view.cluster)
    }
}

/// Which state-object changes wake the HA loop (Patroni §4.3): the leader
/// object's `leader` or the config object's `config` changing (config only
/// when both old and new are present), or any change of the leader object
/// whose `leader` is not this member (someone else's renewal).
struct WakeRules {
    leader: String,
    config: String,
    me: String,
    wake: Arc<Notify>,
}

impl WakeRules {
    fn on_change(&self, old: Option<&KindObject>, new: Option<&KindObject>) {
        let Some(name) = new.or(old).map(|o| o.name.as_str()) else {
            return;
        };
        let value =
            |o: Option<&KindObject>, key: &str| o.and_then(|o| o.annotations.get(key).cloned());
        let wake = if name == self.leader {
            let (before, after) = (value(old, "leader"), value(new, "leader"));
            before != after || after.as_deref() != Some(self.me.as_str())
        } else if name == self.config {
            let (before, after) = (value(old, "config"), value(new, "config"));
            before.is_some() && after.is_some() && before != after
        } else {
            false
        };
        if wake {
            self.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The holder waits `loop_wait`; the others trail it by 0.5 s, but wake just past the
    /// expiry of a lock nobody renews.
    #[test]
    fn watch_waits_no_longer_than_the_lock_lasts() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(watch_timeout(s(1), true, Some(ms(200))), s(1));
        assert_eq!(watch_timeout(s(1), false, None), ms(1500));
        assert_eq!(watch_timeout(s(1), false, Some(s(4))), ms(1500));
        assert_eq!(watch_timeout(s(1), false, Some(ms(700))), ms(705));
        assert_eq!(watch_timeout(s(1), false, Some(Duration::ZERO)), ms(5));
    }
}
