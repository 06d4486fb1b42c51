//! One open watchdog device: [`WatchdogDevice::open`] arms it, [`WatchdogDevice::keepalive`]
//! restarts its timer, [`WatchdogDevice::close`] disarms it with the magic character. Error
//! texts are Patroni's (`patroni/watchdog/linux.py`).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::ioctl;

/// Patroni's default device; [`WatchdogDevice::describe`] names other paths.
const DEFAULT_DEVICE: &str = "/dev/watchdog";

/// A watchdog device operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device could not be opened (missing, not writable, busy).
    #[error("Can't open watchdog device: {0}")]
    Open(#[source] std::io::Error),
    /// `WDIOC_GETSUPPORT` failed: not a watchdog device.
    #[error("Could not get information about watchdog device: {0}")]
    GetSupport(#[source] nix::Error),
    /// The timeout asked for is outside what the ioctl takes.
    #[error("Invalid timeout {0}. Supported values are between 1 and 65535")]
    InvalidTimeout(i64),
    /// `WDIOC_SETTIMEOUT` failed.
    #[error("Could not set timeout on watchdog device: {0}")]
    SetTimeout(#[source] nix::Error),
    /// `WDIOC_GETTIMEOUT` failed.
    #[error("Could not get timeout on watchdog device: {0}")]
    GetTimeout(#[source] nix::Error),
    /// The keepalive write failed.
    #[error("Could not send watchdog keepalive: {0}")]
    Keepalive(#[source] std::io::Error),
    /// Writing the magic character failed: the device may still be armed.
    #[error("Error while closing {device}: {source}")]
    Close {
        /// [`WatchdogDevice::describe`] of the device.
        device: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result of device operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What `WDIOC_GETSUPPORT` says about the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogInfo {
    /// `WDIOF_*` bits.
    pub options: u32,
    /// Firmware version (0 when the driver has none).
    pub firmware_version: u32,
    /// The board's identity, e.g. `Software Watchdog`.
    pub identity: String,
}

/// An open (armed) watchdog device. Dropping it closes the file without the magic character:
/// the device stays armed, as when the process dies.
#[derive(Debug)]
pub struct WatchdogDevice {
    file: File,
    path: PathBuf,
    info: WatchdogInfo,
}

// === impl WatchdogInfo ===

impl WatchdogInfo {
    /// Whether the timeout can be set (`WDIOF_SETTIMEOUT`).
    pub fn has_set_timeout(&self) -> bool {
        self.options & ioctl::WDIOF_SETTIMEOUT != 0
    }

    /// Whether writing `V` before closing disarms it (`WDIOF_MAGICCLOSE`).
    pub fn has_magic_close(&self) -> bool {
        self.options & ioctl::WDIOF_MAGICCLOSE != 0
    }
}

// === impl WatchdogDevice ===

impl WatchdogDevice {
    /// Opens `path` write-only, which arms the watchdog, and asks what it supports.
    ///
    /// # Errors
    /// [`Error::Open`] when it cannot be opened, [`Error::GetSupport`] when it is not a
    /// watchdog device (it was armed if it is one: the file is closed without `V` then).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::options()
            .write(true)
            .open(path)
            .map_err(Error::Open)?;
        let raw = ioctl::get_support(file.as_fd()).map_err(Error::GetSupport)?;
        let end = raw.identity.iter().position(|b| *b == 0).unwrap_or(32);
        let info = WatchdogInfo {
            options: raw.options,
            firmware_version: raw.firmware_version,
            identity: String::from_utf8_lossy(&raw.identity[..end]).into_owned(),
        };
        Ok(Self {
            file,
            path: path.to_owned(),
            info,
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the device said it supports.
    pub fn info(&self) -> &WatchdogInfo {
        &self.info
    }

    /// Patroni's `describe()`: the identity, the firmware version when not 0, the path when
    /// not `/dev/watchdog`.
    pub fn describe(&self) -> String {
        let mut s = if self.info.identity.is_empty() {
            "Linux watchdog device".to_owned()
        } else {
            self.info.identity.clone()
        };
        if self.info.firmware_version != 0 {
            s.push_str(&format!(" (firmware {})", self.info.firmware_version));
        }
        if self.path != Path::new(DEFAULT_DEVICE) {
            s.push_str(&format!(" at {}", self.path.display()));
        }
        s
    }

    /// `WDIOC_SETTIMEOUT` with `seconds` (1 to 65535, as Patroni allows).
    ///
    /// # Errors
    /// [`Error::InvalidTimeout`], [`Error::SetTimeout`].
    pub fn set_timeout(&mut self, seconds: i64) -> Result<()> {
        let value = i32::try_from(seconds)
            .ok()
            .filter(|s| (1..0xFFFF).contains(s))
            .ok_or(Error::InvalidTimeout(seconds))?;
        ioctl::set_timeout(self.file.as_fd(), value).map_err(Error::SetTimeout)?;
        Ok(())
    }

    /// `WDIOC_GETTIMEOUT`: the timeout in force, in seconds.
    ///
    /// # Errors
    /// [`Error::GetTimeout`].
    pub fn timeout(&self) -> Result<i64> {
        ioctl::get_timeout(self.file.as_fd())
            .map(i64::from)
            .map_err(Error::GetTimeout)
    }

    /// Restarts the timer by writing `1` (Patroni's keepalive).
    ///
    /// # Errors
    /// [`Error::Keepalive`].
    pub fn keepalive(&mut self) -> Result<()> {
        self.file.write_all(b"1").map_err(Error::Keepalive)
    }

    /// Disarms the device: writes the magic character `V`, then closes it.
    ///
    /// # Errors
    /// [`Error::Close`] when the write failed (the device is closed anyway, and stays armed).
    pub fn close(mut self) -> Result<()> {
        self.file.write_all(b"V").map_err(|source| Error::Close {
            device: self.describe(),
            source,
        })
    }
}
