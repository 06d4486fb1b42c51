//! `patroni.dynamic.json` in the data directory, kept as Patroni keeps it (issue #12): the
//! dynamic configuration last applied (the DCS `config`, or `bootstrap.dcs` before there was
//! one), written whenever it changes once a data directory exists, and read at start-up, so an
//! agent that starts while the DCS is down runs with the cluster's settings, not its
//! bootstrap defaults, and a new cluster is bootstrapped with them. Tools read it too.
//!
//! Written atomically (temporary file, fsync, rename) with the permissions of the data
//! directory's files (0600, 0640 with group access). A file that cannot be read or parsed is
//! logged and ignored, as Patroni does.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "patroni.dynamic.json";

/// Where the cache of `data_dir` lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The cached dynamic configuration of `data_dir`, if there is a readable JSON object.
pub fn load(data_dir: &Path) -> Option<Value> {
    let path = path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!("failed to read {}: {e}", path.display());
            return None;
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => Some(v),
        Ok(_) => {
            tracing::error!("{} holds no JSON object; ignored", path.display());
            None
        }
        Err(e) => {
            tracing::error!("failed to parse {}: {e}", path.display());
            None
        }
    }
}

/// Writes `value` as the cache of `data_dir`.
///
/// # Errors
/// The file cannot be written.
pub fn save(data_dir: &Path, value: &Value) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let group = std::fs::metadata(data_dir)
        .map(|m| m.permissions().mode() & 0o070 != 0)
        .unwrap_or(false);
    let mode = if group { 0o640 } else { 0o600 };
    let text = serde_json::to_string(value)?;
    patroni_postgres::write_atomic(&path(data_dir), text.as_bytes(), mode)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is saved is loaded back; junk and other JSON are ignored.
    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), None);
        let v =
            serde_json::json!({"ttl": 20, "postgresql": {"parameters": {"max_connections": 200}}});
        save(dir.path(), &v).expect("save");
        assert_eq!(load(dir.path()), Some(v));
        std::fs::write(path(dir.path()), "[1]").expect("write");
        assert_eq!(load(dir.path()), None);
        std::fs::write(path(dir.path()), "{").expect("write");
        assert_eq!(load(dir.path()), None);
    }
}
