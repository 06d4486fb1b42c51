//! The `patroni` binary end to end: exit codes and stderr for valid, invalid and unsupported
//! configurations. Each run gets a cleared environment so the caller's PATRONI_* variables
//! cannot leak in.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
};

const BINARIES: [&str; 6] = [
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
];

/// A temporary machine: fake Postgres binaries on PATH and a config file.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin dir");
        for name in BINARIES {
            let path = bin.join(name);
            std::fs::write(&path, "#!/bin/sh\n").expect("fake binary");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        Self { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn patroni(&self, args: &[&str]) -> Output {
        self.patroni_with_env(args, &[])
    }

    fn patroni_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_patroni"))
            .args(args)
            .env_clear()
            .env("PATH", self.dir.path().join("bin"))
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .output()
            .expect("run patroni")
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn valid_config(data_dir: &Path, restapi_port: u16, pg_port: u16) -> String {
    format!(
        "scope: demo\nname: demo-0\n\
         restapi: {{listen: '127.0.0.1:{restapi_port}', connect_address: '10.0.0.1:8008'}}\n\
         kubernetes: {{labels: {{application: patroni}}}}\n\
         bootstrap: {{dcs: {{ttl: 30}}}}\n\
         postgresql:\n  listen: '127.0.0.1:{pg_port}'\n  connect_address: '10.0.0.1:5432'\n  data_dir: {}\n\
         \x20 authentication:\n    superuser: {{username: postgres}}\n    replication: {{username: standby}}\n",
        data_dir.display()
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

/// `--version` prints `patroni <version>` like Patroni.
#[test]
fn version_prints_name_and_version() {
    let out = Sandbox::new().patroni(&["--version"]);
    assert_eq!(code(&out), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("patroni {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// `--help` documents the Patroni flags.
#[test]
fn help_lists_patroni_flags() {
    let out = Sandbox::new().patroni(&["--help"]);
    assert_eq!(code(&out), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--validate-config",
        "--ignore-listen-port",
        "--print",
        "[CONFIGFILE]",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

/// A valid file passes --validate-config silently with exit 0, and --print shows it as YAML.
#[test]
fn validate_config_accepts_a_valid_file() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "patroni.yml",
        &valid_config(&sandbox.dir.path().join("data"), free_port(), free_port()),
    );
    let out = sandbox.patroni(&["--validate-config", file.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let out = sandbox.patroni(&[
        "--validate-config",
        "--print",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("scope: demo"));
}

/// Every problem of an invalid file is printed with its path, one per line, and exit is 1.
#[test]
fn validate_config_lists_every_problem() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "bad.yml",
        "scope: demo\nrestapi: {listen: '8008', connect_address: '10.0.0.1:8008'}\n\
         kubernetes: {labels: {}, use_endpoints: maybe}\nbootstrap: {dcs: {ttl: abc, loop_wait: 0}}\n\
         postgresql: {listen: '127.0.0.1:5432', connect_address: '10.0.0.1:5432',\n\
         \x20 authentication: {superuser: {username: postgres}, replication: {username: standby}}}\n",
    );
    let out = sandbox.patroni(&["--validate-config", file.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(1));
    assert_eq!(
        stderr(&out),
        "patroni: warning: bootstrap.dcs.loop_wait: loop_wait=0 can't be smaller than 1, adjusting...\n\
         patroni: invalid configuration, 5 problems:\n\
         name: missing required setting\n\
         restapi.listen: expected \"host:port\" (port 1-65535), got \"8008\"\n\
         kubernetes.use_endpoints: expected a boolean (true/false, on/off, yes/no, 1/0), got \"maybe\"\n\
         postgresql.data_dir: missing required setting\n\
         bootstrap.dcs.ttl: expected an integer, got \"abc\"\n"
    );
}

/// A busy listen port fails --validate-config unless -i is given.
#[test]
fn validate_config_checks_listen_ports() {
    let sandbox = Sandbox::new();
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let file = sandbox.write(
        "patroni.yml",
        &valid_config(&sandbox.dir.path().join("data"), port, free_port()),
    );
    let path = file.to_str().expect("utf-8");
    let out = sandbox.patroni(&["--validate-config", path]);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains(&format!("restapi.listen: port {port} is already in use")),
        "{}",
        stderr(&out)
    );
    let out = sandbox.patroni(&["--validate-config", "-i", path]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
}

/// Starting with a valid configuration but no Kubernetes credentials fails to set up the DCS,
/// says so on one line, and exits 69 (EX_UNAVAILABLE) before starting anything.
#[test]
fn start_without_kubernetes_credentials_exits_69() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("patroni.yml", &valid_config(Path::new("/data"), 8008, 5432));
    let kubeconfig = sandbox.dir.path().join("no-such-kubeconfig");
    let out = sandbox.patroni_with_env(
        &[file.to_str().expect("utf-8")],
        &[("KUBECONFIG", kubeconfig.to_str().expect("utf-8"))],
    );
    assert_eq!(code(&out), Some(69), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("ERROR"), "{err}");
    assert!(err.contains("failed to start the Kubernetes DCS"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "no colours when stderr is not a terminal: {err}"
    );
}

/// Starting with an invalid configuration exits 64 (EX_USAGE) after listing the problems.
#[test]
fn start_with_invalid_config_exits_64() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("bad.yml", "scope: demo\n");
    let out = sandbox.patroni(&[file.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(64));
    assert_eq!(
        stderr(&out),
        "patroni: invalid configuration, 4 problems:\n\
         name: missing required setting\n\
         restapi: missing required setting\n\
         no DCS section found; expected exactly one of consul, etcd, etcd3, exhibitor, kubernetes, raft, zookeeper\n\
         postgresql: missing required setting\n"
    );
}

/// A ZooKeeper section passes --validate-config; what patroni-rs does not implement (TLS,
/// `set_acls`) and a bad host are refused, each by its setting's name.
#[test]
fn zookeeper_config_is_validated_and_unimplemented_settings_refused_by_name() {
    let sandbox = Sandbox::new();
    let head = "scope: batman\nname: postgresql0\nrestapi: {listen: '127.0.0.1:8008', connect_address: '10.0.0.1:8008'}\n\
         postgresql: {listen: '127.0.0.1:5432', connect_address: '10.0.0.1:5432', data_dir: data,\n\
         \x20 authentication: {superuser: {username: postgres}, replication: {username: standby}}}\n";
    let good = sandbox.write(
        "zk.yml",
        &format!(
            "{head}zookeeper: {{hosts: ['127.0.0.1:2181', 'zk2'], auth_data: {{digest: 'u:p'}}}}\n"
        ),
    );
    let out = sandbox.patroni(&["--validate-config", "-i", good.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let bad = sandbox.write(
        "zk-bad.yml",
        &format!(
            "{head}zookeeper: {{hosts: 'zk1:2181,zk2:x', use_ssl: true, set_acls: {{admin: [ALL]}}}}\n"
        ),
    );
    let out = sandbox.patroni(&["--validate-config", "-i", bad.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for line in [
        "zookeeper.use_ssl: TLS to ZooKeeper is not supported by patroni-rs yet",
        "zookeeper.set_acls: ACLs on Patroni's znodes (set_acls) are not supported by patroni-rs yet",
        "zookeeper.hosts.1: expected a port between 1 and 65535, got \"x\"",
    ] {
        assert!(err.contains(line), "{line} in {err}");
    }
}

/// A Consul configuration is valid Patroni, but patroni-rs names the DCS and refuses.
#[test]
fn consul_config_is_refused_by_name() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "consul.yml",
        "scope: batman\nname: postgresql0\nrestapi: {listen: '127.0.0.1:8008', connect_address: '10.0.0.1:8008'}\n\
         consul: {host: '127.0.0.1:8500'}\n\
         postgresql: {listen: '127.0.0.1:5432', connect_address: '10.0.0.1:5432', data_dir: data,\n\
         \x20 authentication: {superuser: {username: postgres}, replication: {username: standby}}}\n",
    );
    let expected = "patroni: the \"consul\" DCS is not supported yet; patroni-rs supports etcd3, kubernetes, zookeeper\n";
    let out = sandbox.patroni(&[file.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(64));
    assert_eq!(stderr(&out), expected);
    let out = sandbox.patroni(&["--validate-config", file.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(1));
    assert_eq!(stderr(&out), expected);
}

/// An etcd3 section validates with Patroni's rules, DNS SRV discovery included; `srv_suffix`
/// without anything saying where etcd is is refused by name, and so is a malformed setting.
#[test]
fn etcd3_config_is_validated_and_unusable_settings_refused_by_name() {
    let sandbox = Sandbox::new();
    let config = |etcd3: &str| {
        format!(
            "scope: batman\nname: postgresql0\nrestapi: {{listen: '127.0.0.1:8008', connect_address: '10.0.0.1:8008'}}\n\
             etcd3: {etcd3}\n\
             postgresql: {{listen: '127.0.0.1:5432', connect_address: '10.0.0.1:5432', data_dir: data,\n\
             \x20 authentication: {{superuser: {{username: postgres}}, replication: {{username: standby}}}}}}\n"
        )
    };
    let good = sandbox.write(
        "etcd3.yml",
        &config("{hosts: '127.0.0.1:2379,127.0.0.2:2379'}"),
    );
    let out = sandbox.patroni(&["--validate-config", good.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let srv = sandbox.write("srv.yml", &config("{srv: example.org}"));
    let out = sandbox.patroni(&["--validate-config", srv.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let suffix = sandbox.write("suffix.yml", &config("{srv_suffix: prod}"));
    let out = sandbox.patroni(&["--validate-config", suffix.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("etcd3.srv_suffix:"),
        "{}",
        stderr(&out)
    );
    let bad = sandbox.write("bad.yml", &config("{host: 'etcd:99999', protocol: ftp}"));
    let out = sandbox.patroni(&[bad.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(64));
    assert!(
        stderr(&out).contains("etcd3.host: expected"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("etcd3.protocol: expected"),
        "{}",
        stderr(&out)
    );
}

/// Without a file, the PATRONI_* environment is the configuration.
#[test]
fn environment_only_configuration_is_used() {
    let sandbox = Sandbox::new();
    let env = [
        ("PATRONI_NAME", "patronidemo-0"),
        ("PATRONI_SCOPE", "patronidemo"),
        ("PATRONI_KUBERNETES_LABELS", "{application: patroni}"),
        ("PATRONI_KUBERNETES_USE_ENDPOINTS", "true"),
        ("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008"),
        ("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.244.0.5:8008"),
        ("PATRONI_POSTGRESQL_LISTEN", "0.0.0.0:5432"),
        ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.244.0.5:5432"),
        (
            "PATRONI_POSTGRESQL_DATA_DIR",
            "/home/postgres/pgdata/pgroot/data",
        ),
        ("PATRONI_SUPERUSER_USERNAME", "postgres"),
        ("PATRONI_REPLICATION_USERNAME", "standby"),
    ];
    let out = sandbox.patroni_with_env(&[], &env);
    // Valid: it gets as far as the DCS, which has no credentials in the sandbox.
    assert_eq!(code(&out), Some(69), "{}", stderr(&out));
    let out = sandbox.patroni_with_env(&[], &[("PATRONI_KUBERNETES_USE_ENDPOINTS", "maybe")]);
    assert_eq!(code(&out), Some(64));
    assert!(
        stderr(&out).contains("PATRONI_KUBERNETES_USE_ENDPOINTS: expected a boolean"),
        "{}",
        stderr(&out)
    );
}

/// A malformed YAML file is reported with the parser's position.
#[test]
fn malformed_yaml_is_reported_with_position() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("bad.yml", "scope: [unclosed\n");
    let out = sandbox.patroni(&[file.to_str().expect("utf-8")]);
    assert_eq!(code(&out), Some(64));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "patroni: failed to parse YAML in {}: ",
            file.display()
        )),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");
}

/// A missing path falls back to the environment, as in Patroni, with a warning first.
#[test]
fn missing_path_falls_back_to_environment_with_warning() {
    let out = Sandbox::new().patroni(&["--validate-config", "/nonexistent.yml"]);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).starts_with(
            "patroni: warning: config path /nonexistent.yml does not exist; building the configuration from the \
             environment\npatroni: invalid configuration, 5 problems:\n"
        ),
        "{}",
        stderr(&out)
    );
}

/// -i without --validate-config is a usage error.
#[test]
fn ignore_listen_port_needs_validate_config() {
    let out = Sandbox::new().patroni(&["-i", "x.yml"]);
    assert_eq!(code(&out), Some(2));
}
