//! `postgresql.pre_promote` and `postgresql.before_stop`: the user's commands the agent waits
//! for (Patroni's `_pre_promote` and `_before_stop`), unlike the callbacks, which it never
//! waits for.
//!
//! A hook is shell-split and run without a shell, as the agent's user, with the environment of
//! the callbacks (the agent's minus `PATRONI_*`), its output logged line by line. Patroni waits
//! for a hook without limit while its loop keeps renewing the lock; this loop runs the hook
//! inline, so the wait is bounded (half the `ttl`, see the callers): a hook still running then
//! is killed with its process group and counts as failed. For `pre_promote` that means no
//! promotion: the lock this member renewed before is still valid when `pg_ctl promote` runs.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// It exited with this code (`None`: killed by a signal).
    Exited(Option<i32>),
    /// It could not be started (or its command did not split into words).
    NotStarted(String),
    /// It was still running at its time limit and was killed.
    TimedOut,
}

// === impl HookOutcome ===

impl HookOutcome {
    /// Whether it exited with 0.
    pub fn succeeded(&self) -> bool {
        *self == HookOutcome::Exited(Some(0))
    }
}

/// Runs hook `what` (`pre_promote`, `before_stop`): `command` without the variables named in
/// `stripped`, waiting at most `limit`.
pub async fn run(what: &str, command: &str, stripped: &[String], limit: Duration) -> HookOutcome {
    let words = match shlex::split(command) {
        Some(words) if !words.is_empty() => words,
        _ => return HookOutcome::NotStarted(format!("cannot split `{command}` into words")),
    };
    let Some((program, args)) = words.split_first() else {
        return HookOutcome::NotStarted(format!("`{command}` is empty"));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for name in stripped {
        cmd.env_remove(name);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return HookOutcome::NotStarted(format!("{program}: {e}")),
    };
    tracing::info!(hook = what, command, "running the {what} script");
    let mut output = tokio::task::JoinSet::new();
    if let Some(out) = child.stdout.take() {
        output.spawn(log_lines(out, what.to_owned(), "stdout"));
    }
    if let Some(err) = child.stderr.take() {
        output.spawn(log_lines(err, what.to_owned(), "stderr"));
    }
    let outcome = match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => HookOutcome::Exited(status.code()),
        Ok(Err(e)) => HookOutcome::NotStarted(format!("wait for {program}: {e}")),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait().await;
            HookOutcome::TimedOut
        }
    };
    // The output of a hook that exited is logged whole; a killed one's pipes close with it.
    while output.join_next().await.is_some() {}
    match &outcome {
        HookOutcome::Exited(code) => {
            tracing::info!(
                hook = what,
                "{what} script `{command}` exited with {code:?}"
            );
        }
        HookOutcome::NotStarted(e) => {
            tracing::error!(hook = what, "{what} script `{command}` did not run: {e}");
        }
        HookOutcome::TimedOut => tracing::error!(
            hook = what,
            "{what} script `{command}` was still running after {limit:?} and was killed"
        ),
    }
    outcome
}

/// Logs each line of a hook's output.
async fn log_lines(stream: impl AsyncRead + Unpin, hook: String, name: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(hook = %hook, stream = name, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exit codes come back; output is read to the end; a hook past its limit is killed; a
    /// command that cannot run says why; the stripped variables are gone.
    #[tokio::test]
    async fn hooks_report_how_they_ended() {
        let long = Duration::from_secs(10);
        assert_eq!(
            run("pre_promote", "sh -c 'echo fenced; exit 0'", &[], long).await,
            HookOutcome::Exited(Some(0))
        );
        assert_eq!(
            run("pre_promote", "sh -c 'exit 3'", &[], long).await,
            HookOutcome::Exited(Some(3))
        );
        assert_eq!(
            run("pre_promote", "sleep 30", &[], Duration::from_millis(200)).await,
            HookOutcome::TimedOut
        );
        assert!(matches!(
            run("before_stop", "/nonexistent/hook", &[], long).await,
            HookOutcome::NotStarted(_)
        ));
        assert!(matches!(
            run("before_stop", "sh -c 'unbalanced", &[], long).await,
            HookOutcome::NotStarted(_)
        ));
        // HOME is set for the test process; stripped, the hook does not see it.
        let stripped = vec!["HOME".to_owned()];
        assert_eq!(
            run("before_stop", "sh -c 'test -z \"$HOME\"'", &stripped, long).await,
            HookOutcome::Exited(Some(0))
        );
    }
}
