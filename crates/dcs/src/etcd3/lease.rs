//! This member's lease (Patroni's `_do_refresh_lease`): granted with the `ttl` in whole
//! seconds, kept alive at most once per `loop_wait` unless forced (the leader's renewal
//! forces it), replaced when etcd says it is gone. The `members/<name>` and `leader` keys
//! are bound to it.
//!
//! One refresh runs at a time (an async mutex), so concurrent callers (the HA loop, the REST
//! API) never grant two leases.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::retry::{Retry, is_lease_gone};
use crate::Result;

/// The lease and when it was last confirmed alive.
#[derive(Debug)]
struct State {
    id: Option<i64>,
    refreshed: Option<Instant>,
    ttl: Duration,
    loop_wait: Duration,
}

/// This member's lease.
#[derive(Debug)]
pub struct Lease {
    state: Mutex<State>,
    /// A copy of `state.id` (0: none) for readers that must not wait for a refresh.
    current: AtomicI64,
    /// Set by [`refresh_due`](Self::refresh_due), taken by the next refresh.
    due: AtomicBool,
    /// Set by [`set_ttl`](Self::set_ttl), taken by the next refresh.
    new_ttl: std::sync::Mutex<Option<Duration>>,
}

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// The lease in force after the refresh.
    pub id: i64,
    /// Whether it is a new lease (the old one was gone or there was none).
    pub granted: bool,
}

// === impl Lease ===

impl Lease {
    /// No lease yet; one of `ttl` will be granted by the first refresh.
    pub fn new(ttl: Duration, loop_wait: Duration) -> Self {
        Lease {
            state: Mutex::new(State {
                id: None,
                refreshed: None,
                ttl,
                loop_wait,
            }),
            current: AtomicI64::new(0),
            due: AtomicBool::new(false),
            new_ttl: std::sync::Mutex::new(None),
        }
    }

    /// The lease in force, if any.
    pub fn current(&self) -> Option<i64> {
        Some(self.current.load(Ordering::SeqCst)).filter(|id| *id != 0)
    }

    /// Makes the next refresh keep the lease alive whatever the time since the last one.
    pub fn refresh_due(&self) {
        self.due.store(true, Ordering::SeqCst);
    }

    /// Drops the lease: the next refresh grants one of `ttl`.
    pub fn set_ttl(&self, ttl: Duration) {
        *self
            .new_ttl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ttl);
    }

    /// Forgets the lease (etcd said it is gone).
    pub async fn forget(&self) {
        let mut s = self.state.lock().await;
        s.id = None;
        self.current.store(0, Ordering::SeqCst);
    }

    /// Keeps the lease alive (unless refreshed within `loop_wait` and not `force`d), or grants
    /// a new one when there is none or etcd says it is gone.
    ///
    /// # Errors
    /// The keepalive's or the grant's failure, after retrying within `retry`.
    pub async fn refresh(&self, client: &Client, retry: &Retry, force: bool) -> Result<Refreshed> {
        let mut s = self.state.lock().await;
        let new_ttl = self
            .new_ttl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(ttl) = new_ttl {
            s.ttl = ttl;
            s.id = None;
            self.current.store(0, Ordering::SeqCst);
        }
        if self.due.swap(false, Ordering::SeqCst) {
            s.refreshed = None;
        }
        if let (Some(id), Some(at)) = (s.id, s.refreshed)
            && !force
            && at + s.loop_wait > Instant::now()
        {
            return Ok(Refreshed { id, granted: false });
        }
        if let Some(id) = s.id {
            let kept = retry
                .run("keep the lease alive", || {
                    let mut leases = client.lease_client();
                    async move { leases.keep_alive(id).await.map(drop) }
                })
                .await;
            match kept {
                Ok(()) => {
                    s.refreshed = Some(Instant::now());
                    return Ok(Refreshed { id, granted: false });
                }
                Err(e) if is_lease_gone(&e) => {
                    tracing::warn!(
                        lease = id,
                        "the lease is gone from etcd; granting a new one"
                    );
                    s.id = None;
                    self.current.store(0, Ordering::SeqCst);
                }
                Err(e) => return Err(e),
            }
        }
        let ttl = i64::try_from(s.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let granted = retry
            .run("grant a lease", || {
                let mut leases = client.lease_client();
                async move { leases.grant(ttl, None).await }
            })
            .await?;
        let id = granted.id();
        s.id = Some(id);
        s.refreshed = Some(Instant::now());
        self.current.store(id, Ordering::SeqCst);
        Ok(Refreshed { id, granted: true })
    }
}
