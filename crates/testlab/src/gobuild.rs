//! Go programs the lab builds from Go modules in the repository (`testenv/`,
//! `testenv/helm/`, `testenv/helm3/`), once per hash of their sources, packages
//! and flags, cached outside the clone.
//!
//! Cache: [`cache_dir`]`/<name>/<hash>/`, holding the programs and a
//! `.complete` marker; concurrent test processes serialise on
//! `<name>/build.lock`, so only one builds, and older hashes are removed (each
//! build is hundreds of MB).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::netns::run_command as run;
use crate::testenv_bin::{KUBE_VERSION, cache_dir};
use crate::{Error, Result};

/// One cached build.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GoBuild<'a> {
    /// Cache sub-directory and the name in log lines.
    pub name: &'a str,
    /// The Go module's directory.
    pub module: &'a Path,
    /// Packages to build (`go build -o DIR/ PACKAGES`): each program is named after
    /// its package's last path element.
    pub packages: &'a [&'a str],
    /// `-ldflags`.
    pub ldflags: &'a str,
}

impl GoBuild<'_> {
    /// The directory with the built programs, building them first when the cache
    /// has none for the current sources. `finish(out, work)` runs once after a new
    /// build, under the lock, to derive more files into `out`.
    ///
    /// # Errors
    /// The Go build or `finish` failed, or the cache is not writable.
    pub fn dir(&self, finish: impl FnOnce(&Path, &Path) -> Result<()>) -> Result<PathBuf> {
        let hash = self.hash()?;
        let dir = cache_dir().join(self.name);
        let out = dir.join(&hash);
        let done = out.join(".complete");
        if done.exists() {
            return Ok(out);
        }
        std::fs::create_dir_all(&out).map_err(Error::io("create", &out))?;
        let lock_path = dir.join("build.lock");
        let lock = File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
        lock.lock().map_err(Error::io("lock", &lock_path))?;
        if done.exists() {
            return Ok(out);
        }
        tracing::info!(out = %out.display(), "building {} (a first build takes minutes)", self.name);
        let tmp = out.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(Error::io("create", &tmp))?;
        run(
            Command::new("go")
                .current_dir(self.module)
                .env("GOTOOLCHAIN", "local")
                .env("CGO_ENABLED", "0")
                .env("GOFLAGS", "-buildvcs=false")
                .args([
                    "build",
                    "-trimpath",
                    "-tags",
                    "grpcnotrace",
                    "-ldflags",
                    self.ldflags,
                    "-o",
                ])
                .arg(format!("{}/", tmp.display()))
                .args(self.packages),
            &format!("go build {}", self.name),
        )?;
        for entry in std::fs::read_dir(&tmp).map_err(Error::io("list", &tmp))? {
            let from = entry.map_err(Error::io("list", &tmp))?.path();
            if let Some(file) = from.file_name() {
                let to = out.join(file);
                std::fs::rename(&from, &to).map_err(Error::io("rename", &from))?;
            }
        }
        finish(&out, &tmp)?;
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::write(&done, b"").map_err(Error::io("write", &done))?;
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() && entry.file_name() != hash.as_str() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(out)
    }
}

impl GoBuild<'_> {
    /// [`source_hash`] of the module, with the packages and flags of this build.
    fn hash(&self) -> Result<String> {
        let mut h = Sha256::new();
        h.update(source_hash(self.module)?);
        for p in self.packages {
            h.update(p);
            h.update([0]);
        }
        h.update(self.ldflags);
        Ok(format!("{:x}", h.finalize())[..16].to_string())
    }
}

/// Hash of everything a module's programs are built from: its `.go` files,
/// `go.mod` and `go.sum`, in its sub-directories too except nested modules,
/// and [`KUBE_VERSION`] (stamped into the Kubernetes programs).
fn source_hash(module: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_sources(module, module, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    h.update(KUBE_VERSION);
    for rel in files {
        h.update(rel.as_os_str().as_encoded_bytes());
        let path = module.join(&rel);
        h.update(std::fs::read(&path).map_err(Error::io("read", &path))?);
    }
    Ok(format!("{:x}", h.finalize())[..16].to_string())
}

fn collect_sources(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let path = entry.map_err(Error::io("list", dir))?.path();
        if path.is_dir() {
            if !path.join("go.mod").exists() {
                collect_sources(root, &path, files)?;
            }
            continue;
        }
        let source = path.extension().is_some_and(|e| e == "go")
            || path
                .file_name()
                .is_some_and(|n| n == "go.mod" || n == "go.sum");
        if source && let Ok(rel) = path.strip_prefix(root) {
            files.push(rel.to_path_buf());
        }
    }
    Ok(())
}
