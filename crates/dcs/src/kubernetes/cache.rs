//! List+watch caches of the cluster's pods and state objects.
//!
//! Each cache runs one task: list (by label selector), store, watch from the
//! list's resourceVersion, apply events; when the watch ends normally it
//! watches again from the last version seen, and it lists again after a
//! 410 Gone, an error, or [`Cache::kill_stream`] (called after a 409 on a
//! conditional write: the cache may be stale). An object replaces the cached
//! one only if its resourceVersion is newer, so a write's response and a
//! late watch event cannot move the cache backwards.
//!
//! If the task stalls, readers see stale data and writes based on it fail
//! their compare-and-swap; if it dies, [`Cache::wait_ready`] times out and
//! the DCS reports itself unreachable.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::objects::{Versioned, is_newer};

/// Least time between the starts of two lists after a failure. Paced from the start of the
/// failed attempt, not its end: an attempt that itself waited out the connect timeout (the API
/// server unreachable, e.g. across a partition) is followed at once by the next, so the cache
/// is back within one connect timeout of the API server becoming reachable again.
const RELIST_INTERVAL: Duration = Duration::from_secs(1);
/// Server-side watch timeout; the watch is then resumed from the last version.
const WATCH_TIMEOUT_SECS: u32 = 290;

/// A change seen by the cache: (old, new); `new` is `None` on deletion.
pub type Change<'a, T> = (Option<&'a T>, Option<&'a T>);

/// A cache of objects by name.
#[derive(Debug)]
pub struct Cache<T> {
    state: Mutex<State<T>>,
    /// Signalled when the cache becomes ready.
    ready: Notify,
    /// Signalled to make the task drop its watch and list again.
    kill: Notify,
}

#[derive(Debug)]
struct State<T> {
    items: BTreeMap<String, T>,
    ready: bool,
}

// === impl Cache ===

impl<T: Versioned + Clone + Debug> Cache<T> {
    /// An empty cache, not ready.
    pub fn new() -> Arc<Self> {
        Arc::new(Cache {
            state: Mutex::new(State {
                items: BTreeMap::new(),
                ready: false,
            }),
            ready: Notify::new(),
            kill: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A poisoned lock only means a panic elsewhere mid-update; the map is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// All objects, if the cache is ready.
    pub fn snapshot(&self) -> Option<BTreeMap<String, T>> {
        let s = self.lock();
        s.ready.then(|| s.items.clone())
    }

    /// One object.
    pub fn get(&self, name: &str) -> Option<T> {
        self.lock().items.get(name).cloned()
    }

    /// Stores `obj` (e.g. a write's response) if it is newer than the cached copy.
    pub fn set(&self, obj: T) {
        let mut s = self.lock();
        let newer = s
            .items
            .get(obj.name())
            .is_none_or(|old| is_newer(obj.resource_version(), old.resource_version()));
        if newer {
            s.items.insert(obj.name().to_string(), obj);
        }
    }

    /// Makes the cache task drop its watch and list again.
    pub fn kill_stream(&self) {
        self.kill.notify_one();
    }

    /// Waits up to `timeout` for the cache to be ready.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.ready.notified();
            if self.lock().ready {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.lock().ready;
            }
        }
    }

    fn replace(&self, items: BTreeMap<String, T>) -> Vec<(Option<T>, Option<T>)> {
        let mut s = self.lock();
        let mut changes = Vec::new();
        for (name, new) in &items {
            let old = s.items.get(name);
            if old.is_none_or(|o| o.resource_version() != new.resource_version()) {
                changes.push((old.cloned(), Some(new.clone())));
            }
        }
        for (name, old) in &s.items {
            if !items.contains_key(name) {
                changes.push((Some(old.clone()), None));
            }
        }
        s.items = items;
        s.ready = true;
        drop(s);
        self.ready.notify_waiters();
        changes
    }

    fn apply(&self, obj: T, deleted: bool) -> Option<(Option<T>, Option<T>)> {
        let mut s = self.lock();
        let old = s.items.get(obj.name()).cloned();
        let newer = old
            .as_ref()
            .is_none_or(|o| is_newer(obj.resource_version(), o.resource_version()));
        if !newer {
            return None;
        }
        if deleted {
            s.items.remove(obj.name());
            Some((old, None))
        } else {
            s.items.insert(obj.name().to_string(), obj.clone());
            Some((old, Some(obj)))
        }
    }

    fn set_unready(&self) {
        self.lock().ready = false;
    }
}

/// Runs the list+watch loop of `cache` forever (abort the task to stop).
/// `on_change` sees every change, after it is stored.
pub async fn run<K, T, F>(
    api: Api<K>,
    selector: String,
    cache: Arc<Cache<T>>,
    convert: fn(K) -> T,
    on_change: F,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    T: Versioned + Clone + Debug,
    F: Fn(Change<'_, T>),
{
    loop {
        let started = tokio::time::Instant::now();
        let list = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(%selector, "failed to list: {e}");
                cache.set_unready();
                tokio::time::sleep_until(started + RELIST_INTERVAL).await;
                continue;
            }
        };
        let mut version = list.metadata.resource_version.clone().unwrap_or_default();
        let items = list
            .items
            .into_iter()
            .map(convert)
            .map(|o| (o.name().to_string(), o))
            .collect();
        for (old, new) in cache.replace(items) {
            on_change((old.as_ref(), new.as_ref()));
        }
        // Watch, resuming from the last version seen, until told to re-list.
        'watch: loop {
            let params = WatchParams::default()
                .labels(&selector)
                .timeout(WATCH_TIMEOUT_SECS);
            let stream = match api.watch(&params, &version).await {
                Ok(s) => s.boxed(),
                Err(e) => {
                    tracing::warn!(%selector, "failed to watch: {e}");
                    break 'watch;
                }
            };
            let mut stream = stream;
            loop {
                let next = tokio::select! {
                    biased;
                    _ = cache.kill.notified() => { tracing::debug!(%selector, "watch killed, re-listing"); break 'watch; }
                    next = stream.try_next() => next,
                };
                match next {
                    Ok(Some(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                        version = o.meta().resource_version.clone().unwrap_or(version);
                        if let Some((old, new)) = cache.apply(convert(o), false) {
                            on_change((old.as_ref(), new.as_ref()));
                        }
                    }
                    Ok(Some(WatchEvent::Deleted(o))) => {
                        version = o.meta().resource_version.clone().unwrap_or(version);
                        if let Some((old, new)) = cache.apply(convert(o), true) {
                            on_change((old.as_ref(), new.as_ref()));
                        }
                    }
                    Ok(Some(WatchEvent::Bookmark(b))) => version = b.metadata.resource_version,
                    Ok(Some(WatchEvent::Error(e))) => {
                        if e.code != 410 {
                            tracing::warn!(%selector, "watch error: {}", e.message);
                        }
                        break 'watch;
                    }
                    Ok(None) => continue 'watch,
                    Err(e) => {
                        tracing::warn!(%selector, "watch stream failed: {e}");
                        break 'watch;
                    }
                }
            }
        }
        cache.set_unready();
    }
}
