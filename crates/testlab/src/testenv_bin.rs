//! Builds the `testenv` control-plane binary from `testenv/` once, and
//! caches it outside the clone keyed by a hash of its sources.
//!
//! Cache: `$PATRONI_RS_CACHE` or `$XDG_CACHE_HOME/patroni-rs` or
//! `~/.cache/patroni-rs`; the binary is `testenv/<hash>/testenv`. Concurrent
//! test processes serialise on a lock file, so only one builds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Kubernetes release the binary reports at `/version` (Helm reads it); it
/// must match `k8s.io/kubernetes` in testenv/go.mod.
pub const KUBE_VERSION: &str = "v1.34.10";

/// Directory of the Go module (`testenv/` at the repository root).
pub fn testenv_source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv")
}

/// The cache directory for build products kept outside the clone.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PATRONI_RS_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("patroni-rs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/patroni-rs")
}

/// Hash of everything the binary is built from.
pub(crate) fn source_hash(src: &Path) -> Result<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(src)
        .map_err(Error::io("list", src))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "go")
                || p.file_name()
                    .is_some_and(|n| n == "go.mod" || n == "go.sum")
        })
        .collect();
    names.sort();
    let mut h = Sha256::new();
    h.update(KUBE_VERSION);
    for p in names {
        h.update(
            p.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update(std::fs::read(&p).map_err(Error::io("read", &p))?);
    }
    Ok(format!("{:x}", h.finalize())[..16].to_string())
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
    let src = testenv_source_dir();
    let hash = source_hash(&src)?;
    let dir = cache_dir().join("testenv");
    let out_dir = dir.join(&hash);
    std::fs::create_dir_all(&out_dir).map_err(Error::io("create", &out_dir))?;
    // Named plainly: the API server records the binary name as the field
    // manager of what the control plane's own components write.
    let out = out_dir.join("testenv");
    if out.exists() {
        return Ok(out);
    }
    let lock_path = dir.join("build.lock");
    let lock = File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
    lock.lock().map_err(Error::io("lock", &lock_path))?;
    if out.exists() {
        return Ok(out);
    }
    let tmp = out_dir.join("testenv.tmp");
    let ldflags = go_ldflags();
    tracing::info!(out = %out.display(), "building testenv (first build takes minutes)");
    let status = Command::new("go")
        .current_dir(&src)
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .args([
            "build",
            "-trimpath",
            "-tags",
            "grpcnotrace",
            "-ldflags",
            &ldflags,
            "-o",
        ])
        .arg(&tmp)
        .arg(".")
        .output()
        .map_err(|e| Error::Command {
            what: "go build testenv".into(),
            detail: e.to_string(),
        })?;
    if !status.status.success() {
        return Err(Error::Command {
            what: "go build testenv".into(),
            detail: format!(
                "{}: {}",
                status.status,
                String::from_utf8_lossy(&status.stderr)
            ),
        });
    }
    std::fs::rename(&tmp, &out).map_err(Error::io("rename", &tmp))?;
    // Each build is ~120 MB: drop the ones for older sources.
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() && entry.file_name() != hash.as_str() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(out)
}
