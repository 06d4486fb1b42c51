//! PostgreSQL as the agent sees it: its binaries, its data directory, its configuration files,
//! its running postmaster, and the queries the HA loop needs.
//!
//! Pieces, each usable and testable alone:
//! - files, rendered by pure functions ([`render_postgresql_conf`], [`render_pg_hba`],
//!   [`RecoveryConf::build`], [`ServerParameters::build`]) and written atomically by
//!   [`Layout`];
//! - programs, run through a [`Launcher`] ([`initdb()`], [`create_replica`], [`rewind()`],
//!   [`ControlData::read`], [`run_post_bootstrap`]);
//! - the server process ([`Postmaster`]);
//! - queries ([`PgClient`], [`create_or_update_role`]);
//! - [`Postgres`], one instance tying them together for the HA runtime.

mod bin;
mod bootstrap;
mod client;
mod conninfo;
mod controldata;
mod custom_bootstrap;
mod datadir;
mod files;
mod history;
mod initdb;
mod instance;
mod launcher;
mod layout;
mod lsn;
mod params;
mod postmaster;
mod postmaster_pid;
mod recover;
mod recovery;
mod render;
mod replica;
mod rewind;
mod slots;
mod tool;

pub use bin::{BinDir, BinError, DEFAULT_BIN_DIR};
pub use bootstrap::{
    PostBootstrapError, RoleOption, create_or_update_role, create_or_update_role_sql,
    create_replication_users, quote_ident, quote_literal, run_post_bootstrap,
    set_superuser_password,
};
pub use client::{
    CONNECT_TIMEOUT, PgClient, QueryError, ReplicationSlot, ReplicationStat, ServerStatus,
};
pub use conninfo::{ConnParams, escape_dsn_value, use_passfile};
pub use controldata::{ClusterState, ControlData, ControlDataError};
pub use custom_bootstrap::{CustomBootstrap, CustomBootstrapError};
pub use datadir::{DataDirError, DataDirState, remove_contents, remove_contents_async};
pub use files::{FileError, Owner, write_atomic};
pub use history::{HistoryLine, history_file, parse_timeline_history};
pub use initdb::{FORBIDDEN_INITDB_OPTIONS, InitdbError, InitdbSpec, initdb, initdb_args};
pub use instance::{InstanceError, InstanceSpec, Postgres, local_address};
pub use launcher::{Launcher, Programs};
pub use layout::Layout;
pub use lsn::{Lsn, LsnParseError};
pub use params::{ParameterWarning, ServerParameters, ServerParametersInput};
pub use patroni_core::slots::{MAX_SLOT_NAME_LEN, is_valid_slot_name, slot_name_from_member_name};
pub use postmaster::{
    ADOPTED_EXIT_POLL_INTERVAL, Escalation, IMMEDIATE_STOP_TIMEOUT, KILL_WAIT_TIMEOUT, Postmaster,
    PostmasterError, READY_POLL_INTERVAL, StartSpec, StopMode, StopOutcome,
};
pub use postmaster_pid::{PostmasterPid, PostmasterPidError, PostmasterStatus};
pub use recover::{checkpoint_end_from_waldump, parse_postmaster_opts, single_user_args};
pub use recovery::{FollowSpec, RecoveryConf, RecoverySignal, UpstreamAddress};
pub use render::{
    ConfParams, HEADER, escape_conf_value, render_appended_pg_hba, render_pg_hba, render_pg_ident,
    render_postgresql_conf,
};
pub use replica::{
    BASEBACKUP, BASEBACKUP_ATTEMPTS, BASEBACKUP_RETRY_DELAY, CloneError, CloneSpec, CustomMethod,
    MethodError, MethodFailure, ReplicaMethod, basebackup_args, create_replica, custom_method_args,
};
pub use rewind::{RewindError, RewindSpec, rewind, rewind_args};
pub use slots::{DropOutcome, LogicalSlotFile, install_logical_slots};
pub use tool::{ToolError, ToolOutput};
