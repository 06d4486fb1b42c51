//! DCS errors. The split matters to the HA loop: [`Error::Unreachable`] and
//! [`Error::NotReady`] mean "the DCS is not accessible" (a primary demotes
//! unless failsafe applies); anything else is a rejected operation ("false").

/// A DCS operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server could not be reached, or kept failing with retriable
    /// errors, until `retry_timeout` ran out.
    #[error("{what}: Kubernetes API is not reachable")]
    Unreachable {
        /// What was being done.
        what: String,
        /// The last failure.
        #[source]
        source: kube::Error,
    },
    /// The caches did not become ready within `retry_timeout`.
    #[error("Kubernetes API is not responding properly: caches not ready after {0:?}")]
    NotReady(std::time::Duration),
    /// The API server answered with an error that retrying will not fix
    /// (403, 404, 409, 422, …).
    #[error("{what}")]
    Api {
        /// What was being done.
        what: String,
        /// The answer.
        #[source]
        source: kube::Error,
    },
    /// No usable Kubernetes client configuration (in-cluster or kubeconfig).
    #[error("configure the Kubernetes client: {0}")]
    Client(String),
}

/// Result of DCS operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// === impl Error ===

impl Error {
    /// Whether this means the DCS is not accessible (vs. an operation refused).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::NotReady(_))
    }

    /// HTTP status of an API answer, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api {
                source: kube::Error::Api(s),
                ..
            }
            | Error::Unreachable {
                source: kube::Error::Api(s),
                ..
            } => Some(s.code),
            _ => None,
        }
    }
}
