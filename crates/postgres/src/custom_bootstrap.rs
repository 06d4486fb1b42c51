//! Patroni's custom bootstrap (`bootstrap.method: <name>` with a `<name>.command`): a user's
//! command creates the data directory of the new cluster (typically a restore from a backup),
//! instead of `initdb`. Never falls back to `initdb`: a failed command fails the bootstrap.
//!
//! The command is shell-split and run as the agent's user with, unless `no_params` is true,
//! `--scope=<scope> --datadir=<data_dir>`, then `--<key>=<value>` for every other key of the
//! method's section except `command`, `no_params`, `keep_existing_recovery_conf`,
//! `recovery_conf`, `scope` and `datadir` (Patroni 4.1.5's `reserved_args`). Afterwards a `promote`
//! trigger file is removed, and the recovery configuration is: `recovery_conf` when given,
//! the one the command left when `keep_existing_recovery_conf` is true, else none.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::launcher::Programs;
use crate::replica::{python_str, truthy};
use crate::tool::{self, ToolError};

/// Keys of the method's section that are not passed to the command.
const RESERVED: [&str; 6] = [
    "command",
    "no_params",
    "keep_existing_recovery_conf",
    "recovery_conf",
    "scope",
    "datadir",
];

/// What the method's section asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomBootstrap {
    /// The command, shell-split.
    pub command: Vec<String>,
    /// The arguments added to it.
    pub args: Vec<String>,
    /// `recovery_conf`, rendered as PostgreSQL reads the values.
    pub recovery_conf: Option<BTreeMap<String, String>>,
    /// `keep_existing_recovery_conf`.
    pub keep_existing_recovery_conf: bool,
}

/// The custom bootstrap could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum CustomBootstrapError {
    /// `command` is missing or cannot be shell-split.
    #[error("bootstrap method command {0:?} cannot be split into words")]
    BadCommand(String),
    /// The command failed.
    #[error("custom bootstrap script failed")]
    Script(#[source] ToolError),
    /// The trigger file could not be removed.
    #[error("remove the promote trigger file")]
    Trigger(#[source] std::io::Error),
}

// === impl CustomBootstrap ===

impl CustomBootstrap {
    /// Reads the method's section. Pure.
    ///
    /// # Errors
    /// [`CustomBootstrapError::BadCommand`] when `command` is missing or cannot be split.
    pub fn from_section(
        section: &Map<String, Value>,
        scope: &str,
        data_dir: &Path,
    ) -> Result<Self, CustomBootstrapError> {
        let text = section
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let command = shlex::split(text)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| CustomBootstrapError::BadCommand(text.to_owned()))?;
        let mut args = Vec::new();
        if !section.get("no_params").is_some_and(truthy) {
            args.push(format!("--scope={scope}"));
            args.push(format!("--datadir={}", data_dir.display()));
        }
        for (key, value) in section {
            if !RESERVED.contains(&key.as_str()) {
                args.push(format!("--{key}={}", python_str(value)));
            }
        }
        let recovery_conf = section
            .get("recovery_conf")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), python_str(v))).collect());
        Ok(Self {
            command,
            args,
            recovery_conf,
            keep_existing_recovery_conf: section
                .get("keep_existing_recovery_conf")
                .is_some_and(truthy),
        })
    }

    /// Runs the command, then removes a `promote` trigger file from `data_dir` (a restored
    /// data directory must not promote before the agent decides).
    ///
    /// # Errors
    /// The command fails, or the trigger file cannot be removed.
    pub async fn run(
        &self,
        programs: &Programs,
        data_dir: &Path,
    ) -> Result<(), CustomBootstrapError> {
        let (program, rest) = self
            .command
            .split_first()
            .ok_or_else(|| CustomBootstrapError::BadCommand(String::new()))?;
        let mut cmd = programs.launcher().command(program);
        cmd.args(rest).args(&self.args);
        tracing::info!(command = ?self.command, "Running custom bootstrap script");
        tool::run(cmd, program.into())
            .await
            .map_err(CustomBootstrapError::Script)?
            .log_lines(self.command.first().map_or("bootstrap", String::as_str));
        match std::fs::remove_file(data_dir.join("promote")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CustomBootstrapError::Trigger(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(json: Value) -> Map<String, Value> {
        json.as_object().cloned().expect("object")
    }

    /// Patroni's arguments: scope and data directory, then every other key but the reserved
    /// ones (the command itself included), Python's spelling of values.
    #[test]
    fn arguments_as_patroni_passes_them() {
        let s = section(serde_json::json!({
            "command": "/usr/bin/restore --from 's3://b/x'",
            "target_time": "2026-12-06 10:00:00",
            "verbose": true,
            "keep_existing_recovery_conf": true,
            "recovery_conf": {"recovery_target_action": "promote", "recovery_target_timeline": "latest"},
        }));
        let cb = CustomBootstrap::from_section(&s, "demo", Path::new("/data/pg")).expect("ok");
        assert_eq!(cb.command, ["/usr/bin/restore", "--from", "s3://b/x"]);
        assert_eq!(
            cb.args,
            [
                "--scope=demo",
                "--datadir=/data/pg",
                "--target_time=2026-12-06 10:00:00",
                "--verbose=True",
            ]
        );
        assert!(cb.keep_existing_recovery_conf);
        assert_eq!(
            cb.recovery_conf
                .as_ref()
                .and_then(|r| r.get("recovery_target_action"))
                .map(String::as_str),
            Some("promote")
        );
    }

    /// `no_params: true` leaves out scope and data directory.
    #[test]
    fn no_params_leaves_out_scope_and_datadir() {
        let s = section(serde_json::json!({"command": "restore", "no_params": true}));
        let cb = CustomBootstrap::from_section(&s, "demo", Path::new("/d")).expect("ok");
        assert!(cb.args.is_empty(), "{:?}", cb.args);
        assert_eq!(cb.recovery_conf, None);
    }

    /// An unsplittable command is refused.
    #[test]
    fn bad_commands_are_refused() {
        for command in ["restore 'unterminated", ""] {
            let s = section(serde_json::json!({ "command": command }));
            assert!(CustomBootstrap::from_section(&s, "demo", Path::new("/d")).is_err());
        }
    }
}
