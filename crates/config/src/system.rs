//! Checks against the machine, run only by `patroni --validate-config`, like the checks in
//! Patroni's validator that look beyond the document (`patroni/validator.py`):
//! * listen ports are free (unless `--ignore-listen-port`);
//! * connect addresses are not loopback or wildcard addresses;
//! * `postgresql.data_dir` is absent, empty, or looks like a data directory;
//! * the Postgres binaries exist in `postgresql.bin_dir` or on `PATH`.
//!
//! Patroni also compares `PG_VERSION` with `postgres --version`; that needs running a binary and
//! is not done here. Side effects go through [`Filesystem`] and [`PortProbe`], so tests use
//! fakes.

use std::{
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    path::Path,
    time::Duration,
};

use crate::{
    Environment,
    fs::{Filesystem, PathKind},
    model::{Config, address::Address},
    problem::Problem,
};

/// How long a port probe waits for a connection before deciding nothing listens.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Binaries Patroni requires (`pg_rewind` is optional), before `bin_name` renames.
const REQUIRED_BINARIES: [&str; 6] = [
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
];

/// Hosts that must not be advertised to other members.
const LOCAL_HOSTS: [&str; 5] = ["127.0.0.1", "0.0.0.0", "*", "::1", "localhost"];

/// Options of the system checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemCheckOptions {
    /// Do not complain when a listen port is already in use (`-i/--ignore-listen-port`).
    pub ignore_listen_port: bool,
}

/// Tells whether something accepts TCP connections at an address.
pub trait PortProbe {
    /// Whether a connection to `host:port` succeeds.
    ///
    /// # Errors
    ///
    /// A message when `host` cannot be resolved.
    fn is_in_use(&self, host: &str, port: u16) -> Result<bool, String>;
}

/// Probes with real TCP connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpPortProbe;

// === impl TcpPortProbe ===

impl PortProbe for TcpPortProbe {
    fn is_in_use(&self, host: &str, port: u16) -> Result<bool, String> {
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .collect();
        Ok(addrs
            .iter()
            .any(|a| TcpStream::connect_timeout(a, PROBE_TIMEOUT).is_ok()))
    }
}

/// Runs every system check on `config`; returns the problems found (empty when all pass).
pub fn check_system(
    config: &Config,
    fs: &dyn Filesystem,
    probe: &dyn PortProbe,
    env: &Environment,
    options: SystemCheckOptions,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let listens = [
        ("restapi.listen", &config.restapi.listen),
        ("postgresql.listen", &config.postgresql.listen),
    ];
    for (path, address) in listens {
        check_listen(&mut problems, probe, path, address, options);
    }
    let connects = [
        (
            "restapi.connect_address",
            Some(&config.restapi.connect_address),
        ),
        (
            "postgresql.connect_address",
            Some(&config.postgresql.connect_address),
        ),
        (
            "postgresql.proxy_address",
            config.postgresql.proxy_address.as_ref(),
        ),
    ];
    for (path, address) in connects {
        if address.is_some_and(|a| LOCAL_HOSTS.contains(&a.host.as_str())) {
            problems.push(Problem::new(
                path,
                "must not contain \"127.0.0.1\", \"0.0.0.0\", \"*\", \"::1\", \"localhost\"",
            ));
        }
    }
    check_data_dir(&mut problems, fs, &config.postgresql.data_dir);
    check_binaries(&mut problems, fs, env, config);
    problems
}

fn check_listen(
    problems: &mut Vec<Problem>,
    probe: &dyn PortProbe,
    path: &str,
    address: &Address,
    options: SystemCheckOptions,
) {
    for host in address.hosts() {
        let hosts: &[&str] = match host {
            "" | "*" => &["0.0.0.0", "::"],
            other => &[other],
        };
        for host in hosts {
            match probe.is_in_use(host, address.port) {
                Ok(true) if !options.ignore_listen_port => {
                    problems.push(Problem::new(
                        path,
                        format!("port {} is already in use", address.port),
                    ));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    problems.push(Problem::new(path, format!("cannot resolve {host:?}: {e}")));
                    return;
                }
            }
        }
    }
}

/// Patroni's `validate_data_dir`, without the `postgres --version` comparison.
fn check_data_dir(problems: &mut Vec<Problem>, fs: &dyn Filesystem, data_dir: &Path) {
    let path = "postgresql.data_dir";
    match fs.kind(data_dir) {
        PathKind::Missing => return,
        PathKind::File | PathKind::Other => {
            problems.push(Problem::new(path, "is not a directory"));
            return;
        }
        PathKind::Directory => {}
    }
    let has_control = fs.kind(&data_dir.join("global").join("pg_control")) == PathKind::File;
    // Like Patroni, hidden files and lost+found do not make a directory "not empty".
    let empty = !has_control
        && fs
            .list_dir(data_dir)
            .map(|names| {
                names
                    .iter()
                    .all(|n| n.starts_with('.') || n == "lost+found")
            })
            .unwrap_or(true);
    if empty {
        return;
    }
    let Ok(version) = fs.read_to_string(&data_dir.join("PG_VERSION")) else {
        problems.push(Problem::new(
            path,
            "doesn't look like a valid data directory",
        ));
        return;
    };
    let major: f64 = version.trim().parse().unwrap_or(0.0);
    let wal_dir = if major >= 10.0 { "pg_wal" } else { "pg_xlog" };
    if fs.kind(&data_dir.join(wal_dir)) != PathKind::Directory {
        problems.push(Problem::new(
            path,
            format!(
                "data dir for the cluster is not empty, but doesn't contain \"{wal_dir}\" directory"
            ),
        ));
    }
}

/// Patroni's `BinDirectory` check: every required binary (after `bin_name` renames) exists in
/// `bin_dir`, or on `PATH` when `bin_dir` is not set.
fn check_binaries(
    problems: &mut Vec<Problem>,
    fs: &dyn Filesystem,
    env: &Environment,
    config: &Config,
) {
    let path = "postgresql.bin_dir";
    let pg = &config.postgresql;
    let (dirs, shown): (Vec<&Path>, String) = match &pg.bin_dir {
        Some(dir) => match fs.kind(dir) {
            PathKind::Missing => {
                problems.push(Problem::new(
                    path,
                    format!("directory '{}' does not exist", dir.display()),
                ));
                return;
            }
            PathKind::File | PathKind::Other => {
                problems.push(Problem::new(
                    path,
                    format!("'{}' is not a directory", dir.display()),
                ));
                return;
            }
            PathKind::Directory => (vec![dir.as_path()], dir.display().to_string()),
        },
        None => {
            let dirs = env
                .get("PATH")
                .unwrap_or_default()
                .split(':')
                .filter(|d| !d.is_empty())
                .map(Path::new);
            (dirs.collect(), "$PATH".to_owned())
        }
    };
    for binary in REQUIRED_BINARIES {
        let name = pg.bin_name.get(binary).map_or(binary, String::as_str);
        if !dirs.iter().any(|d| fs.is_executable_file(&d.join(name))) {
            problems.push(Problem::new(
                path,
                format!("does not contain '{name}' in '{shown}'"),
            ));
        }
    }
}
