//! Helm, built from its Go module (`testenv/helm/`, a module of its own) and
//! cached like the lab's other Go programs ([`crate::gobuild`]).

use std::path::PathBuf;

use crate::Result;
use crate::gobuild::GoBuild;
use crate::testenv_bin::testenv_source_dir;

/// The Helm release `testenv/helm/go.mod` requires.
pub const HELM_VERSION: &str = "v4.3.2";

/// The path of the `helm` program, built first when the cache has none for
/// `testenv/helm/`'s sources.
///
/// # Errors
/// The Go build failed or the cache is not writable.
pub fn helm_binary() -> Result<PathBuf> {
    let ldflags = format!("-s -w -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}");
    let dir = GoBuild {
        name: "helm",
        module: &testenv_source_dir().join("helm"),
        packages: &["helm.sh/helm/v4/cmd/helm"],
        ldflags: &ldflags,
    }
    .dir(|_, _| Ok(()))?;
    Ok(dir.join("helm"))
}
