//! The portable Unix backend: what macOS needs in place of Linux-only calls, written against
//! POSIX (and built and tested on Linux with the `portable` feature, so CI runs it).
//!
//! - `stream`: the worker channel over `SOCK_STREAM` with length-prefixed records.
//! - `sigchld`: child watching by a `SIGCHLD` handler and `waitpid` instead of pidfds.
//! - `net`: `accept` then `fcntl(FD_CLOEXEC)`; no accept-queue length (`TCP_INFO` is Linux's).

//!
//! The helpers below (close-on-exec socket pairs) serve both backends.

#[cfg(any(feature = "portable", not(target_os = "linux")))]
mod net;
#[cfg(any(feature = "portable", not(target_os = "linux")))]
mod sigchld;
#[cfg(any(feature = "portable", not(target_os = "linux")))]
mod stream;

#[cfg(any(feature = "portable", not(target_os = "linux")))]
pub use net::{accept_cloexec, accept_queue_len};
#[cfg(any(feature = "portable", not(target_os = "linux")))]
pub(crate) use sigchld::forget_watches_after_fork;
#[cfg(any(feature = "portable", not(target_os = "linux")))]
pub use sigchld::{pidfd_open, reap};
#[cfg(any(feature = "portable", not(target_os = "linux")))]
pub use stream::{
    peek_datagram, queued_heads, recv_datagram, recv_datagrams, send_datagram, send_rest,
    seqpacket_pair, Received, MAX_FDS,
};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::io;
use std::os::fd::OwnedFd;
#[cfg(any(feature = "portable", not(target_os = "linux")))]
use {
    nix::errno::Errno,
    nix::poll::{poll, PollFd, PollFlags, PollTimeout},
    nix::sys::socket::MsgFlags,
    std::os::fd::{AsFd, BorrowedFd},
};

/// Flags of every send on a channel: a dead peer is `EPIPE`, never `SIGPIPE` (Linux's
/// `MSG_NOSIGNAL`; elsewhere the socket carries `SO_NOSIGPIPE` from its creation).
#[cfg(all(feature = "portable", target_os = "linux"))]
const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;
#[cfg(not(target_os = "linux"))]
const SEND_FLAGS: MsgFlags = MsgFlags::empty();

/// A connected `AF_UNIX` socket pair, close-on-exec. Linux creates it so (`SOCK_CLOEXEC`);
/// elsewhere `fcntl` follows `socketpair`, and a fork by another thread in between could
/// inherit the pair (macOS has no atomic way).
pub(crate) fn socket_pair_cloexec(ty: SockType) -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(target_os = "linux")]
    let flags = SockFlag::SOCK_CLOEXEC;
    #[cfg(not(target_os = "linux"))]
    let flags = SockFlag::empty();
    let (a, b) = socketpair(AddressFamily::Unix, ty, None, flags)?;
    #[cfg(not(target_os = "linux"))]
    for s in [&a, &b] {
        super::set_cloexec(s.as_fd(), true)?;
        super::sockopt::set_int_sockopt(s.as_fd(), libc::SOL_SOCKET, libc::SO_NOSIGPIPE, 1)?;
    }
    Ok((a, b))
}

#[cfg(any(feature = "portable", not(target_os = "linux")))]
/// Makes fds that arrived by `SCM_RIGHTS` close-on-exec (there is no `MSG_CMSG_CLOEXEC` here;
/// on Linux the portable backend takes the same path, so CI tests it).
pub(super) fn cloexec_received(fds: &[OwnedFd]) -> io::Result<()> {
    for fd in fds {
        super::set_cloexec(fd.as_fd(), true)?;
    }
    Ok(())
}

#[cfg(any(feature = "portable", not(target_os = "linux")))]
/// Waits until `sock` is ready for `events` (or has an error or hang-up, which the next call
/// reports).
pub(super) fn wait_for(sock: BorrowedFd<'_>, events: PollFlags) -> io::Result<()> {
    loop {
        match poll(&mut [PollFd::new(sock, events)], PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
