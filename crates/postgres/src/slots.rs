//! Replication slot statements (what Patroni's `SlotsHandler` runs) and the copy of logical
//! slot files from the primary into a stopped replica's `pg_replslot`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use patroni_core::slots::{ExistingSlot, SlotKind};

use crate::client::{PgClient, QueryError};
use crate::files::{self, FileError, Owner, io_err, sync_dir};
use crate::lsn::Lsn;

/// What `pg_drop_replication_slot` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropOutcome {
    /// Dropped.
    Dropped,
    /// Someone streams from it: left.
    Active,
    /// It does not exist (any more).
    Missing,
}

/// A logical slot's on-disk state read from the primary (`pg_replslot/<name>/state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalSlotFile {
    /// Slot.
    pub name: String,
    /// Database.
    pub database: String,
    /// Plugin.
    pub plugin: String,
    /// The `state` file.
    pub state: Vec<u8>,
}

impl PgClient {
    /// Non-temporary slots with what the slot rules read; PostgreSQL 17 failover slots that
    /// PostgreSQL synchronises itself are left out, as Patroni leaves them out.
    ///
    /// # Errors
    /// The query fails.
    pub async fn slot_states(&self, server_version: u32) -> Result<Vec<ExistingSlot>, QueryError> {
        let what = "list replication slots";
        let (failover, filter) = if server_version >= 170_000 {
            ("failover", " AND (NOT failover OR NOT synced)")
        } else {
            ("false", "")
        };
        let sql = format!(
            "SELECT slot_name::text, slot_type, active, xmin::text::bigint, \
             catalog_xmin::text::bigint, \
             pg_catalog.pg_wal_lsn_diff(restart_lsn, '0/0')::bigint, \
             pg_catalog.pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint, \
             wal_status, database::text, plugin::text, {failover} \
             FROM pg_catalog.pg_replication_slots WHERE NOT temporary{filter} ORDER BY 1"
        );
        let rows = self
            .inner()
            .query(sql.as_str(), &[])
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        rows.iter()
            .map(|row| {
                let q = |source| QueryError::Query { what, source };
                let slot_type: String = row.try_get(1).map_err(q)?;
                let kind = if slot_type == "logical" {
                    SlotKind::Logical {
                        database: row
                            .try_get::<_, Option<String>>(8)
                            .map_err(q)?
                            .unwrap_or_default(),
                        plugin: row
                            .try_get::<_, Option<String>>(9)
                            .map_err(q)?
                            .unwrap_or_default(),
                    }
                } else {
                    SlotKind::Physical
                };
                let xid = |i: usize| -> Result<Option<u64>, QueryError> {
                    Ok(row
                        .try_get::<_, Option<i64>>(i)
                        .map_err(q)?
                        .and_then(|v| u64::try_from(v).ok()))
                };
                let lsn = |i: usize| -> Result<Option<u64>, QueryError> {
                    Ok(row
                        .try_get::<_, Option<i64>>(i)
                        .map_err(q)?
                        .and_then(|v| u64::try_from(v).ok()))
                };
                Ok(ExistingSlot {
                    name: row.try_get(0).map_err(q)?,
                    kind,
                    active: row.try_get(2).map_err(q)?,
                    xmin: xid(3)?,
                    catalog_xmin: xid(4)?,
                    restart_lsn: lsn(5)?,
                    confirmed_flush_lsn: lsn(6)?,
                    wal_status: row.try_get(7).map_err(q)?,
                    failover: row.try_get(10).map_err(q)?,
                })
            })
            .collect()
    }

    /// Drops slot `name` unless someone streams from it (Patroni's single statement).
    ///
    /// # Errors
    /// The query fails.
    pub async fn drop_slot_unless_active(&self, name: &str) -> Result<DropOutcome, QueryError> {
        let what = "drop replication slot";
        let row = self
            .inner()
            .query_opt(
                "WITH slots AS (SELECT slot_name, active FROM pg_catalog.pg_replication_slots \
                 WHERE slot_name = $1), \
                 dropped AS (SELECT pg_catalog.pg_drop_replication_slot(slot_name), true AS dropped \
                 FROM slots WHERE NOT active) \
                 SELECT active, COALESCE(dropped, false) FROM slots FULL OUTER JOIN dropped ON true",
                &[&name],
            )
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        let Some(row) = row else {
            return Ok(DropOutcome::Missing);
        };
        let q = |source| QueryError::Query { what, source };
        let active: bool = row.try_get(0).map_err(q)?;
        let dropped: bool = row.try_get(1).map_err(q)?;
        Ok(match (active, dropped) {
            (_, true) => DropOutcome::Dropped,
            (true, false) => DropOutcome::Active,
            (false, false) => DropOutcome::Missing,
        })
    }

    /// Creates logical slot `name` with `plugin` in the database of this session, unless a
    /// logical slot of that name exists.
    ///
    /// # Errors
    /// The query fails (unknown plugin, `wal_level` below `logical`, …).
    pub async fn create_logical_slot(&self, name: &str, plugin: &str) -> Result<(), QueryError> {
        let what = "create logical replication slot";
        self.inner()
            .execute(
                "SELECT pg_catalog.pg_create_logical_replication_slot($1, $2) \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots \
                 WHERE slot_type = 'logical' AND slot_name = $1)",
                &[&name, &plugin],
            )
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        Ok(())
    }

    /// `pg_replication_slot_advance(name, lsn)`; logical slots need a session in their
    /// database, and may take long (the caller lifts `statement_timeout`).
    ///
    /// # Errors
    /// The query fails (the WAL is gone, the slot is invalidated, …).
    pub async fn advance_slot(&self, name: &str, lsn: u64) -> Result<(), QueryError> {
        let what = "advance replication slot";
        self.inner()
            .execute(
                "SELECT pg_catalog.pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[&name, &Lsn(lsn).to_string()],
            )
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        Ok(())
    }

    /// Lifts the session's `statement_timeout` (for slow slot advances).
    ///
    /// # Errors
    /// The statement fails.
    pub async fn without_statement_timeout(&self) -> Result<(), QueryError> {
        self.inner()
            .batch_execute("SET statement_timeout = 0")
            .await
            .map_err(|source| QueryError::Query {
                what: "lift statement_timeout",
                source,
            })
    }

    /// On the primary: the state files of the logical slots `names` (not PostgreSQL 17
    /// failover slots), with their database and plugin. Needs the right to read files of
    /// the data directory (superuser or `pg_read_server_files`, as the rewind user has).
    ///
    /// # Errors
    /// The query fails, or the server is in recovery (no rows then).
    pub async fn logical_slot_files(
        &self,
        names: &[String],
        server_version: u32,
    ) -> Result<Vec<LogicalSlotFile>, QueryError> {
        let what = "read logical slot files";
        let filter = if server_version >= 170_000 {
            " NOT failover AND"
        } else {
            ""
        };
        let sql = format!(
            "SELECT slot_name::text, datname::text, plugin::text, \
             pg_catalog.pg_read_binary_file('pg_replslot/' || slot_name || '/state') \
             FROM pg_catalog.pg_get_replication_slots() JOIN pg_catalog.pg_database ON datoid = oid \
             WHERE{filter} NOT pg_catalog.pg_is_in_recovery() AND slot_type = 'logical' \
             AND slot_name = ANY($1)"
        );
        let rows = self
            .inner()
            .query(sql.as_str(), &[&names])
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        rows.iter()
            .map(|row| {
                let q = |source| QueryError::Query { what, source };
                Ok(LogicalSlotFile {
                    name: row.try_get(0).map_err(q)?,
                    database: row.try_get(1).map_err(q)?,
                    plugin: row.try_get(2).map_err(q)?,
                    state: row.try_get(3).map_err(q)?,
                })
            })
            .collect()
    }
}

/// Writes logical slot `files` into `data_dir/pg_replslot` of a **stopped** server, each as
/// Patroni does: a fresh `<name>.tmp` directory with the `state` file, fsynced, renamed over
/// any old `<name>`, fsynced. Modes and owner follow the data directory.
///
/// # Errors
/// Any step fails; slots written before the failure stay.
pub fn install_logical_slots(data_dir: &Path, files: &[LogicalSlotFile]) -> Result<(), FileError> {
    let replslot = data_dir.join("pg_replslot");
    let meta = fs::metadata(data_dir).map_err(io_err("stat", data_dir))?;
    // Group access (0750 data directory) gives 0640 files, as PostgreSQL itself does.
    let group = meta.mode() & 0o070 != 0;
    let (dir_mode, file_mode) = if group {
        (0o750, 0o640)
    } else {
        (0o700, 0o600)
    };
    let owner = Owner::of(data_dir)?;
    for slot in files {
        let dir = replslot.join(&slot.name);
        let tmp = replslot.join(format!("{}.tmp", slot.name));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err("remove", &tmp))?;
        }
        fs::create_dir(&tmp).map_err(io_err("create", &tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(dir_mode))
            .map_err(io_err("chmod", &tmp))?;
        owner.apply(&tmp)?;
        files::write_atomic(&tmp.join("state"), &slot.state, file_mode)?;
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        }
        fs::rename(&tmp, &dir).map_err(io_err("rename", &dir))?;
        sync_dir(&dir)?;
    }
    sync_dir(&replslot)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files land in `pg_replslot/<name>/state` with the data directory's modes, replacing an
    /// old copy and a stale temporary directory.
    #[test]
    fn slot_files_are_installed_in_place() {
        let data = tempfile::tempdir().unwrap();
        fs::set_permissions(data.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let replslot = data.path().join("pg_replslot");
        fs::create_dir_all(replslot.join("s1")).unwrap();
        fs::write(replslot.join("s1/state"), b"old").unwrap();
        fs::create_dir_all(replslot.join("s1.tmp")).unwrap();
        let slot = |n: &str, s: &[u8]| LogicalSlotFile {
            name: n.into(),
            database: "db".into(),
            plugin: "test_decoding".into(),
            state: s.to_vec(),
        };
        install_logical_slots(data.path(), &[slot("s1", b"new"), slot("s2", b"two")]).unwrap();
        assert_eq!(fs::read(replslot.join("s1/state")).unwrap(), b"new");
        assert_eq!(fs::read(replslot.join("s2/state")).unwrap(), b"two");
        assert!(!replslot.join("s1.tmp").exists());
        let mode = fs::metadata(replslot.join("s2/state")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
