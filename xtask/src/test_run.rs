//! Running the compiled test binaries of `cargo xtask test` side by side.
//!
//! The end-to-end tests spend most of their time waiting (lock ttls, loops, failovers), so two
//! binaries at a time nearly halve the wall time on a 2-core machine. Two kinds of binary:
//!
//! - **exclusive** ([`EXCLUSIVE`]): they freeze the lab's API server, which every other test
//!   uses, or deploy onto the lab's one real node and build its image (a 3-pod cluster there
//!   did not form within its 240 s while other tests ran beside it); they run alone, one after
//!   the other, after everything else;
//! - **ordinary**: the rest, on any worker.
//!
//! Each binary runs as `cargo test` runs it (in its package's directory, with the lab in
//! [`LAB_ENV`]); its output is kept and printed whole when it ends, so the log reads binary
//! by binary. Doc tests run separately with `cargo test --doc`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;

/// Binaries that run alone: freezing the lab's API server (SIGSTOP), or on its real node.
const EXCLUSIVE: &[&str] = &[
    "t56_failsafe",
    "t80_real_node",
    "t81_helm",
    "t82_helm_stores",
    "t84_helm_backup",
];

/// One compiled test binary.
#[derive(Debug, Clone)]
pub(crate) struct TestBinary {
    /// The test target's name (`t50_ha_cluster`, or the crate name for unit tests).
    pub name: String,
    /// The executable.
    pub executable: PathBuf,
    /// Its package's directory (the working directory `cargo test` gives it).
    pub package_dir: PathBuf,
}

/// Builds every test binary of the workspace and lists them (`cargo test --no-run`).
pub(crate) fn build(cargo_args: &[String]) -> anyhow::Result<Vec<TestBinary>> {
    let output = Command::new(env!("CARGO"))
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .args(cargo_args)
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo test --no-run")?;
    if !output.status.success() {
        anyhow::bail!("cargo test --no-run failed ({})", output.status);
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let (Some(executable), Some(name), Some(manifest)) = (
            msg["executable"].as_str(),
            msg["target"]["name"].as_str(),
            msg["manifest_path"].as_str(),
        ) else {
            continue;
        };
        let package_dir = PathBuf::from(manifest)
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        binaries.push(TestBinary {
            name: name.to_owned(),
            executable: PathBuf::from(executable),
            package_dir,
        });
    }
    binaries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(binaries)
}

/// How one binary ended.
struct Outcome {
    name: String,
    passed: bool,
    seconds: f64,
}

/// Runs `binaries` as the module doc says (the ordinary ones on `jobs` workers), with `env`
/// set for each; the names of the binaries that failed.
pub(crate) fn run_all(
    binaries: Vec<TestBinary>,
    jobs: usize,
    env: &[(String, String)],
    test_args: &[String],
) -> Vec<String> {
    let (exclusive, ordinary): (Vec<_>, Vec<_>) = binaries
        .into_iter()
        .partition(|b| EXCLUSIVE.contains(&b.name.as_str()));
    let ordinary = Mutex::new(VecDeque::from(ordinary));
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            let (ordinary, outcomes) = (&ordinary, &outcomes);
            s.spawn(move || {
                while let Some(binary) = pop(ordinary) {
                    let outcome = run_one(&binary, env, test_args);
                    if let Ok(mut o) = outcomes.lock() {
                        o.push(outcome);
                    }
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap_or_default();
    for binary in exclusive {
        outcomes.push(run_one(&binary, env, test_args));
    }
    eprintln!("xtask: test binaries, in the order they ended:");
    for o in &outcomes {
        eprintln!(
            "xtask:   {:<32} {:>7.1}s {}",
            o.name,
            o.seconds,
            if o.passed { "ok" } else { "FAILED" }
        );
    }
    outcomes
        .into_iter()
        .filter(|o| !o.passed)
        .map(|o| o.name)
        .collect()
}

fn pop(queue: &Mutex<VecDeque<TestBinary>>) -> Option<TestBinary> {
    queue.lock().ok()?.pop_front()
}

/// Runs one binary and prints its output whole.
fn run_one(binary: &TestBinary, env: &[(String, String)], test_args: &[String]) -> Outcome {
    let started = Instant::now();
    eprintln!("xtask: running {} …", binary.name);
    let result = Command::new(&binary.executable)
        .args(test_args)
        .current_dir(&binary.package_dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output();
    let seconds = started.elapsed().as_secs_f64();
    let passed = match &result {
        Ok(out) => {
            // One write each, so concurrent binaries do not interleave line by line.
            let text = format!(
                "\n===== {} ({:.1}s, {})\n{}{}",
                binary.name,
                seconds,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            eprint!("{text}");
            out.status.success()
        }
        Err(e) => {
            eprintln!("xtask: cannot run {}: {e}", binary.executable.display());
            false
        }
    };
    Outcome {
        name: binary.name.clone(),
        passed,
        seconds,
    }
}
