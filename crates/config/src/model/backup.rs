//! The `backup:` section (patroni-rs only; Patroni has no scheduler): the leader's agent runs
//! `command` on the cron `schedule`, and on `POST /backup` (docs/backups.md). Unknown keys are
//! refused: the section is ours, so a typo cannot be a setting of a newer Patroni.

use std::str::FromStr;

use crate::validate::{Checker, Node, Presence};

/// The command run when none is given.
pub const DEFAULT_COMMAND: &str = "patroni-backup backup";

const KNOWN_KEYS: [&str; 2] = ["schedule", "command"];

/// Typed `backup:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// A five-field cron pattern (UTC); `None`: only on request (`POST /backup`).
    pub schedule: Option<String>,
    /// The command (split as a shell would, run without a shell).
    pub command: String,
}

// === impl BackupConfig ===

impl BackupConfig {
    /// Reads the section at `node`; `None` when it is absent.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>) -> Option<Self> {
        if !node.exists() {
            return None;
        }
        for key in node.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                c.error(
                    node.path_of(key),
                    "unknown setting (backup takes schedule and command)",
                );
            }
        }
        let schedule = c
            .string(node, "schedule", Presence::Optional)
            .filter(|s| !s.trim().is_empty());
        if let Some(s) = &schedule
            && let Err(e) = croner::Cron::from_str(s)
        {
            c.error(
                node.path_of("schedule"),
                format!("{s:?} is not a cron pattern (minute hour day month weekday): {e}"),
            );
        }
        let command = c.string_or(node, "command", DEFAULT_COMMAND);
        if shlex::split(&command).is_none_or(|words| words.is_empty()) {
            c.error(
                node.path_of("command"),
                format!("{command:?} is not a command line"),
            );
        }
        Some(Self { schedule, command })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::model::Config;

    fn with_backup(backup: serde_json::Value) -> Result<Config, String> {
        let raw = json!({
            "name": "m1", "scope": "s",
            "restapi": {"listen": "127.0.0.1:8008", "connect_address": "127.0.0.1:8008"},
            "postgresql": {"data_dir": "/tmp/d", "listen": "127.0.0.1:5432",
                           "connect_address": "127.0.0.1:5432",
                           "authentication": {"superuser": {"username": "postgres"},
                                              "replication": {"username": "rep"}}},
            "etcd3": {"host": "127.0.0.1:2379"},
            "backup": backup,
        });
        Config::from_value(&raw)
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn schedule_and_default_command() {
        let c = with_backup(json!({"schedule": "00 01 * * *"})).unwrap();
        let b = c.backup.unwrap();
        assert_eq!(b.schedule.as_deref(), Some("00 01 * * *"));
        assert_eq!(b.command, super::DEFAULT_COMMAND);
    }

    #[test]
    fn problems_name_the_setting() {
        let e = with_backup(json!({"schedule": "every day"})).unwrap_err();
        assert!(e.contains("backup.schedule"), "{e}");
        let e = with_backup(json!({"schedul": "* * * * *"})).unwrap_err();
        assert!(e.contains("backup.schedul"), "{e}");
        let e = with_backup(json!({"command": "'unclosed"})).unwrap_err();
        assert!(e.contains("backup.command"), "{e}");
    }
}
