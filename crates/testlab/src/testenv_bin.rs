//! The `testenv` control-plane binary, built from `testenv/` and cached
//! outside the clone ([`crate::gobuild`]); the cache directory and the version
//! stamp every Kubernetes program of the lab shares.
//!
//! Cache: `$PATRONI_RS_CACHE` or `~/.cache/patroni-rs` (as
//! `xtask/scripts/install-test-deps.sh` reads it); the binary is `testenv/<hash>/testenv`.

use std::path::{Path, PathBuf};

use crate::Result;
use crate::gobuild::GoBuild;

/// Kubernetes release the binary reports at `/version` (Helm reads it); it
/// must match `k8s.io/kubernetes` in testenv/go.mod.
pub const KUBE_VERSION: &str = "v1.34.10";

/// Directory of the Go module (`testenv/` at the repository root).
pub fn testenv_source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv")
}

/// The cache directory for build products kept outside the clone:
/// `$PATRONI_RS_CACHE`, default `~/.cache/patroni-rs`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PATRONI_RS_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/patroni-rs")
}

/// `-ldflags` of every Kubernetes binary the lab builds: stripped, and reporting
/// [`KUBE_VERSION`] (Helm and kubelet version checks read it).
pub(crate) fn go_ldflags() -> String {
    let v = "k8s.io/component-base/version";
    let minor = KUBE_VERSION.split('.').nth(1).unwrap_or("34");
    format!(
        "-s -w -X {v}.gitVersion={KUBE_VERSION} -X {v}.gitMajor=1 -X {v}.gitMinor={minor} \
         -X {v}.gitTreeState=clean -X {v}.buildDate=1970-01-01T00:00:00Z"
    )
}

/// Returns the path of an up-to-date `testenv` binary, building it with
/// `go build` first if the cache has none for the current sources.
///
/// # Errors
/// The Go build failed (its output is in the error) or the cache is not
/// writable.
pub fn testenv_binary() -> Result<PathBuf> {
    // Named plainly: the API server records the binary name as the field
    // manager of what the control plane's own components write.
    let dir = GoBuild {
        name: "testenv",
        module: &testenv_source_dir(),
        packages: &["."],
        ldflags: &go_ldflags(),
    }
    .dir(|_, _| Ok(()))?;
    Ok(dir.join("testenv"))
}
