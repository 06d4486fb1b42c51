//! PostgreSQL as the agent sees it: its binaries, its data directory and its
//! running postmaster.

mod bin;
mod postmaster_pid;

pub use bin::{BinDir, BinError, DEFAULT_BIN_DIR};
pub use postmaster_pid::{PostmasterPid, PostmasterPidError, PostmasterStatus};
