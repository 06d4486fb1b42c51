//! The watchdog device as the decision sees it (Patroni's `patroni/watchdog/base.py`, with the
//! places `ha.py` calls it): when the leader arms it, when it must be disarmed, and who may
//! not lead without one.
//!
//! # The rules
//! - **Arm** ([`Action::ActivateWatchdog`], a query): the lock holder arms it before it
//!   promotes, or keeps running as primary, whenever it is not armed yet and the cluster is
//!   not paused (Patroni's `enforce_primary_role`); the first member arms it after its
//!   bootstrap, before it takes the lock (`post_bootstrap`). With `mode: required` a failed
//!   activation gives the lock back ("Not promoting self because watchdog could not be
//!   activated"), demotes a running primary, or cancels the bootstrap; with `automatic` the
//!   member goes on without one.
//! - **Keep alive**: the runtime pings the armed device after every successful renewal of
//!   the lock and every failsafe round all members accepted (Patroni's `update_lock`), so the
//!   device fires `timeout` after the last proof that this member may still be primary.
//! - **Disarm** (magic close) whenever [`keep_armed`] says no: not primary and not holding
//!   the lock, PostgreSQL stopped, paused, `mode: off`; and after every demotion or stop.
//! - **Race**: with `mode: required`, a member whose device is missing or not writable, or
//!   whose `ttl - safety_margin` is shorter than `loop_wait`, does not race and reports
//!   `watchdog_failed` (Patroni's `is_healthy`).
//!
//! The watchdog is independent of the lease fence ([`super::lease`]); see docs/watchdog.md for
//! how the two relate.

use std::time::Duration;

use super::{Action, HaConfig, Observation, PgServer};

/// `watchdog.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WatchdogMode {
    /// No watchdog is used.
    #[default]
    Off,
    /// A watchdog is used when one can be activated; leading goes on without one.
    Automatic,
    /// This member never runs as primary without an active watchdog.
    Required,
}

/// The watchdog settings the decision reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchdogPolicy {
    /// `watchdog.mode`. The core's default is `Off`; the agent passes the configured mode
    /// (Patroni's default is `automatic`).
    pub mode: WatchdogMode,
    /// How long the device waits for a keepalive: `ttl - safety_margin`, or `ttl / 2` with
    /// `safety_margin: -1` (Patroni's `WatchdogConfig.timeout`); zero when that is negative.
    pub timeout: Duration,
}

/// What the runtime knows of its watchdog device this cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogState {
    /// This agent holds the device open and armed (Patroni's `is_running`).
    pub armed: bool,
    /// The device exists and this agent may write to it (Patroni's `LinuxWatchdogDevice
    /// .is_healthy`); only looked at with `mode: required`.
    pub device_usable: bool,
}

// === impl WatchdogPolicy ===

impl WatchdogPolicy {
    /// Patroni's timeout: `ttl - safety_margin` seconds, `ttl / 2` when `safety_margin` is
    /// -1; zero when negative.
    pub fn timeout_for(ttl: Duration, safety_margin: i64) -> Duration {
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let secs = if safety_margin == -1 {
            ttl_secs / 2
        } else {
            ttl_secs.saturating_sub(safety_margin)
        };
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }
}

// === impl WatchdogState ===

impl Default for WatchdogState {
    /// Not armed; a device that is usable (nothing known against it).
    fn default() -> Self {
        Self {
            armed: false,
            device_usable: true,
        }
    }
}

/// Whether the configuration and the device let this member lead: false only with
/// `mode: required` and a device that is missing or not writable, or a timeout shorter than
/// `loop_wait` (Patroni's `Watchdog.is_healthy`; its negation is `watchdog_failed` in
/// `GET /patroni`).
pub fn healthy(obs: &Observation, cfg: &HaConfig) -> bool {
    cfg.watchdog.mode != WatchdogMode::Required
        || (cfg.watchdog.timeout >= cfg.loop_wait && obs.watchdog.device_usable)
}

/// Whether an armed watchdog stays armed: while this member runs as primary, is promoting,
/// or holds the lock (it may be about to promote), outside pause and with a mode other than
/// `off`. A standby leader (it never promotes) and a stopped server need none.
pub fn keep_armed(obs: &Observation, cfg: &HaConfig) -> bool {
    if cfg.watchdog.mode == WatchdogMode::Off || obs.paused {
        return false;
    }
    match obs.postgres.server() {
        None | Some(PgServer::Stopped(_)) => false,
        Some(PgServer::Primary(_)) => true,
        Some(_) => {
            matches!(obs.memory.in_progress, Some(Action::Promote))
                || (cfg.standby_cluster.is_none() && super::lease::holds_lock(obs))
        }
    }
}

/// What a member about to lead does about its watchdog this step.
pub(super) enum Activation {
    /// Ask the runtime to arm it (the query).
    Ask(Action),
    /// Armed, off, or not required: go on.
    Proceed,
    /// `mode: required` and the activation failed: do not lead.
    Failed,
}

/// Where a member about to lead (or keep leading) stands with its watchdog: arm it when it is
/// not armed and the cluster is not paused, then go on unless it is required and failed.
pub(super) fn activation(obs: &Observation, cfg: &HaConfig) -> Activation {
    if cfg.watchdog.mode == WatchdogMode::Off || obs.paused || obs.watchdog.armed {
        return Activation::Proceed;
    }
    match obs.cycle.watchdog {
        None => Activation::Ask(Action::ActivateWatchdog {
            timeout: cfg.watchdog.timeout,
        }),
        Some(false) if cfg.watchdog.mode == WatchdogMode::Required => Activation::Failed,
        Some(_) => Activation::Proceed,
    }
}

/// The slack Patroni logs on activation: `timeout - loop_wait`, in whole seconds (negative
/// when the timeout is too short).
pub fn timing_slack(cfg: &HaConfig) -> i64 {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    secs(cfg.watchdog.timeout) - secs(cfg.loop_wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_ttl_less_the_margin_or_half_the_ttl() {
        let ttl = Duration::from_secs(30);
        assert_eq!(WatchdogPolicy::timeout_for(ttl, 5), Duration::from_secs(25));
        assert_eq!(
            WatchdogPolicy::timeout_for(ttl, -1),
            Duration::from_secs(15)
        );
        assert_eq!(WatchdogPolicy::timeout_for(ttl, 40), Duration::ZERO);
    }
}
