//! Opt-in signal wake-up: a `sigaction` handler writes the signal number into a pipe that the
//! primary's poller watches. Installing it changes process-wide dispositions, so it only happens
//! when a caller asks (`PrimaryOptions::shutdown_signals`), and `restore()` puts them back.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

// libc in the handler and for sigaction: the handler stays raw async-signal-safe code, and
// nix's `Signal` has no real-time signals (SIGRTMIN+n), which `shutdown_signals` accepts.
extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: (signal handler) write(2) is async-signal-safe; errno is saved and restored.
        unsafe {
            let saved = *errno_location();
            libc::write(fd, (&b as *const u8).cast(), 1);
            *errno_location() = saved;
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

/// The installed handlers and their pipe. One per process at a time.
#[derive(Debug)]
pub struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
    previous: Vec<(i32, libc::sigaction)>,
}

impl SignalPipe {
    /// Installs handlers for `signals`. Fails with `EBUSY` if another `SignalPipe` is active.
    pub fn install(signals: &[i32]) -> io::Result<SignalPipe> {
        #[cfg(target_os = "linux")]
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        // No pipe2 on macOS: fcntl after, racing only a fork by another thread.
        #[cfg(not(target_os = "linux"))]
        let (read, write) = {
            let (r, w) = nix::unistd::pipe()?;
            for fd in [&r, &w] {
                super::fd::set_cloexec(std::os::fd::AsFd::as_fd(fd), true)?;
                super::fd::set_nonblocking(std::os::fd::AsFd::as_fd(fd), true)?;
            }
            (r, w)
        };
        if PIPE_WRITE
            .compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        let mut me = SignalPipe {
            read,
            write,
            previous: Vec::new(),
        };
        for &sig in signals {
            // SAFETY: sigaction with a zeroed struct, our handler, and SA_RESTART.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut old) != 0 {
                    let e = io::Error::last_os_error();
                    me.restore();
                    return Err(e);
                }
                me.previous.push((sig, old));
            }
        }
        Ok(me)
    }

    /// The read end, for the poller.
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.read.as_fd()
    }

    /// Signals received since the last call.
    pub fn drain(&self) -> Vec<i32> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        // Until EAGAIN (the pipe is non-blocking) or an error.
        while let Ok(n @ 1..) = nix::unistd::read(&self.read, &mut buf) {
            out.extend(buf[..n].iter().map(|&b| b as i32));
        }
        out
    }

    /// Puts the previous dispositions back (also done on drop).
    pub fn restore(&mut self) {
        for (sig, old) in self.previous.drain(..) {
            // SAFETY: reinstates the disposition saved by install().
            unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
        }
        let _ = PIPE_WRITE.compare_exchange(
            self.write.as_raw_fd(),
            -1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        self.restore();
    }
}
