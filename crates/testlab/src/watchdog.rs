//! A watchdog device the test provides: files in a FUSE filesystem that this process serves,
//! one per member, each behaving like a Linux watchdog driver (`linux/watchdog.h`) whose
//! "reset" is whatever the test says. For machines without `softdog` (no kernel modules) and
//! without CUSE: FUSE passes ioctls on regular files in restricted mode, where the kernel
//! decodes the command's direction and size and copies the buffers itself, and the watchdog
//! ioctls are properly encoded, so the agent's real `ioctl(2)` calls reach this code unchanged.
//!
//! Semantics, as the kernel's watchdog core gives them to a driver with `nowayout=0`:
//! - `open` arms the timer (only one opener at a time: a second gets `EBUSY`);
//! - `WDIOC_GETSUPPORT` answers [`IDENTITY`] with `SETTIMEOUT | MAGICCLOSE | KEEPALIVEPING`;
//! - `WDIOC_SETTIMEOUT` sets the timeout (1..=[`MAX_TIMEOUT`] s, else `EINVAL`) and pings,
//!   answering the timeout set; `WDIOC_GETTIMEOUT` answers it; `WDIOC_KEEPALIVE` pings;
//! - every `write` pings; a write containing `V` allows the next release to disarm;
//! - release after `V` disarms; release without it leaves the timer running ("watchdog did
//!   not stop!");
//! - when the timer runs out while armed the device expires: it records it, calls the test's
//!   reset hook (as the machine's reset would act), and is disarmed and closed, as a rebooted
//!   machine's device is.
//!
//! Every event is recorded with the `std::time::Instant` (`CLOCK_MONOTONIC`) it happened at.
//! The filesystem is mounted in the test process's mount namespace, so that the agents the test
//! starts (`ip netns exec` copies it) see it; see [`UNMOUNT_WAIT`] for what that leaves.
//! `WDIOC_SETOPTIONS` is `_IOR` although it passes its argument in; restricted FUSE ioctls
//! copy nothing in for it, so this device answers `ENOTTY` (patroni-rs does not use it).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, IoctlFlags, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyOpen, ReplyWrite, Request, WriteFlags,
};

use crate::{Error, Result};

/// What `WDIOC_GETSUPPORT` names the device.
pub const IDENTITY: &str = "patroni-rs test watchdog";
/// The timeout of a freshly opened device (`softdog`'s default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest timeout `WDIOC_SETTIMEOUT` accepts.
pub const MAX_TIMEOUT: u32 = 3600;
/// How often the expiry thread looks at the timers.
const TICK: Duration = Duration::from_millis(20);
/// How long dropping the devices waits for the FUSE session to end. The filesystem is mounted
/// in this process's mount namespace, the machine's: every mount namespace made while it is
/// mounted (each `ip netns exec`, this test's and any other run's on the machine) holds a copy
/// until its last process exits, and the session ends only then. The session thread is left
/// behind after this wait; once this process exits, the kernel aborts the connection and those
/// copies answer `ENOTCONN` (nobody else looks under the test's temporary directory).
const UNMOUNT_WAIT: Duration = Duration::from_secs(2);

const WDIOF_SETTIMEOUT: u32 = 0x0080;
const WDIOF_MAGICCLOSE: u32 = 0x0100;
const WDIOF_KEEPALIVEPING: u32 = 0x8000;
// `_IOR`/`_IOWR('W', nr, size)` on the generic ioctl layout (x86, arm).
const IOC_READ: u32 = 2;
const IOC_WRITE: u32 = 1;
const fn ioc(dir: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | ((b'W' as u32) << 8) | nr
}
const WDIOC_GETSUPPORT: u32 = ioc(IOC_READ, 0, 40);
const WDIOC_SETOPTIONS: u32 = ioc(IOC_READ, 4, 4);
const WDIOC_KEEPALIVE: u32 = ioc(IOC_READ, 5, 4);
const WDIOC_SETTIMEOUT: u32 = ioc(IOC_READ | IOC_WRITE, 6, 4);
const WDIOC_GETTIMEOUT: u32 = ioc(IOC_READ, 7, 4);

/// One thing that happened to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Opened (and armed) with the timeout it had.
    Open {
        /// The timeout in force.
        timeout: Duration,
    },
    /// `WDIOC_GETSUPPORT`.
    GetSupport,
    /// `WDIOC_SETTIMEOUT` with this many seconds (accepted or not).
    SetTimeout(i32),
    /// `WDIOC_GETTIMEOUT`.
    GetTimeout,
    /// A keepalive: a write, or `WDIOC_KEEPALIVE`.
    Keepalive,
    /// A write containing the magic character `V` (a keepalive too).
    MagicChar,
    /// The file was released; `disarmed` when the magic character allowed it, otherwise the
    /// timer keeps running.
    Release {
        /// Whether the release stopped the timer.
        disarmed: bool,
    },
    /// The timer ran out while armed: the reset hook was called.
    Expired,
}

/// Called with the device's name when it expires, on the expiry thread.
pub type ResetHook = Box<dyn Fn(&str) + Send + 'static>;

/// The mounted filesystem of test watchdog devices; unmounted on drop.
pub struct TestWatchdogs {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
    stop: Arc<AtomicBool>,
    expirer: Option<std::thread::JoinHandle<()>>,
}

struct State {
    devices: Vec<Device>,
    reset: ResetHook,
}

struct Device {
    name: String,
    open: bool,
    armed: bool,
    allow_release: bool,
    timeout: Duration,
    deadline: Option<Instant>,
    events: Vec<(Instant, Event)>,
}

struct Fs {
    state: Arc<Mutex<State>>,
}

// === impl TestWatchdogs ===

impl TestWatchdogs {
    /// Mounts a FUSE filesystem at `dir` (created if missing; must be empty) with one device
    /// file per name in `names`; `reset` is called when one expires. Needs root (a direct
    /// `mount(2)` of type `fuse`) and `/dev/fuse`.
    ///
    /// # Errors
    /// The mount point could not be created or the filesystem could not be mounted.
    pub fn mount(dir: &Path, names: &[&str], reset: ResetHook) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        let state = Arc::new(Mutex::new(State {
            devices: names
                .iter()
                .map(|n| Device {
                    name: (*n).to_owned(),
                    open: false,
                    armed: false,
                    allow_release: false,
                    timeout: DEFAULT_TIMEOUT,
                    deadline: None,
                    events: Vec::new(),
                })
                .collect(),
            reset,
        }));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("patroni-test-watchdog".into()),
            MountOption::Subtype("watchdog".into()),
        ];
        // The agents run as the postgres user.
        config.acl = fuser::SessionACL::All;
        let session = fuser::spawn_mount(
            Fs {
                state: Arc::clone(&state),
            },
            dir,
            &config,
        )
        .map_err(Error::io("mount a FUSE filesystem at", dir))?;
        let stop = Arc::new(AtomicBool::new(false));
        let expirer = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || expire_loop(&state, &stop))
        };
        Ok(Self {
            dir: dir.to_owned(),
            state,
            session: Some(session),
            stop,
            expirer: Some(expirer),
        })
    }

    /// The path of device `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Everything device `name` saw so far, in order.
    pub fn events(&self, name: &str) -> Vec<(Instant, Event)> {
        lock(&self.state)
            .devices
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.events.clone())
            .unwrap_or_default()
    }

    /// Whether device `name`'s timer is running.
    pub fn armed(&self, name: &str) -> bool {
        lock(&self.state)
            .devices
            .iter()
            .any(|d| d.name == name && d.armed)
    }
}

impl Drop for TestWatchdogs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.expirer.take() {
            let _ = t.join();
        }
        if let Some(session) = self.session.take() {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(session.umount_and_join());
            });
            match rx.recv_timeout(UNMOUNT_WAIT) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(
                    dir = %self.dir.display(),
                    "failed to unmount the test watchdogs: {e}"
                ),
                Err(_) => tracing::warn!(
                    dir = %self.dir.display(),
                    holders = ?mount_holders(&self.dir),
                    "the test watchdogs' FUSE session did not end within {UNMOUNT_WAIT:?} \
                     (a process in another mount namespace still holds the mount): left behind"
                ),
            }
        }
    }
}

/// Processes whose mount namespace still has a mount at `dir`, with their command names.
fn mount_holders(dir: &Path) -> Vec<(u32, String)> {
    let needle = format!(" {} ", dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let info = std::fs::read_to_string(e.path().join("mountinfo")).ok()?;
            info.contains(&needle).then(|| {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                (pid, comm.trim().to_owned())
            })
        })
        .collect()
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Expires armed devices whose deadline passed and calls the reset hook for each, with the
/// state locked (the hook must not call back into the devices).
fn expire_loop(state: &Mutex<State>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let mut s = lock(state);
        let mut expired = Vec::new();
        for d in &mut s.devices {
            if d.armed && d.deadline.is_some_and(|at| at <= now) {
                d.events.push((now, Event::Expired));
                tracing::warn!(device = %d.name, "test watchdog expired: resetting its host");
                // A reset machine comes back with its watchdog stopped.
                d.armed = false;
                d.open = false;
                d.deadline = None;
                d.timeout = DEFAULT_TIMEOUT;
                expired.push(d.name.clone());
            }
        }
        for name in expired {
            (s.reset)(&name);
        }
    }
}

// === impl Device ===

impl Device {
    fn ping(&mut self, now: Instant) {
        if self.armed {
            self.deadline = Some(now + self.timeout);
        }
    }
}

// === impl Fs ===

/// Inode of device `i` (the root is 1).
fn ino_of(i: usize) -> INodeNo {
    INodeNo(i as u64 + 2)
}

fn attr(ino: INodeNo, kind: FileType) -> FileAttr {
    FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind,
        perm: if kind == FileType::Directory {
            0o755
        } else {
            0o666
        },
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

const ATTR_TTL: Duration = Duration::from_secs(1);

impl Fs {
    fn with_device<T>(&self, ino: INodeNo, f: impl FnOnce(&mut Device) -> T) -> Option<T> {
        let idx = usize::try_from(ino.0.checked_sub(2)?).ok()?;
        let mut s = lock(&self.state);
        s.devices.get_mut(idx).map(f)
    }
}

impl fuser::Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = lock(&self.state);
        match s.devices.iter().position(|d| OsStr::new(&d.name) == name) {
            Some(i) if parent == INodeNo::ROOT => reply.entry(
                &ATTR_TTL,
                &attr(ino_of(i), FileType::RegularFile),
                Generation(0),
            ),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT {
            return reply.attr(&ATTR_TTL, &attr(ino, FileType::Directory));
        }
        match self.with_device(ino, |_| ()) {
            Some(()) => reply.attr(&ATTR_TTL, &attr(ino, FileType::RegularFile)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let names: Vec<String> = lock(&self.state)
            .devices
            .iter()
            .map(|d| d.name.clone())
            .collect();
        for (i, name) in names.iter().enumerate().skip(offset as usize) {
            if reply.add(ino_of(i), (i + 1) as u64, FileType::RegularFile, name) {
                break;
            }
        }
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Everyone may use the devices (`allow_other`, mode 0666).
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let now = Instant::now();
        let opened = self.with_device(ino, |d| {
            if d.open {
                return false;
            }
            d.open = true;
            d.armed = true;
            d.allow_release = false;
            d.ping(now);
            d.events.push((now, Event::Open { timeout: d.timeout }));
            true
        });
        match opened {
            Some(true) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Some(false) => reply.error(Errno::EBUSY),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let now = Instant::now();
        let done = self.with_device(ino, |d| {
            // The kernel's watchdog_write: the magic character anywhere allows the release.
            d.allow_release = data.contains(&b'V');
            d.ping(now);
            let event = if d.allow_release {
                Event::MagicChar
            } else {
                Event::Keepalive
            };
            d.events.push((now, event));
        });
        match done {
            Some(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let now = Instant::now();
        self.with_device(ino, |d| {
            if !d.open {
                // Released after an expiry reset the device: nothing left to stop.
                return;
            }
            let disarmed = d.allow_release;
            if disarmed {
                d.armed = false;
                d.deadline = None;
            } else if d.armed {
                tracing::warn!(device = %d.name, "test watchdog: watchdog did not stop!");
            }
            d.open = false;
            d.allow_release = false;
            d.events.push((now, Event::Release { disarmed }));
        });
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let now = Instant::now();
        let answer = self.with_device(ino, |d| -> std::result::Result<Vec<u8>, Errno> {
            match cmd {
                WDIOC_GETSUPPORT => {
                    d.events.push((now, Event::GetSupport));
                    let mut out = Vec::with_capacity(40);
                    let options = WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE | WDIOF_KEEPALIVEPING;
                    out.extend_from_slice(&options.to_ne_bytes());
                    out.extend_from_slice(&0u32.to_ne_bytes());
                    let mut identity = [0u8; 32];
                    identity[..IDENTITY.len()].copy_from_slice(IDENTITY.as_bytes());
                    out.extend_from_slice(&identity);
                    Ok(out)
                }
                WDIOC_SETTIMEOUT => {
                    let bytes: [u8; 4] = in_data.try_into().map_err(|_| Errno::EINVAL)?;
                    let seconds = i32::from_ne_bytes(bytes);
                    d.events.push((now, Event::SetTimeout(seconds)));
                    let valid = u32::try_from(seconds)
                        .ok()
                        .filter(|s| (1..=MAX_TIMEOUT).contains(s))
                        .ok_or(Errno::EINVAL)?;
                    d.timeout = Duration::from_secs(u64::from(valid));
                    d.ping(now);
                    Ok(seconds.to_ne_bytes().to_vec())
                }
                WDIOC_GETTIMEOUT => {
                    d.events.push((now, Event::GetTimeout));
                    let seconds = i32::try_from(d.timeout.as_secs()).unwrap_or(i32::MAX);
                    Ok(seconds.to_ne_bytes().to_vec())
                }
                WDIOC_KEEPALIVE => {
                    d.events.push((now, Event::Keepalive));
                    d.ping(now);
                    Ok(0i32.to_ne_bytes().to_vec())
                }
                WDIOC_SETOPTIONS => Err(Errno::ENOTTY),
                _ => Err(Errno::ENOTTY),
            }
        });
        match answer {
            Some(Ok(out)) => reply.ioctl(0, &out),
            Some(Err(e)) => reply.error(e),
            None => reply.error(Errno::ENOENT),
        }
    }
}
