//! `postgresql.callbacks`: the user's commands run after Patroni changes the local Postgres.
//!
//! Two halves, as STYLE rule 1 wants:
//!
//! - [`CallbackState`] is the pure part: what the runtime did ([`PgEvent`]) goes in, the
//!   callback to fire (if any) comes out. It keeps Patroni's two pieces of memory: the role
//!   the callbacks are told (`Postgresql.role`, where `demoted` and `uninitialized` are roles
//!   too) and whether any start/stop/restart/role-change callback was fired yet
//!   (`Postgresql.cb_called`), which decides between `on_start` and `on_role_change` after a
//!   demotion, and fires `on_start` at the end of a cycle for a postmaster that was already
//!   running.
//! - [`CallbackRunner`] runs the command, shell-split, with `<action> <role> <scope>`
//!   appended (`script on_role_change primary batman`), without a shell, as the agent's user,
//!   with the agent's environment minus `PATRONI_*`, output logged through `tracing`. It never
//!   waits for the command: a new callback kills (with its process group) the previous one
//!   still running and starts once it is gone; `on_reload` has a slot of its own. A failing or
//!   missing command is logged (WARN) and otherwise ignored.
//!
//! What fires when (Patroni 4, ha-loop §18):
//!
//! | event | callback |
//! |---|---|
//! | bootstrap of a new cluster done | `on_start primary` |
//! | start as primary succeeded | `on_start primary` |
//! | start as primary failed (lock holder) | `on_role_change demoted` |
//! | start as replica after a demotion (role was `primary`/`demoted`, a callback already fired) | `on_role_change replica`, even when the start failed |
//! | any other start as replica succeeded | `on_start replica` |
//! | stop of a running server (also in demote and before `pg_rewind`) | `on_stop <role before>` |
//! | promote succeeded | `on_role_change primary` |
//! | replica re-pointed by reload | `on_reload replica` |
//! | replica re-pointed at the remote as a standby cluster's lock holder, or started so | `on_role_change standby_leader` (`on_start standby_leader` when nothing fired yet) |
//! | standby leader re-pointed at a member (lost the lock) | `on_role_change replica` |
//! | replica found holding a standby cluster's lock, already streaming from the remote | `on_role_change standby_leader` at the end of the cycle |
//! | end of a cycle, server running, nothing fired yet | `on_start <role>` |
//!
//! The crash recovery before `pg_rewind` (a start and stop standing in for Patroni's
//! single-user mode) fires nothing, like Patroni's.

use std::process::Stdio;
use std::sync::Arc;

use patroni_config::Environment;
use patroni_config::model::postgresql::Callbacks;
use patroni_core::Role;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Variables removed from a callback's environment: the agent's own configuration.
const STRIPPED_ENV_PREFIX: &str = "PATRONI_";

/// Which callback (`postgresql.callbacks.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackAction {
    /// Postgres finished starting.
    OnStart,
    /// Postgres was stopped by the agent.
    OnStop,
    /// Postgres was restarted without a role change.
    OnRestart,
    /// The configuration was reloaded.
    OnReload,
    /// The role changed (promote, demote, failed start of the leader).
    OnRoleChange,
}

/// One callback to run: `<command> <action> <role> <scope>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Callback {
    /// Which one.
    pub action: CallbackAction,
    /// The role passed (`primary`, `replica`, `standby_leader`, `demoted`).
    pub role: Role,
}

/// What the runtime did to the local Postgres, as far as callbacks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgEvent {
    /// A new cluster was bootstrapped; Postgres runs as its primary.
    Bootstrapped,
    /// A start in `role` (primary or replica) finished; `ok` whether Postgres is up.
    Started {
        /// The role it was started in.
        role: Role,
        /// Whether it came up.
        ok: bool,
    },
    /// The agent stopped Postgres; `was_running` whether a postmaster was signalled.
    Stopped {
        /// Whether a postmaster ran before the stop.
        was_running: bool,
    },
    /// A demotion stopped the former leader: the role becomes `demoted`.
    Demoted,
    /// `pg_ctl promote` succeeded.
    Promoted,
    /// The running replica's recovery configuration was rewritten and reloaded; `role` is
    /// what it runs as now (`standby_leader` when the lock holder of a standby cluster now
    /// follows the remote, else `replica`).
    Followed {
        /// The role after the change.
        role: Role,
    },
    /// Postgres was restarted (by request) in the same role.
    Restarted,
    /// The running server's configuration was rewritten and reloaded.
    Reloaded,
    /// The data directory was emptied: the role becomes `uninitialized`.
    DataRemoved,
}

/// Patroni's callback memory (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackState {
    /// The role callbacks are told; `None` until known.
    role: Option<Role>,
    /// Whether a start, stop, restart or role-change callback has been fired.
    called: bool,
}

/// Runs the configured commands (see the module doc).
#[derive(Debug)]
pub struct CallbackRunner {
    commands: Callbacks,
    scope: String,
    /// Variables removed from a callback's environment (names of the agent's snapshot).
    stripped_env: Arc<[String]>,
    /// `on_start`, `on_stop`, `on_restart`, `on_role_change`: one at a time.
    main: Slot,
    /// `on_reload`: one at a time, independently of the others.
    reload: Slot,
}

/// At most one running callback.
#[derive(Debug, Default)]
struct Slot {
    current: Option<Running>,
}

/// A callback task: told to kill its command through `kill`, finished when `done` is.
#[derive(Debug)]
struct Running {
    kill: oneshot::Sender<()>,
    done: JoinHandle<()>,
}

// === impl CallbackAction ===

impl CallbackAction {
    /// Every callback, in Patroni's order.
    pub const ALL: [Self; 5] = [
        Self::OnStart,
        Self::OnStop,
        Self::OnRestart,
        Self::OnReload,
        Self::OnRoleChange,
    ];

    /// The name Patroni passes as the first argument (and the configuration key).
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackAction::OnStart => "on_start",
            CallbackAction::OnStop => "on_stop",
            CallbackAction::OnRestart => "on_restart",
            CallbackAction::OnReload => "on_reload",
            CallbackAction::OnRoleChange => "on_role_change",
        }
    }
}

impl std::fmt::Display for CallbackAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl CallbackState ===

impl CallbackState {
    /// The role callbacks would be told now.
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// Records the role of a server seen running (`None`: not running or not answering).
    pub fn observed(&mut self, running: Option<Role>) {
        if let Some(role) = running {
            self.role = Some(role);
        }
    }

    /// The end of a cycle: a running server for which nothing has fired yet (the agent
    /// adopted it) gets `on_start`; a replica that became the standby leader without a change
    /// of its recovery configuration (it streamed from the remote already, as everybody does
    /// in a standby cluster without a leader) gets `on_role_change standby_leader`, as in
    /// Patroni's `follow`.
    pub fn cycle_end(&mut self, running: Option<Role>) -> Option<Callback> {
        let became_standby_leader =
            self.called && running == Some(Role::StandbyLeader) && self.role == Some(Role::Replica);
        self.observed(running);
        let role = running?;
        if became_standby_leader {
            return Some(self.fire(CallbackAction::OnRoleChange, role));
        }
        (!self.called).then(|| self.fire(CallbackAction::OnStart, role))
    }

    /// Patroni's `change_role` of `Postgresql.follow`: starting or re-pointing a server in
    /// `role` after a callback fired announces only the role change when it was a primary (or
    /// demoted), or moves between `replica` and `standby_leader`.
    fn role_changes(&self, role: Role) -> bool {
        self.called
            && (matches!(self.role, Some(Role::Primary | Role::Demoted))
                || matches!(
                    (self.role, role),
                    (Some(Role::Replica), Role::StandbyLeader)
                        | (Some(Role::StandbyLeader), Role::Replica)
                ))
    }

    /// The callback `event` fires, if any.
    pub fn on(&mut self, event: PgEvent) -> Option<Callback> {
        match event {
            PgEvent::Bootstrapped => {
                self.role = Some(Role::Primary);
                Some(self.fire(CallbackAction::OnStart, Role::Primary))
            }
            PgEvent::Started {
                role: Role::Primary,
                ok,
            } => {
                if ok {
                    self.role = Some(Role::Primary);
                    Some(self.fire(CallbackAction::OnStart, Role::Primary))
                } else {
                    // Patroni's post_recover: the lock holder failed to start.
                    self.role = Some(Role::Demoted);
                    Some(self.fire(CallbackAction::OnRoleChange, Role::Demoted))
                }
            }
            PgEvent::Started { role, ok } => {
                // Patroni's `follow`: after a demotion only the role change is announced.
                let change_role = self.role_changes(role);
                self.role = Some(role);
                if change_role {
                    Some(self.fire(CallbackAction::OnRoleChange, role))
                } else {
                    ok.then(|| self.fire(CallbackAction::OnStart, role))
                }
            }
            PgEvent::Stopped { was_running } => {
                let role = self.role?;
                was_running.then(|| self.fire(CallbackAction::OnStop, role))
            }
            PgEvent::Demoted => {
                self.role = Some(Role::Demoted);
                None
            }
            PgEvent::Promoted => {
                self.role = Some(Role::Primary);
                Some(self.fire(CallbackAction::OnRoleChange, Role::Primary))
            }
            PgEvent::Followed { role } => {
                if self.role_changes(role) {
                    self.role = Some(role);
                    Some(self.fire(CallbackAction::OnRoleChange, role))
                } else {
                    let role = self.role.unwrap_or(role);
                    Some(self.fire(CallbackAction::OnReload, role))
                }
            }
            PgEvent::Restarted => {
                let role = self.role?;
                Some(self.fire(CallbackAction::OnRestart, role))
            }
            PgEvent::Reloaded => {
                let role = self.role?;
                Some(self.fire(CallbackAction::OnReload, role))
            }
            PgEvent::DataRemoved => {
                self.role = Some(Role::Uninitialized);
                None
            }
        }
    }

    /// `action` with `role`, remembering that a callback fired.
    fn fire(&mut self, action: CallbackAction, role: Role) -> Callback {
        if action != CallbackAction::OnReload {
            self.called = true;
        }
        Callback { action, role }
    }
}

// === impl CallbackRunner ===

impl CallbackRunner {
    /// Runs `commands` for cluster `scope`.
    pub fn new(commands: Callbacks, scope: &str) -> Self {
        Self {
            commands,
            scope: scope.to_owned(),
            stripped_env: Arc::from([]),
            main: Slot::default(),
            reload: Slot::default(),
        }
    }

    /// Removes the agent's own configuration variables (`PATRONI_*`) of `env`, the agent's
    /// one snapshot of its environment, from the callbacks' environment.
    pub fn stripping(mut self, env: &Environment) -> Self {
        self.stripped_env = env
            .iter()
            .filter(|(k, _)| k.starts_with(STRIPPED_ENV_PREFIX))
            .map(|(k, _)| k.to_owned())
            .collect();
        self
    }

    /// The variables removed from a callback's environment (also from the hooks').
    pub fn stripped(&self) -> &[String] {
        &self.stripped_env
    }

    /// The same runner for changed `commands` (a reload), keeping what it strips.
    pub fn with_commands(&self, commands: Callbacks, scope: &str) -> Self {
        Self {
            stripped_env: Arc::clone(&self.stripped_env),
            ..Self::new(commands, scope)
        }
    }

    /// The command line for `callback`, if one is configured and splits into words.
    pub fn command_line(&self, callback: Callback) -> Option<Vec<String>> {
        let c = &self.commands;
        let command = match callback.action {
            CallbackAction::OnStart => c.on_start.as_deref(),
            CallbackAction::OnStop => c.on_stop.as_deref(),
            CallbackAction::OnRestart => c.on_restart.as_deref(),
            CallbackAction::OnReload => c.on_reload.as_deref(),
            CallbackAction::OnRoleChange => c.on_role_change.as_deref(),
        }?;
        let mut words = match shlex::split(command) {
            Some(words) if !words.is_empty() => words,
            _ => {
                tracing::warn!(callback = %callback.action, command, "cannot split the callback command");
                return None;
            }
        };
        words.extend([
            callback.action.as_str().to_owned(),
            callback.role.as_str().to_owned(),
            self.scope.clone(),
        ]);
        Some(words)
    }

    /// Starts `callback` in the background (if configured), killing the previous one of its
    /// slot if it still runs. Must be called within a Tokio runtime.
    pub fn fire(&mut self, callback: Callback) {
        let Some(argv) = self.command_line(callback) else {
            return;
        };
        tracing::info!(callback = %callback.action, role = %callback.role, "running callback");
        let slot = if callback.action == CallbackAction::OnReload {
            &mut self.reload
        } else {
            &mut self.main
        };
        let previous = slot.current.take().map(|r| {
            let _ = r.kill.send(());
            r.done
        });
        let (kill, kill_rx) = oneshot::channel();
        let stripped = Arc::clone(&self.stripped_env);
        let done = tokio::spawn(run(argv, stripped, previous, kill_rx));
        slot.current = Some(Running { kill, done });
    }

    /// Waits until the callbacks started so far have finished.
    pub async fn wait_idle(&mut self) {
        for slot in [&mut self.main, &mut self.reload] {
            if let Some(r) = slot.current.take() {
                let _ = r.done.await;
            }
        }
    }
}

/// Runs one callback once `previous` (already told to die) is gone, without the `stripped`
/// variables; kills its process group when `kill` fires. A dropped sender (the agent exiting)
/// leaves the command running.
async fn run(
    argv: Vec<String>,
    stripped: Arc<[String]>,
    previous: Option<JoinHandle<()>>,
    mut kill: oneshot::Receiver<()>,
) {
    if let Some(previous) = previous {
        tokio::select! {
            _ = previous => {}
            Ok(()) = &mut kill => return,
        }
    }
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for name in stripped.iter() {
        cmd.env_remove(name);
    }
    let line = argv.join(" ");
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(callback = %line, "failed to run callback: {e}");
            return;
        }
    };
    if let Some(out) = child.stdout.take() {
        tokio::spawn(log_lines(out, line.clone(), "stdout"));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(log_lines(err, line.clone(), "stderr"));
    }
    let status = tokio::select! {
        status = child.wait() => status,
        Ok(()) = &mut kill => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                tracing::info!(callback = %line, "killing the previous callback");
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            child.wait().await
        }
    };
    match status {
        Ok(s) if s.success() => tracing::debug!(callback = %line, "callback finished"),
        Ok(s) => tracing::warn!(callback = %line, status = %s, "callback failed"),
        Err(e) => tracing::warn!(callback = %line, "failed to wait for callback: {e}"),
    }
}

/// Logs each line of a callback's output.
async fn log_lines(stream: impl AsyncRead + Unpin, callback: String, name: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(callback = %callback, stream = name, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallbackAction::*;

    fn cb(action: CallbackAction, role: Role) -> Option<Callback> {
        Some(Callback { action, role })
    }

    fn started(role: Role, ok: bool) -> PgEvent {
        PgEvent::Started { role, ok }
    }

    /// Bootstrap fires `on_start primary`; a cloned replica's first start `on_start replica`.
    #[test]
    fn bootstrap_and_clone_fire_on_start() {
        let mut s = CallbackState::default();
        assert_eq!(s.on(PgEvent::Bootstrapped), cb(OnStart, Role::Primary));
        assert_eq!(s.cycle_end(Some(Role::Primary)), None);

        let mut r = CallbackState::default();
        assert_eq!(
            r.on(started(Role::Replica, true)),
            cb(OnStart, Role::Replica)
        );
        assert_eq!(r.cycle_end(Some(Role::Replica)), None);
    }

    /// A postmaster adopted at startup gets `on_start` at the end of the first cycle, once.
    #[test]
    fn adopted_server_fires_on_start_once() {
        let mut s = CallbackState::default();
        assert_eq!(s.cycle_end(None), None);
        assert_eq!(s.cycle_end(Some(Role::Replica)), cb(OnStart, Role::Replica));
        assert_eq!(s.cycle_end(Some(Role::Replica)), None);
    }

    /// Promote: `on_role_change primary`, never `master`.
    #[test]
    fn promote_fires_role_change_primary() {
        let mut s = CallbackState::default();
        s.on(started(Role::Replica, true));
        let fired = s.on(PgEvent::Promoted);
        assert_eq!(fired, cb(OnRoleChange, Role::Primary));
        assert_eq!(Role::Primary.as_str(), "primary");
    }

    /// Demote: `on_stop primary`, then the start as replica is a role change, not a start
    /// (even when that start fails).
    #[test]
    fn demote_then_follow_fires_stop_then_role_change() {
        let mut s = CallbackState::default();
        s.on(PgEvent::Bootstrapped);
        assert_eq!(
            s.on(PgEvent::Stopped { was_running: true }),
            cb(OnStop, Role::Primary)
        );
        assert_eq!(s.on(PgEvent::Demoted), None);
        assert_eq!(s.role(), Some(Role::Demoted));
        assert_eq!(
            s.on(started(Role::Replica, true)),
            cb(OnRoleChange, Role::Replica)
        );

        let mut f = CallbackState::default();
        f.on(PgEvent::Bootstrapped);
        f.on(PgEvent::Stopped { was_running: true });
        f.on(PgEvent::Demoted);
        assert_eq!(
            f.on(started(Role::Replica, false)),
            cb(OnRoleChange, Role::Replica)
        );
    }

    /// A primary that crashed and restarts read-only (it will be promoted) announces the
    /// role change; a crashed replica restarting just starts.
    #[test]
    fn restart_after_crash() {
        let mut p = CallbackState::default();
        p.on(PgEvent::Bootstrapped);
        assert_eq!(
            p.on(started(Role::Replica, true)),
            cb(OnRoleChange, Role::Replica)
        );

        let mut r = CallbackState::default();
        r.cycle_end(Some(Role::Replica));
        assert_eq!(
            r.on(started(Role::Replica, true)),
            cb(OnStart, Role::Replica)
        );
        assert_eq!(r.on(started(Role::Replica, false)), None);
    }

    /// The lock holder failing to start as primary is `on_role_change demoted`; starting
    /// it successfully is `on_start primary`.
    #[test]
    fn primary_start() {
        let mut s = CallbackState::default();
        assert_eq!(
            s.on(started(Role::Primary, true)),
            cb(OnStart, Role::Primary)
        );
        assert_eq!(
            s.on(started(Role::Primary, false)),
            cb(OnRoleChange, Role::Demoted)
        );
    }

    /// A stop fires only when a postmaster ran; without a known role nothing fires.
    #[test]
    fn stop_needs_a_running_server() {
        let mut s = CallbackState::default();
        assert_eq!(s.on(PgEvent::Stopped { was_running: true }), None);
        s.observed(Some(Role::Replica));
        assert_eq!(s.on(PgEvent::Stopped { was_running: false }), None);
        assert_eq!(
            s.on(PgEvent::Stopped { was_running: true }),
            cb(OnStop, Role::Replica)
        );
    }

    /// Re-pointing a replica by reload is `on_reload`, which does not count as "called": an
    /// adopted server still gets its `on_start`.
    #[test]
    fn follow_reload() {
        let mut s = CallbackState::default();
        s.observed(Some(Role::Replica));
        assert_eq!(
            s.on(PgEvent::Followed {
                role: Role::Replica
            }),
            cb(OnReload, Role::Replica)
        );
        assert_eq!(s.cycle_end(Some(Role::Replica)), cb(OnStart, Role::Replica));
        assert_eq!(s.on(PgEvent::Restarted), cb(OnRestart, Role::Replica));
    }

    /// The standby leader is `standby_leader` for the callbacks (Patroni's role): a primary
    /// demoted to a standby leader, a replica re-pointed at the remote or found holding the
    /// lock while streaming from it announce the role change; losing the lock announces
    /// `replica` again.
    #[test]
    fn standby_leader_role() {
        let mut s = CallbackState::default();
        s.on(PgEvent::Bootstrapped);
        s.on(PgEvent::Demoted);
        assert_eq!(
            s.on(PgEvent::Started {
                role: Role::StandbyLeader,
                ok: true
            }),
            cb(OnRoleChange, Role::StandbyLeader)
        );
        assert_eq!(s.cycle_end(Some(Role::StandbyLeader)), None);
        assert_eq!(
            s.on(PgEvent::Followed {
                role: Role::Replica
            }),
            cb(OnRoleChange, Role::Replica)
        );
        assert_eq!(
            s.on(PgEvent::Followed {
                role: Role::StandbyLeader
            }),
            cb(OnRoleChange, Role::StandbyLeader)
        );
        let mut r = CallbackState::default();
        assert_eq!(
            r.on(PgEvent::Started {
                role: Role::Replica,
                ok: true
            }),
            cb(OnStart, Role::Replica)
        );
        assert_eq!(
            r.cycle_end(Some(Role::StandbyLeader)),
            cb(OnRoleChange, Role::StandbyLeader)
        );
        assert_eq!(r.cycle_end(Some(Role::StandbyLeader)), None);
        let mut adopted = CallbackState::default();
        assert_eq!(
            adopted.cycle_end(Some(Role::StandbyLeader)),
            cb(OnStart, Role::StandbyLeader)
        );
    }

    /// After the data directory is wiped, the next start as replica is a plain start.
    #[test]
    fn reinit_starts_fresh() {
        let mut s = CallbackState::default();
        s.on(PgEvent::Bootstrapped);
        s.on(PgEvent::Stopped { was_running: true });
        s.on(PgEvent::Demoted);
        assert_eq!(s.on(PgEvent::DataRemoved), None);
        assert_eq!(
            s.on(started(Role::Replica, true)),
            cb(OnStart, Role::Replica)
        );
    }

    fn runner(dir: &std::path::Path, on_start: &str) -> CallbackRunner {
        let commands = Callbacks {
            on_start: Some(on_start.to_owned()),
            on_role_change: Some(format!("sh -c 'echo \"$0 $*\" >> {}/out'", dir.display())),
            ..Callbacks::default()
        };
        CallbackRunner::new(commands, "demo")
    }

    /// Only the snapshot's `PATRONI_*` names are stripped, and a stripped variable of the
    /// agent's real environment (here `HOME`, standing in for one) is not inherited.
    #[tokio::test]
    async fn strips_the_agents_own_variables() {
        let env = Environment::new()
            .with_var("PATRONI_SCOPE", "demo")
            .with_var("PATRONI_POSTGRESQL_PASSWORD", "secret")
            .with_var("PGDATA", "/data");
        let dir = tempfile::tempdir().expect("tempdir");
        let r = runner(dir.path(), "true").stripping(&env);
        assert_eq!(
            &*r.stripped_env,
            ["PATRONI_POSTGRESQL_PASSWORD", "PATRONI_SCOPE"]
        );
        let commands = Callbacks {
            on_role_change: Some(format!(
                "sh -c 'echo \"${{HOME:-unset}}\" >> {}/out'",
                dir.path().display()
            )),
            ..Callbacks::default()
        };
        let mut r = CallbackRunner::new(commands, "demo");
        r.stripped_env = Arc::from(["HOME".to_owned()]);
        r.fire(Callback {
            action: OnRoleChange,
            role: Role::Primary,
        });
        r.wait_idle().await;
        let out = std::fs::read_to_string(dir.path().join("out")).expect("callback output");
        assert_eq!(out, "unset\n");
    }

    /// The command is shell-split and gets `<action> <role> <scope>`; unconfigured
    /// callbacks run nothing.
    #[test]
    fn command_lines() {
        let r = runner(std::path::Path::new("/x"), "/bin/cb --flag 'a b'");
        assert_eq!(
            r.command_line(Callback {
                action: OnStart,
                role: Role::Primary
            }),
            Some(
                ["/bin/cb", "--flag", "a b", "on_start", "primary", "demo"]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert_eq!(
            r.command_line(Callback {
                action: OnStop,
                role: Role::Primary
            }),
            None
        );
        let bad = runner(std::path::Path::new("/x"), "'unterminated");
        assert_eq!(
            bad.command_line(Callback {
                action: OnStart,
                role: Role::Primary
            }),
            None
        );
    }

    /// A new callback kills the previous one still running, then runs with its arguments;
    /// a missing program is only logged.
    #[tokio::test]
    async fn runs_and_replaces_callbacks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = runner(dir.path(), "sleep 30");
        r.fire(Callback {
            action: OnStart,
            role: Role::Replica,
        });
        let begun = tokio::time::Instant::now();
        r.fire(Callback {
            action: OnRoleChange,
            role: Role::Primary,
        });
        r.wait_idle().await;
        assert!(begun.elapsed() < std::time::Duration::from_secs(20));
        let out = std::fs::read_to_string(dir.path().join("out")).expect("callback output");
        assert_eq!(out, "on_role_change primary demo\n");

        let mut missing = runner(dir.path(), "/nonexistent/callback");
        missing.fire(Callback {
            action: OnStart,
            role: Role::Primary,
        });
        missing.wait_idle().await;
    }
}
