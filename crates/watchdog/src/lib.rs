//! The Linux watchdog device (`/dev/watchdog`, `linux/watchdog.h`) as Patroni's
//! `patroni/watchdog/linux.py` drives it: open the device (which arms it), ask what it
//! supports (`WDIOC_GETSUPPORT`), set and read back its timeout (`WDIOC_SETTIMEOUT`,
//! `WDIOC_GETTIMEOUT`), keep it alive by writing to it, and disarm it by writing the magic
//! character `V` before closing. A device closed without `V` stays armed: the kernel's
//! watchdog core logs "watchdog did not stop!" and the machine resets when the timer runs out.
//!
//! This crate owns only the protocol; when to arm, keep alive and disarm is the HA core's
//! decision (`patroni_core::ha::watchdog`), carried out by the agent.

mod device;
mod ioctl;

pub use device::{Error, Result, WatchdogDevice, WatchdogInfo};
pub use ioctl::{WDIOF_KEEPALIVEPING, WDIOF_MAGICCLOSE, WDIOF_SETTIMEOUT};
