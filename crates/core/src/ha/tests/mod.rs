//! Unit tests of the HA decision, one file per area of `ha-loop.md`. Each
//! test drives [`decide`](fn@super::decide) through one cycle with a scripted
//! runtime ([`fixtures::run`]), checks the invariants after every step, and
//! asserts the exact queries, actions and message.

mod fixtures;
mod t10_bootstrap;
mod t20_leader;
mod t30_race;
mod t35_resumed_after_pause;
mod t40_failover;
mod t50_follower;
mod t60_outage_pause_shutdown;
mod t65_failsafe;
mod t66_lease;
mod t67_standby_cluster;
mod t70_invariants;
mod t80_restart;
