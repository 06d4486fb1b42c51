//! The watchdog (`watchdog.mode: required`) on the lab's Kubernetes, against a watchdog
//! device **the test provides**: the lab machines have no `softdog` (no kernel modules) and
//! no CUSE, so each member's device is a file in a FUSE filesystem this test process serves
//! (`patroni_testlab::watchdog`), which speaks the Linux watchdog protocol (the agent's real
//! `open`, `ioctl` and `write` calls reach it) and records every event with its monotonic
//! instant. Its "reset" SIGKILLs every process on the member's host, as the machine's reset
//! would. This proves the protocol and the timing, not a kernel driver.
//!
//! `ttl: 10`, `loop_wait: 1`, `safety_margin: 5`: the device timeout is 5 s.
//! 1. m0 bootstraps and leads: its device saw open, `WDIOC_SETTIMEOUT(5)`, and a keepalive
//!    about every `loop_wait`.
//! 2. A switchover to m1: m0 disarms its device with the magic close before m1 promotes;
//!    m1 arms its own.
//! 3. m1's agent is frozen (SIGSTOP): its device expires 5 s after the last keepalive, well
//!    before the lease could expire for the others (10 s after the last renewal), the reset
//!    kills m1's PostgreSQL and agent, and only then does m0 arm its device and promote.
//! 4. m2 has `mode: required` and a device path that does not exist: it reports
//!    `watchdog_failed: true` and never becomes the primary, through both changes.

#![allow(
    clippy::disallowed_types,
    reason = "the test device stamps its events with std::time::Instant (CLOCK_MONOTONIC); the \
              freeze and the resets are stamped on the same clock to compare with them"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use patroni_testlab::watchdog::{Event, TestWatchdogs};
use patroni_testlab::{Host, Lab};

const WD_TTL: u32 = 10;
const SAFETY_MARGIN: u32 = 5;
/// `ttl - safety_margin`.
const TIMEOUT: Duration = Duration::from_secs((WD_TTL - SAFETY_MARGIN) as u64);
const MISSING_DEVICE: &str = "/nonexistent/watchdog";

fn instants(events: &[(Instant, Event)], want: Event) -> Vec<Instant> {
    events
        .iter()
        .filter(|(_, e)| *e == want)
        .map(|(at, _)| *at)
        .collect()
}

fn last(events: &[(Instant, Event)], want: Event) -> Option<Instant> {
    instants(events, want).last().copied()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_watchdog_resets_a_frozen_primary_before_its_lease_expires() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t65-watchdog").await.expect("namespace");

    // The devices, served before any agent starts (each agent's mount namespace is a copy).
    let dir = tempfile::tempdir().expect("tempdir");
    // The agents run as the postgres user: it must reach the mount point.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let hosts: Arc<Mutex<BTreeMap<String, Host>>> = Arc::default();
    let resets: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let hook = {
        let (hosts, resets) = (Arc::clone(&hosts), Arc::clone(&resets));
        Box::new(move |name: &str| {
            let at = Instant::now();
            if let Some(host) = hosts.lock().expect("hosts").get(name) {
                for pid in host.pids() {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            resets.lock().expect("resets").push((name.to_owned(), at));
        })
    };
    let devices =
        TestWatchdogs::mount(&dir.path().join("dev"), &["m0", "m1"], hook).expect("mount");
    let device_of = |name: &str| {
        if name == "m2" {
            MISSING_DEVICE.to_owned()
        } else {
            devices.path(name).display().to_string()
        }
    };

    let (mut members, _kubeconfig) = start_cluster_m0_first(lab, &ns, "wd", false, 3, |s| {
        s.ttl = WD_TTL;
        s.loop_wait = 1;
        s.retry_timeout = 3;
        s.extra = format!(
            "watchdog:\n  mode: required\n  device: {}\n  safety_margin: {SAFETY_MARGIN}\n",
            device_of(&s.name)
        );
    })
    .await;
    for m in &members {
        hosts
            .lock()
            .expect("hosts")
            .insert(m.name.clone(), Host::attach(m.host.info().clone()));
    }
    let p = healthy(&members, "formed with a required watchdog").await;
    assert_eq!(members[p].name, "m0");

    tracing::info!("--- 1. m0 leads with its watchdog armed and kept alive");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let m0 = devices.events("m0");
    let kinds: Vec<Event> = m0.iter().map(|(_, e)| *e).collect();
    assert!(
        kinds.starts_with(&[
            Event::Open {
                timeout: Duration::from_secs(60)
            },
            Event::GetSupport,
            Event::SetTimeout(TIMEOUT.as_secs() as i32),
            Event::GetTimeout,
        ]),
        "{kinds:?}"
    );
    let keepalives = instants(&m0, Event::Keepalive);
    let gaps: Vec<Duration> = keepalives.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 4, "too few keepalives: {kinds:?}");
    let mut sorted = gaps.clone();
    sorted.sort();
    let (median, max) = (sorted[sorted.len() / 2], sorted[sorted.len() - 1]);
    println!(
        "m0: {} keepalives, median interval {median:?}, longest {max:?} (loop_wait 1 s, timeout {TIMEOUT:?})",
        keepalives.len()
    );
    // One keepalive per loop: loop_wait 1 s plus the cycle's own time, which a loaded
    // machine stretches (a debug build at load 16 measured a 1.6 s median); what safety needs
    // is the longest gap below the device's timeout, asserted next.
    assert!(
        median >= Duration::from_millis(500) && median <= Duration::from_millis(2500),
        "median keepalive interval {median:?}"
    );
    assert!(
        max < TIMEOUT,
        "a keepalive came {max:?} after the previous one"
    );
    assert!(devices.armed("m0"));

    tracing::info!("--- m2 (device missing) says why it may not lead");
    let (_, status) = get_json(&members[2], "/patroni").expect("GET /patroni on m2");
    assert_eq!(status["watchdog_failed"], true, "{status}");
    let m2_log = std::fs::read_to_string(&members[2].log).unwrap_or_default();
    assert!(
        m2_log.contains("Watchdog device is not usable"),
        "m2 does not say why:\n{m2_log}"
    );

    tracing::info!("--- 2. switchover to m1: m0 disarms with the magic close");
    wait_for(
        Duration::from_secs(30),
        "the switchover to m1 is accepted",
        &members,
        || match rest(
            &members[0],
            "POST",
            "/switchover",
            Some(r#"{"leader": "m0", "candidate": "m1"}"#),
            None,
        ) {
            Some((200, body)) => Some(body),
            _ => None,
        },
    )
    .await;
    wait_for(
        Duration::from_secs(40),
        "m1 is the primary",
        &members,
        || (writable(&members) == ["m1"]).then_some(()),
    )
    .await;
    let m0 = devices.events("m0");
    let m1 = devices.events("m1");
    let magic = last(&m0, Event::MagicChar).expect("m0 wrote the magic character");
    let released = last(&m0, Event::Release { disarmed: true }).expect("m0 disarmed");
    let m1_open = m1
        .iter()
        .find(|(_, e)| matches!(e, Event::Open { .. }))
        .map(|(at, _)| *at)
        .expect("m1 opened its device");
    println!(
        "switchover: m0 disarmed {:?} before m1 armed its device",
        m1_open.saturating_duration_since(released)
    );
    assert!(
        magic <= released && released < m1_open,
        "m0: {m0:?}\nm1: {m1:?}"
    );
    assert!(!devices.armed("m0"));
    assert!(instants(&m1, Event::SetTimeout(TIMEOUT.as_secs() as i32)).len() == 1);
    // Wait until m1 renewed a few times, so that its keepalives are regular.
    tokio::time::sleep(Duration::from_secs(4)).await;

    tracing::info!("--- 3. SIGSTOP of m1's agent: its device resets the host");
    let agent = Pid::from_raw(members[1].agent.as_ref().expect("agent").id() as i32);
    kill(agent, Signal::SIGSTOP).expect("SIGSTOP");
    let frozen_at = Instant::now();
    wait_for(
        Duration::from_secs(20),
        "m1's device expired",
        &members,
        || last(&devices.events("m1"), Event::Expired),
    )
    .await;
    wait_for(
        Duration::from_secs(40),
        "m0 is the primary again",
        &members,
        || (writable(&members) == ["m0"]).then_some(()),
    )
    .await;
    let m0 = devices.events("m0");
    let m1 = devices.events("m1");
    let last_keepalive = last(&m1, Event::Keepalive).expect("m1 keepalives");
    let expired = last(&m1, Event::Expired).expect("expired");
    let reset = resets
        .lock()
        .expect("resets")
        .iter()
        .find(|(n, _)| n == "m1")
        .map(|(_, at)| *at)
        .expect("m1 reset");
    let m0_armed_again = m0
        .iter()
        .filter(|(_, e)| matches!(e, Event::Open { .. }))
        .map(|(at, _)| *at)
        .nth(1)
        .expect("m0 armed its device again");
    println!(
        "frozen primary: frozen {:?} after its last keepalive; the device expired {:?} after \
         it (lease: {WD_TTL} s after the last renewal), the host was reset {:?} after the \
         expiry, m0 armed its device and promoted {:?} after the expiry",
        frozen_at.saturating_duration_since(last_keepalive),
        expired - last_keepalive,
        reset.saturating_duration_since(expired),
        m0_armed_again.saturating_duration_since(expired),
    );
    assert!(
        expired - last_keepalive >= TIMEOUT
            && expired - last_keepalive < TIMEOUT + Duration::from_millis(500),
        "expired {:?} after the last keepalive",
        expired - last_keepalive
    );
    assert!(
        expired < last_keepalive + Duration::from_secs(WD_TTL.into()),
        "the device expired after the lease"
    );
    assert!(
        reset >= expired && reset < m0_armed_again,
        "reset {reset:?}, m0 {m0_armed_again:?}"
    );
    assert!(
        members[1].host.pids().is_empty(),
        "m1's processes survived the reset"
    );
    assert!(
        instants(&m0, Event::Expired).is_empty(),
        "m0's device expired: {m0:?}"
    );

    tracing::info!("--- 4. m2 never led");
    let m2_log = std::fs::read_to_string(&members[2].log).unwrap_or_default();
    assert!(
        !m2_log.contains("acquired the leader lock"),
        "m2 led:\n{m2_log}"
    );
    let (_, status) = get_json(&members[2], "/patroni").expect("GET /patroni on m2");
    assert_eq!(status["watchdog_failed"], true, "{status}");
    assert_eq!(status["role"], "replica", "{status}");

    stop_all(&mut members);
    // The hosts go first: their processes live in mount namespaces that hold copies of the
    // devices' mount, which only ends with them.
    drop(members);
    drop(devices);
}
