//! The ZooKeeper session of one member, and how one operation is tried against it.
//!
//! One session at a time ([`Sessions`]): opened on first use with the session timeout = `ttl`
//! (Patroni passes `ttl` as kazoo's `timeout`), and opened anew when the server expired it,
//! the client closed it, or `ttl` changed (Patroni's `set_ttl` restarts the session too). The
//! ephemeral `leader` and `members/<name>` znodes belong to the session: when it ends, the
//! server removes them, which is how a dead leader loses the lock.
//!
//! Each session has one task that holds persistent watches on `leader` and `config` and wakes
//! the HA loop on any of their changes and on every session state change (Patroni's
//! `_watcher`).
//!
//! [`Sessions::run`] is Patroni's `KazooRetry(deadline=retry_timeout, max_delay=1)`: a lost
//! connection, a timeout or an expired session is retried (expired: on a new session), backing
//! off 0.1 s doubling to 1 s, until `retry_timeout` runs out, which is
//! [`Error::Unreachable`]. Any other answer of the server goes back to the caller, which
//! knows whether `NodeExists` or `BadVersion` means "refused".

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use zookeeper_client as zk;

use crate::{Error, Result};

/// First backoff delay.
const INITIAL_DELAY: Duration = Duration::from_millis(100);
/// Backoff cap (kazoo's `max_delay=1`).
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Pause before adding the watches again after the server refused them.
const REWATCH_DELAY: Duration = Duration::from_secs(1);
/// Least idle time before a connection is judged lost (Patroni: `max(loop_wait - 2, 2)` s).
const MIN_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// How to open a session.
#[derive(Debug, Clone)]
pub(crate) struct SessionSpec {
    /// `host:port,host:port`.
    pub connect_string: String,
    /// `(scheme, credential)` sent on every session.
    pub auth_data: Vec<(String, String)>,
    /// Znodes whose changes wake the loop.
    pub watched: Vec<String>,
}

/// The open session, if any.
struct Open {
    client: zk::Client,
    /// The `ttl` it was opened with.
    ttl: Duration,
    watcher: JoinHandle<()>,
}

/// One member's session, opened and reopened on demand.
pub(crate) struct Sessions {
    spec: SessionSpec,
    open: Mutex<Option<Box<Open>>>,
    /// Wakes the HA loop's `watch`; one stored permit, as Patroni's `Event`.
    pub wake: Arc<Notify>,
    /// The session timeout the server granted to the last session, in milliseconds (0: none
    /// yet); it may be shorter than the `ttl` asked for.
    negotiated_ms: AtomicU64,
}

/// The server's answer to one operation (not a connection problem).
pub(crate) type Answer<T> = std::result::Result<T, zk::Error>;

// === impl Sessions ===

impl Sessions {
    /// No session yet; the first operation opens one.
    pub fn new(spec: SessionSpec) -> Self {
        Sessions {
            spec,
            open: Mutex::new(None),
            wake: Arc::new(Notify::new()),
            negotiated_ms: AtomicU64::new(0),
        }
    }

    /// The session timeout the server granted to the last session opened.
    pub fn negotiated_timeout(&self) -> Option<Duration> {
        match self.negotiated_ms.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// The id of the session in use, if one is open.
    pub async fn session_id(&self) -> Option<i64> {
        self.open
            .lock()
            .await
            .as_ref()
            .filter(|o| !is_terminal(o.client.state()))
            .map(|o| o.client.session_id().0)
    }

    /// A client of a live session with timeout `ttl`, opening one if needed.
    async fn client(&self, ttl: Duration, loop_wait: Duration) -> Answer<zk::Client> {
        let mut open = self.open.lock().await;
        if let Some(o) = open.as_ref()
            && !is_terminal(o.client.state())
            && o.ttl == ttl
        {
            return Ok(o.client.clone());
        }
        if let Some(old) = open.take() {
            old.watcher.abort();
            tracing::info!(
                session = %old.client.session_id(),
                state = %old.client.state(),
                "opening a new ZooKeeper session"
            );
        }
        let mut connector = zk::Client::connector()
            .with_session_timeout(ttl)
            .with_connection_timeout(
                loop_wait
                    .saturating_sub(Duration::from_secs(2))
                    .max(MIN_CONNECTION_TIMEOUT),
            );
        for (scheme, credential) in &self.spec.auth_data {
            connector = connector.with_auth(scheme, credential.as_bytes());
        }
        let client = connector.connect(&self.spec.connect_string).await?;
        let granted = client.session_timeout();
        self.negotiated_ms.store(
            u64::try_from(granted.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            Ordering::SeqCst,
        );
        if granted < ttl {
            tracing::warn!(
                asked = ?ttl,
                granted = ?granted,
                "the ZooKeeper server granted a session timeout shorter than ttl: the leader \
                 lock lasts that long, and the lease fence counts with it"
            );
        }
        tracing::info!(
            session = %client.session_id(),
            timeout = ?client.session_timeout(),
            "ZooKeeper session established"
        );
        let watcher = tokio::spawn(watch_session(
            client.clone(),
            self.spec.watched.clone(),
            self.wake.clone(),
        ));
        self.wake.notify_one();
        *open = Some(Box::new(Open {
            client: client.clone(),
            ttl,
            watcher,
        }));
        Ok(client)
    }

    /// Runs `op` on a live session until the server answers, retrying lost connections and
    /// expired sessions within `budget`. The answer may be an error of the server's
    /// (`NodeExists`, `BadVersion`, …), for the caller to interpret.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when no answer came within `budget`.
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        timing: (Duration, Duration, Duration),
        mut op: F,
    ) -> Result<Answer<T>>
    where
        F: FnMut(zk::Client) -> Fut,
        Fut: Future<Output = Answer<T>>,
    {
        let (ttl, loop_wait, budget) = timing;
        let deadline = tokio::time::Instant::now() + budget;
        let mut delay = INITIAL_DELAY;
        let mut last = zk::Error::Timeout;
        loop {
            let attempt = async {
                let client = self.client(ttl, loop_wait).await?;
                op(client).await
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Err(_) => return Err(unreachable(what, last)),
                Ok(Err(e)) if retriable(&e) => {
                    tracing::debug!(what, error = %e, "retrying");
                    last = e;
                }
                Ok(answer) => return Ok(answer),
            }
            if tokio::time::Instant::now() + delay >= deadline {
                return Err(unreachable(what, last));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_DELAY);
        }
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        if let Some(open) = self.open.get_mut().take() {
            open.watcher.abort();
        }
    }
}

/// The session can serve no more requests: a new one is needed.
fn is_terminal(state: zk::SessionState) -> bool {
    matches!(
        state,
        zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed
    )
}

/// Failures retried within the budget: everything but a definite answer of the server (a
/// lost connection, a request that timed out or was failed with the connection, a session
/// that ended: the next attempt opens a new one).
fn retriable(e: &zk::Error) -> bool {
    !matches!(
        e,
        zk::Error::NoNode
            | zk::Error::NodeExists
            | zk::Error::BadVersion
            | zk::Error::NotEmpty
            | zk::Error::NoChildrenForEphemerals
            | zk::Error::NoAuth
            | zk::Error::InvalidAcl
            | zk::Error::AuthFailed
            | zk::Error::BadArguments(_)
            | zk::Error::NotReadOnly
            | zk::Error::NoWatcher
            | zk::Error::QuotaExceeded
            | zk::Error::MarshallingError
            | zk::Error::Unimplemented
            | zk::Error::ReconfigDisabled
            | zk::Error::UnexpectedErrorCode(_)
            | zk::Error::UnmarshalError { .. }
    )
}

fn unreachable(what: &str, source: zk::Error) -> Error {
    Error::Unreachable {
        what: what.to_string(),
        source: Box::new(source),
    }
}

/// A server answer no retry will change, as a neutral error: `BadVersion` a lost
/// compare-and-swap, the rest refusals.
pub(crate) fn refused(what: &str, source: zk::Error) -> Error {
    let what = what.to_string();
    match source {
        zk::Error::BadVersion => Error::Conflict {
            what,
            source: Box::new(source),
        },
        source => Error::Refused {
            what,
            source: Box::new(source),
        },
    }
}

/// Holds persistent watches on `paths` for the life of `client`'s session and wakes the HA loop
/// on each of their events and on each session state change.
async fn watch_session(client: zk::Client, paths: Vec<String>, wake: Arc<Notify>) {
    let mut watchers = Vec::new();
    for path in &paths {
        loop {
            match client.watch(path, zk::AddWatchMode::Persistent).await {
                Ok(w) => {
                    watchers.push(w);
                    break;
                }
                Err(e) if is_terminal(client.state()) => {
                    tracing::debug!(path, "watch not added, session over: {e}");
                    wake.notify_one();
                    return;
                }
                Err(e) => {
                    tracing::warn!(path, "failed to watch: {e}");
                    tokio::time::sleep(REWATCH_DELAY).await;
                }
            }
        }
    }
    let mut state = client.state_watcher();
    loop {
        let changed =
            futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            (event, _, _) = changed => {
                tracing::debug!(path = %event.path, kind = ?event.event_type, "znode changed");
                wake.notify_one();
                if is_terminal(event.session_state) {
                    return;
                }
            }
            s = state.changed() => {
                tracing::debug!(state = %s, "session state changed");
                wake.notify_one();
                if is_terminal(s) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connection failures and ended sessions are retried; answers of the server are not, and
    /// map to a lost compare (`BadVersion`) or a refusal; a spent budget is unreachability.
    #[test]
    fn failures_are_classified_by_what_the_server_said() {
        for e in [
            zk::Error::ConnectionLoss,
            zk::Error::Timeout,
            zk::Error::SessionExpired,
            zk::Error::ClientClosed,
            zk::Error::NoHosts,
        ] {
            assert!(retriable(&e), "{e:?}");
        }
        for e in [
            zk::Error::NoNode,
            zk::Error::NodeExists,
            zk::Error::BadVersion,
            zk::Error::NoAuth,
            zk::Error::AuthFailed,
        ] {
            assert!(!retriable(&e), "{e:?}");
        }
        assert!(matches!(
            refused("write x", zk::Error::BadVersion),
            Error::Conflict { .. }
        ));
        assert!(matches!(
            refused("write x", zk::Error::NoAuth),
            Error::Refused { .. }
        ));
        let e = unreachable("read the cluster", zk::Error::ConnectionLoss);
        assert!(e.is_unreachable());
        assert_eq!(e.to_string(), "read the cluster: the DCS is not reachable");
    }
}
