//! The `watchdog:` section: whether and how Patroni arms a Linux watchdog device so that a hung
//! primary is reset before another member can take over.

use std::path::PathBuf;

use serde_json::Value;

use crate::validate::{Checker, IntRule, Node, Presence};

/// Default watchdog device.
pub const DEFAULT_DEVICE: &str = "/dev/watchdog";
/// Default seconds between the watchdog firing and the leader key expiring.
pub const DEFAULT_SAFETY_MARGIN: i64 = 5;

/// Typed `watchdog:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// Whether the watchdog is used.
    pub mode: WatchdogMode,
    /// Device path; default [`DEFAULT_DEVICE`].
    pub device: PathBuf,
    /// Seconds of margin before the leader key expires; -1 means `ttl / 2`.
    pub safety_margin: i64,
    /// Driver name; only `default` (the Linux watchdog device) is accepted.
    pub driver: String,
}

/// `watchdog.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WatchdogMode {
    /// Never use a watchdog (`off`, `disable`, `disabled`, `false`).
    Off,
    /// Use one when available (`automatic`, `auto`); the default.
    #[default]
    Automatic,
    /// Refuse to become leader without one (`required`, `require`).
    Required,
}

// === impl WatchdogConfig ===

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            mode: WatchdogMode::Automatic,
            device: PathBuf::from(DEFAULT_DEVICE),
            safety_margin: DEFAULT_SAFETY_MARGIN,
            driver: "default".to_owned(),
        }
    }
}

impl WatchdogConfig {
    /// Reads the optional section at `node`.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>) -> Self {
        let d = Self::default();
        Self {
            mode: read_mode(c, node).unwrap_or(d.mode),
            device: c
                .string(node, "device", Presence::Optional)
                .map_or(d.device, PathBuf::from),
            safety_margin: c.int_or(
                node,
                "safety_margin",
                IntRule::at_least(-1),
                d.safety_margin,
            ),
            driver: read_driver(c, node, &d.driver),
        }
    }
}

/// `watchdog.driver`: only Patroni's `default` (the Linux watchdog device at `device`) is
/// supported; Patroni's `testing` driver (a named pipe) and anything else are refused by name.
fn read_driver(c: &mut Checker, node: &Node<'_>, default: &str) -> String {
    let driver = c.string_or(node, "driver", default);
    if driver != default {
        c.error(
            node.path_of("driver"),
            format!(
                "expected \"default\" (the Linux watchdog device), got {}",
                Value::String(driver.clone())
            ),
        );
    }
    driver
}

/// Patroni's `parse_mode` spellings; `false` (YAML 1.1 `off`) means off.
fn read_mode(c: &mut Checker, node: &Node<'_>) -> Option<WatchdogMode> {
    let value = node.get("mode")?;
    let mode = match value {
        Value::Bool(false) => Some(WatchdogMode::Off),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "off" | "disable" | "disabled" | "false" => Some(WatchdogMode::Off),
            "auto" | "automatic" => Some(WatchdogMode::Automatic),
            "require" | "required" => Some(WatchdogMode::Required),
            _ => None,
        },
        _ => None,
    };
    if mode.is_none() {
        c.error(
            node.path_of("mode"),
            format!("expected one of \"off\", \"automatic\", \"required\", got {value}"),
        );
    }
    mode
}
