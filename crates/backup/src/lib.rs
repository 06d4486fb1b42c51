//! `patroni-backup`: the front to the backup tool a cluster uses (pgBackRest or Barman Cloud),
//! called from Patroni's own hooks: `archive_command`, `restore_command`, a
//! `create_replica_methods` entry, a custom bootstrap method and the leader's backup schedule
//! (docs/backups.md). Nothing here copies PostgreSQL files itself: each command becomes one or
//! more invocations of the tool.
//!
//! - [`settings`]: the `PGBACKUP_*` environment, validated.
//! - [`tool`]: the tool invocations each command needs (pure).
//! - [`catalog`]: the tools' backup lists, read into one shape.
//! - [`rules`]: which backup a restore uses, and Spilo's rule for whether a replica is restored
//!   from the backup rather than cloned (pure).

pub mod catalog;
pub mod rules;
pub mod settings;
pub mod tool;

pub use catalog::{BackupInfo, CatalogError};
pub use settings::{Repository, Settings, SettingsError, ToolKind};
pub use tool::Invocation;
