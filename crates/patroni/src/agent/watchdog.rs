//! The watchdog device (`watchdog:` in the configuration): armed, kept alive and disarmed where
//! the core says (`patroni_core::ha::watchdog`), with Patroni's checks and log messages
//! (`patroni/watchdog/base.py`, `Watchdog._activate`, `keepalive`, `_disable`).
//!
//! - [`Runtime::observe_watchdog`]: whether it is armed and whether the device is there and
//!   writable, for the observation (Patroni's `is_running`, `is_healthy`);
//! - [`Runtime::watchdog_for`]: at the start of every cycle, disarms a device the core says
//!   need not be armed (pause, no longer leading, `mode: off`, another device path);
//! - [`Runtime::activate_watchdog`]: the `ActivateWatchdog` query; after a failure the device
//!   is not tried again until the watchdog settings change (Patroni's null watchdog);
//! - [`Runtime::watchdog_keepalive`]: after every renewal of the lock and every failsafe
//!   round the members accepted, applying a changed timeout (`ttl` or `safety_margin`);
//! - [`Runtime::disable_watchdog`]: the magic close, also after every demotion and stop.
//!
//! The device protocol itself is `patroni_watchdog`. A device still armed when the agent
//! exits or dies stays armed: the machine is reset unless a new agent takes over in time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::AccessFlags;
use patroni_core::ha::Observation;
use patroni_core::ha::watchdog::{self, WatchdogMode, WatchdogState};
use patroni_dcs::Dcs;
use patroni_watchdog::WatchdogDevice;

use super::pgctl::PostgresCtl;
use super::runtime::Runtime;

/// The open device, if any, and the timeout set on it.
#[derive(Debug, Default)]
pub(super) struct Watchdog {
    device: Option<Armed>,
    /// Why a required watchdog was last found unusable (logged when it changes).
    unusable: Option<String>,
    /// The settings under which the last activation failed. Patroni then switches to its null
    /// watchdog and does not try the device again until the watchdog configuration changes
    /// ("To avoid log spam activation will only be retried when watchdog configuration is
    /// changed"); a required one counts as unusable until then.
    failed_with: Option<Settings>,
}

/// What an activation depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    device: PathBuf,
    mode: WatchdogMode,
    timeout: Duration,
}

#[derive(Debug)]
struct Armed {
    device: WatchdogDevice,
    /// The timeout asked for when it was armed (or last updated).
    timeout: Duration,
}

// === impl Watchdog ===

impl Watchdog {
    /// Whether the device is open (armed).
    pub(super) fn is_armed(&self) -> bool {
        self.device.is_some()
    }
}

/// Patroni's description of a device that is not open.
fn describe_path(path: &Path) -> String {
    if path == Path::new(patroni_config::model::watchdog::DEFAULT_DEVICE) {
        "Linux watchdog device".to_owned()
    } else {
        format!("Linux watchdog device at {}", path.display())
    }
}

impl<D: Dcs + 'static, P: PostgresCtl> Runtime<D, P> {
    fn watchdog_path(&self) -> PathBuf {
        self.config.watchdog.device.clone()
    }

    fn watchdog_settings(&self) -> Settings {
        Settings {
            device: self.watchdog_path(),
            mode: self.ha.watchdog.mode,
            timeout: self.ha.watchdog.timeout,
        }
    }

    /// Whether the last activation failed under the settings in force.
    fn watchdog_failed_before(&self) -> bool {
        self.watchdog
            .failed_with
            .as_ref()
            .is_some_and(|s| *s == self.watchdog_settings())
    }

    /// What the core needs to know about the device this cycle. With `mode: required`, says
    /// once (at WARN, Patroni's "Watchdog device is not usable") why this member may not lead.
    pub(super) fn observe_watchdog(&mut self) -> WatchdogState {
        let path = self.watchdog_path();
        let access = match self.ha.watchdog.mode {
            WatchdogMode::Required => nix::unistd::access(&path, AccessFlags::W_OK),
            _ => Ok(()),
        };
        let failed_before = self.watchdog_failed_before();
        let state = WatchdogState {
            armed: self.watchdog.is_armed(),
            device_usable: access.is_ok() && !failed_before,
        };
        let unusable = if let Err(e) = access {
            Some(format!("{}: {e}", path.display()))
        } else if failed_before && self.ha.watchdog.mode == WatchdogMode::Required {
            Some(format!(
                "{}: its activation failed; it is tried again once the watchdog configuration changes",
                path.display()
            ))
        } else if self.ha.watchdog.mode == WatchdogMode::Required
            && watchdog::timing_slack(&self.ha) < 0
        {
            Some(format!(
                "its timeout {} s (ttl - safety_margin) is shorter than loop_wait {} s",
                self.ha.watchdog.timeout.as_secs(),
                self.ha.loop_wait.as_secs()
            ))
        } else {
            None
        };
        if unusable != self.watchdog.unusable {
            if let Some(why) = &unusable {
                tracing::warn!(
                    "Watchdog device is not usable ({why}): watchdog.mode is required, so this member will not become the leader"
                );
            } else if self.watchdog.unusable.is_some() {
                tracing::info!("the watchdog device is usable again");
            }
            self.watchdog.unusable = unusable;
        }
        state
    }

    /// Disarms the device when the core says it need not be armed, or when the configured
    /// device changed (the next activation opens the new one); updates `obs` to match.
    pub(super) fn watchdog_for(&mut self, obs: &mut Observation) {
        let Some(armed) = &self.watchdog.device else {
            return;
        };
        let moved = armed.device.path() != self.watchdog_path();
        if moved || !watchdog::keep_armed(obs, &self.ha) {
            self.disable_watchdog();
            obs.watchdog.armed = false;
        }
    }

    /// [`patroni_core::ha::Action::ActivateWatchdog`]: opens the device, sets and checks its
    /// timeout; returns whether it runs with a timeout of at most `timeout` (Patroni's
    /// `Watchdog._activate`, whose log messages these are).
    pub(super) fn activate_watchdog(&mut self, timeout: Duration) -> bool {
        if let Some(armed) = self.watchdog.device.take() {
            // Not expected (the core asks only while disarmed): start from a closed device.
            close(armed.device);
        }
        if self.watchdog_failed_before() {
            // Patroni's null watchdog: nothing to open, nothing logged again.
            return false;
        }
        let safe = self.try_activate(timeout);
        self.watchdog.failed_with = (!self.watchdog.is_armed()).then(|| self.watchdog_settings());
        safe
    }

    fn try_activate(&mut self, timeout: Duration) -> bool {
        let required = self.ha.watchdog.mode == WatchdogMode::Required;
        let path = self.watchdog_path();
        let slack = watchdog::timing_slack(&self.ha);
        let wanted = timeout.as_secs();
        let mut device = None;
        if slack < 0 {
            tracing::warn!(
                "Watchdog not supported because leader TTL {} is less than 2x loop_wait {}",
                self.ha.ttl.as_secs(),
                self.ha.loop_wait.as_secs()
            );
        } else {
            match open_and_set(&path, wanted, self.ha.loop_wait.as_secs()) {
                Ok(opened) => device = opened,
                Err(e) => {
                    let message = format!("Could not activate {}: {e}", describe_path(&path));
                    if required {
                        tracing::warn!("{message}");
                    } else {
                        tracing::debug!("{message}");
                    }
                }
            }
        }
        let Some((device, actual)) = device else {
            if required {
                tracing::error!(
                    "Configuration requires watchdog, but watchdog could not be configured."
                );
            }
            return false;
        };
        if !device.info().has_magic_close() {
            tracing::warn!(
                "Watchdog implementation can't be disabled. Watchdog will trigger after Patroni loses leader key."
            );
        }
        let safe = u64::try_from(actual).is_ok_and(|a| a <= wanted);
        if !safe {
            if required {
                tracing::error!(
                    "Configuration requires watchdog, but a safe watchdog timeout {wanted} could not be configured. Watchdog timeout is {actual}."
                );
                close(device);
                return false;
            }
            tracing::warn!(
                "Watchdog timeout {actual} seconds does not ensure safe termination within {wanted} seconds"
            );
        }
        tracing::info!(
            "{} activated with {actual} second timeout, timing slack {slack} seconds",
            device.describe()
        );
        self.watchdog.device = Some(Armed { device, timeout });
        safe
    }

    /// Pings the armed device (Patroni's `keepalive` after `update_lock`), then applies a
    /// changed timeout (`ttl` or `safety_margin` changed), as Patroni does.
    pub(super) fn watchdog_keepalive(&mut self) {
        let timeout = self.ha.watchdog.timeout;
        let slack = watchdog::timing_slack(&self.ha);
        let Some(armed) = self.watchdog.device.as_mut() else {
            return;
        };
        if let Err(e) = armed.device.keepalive() {
            tracing::error!("Error while sending keepalive: {e}");
            return;
        }
        if armed.timeout != timeout {
            armed.timeout = timeout;
            let set = i64::try_from(timeout.as_secs())
                .map_err(|_| patroni_watchdog::Error::InvalidTimeout(i64::MAX))
                .and_then(|t| armed.device.set_timeout(t))
                .and_then(|()| armed.device.timeout());
            match set {
                Ok(actual) => tracing::info!(
                    "{} updated with {actual} second timeout, timing slack {slack} seconds",
                    armed.device.describe()
                ),
                Err(e) => tracing::error!("Error while sending keepalive: {e}"),
            }
        }
    }

    /// Promotes, pinging an armed device meanwhile, every `loop_wait` (at most every second).
    ///
    /// The loop, whose renewals keep the device alive, waits for the promotion, and
    /// PostgreSQL may take up to `wal_retrieve_retry_interval` (5 s) to act on a promotion
    /// requested just after its WAL receiver failed to reconnect to a dead primary; with a
    /// device timeout of `ttl - safety_margin` (5 s at ttl 10) that reset the new primary's host
    /// in the middle of its promotion. Patroni's loop does not wait (`pg_ctl promote -W`) and
    /// keeps renewing and pinging. The wait is bounded by the lease (the caller's `wait`), so
    /// these pings never outlast it.
    pub(super) async fn promote_keeping_watchdog(&mut self, wait: Duration) -> anyhow::Result<()> {
        let mut armed = self.watchdog.device.take();
        let every = self
            .ha
            .loop_wait
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        let result = {
            let promote = self.act_on_pg().promote(wait);
            tokio::pin!(promote);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    r = &mut promote => break r,
                    _ = tick.tick() => {
                        if let Some(a) = armed.as_mut()
                            && let Err(e) = a.device.keepalive()
                        {
                            tracing::error!("Error while sending keepalive: {e}");
                        }
                    }
                }
            }
        };
        self.watchdog.device = armed;
        result
    }

    /// Disarms the device with the magic close (Patroni's `Watchdog.disable`).
    pub(super) fn disable_watchdog(&mut self) {
        if let Some(armed) = self.watchdog.device.take() {
            close(armed.device);
        }
    }
}

/// Opens `path`, sets the timeout to `wanted` seconds when the driver can, and reads back the
/// timeout in force. A device whose timeout is below `loop_wait` is closed again (Patroni's
/// `_set_timeout`): `Ok(None)`.
fn open_and_set(
    path: &Path,
    wanted: u64,
    loop_wait: u64,
) -> patroni_watchdog::Result<Option<(WatchdogDevice, i64)>> {
    let mut device = WatchdogDevice::open(path)?;
    let result = (|| {
        if device.info().has_set_timeout() {
            device.set_timeout(i64::try_from(wanted).unwrap_or(i64::MAX))?;
        }
        device.timeout()
    })();
    let actual = match result {
        Ok(actual) => actual,
        Err(e) => {
            close(device);
            return Err(e);
        }
    };
    if u64::try_from(actual).is_ok_and(|a| a < loop_wait) {
        tracing::error!(
            "loop_wait of {loop_wait} seconds is too long for watchdog {actual} second timeout"
        );
        if device.info().has_magic_close() {
            tracing::info!("Disabling watchdog due to unsafe timeout.");
            close(device);
            return Ok(None);
        }
    }
    Ok(Some((device, actual)))
}

/// The magic close, or, for a device that cannot be disarmed, a last keepalive and Patroni's
/// warning.
fn close(mut device: WatchdogDevice) {
    if !device.info().has_magic_close() {
        let _ = device.keepalive();
        let timeout = device.timeout().unwrap_or(0);
        tracing::warn!(
            "Watchdog implementation can't be disabled. System will reboot after {timeout} seconds when watchdog times out."
        );
    }
    let name = device.describe();
    match device.close() {
        Ok(()) => tracing::info!("disarmed the {name}"),
        Err(e) => tracing::error!("Error while disabling watchdog: {e}"),
    }
}
