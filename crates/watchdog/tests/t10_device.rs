//! The device protocol against the test watchdog device of `patroni-testlab` (a FUSE file
//! this process serves; no `softdog` on the test machines): the real `open`, `ioctl` and
//! `write` calls, and the device's view of them. Needs root and `/dev/fuse`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use patroni_testlab::watchdog::{Event, IDENTITY, TestWatchdogs};
use patroni_watchdog::{Error, WatchdogDevice};

fn mount(names: &[&str]) -> (tempfile::TempDir, TestWatchdogs, Arc<Mutex<Vec<String>>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let resets = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let resets = Arc::clone(&resets);
        Box::new(move |name: &str| resets.lock().expect("resets").push(name.to_owned()))
    };
    let devices = TestWatchdogs::mount(&dir.path().join("dev"), names, hook).expect("mount");
    (dir, devices, resets)
}

fn kinds(devices: &TestWatchdogs, name: &str) -> Vec<Event> {
    devices.events(name).into_iter().map(|(_, e)| e).collect()
}

#[test]
fn open_set_timeout_keepalive_and_magic_close() {
    let (_dir, devices, resets) = mount(&["wd"]);
    let mut wd = WatchdogDevice::open(&devices.path("wd")).expect("open");
    assert_eq!(wd.info().identity, IDENTITY);
    assert!(wd.info().has_set_timeout() && wd.info().has_magic_close());
    assert!(wd.describe().starts_with(IDENTITY), "{}", wd.describe());
    assert_eq!(wd.timeout().expect("default timeout"), 60);
    wd.set_timeout(7).expect("set timeout");
    assert_eq!(wd.timeout().expect("timeout"), 7);
    assert!(matches!(wd.set_timeout(0), Err(Error::InvalidTimeout(0))));
    assert!(matches!(wd.set_timeout(5000), Err(Error::SetTimeout(_))));
    wd.keepalive().expect("keepalive");
    assert!(devices.armed("wd"));
    // A second opener is refused while the first holds it, as by the kernel.
    assert!(matches!(
        WatchdogDevice::open(&devices.path("wd")),
        Err(Error::Open(_))
    ));
    wd.close().expect("magic close");
    std::thread::sleep(Duration::from_millis(100));
    assert!(!devices.armed("wd"));
    assert_eq!(
        kinds(&devices, "wd"),
        [
            Event::Open {
                timeout: Duration::from_secs(60)
            },
            Event::GetSupport,
            Event::GetTimeout,
            Event::SetTimeout(7),
            Event::GetTimeout,
            Event::SetTimeout(5000),
            Event::Keepalive,
            Event::MagicChar,
            Event::Release { disarmed: true },
        ]
    );
    assert!(resets.lock().expect("resets").is_empty());
}

#[test]
fn a_close_without_the_magic_character_leaves_it_armed_until_it_expires() {
    let (_dir, devices, resets) = mount(&["wd"]);
    let mut wd = WatchdogDevice::open(&devices.path("wd")).expect("open");
    wd.set_timeout(1).expect("set timeout");
    wd.keepalive().expect("keepalive");
    drop(wd);
    std::thread::sleep(Duration::from_millis(300));
    assert!(devices.armed("wd"), "a plain close disarmed the device");
    std::thread::sleep(Duration::from_millis(1200));
    let events = devices.events("wd");
    let keepalive = events
        .iter()
        .find(|(_, e)| *e == Event::Keepalive)
        .map(|(at, _)| *at)
        .expect("keepalive");
    let expired = events
        .iter()
        .find(|(_, e)| *e == Event::Expired)
        .map(|(at, _)| *at)
        .expect("expired");
    let after = expired.duration_since(keepalive);
    assert!(
        after >= Duration::from_secs(1) && after < Duration::from_millis(1300),
        "expired {after:?} after the keepalive"
    );
    assert_eq!(*resets.lock().expect("resets"), ["wd"]);
}

#[test]
fn a_file_that_is_not_a_watchdog_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plain");
    std::fs::write(&path, b"").expect("write");
    assert!(matches!(
        WatchdogDevice::open(&path),
        Err(Error::GetSupport(_))
    ));
    assert!(matches!(
        WatchdogDevice::open(&dir.path().join("missing")),
        Err(Error::Open(_))
    ));
}
