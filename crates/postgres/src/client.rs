//! Queries the agent runs against PostgreSQL, over `tokio-postgres`, with typed results.
//!
//! A [`PgClient`] is one connection: cheap to create (Unix socket or TCP, 3 s connect timeout)
//! and meant to be re-created after any error rather than repaired; its background task ends
//! when it is dropped. Every session gets `statement_timeout = 2s` like Patroni's, so a stuck
//! server cannot stall the HA loop; the few statements that may legitimately take long
//! (CHECKPOINT, promotion) lift it for themselves.
//!
//! TLS is not built in yet: `sslmode=prefer` falls back to plain connections and
//! `sslmode=require` (or stricter) is refused with [`QueryError::TlsUnsupported`].

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

use crate::conninfo::ConnParams;
use crate::lsn::Lsn;

/// How long a connection attempt may take (Patroni: `connect_timeout=3`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Session options: queries time out after 2 s (Patroni's value).
pub const SESSION_OPTIONS: &str = "-c statement_timeout=2000";
/// `application_name` unless the parameters name one.
pub const DEFAULT_APPLICATION_NAME: &str = "Patroni";
/// Database unless the parameters name one.
pub const DEFAULT_DATABASE: &str = "postgres";

/// A connection or a query failed. Every variant is retryable: reconnect next cycle.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The connection parameters cannot be used.
    #[error("invalid connection parameter {key}={value:?}")]
    InvalidParam {
        /// The keyword.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// The parameters require TLS, which this client does not do yet.
    #[error("sslmode={0} requires TLS, which is not supported yet")]
    TlsUnsupported(String),
    /// Connecting failed.
    #[error("connect to {target}")]
    Connect {
        /// `host:port` tried.
        target: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("{what}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A result did not have the expected shape.
    #[error("{what}: unexpected value {value}")]
    Value {
        /// What was read.
        what: &'static str,
        /// The value.
        value: String,
    },
}

/// One round trip's view of the server (what Patroni's `cluster_info_query` reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Primary: flushed WAL position; `None` on a standby.
    pub flush_lsn: Option<Lsn>,
    /// Standby: last WAL received; `None` on a primary or before anything was received.
    pub receive_lsn: Option<Lsn>,
    /// Standby: last WAL replayed.
    pub replay_lsn: Option<Lsn>,
    /// Primary: the current WAL file's timeline. Standby: the WAL receiver's timeline, else the
    /// newer of the last restart point's and the minimum recovery point's (a data directory
    /// just rewound or cloned onto a newer timeline replays towards it from a restart point on
    /// the older one: paired with the replay position, the older timeline would look
    /// diverged).
    pub timeline: u32,
    /// Standby: replay is paused (`pg_wal_replay_pause()`).
    pub replay_paused: bool,
    /// Standby: the WAL receiver's status (`streaming`, …), if one runs.
    pub wal_receiver: Option<String>,
    /// `pg_postmaster_start_time()` in UTC as Python prints a datetime
    /// (`2024-08-28 19:39:26.352526+00:00`).
    pub postmaster_start_time: Option<String>,
    /// `server_version_num` (`150004`).
    pub server_version: Option<u32>,
    /// Parameters whose new value waits for a restart (`pg_settings.pending_restart`), with
    /// the value in effect (`current_setting`), sorted by name.
    pub pending_restart: Vec<(String, String)>,
    /// `synchronous_standby_names` as the server applies it.
    pub synchronous_standby_names: String,
    /// `synchronous_commit` as the server applies it.
    pub synchronous_commit: String,
    /// Who streams WAL from this server (`pg_stat_replication`), by `application_name`.
    pub wal_senders: Vec<ReplicationStat>,
}

/// A replication slot (`pg_replication_slots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSlot {
    /// Name.
    pub name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    /// A client is streaming from it.
    pub active: bool,
    /// Oldest WAL it retains.
    pub restart_lsn: Option<Lsn>,
    /// Logical slots: database.
    pub database: Option<String>,
    /// Logical slots: output plugin.
    pub plugin: Option<String>,
}

/// A connected standby or WAL client (`pg_stat_replication`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationStat {
    /// Backend pid.
    pub pid: i32,
    /// Role it connected as.
    pub usename: Option<String>,
    /// `application_name` (the member name for Patroni standbys).
    pub application_name: String,
    /// Client address.
    pub client_addr: Option<String>,
    /// `streaming`, `catchup`, ….
    pub state: Option<String>,
    /// `async`, `sync`, `quorum`, `potential`.
    pub sync_state: Option<String>,
    /// Priority in `synchronous_standby_names` (0: asynchronous).
    pub sync_priority: Option<i32>,
    /// Position sent.
    pub sent_lsn: Option<Lsn>,
    /// Position written by the standby.
    pub write_lsn: Option<Lsn>,
    /// Position flushed by the standby.
    pub flush_lsn: Option<Lsn>,
    /// Position replayed by the standby.
    pub replay_lsn: Option<Lsn>,
}

/// One connection to PostgreSQL.
pub struct PgClient {
    client: tokio_postgres::Client,
    connection: JoinHandle<()>,
}

impl std::fmt::Debug for PgClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgClient")
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

const STATUS_QUERY: &str = "\
SELECT pg_catalog.pg_is_in_recovery(),
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
            ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), '0/0')::bigint END,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), '0/0')::bigint,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_replay_lsn(), '0/0')::bigint,
       CASE WHEN pg_catalog.pg_is_in_recovery()
            THEN COALESCE((SELECT received_tli FROM pg_catalog.pg_stat_get_wal_receiver()),
                          GREATEST((pg_catalog.pg_control_checkpoint()).timeline_id,
                                   (pg_catalog.pg_control_recovery()).min_recovery_end_timeline))
            ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(
                      pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused()
            ELSE false END,
       (SELECT status FROM pg_catalog.pg_stat_get_wal_receiver()),
       pg_catalog.to_char(pg_catalog.pg_postmaster_start_time() AT TIME ZONE 'UTC',
                          'YYYY-MM-DD HH24:MI:SS.US') || '+00:00',
       pg_catalog.current_setting('server_version_num')::int,
       (SELECT pg_catalog.array_agg(name || '=' || pg_catalog.current_setting(name) ORDER BY name)
          FROM pg_catalog.pg_settings WHERE pending_restart),
       pg_catalog.current_setting('synchronous_standby_names'),
       pg_catalog.current_setting('synchronous_commit')";

// === impl PgClient ===

impl PgClient {
    /// Connects with `params` (`host` a name, address or socket directory; `port`, `user`,
    /// `password`, `dbname`, `application_name`).
    ///
    /// # Errors
    /// Unusable parameters, or the connection fails.
    pub async fn connect(params: &ConnParams) -> Result<Self, QueryError> {
        let config = tokio_config(params)?;
        let target = format!(
            "{}:{}",
            params.get("host").unwrap_or("<default>"),
            params.get("port").unwrap_or("5432")
        );
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|source| QueryError::Connect { target, source })?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres connection ended: {e}");
            }
        });
        Ok(PgClient { client, connection })
    }

    /// The underlying client, for statements this crate has no method for.
    pub fn inner(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Whether the connection is gone (reconnect).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Role, WAL positions, timeline, settings and the WAL senders, in one round trip.
    ///
    /// # Errors
    /// The query fails or returns out-of-range values.
    pub async fn status(&self) -> Result<ServerStatus, QueryError> {
        let what = "read server status";
        // Both statements go out together (tokio-postgres pipelines them): one round trip.
        let (row, wal_senders) = tokio::try_join!(
            async {
                self.client
                    .query_one(STATUS_QUERY, &[])
                    .await
                    .map_err(|source| QueryError::Query { what, source })
            },
            self.replication_stats()
        )?;
        let get = |i| -> Result<Option<i64>, QueryError> {
            row.try_get(i)
                .map_err(|source| QueryError::Query { what, source })
        };
        let timeline: Option<i32> = row
            .try_get(4)
            .map_err(|source| QueryError::Query { what, source })?;
        Ok(ServerStatus {
            in_recovery: row
                .try_get(0)
                .map_err(|source| QueryError::Query { what, source })?,
            flush_lsn: lsn(what, get(1)?)?,
            receive_lsn: lsn(what, get(2)?)?,
            replay_lsn: lsn(what, get(3)?)?,
            timeline: timeline
                .and_then(|t| u32::try_from(t).ok())
                .ok_or_else(|| QueryError::Value {
                    what: "timeline",
                    value: format!("{timeline:?}"),
                })?,
            replay_paused: row
                .try_get(5)
                .map_err(|source| QueryError::Query { what, source })?,
            wal_receiver: row
                .try_get(6)
                .map_err(|source| QueryError::Query { what, source })?,
            postmaster_start_time: row.try_get(7).ok().flatten(),
            server_version: row
                .try_get::<_, Option<i32>>(8)
                .ok()
                .flatten()
                .and_then(|v| u32::try_from(v).ok()),
            pending_restart: row
                .try_get::<_, Option<Vec<String>>>(9)
                .ok()
                .flatten()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|item| {
                    let (name, value) = item.split_once('=')?;
                    Some((name.to_owned(), value.to_owned()))
                })
                .collect(),
            synchronous_standby_names: row
                .try_get::<_, Option<String>>(10)
                .map_err(|source| QueryError::Query { what, source })?
                .unwrap_or_default(),
            synchronous_commit: row
                .try_get::<_, Option<String>>(11)
                .map_err(|source| QueryError::Query { what, source })?
                .unwrap_or_default(),
            wal_senders,
        })
    }

    /// `pg_is_in_recovery()`.
    ///
    /// # Errors
    /// The query fails.
    pub async fn is_in_recovery(&self) -> Result<bool, QueryError> {
        let what = "check pg_is_in_recovery()";
        self.client
            .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|source| QueryError::Query { what, source })
    }

    /// `pg_current_wal_lsn()` on a primary.
    ///
    /// # Errors
    /// The query fails (on a standby too: the function is not available during recovery).
    pub async fn current_wal_lsn(&self) -> Result<Lsn, QueryError> {
        let what = "read pg_current_wal_lsn()";
        let value: Option<i64> = self
            .client
            .query_one(
                "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::bigint",
                &[],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|source| QueryError::Query { what, source })?;
        lsn(what, value)?.ok_or(QueryError::Value {
            what,
            value: "NULL".into(),
        })
    }

    /// Creates physical slot `name` reserving WAL at once, unless it exists. Returns whether it
    /// was created.
    ///
    /// # Errors
    /// The query fails (e.g. `max_replication_slots` reached).
    pub async fn create_physical_slot(&self, name: &str) -> Result<bool, QueryError> {
        let what = "create physical replication slot";
        let created = self
            .client
            .execute(
                "SELECT pg_catalog.pg_create_physical_replication_slot($1, true) \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots \
                 WHERE slot_name = $1)",
                &[&name],
            )
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        Ok(created > 0)
    }

    /// Drops slot `name` if it exists and nobody streams from it. Returns whether it was
    /// dropped.
    ///
    /// # Errors
    /// The query fails.
    pub async fn drop_slot(&self, name: &str) -> Result<bool, QueryError> {
        let what = "drop replication slot";
        let dropped = self
            .client
            .execute(
                "SELECT pg_catalog.pg_drop_replication_slot($1) \
                 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active)",
                &[&name],
            )
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        Ok(dropped > 0)
    }

    /// Every replication slot.
    ///
    /// # Errors
    /// The query fails.
    pub async fn replication_slots(&self) -> Result<Vec<ReplicationSlot>, QueryError> {
        let what = "list replication slots";
        let rows = self
            .client
            .query(
                "SELECT slot_name::text, slot_type, active, \
                 pg_catalog.pg_wal_lsn_diff(restart_lsn, '0/0')::bigint, database::text, \
                 plugin::text FROM pg_catalog.pg_replication_slots ORDER BY 1",
                &[],
            )
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        rows.iter()
            .map(|row| {
                let q = |source| QueryError::Query { what, source };
                Ok(ReplicationSlot {
                    name: row.try_get(0).map_err(q)?,
                    slot_type: row.try_get(1).map_err(q)?,
                    active: row.try_get(2).map_err(q)?,
                    restart_lsn: lsn(what, row.try_get(3).map_err(q)?)?,
                    database: row.try_get(4).map_err(q)?,
                    plugin: row.try_get(5).map_err(q)?,
                })
            })
            .collect()
    }

    /// `pg_stat_replication`: who streams from this server.
    ///
    /// # Errors
    /// The query fails.
    pub async fn replication_stats(&self) -> Result<Vec<ReplicationStat>, QueryError> {
        let what = "read pg_stat_replication";
        let rows = self
            .client
            .query(
                "SELECT pid, usename::text, application_name, pg_catalog.host(client_addr), \
                 state, sync_state, sync_priority, \
                 pg_catalog.pg_wal_lsn_diff(sent_lsn, '0/0')::bigint, \
                 pg_catalog.pg_wal_lsn_diff(write_lsn, '0/0')::bigint, \
                 pg_catalog.pg_wal_lsn_diff(flush_lsn, '0/0')::bigint, \
                 pg_catalog.pg_wal_lsn_diff(replay_lsn, '0/0')::bigint \
                 FROM pg_catalog.pg_stat_replication ORDER BY application_name",
                &[],
            )
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        rows.iter()
            .map(|row| {
                let q = |source| QueryError::Query { what, source };
                Ok(ReplicationStat {
                    pid: row.try_get(0).map_err(q)?,
                    usename: row.try_get(1).map_err(q)?,
                    application_name: row.try_get(2).map_err(q)?,
                    client_addr: row.try_get(3).map_err(q)?,
                    state: row.try_get(4).map_err(q)?,
                    sync_state: row.try_get(5).map_err(q)?,
                    sync_priority: row.try_get(6).map_err(q)?,
                    sent_lsn: lsn(what, row.try_get(7).map_err(q)?)?,
                    write_lsn: lsn(what, row.try_get(8).map_err(q)?)?,
                    flush_lsn: lsn(what, row.try_get(9).map_err(q)?)?,
                    replay_lsn: lsn(what, row.try_get(10).map_err(q)?)?,
                })
            })
            .collect()
    }

    /// Writes a little WAL without waiting for any standby, so standbys report progress
    /// (Patroni does this when `synchronous_standby_names` changed).
    ///
    /// # Errors
    /// The statement fails.
    pub async fn nudge_wal(&self) -> Result<(), QueryError> {
        self.client
            .batch_execute(
                "DO $$ BEGIN SET LOCAL synchronous_commit = 'off'; \
                 PERFORM * FROM pg_catalog.txid_current(); END; $$",
            )
            .await
            .map_err(|source| QueryError::Query {
                what: "write a little WAL",
                source,
            })
    }

    /// `CHECKPOINT` (a restart point on a standby), without the session's statement timeout.
    /// A new primary must checkpoint before a former primary can `pg_rewind` from it.
    ///
    /// # Errors
    /// The statement fails.
    pub async fn checkpoint(&self) -> Result<(), QueryError> {
        self.client
            .batch_execute("SET statement_timeout = 0; CHECKPOINT; RESET statement_timeout")
            .await
            .map_err(|source| QueryError::Query {
                what: "run CHECKPOINT",
                source,
            })
    }

    /// The timeline this server writes WAL on, `None` while it is in recovery (Patroni asks a
    /// leader with `IDENTIFY_SYSTEM`; a published member timeline lags a fresh promotion).
    ///
    /// # Errors
    /// The query fails.
    pub async fn primary_timeline(&self) -> Result<Option<u32>, QueryError> {
        let what = "read the primary's timeline";
        let row = self
            .client
            .query_one(
                "SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL \
                 ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(\
                 pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int END",
                &[],
            )
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        let tl: Option<i32> = row
            .try_get(0)
            .map_err(|source| QueryError::Query { what, source })?;
        Ok(tl.and_then(|t| u32::try_from(t).ok()))
    }

    /// The text of this server's history file of `timeline` (`pg_wal/XXXXXXXX.history`), read
    /// with `pg_read_binary_file` (which the rewind user may call, as `pg_rewind` does); `None`
    /// when the file does not exist (timeline 1 has none). Patroni asks a remote primary with
    /// `TIMELINE_HISTORY` over a replication connection; the file is the same.
    ///
    /// # Errors
    /// The query fails (no permission, not a PostgreSQL server).
    pub async fn timeline_history_file(&self, timeline: u32) -> Result<Option<String>, QueryError> {
        let what = "read a timeline history file";
        let path = format!("pg_wal/{timeline:08X}.history");
        let row = self
            .client
            .query_one(
                "SELECT pg_catalog.pg_read_binary_file($1, 0, 16777216, true)",
                &[&path],
            )
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        let bytes: Option<Vec<u8>> = row
            .try_get(0)
            .map_err(|source| QueryError::Query { what, source })?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Whether this server is a primary whose `pg_control` names its current timeline: it ran
    /// a checkpoint since its promotion, so `pg_rewind` from it sees the new timeline
    /// (Patroni's `check_leader_has_run_checkpoint`).
    ///
    /// # Errors
    /// The query fails.
    pub async fn checkpointed_on_current_timeline(&self) -> Result<bool, QueryError> {
        let what = "check the checkpoint timeline";
        let row = self
            .client
            .query_one(
                "SELECT NOT pg_catalog.pg_is_in_recovery() \
                 AND ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(\
                 pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int = timeline_id \
                 FROM pg_catalog.pg_control_checkpoint()",
                &[],
            )
            .await
            .map_err(|source| QueryError::Query { what, source })?;
        row.try_get::<_, Option<bool>>(0)
            .map(|v| v.unwrap_or(false))
            .map_err(|source| QueryError::Query { what, source })
    }

    /// `pg_promote(wait => true)`: ends recovery; returns whether promotion finished within
    /// `wait` (whole seconds, at least 1).
    ///
    /// # Errors
    /// The statement fails (e.g. not in recovery).
    pub async fn promote(&self, wait: Duration) -> Result<bool, QueryError> {
        let what = "promote with pg_promote()";
        let secs = i32::try_from(wait.as_secs().max(1)).unwrap_or(i32::MAX);
        let q = |source| QueryError::Query { what, source };
        self.client
            .batch_execute("SET statement_timeout = 0")
            .await
            .map_err(q)?;
        let done = self
            .client
            .query_one("SELECT pg_catalog.pg_promote(true, $1)", &[&secs])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(q)?;
        self.client
            .batch_execute("RESET statement_timeout")
            .await
            .map_err(q)?;
        Ok(done)
    }

    /// `pg_reload_conf()`.
    ///
    /// # Errors
    /// The statement fails.
    pub async fn reload_conf(&self) -> Result<(), QueryError> {
        self.client
            .batch_execute("SELECT pg_catalog.pg_reload_conf()")
            .await
            .map_err(|source| QueryError::Query {
                what: "reload configuration",
                source,
            })
    }
}

/// An LSN from `pg_wal_lsn_diff(..)::bigint`, which is never negative.
fn lsn(what: &'static str, value: Option<i64>) -> Result<Option<Lsn>, QueryError> {
    value
        .map(|v| {
            u64::try_from(v).map(Lsn).map_err(|_| QueryError::Value {
                what,
                value: v.to_string(),
            })
        })
        .transpose()
}

/// `tokio-postgres` configuration from libpq keywords this client understands.
fn tokio_config(params: &ConnParams) -> Result<tokio_postgres::Config, QueryError> {
    let mut config = tokio_postgres::Config::new();
    if let Some(hosts) = params.get("host") {
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            config.host(host);
        }
    }
    if let Some(port) = params.get("port") {
        let port = port.parse().map_err(|_| QueryError::InvalidParam {
            key: "port",
            value: port.to_owned(),
        })?;
        config.port(port);
    }
    if let Some(user) = params.get("user") {
        config.user(user);
    }
    if let Some(password) = params.get("password") {
        config.password(password);
    }
    config
        .dbname(params.get("dbname").unwrap_or(DEFAULT_DATABASE))
        .application_name(
            params
                .get("application_name")
                .unwrap_or(DEFAULT_APPLICATION_NAME),
        )
        .options(SESSION_OPTIONS)
        .connect_timeout(CONNECT_TIMEOUT);
    match params.get("sslmode") {
        None | Some("prefer" | "allow") => {
            config.ssl_mode(SslMode::Prefer);
        }
        Some("disable") => {
            config.ssl_mode(SslMode::Disable);
        }
        Some(other) => return Err(QueryError::TlsUnsupported(other.to_owned())),
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libpq keywords map onto the client configuration; TLS-only modes are refused.
    #[test]
    fn config_from_params() {
        let params = ConnParams::new()
            .with("host", "/run/postgresql")
            .with("port", "5433")
            .with("user", "postgres");
        let config = tokio_config(&params).expect("valid");
        assert_eq!(config.get_ports(), [5433]);
        assert_eq!(config.get_user(), Some("postgres"));
        assert_eq!(config.get_dbname(), Some("postgres"));
        assert_eq!(config.get_application_name(), Some("Patroni"));
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert!(matches!(
            tokio_config(&params.clone().with("port", "x")),
            Err(QueryError::InvalidParam { key: "port", .. })
        ));
        assert!(matches!(
            tokio_config(&params.with("sslmode", "verify-full")),
            Err(QueryError::TlsUnsupported(m)) if m == "verify-full"
        ));
    }

    /// Negative LSNs are errors, NULL is None.
    #[test]
    fn lsn_values() {
        assert_eq!(lsn("x", Some(16)).expect("ok"), Some(Lsn(16)));
        assert_eq!(lsn("x", None).expect("ok"), None);
        assert!(lsn("x", Some(-1)).is_err());
    }
}
