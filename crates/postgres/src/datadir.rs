//! What is in the data directory, and emptying it before a clone.
//!
//! The decision "bootstrap, clone, or start what is there" hangs on [`DataDirState`]; the
//! invariant the whole crate keeps is that nothing ever runs `initdb` or a clone into a
//! directory that holds data. Like Patroni, hidden entries and `lost+found` (a fresh volume's
//! mount point) do not count as data.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::files::{self, FileError, io_err};

/// The data directory could not be inspected or emptied.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// It exists but cannot be listed or read (permissions, not a directory, I/O error).
    #[error("data directory {path} is not accessible")]
    Inaccessible {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry could not be removed.
    #[error("empty the data directory")]
    Remove(#[source] FileError),
}

/// What the data directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDirState {
    /// It does not exist.
    Missing,
    /// It exists and holds nothing but hidden entries and `lost+found`.
    Empty,
    /// It holds a cluster of this major version (`PG_VERSION`).
    Initialized {
        /// Major version from `PG_VERSION`.
        major_version: u32,
    },
    /// It holds something without a readable `PG_VERSION`: never touched automatically.
    Unrecognized,
}

// === impl DataDirState ===

impl DataDirState {
    /// Inspects `path`.
    ///
    /// # Errors
    /// It exists but cannot be listed.
    pub fn of(path: &Path) -> Result<Self, DataDirError> {
        let inaccessible = |source| DataDirError::Inaccessible {
            path: path.to_path_buf(),
            source,
        };
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::Missing),
            Err(e) => return Err(inaccessible(e)),
        };
        let mut empty = true;
        for entry in entries {
            let name = entry.map_err(inaccessible)?.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with('.') || name == "lost+found") {
                empty = false;
                break;
            }
        }
        if empty {
            return Ok(Self::Empty);
        }
        let version = fs::read_to_string(path.join("PG_VERSION"))
            .ok()
            .and_then(|v| v.trim().split('.').next()?.parse().ok());
        Ok(match version {
            Some(major_version) => Self::Initialized { major_version },
            None => Self::Unrecognized,
        })
    }

    /// Missing or empty: a bootstrap or clone may create a cluster here.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Missing | Self::Empty)
    }
}

/// Removes everything inside `path` (keeping the directory, its owner and its mode). A
/// symlinked `pg_wal` has its target emptied too, so no stale WAL survives a re-clone.
///
/// # Errors
/// Something cannot be removed; what was removed stays removed.
pub fn remove_contents(path: &Path) -> Result<(), DataDirError> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DataDirError::Inaccessible {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| DataDirError::Inaccessible {
            path: path.to_path_buf(),
            source,
        })?;
        let entry_path = entry.path();
        let kind = entry
            .file_type()
            .map_err(io_err("stat", &entry_path))
            .map_err(DataDirError::Remove)?;
        if kind.is_symlink() && entry.file_name() == "pg_wal" && entry_path.is_dir() {
            remove_contents(&entry_path)?;
        }
        let removed = if kind.is_dir() {
            fs::remove_dir_all(&entry_path)
        } else {
            fs::remove_file(&entry_path)
        };
        removed
            .map_err(io_err("remove", &entry_path))
            .map_err(DataDirError::Remove)?;
    }
    files::sync_dir(path).map_err(DataDirError::Remove)
}

/// [`remove_contents`] on a blocking thread: emptying a large data directory takes a while.
///
/// # Errors
/// See [`remove_contents`].
pub async fn remove_contents_async(path: &Path) -> Result<(), DataDirError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || remove_contents(&owned))
        .await
        .map_err(|e| {
            DataDirError::Remove(FileError::Io {
                action: "empty (task failed)",
                path: path.to_path_buf(),
                source: io::Error::other(e.to_string()),
            })
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Missing, empty (hidden entries and lost+found ignored), initialized, unrecognized.
    #[test]
    fn states_are_told_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        assert_eq!(
            DataDirState::of(&data).expect("state"),
            DataDirState::Missing
        );
        fs::create_dir(&data).expect("mkdir");
        fs::create_dir(data.join("lost+found")).expect("mkdir");
        fs::write(data.join(".hidden"), "").expect("write");
        let empty = DataDirState::of(&data).expect("state");
        assert_eq!(empty, DataDirState::Empty);
        assert!(empty.is_empty());
        fs::write(data.join("base"), "").expect("write");
        assert_eq!(
            DataDirState::of(&data).expect("state"),
            DataDirState::Unrecognized
        );
        fs::write(data.join("PG_VERSION"), "15\n").expect("write");
        let initialized = DataDirState::of(&data).expect("state");
        assert_eq!(initialized, DataDirState::Initialized { major_version: 15 });
        assert!(!initialized.is_empty());
    }

    /// A file where the directory should be is inaccessible, not empty.
    #[test]
    fn a_file_is_not_a_data_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("data");
        fs::write(&file, "x").expect("write");
        assert!(matches!(
            DataDirState::of(&file),
            Err(DataDirError::Inaccessible { .. })
        ));
    }

    /// Emptying removes files, directories, hidden entries and a symlinked pg_wal's content,
    /// and keeps the directory itself.
    #[test]
    fn remove_contents_empties_but_keeps_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let wal = dir.path().join("wal");
        fs::create_dir_all(data.join("base/1")).expect("mkdir");
        fs::create_dir(&wal).expect("mkdir");
        fs::write(wal.join("000000010000000000000001"), "x").expect("write");
        std::os::unix::fs::symlink(&wal, data.join("pg_wal")).expect("symlink");
        fs::write(data.join("PG_VERSION"), "15").expect("write");
        fs::write(data.join(".s"), "").expect("write");
        remove_contents(&data).expect("empty");
        assert_eq!(fs::read_dir(&data).expect("list").count(), 0);
        assert_eq!(fs::read_dir(&wal).expect("list").count(), 0);
        assert!(wal.exists(), "the WAL directory itself stays");
        remove_contents(&dir.path().join("missing")).expect("missing is fine");
    }
}
