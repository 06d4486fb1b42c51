//! Creating a replica's data directory (`postgresql.create_replica_methods`): the built-in
//! `basebackup` method and custom scripts (`wal-g`, `pgbackrest`, …), tried in order until one
//! succeeds.
//!
//! # Guarantees
//! - Nothing is written into a data directory that holds data: it is emptied first (unless a
//!   custom method says `keep_data`), and emptied again when everything failed, so the next
//!   attempt starts clean and a half-copied directory is never started.
//! - Passwords travel in the password file (`PGPASSFILE`), never on a command line.
//! - Every failure is kept, per method and attempt, in [`CloneError::AllFailed`].

use std::path::Path;
use std::time::Duration;

use patroni_config::ToolOption;
use serde_json::{Map, Value};

use crate::conninfo::ConnParams;
use crate::datadir::{self, DataDirError, DataDirState};
use crate::files::FileError;
use crate::launcher::Programs;
use crate::layout::Layout;
use crate::tool::{self, ToolError};

/// Name of the built-in method.
pub const BASEBACKUP: &str = "basebackup";
/// Attempts of `pg_basebackup` before the method counts as failed (Patroni: 2).
pub const BASEBACKUP_ATTEMPTS: usize = 2;
/// Pause between `pg_basebackup` attempts (Patroni: 5 s).
pub const BASEBACKUP_RETRY_DELAY: Duration = Duration::from_secs(5);
/// `postgresql.basebackup` options the agent sets itself or that would break the clone.
pub const FORBIDDEN_BASEBACKUP_OPTIONS: [&str; 12] = [
    "pgdata",
    "format",
    "wal-method",
    "xlog-method",
    "gzip",
    "version",
    "compress",
    "dbname",
    "host",
    "port",
    "username",
    "password",
];
/// Keys of a custom method's section that configure the method: Patroni passes them to the
/// script with the others, except with `no_params` (and never `command`).
const METHOD_FLAGS: [&str; 3] = ["no_params", "no_leader", "keep_data"];
/// The arguments the agent passes itself unless `no_params`.
const AGENT_PARAMS: [&str; 4] = ["scope", "role", "datadir", "connstring"];

/// One way to create a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaMethod {
    /// `pg_basebackup` from the clone source.
    Basebackup {
        /// `postgresql.basebackup` options.
        options: Vec<ToolOption>,
    },
    /// A user script.
    Custom(CustomMethod),
}

/// A custom replica-creation method: section `postgresql.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomMethod {
    /// The method's name.
    pub name: String,
    /// Command line (shell-split); defaults to the name.
    pub command: String,
    /// Works without a leader to clone from (restores from a backup).
    pub no_leader: bool,
    /// Does not want the data directory emptied before or after it runs.
    pub keep_data: bool,
    /// Pass only the section's own arguments, not `--scope`, `--role`, ….
    pub no_params: bool,
    /// The section's keys but `command`, passed as `--key=value`, sorted by key (the flags
    /// above among them: see [`custom_method_args`]).
    pub args: Vec<(String, String)>,
}

/// Creating a replica failed.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// The data directory holds a cluster: refusing to clone over it.
    #[error("refusing to create a replica over existing data ({0:?})")]
    DataDirNotEmpty(DataDirState),
    /// The data directory could not be inspected or emptied.
    #[error("prepare the data directory")]
    DataDir(#[source] DataDirError),
    /// The password file could not be written.
    #[error("write the password file")]
    Pgpass(#[source] FileError),
    /// There is no source and no method works without one.
    #[error("no replica method works without a leader")]
    NoMethodWithoutLeader,
    /// Every method failed; the data directory was emptied.
    #[error("every replica method failed: {}", summarize(.0))]
    AllFailed(Vec<MethodFailure>),
}

/// One failed attempt.
#[derive(Debug, thiserror::Error)]
#[error("{method}: {error}")]
pub struct MethodFailure {
    /// The method's name.
    pub method: String,
    /// Why it failed.
    #[source]
    pub error: MethodError,
}

/// Why a method failed.
#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    /// The program failed.
    #[error("{0}")]
    Tool(#[from] ToolError),
    /// A configured option cannot be used.
    #[error("option {0:?} is not allowed for pg_basebackup")]
    ForbiddenOption(String),
    /// The command line does not parse (unbalanced quotes).
    #[error("cannot split command line {0:?}")]
    BadCommand(String),
    /// The data directory could not be emptied between attempts.
    #[error("empty the data directory: {0}")]
    DataDir(#[from] DataDirError),
}

fn summarize(failures: &[MethodFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

// === impl ReplicaMethod ===

impl ReplicaMethod {
    /// The method `name` from its configuration section (`postgresql.<name>`), with
    /// `postgresql.basebackup` options for the built-in one.
    pub fn from_config(
        name: &str,
        section: Option<&Map<String, Value>>,
        basebackup_options: &[ToolOption],
    ) -> Self {
        if name == BASEBACKUP {
            return Self::Basebackup {
                options: basebackup_options.to_vec(),
            };
        }
        let empty = Map::new();
        let section = section.unwrap_or(&empty);
        let flag = |key: &str| section.get(key).is_some_and(truthy);
        Self::Custom(CustomMethod {
            name: name.to_owned(),
            command: section
                .get("command")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_owned(),
            no_leader: flag("no_leader"),
            keep_data: flag("keep_data"),
            no_params: flag("no_params"),
            args: section
                .iter()
                .filter(|(k, _)| k.as_str() != "command")
                .map(|(k, v)| {
                    let v = match v {
                        // PyYAML reads these words (YAML 1.1) as booleans; Python prints
                        // them `True`/`False`. Numbers and other strings pass as written.
                        Value::String(s) if METHOD_FLAGS.contains(&k.as_str()) => {
                            yaml11_bool(s).map_or_else(|| s.clone(), |b| python_str(&b.into()))
                        }
                        other => python_str(other),
                    };
                    (k.clone(), v)
                })
                .collect(),
        })
    }

    /// The method's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Basebackup { .. } => BASEBACKUP,
            Self::Custom(m) => &m.name,
        }
    }

    /// Whether it can run without a member to clone from (`no_leader`; never `basebackup`).
    pub fn works_without_leader(&self) -> bool {
        matches!(self, Self::Custom(m) if m.no_leader)
    }
}

/// Truthiness as Patroni's YAML sees it.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => patroni_config::coerce::parse_bool(s).unwrap_or(!s.is_empty()),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::Null => false,
        _ => true,
    }
}

/// A YAML 1.1 boolean word, as PyYAML resolves an unquoted scalar.
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// A value as Python's `str()` prints it, since Patroni formats `--key={value}` that way.
pub(crate) fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

/// `pg_basebackup` arguments: `--pgdata=DIR -X stream --dbname=DSN`, a fast checkpoint unless
/// the options choose one, then the options. Pure.
///
/// Patroni leaves the checkpoint mode to PostgreSQL's default (spread), which can delay a clone
/// by minutes; the agent asks for `--checkpoint=fast` unless `postgresql.basebackup` names
/// `checkpoint` itself.
///
/// # Errors
/// An option is one the agent sets itself.
pub fn basebackup_args(
    data_dir: &Path,
    connstring: &str,
    options: &[ToolOption],
) -> Result<Vec<String>, MethodError> {
    let mut args = vec![
        format!("--pgdata={}", data_dir.display()),
        "-X".to_owned(),
        "stream".to_owned(),
        format!("--dbname={connstring}"),
    ];
    if !options.iter().any(|o| o.name() == "checkpoint") {
        args.push("--checkpoint=fast".to_owned());
    }
    for option in options {
        if FORBIDDEN_BASEBACKUP_OPTIONS.contains(&option.name()) {
            return Err(MethodError::ForbiddenOption(option.name().to_owned()));
        }
        args.push(option.to_arg());
    }
    Ok(args)
}

/// A custom method's argument list after its command: its own `--key=value` arguments, then
/// (unless `no_params`) `--scope`, `--role=replica`, `--datadir` and `--connstring`. Pure.
///
/// As Patroni's `create_replica`: without `no_params` every key of the section but `command` is
/// passed, `no_leader` and `keep_data` too (`--keep_data=True`), and the agent's four
/// parameters replace the section's; with `no_params`, the three flags are left out and
/// everything else is passed as written.
pub fn custom_method_args(
    method: &CustomMethod,
    scope: &str,
    data_dir: &Path,
    connstring: &str,
) -> Vec<String> {
    let mut args: Vec<String> = method
        .args
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            if method.no_params {
                !METHOD_FLAGS.contains(&k)
            } else {
                !AGENT_PARAMS.contains(&k)
            }
        })
        .map(|(k, v)| format!("--{k}={v}"))
        .collect();
    if !method.no_params {
        args.push(format!("--scope={scope}"));
        args.push("--role=replica".to_owned());
        args.push(format!("--datadir={}", data_dir.display()));
        args.push(format!("--connstring={connstring}"));
    }
    args
}

/// What a clone works with.
#[derive(Debug, Clone, Copy)]
pub struct CloneSpec<'a> {
    /// Programs and launcher.
    pub programs: &'a Programs,
    /// Data directory and password file.
    pub layout: &'a Layout,
    /// Cluster name, for custom methods.
    pub scope: &'a str,
    /// The member to clone from, with replication credentials; `None` when there is no leader
    /// (only `no_leader` methods run).
    pub source: Option<&'a ConnParams>,
    /// Database named in the connection string (`postgresql.database`).
    pub dbname: &'a str,
    /// Pause between `pg_basebackup` attempts ([`BASEBACKUP_RETRY_DELAY`] in production).
    pub retry_delay: Duration,
}

/// Creates the replica's data directory with the first method that succeeds; returns its name.
///
/// # Errors
/// The directory holds data, the password file cannot be written, no method applies, or all
/// failed (each failure kept; the directory is left empty).
pub async fn create_replica(
    spec: &CloneSpec<'_>,
    methods: &[ReplicaMethod],
) -> Result<String, CloneError> {
    let data_dir = spec.layout.data_dir();
    let state = DataDirState::of(data_dir).map_err(CloneError::DataDir)?;
    if let DataDirState::Initialized { .. } = state {
        return Err(CloneError::DataDirNotEmpty(state));
    }
    let connstring = match spec.source {
        Some(source) => {
            if let Some(lines) = source.pgpass_lines() {
                spec.layout
                    .write_pgpass(&lines)
                    .map_err(CloneError::Pgpass)?;
            }
            source.to_dsn_with_dbname(spec.dbname)
        }
        None => String::new(),
    };
    let usable: Vec<&ReplicaMethod> = methods
        .iter()
        .filter(|m| spec.source.is_some() || m.works_without_leader())
        .collect();
    if usable.is_empty() {
        return Err(CloneError::NoMethodWithoutLeader);
    }
    let mut failures = Vec::new();
    for method in usable {
        tracing::info!(method = method.name(), "creating replica");
        let result = match method {
            ReplicaMethod::Basebackup { options } => {
                basebackup(spec, &connstring, options, &mut failures).await
            }
            ReplicaMethod::Custom(custom) => run_custom(spec, custom, &connstring).await,
        };
        match result {
            Ok(()) => {
                tracing::info!(method = method.name(), "replica has been created");
                return Ok(method.name().to_owned());
            }
            Err(error) => {
                tracing::warn!(method = method.name(), "failed to create replica: {error}");
                failures.push(MethodFailure {
                    method: method.name().to_owned(),
                    error,
                });
            }
        }
    }
    datadir::remove_contents_async(data_dir)
        .await
        .map_err(CloneError::DataDir)?;
    Err(CloneError::AllFailed(failures))
}

/// `pg_basebackup`, [`BASEBACKUP_ATTEMPTS`] times; failed attempts but the last are pushed to
/// `failures`, the last one is returned.
async fn basebackup(
    spec: &CloneSpec<'_>,
    connstring: &str,
    options: &[ToolOption],
    failures: &mut Vec<MethodFailure>,
) -> Result<(), MethodError> {
    let data_dir = spec.layout.data_dir();
    let args = basebackup_args(data_dir, connstring, options)?;
    let mut attempt = 1;
    loop {
        datadir::remove_contents_async(data_dir).await?;
        let mut cmd = spec.programs.command("pg_basebackup");
        cmd.args(&args).env("PGPASSFILE", spec.layout.pgpass());
        let result = tool::run(cmd, spec.programs.program("pg_basebackup")).await;
        match result {
            Ok(_) => return Ok(()),
            Err(e) if attempt >= BASEBACKUP_ATTEMPTS => {
                datadir::remove_contents_async(data_dir).await?;
                return Err(e.into());
            }
            Err(e) => {
                tracing::warn!(
                    attempt,
                    "pg_basebackup failed, trying again in {:?}: {e}",
                    spec.retry_delay
                );
                failures.push(MethodFailure {
                    method: BASEBACKUP.to_owned(),
                    error: e.into(),
                });
                tokio::time::sleep(spec.retry_delay).await;
                attempt += 1;
            }
        }
    }
}

async fn run_custom(
    spec: &CloneSpec<'_>,
    method: &CustomMethod,
    connstring: &str,
) -> Result<(), MethodError> {
    let data_dir = spec.layout.data_dir();
    if !method.keep_data {
        datadir::remove_contents_async(data_dir).await?;
    }
    let words = shlex::split(&method.command)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| MethodError::BadCommand(method.command.clone()))?;
    let (program, rest) = words
        .split_first()
        .ok_or_else(|| MethodError::BadCommand(method.command.clone()))?;
    let mut cmd = spec.programs.launcher().command(program);
    cmd.args(rest)
        .args(custom_method_args(method, spec.scope, data_dir, connstring))
        .env("PGPASSFILE", spec.layout.pgpass());
    let result = tool::run(cmd, program.into()).await;
    if result.is_err() && !method.keep_data {
        datadir::remove_contents_async(data_dir).await?;
    }
    if let Ok(out) = &result {
        out.log_lines(&method.name);
    }
    result.map(drop).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    /// Sections become methods: flags read, method keys stripped, values printed like Python.
    #[test]
    fn methods_from_config() {
        let wal_g = section(json!({
            "command": "/usr/bin/wal-g-restore --verbose",
            "no_leader": true,
            "keep_data": "off",
            "threads": 4,
            "delta": true,
        }));
        let m = ReplicaMethod::from_config("walg", Some(&wal_g), &[]);
        let ReplicaMethod::Custom(c) = &m else {
            panic!("custom")
        };
        assert_eq!(c.command, "/usr/bin/wal-g-restore --verbose");
        assert!(c.no_leader && !c.keep_data && !c.no_params);
        assert_eq!(
            c.args,
            [
                ("delta".to_owned(), "True".to_owned()),
                ("keep_data".to_owned(), "False".to_owned()),
                ("no_leader".to_owned(), "True".to_owned()),
                ("threads".to_owned(), "4".to_owned())
            ]
        );
        assert!(m.works_without_leader());
        // Flags pass as Python prints what PyYAML read: a number as written, `yes` as True.
        let chart = json!({"command": "patroni-backup restore-replica", "no_leader": 1, "keep_data": "yes"});
        let ReplicaMethod::Custom(c) = ReplicaMethod::from_config("backup", chart.as_object(), &[])
        else {
            panic!("custom")
        };
        assert!(c.no_leader && c.keep_data);
        assert_eq!(
            c.args,
            [
                ("keep_data".to_owned(), "True".to_owned()),
                ("no_leader".to_owned(), "1".to_owned())
            ]
        );
        let bb =
            ReplicaMethod::from_config(BASEBACKUP, None, &[ToolOption::Flag("progress".into())]);
        assert!(!bb.works_without_leader());
        assert_eq!(bb.name(), "basebackup");
        let bare = ReplicaMethod::from_config("restore", None, &[]);
        assert!(
            matches!(bare, ReplicaMethod::Custom(CustomMethod { ref command, .. }) if command == "restore")
        );
    }

    /// Patroni's argument convention for custom methods.
    #[test]
    fn custom_method_arguments() {
        let mut m = CustomMethod {
            name: "walg".into(),
            command: "wal-g".into(),
            no_leader: false,
            keep_data: false,
            no_params: false,
            args: vec![
                ("keep_data".into(), "True".into()),
                ("threads".into(), "4".into()),
                ("scope".into(), "x".into()),
            ],
        };
        assert_eq!(
            custom_method_args(&m, "demo", Path::new("/data"), "dbname=postgres host=h"),
            [
                "--keep_data=True",
                "--threads=4",
                "--scope=demo",
                "--role=replica",
                "--datadir=/data",
                "--connstring=dbname=postgres host=h"
            ]
        );
        m.no_params = true;
        assert_eq!(
            custom_method_args(&m, "demo", Path::new("/data"), ""),
            ["--threads=4", "--scope=x"]
        );
    }

    /// pg_basebackup arguments, with a fast checkpoint unless configured, and forbidden options.
    #[test]
    fn basebackup_arguments() {
        let args = basebackup_args(
            Path::new("/d"),
            "dbname=postgres host=h",
            &[ToolOption::Value {
                name: "max-rate".into(),
                value: "100M".into(),
            }],
        )
        .expect("valid");
        assert_eq!(
            args,
            [
                "--pgdata=/d",
                "-X",
                "stream",
                "--dbname=dbname=postgres host=h",
                "--checkpoint=fast",
                "--max-rate=100M"
            ]
        );
        let args = basebackup_args(
            Path::new("/d"),
            "",
            &[ToolOption::Value {
                name: "checkpoint".into(),
                value: "spread".into(),
            }],
        )
        .expect("valid");
        assert!(!args.contains(&"--checkpoint=fast".to_owned()));
        assert!(matches!(
            basebackup_args(Path::new("/d"), "", &[ToolOption::Flag("gzip".into())]),
            Err(MethodError::ForbiddenOption(o)) if o == "gzip"
        ));
    }

    /// Methods are tried in order; failures are kept; the data directory is left empty; without
    /// a source only `no_leader` methods run (real processes: `sh`).
    #[tokio::test]
    async fn methods_tried_in_order_and_failures_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let layout = Layout::new(&data, dir.path().join("pgpass"));
        let programs = Programs::new(crate::BinDir::new(None), crate::Launcher::direct());
        let failing = ReplicaMethod::from_config(
            "broken",
            Some(&section(
                json!({"command": "sh -c 'exit 1'", "no_params": true}),
            )),
            &[],
        );
        let writer = ReplicaMethod::from_config(
            "restore",
            Some(&section(
                json!({"command": format!("sh -c 'echo 15 > {}/PG_VERSION'", data.display()), "no_params": true, "no_leader": true}),
            )),
            &[],
        );
        let source = ConnParams::new()
            .with("host", "h")
            .with("user", "u")
            .with("password", "p");
        let mut spec = CloneSpec {
            programs: &programs,
            layout: &layout,
            scope: "demo",
            source: Some(&source),
            dbname: "postgres",
            retry_delay: Duration::ZERO,
        };
        let used = create_replica(&spec, &[failing.clone(), writer.clone()])
            .await
            .expect("second method works");
        assert_eq!(used, "restore");
        assert!(data.join("PG_VERSION").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pgpass")).expect("pgpass"),
            "h:*:*:u:p\n"
        );
        assert!(matches!(
            create_replica(&spec, std::slice::from_ref(&writer)).await,
            Err(CloneError::DataDirNotEmpty(_))
        ));
        datadir::remove_contents(&data).expect("empty");

        spec.source = None;
        match create_replica(&spec, std::slice::from_ref(&failing)).await {
            Err(CloneError::NoMethodWithoutLeader) => {}
            other => panic!("unexpected {other:?}"),
        }
        let failing_no_leader = ReplicaMethod::from_config(
            "broken",
            Some(&section(
                json!({"command": "false", "no_params": true, "no_leader": true}),
            )),
            &[],
        );
        match create_replica(&spec, &[failing_no_leader]).await {
            Err(CloneError::AllFailed(f)) => {
                assert_eq!(f.len(), 1);
                assert_eq!(f[0].method, "broken");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(std::fs::read_dir(&data).expect("list").count(), 0);
    }
}
