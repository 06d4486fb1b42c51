//! The fence process: waits for its deadline and kills PostgreSQL when the agent did not move
//! it in time. Plain blocking code (no async runtime): it must keep working when everything
//! else in the agent does not.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;

use super::procfs;

/// The postmaster to fence and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Armed {
    pid: u32,
    /// The postmaster's start time, so that a recycled pid is never killed.
    started: u64,
    deadline_ns: u128,
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn monotonic_ns() -> u128 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u128::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u128::try_from(t.tv_nsec()).unwrap_or(0)
    })
}

/// Runs the fence for `data_dir` (only named in messages and in the command line, by which a
/// restarted agent finds the fences of its predecessor) until its input ends and nothing is
/// armed. Returns the process's exit code.
pub fn run(data_dir: &Path) -> u8 {
    let stdin = std::io::stdin();
    let mut armed: Option<Armed> = None;
    let mut input_open = true;
    let mut pending = Vec::new();
    loop {
        if let Some(a) = armed {
            let now = monotonic_ns();
            if now >= a.deadline_ns {
                fence(data_dir, a, now - a.deadline_ns);
                armed = None;
                continue;
            }
        }
        if !input_open {
            match armed {
                None => return 0,
                Some(a) => {
                    sleep_until(a.deadline_ns);
                    continue;
                }
            }
        }
        let timeout = armed.map_or(PollTimeout::NONE, |a| poll_timeout(a.deadline_ns));
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                say(&format!(
                    "cannot wait for the agent ({e}); the fence stays armed"
                ));
                input_open = false;
                continue;
            }
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) | Err(_) => input_open = false,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            match parse(line.trim()) {
                Ok(Command::Arm { pid, deadline_ns }) => {
                    armed = procfs::start_time(pid).map(|started| Armed {
                        pid,
                        started,
                        deadline_ns,
                    });
                }
                Ok(Command::Disarm) => armed = None,
                Err(e) => say(&format!("ignored {line:?}: {e}")),
            }
        }
    }
}

/// One instruction from the agent.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Arm { pid: u32, deadline_ns: u128 },
    Disarm,
}

fn parse(line: &str) -> Result<Command, &'static str> {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("disarm") => Ok(Command::Disarm),
        Some("arm") => {
            let pid = words.next().and_then(|w| w.parse().ok()).ok_or("no pid")?;
            let deadline_ns = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or("no deadline")?;
            Ok(Command::Arm { pid, deadline_ns })
        }
        _ => Err("unknown instruction"),
    }
}

/// The poll timeout that wakes at `deadline_ns` at the latest (rounded down to milliseconds;
/// an early wake-up just polls again).
fn poll_timeout(deadline_ns: u128) -> PollTimeout {
    let left_ms = deadline_ns.saturating_sub(monotonic_ns()) / 1_000_000;
    PollTimeout::try_from(left_ms.min(60_000) as i32).unwrap_or(PollTimeout::ZERO)
}

fn sleep_until(deadline_ns: u128) {
    let left = deadline_ns.saturating_sub(monotonic_ns());
    std::thread::sleep(Duration::from_nanos(
        u64::try_from(left).unwrap_or(u64::MAX),
    ));
}

/// Stops the postmaster (so it starts nothing new), kills every process it started, then
/// kills it.
fn fence(data_dir: &Path, a: Armed, late_ns: u128) {
    if procfs::start_time(a.pid) != Some(a.started) {
        return;
    }
    let pm = Pid::from_raw(i32::try_from(a.pid).unwrap_or(i32::MAX));
    let _ = kill(pm, Signal::SIGSTOP);
    let children = procfs::children(a.pid);
    for c in &children {
        let _ = kill(
            Pid::from_raw(i32::try_from(*c).unwrap_or(i32::MAX)),
            Signal::SIGKILL,
        );
    }
    let _ = kill(pm, Signal::SIGKILL);
    say(&format!(
        "the leader lease ran out without a renewal: killed PostgreSQL on {} (postmaster {} and \
         {} server processes, {:.1} ms after the deadline) so that it acknowledges no write \
         after another member may have been promoted",
        data_dir.display(),
        a.pid,
        children.len(),
        late_ns as f64 / 1e6,
    ));
}

/// One line on stderr (the agent's log), in the shape of the agent's own plain log lines.
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "ERROR lease fence: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_parse() {
        assert_eq!(parse("disarm"), Ok(Command::Disarm));
        assert_eq!(
            parse("arm 42 123456789012"),
            Ok(Command::Arm {
                pid: 42,
                deadline_ns: 123_456_789_012
            })
        );
        assert!(parse("arm x 1").is_err());
        assert!(parse("arm 1").is_err());
        assert!(parse("boom").is_err());
    }

    #[test]
    fn a_recycled_pid_is_left_alone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let started = procfs::start_time(child.id()).expect("start time");
        fence(
            Path::new("/nowhere"),
            Armed {
                pid: child.id(),
                started: started + 1,
                deadline_ns: 0,
            },
            0,
        );
        assert_eq!(child.try_wait().expect("wait"), None, "killed a stranger");
        fence(
            Path::new("/nowhere"),
            Armed {
                pid: child.id(),
                started,
                deadline_ns: 0,
            },
            0,
        );
        let status = child.wait().expect("wait");
        assert!(!status.success());
    }
}
