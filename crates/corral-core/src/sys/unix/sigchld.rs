//! Child watching without pidfds: a `SIGCHLD` handler wakes one pipe per watched child, and
//! `waitpid(pid, WNOHANG)` on that child tells whether it was the one that exited.
//!
//! [`pidfd_open`] gives the read end of the child's pipe (a copy), for the poller, as the Linux
//! backend gives a pidfd: readable when the child may have exited. [`reap`] drains the pipe
//! first and then asks `waitpid`, so an exit after the drain writes again and is never missed;
//! an exit of another child only costs a `waitpid` that finds nothing. A pipe per child (not
//! one shared pipe) because an edge-triggered poller drops an event whose fd is no longer
//! readable: one child's drain would hide another's exit.
//!
//! Process-wide effects, documented on [`pidfd_open`]: the first call installs the handler for
//! `SIGCHLD` (`SA_RESTART | SA_NOCLDSTOP | SA_SIGINFO`), which stays installed; it calls the
//! handler it replaced (a runtime's own child watching keeps working) and only ever waits for
//! the pids it was given, never `waitpid(-1)`, so it reaps no one else's children. A handler
//! installed later without chaining (libuv's) would take `SIGCHLD` from it: inside Node the
//! Linux backend's pidfds are the way.

use crate::sys::ExitStatus;
use nix::fcntl::OFlag;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, Once, OnceLock};

/// Most children watched at once in one process.
const SLOTS: usize = 1024;

/// The write end of each slot's pipe, for the handler (-1: free). Written only under `TABLE`.
static WRITE_FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
/// Handlers running now: a slot's write end closes only when none is (one may have loaded it).
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// The disposition the handler replaced, called after it.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALL: Once = Once::new();
static INSTALLED: OnceLock<io::Result<()>> = OnceLock::new();

struct Watch {
    pid: i32,
    read: OwnedFd,
    /// Open as long as the slot is (the handler writes to its number in `WRITE_FDS`).
    _write: OwnedFd,
}

static TABLE: Mutex<Vec<Option<Watch>>> = Mutex::new(Vec::new());

// libc for sigaction and the handler: it stays raw async-signal-safe code (atomics, write,
// errno save and restore, a call through a function pointer).
extern "C" fn on_sigchld(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: (signal handler) reading errno's location is async-signal-safe.
    let saved = unsafe { *errno_location() };
    IN_HANDLER.fetch_add(1, SeqCst);
    for w in &WRITE_FDS {
        let fd = w.load(SeqCst);
        if fd >= 0 {
            let b = 1u8;
            // SAFETY: (signal handler) write(2) is async-signal-safe; `fd` stays open until
            // IN_HANDLER drops back (see `free`). A full pipe (EAGAIN) already wakes the reader.
            unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
        }
    }
    IN_HANDLER.fetch_sub(1, SeqCst);
    // SAFETY: (signal handler) restores the errno the interrupted code saw.
    unsafe { *errno_location() = saved };
    if let Some(prev) = PREVIOUS.get() {
        let h = prev.sa_sigaction;
        if h != libc::SIG_DFL && h != libc::SIG_IGN {
            // SAFETY: (signal handler) `h` is the handler installed before ours, called the way
            // its flags say it expects, with the arguments the kernel gave us.
            unsafe {
                if prev.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(h);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
                    f(sig);
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno location; no preconditions.
    unsafe { libc::__errno_location() }
}

#[cfg(not(target_os = "linux"))]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno location; no preconditions.
    unsafe { libc::__error() }
}

fn install() -> io::Result<()> {
    INSTALL.call_once(|| {
        let r = (|| {
            // SAFETY: sigaction with a null new action only reads the current one into `old`.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: as above; `old` is a valid out-pointer.
            if unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let _ = PREVIOUS.set(old);
            // SAFETY: a zeroed sigaction, then our handler with its flags and an empty mask.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_sigchld
                    as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                    as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_NOCLDSTOP;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })();
        let _ = INSTALLED.set(r);
    });
    match INSTALLED.get() {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(io::Error::new(
            e.kind(),
            format!("install SIGCHLD handler: {e}"),
        )),
        None => unreachable!("call_once ran"),
    }
}

/// A pipe, both ends close-on-exec and non-blocking.
fn pipe_cloexec_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(target_os = "linux")]
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    #[cfg(not(target_os = "linux"))]
    let (r, w) = {
        let _ = OFlag::O_CLOEXEC;
        let (r, w) = nix::unistd::pipe()?;
        for fd in [&r, &w] {
            crate::sys::set_cloexec(fd.as_fd(), true)?;
            crate::sys::set_nonblocking(fd.as_fd(), true)?;
        }
        (r, w)
    };
    Ok((r, w))
}

/// Watches child `pid` (named after the Linux backend's call): an fd, close-on-exec, that
/// becomes readable when the child may have exited; [`reap`] says whether it did. The watch
/// ends when `reap` reports the exit (or `ECHILD`).
///
/// The first call in a process installs a `SIGCHLD` handler (see the module docs: chained to
/// the previous one, never reaps other children) that stays installed. At most 1024 children
/// are watched at once (an error naming the limit beyond).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    install()?;
    let (read, write) = pipe_cloexec_nonblocking()?;
    let copy = read.try_clone()?;
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    if table.len() < SLOTS {
        table.resize_with(SLOTS, || None);
    }
    let Some(i) = table.iter().position(Option::is_none) else {
        return Err(io::Error::other(format!(
            "watch child {pid}: {SLOTS} children are watched already, the most at once"
        )));
    };
    WRITE_FDS[i].store(write.as_raw_fd(), SeqCst);
    // The child may have exited before its slot existed: one wake-up to look at it.
    let _ = nix::unistd::write(&write, &[1]);
    table[i] = Some(Watch {
        pid,
        read,
        _write: write,
    });
    Ok(copy)
}

/// Reaps `pid` if it has exited (`WNOHANG`); `Ok(None)` if it still runs. libc: nix's
/// waitpid turns a child killed by a real-time signal into EINVAL after reaping it.
pub fn reap(pid: i32) -> io::Result<Option<ExitStatus>> {
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let slot = table
        .iter()
        .position(|w| w.as_ref().is_some_and(|w| w.pid == pid));
    if let Some(w) = slot.and_then(|i| table[i].as_ref()) {
        // Drain before waitpid: an exit after this point writes again.
        let mut buf = [0u8; 64];
        while let Ok(1..) = nix::unistd::read(w.read.as_fd(), &mut buf) {}
    }
    let r = waitpid_nohang(pid);
    if let (Some(i), Ok(Some(_)) | Err(_)) = (slot, &r) {
        free(&mut table, i);
    }
    r
}

/// In a forked worker: the primary's watches are not its own. Its handler stops writing to
/// the primary's pipes (its own children's exits would wake the primary for nothing) and its
/// copies of them close. Called in the child of `sys::fork`, which is single-threaded, so the
/// table's lock is free unless the fork interrupted its holder: then the copies stay open.
pub(crate) fn forget_watches_after_fork() {
    for w in &WRITE_FDS {
        w.store(-1, SeqCst);
    }
    if let Ok(mut table) = TABLE.try_lock() {
        table.clear();
    }
}

/// Ends slot `i`'s watch: its write end closes once no handler can be writing to it.
fn free(table: &mut [Option<Watch>], i: usize) {
    WRITE_FDS[i].store(-1, SeqCst);
    // A handler that loaded the fd before the store above counted itself in before loading.
    while IN_HANDLER.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
    table[i] = None;
}

fn waitpid_nohang(pid: i32) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into our local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == 0 {
            return Ok(None);
        }
        if r > 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
    Ok(Some(if libc::WIFSIGNALED(status) {
        ExitStatus {
            code: None,
            signal: Some(libc::WTERMSIG(status)),
        }
    } else {
        ExitStatus {
            code: Some(libc::WEXITSTATUS(status)),
            signal: None,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn readable_within(fd: &OwnedFd, within: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = PollTimeout::try_from(left).unwrap();
            match poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], ms) {
                Ok(n) => return n > 0,
                // SIGCHLD itself interrupts the wait.
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => panic!("poll: {e}"),
            }
        }
    }

    fn drain(fd: &OwnedFd) {
        let mut buf = [0u8; 64];
        while let Ok(1..) = nix::unistd::read(fd.as_fd(), &mut buf) {}
    }

    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_forked_child_forgets_the_watches_and_closes_their_pipes() {
        let sleeper = Reaped(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap(),
        );
        let sp = sleeper.0.id() as i32;
        let w = pidfd_open(sp).unwrap();
        // Held across the fork, so no other test thread holds it in the child's copy.
        let table = TABLE.lock().unwrap();
        let watch = table.iter().flatten().find(|w| w.pid == sp).unwrap();
        let pipe = [watch.read.as_raw_fd(), watch._write.as_raw_fd()];
        // SAFETY: the child releases its copy of the lock (taken by this very thread), closes
        // fds, asks fcntl about two numbers and leaves with _exit; glibc's fork holds the
        // allocator's locks across the fork, so the child may free memory.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            drop(table);
            forget_watches_after_fork();
            let forgot = WRITE_FDS.iter().all(|w| w.load(SeqCst) == -1);
            let closed = pipe.iter().all(|&fd| !crate::sys::fd_is_open(fd));
            // SAFETY: leaves the forked child at once, without running the harness's exit.
            unsafe { libc::_exit(if forgot && closed { 0 } else { 1 }) };
        }
        drop(table);
        let mut status = 0;
        // SAFETY: waitpid writes the status into our local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child kept the watches or their pipes (status {status:#x})"
        );
        assert!(
            pipe.iter().all(|&fd| crate::sys::fd_is_open(fd)),
            "the parent keeps its own"
        );
        drop(w);
        crate::sys::kill(sp, libc::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while reap(sp).unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the killed sleeper was not reaped within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn each_watch_wakes_and_reaps_only_its_own_child() {
        let sleeper = Reaped(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap(),
        );
        // Reaped by `reap` below, not by std's wait.
        #[allow(clippy::zombie_processes)]
        let quick = std::process::Command::new("sh")
            .args(["-c", "sleep 0.2; exit 7"])
            .spawn()
            .unwrap();
        let (sp, qp) = (sleeper.0.id() as i32, quick.id() as i32);
        let ws = pidfd_open(sp).unwrap();
        let wq = pidfd_open(qp).unwrap();
        // The first wake-up of each watch is the look at a child that may have gone early.
        assert!(readable_within(&ws, Duration::ZERO) && readable_within(&wq, Duration::ZERO));
        assert_eq!(reap(sp).unwrap(), None);
        assert_eq!(reap(qp).unwrap(), None);
        assert!(
            !readable_within(&ws, Duration::ZERO),
            "reap drains the watch"
        );
        // Both watches wake on the quick child's exit; only its own reap finds it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            assert!(
                readable_within(&wq, Duration::from_secs(10)),
                "the exit of pid {qp} did not wake its watch within 10 s"
            );
            if let Some(st) = reap(qp).unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "pid {qp} was not reaped within 10 s"
            );
        };
        assert_eq!(
            status,
            ExitStatus {
                code: Some(7),
                signal: None
            }
        );
        assert!(
            readable_within(&ws, Duration::from_secs(1)),
            "every watch wakes on SIGCHLD"
        );
        assert_eq!(
            reap(sp).unwrap(),
            None,
            "the sleeper was not reaped by the other exit"
        );
        drain(&ws);
        {
            let slots = TABLE.lock().unwrap();
            assert!(slots.iter().flatten().any(|w| w.pid == sp));
            assert!(
                !slots.iter().flatten().any(|w| w.pid == qp),
                "a reaped watch frees its slot"
            );
        }
        crate::sys::kill(sp, libc::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while reap(sp).unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the killed sleeper was not reaped within 10 s"
            );
            readable_within(&ws, Duration::from_millis(100));
        }
    }
}
