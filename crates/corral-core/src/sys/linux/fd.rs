//! Small fd helpers: flags, duplication, counting.

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Sets or clears `FD_CLOEXEC`.
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    let new = if on {
        flags | FdFlag::FD_CLOEXEC
    } else {
        flags - FdFlag::FD_CLOEXEC
    };
    if new != flags {
        fcntl(fd, FcntlArg::F_SETFD(new))?;
    }
    Ok(())
}

/// Sets or clears `O_NONBLOCK` (on the open file description: every copy of the fd sees it).
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    let new = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    if new != flags {
        fcntl(fd, FcntlArg::F_SETFL(new))?;
    }
    Ok(())
}

/// Duplicates `fd` as a new close-on-exec fd (`F_DUPFD_CLOEXEC`, numbered 3 or above).
pub fn dup_cloexec(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// Duplicates fd number `raw` of this process (one the caller does not own, e.g. a socket
/// inherited through socket activation) as a new close-on-exec fd; `raw` itself is left open.
/// `EBADF` when `raw` is not open (or negative).
pub fn dup_raw_cloexec(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // libc rather than nix: nix's fcntl takes a BorrowedFd, which asserts that `raw` is open,
    // and whether it is open is what this call finds out.
    // SAFETY: fcntl only reads the fd number; a closed one gives EBADF. No memory is passed.
    let new = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a freshly created fd owned by us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Number of open fds of this process (entries of `/proc/self/fd`, `/dev/fd` on macOS, minus
/// the one used to read it).
pub fn fd_count() -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    let dir = "/proc/self/fd";
    #[cfg(not(target_os = "linux"))]
    let dir = "/dev/fd";
    Ok(std::fs::read_dir(dir)?.count().saturating_sub(1))
}
