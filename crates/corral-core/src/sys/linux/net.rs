//! accept4 with close-on-exec.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Accepts one connection as a close-on-exec fd (blocking mode: the receiving worker picks its
/// own I/O model). `Ok(None)` when the (non-blocking) listener has nothing pending.
pub fn accept_cloexec(listener: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    loop {
        // SAFETY: accept4 with NULL address out-params on a borrowed listening socket.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: accept4 returned a new fd that nobody else owns.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            // The peer gave up between SYN and accept: not our error, try the next one.
            Some(libc::ECONNABORTED) | Some(libc::EPROTO) => continue,
            _ => return Err(err),
        }
    }
}
