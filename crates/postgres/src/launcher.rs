//! How PostgreSQL programs are spawned: directly in production, behind a prefix in tests.
//!
//! The agent runs as the `postgres` OS user next to its server, so a program is simply
//! executed. Tests run the same code as root against a server on a lab host, where every
//! program must run inside the host's network namespace as `postgres`:
//! `ip netns exec <ns> setpriv --reuid=postgres --regid=postgres --init-groups -- <program>`.
//! [`Launcher`] is that prefix.
//!
//! # Assumptions
//! Every word of the prefix `exec`s the next one (`ip netns exec` and `setpriv` do), so the pid
//! of the spawned child is the program's own pid. Signals to the postmaster and the "ready"
//! check (`postmaster.pid` names the child) rely on it.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::BinDir;

/// Environment variables removed from every program's environment: the agent's own
/// configuration (which may hold passwords) and systemd's notification socket, as Patroni does.
const STRIPPED_ENV_PREFIXES: [&str; 2] = ["PATRONI_", "KUBERNETES_"];
/// Single variables removed from every program's environment.
const STRIPPED_ENV_VARS: [&str; 1] = ["NOTIFY_SOCKET"];
/// Patroni passes `PG_MALLOC_ARENA_MAX` to postgres as `MALLOC_ARENA_MAX`.
const MALLOC_ARENA_VAR: (&str, &str) = ("PG_MALLOC_ARENA_MAX", "MALLOC_ARENA_MAX");

/// A command prefix put in front of every PostgreSQL program (empty in production), and what
/// changes in the programs' environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launcher {
    prefix: Vec<OsString>,
    /// Variables of the agent's environment the programs do not inherit.
    removed: Vec<String>,
    /// Variables set for the programs.
    set: Vec<(String, String)>,
}

/// The PostgreSQL programs and how to launch them: what every operation of this crate that
/// runs a program needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs {
    bin: BinDir,
    launcher: Launcher,
}

// === impl Launcher ===

impl Launcher {
    /// Runs programs directly.
    pub fn direct() -> Self {
        Self::default()
    }

    /// Runs programs behind `prefix` (see the module doc for what it must do).
    pub fn with_prefix<I, S>(prefix: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Launcher {
            prefix: prefix.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Adjusts the programs' environment to `vars`, the agent's one snapshot of its own: the
    /// agent's configuration (`PATRONI_*`, `KUBERNETES_*`) and `NOTIFY_SOCKET` are not
    /// inherited, `PG_MALLOC_ARENA_MAX` becomes `MALLOC_ARENA_MAX`, as Patroni does.
    #[must_use]
    pub fn with_environment<'a>(
        mut self,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        for (name, value) in vars {
            if STRIPPED_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
                || STRIPPED_ENV_VARS.contains(&name)
            {
                self.removed.push(name.to_owned());
            }
            if name == MALLOC_ARENA_VAR.0 {
                self.set
                    .push((MALLOC_ARENA_VAR.1.to_owned(), value.to_owned()));
            }
        }
        self
    }

    /// Runs programs in network namespace `netns` as OS user `user` (root only): the lab's
    /// test hosts.
    pub fn netns_as(netns: &str, user: &str) -> Self {
        Self::with_prefix([
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            netns.to_owned(),
            "setpriv".to_owned(),
            format!("--reuid={user}"),
            format!("--regid={user}"),
            "--init-groups".to_owned(),
            "--".to_owned(),
        ])
    }

    /// The prefix.
    pub fn prefix(&self) -> &[OsString] {
        &self.prefix
    }

    /// A command running `program` with `args` behind the prefix, with the agent's
    /// configuration removed from its environment.
    pub fn command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut cmd = tokio::process::Command::new(first);
                cmd.args(rest).arg(program);
                cmd
            }
            None => tokio::process::Command::new(program),
        };
        for name in &self.removed {
            cmd.env_remove(name);
        }
        cmd.envs(self.set.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

// === impl Programs ===

impl Programs {
    /// `bin` launched by `launcher`.
    pub fn new(bin: BinDir, launcher: Launcher) -> Self {
        Programs { bin, launcher }
    }

    /// Where the programs are.
    pub fn bin(&self) -> &BinDir {
        &self.bin
    }

    /// How they are launched.
    pub fn launcher(&self) -> &Launcher {
        &self.launcher
    }

    /// Path of program `name`.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.program(name)
    }

    /// A command running program `name` (`initdb`, `pg_ctl`, …) through the launcher.
    pub fn command(&self, name: &str) -> tokio::process::Command {
        self.launcher.command(self.bin.program(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Without a prefix the program itself is run.
    #[test]
    fn direct_launch_runs_the_program() {
        let cmd = Launcher::direct().command("/bin/true");
        assert_eq!(cmd.as_std().get_program(), "/bin/true");
        assert_eq!(cmd.as_std().get_args().count(), 0);
    }

    /// The agent's own variables are removed from the programs' environment and
    /// `PG_MALLOC_ARENA_MAX` is passed on as `MALLOC_ARENA_MAX`; others are left alone.
    #[test]
    fn environment_of_programs() {
        let vars = [
            ("PATRONI_SCOPE", "demo"),
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("NOTIFY_SOCKET", "/run/notify"),
            ("PG_MALLOC_ARENA_MAX", "2"),
            ("PGDATA", "/data"),
        ];
        let cmd = Launcher::direct()
            .with_environment(vars)
            .command("/bin/true");
        let envs: Vec<(String, Option<String>)> = cmd
            .as_std()
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(
            envs,
            [
                ("KUBERNETES_SERVICE_HOST".to_owned(), None),
                ("MALLOC_ARENA_MAX".to_owned(), Some("2".to_owned())),
                ("NOTIFY_SOCKET".to_owned(), None),
                ("PATRONI_SCOPE".to_owned(), None),
            ]
        );
    }

    /// With a prefix the program comes after it.
    #[test]
    fn prefix_comes_first() {
        let programs = Programs::new(
            BinDir::new(Some(Path::new("/usr/lib/postgresql/15/bin"))),
            Launcher::netns_as("ns1", "postgres"),
        );
        let mut cmd = programs.command("initdb");
        cmd.arg("-D");
        let std = cmd.as_std();
        assert_eq!(std.get_program(), "ip");
        let args: Vec<_> = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "netns",
                "exec",
                "ns1",
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
                "/usr/lib/postgresql/15/bin/initdb",
                "-D"
            ]
        );
    }

    /// A launched program runs and its output is captured (real process).
    #[tokio::test]
    async fn launched_program_runs() {
        let out = Launcher::with_prefix(["env"])
            .command("echo")
            .arg("hi")
            .output()
            .await
            .expect("run env echo");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    }
}
