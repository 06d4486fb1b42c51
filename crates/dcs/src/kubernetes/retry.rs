//! Patroni's retry discipline for Kubernetes requests: keep trying
//! retriable failures until `retry_timeout` runs out, backing off 0.1 s
//! doubling to 1 s, plus up to 0.8 s of jitter.
//!
//! Retriable: connection-level failures, HTTP 500, 503, 504, and the
//! configured `retriable_http_codes` (renew adds 403). Everything else goes
//! back to the caller at once.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::errors;
use crate::Result;

/// First backoff delay.
const INITIAL_DELAY: Duration = Duration::from_millis(100);
/// Backoff cap (before jitter).
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Upper bound of the random jitter added to each delay.
const MAX_JITTER_MS: u64 = 800;

/// When to retry, and until when.
#[derive(Debug, Clone)]
pub struct Retry {
    deadline: Instant,
    extra_codes: Vec<u16>,
}

// === impl Retry ===

impl Retry {
    /// A retry budget of `timeout` from now; `extra_codes` are retried on top
    /// of 500/503/504.
    pub fn new(timeout: Duration, extra_codes: &[u16]) -> Self {
        Retry {
            deadline: Instant::now() + timeout,
            extra_codes: extra_codes.to_vec(),
        }
    }

    /// Also retry `code` (renew retries 403).
    pub fn with_code(mut self, code: u16) -> Self {
        self.extra_codes.push(code);
        self
    }

    /// Time left.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether at least `d` is left (Patroni's `ensure_deadline`).
    pub fn has(&self, d: Duration) -> bool {
        self.remaining() >= d
    }

    fn retriable(&self, e: &kube::Error) -> bool {
        match e {
            kube::Error::Api(s) => {
                matches!(s.code, 500 | 503 | 504) || self.extra_codes.contains(&s.code)
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) => true,
            _ => false,
        }
    }

    /// Runs `op` until it succeeds, fails for good, or time runs out.
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) or [`Error::Refused`](crate::Error::Refused)
    /// for a non-retriable answer, [`Error::Unreachable`](crate::Error::Unreachable) when the
    /// budget is spent.
    pub async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut delay = INITIAL_DELAY;
        loop {
            let e = match tokio::time::timeout(self.remaining().max(Duration::from_millis(1)), op())
                .await
            {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(errors::unreachable(
                        what,
                        kube::Error::Service("request timed out".into()),
                    ));
                }
            };
            if !self.retriable(&e) {
                return Err(errors::refused(what, e));
            }
            let sleep = delay + Duration::from_millis(jitter_ms());
            if self.remaining() <= sleep {
                return Err(errors::unreachable(what, e));
            }
            tracing::debug!(what, error = %e, ?sleep, "retrying");
            tokio::time::sleep(sleep).await;
            delay = (delay * 2).min(MAX_DELAY);
        }
    }
}

/// 0..=800 ms, from the standard library's per-process random hasher keys.
fn jitter_ms() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish() % (MAX_JITTER_MS + 1)
}
