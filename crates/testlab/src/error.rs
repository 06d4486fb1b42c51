//! Errors of the lab: each names what failed to be set up.

use std::path::PathBuf;

/// A lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command the lab runs (`ip`, `go`, …) could not start or failed.
    #[error("{what}: {detail}")]
    Command {
        /// What was being done, e.g. `create namespace plab1-h3`.
        what: String,
        /// Exit status and stderr, or the spawn error.
        detail: String,
    },
    /// A file of the lab could not be read or written.
    #[error("{what} {path}")]
    Io {
        /// What was being done with the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A lab state file did not parse.
    #[error("parse {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The control plane did not come up.
    #[error("control plane: {0}")]
    ControlPlane(String),
    /// A Kubernetes API call made by the lab failed.
    #[error("{what}")]
    Kube {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Something did not happen within its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Result of lab operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    pub(crate) fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Kube { what, source }
    }
}
