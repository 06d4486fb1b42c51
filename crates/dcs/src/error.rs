//! DCS errors, the same for every backend: nothing here names a backend or carries one of
//! its types (a backend's own error is kept as the boxed `source`).
//!
//! The split matters to the HA loop: [`Error::Unreachable`] and [`Error::NotReady`] mean
//! "the DCS is not accessible" (a primary demotes unless failsafe applies,
//! [`Error::is_unreachable`]); the others are an operation the store answered and refused.
//! A backend that needs the store's own answer (an HTTP status) inspects it before
//! converting, or reads it back from `source`.

use std::time::Duration;

/// A backend's own error, kept as the cause of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A DCS operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The DCS could not be reached, or kept failing with retriable errors, until
    /// `retry_timeout` ran out.
    #[error("{what}: the DCS is not reachable")]
    Unreachable {
        /// What was being done.
        what: String,
        /// The last failure.
        #[source]
        source: BoxError,
    },
    /// The DCS gave no consistent view within this time (a backend's watched caches did not
    /// become ready).
    #[error("the DCS is not responding properly: no view after {0:?}")]
    NotReady(Duration),
    /// A compare-and-swap lost: the object changed since the version given (an API server's
    /// HTTP 409, a failed etcd compare, ZooKeeper's `BadVersion`).
    #[error("{what}")]
    Conflict {
        /// What was being done.
        what: String,
        /// The store's answer.
        #[source]
        source: BoxError,
    },
    /// The store refused the operation for a reason retrying will not fix: permission,
    /// not found, invalid.
    #[error("{what}")]
    Refused {
        /// What was being done.
        what: String,
        /// The store's answer.
        #[source]
        source: BoxError,
    },
    /// No usable client configuration for the DCS, or a DCS this build cannot use.
    #[error("{what}")]
    Config {
        /// What was being done, or what is missing.
        what: String,
        /// Why it failed, when something failed (none for a choice that is not supported).
        #[source]
        source: Option<BoxError>,
    },
}

/// Result of DCS operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// === impl Error ===

impl Error {
    /// Whether this means the DCS is not accessible (vs. an operation refused).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::NotReady(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only unreachability and a missing view count as "the DCS is not accessible"; the
    /// messages name no backend.
    #[test]
    fn unreachable_is_only_unreachable_and_not_ready() {
        let cause = || BoxError::from("boom");
        let all = [
            Error::Unreachable {
                what: "renew".into(),
                source: cause(),
            },
            Error::NotReady(Duration::from_secs(5)),
            Error::Conflict {
                what: "renew".into(),
                source: cause(),
            },
            Error::Refused {
                what: "renew".into(),
                source: cause(),
            },
            Error::Config {
                what: "configure".into(),
                source: None,
            },
        ];
        let unreachable: Vec<bool> = all.iter().map(Error::is_unreachable).collect();
        assert_eq!(unreachable, [true, true, false, false, false]);
        for e in &all {
            assert!(!e.to_string().contains("Kubernetes"), "{e}");
        }
        assert_eq!(all[0].to_string(), "renew: the DCS is not reachable");
    }
}
