//! The `patronictl` binary end to end.

use std::process::Command;

/// `patronictl version` prints `patronictl version <version>` like Patroni.
#[test]
fn version_prints_like_patroni() {
    let out = Command::new(env!("CARGO_BIN_EXE_patronictl"))
        .arg("version")
        .env_clear()
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("patronictl version {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// `--help` lists the version command; unknown commands are usage errors.
#[test]
fn help_and_unknown_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_patronictl"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("version"));
    let out = Command::new(env!("CARGO_BIN_EXE_patronictl"))
        .arg("frobnicate")
        .env_clear()
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

/// Runs `patronictl ARGS` with a clean environment and `HOME` in `home`.
fn run(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_patronictl"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .output()
        .expect("run")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Configuration problems are `Error: ...` with exit code 1, as Patroni's click exceptions.
#[test]
fn configuration_errors_exit_1_with_patronis_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(dir.path(), &["-c", "/nonexistent/p.yml", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(
        "Error: Provided config file /nonexistent/p.yml not existing or no read rights. Check the -c/--config-file parameter"
    ));
    let o = run(dir.path(), &["-d", "etcd://127.0.0.1:2379", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("supports only kubernetes"),
        "{}",
        stderr(&o)
    );
    let etcd = dir.path().join("etcd.yml");
    std::fs::write(&etcd, "scope: x\netcd:\n  host: 127.0.0.1:2379\n").expect("write");
    let o = run(dir.path(), &["-c", etcd.to_str().expect("utf-8"), "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the \"etcd\" DCS is not supported"));
    let o = run(dir.path(), &["show-config", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "Error: Can not find suitable configuration of distributed configuration store"
        )
    );
}

/// Without a scope or cluster names, `list` only warns (exit 0), as Patroni.
#[test]
fn list_without_cluster_names_warns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(dir.path(), &["list"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("Listing members: No cluster names were provided"));
}

/// Citus groups are refused; a bad `flush` target is a usage error (exit 2).
#[test]
fn unsupported_group_and_bad_flush_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("k8s.yml");
    std::fs::write(
        &cfg,
        "scope: x\nkubernetes:\n  labels: {application: patroni}\n",
    )
    .expect("write");
    let c = cfg.to_str().expect("utf-8");
    let o = run(dir.path(), &["-c", c, "list", "--group", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Citus groups are not supported"));
    let o = run(dir.path(), &["-c", c, "flush", "x", "m0", "bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'bogus' is not one of 'restart', 'switchover'"));
}
