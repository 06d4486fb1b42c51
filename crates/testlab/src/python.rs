//! Python Patroni for the postgres OS user: a virtualenv built from requirement files, for
//! runs that put Python Patroni on lab hosts (`cargo xtask nemesis --patroni python`).
//!
//! The suite's venv (`~/.cache/patroni-rs/venv`) lives under root's home, which other users
//! cannot traverse. This one is built once per set of requirement files from the system
//! interpreter in `/var/tmp/patroni-rs-venv-<hash>` (the same place and hash as the e2e tests'
//! copy, so either reuses the other's): owned by root, readable by everyone, writable by root
//! only, built under a temporary name and renamed into place (its console scripts' shebangs
//! are stale: run it as `bin/python -m patroni`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::netns::run_command;
use crate::{Error, Result};

/// The virtualenv with the packages of `requirements` (pip requirement files), built if
/// missing or stale.
///
/// # Errors
/// A requirement file cannot be read, or building the virtualenv failed.
pub fn python_daemon_venv(requirements: &[PathBuf]) -> Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut req = Vec::new();
    for f in requirements {
        req.extend(std::fs::read(f).map_err(Error::io("read", f))?);
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req.hash(&mut h);
    let dir = PathBuf::from(format!("/var/tmp/patroni-rs-venv-{:016x}", h.finish()));
    let ready = |d: &Path| {
        std::fs::symlink_metadata(d)
            .map(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0)
            .unwrap_or(false)
            && std::fs::read(d.join(".requirements")).ok() == Some(req.clone())
    };
    if ready(&dir) {
        return Ok(dir);
    }
    let tmp = PathBuf::from(format!(
        "/var/tmp/patroni-rs-venv-build-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(Error::io("create", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(Error::io("chmod", &tmp))?;
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    run_command(
        Command::new(python).args(["-m", "venv"]).arg(&tmp),
        "python3 -m venv",
    )?;
    for f in requirements {
        run_command(
            Command::new(tmp.join("bin/python"))
                .args(["-m", "pip", "install", "-q", "-r"])
                .arg(f),
            &format!("pip install -r {}", f.display()),
        )?;
    }
    run_command(
        Command::new("chmod").args(["-R", "a+rX"]).arg(&tmp),
        "chmod the venv",
    )?;
    let marker = tmp.join(".requirements");
    std::fs::write(&marker, &req).map_err(Error::io("write", &marker))?;
    if std::fs::symlink_metadata(&dir).is_ok() && !ready(&dir) {
        let _ = std::fs::remove_dir_all(&dir).or_else(|_| std::fs::remove_file(&dir));
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another process won the race.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if !ready(&dir) {
        return Err(Error::Command {
            what: "build Python Patroni's virtualenv".into(),
            detail: format!("{} is not usable", dir.display()),
        });
    }
    Ok(dir)
}
