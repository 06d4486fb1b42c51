//! `cargo xtask test`: the whole suite, as CI runs it.
//!
//! Order: the prerequisites (`xtask/scripts/install-test-deps.sh`: system packages, Patroni's
//! Python package in a venv, moto's S3 server in another, the lab's Go modules; idempotent,
//! caches outside the clone), `cargo fmt --check`, clippy with warnings denied, then one lab for
//! the run (building `testenv` if its sources changed) with its real node, and every test
//! binary of the workspace with [`LAB_ENV`] pointing it at that lab, two at a time
//! ([`crate::test_run`]: those that freeze the API server or use the real node alone), then
//! the doc tests, then, alone on the lab, the short nemesis run
//! ([`crate::nemesis::short_run_args`]; `cargo xtask test -- nemesis` runs only it).

use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::Args;
use patroni_testlab::{LAB_ENV, Lab};

/// `test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    no_lint: bool,
    /// Skip installing the prerequisites (packages, Patroni's venv, Go modules).
    #[arg(long)]
    no_install: bool,
    /// Skip the short nemesis run (`cargo xtask nemesis`'s faults, after every test binary).
    #[arg(long)]
    no_nemesis: bool,
    /// How many test binaries run at once (the end-to-end tests mostly wait).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Extra arguments for `cargo test`: before a `--`, for the build (`-p patroni-e2e --test
    /// t55_sync_mode`); after it, for each test binary (a test name filter).
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    if !is_root() {
        bail!("the lab creates network namespaces: run as root");
    }
    if !args.no_install {
        install()?;
    }
    if !args.no_lint {
        cargo(&["fmt", "--all", "--", "--check"])?;
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?;
    }
    // Compile before the lab starts, so a slow build does not count against
    // the lab's lifetime and a compile error fails fast.
    let (build_args, test_args) = split_cargo_args(&args.cargo_args);
    let binaries = crate::test_run::build(&build_args)?;

    report_free_space(&std::env::temp_dir());
    let started = std::time::Instant::now();
    let dir = std::env::temp_dir().join(format!("patroni-test-lab-{}", std::process::id()));
    let mut lab = Lab::start(&dir, std::process::id() as i32).context("start the lab")?;
    eprintln!(
        "xtask: lab up in {:.1}s: kubernetes {} at {}",
        started.elapsed().as_secs_f64(),
        lab.controlplane().version,
        lab.controlplane().server
    );
    let node = lab
        .start_node(std::process::id() as i32)
        .context("start the real node")?;
    eprintln!(
        "xtask: real node {} Ready at {} after {:.1}s",
        node.name,
        node.ip,
        started.elapsed().as_secs_f64()
    );
    let env = vec![
        (LAB_ENV.to_owned(), lab.info_path().display().to_string()),
        ("CARGO".to_owned(), env!("CARGO").to_owned()),
    ];
    let failed = crate::test_run::run_all(binaries, args.jobs, &env, &test_args);
    let doc = if build_args.is_empty() {
        Command::new(env!("CARGO"))
            .args(["test", "--workspace", "--doc"])
            .status()
            .context("run cargo test --doc")?
            .success()
    } else {
        true
    };
    let mut failed = failed;
    if !args.no_nemesis && runs_nemesis(&build_args, &test_args) {
        let report = dir.join("nemesis.md");
        let started = std::time::Instant::now();
        eprintln!("xtask: running the short nemesis run (alone: it freezes the API server) …");
        let passed = match crate::nemesis::run_on(&lab, &crate::nemesis::short_run_args(&report)) {
            Ok(passed) => passed,
            Err(e) => {
                eprintln!("xtask: the nemesis run failed to {e:#}");
                false
            }
        };
        eprintln!(
            "xtask: nemesis {:.1}s {}\n{}",
            started.elapsed().as_secs_f64(),
            if passed { "ok" } else { "FAILED" },
            std::fs::read_to_string(&report).unwrap_or_default()
        );
        if !passed {
            failed.push("nemesis".to_owned());
        }
    }
    lab.stop();
    drop(lab);
    if failed.is_empty() && doc {
        let _ = std::fs::remove_dir_all(&dir);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "xtask: tests failed ({}{}); control plane logs are in {}",
            failed.join(", "),
            if doc { "" } else { " and the doc tests" },
            dir.join("controlplane/logs").display()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Below this, a run is likely to fail for want of disk (data directories, images, backups).
const LOW_DISK: u64 = 6 << 30;

/// Prints the free space where the lab lives; a warning when it is low. The real node's kubelet
/// refuses new pods under 256 MiB (`DiskPressure`), which tests only see as failed pods.
fn report_free_space(dir: &std::path::Path) {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(fs) => {
            let free = fs.blocks_available() * fs.fragment_size();
            let gib = free as f64 / f64::from(1u32 << 30);
            if free < LOW_DISK {
                eprintln!(
                    "xtask: WARNING: only {gib:.1} GiB free under {}: tests may fail for want of disk",
                    dir.display()
                );
            } else {
                eprintln!("xtask: {gib:.1} GiB free under {}", dir.display());
            }
        }
        Err(e) => eprintln!("xtask: free space under {}: {e}", dir.display()),
    }
}

/// Whether the short nemesis run belongs to this run: a whole run, or a filter naming it.
fn runs_nemesis(build_args: &[String], test_args: &[String]) -> bool {
    (build_args.is_empty() && test_args.is_empty()) || test_args.iter().any(|a| a == "nemesis")
}

/// `cargo test`'s arguments split as `cargo test` splits them: options (and their values) for
/// the build, the test name filter and everything after `--` for each test binary.
fn split_cargo_args(args: &[String]) -> (Vec<String>, Vec<String>) {
    const WITH_VALUE: &[&str] = &[
        "-p",
        "--package",
        "--test",
        "--bin",
        "--example",
        "--bench",
        "--features",
        "-F",
        "--target",
        "--exclude",
        "--profile",
        "-j",
        "--jobs",
    ];
    let (mut build, mut test) = (Vec::new(), Vec::new());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            test.extend(args.by_ref().cloned());
        } else if WITH_VALUE.contains(&arg.as_str()) {
            build.push(arg.clone());
            build.extend(args.next().cloned());
        } else if arg.starts_with('-') {
            build.push(arg.clone());
        } else {
            test.push(arg.clone());
        }
    }
    (build, test)
}

/// Runs the install step this command owns.
fn install() -> anyhow::Result<()> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-test-deps.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .with_context(|| format!("run {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(args)
        .status()
        .with_context(|| format!("run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A filter goes to the test binaries, options with their values to the build.
    #[test]
    fn arguments_split_as_cargo_test_splits_them() {
        let (build, test) = split_cargo_args(&strings(&[
            "-p",
            "patroni-e2e",
            "--test",
            "t55_sync_mode",
            "synchronous",
            "--",
            "--nocapture",
        ]));
        assert_eq!(
            build,
            strings(&["-p", "patroni-e2e", "--test", "t55_sync_mode"])
        );
        assert_eq!(test, strings(&["synchronous", "--nocapture"]));
        assert_eq!(
            split_cargo_args(&strings(&["t56"])),
            (Vec::new(), strings(&["t56"]))
        );
    }
}
