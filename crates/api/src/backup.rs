//! Scheduled base backups as the API shows them (patroni-rs only, docs/backups.md): the
//! state behind `GET /backup`, the answers of `POST /backup`, and the `patroni_backup_*`
//! metrics.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The backup schedule's state on this member.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// The cron pattern, if backups are scheduled.
    pub schedule: Option<String>,
    /// The command run.
    pub command: String,
    /// When the next scheduled backup starts; `None` unless this member is the leader.
    pub next_run: Option<Timestamp>,
    /// When the running backup started.
    pub running_since: Option<Timestamp>,
    /// The last finished backup.
    pub last: Option<BackupRun>,
    /// The last one that succeeded.
    pub last_success: Option<BackupRun>,
    /// Backups that succeeded since the agent started.
    pub succeeded: u64,
    /// Backups that failed since the agent started.
    pub failed: u64,
}

/// One finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRun {
    /// When it started.
    pub started: Timestamp,
    /// When it ended.
    pub finished: Timestamp,
    /// Whether the command exited 0.
    pub success: bool,
    /// Its exit code; `None` when killed by a signal (or not started).
    pub exit_code: Option<i32>,
    /// Why it was started: `schedule` or `api`.
    pub trigger: String,
    /// Its last lines of output.
    pub output: Vec<String>,
}

/// The answer to `POST /backup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupStart {
    /// Started now.
    Started,
    /// Only the leader takes base backups.
    NotLeader,
    /// One is running already (since when).
    Running(Timestamp),
    /// No `backup` section in the configuration.
    NotConfigured,
}

/// The `patroni_backup_*` metrics (appended to `/metrics` when backups are configured).
pub(crate) fn render(status: &BackupStatus, labels: &str) -> String {
    let epoch = |t: Option<Timestamp>| t.map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0);
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}\n"
        ));
    };
    gauge(
        "patroni_backup_running",
        "Value is 1 if a base backup runs on this node, 0 otherwise.",
        u8::from(status.running_since.is_some()).to_string(),
    );
    gauge(
        "patroni_backup_last_success_timestamp",
        "Epoch seconds when the last successful base backup finished, 0 if none since start.",
        epoch(status.last_success.as_ref().map(|r| r.finished)).to_string(),
    );
    gauge(
        "patroni_backup_last_duration_seconds",
        "Seconds the last finished base backup took, 0 if none since start.",
        status
            .last
            .as_ref()
            .map_or(0.0, |r| {
                r.finished.duration_since(r.started).as_secs_f64()
            })
            .to_string(),
    );
    gauge(
        "patroni_backup_last_failed",
        "Value is 1 if the last finished base backup failed, 0 otherwise.",
        u8::from(status.last.as_ref().is_some_and(|r| !r.success)).to_string(),
    );
    gauge(
        "patroni_backup_next_run_timestamp",
        "Epoch seconds of the next scheduled base backup, 0 unless this node is the leader with a schedule.",
        epoch(status.next_run).to_string(),
    );
    out.push_str(&format!(
        "# HELP patroni_backup_succeeded_total Base backups that succeeded on this node since the agent started.\n# TYPE patroni_backup_succeeded_total counter\npatroni_backup_succeeded_total{labels} {}\n",
        status.succeeded
    ));
    out.push_str(&format!(
        "# HELP patroni_backup_failed_total Base backups that failed on this node since the agent started.\n# TYPE patroni_backup_failed_total counter\npatroni_backup_failed_total{labels} {}\n",
        status.failed
    ));
    out
}
