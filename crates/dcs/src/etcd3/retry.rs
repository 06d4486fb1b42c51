//! Patroni's retry discipline for etcd requests (`AbstractEtcd.retry`: a deadline of
//! `retry_timeout`, backoff doubling to 1 s), and how an `etcd_client::Error` becomes a
//! backend-neutral [`Error`]: the one place that knows which answers are retried.
//!
//! Retried: connection-level failures (transport, I/O, a stream that broke), gRPC
//! `Unavailable`, `DeadlineExceeded`, `FailedPrecondition` (Patroni's retry set), `Unknown`,
//! `Internal` and `Aborted` (a member that lost its leader, a lessor that moved), and an attempt
//! that got no answer within its share of the budget. Everything else (permission, invalid
//! argument, not found) goes back at once as [`Error::Refused`]. When the budget is spent the
//! last failure becomes [`Error::Unreachable`].
//!
//! A retried failure can also ring a bell ([`Retry::with_failure_signal`]): with SRV discovery
//! it asks for the records to be resolved again, as Patroni reloads its machines cache when
//! every endpoint failed (a request that fails or hangs on the balanced channel means no
//! endpoint was ready).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::Error as EtcdError;
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::Code;

use crate::{Error, Result};

/// First backoff delay.
const INITIAL_DELAY: Duration = Duration::from_millis(100);
/// Backoff cap (Patroni's `max_delay=1`).
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Least time one attempt is given, even when the budget is nearly spent.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);
/// One attempt gets at most this share of the whole budget, so that a server that stopped
/// answering (a hung TCP connection) leaves time to try another endpoint.
const ATTEMPT_SHARE: u32 = 3;

/// An attempt that got no answer in time.
#[derive(Debug, thiserror::Error)]
#[error("no answer from etcd within {0:?}")]
pub struct TimedOut(pub Duration);

/// When to retry, and until when.
#[derive(Debug, Clone)]
pub struct Retry {
    deadline: Instant,
    attempt: Duration,
    /// Notified after each attempt that failed in a way worth retrying.
    on_failure: Option<Arc<Notify>>,
}

// === impl Retry ===

impl Retry {
    /// A budget of `timeout` from now.
    pub fn new(timeout: Duration) -> Self {
        Retry {
            deadline: Instant::now() + timeout,
            attempt: (timeout / ATTEMPT_SHARE).max(MIN_ATTEMPT),
            on_failure: None,
        }
    }

    /// Notifies `signal` after every attempt that failed in a way worth retrying (connection
    /// trouble, no answer in time).
    pub fn with_failure_signal(mut self, signal: Option<Arc<Notify>>) -> Self {
        self.on_failure = signal;
        self
    }

    /// Time left.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs `op` until it succeeds, fails for good, or the budget is spent.
    ///
    /// # Errors
    /// [`Error::Refused`] for an answer retrying will not fix, [`Error::Unreachable`] when the
    /// budget is spent.
    pub async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, EtcdError>>,
    {
        let mut delay = INITIAL_DELAY;
        loop {
            let budget = self
                .remaining()
                .min(self.attempt)
                .max(Duration::from_millis(1));
            let e: crate::BoxError = match tokio::time::timeout(budget, op()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if !retriable(&e) => return Err(refused(what, e)),
                Ok(Err(e)) => Box::new(e),
                Err(_) => Box::new(TimedOut(budget)),
            };
            if let Some(signal) = &self.on_failure {
                signal.notify_one();
            }
            if self.remaining() <= delay {
                return Err(Error::Unreachable {
                    what: what.to_string(),
                    source: e,
                });
            }
            tracing::debug!(what, error = %e, ?delay, "retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_DELAY);
        }
    }
}

/// Whether `e` may go away by itself (retry), rather than being the store's final answer.
pub fn retriable(e: &EtcdError) -> bool {
    match e {
        EtcdError::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::FailedPrecondition
                | Code::Unknown
                | Code::Internal
                | Code::Aborted
                | Code::Cancelled
        ),
        EtcdError::TransportError(_)
        | EtcdError::IoError(_)
        | EtcdError::WatchError(_)
        | EtcdError::EndpointError(_) => true,
        _ => false,
    }
}

/// The store's final answer to `what`.
pub fn refused(what: &str, e: EtcdError) -> Error {
    Error::Refused {
        what: what.to_string(),
        source: Box::new(e),
    }
}

/// Whether `e` says a lease does not exist (any more): a write bound to it was answered
/// `NotFound`, or a keepalive found it gone.
pub fn is_lease_gone(e: &Error) -> bool {
    let Error::Refused { source, .. } = e else {
        return false;
    };
    match source.downcast_ref::<EtcdError>() {
        Some(EtcdError::GRpcStatus(s)) => s.code() == Code::NotFound,
        Some(EtcdError::LeaseKeepAliveError(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connection trouble is retried, then unreachable; the store's "no" is refused at once.
    #[tokio::test(start_paused = true)]
    async fn retriable_failures_end_unreachable_and_answers_refused() {
        let retry = Retry::new(Duration::from_secs(2));
        let mut tries = 0;
        let e = retry
            .run("read", || {
                tries += 1;
                async { Err::<(), _>(EtcdError::GRpcStatus(tonic::Status::unavailable("down"))) }
            })
            .await
            .expect_err("fails");
        assert!(e.is_unreachable(), "{e:?}");
        assert!(tries > 2, "{tries}");
        let e = Retry::new(Duration::from_secs(2))
            .run("read", || async {
                Err::<(), _>(EtcdError::GRpcStatus(tonic::Status::permission_denied(
                    "no",
                )))
            })
            .await
            .expect_err("fails");
        assert!(matches!(e, Error::Refused { .. }), "{e:?}");
        let gone = Retry::new(Duration::from_secs(2))
            .run("put", || async {
                Err::<(), _>(EtcdError::GRpcStatus(tonic::Status::not_found(
                    "etcdserver: requested lease not found",
                )))
            })
            .await
            .expect_err("fails");
        assert!(is_lease_gone(&gone));
        let hung = Retry::new(Duration::from_secs(2))
            .run("read", std::future::pending::<Result<(), EtcdError>>)
            .await
            .expect_err("fails");
        assert!(hung.is_unreachable());
        let signal = Arc::new(Notify::new());
        let _ = Retry::new(Duration::from_secs(1))
            .with_failure_signal(Some(signal.clone()))
            .run("read", || async {
                Err::<(), _>(EtcdError::GRpcStatus(tonic::Status::unavailable("down")))
            })
            .await;
        tokio::time::timeout(Duration::from_millis(1), signal.notified())
            .await
            .expect("a failed attempt rings the bell");
    }
}
