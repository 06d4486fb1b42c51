//! The narrow view of the filesystem that configuration loading and `--validate-config` checks
//! need, with a real implementation and an in-memory fake for tests.
//!
//! Only reads happen through this trait; nothing here writes. Errors other than "not found" are
//! reported to the caller, except in [`Filesystem::kind`], which like Python's `os.path.exists`
//! treats an unreadable path as missing.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

/// What a path points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Nothing there, or it cannot be examined.
    Missing,
    /// A regular file (after following symlinks).
    File,
    /// A directory (after following symlinks).
    Directory,
    /// Something else, such as a socket or a device.
    Other,
}

/// Read-only filesystem access.
pub trait Filesystem {
    /// What `path` points at, following symlinks.
    fn kind(&self, path: &Path) -> PathKind;

    /// The whole content of the file at `path`, as UTF-8.
    ///
    /// # Errors
    ///
    /// Any I/O error, or invalid UTF-8.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;

    /// Names of the entries in the directory at `path`, in no particular order. Names that are
    /// not valid UTF-8 are converted lossily.
    ///
    /// # Errors
    ///
    /// Any I/O error, such as the directory not existing.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Whether `path` is a regular file that someone may execute.
    fn is_executable_file(&self, path: &Path) -> bool;
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFilesystem;

// === impl OsFilesystem ===

impl Filesystem for OsFilesystem {
    fn kind(&self, path: &Path) -> PathKind {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => PathKind::File,
            Ok(meta) if meta.is_dir() => PathKind::Directory,
            Ok(_) => PathKind::Other,
            Err(_) => PathKind::Missing,
        }
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn is_executable_file(&self, path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
}

/// One entry of a [`MemoryFilesystem`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File { contents: String, executable: bool },
    Directory,
}

/// An in-memory filesystem for tests. Parent directories are created implicitly.
#[derive(Debug, Clone, Default)]
pub struct MemoryFilesystem {
    entries: BTreeMap<PathBuf, Entry>,
}

// === impl MemoryFilesystem ===

impl MemoryFilesystem {
    /// An empty filesystem (not even `/`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the filesystem with a regular file at `path`.
    pub fn with_file(self, path: impl Into<PathBuf>, contents: impl Into<String>) -> Self {
        self.with_entry(
            path.into(),
            Entry::File {
                contents: contents.into(),
                executable: false,
            },
        )
    }

    /// Returns the filesystem with an empty executable file at `path`.
    pub fn with_executable(self, path: impl Into<PathBuf>) -> Self {
        self.with_entry(
            path.into(),
            Entry::File {
                contents: String::new(),
                executable: true,
            },
        )
    }

    /// Returns the filesystem with a directory at `path`.
    pub fn with_dir(self, path: impl Into<PathBuf>) -> Self {
        self.with_entry(path.into(), Entry::Directory)
    }

    fn with_entry(mut self, path: PathBuf, entry: Entry) -> Self {
        for ancestor in path.ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() {
                self.entries
                    .insert(ancestor.to_path_buf(), Entry::Directory);
            }
        }
        self.entries.insert(path, entry);
        self
    }
}

impl Filesystem for MemoryFilesystem {
    fn kind(&self, path: &Path) -> PathKind {
        match self.entries.get(path) {
            None => PathKind::Missing,
            Some(Entry::File { .. }) => PathKind::File,
            Some(Entry::Directory) => PathKind::Directory,
        }
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        match self.entries.get(path) {
            Some(Entry::File { contents, .. }) => Ok(contents.clone()),
            Some(Entry::Directory) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        match self.entries.get(path) {
            Some(Entry::Directory) => Ok(self
                .entries
                .keys()
                .filter(|p| p.parent() == Some(path))
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect()),
            Some(Entry::File { .. }) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn is_executable_file(&self, path: &Path) -> bool {
        matches!(
            self.entries.get(path),
            Some(Entry::File {
                executable: true,
                ..
            })
        )
    }
}
