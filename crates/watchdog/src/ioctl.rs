//! The watchdog ioctls of `linux/watchdog.h`, the only `unsafe` code of the crate, behind safe
//! functions on a borrowed file descriptor.

#![allow(
    unsafe_code,
    reason = "ioctl(2) has no safe binding; each call passes a pointer to a local of exactly \
              the type the ioctl number encodes"
)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// `WDIOF_SETTIMEOUT`: the timeout can be set (`WDIOC_SETTIMEOUT`).
pub const WDIOF_SETTIMEOUT: u32 = 0x0080;
/// `WDIOF_MAGICCLOSE`: writing `V` before closing disarms the device.
pub const WDIOF_MAGICCLOSE: u32 = 0x0100;
/// `WDIOF_KEEPALIVEPING`: `WDIOC_KEEPALIVE` is supported.
pub const WDIOF_KEEPALIVEPING: u32 = 0x8000;

/// `struct watchdog_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawWatchdogInfo {
    /// `WDIOF_*` bits the card/driver supports.
    pub(crate) options: u32,
    /// Firmware version of the card.
    pub(crate) firmware_version: u32,
    /// Identity of the board, NUL padded.
    pub(crate) identity: [u8; 32],
}

const WATCHDOG_IOCTL_BASE: u8 = b'W';

nix::ioctl_read!(wdioc_getsupport, WATCHDOG_IOCTL_BASE, 0, RawWatchdogInfo);
nix::ioctl_readwrite!(wdioc_settimeout, WATCHDOG_IOCTL_BASE, 6, libc_int);
nix::ioctl_read!(wdioc_gettimeout, WATCHDOG_IOCTL_BASE, 7, libc_int);

#[allow(non_camel_case_types, reason = "the C type's name")]
type libc_int = nix::libc::c_int;

/// `WDIOC_GETSUPPORT`.
pub(crate) fn get_support(fd: BorrowedFd<'_>) -> nix::Result<RawWatchdogInfo> {
    let mut info = RawWatchdogInfo::default();
    // SAFETY: `info` is a valid, writable `struct watchdog_info` for the whole call; the fd
    // is borrowed, so it stays open.
    unsafe { wdioc_getsupport(fd.as_raw_fd(), &raw mut info) }?;
    Ok(info)
}

/// `WDIOC_SETTIMEOUT`: returns the timeout the driver set (it may round).
pub(crate) fn set_timeout(fd: BorrowedFd<'_>, seconds: i32) -> nix::Result<i32> {
    let mut value: libc_int = seconds;
    // SAFETY: `value` is a valid, readable and writable `int` for the whole call.
    unsafe { wdioc_settimeout(fd.as_raw_fd(), &raw mut value) }?;
    Ok(value)
}

/// `WDIOC_GETTIMEOUT`.
pub(crate) fn get_timeout(fd: BorrowedFd<'_>) -> nix::Result<i32> {
    let mut value: libc_int = 0;
    // SAFETY: `value` is a valid, writable `int` for the whole call.
    unsafe { wdioc_gettimeout(fd.as_raw_fd(), &raw mut value) }?;
    Ok(value)
}
