//! The `log:` section. Levels use Patroni's (Python logging) names; the binary maps them onto
//! `tracing` levels.

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::Value;

use crate::validate::{Checker, IntRule, Node, Presence};

/// Default size in bytes at which the log file rotates.
pub const DEFAULT_FILE_SIZE: u64 = 25_000_000;
/// Default number of rotated log files kept.
pub const DEFAULT_FILE_NUM: u32 = 4;

/// Typed `log:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Plain text or JSON lines.
    pub format_type: LogFormatType,
    /// Minimum level logged; default `INFO`.
    pub level: LogLevel,
    /// Python `logging` format string, or for JSON a list of fields; as written.
    pub format: Option<Value>,
    /// Date format for timestamps, if set.
    pub dateformat: Option<String>,
    /// Fields added to every JSON record.
    pub static_fields: BTreeMap<String, Value>,
    /// Directory for `patroni.log`; `None` logs to stderr.
    pub dir: Option<PathBuf>,
    /// Rotation size in bytes.
    pub file_size: u64,
    /// Rotated files kept.
    pub file_num: u32,
    /// Log file permissions (0-0o777), if set.
    pub mode: Option<u32>,
    /// Per-module levels (`{patroni.api: DEBUG}`).
    pub loggers: BTreeMap<String, String>,
    /// Log only the first of identical consecutive heartbeat messages.
    pub deduplicate_heartbeat_logs: bool,
}

/// `log.type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormatType {
    /// Human-readable lines (default).
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// A Python logging level name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `DEBUG`.
    Debug,
    /// `INFO`.
    Info,
    /// `WARNING` (or `WARN`).
    Warning,
    /// `ERROR`.
    Error,
    /// `CRITICAL` (or `FATAL`).
    Critical,
}

const LEVELS: [(&str, LogLevel); 7] = [
    ("DEBUG", LogLevel::Debug),
    ("INFO", LogLevel::Info),
    ("WARN", LogLevel::Warning),
    ("WARNING", LogLevel::Warning),
    ("ERROR", LogLevel::Error),
    ("FATAL", LogLevel::Critical),
    ("CRITICAL", LogLevel::Critical),
];

// === impl LogConfig ===

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format_type: LogFormatType::Plain,
            level: LogLevel::Info,
            format: None,
            dateformat: None,
            static_fields: BTreeMap::new(),
            dir: None,
            file_size: DEFAULT_FILE_SIZE,
            file_num: DEFAULT_FILE_NUM,
            mode: None,
            loggers: BTreeMap::new(),
            deduplicate_heartbeat_logs: false,
        }
    }
}

impl LogConfig {
    /// Reads the optional section at `node`.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>) -> Self {
        let d = Self::default();
        let uint = |c: &mut Checker, key, default: u64| {
            c.int(node, key, Presence::Optional, IntRule::at_least(0))
                .map_or(default, |n| n.unsigned_abs())
        };
        // Validated as Patroni validates them, then said to have no effect: Python's logging
        // queue and traceback switch have no counterpart here.
        if node.has("traceback_level") {
            c.choice(
                node,
                "traceback_level",
                &[("DEBUG", LogLevel::Debug), ("ERROR", LogLevel::Error)],
                false,
            );
            c.warn(
                node.path_of("traceback_level"),
                "has no effect: patroni-rs logs every error with its whole cause chain on one line",
            );
        }
        if node.has("max_queue_size") {
            uint(c, "max_queue_size", 0);
            c.warn(
                node.path_of("max_queue_size"),
                "has no effect: patroni-rs writes log records synchronously and never drops one",
            );
        }
        let format = node.get("format").cloned();
        if let Some(format) = &format {
            check_format(c, &node.path_of("format"), format);
        }
        Self {
            format_type: c
                .choice(
                    node,
                    "type",
                    &[
                        ("plain", LogFormatType::Plain),
                        ("json", LogFormatType::Json),
                    ],
                    true,
                )
                .unwrap_or_default(),
            level: c.choice(node, "level", &LEVELS, true).unwrap_or(d.level),
            format,
            dateformat: c.string(node, "dateformat", Presence::Optional),
            static_fields: c.map(node, "static_fields").unwrap_or_default(),
            dir: c.string(node, "dir", Presence::Optional).map(PathBuf::from),
            file_size: uint(c, "file_size", d.file_size),
            file_num: u32::try_from(uint(c, "file_num", d.file_num.into())).unwrap_or(d.file_num),
            mode: c
                .int(node, "mode", Presence::Optional, IntRule::between(0, 0o777))
                .and_then(|n| u32::try_from(n).ok()),
            loggers: c.string_map(node, "loggers").unwrap_or_default(),
            deduplicate_heartbeat_logs: c.boolean_or(node, "deduplicate_heartbeat_logs", false),
        }
    }
}

/// Patroni's `validate_log_format`: a string, or a non-empty list of field names and
/// single-entry `{field: rename}` mappings.
fn check_format(c: &mut Checker, path: &str, format: &Value) {
    let ok = match format {
        Value::String(_) => true,
        Value::Array(items) => {
            !items.is_empty()
                && items.iter().all(|i| match i {
                    Value::String(_) => true,
                    Value::Object(m) => m.len() == 1 && m.values().all(Value::is_string),
                    _ => false,
                })
        }
        _ => false,
    };
    if !ok {
        c.error(
            path,
            format!(
                "expected a format string or a non-empty list of field names and {{field: rename}} \
                 mappings, got {format}"
            ),
        );
    }
}
