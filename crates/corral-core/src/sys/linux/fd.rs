//! Small fd helpers: flags, duplication, counting.

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

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

/// Number of open fds of this process (entries of `/proc/self/fd`, minus the one used to read it).
pub fn fd_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}
