//! The leader lease as the lock holder honours it: the moment by which its PostgreSQL must
//! have stopped accepting writes, whatever happens to its HA loop (docs/lease.md).
//!
//! # The rule
//! Another member takes the lock only after it saw the leader record unchanged for `ttl` on
//! its own monotonic clock (Kubernetes), or after the store expired the holder's lease or
//! session `ttl` after it last heard from it (etcd, ZooKeeper), and only by a
//! compare-and-set that fails if the holder renewed in between. Every renewal the others can
//! have seen was *sent* after the holder read its clock for it (`last_lock_renewal` is the
//! cycle's start, before the request). So no other member can be primary before
//! `renewed + ttl / (1 + ε)` of real time, where ε bounds how much faster than real time
//! the other clock may run.
//!
//! The holder's fence fires `fence_lease` after `renewed` on *its* clock, which may run slow
//! by ε as well, and needs up to [`FENCE_LATENCY`] to take effect (the fence process waking
//! up late, the kernel delivering `SIGKILL`). The fence is in time when
//! `fence_lease · (1 + ε) + FENCE_LATENCY ≤ ttl / (1 + ε)`, which [`fence_lease`] satisfies.
//! Neither API latency nor the order in which members observe a renewal enters the bound:
//! they only make the others see a renewal *later*, which moves their expiry later.
//!
//! In failsafe mode a primary also keeps running on the word of every member of its topology
//! ([`super::failsafe`]); a member that accepted a call at or after the call's cycle start
//! follows the caller for `ttl`, so that cycle start counts like a renewal.
//!
//! The HA loop demotes much earlier (`retry_timeout` after the last renewal when the store is
//! unreachable, at once when the lock is lost); the fence is what holds when the loop does
//! not run (a frozen or killed agent, a stalled runtime, a hung request).

use std::time::Duration;

use super::{Action, HaConfig, LockOutcome, Observation, PgServer};
use crate::Tick;

/// Bound on how far any member's monotonic clock rate may differ from real time, in parts
/// per million. Linux slews `CLOCK_MONOTONIC` by at most 500 ppm for NTP and a quartz
/// oscillator is off by well under 100 ppm; 1000 ppm leaves room for both.
pub const CLOCK_RATE_ERROR_PPM: u32 = 1_000;

/// Bound on the time from the fence's deadline to PostgreSQL no longer acknowledging writes:
/// the fence process waking up late and the kernel killing the server's processes.
pub const FENCE_LATENCY: Duration = Duration::from_millis(500);

/// What the fence of this member must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// Stop the server's processes at `until` unless the fence is armed again before.
    Armed {
        /// The deadline on the runtime's monotonic clock.
        until: Tick,
    },
    /// Nothing to fence: the server is not running, is a replica of someone else, this member
    /// never held the lock, or the cluster is paused.
    Disarmed,
}

/// How long after the start of its last renewal the holder's server may keep accepting
/// writes: `ttl / (1 + ε)² − FENCE_LATENCY`, zero when the ttl is too short for that.
pub fn fence_lease(ttl: Duration) -> Duration {
    let ppm = u128::from(CLOCK_RATE_ERROR_PPM);
    let scale = 1_000_000u128;
    let nanos = ttl.as_nanos() * scale * scale / ((scale + ppm) * (scale + ppm));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).saturating_sub(FENCE_LATENCY)
}

/// The fence this observation calls for.
///
/// Armed while the server runs and this member is, or is becoming, the primary: it runs as a
/// primary, or it holds the lock (it may be promoting). The deadline counts from the latest
/// proof that nobody else may be primary: the last renewal, or the last failsafe round every
/// member accepted. Disarmed in pause (Patroni disables its watchdog there too: nobody takes
/// over a paused cluster). A standby leader (the lock holder of a standby cluster, a replica
/// of the remote primary that never promotes) is not a primary: disarmed while it runs in
/// recovery; only a primary still running there (being demoted to a standby leader) is armed.
pub fn fence(obs: &Observation, cfg: &HaConfig) -> Fence {
    let Some(server) = obs.postgres.server() else {
        return Fence::Disarmed;
    };
    if obs.paused || matches!(server, PgServer::Stopped(_)) {
        return Fence::Disarmed;
    }
    let promoting = matches!(obs.memory.in_progress, Some(Action::Promote));
    let primary = matches!(server, PgServer::Primary(_)) || promoting;
    if primary {
        return armed(obs, cfg);
    }
    let holder = match server {
        // A server in recovery (`standby.signal`) accepts no write and leaves recovery only
        // when this member promotes it, which it does only in a cycle that took or renewed
        // the lock: only this cycle's lock outcome arms it. The leader record of the cycle's
        // view alone would fence a lock holder's replica with the deadline of a renewal made
        // before a DCS outage, at the start of the very cycle that renews it again.
        PgServer::Replica(_) => obs.cycle.lock.is_some_and(LockOutcome::holds),
        // A server starting as a primary (crash recovery) accepts writes once it is done.
        _ => holds_lock(obs),
    };
    if cfg.standby_cluster.is_some() || !holder {
        return Fence::Disarmed;
    }
    armed(obs, cfg)
}

/// The fence of a server this member just started or promoted: armed when it holds the lock
/// (a start as primary or a promotion happens only then), disarmed in pause and in a standby
/// cluster (whose lock holder starts as a standby leader and never promotes).
pub fn holder_fence(obs: &Observation, cfg: &HaConfig) -> Fence {
    if obs.paused || !holds_lock(obs) || cfg.standby_cluster.is_some() {
        return Fence::Disarmed;
    }
    armed(obs, cfg)
}

/// Armed from the latest proof that nobody else may be primary.
fn armed(obs: &Observation, cfg: &HaConfig) -> Fence {
    let base = [
        obs.memory.last_lock_renewal,
        obs.memory.failsafe_confirmed_at,
    ]
    .into_iter()
    .flatten()
    .max();
    let ttl = obs
        .store_lease_limit
        .map_or(cfg.ttl, |limit| limit.min(cfg.ttl));
    match base {
        Some(renewed) => Fence::Armed {
            until: renewed.saturating_add(fence_lease(ttl)),
        },
        None => Fence::Disarmed,
    }
}

/// Whether this member holds the lock as far as this cycle knows.
pub(super) fn holds_lock(obs: &Observation) -> bool {
    match obs.cycle.lock {
        Some(outcome) => outcome.holds(),
        None => obs
            .cluster()
            .and_then(|c| c.leader_name())
            .is_some_and(|l| l == obs.me.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_fires_before_any_other_clock_can_count_the_ttl() {
        for secs in [3u64, 5, 10, 20, 30, 3600] {
            let ttl = Duration::from_secs(secs);
            let lease = fence_lease(ttl);
            // Worst case: the holder's clock slow, the other's fast.
            let eps = f64::from(CLOCK_RATE_ERROR_PPM) / 1e6;
            let holder_real = lease.as_secs_f64() * (1.0 + eps) + FENCE_LATENCY.as_secs_f64();
            let other_real = ttl.as_secs_f64() / (1.0 + eps);
            assert!(
                holder_real <= other_real,
                "ttl {secs}: {holder_real} > {other_real}"
            );
            // ... and not much earlier than that (the lease is not wasted).
            assert!(
                other_real - holder_real < 0.001 + secs as f64 * 1e-6,
                "ttl {secs}"
            );
        }
    }

    #[test]
    fn a_ttl_too_short_for_the_latency_fences_at_once() {
        assert_eq!(fence_lease(Duration::from_millis(400)), Duration::ZERO);
        assert_eq!(fence_lease(Duration::ZERO), Duration::ZERO);
    }
}
