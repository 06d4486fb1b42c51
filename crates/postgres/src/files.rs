//! Writing files PostgreSQL reads: atomically (temporary file in the same directory, fsync,
//! rename, fsync of the directory) and owned by whoever owns the directory they land in.
//!
//! The agent runs as the `postgres` OS user in production, so ownership is already right and
//! no `chown` happens. When it runs as root (tests), a file written into a directory owned by
//! `postgres` is handed to `postgres`, otherwise the server could not read its own
//! configuration. A crash at any point leaves either the old file or the new one, never a torn
//! one; at worst a stray `.*.tmp` file is left behind and overwritten next time.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::unistd::{Gid, Uid, chown};

/// Makes temporary file names unique within the process (with the pid, across processes).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Mode of configuration files PostgreSQL creates itself (`pg_file_create_mode`).
pub const CONFIG_FILE_MODE: u32 = 0o600;

/// A file could not be written, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// An I/O step failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done (`write`, `rename`, `chown`, …).
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The path has no parent directory or file name.
    #[error("not a file path: {0}")]
    NotAFilePath(PathBuf),
}

/// Result of this module.
pub type Result<T, E = FileError> = std::result::Result<T, E>;

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError::Io {
        action,
        path,
        source,
    }
}

/// Owner (uid, gid) of a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

// === impl Owner ===

impl Owner {
    /// Owner of `path`.
    ///
    /// # Errors
    /// `path` cannot be stat'ed.
    pub fn of(path: &Path) -> Result<Self> {
        let meta = fs::metadata(path).map_err(io_err("stat", path))?;
        Ok(Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    /// Gives `path` to this owner unless it already belongs to it. Only root can give a file
    /// away: an agent running as any other user keeps its files as its own, as Patroni does
    /// (its sample configuration puts the password file in `/tmp`, owned by root; issue #12).
    ///
    /// # Errors
    /// `stat` or `chown` failed.
    pub fn apply(&self, path: &Path) -> Result<()> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        let meta = fs::symlink_metadata(path).map_err(io_err("stat", path))?;
        if meta.uid() == self.uid && meta.gid() == self.gid {
            return Ok(());
        }
        chown(
            path,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .map_err(|e| FileError::Io {
            action: "chown",
            path: path.to_path_buf(),
            source: e.into(),
        })
    }
}

/// Writes `contents` to `path` atomically with permissions `mode`; when the agent runs as root,
/// owned by the owner of the directory it is in.
///
/// # Guarantees
/// Readers see the old content or the new one; after `Ok`, the new content is on disk.
///
/// # Errors
/// Any step fails; the temporary file is removed when possible.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| FileError::NotAFilePath(path.to_path_buf()))?;
    let owner = Owner::of(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_tmp(&tmp, contents, mode, owner).and_then(|()| {
        fs::rename(&tmp, path).map_err(io_err("rename", path))?;
        sync_dir(dir)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_tmp(tmp: &Path, contents: &[u8], mode: u32, owner: Owner) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(tmp)
        .map_err(io_err("create", tmp))?;
    // The umask may have narrowed the mode; a stale temp file may carry an old one.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err("chmod", tmp))?;
    owner.apply(tmp)?;
    file.write_all(contents).map_err(io_err("write", tmp))?;
    file.sync_all().map_err(io_err("fsync", tmp))
}

/// Fsyncs directory `dir`, making a rename or removal in it durable.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Creates an empty file (a signal file such as `standby.signal`) atomically.
///
/// # Errors
/// See [`write_atomic`].
pub fn touch_atomic(path: &Path) -> Result<()> {
    write_atomic(path, b"", CONFIG_FILE_MODE)
}

/// Removes `path` if it exists.
///
/// # Errors
/// It exists and cannot be removed.
pub fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file holds the new content with the requested mode and no temp file remains.
    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("postgresql.conf");
        write_atomic(&path, b"old", 0o644).expect("first write");
        write_atomic(&path, b"new", CONFIG_FILE_MODE).expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"new");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, CONFIG_FILE_MODE);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["postgresql.conf"]);
    }

    /// Ownership follows the directory (a no-op here: same owner).
    #[test]
    fn written_file_belongs_to_directory_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("standby.signal");
        touch_atomic(&path).expect("touch");
        assert_eq!(
            Owner::of(&path).expect("stat"),
            Owner::of(dir.path()).expect("stat")
        );
        assert!(remove_if_exists(&path).expect("remove"));
        assert!(!remove_if_exists(&path).expect("already gone"));
    }

    /// A missing directory is an error naming the path, not a panic.
    #[test]
    fn missing_directory_is_an_error() {
        let e =
            write_atomic(Path::new("/nonexistent/dir/file"), b"x", 0o600).expect_err("no such dir");
        assert!(e.to_string().contains("/nonexistent/dir"), "{e}");
    }
}
