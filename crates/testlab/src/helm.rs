//! Helm 4 and Helm 3, each built from its Go module (`testenv/helm/`,
//! `testenv/helm3/`, modules of their own) and cached like the lab's other Go
//! programs ([`crate::gobuild`]). Charts are installed with Helm 4 and linted
//! and rendered with both.

use std::path::PathBuf;

use crate::Result;
use crate::gobuild::GoBuild;
use crate::testenv_bin::testenv_source_dir;

/// The Helm release `testenv/helm/go.mod` requires.
pub const HELM_VERSION: &str = "v4.3.2";
/// The Helm 3 release `testenv/helm3/go.mod` requires.
pub const HELM3_VERSION: &str = "v3.21.4";

/// The path of `helm` (Helm 4), built first when the cache has none for
/// `testenv/helm/`'s sources.
///
/// # Errors
/// The Go build failed or the cache is not writable.
pub fn helm_binary() -> Result<PathBuf> {
    build("helm", "helm", "helm.sh/helm/v4", HELM_VERSION, &[])
}

/// The path of Helm 3's `helm`, built like [`helm_binary`] from `testenv/helm3/`.
///
/// # Errors
/// The Go build failed or the cache is not writable.
pub fn helm3_binary() -> Result<PathBuf> {
    // As Helm 3's Makefile: the Kubernetes version it assumes without a cluster (`helm
    // template`, `lint`) is that of its client-go (v0.36.x in testenv/helm3/go.mod); the
    // default otherwise is 1.20.
    let kube = ["pkg/chartutil", "pkg/lint/rules"].map(|p| {
        format!(
            "-X helm.sh/helm/v3/{p}.k8sVersionMajor=1 -X helm.sh/helm/v3/{p}.k8sVersionMinor=36"
        )
    });
    build("helm3", "helm3", "helm.sh/helm/v3", HELM3_VERSION, &kube)
}

fn build(
    name: &str,
    module: &str,
    go_module: &str,
    version: &str,
    extra_ldflags: &[String],
) -> Result<PathBuf> {
    let mut ldflags = format!("-s -w -X {go_module}/internal/version.version={version}");
    for flag in extra_ldflags {
        ldflags.push(' ');
        ldflags.push_str(flag);
    }
    let package = format!("{go_module}/cmd/helm");
    let dir = GoBuild {
        name,
        module: &testenv_source_dir().join(module),
        packages: &[&package],
        ldflags: &ldflags,
    }
    .dir(|_, _| Ok(()))?;
    Ok(dir.join("helm"))
}
