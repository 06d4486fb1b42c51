//! The leader's base backups (`backup:` section, docs/backups.md): a task beside the HA loop
//! that runs `backup.command` on the cron `backup.schedule` and on `POST /backup`, only while
//! this member holds the leader lock and runs as a primary. It never blocks the HA loop: it reads
//! the loop's published snapshot, and a backup that outlives the leadership is stopped.
//!
//! Why here and not a CronJob: a base backup reads the primary's data directory (pgBackRest and
//! Barman Cloud both run beside the postmaster), and the agent is the one that knows, from the
//! lock it holds, that it is the primary. A new leader schedules from the time it took over, so a
//! backup the old leader missed while failing over is taken at the next scheduled time.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use patroni_api::{BackupRun, BackupStart, BackupStatus};
use patroni_config::Config;
use patroni_config::model::backup::BackupConfig;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::api_backend::Shared;

/// Lines of a backup's output kept for `GET /backup`.
const OUTPUT_LINES: usize = 20;
/// How often the task looks at the leadership when nothing else wakes it.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a stopped backup may take to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The schedule's state, shared by the task and the REST API.
pub struct BackupJob {
    config: BackupConfig,
    cron: Option<croner::Cron>,
    state: Mutex<JobState>,
    wake: Notify,
}

#[derive(Default)]
struct JobState {
    status: BackupStatus,
    /// `POST /backup` asked for one; the task starts it.
    requested: bool,
}

// === impl BackupJob ===

impl BackupJob {
    /// The job of `config`'s `backup` section; `None` without one.
    pub fn from_config(config: &Config) -> Option<Arc<Self>> {
        let backup = config.backup.clone()?;
        // Validated with the configuration.
        let cron = backup
            .schedule
            .as_deref()
            .and_then(|s| croner::Cron::from_str(s).ok());
        let status = BackupStatus {
            schedule: backup.schedule.clone(),
            command: backup.command.clone(),
            ..BackupStatus::default()
        };
        Some(Arc::new(Self {
            config: backup,
            cron,
            state: Mutex::new(JobState {
                status,
                requested: false,
            }),
            wake: Notify::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state for `GET /backup`.
    pub fn status(&self) -> BackupStatus {
        self.lock().status.clone()
    }

    /// `POST /backup`: asks the task for a backup now, when this member leads.
    pub fn request(&self, leads: bool) -> BackupStart {
        let mut state = self.lock();
        if let Some(since) = state.status.running_since {
            return BackupStart::Running(since);
        }
        if !leads {
            return BackupStart::NotLeader;
        }
        state.requested = true;
        state.status.running_since = Some(Timestamp::now());
        drop(state);
        self.wake.notify_one();
        BackupStart::Started
    }

    /// The next scheduled time after `now`.
    fn next_after(&self, now: Timestamp) -> Option<Timestamp> {
        let zoned = now.to_zoned(jiff::tz::TimeZone::UTC);
        let next = self.cron.as_ref()?.find_next_occurrence(&zoned, false).ok()?;
        Some(next.timestamp())
    }
}

/// What the task needs to start a backup.
pub struct Launch {
    /// Variables set for the command: how to reach the local server, the data directory, the
    /// PostgreSQL programs.
    pub env: Vec<(String, String)>,
}

impl Launch {
    /// The command's environment from the agent's configuration (a variable the agent's own
    /// environment has wins).
    pub fn from_config(config: &Config) -> Self {
        let pg = &config.postgresql;
        let local = patroni_postgres::local_address(pg);
        let mut env: Vec<(String, String)> = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v
                && std::env::var_os(k).is_none()
            {
                env.push((k.to_owned(), v));
            }
        };
        add("PGHOST", local.get("host").map(str::to_owned));
        add("PGPORT", local.get("port").map(str::to_owned));
        add("PGUSER", Some(pg.authentication.superuser.username.clone()));
        add("PGPASSWORD", pg.authentication.superuser.password.clone());
        add("PGDATABASE", Some(pg.database.clone()));
        add(
            "PGBACKUP_DATA_DIR",
            Some(pg.data_dir.display().to_string()),
        );
        add(
            "PGBACKUP_BIN_DIR",
            pg.bin_dir.as_ref().map(|d| d.display().to_string()),
        );
        Self { env }
    }
}

/// A backup being run.
struct Running {
    child: Child,
    started: Timestamp,
    trigger: &'static str,
    output: Arc<Mutex<VecDeque<String>>>,
}

/// Runs the schedule until `cancel`; `shared` is the HA loop's published snapshot.
pub async fn run(
    job: Arc<BackupJob>,
    launch: Launch,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut running: Option<Running> = None;
    loop {
        let now = Timestamp::now();
        let ha = shared.get().ha;
        let leads = ha.is_leader && ha.running_as_primary;
        let (due, requested) = {
            let mut state = job.lock();
            if !leads {
                state.status.next_run = None;
            } else if state.status.next_run.is_none() {
                state.status.next_run = job.next_after(now);
            }
            let due = state.status.next_run.is_some_and(|t| t <= now);
            if due {
                state.status.next_run = job.next_after(now);
            }
            (due, std::mem::take(&mut state.requested))
        };
        if !leads {
            if let Some(r) = running.take() {
                tracing::warn!("stopping the base backup: this member no longer leads");
                let run = stop(r).await;
                finish(&job, run);
            } else if requested {
                job.lock().status.running_since = None;
            }
        } else if (due || requested) && running.is_none() {
            let trigger = if requested { "api" } else { "schedule" };
            match start(&job.config.command, &launch, trigger) {
                Ok(r) => {
                    tracing::info!(command = %job.config.command, trigger, "base backup started");
                    job.lock().status.running_since = Some(r.started);
                    running = Some(r);
                }
                Err(e) => {
                    tracing::error!("failed to start the base backup: {e:#}");
                    finish(
                        &job,
                        BackupRun {
                            started: now,
                            finished: Timestamp::now(),
                            success: false,
                            exit_code: None,
                            trigger: trigger.to_owned(),
                            output: vec![format!("{e:#}")],
                        },
                    );
                }
            }
        }
        let sleep = job
            .lock()
            .status
            .next_run
            .and_then(|t| Duration::try_from(t.duration_since(Timestamp::now())).ok())
            .map_or(CHECK_EVERY, |d| d.min(CHECK_EVERY));
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                if let Some(r) = running.take() {
                    let run = stop(r).await;
                    finish(&job, run);
                }
                return;
            }
            status = async {
                match running.as_mut() {
                    Some(r) => r.child.wait().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(r) = running.take() {
                    let code = status.ok().and_then(|s| s.code());
                    let run = ended(r, code);
                    if run.success {
                        tracing::info!(seconds = run.finished.duration_since(run.started).as_secs_f64(), "base backup finished");
                    } else {
                        tracing::error!(exit_code = ?code, output = %run.output.join(" | "), "base backup failed");
                    }
                    finish(&job, run);
                }
            }
            () = job.wake.notified() => {}
            () = tokio::time::sleep(sleep) => {}
        }
    }
}

fn start(command: &str, launch: &Launch, trigger: &'static str) -> anyhow::Result<Running> {
    use anyhow::Context as _;
    let words = shlex::split(command).context("split backup.command")?;
    let (program, args) = words.split_first().context("backup.command is empty")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("run {program}"))?;
    let output = Arc::new(Mutex::new(VecDeque::with_capacity(OUTPUT_LINES)));
    if let Some(out) = child.stdout.take() {
        tokio::spawn(keep_lines(out, Arc::clone(&output)));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(keep_lines(err, Arc::clone(&output)));
    }
    Ok(Running {
        child,
        started: Timestamp::now(),
        trigger,
        output,
    })
}

/// Logs each line of the backup's output and keeps the last [`OUTPUT_LINES`].
async fn keep_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    keep: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "patroni::backup", "{line}");
        let mut keep = keep.lock().unwrap_or_else(PoisonError::into_inner);
        if keep.len() == OUTPUT_LINES {
            keep.pop_front();
        }
        keep.push_back(line);
    }
}

/// SIGTERM to the backup's process group, SIGKILL after [`STOP_GRACE`].
async fn stop(mut r: Running) -> BackupRun {
    if let Some(pid) = r.child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let code = match tokio::time::timeout(STOP_GRACE, r.child.wait()).await {
        Ok(status) => status.ok().and_then(|s| s.code()),
        Err(_) => {
            let _ = r.child.kill().await;
            None
        }
    };
    let mut run = ended(r, code);
    run.success = false;
    run
}

fn ended(r: Running, code: Option<i32>) -> BackupRun {
    let output = r
        .output
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    BackupRun {
        started: r.started,
        finished: Timestamp::now(),
        success: code == Some(0),
        exit_code: code,
        trigger: r.trigger.to_owned(),
        output,
    }
}

fn finish(job: &BackupJob, run: BackupRun) {
    let mut state = job.lock();
    state.status.running_since = None;
    if run.success {
        state.status.succeeded += 1;
        state.status.last_success = Some(run.clone());
    } else {
        state.status.failed += 1;
    }
    state.status.last = Some(run);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(schedule: Option<&str>) -> BackupJob {
        BackupJob {
            config: BackupConfig {
                schedule: schedule.map(str::to_owned),
                command: "true".into(),
            },
            cron: schedule.map(|s| croner::Cron::from_str(s).unwrap()),
            state: Mutex::new(JobState::default()),
            wake: Notify::new(),
        }
    }

    #[test]
    fn next_run_follows_the_cron_pattern_in_utc() {
        let j = job(Some("00 01 * * *"));
        let now: Timestamp = "2026-12-07T02:30:00Z".parse().unwrap();
        assert_eq!(
            j.next_after(now),
            Some("2026-12-08T01:00:00Z".parse().unwrap())
        );
        assert_eq!(job(None).next_after(now), None);
    }

    #[test]
    fn requests_only_on_the_leader_and_one_at_a_time() {
        let j = job(None);
        assert_eq!(j.request(false), BackupStart::NotLeader);
        assert_eq!(j.request(true), BackupStart::Started);
        assert!(matches!(j.request(true), BackupStart::Running(_)));
    }
}
