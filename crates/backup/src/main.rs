//! `patroni-backup`: WAL archiving, base backups and restores through pgBackRest or Barman
//! Cloud, called from Patroni's hooks (docs/backups.md). Settings come from `PGBACKUP_*`
//! (not `PATRONI_*`: Patroni strips those from what PostgreSQL and its commands inherit).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use patroni_backup::catalog::{self, BackupInfo};
use patroni_backup::rules::{self, LeaderPosition, Target};
use patroni_backup::settings::Settings;
use patroni_backup::tool::{Context, Credentials, LocalServer, Step};
use patroni_backup::{Invocation, ToolKind};
use patroni_postgres::{Lsn, PostmasterPid};

#[derive(Parser)]
#[command(
    name = "patroni-backup",
    version,
    about = "WAL archiving, base backups and restores for patroni-rs through pgBackRest or Barman Cloud (settings: PGBACKUP_*)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Archive one WAL file (archive_command = 'patroni-backup wal-push --tool=pgbackrest "%p"').
    WalPush {
        /// The tool PGBACKUP_TOOL must name (pgBackRest refuses a base backup unless the
        /// archive_command names it, so it is written there).
        #[arg(long)]
        tool: Option<String>,
        /// The file, relative to the data directory.
        path: String,
    },
    /// Fetch one WAL file (restore_command = 'patroni-backup wal-fetch "%f" "%p"'); exits 1
    /// when the archive does not have it.
    WalFetch {
        /// The WAL file name.
        name: String,
        /// Where to write it.
        dest: String,
    },
    /// A full base backup of the local primary, then retention.
    Backup,
    /// The complete backups, oldest first.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A `create_replica_methods` entry: restore the latest backup into the data directory
    /// unless the WAL written since it exceeds a threshold (Spilo's rule).
    RestoreReplica(ReplicaArgs),
    /// A custom bootstrap method: restore the newest backup before the recovery target.
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
struct ReplicaArgs {
    /// Cluster name (Patroni passes it).
    #[arg(long)]
    scope: Option<String>,
    /// Role (Patroni passes `replica`).
    #[arg(long)]
    role: Option<String>,
    /// Data directory to fill.
    #[arg(long)]
    datadir: PathBuf,
    /// The leader's connection string (Patroni passes it; absent without a leader).
    #[arg(long)]
    connstring: Option<String>,
    /// WAL since the backup (MB) above which the backup is not used.
    #[arg(long, alias = "threshold_megabytes", default_value_t = rules::DEFAULT_THRESHOLD_MEGABYTES)]
    threshold_megabytes: u64,
    /// WAL since the backup, in % of the cluster's size, above which the backup is not used.
    #[arg(long, alias = "threshold_backup_size_percentage", default_value_t = rules::DEFAULT_THRESHOLD_PERCENTAGE)]
    threshold_backup_size_percentage: u64,
    /// Attempts after the first.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// The method may run without a leader (Patroni's `no_leader`; Spilo's `no_master`).
    /// Patroni passes the section's value as Python prints it (`--no_leader=True`, or `False`
    /// when the section says false); a bare `--no-leader` means true.
    #[arg(
        long,
        alias = "no_leader",
        alias = "no-master",
        alias = "no_master",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = parse_flag
    )]
    no_leader: Option<bool>,
    /// Patroni passes the method's `keep_data` too; it is Patroni's (whether it empties the
    /// directory first), so nothing here reads it.
    #[arg(long, alias = "keep_data", hide = true)]
    keep_data: Option<String>,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// Cluster name (Patroni passes it).
    #[arg(long)]
    scope: Option<String>,
    /// Data directory to fill.
    #[arg(long)]
    datadir: PathBuf,
    /// Restore the newest backup that finished before this time (RFC 3339, with a zone).
    #[arg(
        long,
        alias = "recovery_target_time",
        conflicts_with = "recovery_target_lsn"
    )]
    recovery_target_time: Option<String>,
    /// Restore the newest backup that ended at or before this WAL position.
    #[arg(long, alias = "recovery_target_lsn")]
    recovery_target_lsn: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("patroni-backup: failed to {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    let settings = Settings::read(|k| std::env::var(k).ok()).context("read the settings")?;
    let mut ctx = Context {
        credentials: credentials(),
        ..Context::default()
    };
    match cmd {
        Cmd::WalPush { tool, path } => {
            if let Some(tool) = tool
                && tool != settings.tool.as_str()
            {
                bail!(
                    "archive: --tool={tool} but PGBACKUP_TOOL is {}",
                    settings.tool.as_str()
                );
            }
            // PostgreSQL runs archive_command in the data directory.
            ctx.data_dir = data_dir(&settings);
            let step = Step::WalPush(&path);
            let status = run_step(&settings, step, &ctx)?;
            if status == Some(103) && settings.tool == ToolKind::PgBackRest {
                // No stanza yet (the first WAL before the first backup): create it from
                // pg_control, then push again.
                let mut init = invocation(&settings, Step::Init, &ctx)?;
                init.args.push("--no-online".into());
                check(
                    run_invocation(&init, &settings)?,
                    "create the pgBackRest stanza",
                )?;
                check(run_step(&settings, step, &ctx)?, "archive the WAL file")?;
            } else {
                check(status, "archive the WAL file")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::WalFetch { name, dest } => {
            ctx.data_dir = data_dir(&settings);
            Ok(
                match run_step(&settings, Step::WalFetch(&name, &dest), &ctx)? {
                    Some(0) => ExitCode::SUCCESS,
                    _ => ExitCode::FAILURE,
                },
            )
        }
        Cmd::Backup => backup(&settings, ctx),
        Cmd::List { json } => {
            let list = list(&settings, &ctx)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<28} {:<25} {:<25} {:<14} {:>14}",
                    "name", "start", "stop", "start_lsn", "size"
                );
                for b in list {
                    println!(
                        "{:<28} {:<25} {:<25} {:<14} {:>14}",
                        b.name,
                        b.start.to_string(),
                        b.stop.to_string(),
                        b.start_lsn.to_string(),
                        b.size.map(|s| s.to_string()).unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::RestoreReplica(args) => restore_replica(&settings, ctx, &args),
        Cmd::Restore(args) => restore(&settings, ctx, &args),
    }
}

fn backup(settings: &Settings, mut ctx: Context) -> anyhow::Result<ExitCode> {
    ctx.data_dir = data_dir(settings);
    ctx.local = local_server(ctx.data_dir.as_deref());
    if let Some(dir) = &ctx.data_dir
        && in_recovery(dir, &ctx.local)? == Some(true)
    {
        bail!("back up: the server is in recovery; base backups are taken on the primary");
    }
    if settings.tool == ToolKind::PgBackRest {
        check(
            run_step(settings, Step::Init, &ctx)?,
            "create the pgBackRest stanza",
        )?;
    }
    let started = std::time::SystemTime::now();
    check(
        run_step(settings, Step::Backup, &ctx)?,
        "take the base backup",
    )?;
    eprintln!(
        "patroni-backup: base backup taken in {:.1} s",
        started.elapsed().unwrap_or_default().as_secs_f64()
    );
    if let Some(inv) = settings.invocation(Step::Retention, &ctx) {
        check(run_invocation(&inv, settings)?, "remove old backups")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn restore_replica(
    settings: &Settings,
    mut ctx: Context,
    args: &ReplicaArgs,
) -> anyhow::Result<ExitCode> {
    ctx.data_dir = Some(args.datadir.clone());
    let mut attempt = 0;
    let latest = loop {
        match list(settings, &ctx) {
            Ok(list) if !list.is_empty() => break list.last().cloned(),
            Ok(_) if attempt >= args.retries => break None,
            Err(e) if attempt >= args.retries => return Err(e),
            _ => {}
        }
        attempt += 1;
        std::thread::sleep(Duration::from_secs(1));
    };
    let Some(latest) = latest else {
        eprintln!("patroni-backup: can not find any backups");
        return Ok(ExitCode::FAILURE);
    };
    let leader = match &args.connstring {
        Some(conn) => match leader_position(conn, latest.start_lsn, &args.datadir, args.retries) {
            Ok(p) => Some(p),
            Err(e) if args.no_leader == Some(true) => {
                eprintln!("patroni-backup: leader not reachable ({e:#}); restoring anyway");
                None
            }
            Err(e) => return Err(e.context("reach the leader")),
        },
        None if args.no_leader == Some(true) => None,
        None => bail!("restore a replica: no --connstring and no --no-leader"),
    };
    if let Some(p) = leader {
        eprintln!(
            "patroni-backup: cluster size {} bytes, WAL since backup {} bytes",
            p.cluster_size, p.wal_since_backup
        );
    }
    if let Err(refusal) = rules::replica_from_backup(
        leader,
        args.threshold_megabytes,
        args.threshold_backup_size_percentage,
    ) {
        eprintln!("patroni-backup: {refusal}");
        return Ok(ExitCode::FAILURE);
    }
    restore_into(settings, &ctx, &latest, args.retries)?;
    eprintln!(
        "patroni-backup: restored backup {} into {}",
        latest.name,
        args.datadir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn restore(settings: &Settings, mut ctx: Context, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    ctx.data_dir = Some(args.datadir.clone());
    let target = match (&args.recovery_target_time, &args.recovery_target_lsn) {
        (Some(t), _) => Target::Time(parse_time(t)?),
        (_, Some(l)) => Target::Lsn(
            l.parse::<Lsn>()
                .map_err(|_| anyhow::anyhow!("read --recovery-target-lsn: {l:?} is not an LSN"))?,
        ),
        _ => Target::Latest,
    };
    let list = list(settings, &ctx)?;
    let Some(chosen) = rules::choose(&list, target).cloned() else {
        bail!(
            "restore: no backup finished before {target:?} ({} backups in the repository)",
            list.len()
        );
    };
    restore_into(settings, &ctx, &chosen, 2)?;
    eprintln!(
        "patroni-backup: restored backup {} into {}",
        chosen.name,
        args.datadir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Restores `backup`, emptying the directory between attempts; then leaves the recovery mode to
/// Patroni (no recovery.signal) and makes sure pg_wal exists.
fn restore_into(
    settings: &Settings,
    ctx: &Context,
    backup: &BackupInfo,
    retries: u32,
) -> anyhow::Result<()> {
    let dir = ctx
        .data_dir
        .as_deref()
        .context("restore: no data directory")?;
    let mut attempt = 0;
    loop {
        let status = run_step(settings, Step::Restore(&backup.name), ctx)?;
        if status == Some(0) {
            break;
        }
        if attempt >= retries {
            check(status, "restore the backup")?;
        }
        attempt += 1;
        patroni_postgres::remove_contents(dir)
            .with_context(|| format!("empty {} after a failed restore", dir.display()))?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = std::fs::remove_file(dir.join("recovery.signal"));
    let wal = dir.join("pg_wal");
    if !wal.is_dir() {
        std::fs::create_dir(&wal).with_context(|| format!("create {}", wal.display()))?;
    }
    Ok(())
}

fn list(settings: &Settings, ctx: &Context) -> anyhow::Result<Vec<BackupInfo>> {
    let inv = invocation(settings, Step::List, ctx)?;
    let mut cmd = command(&inv, settings)?;
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", inv.program))?;
    if !out.status.success() {
        // Barman reports a missing server as an error; pgBackRest as an empty stanza.
        bail!(
            "list the backups: {} exited with {}",
            inv.program,
            out.status
        );
    }
    catalog::parse(settings.tool, &String::from_utf8_lossy(&out.stdout))
        .context("read the backup list")
}

/// Spilo's two queries, on the leader.
fn leader_position(
    conn: &str,
    backup_start: Lsn,
    data_dir: &Path,
    retries: u32,
) -> anyhow::Result<LeaderPosition> {
    let lsn = backup_start.to_string();
    let diff = format!(
        "SELECT CASE WHEN pg_is_in_recovery() THEN GREATEST(pg_wal_lsn_diff(COALESCE(\
         pg_last_wal_receive_lsn(), '0/0'), '{lsn}')::bigint, pg_wal_lsn_diff(\
         pg_last_wal_replay_lsn(), '{lsn}')::bigint) ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), \
         '{lsn}')::bigint END"
    );
    let size = "SELECT SUM(pg_catalog.pg_database_size(datname)) FROM pg_catalog.pg_database";
    let mut attempt = 0;
    loop {
        let got = psql(conn, &diff, data_dir)
            .and_then(|d| Ok((d, psql(conn, size, data_dir)?)))
            .and_then(|(d, s)| {
                Ok(LeaderPosition {
                    wal_since_backup: d.parse().with_context(|| format!("read {d:?}"))?,
                    cluster_size: s.parse().with_context(|| format!("read {s:?}"))?,
                })
            });
        match got {
            Ok(p) => return Ok(p),
            Err(e) if attempt >= retries => return Err(e),
            Err(_) => attempt += 1,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn psql(conn: &str, query: &str, data_dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(pg_program("psql", data_dir))
        .args(["-XAtq", "-d", conn, "-c", query])
        .env("PGOPTIONS", "-c search_path=pg_catalog")
        .stderr(Stdio::inherit())
        .output()
        .context("run psql")?;
    if !out.status.success() {
        bail!("query the leader: psql exited with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether the local server is in recovery; `None` when it does not run.
fn in_recovery(data_dir: &Path, local: &LocalServer) -> anyhow::Result<Option<bool>> {
    if local.port.is_none() {
        return Ok(None);
    }
    let mut conn = String::from("dbname=postgres");
    if let Some(h) = &local.host {
        conn.push_str(&format!(" host={h}"));
    }
    if let Some(p) = local.port {
        conn.push_str(&format!(" port={p}"));
    }
    if let Some(u) = &local.user {
        conn.push_str(&format!(" user={u}"));
    }
    let out = psql(&conn, "SELECT pg_catalog.pg_is_in_recovery()", data_dir)
        .context("ask the local server whether it is in recovery")?;
    Ok(Some(out == "t"))
}

/// A PostgreSQL program: `PGBACKUP_BIN_DIR`, else the Debian directory of the data
/// directory's major version, else `$PATH`.
fn pg_program(name: &str, data_dir: &Path) -> PathBuf {
    if let Ok(dir) = std::env::var("PGBACKUP_BIN_DIR")
        && !dir.is_empty()
    {
        return Path::new(&dir).join(name);
    }
    let version = std::fs::read_to_string(data_dir.join("PG_VERSION")).ok();
    let candidates = version
        .iter()
        .map(|v| format!("/usr/lib/postgresql/{}/bin/{name}", v.trim()))
        .chain(std::iter::once(format!(
            "/usr/lib/postgresql/15/bin/{name}"
        )));
    for c in candidates {
        if Path::new(&c).exists() {
            return c.into();
        }
    }
    name.into()
}

/// The data directory: the settings', else the current directory when it is one (PostgreSQL
/// runs archive and restore commands there).
fn data_dir(settings: &Settings) -> Option<PathBuf> {
    settings.data_dir.clone().or_else(|| {
        let cwd = std::env::current_dir().ok()?;
        cwd.join("PG_VERSION").is_file().then_some(cwd)
    })
}

/// How to reach the local server: a socket directory (`PGHOST` when it is one, else the running
/// postmaster's from postmaster.pid, else `PGHOST`), `PGPORT` else the postmaster's port,
/// `PGUSER`.
fn local_server(data_dir: Option<&Path>) -> LocalServer {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let pid = data_dir.and_then(|d| PostmasterPid::read(d).ok());
    let pid_socket = pid
        .as_ref()
        .and_then(|p| p.socket_dir.as_ref())
        .map(|d| d.display().to_string());
    LocalServer {
        host: env("PGHOST")
            .filter(|h| h.starts_with('/'))
            .or(pid_socket)
            .or_else(|| env("PGHOST")),
        port: env("PGPORT")
            .and_then(|p| p.parse().ok())
            .or(pid.as_ref().map(|p| p.port)),
        user: env("PGUSER"),
    }
}

fn credentials() -> Credentials {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Credentials {
        aws_key: env("AWS_ACCESS_KEY_ID"),
        aws_secret: env("AWS_SECRET_ACCESS_KEY"),
        aws_token: env("AWS_SESSION_TOKEN"),
        gcs_key: env("GOOGLE_APPLICATION_CREDENTIALS"),
    }
}

fn invocation(settings: &Settings, step: Step<'_>, ctx: &Context) -> anyhow::Result<Invocation> {
    settings
        .invocation(step, ctx)
        .with_context(|| format!("run {step:?}: the tool has no such step"))
}

fn run_step(settings: &Settings, step: Step<'_>, ctx: &Context) -> anyhow::Result<Option<i32>> {
    run_invocation(&invocation(settings, step, ctx)?, settings)
}

/// Runs `inv` with the caller's stdout and stderr; its exit code (`None` when killed).
fn run_invocation(inv: &Invocation, settings: &Settings) -> anyhow::Result<Option<i32>> {
    let status = command(inv, settings)?
        .status()
        .with_context(|| format!("run {}", inv.program))?;
    Ok(status.code())
}

fn command(inv: &Invocation, settings: &Settings) -> anyhow::Result<Command> {
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args);
    for (k, v) in &inv.env {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    if settings.barman_path_style() && std::env::var_os("AWS_CONFIG_FILE").is_none() {
        cmd.env("AWS_CONFIG_FILE", path_style_config()?);
    }
    Ok(cmd)
}

/// An AWS configuration file telling boto3 (Barman) to address buckets by path.
fn path_style_config() -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("patroni-backup-aws-{}.conf", nix_uid()));
    let text = "[default]\ns3 =\n    addressing_style = path\n";
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(path)
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    })
}

fn check(status: Option<i32>, what: &str) -> anyhow::Result<()> {
    match status {
        Some(0) => Ok(()),
        Some(code) => bail!("{what}: the tool exited with {code}"),
        None => bail!("{what}: the tool was killed"),
    }
}

/// A flag's value on the command line: `True`/`False` as Patroni passes them, `1`/`0` as
/// Spilo's scripts took `--no_master`.
fn parse_flag(v: &str) -> Result<bool, String> {
    patroni_backup::settings::parse_bool(v)
        .ok_or_else(|| format!("expected true or false, not {v:?}"))
}

fn parse_time(text: &str) -> anyhow::Result<jiff::Timestamp> {
    // RFC 3339, or PostgreSQL's own `2026-12-07 02:30:00+00`.
    let t = text.trim();
    t.parse::<jiff::Timestamp>()
        .or_else(|_| {
            let fixed = match t.rfind(['+', '-']) {
                Some(i) if i > 10 && t[i + 1..].len() == 2 => format!("{t}:00"),
                _ => t.to_owned(),
            };
            fixed.replacen(' ', "T", 1).parse::<jiff::Timestamp>()
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "read --recovery-target-time {text:?}: {e} (give a zone, e.g. 2026-12-07T02:30:00Z)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--no_leader` as Patroni passes it from the method's section, Spilo's spelling, and bare.
    #[test]
    fn no_leader_takes_patronis_values() {
        let no_leader = |args: &[&str]| {
            let cli = Cli::try_parse_from(
                ["patroni-backup", "restore-replica", "--datadir=/d"]
                    .iter()
                    .chain(args),
            )
            .map_err(|e| e.to_string())?;
            match cli.command {
                Cmd::RestoreReplica(a) => Ok(a.no_leader),
                _ => Err("another command".to_owned()),
            }
        };
        assert_eq!(no_leader(&[]), Ok(None));
        assert_eq!(no_leader(&["--no_leader=True"]), Ok(Some(true)));
        assert_eq!(no_leader(&["--no_leader=False"]), Ok(Some(false)));
        assert_eq!(no_leader(&["--no_master=1"]), Ok(Some(true)));
        assert_eq!(no_leader(&["--no-leader"]), Ok(Some(true)));
        assert!(no_leader(&["--no_leader=maybe"]).is_err());
        assert!(no_leader(&["--keep_data=True"]).is_ok());
    }
}
