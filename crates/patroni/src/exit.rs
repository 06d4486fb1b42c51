//! Exit codes of the binaries (from `sysexits.h` where one fits).

/// Success.
pub const OK: u8 = 0;
/// `--validate-config` found problems (Patroni exits with 1 too).
pub const INVALID: u8 = 1;
/// The configuration is unusable: unreadable, invalid, or for a DCS patroni-rs does not
/// support (`EX_USAGE`).
pub const USAGE: u8 = 64;
/// The configuration is fine but the service cannot run yet (`EX_UNAVAILABLE`): the HA agent
/// is not implemented.
pub const UNAVAILABLE: u8 = 69;
