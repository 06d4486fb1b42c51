//! The nemesis report: the settings, a summary per replication mode and fault, and every
//! round, in markdown; and the verdict the exit code follows.

use std::fmt::Write as _;
use std::time::Duration;

use super::round::{RoundResult, Timing};
use super::{Fault, Implementation, ModeRun, SyncMode};

/// How the run was set up.
pub(crate) struct Settings {
    pub kubernetes: String,
    pub dcs_mode: String,
    pub implementation: Implementation,
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub timing: Timing,
    pub rounds: u32,
}

/// Whether the run passed, and why not.
pub(crate) struct Verdict {
    pub passed: bool,
    pub summary: String,
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn mode_name(mode: SyncMode) -> &'static str {
    match mode {
        SyncMode::Off => "asynchronous (`synchronous_mode: off`)",
        SyncMode::On => "`synchronous_mode: on`",
    }
}

/// Passed: every round ran, no split-brain sample anywhere and no acknowledged row lost in
/// synchronous mode.
pub(crate) fn verdict(runs: &[ModeRun]) -> Verdict {
    let mut problems = Vec::new();
    for run in runs {
        let split: usize = run.rounds.iter().map(|r| r.split.samples).sum();
        let lost: usize = run.rounds.iter().map(|r| r.lost.len()).sum();
        let late = run.rounds.iter().filter(|r| !r.unaided()).count();
        let mode = mode_name(run.mode);
        if !run.errors.is_empty() {
            problems.push(format!("{} failed rounds in {mode}", run.errors.len()));
        }
        if split > 0 {
            problems.push(format!("{split} split-brain samples in {mode}"));
        }
        if lost > 0 && run.mode == SyncMode::On {
            problems.push(format!("{lost} acknowledged rows lost in {mode}"));
        }
        println!(
            "nemesis: {mode}: {} rounds, {split} split-brain samples, {lost} rows lost, {late} \
             rounds not healthy within the deadline without help",
            run.rounds.len()
        );
    }
    Verdict {
        passed: problems.is_empty(),
        summary: if problems.is_empty() {
            "passed: no split-brain sample, no acknowledged row lost in synchronous mode".into()
        } else {
            format!("FAILED: {}", problems.join("; "))
        },
    }
}

/// The report; `error` is why the run stopped early, if it did.
pub(crate) fn render(settings: &Settings, runs: &[ModeRun], error: Option<&str>) -> String {
    let mut out = String::new();
    let s = settings;
    let _ = writeln!(
        out,
        "Settings: {}, Kubernetes {} ({}), ttl {} s, loop_wait {} s, retry_timeout {} s; \
         each fault held {} then healed; recovery deadline ttl + 2 × loop_wait = {} after the \
         heal (+ {} for faults healed by starting the agent); {} round(s) per fault.\n",
        match s.implementation {
            Implementation::Rs => "patroni-rs",
            Implementation::Python => "Python Patroni 4.1.5",
        },
        s.kubernetes,
        s.dcs_mode,
        s.ttl,
        s.loop_wait,
        s.retry_timeout,
        secs(s.timing.hold),
        secs(s.timing.deadline),
        secs(s.timing.restart_slack),
        s.rounds,
    );
    if let Some(e) = error {
        let _ = writeln!(out, "**The run stopped early:** {e}\n");
    }
    for run in runs {
        let _ = writeln!(out, "#### {}\n", mode_name(run.mode));
        summary(&mut out, &run.rounds);
        for e in &run.errors {
            let _ = writeln!(out, "\nFailed round: {e}");
        }
        let _ = writeln!(out, "\n<details><summary>Every round</summary>\n");
        rounds(&mut out, &run.rounds);
        let _ = writeln!(out, "\n</details>\n");
    }
    out
}

fn summary(out: &mut String, rounds: &[RoundResult]) {
    let _ = writeln!(
        out,
        "| fault | rounds | acknowledged | lost | split-brain samples (longest) | longest write \
         outage | healthy after heal (max) | within deadline, unaided | rounds with pg_rewind |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let mut faults: Vec<Fault> = rounds.iter().map(|r| r.fault).collect();
    faults.dedup();
    for fault in faults {
        let rs: Vec<&RoundResult> = rounds.iter().filter(|r| r.fault == fault).collect();
        let acked: usize = rs.iter().map(|r| r.acked).sum();
        let lost: usize = rs.iter().map(|r| r.lost.len()).sum();
        let split: usize = rs.iter().map(|r| r.split.samples).sum();
        let longest = rs.iter().map(|r| r.split.longest).max().unwrap_or_default();
        let outage = rs.iter().filter_map(|r| r.outage).max();
        let recovered: Vec<Duration> = rs.iter().filter_map(|r| r.recovered).collect();
        let unaided = rs.iter().filter(|r| r.unaided()).count();
        let rewound = rs.iter().filter(|r| !r.rewound.is_empty()).count();
        let _ = writeln!(
            out,
            "| {} | {} | {acked} | {lost} | {split} ({}) | {} | {} | {unaided}/{} | {rewound} |",
            fault.name(),
            rs.len(),
            secs(longest),
            outage.map_or("-".into(), secs),
            recovered.iter().max().map_or("never".into(), |d| secs(*d)),
            rs.len(),
        );
    }
}

fn rounds(out: &mut String, rounds: &[RoundResult]) {
    let _ = writeln!(
        out,
        "| fault | # | target → final primary | acknowledged / attempted | lost | split-brain \
         samples (longest) | write outage | healthy after heal | deadline | unaided | pg_rewind on |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rounds {
        let _ = writeln!(
            out,
            "| {} | {} | {} → {} | {} / {} | {} | {} ({}) | {} | {} | {} | {} | {} |",
            r.fault.name(),
            r.round,
            r.target,
            r.final_primary,
            r.acked,
            r.attempted,
            r.lost.len(),
            r.split.samples,
            secs(r.split.longest),
            r.outage.map_or("-".into(), secs),
            r.recovered.map_or("never".into(), secs),
            secs(r.deadline),
            if r.unaided() {
                "yes"
            } else if r.helped {
                "**no** (restored)"
            } else {
                "**no** (late)"
            },
            if r.rewound.is_empty() {
                "-".to_owned()
            } else {
                r.rewound.join(", ")
            },
        );
    }
}
