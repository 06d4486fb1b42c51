//! A member without data (ha-loop.md §3, §2.9): the bootstrap race, cloning
//! a replica, waiting for a leader, and the end of a bootstrap.
//!
//! Invariant: [`Action::Bootstrap`] (and, in a standby cluster, instead of it
//! [`Action::BootstrapStandby`]) is emitted only for an empty data
//! directory and only right after this member won the `initialize` race;
//! [`Action::CloneReplica`] only for an empty data directory.

use super::context::{Ctx, sysid_valid};
use super::decide::release;
use super::{Action, CloneSource, Decision, LockOutcome, PgServer, StopMode};

/// §2.9 and §3: the data directory is empty.
pub(super) fn empty_data_directory(ctx: &Ctx<'_>) -> Decision {
    if ctx.view_says_leader() {
        return Decision::new(
            vec![release()],
            "released leader key voluntarily as data dir empty and currently leader",
        );
    }
    if ctx.paused() {
        return Decision::report("running with empty data directory");
    }
    let cluster = ctx.cluster;
    if !cluster.is_locked()
        && cluster.initialize.is_none()
        && !ctx.tags().nofailover()
        && ctx.cfg.can_bootstrap
    {
        return match ctx.obs.cycle.initialize {
            None => Decision::ask(Action::TakeInitializeKey, "racing for the initialize key"),
            Some(true) => match ctx.standby_remote() {
                Some(remote) => Decision::new(
                    vec![Action::BootstrapStandby {
                        remote: remote.clone(),
                    }],
                    "trying to bootstrap a new standby leader",
                ),
                None => Decision::new(vec![Action::Bootstrap], "trying to bootstrap a new cluster"),
            },
            Some(false) => Decision::report("failed to acquire initialize lock"),
        };
    }
    if cluster.is_locked()
        && let Some(source) = ctx.clone_source()
    {
        let clone = Action::CloneReplica { source };
        let message = format!("trying to {}", clone.task_name());
        return Decision::new(vec![clone], message);
    }
    let concurrent_bootstrap = cluster.initialize.as_deref() == Some("");
    if !cluster.is_locked() && ctx.cfg.create_replica_without_leader && !concurrent_bootstrap {
        return Decision::new(
            vec![Action::CloneReplica {
                source: CloneSource::WithoutLeader,
            }],
            "trying to bootstrap (without leader)",
        );
    }
    Decision::report(if ctx.is_standby_cluster() {
        "waiting for standby_leader to bootstrap"
    } else {
        "waiting for leader to bootstrap"
    })
}

/// §3.3: the bootstrap this member ran has just finished. On success take
/// the lock, then publish the system identifier and the dynamic
/// configuration; on failure give the `initialize` key back, keep the data
/// for inspection and stop the agent.
pub(super) fn after_bootstrap(ctx: &Ctx<'_>) -> Option<Decision> {
    let finished = ctx.obs.memory.finished.as_ref()?;
    // A standby leader's bootstrap ends with a replica of the remote, a new cluster's with
    // a primary.
    let running = match finished.action {
        Action::Bootstrap => matches!(ctx.server(), Some(PgServer::Primary(_))),
        Action::BootstrapStandby { .. } => matches!(ctx.server(), Some(PgServer::Replica(_))),
        _ => return None,
    };
    // Patroni's `post_bootstrap` arms the watchdog before it takes the lock (a standby
    // leader needs none); a required one that cannot be armed cancels the bootstrap.
    let mut watchdog_failed = !super::watchdog::healthy(ctx.obs, ctx.cfg);
    if finished.succeeded && running && !watchdog_failed && finished.action == Action::Bootstrap {
        match super::watchdog::activation(ctx.obs, ctx.cfg) {
            super::watchdog::Activation::Ask(query) => {
                return Some(Decision::ask(
                    query,
                    "activating the watchdog after bootstrap",
                ));
            }
            super::watchdog::Activation::Failed => watchdog_failed = true,
            super::watchdog::Activation::Proceed => {}
        }
    }
    if !finished.succeeded || !running || watchdog_failed {
        let reason = "Failed to bootstrap cluster".to_string();
        let message = if watchdog_failed && finished.succeeded {
            "Cancelling bootstrap because watchdog activation failed"
        } else {
            "removing initialize key after failed attempt to bootstrap the cluster"
        };
        return Some(Decision::new(
            vec![
                Action::DeleteInitializeKey,
                Action::StopPostgres {
                    mode: StopMode::Immediate,
                },
                Action::MoveDataDirectoryAside,
                Action::Fatal { reason },
            ],
            message,
        ));
    }
    if ctx.cluster.is_locked() {
        // Somebody holds the lock already (or this member does): the usual
        // rules renew it or demote this primary.
        return None;
    }
    let sysid = ctx.data()?.sysid.clone();
    match ctx.lock() {
        None => Some(super::race::acquire_step(
            ctx,
            "taking the leader lock after bootstrap",
        )),
        // Without a readable sysid the key keeps saying "bootstrap in progress"; the lock
        // holder's housekeeping writes it once pg_controldata answers.
        Some(LockOutcome::Acquired | LockOutcome::Renewed) if !sysid_valid(Some(&sysid)) => {
            Some(Decision::new(
                vec![Action::WriteConfig],
                "initialized a new cluster; its system identifier is not readable yet",
            ))
        }
        Some(LockOutcome::Acquired | LockOutcome::Renewed) => Some(Decision::new(
            vec![Action::WriteInitializeKey { sysid }, Action::WriteConfig],
            "initialized a new cluster",
        )),
        // Somebody else holds the lock: the usual rules demote this primary.
        Some(LockOutcome::Refused) => None,
    }
}
