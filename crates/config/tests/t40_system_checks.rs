//! The machine checks of `--validate-config`, against an in-memory filesystem and a fake probe.

use std::{cell::RefCell, collections::BTreeSet};

use patroni_config::{
    Config, Environment, MemoryFilesystem, PortProbe, SystemCheckOptions, check_system,
};
use serde_json::json;

/// A probe that reports the listed ports as busy and records what it was asked.
#[derive(Default)]
struct FakeProbe {
    busy: BTreeSet<u16>,
    asked: RefCell<Vec<(String, u16)>>,
}

impl PortProbe for FakeProbe {
    fn is_in_use(&self, host: &str, port: u16) -> Result<bool, String> {
        self.asked.borrow_mut().push((host.to_owned(), port));
        Ok(self.busy.contains(&port))
    }
}

fn config(restapi_connect: &str, data_dir: &str, bin_dir: Option<&str>) -> Config {
    let mut pg = json!({
        "listen": "*:5432",
        "connect_address": "10.0.0.1:5432",
        "data_dir": data_dir,
        "authentication": {"superuser": {"username": "postgres"}, "replication": {"username": "standby"}},
    });
    if let Some(dir) = bin_dir {
        pg["bin_dir"] = json!(dir);
    }
    let doc = json!({
        "name": "pg-0", "scope": "demo",
        "restapi": {"listen": "127.0.0.1:8008", "connect_address": restapi_connect},
        "kubernetes": {"labels": {}},
        "postgresql": pg,
    });
    Config::from_value(&doc).expect("valid").0
}

fn binaries(fs: MemoryFilesystem, dir: &str) -> MemoryFilesystem {
    [
        "pg_ctl",
        "initdb",
        "pg_controldata",
        "pg_basebackup",
        "postgres",
        "pg_isready",
    ]
    .into_iter()
    .fold(fs, |fs, b| fs.with_executable(format!("{dir}/{b}")))
}

fn shown(problems: &[patroni_config::Problem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

/// A healthy machine passes: free ports, no data directory yet, binaries on PATH.
#[test]
fn healthy_machine_passes() {
    let fs = binaries(MemoryFilesystem::new(), "/usr/lib/postgresql/17/bin");
    let env = Environment::new().with_var("PATH", "/usr/bin:/usr/lib/postgresql/17/bin");
    let probe = FakeProbe::default();
    let problems = check_system(
        &config("10.0.0.1:8008", "/data", None),
        &fs,
        &probe,
        &env,
        SystemCheckOptions::default(),
    );
    assert_eq!(shown(&problems), Vec::<String>::new());
    // `*` is probed on both wildcard addresses, like Patroni's getaddrinfo(None, ...).
    assert_eq!(
        *probe.asked.borrow(),
        [
            ("127.0.0.1".to_owned(), 8008),
            ("0.0.0.0".to_owned(), 5432),
            ("::".to_owned(), 5432)
        ]
    );
}

/// Busy ports, loopback connect addresses, a bad data dir and missing binaries are all reported.
#[test]
fn every_machine_problem_is_reported() {
    let fs = MemoryFilesystem::new()
        .with_file("/data/base/1/1234", "")
        .with_executable("/opt/pg/bin/pg_ctl");
    let probe = FakeProbe {
        busy: BTreeSet::from([8008, 5432]),
        ..FakeProbe::default()
    };
    let problems = check_system(
        &config("127.0.0.1:8008", "/data", Some("/opt/pg/bin")),
        &fs,
        &probe,
        &Environment::new(),
        SystemCheckOptions::default(),
    );
    assert_eq!(
        shown(&problems),
        [
            "restapi.listen: port 8008 is already in use",
            "postgresql.listen: port 5432 is already in use",
            "restapi.connect_address: must not contain \"127.0.0.1\", \"0.0.0.0\", \"*\", \"::1\", \"localhost\"",
            "postgresql.data_dir: doesn't look like a valid data directory",
            "postgresql.bin_dir: does not contain 'initdb' in '/opt/pg/bin'",
            "postgresql.bin_dir: does not contain 'pg_controldata' in '/opt/pg/bin'",
            "postgresql.bin_dir: does not contain 'pg_basebackup' in '/opt/pg/bin'",
            "postgresql.bin_dir: does not contain 'postgres' in '/opt/pg/bin'",
            "postgresql.bin_dir: does not contain 'pg_isready' in '/opt/pg/bin'",
        ]
    );
}

/// -i/--ignore-listen-port silences busy ports only.
#[test]
fn ignore_listen_port_skips_busy_ports() {
    let fs = binaries(MemoryFilesystem::new(), "/bin");
    let probe = FakeProbe {
        busy: BTreeSet::from([8008, 5432]),
        ..FakeProbe::default()
    };
    let env = Environment::new().with_var("PATH", "/bin");
    let options = SystemCheckOptions {
        ignore_listen_port: true,
    };
    let problems = check_system(
        &config("10.0.0.1:8008", "/data", None),
        &fs,
        &probe,
        &env,
        options,
    );
    assert_eq!(shown(&problems), Vec::<String>::new());
}

/// A data directory with PG_VERSION but no WAL directory, a file as data dir, and a missing bin_dir.
#[test]
fn data_dir_and_bin_dir_shapes() {
    let fs = MemoryFilesystem::new()
        .with_file("/data/PG_VERSION", "16\n")
        .with_file("/file", "x");
    let probe = FakeProbe::default();
    let env = Environment::new();
    let options = SystemCheckOptions::default();
    let problems = check_system(
        &config("10.0.0.1:8008", "/data", Some("/nope")),
        &fs,
        &probe,
        &env,
        options,
    );
    assert_eq!(
        shown(&problems),
        [
            "postgresql.data_dir: data dir for the cluster is not empty, but doesn't contain \"pg_wal\" directory",
            "postgresql.bin_dir: directory '/nope' does not exist",
        ]
    );
    let problems = check_system(
        &config("10.0.0.1:8008", "/file", Some("/file")),
        &fs,
        &probe,
        &env,
        options,
    );
    assert_eq!(
        shown(&problems),
        [
            "postgresql.data_dir: is not a directory",
            "postgresql.bin_dir: '/file' is not a directory"
        ]
    );
    // Hidden files and lost+found do not count; a full data directory passes.
    let fs = binaries(MemoryFilesystem::new(), "/pg")
        .with_file("/empty/.keep", "")
        .with_dir("/empty/lost+found")
        .with_file("/full/PG_VERSION", "17")
        .with_dir("/full/pg_wal");
    for dir in ["/empty", "/full"] {
        let problems = check_system(
            &config("10.0.0.1:8008", dir, Some("/pg")),
            &fs,
            &probe,
            &env,
            options,
        );
        assert_eq!(shown(&problems), Vec::<String>::new(), "{dir}");
    }
}
