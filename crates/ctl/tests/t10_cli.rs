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
