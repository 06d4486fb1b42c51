//! Network namespaces and links, through iproute2's `ip`.
//!
//! Names: every namespace of a lab is `plab<OWNER>-<ROLE>`, where OWNER is the
//! pid of the process that created the lab. That makes leftovers of a killed
//! run recognisable: [`sweep_stale`] removes those whose owner is gone.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Error, Result};

/// Prefix of every namespace a lab creates.
pub(crate) const PREFIX: &str = "plab";

/// How long killed processes get to disappear before a namespace is deleted.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Runs `ip ARGS…`, failing with its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

/// Runs a command to completion, failing with its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<()> {
    run_command(
        Command::new(program).args(args),
        &format!("{program} {}", args.join(" ")),
    )
}

/// Runs `cmd` to completion; `what` names it in the error, with its stderr.
pub(crate) fn run_command(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| Error::Command {
        what: what.to_owned(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        what: what.to_owned(),
        detail: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// Creates namespace `name` with loopback up.
pub(crate) fn create(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"])
}

/// Pids of the processes whose network namespace is `name`.
pub(crate) fn pids(name: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process in namespace `name` (SIGKILL, by pid), waits for
/// them to go, then deletes the namespace. Errors are logged: this runs from
/// `Drop` and during sweeps, where nobody can act on them.
pub(crate) fn destroy(name: &str) {
    if !Path::new("/run/netns").join(name).exists() {
        return;
    }
    let deadline = std::time::Instant::now() + KILL_WAIT;
    loop {
        let pids = pids(name);
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        if std::time::Instant::now() > deadline {
            tracing::warn!(
                netns = name,
                ?pids,
                "processes survived SIGKILL; deleting the namespace anyway"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Err(e) = ip(&["netns", "del", name]) {
        tracing::warn!(netns = name, "failed to {e}");
    }
    // Files `ip netns exec` mounts over /etc (a host's own resolv.conf).
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(name));
}

/// Whether a process with this pid exists.
pub(crate) fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// Owner pid encoded in a lab namespace name, if it is one.
fn owner_of(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Removes the namespaces (and the processes in them) of labs that are no
/// longer in use: the owning process is gone and nothing runs in the lab's
/// control-plane namespace any more (a lab started by `cargo xtask lab up`
/// outlives its owner, but its API server keeps that namespace busy).
/// Returns the names removed.
pub fn sweep_stale() -> Vec<String> {
    let mut owners: Vec<i32> = list().iter().filter_map(|n| owner_of(n)).collect();
    owners.sort_unstable();
    owners.dedup();
    let mut removed = Vec::new();
    for owner in owners {
        if alive(owner) || !pids(&format!("{PREFIX}{owner}-cp")).is_empty() {
            continue;
        }
        for name in of_owner(owner) {
            destroy(&name);
            removed.push(name);
        }
    }
    removed
}

/// Names of all network namespaces.
fn list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Namespaces belonging to the lab owned by `owner`.
pub(crate) fn of_owner(owner: i32) -> Vec<String> {
    list()
        .into_iter()
        .filter(|n| owner_of(n) == Some(owner))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only names of the form plab<PID>-<ROLE> belong to a lab.
    #[test]
    fn owner_is_parsed_from_lab_names_only() {
        assert_eq!(owner_of("plab123-hub"), Some(123));
        assert_eq!(owner_of("plab123-h7"), Some(123));
        assert_eq!(owner_of("plab-h7"), None);
        assert_eq!(owner_of("other123-hub"), None);
        assert_eq!(owner_of("plab12x-hub"), None);
    }
}
