//! `accept` then `fcntl(FD_CLOEXEC)` (macOS has no `accept4`), and no accept-queue length.

use nix::errno::Errno;
use nix::sys::socket::accept;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Accepts one connection as a close-on-exec fd, in blocking mode unless `nonblocking` (the
/// receiving worker picks its own I/O model). `Ok(None)` when the (non-blocking) listener has
/// nothing pending.
///
/// A spawn by another thread between `accept` and `fcntl` could pass the connection on
/// through exec (macOS has no atomic way); the Linux backend uses `accept4` for that reason.
pub fn accept_cloexec(listener: BorrowedFd<'_>, nonblocking: bool) -> io::Result<Option<OwnedFd>> {
    loop {
        match accept(listener) {
            Ok(fd) => {
                super::super::set_cloexec(fd.as_fd(), true)?;
                // BSDs let the accepted socket inherit O_NONBLOCK from the listener; Linux
                // does not. Set either way: a listener given as `fd:N` may be blocking.
                super::super::set_nonblocking(fd.as_fd(), nonblocking)?;
                return Ok(Some(fd));
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Ok(None),
            // The peer gave up between SYN and accept: not our error, try the next one.
            Err(Errno::ECONNABORTED | Errno::EPROTO) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Connections waiting in a listener's accept queue: unknown here (`TCP_INFO`'s backlog
/// count is Linux's; macOS's `TCP_CONNECTION_INFO` has none), so always `None`, and the
/// primary accepts until `EAGAIN`, which costs one failing `accept` per wake-up.
pub fn accept_queue_len(_listener: BorrowedFd<'_>) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_are_cloexec_and_in_the_mode_asked() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        assert!(accept_cloexec(l.as_fd(), false).unwrap().is_none());
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut got = None;
        for _ in 0..1000 {
            got = accept_cloexec(l.as_fd(), false).unwrap();
            if got.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let fd = got.expect("the connection was not accepted within 2 s");
        let fdflags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            fdflags & libc::FD_CLOEXEC,
            0,
            "accepted fd must be close-on-exec"
        );
        let flflags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(
            flflags & libc::O_NONBLOCK,
            0,
            "accepted fd must be blocking"
        );
        // Asked non-blocking, whatever the listener's flag (BSDs copy it).
        l.set_nonblocking(false).unwrap();
        let _c2 = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let fd = accept_cloexec(l.as_fd(), true).unwrap().unwrap();
        let flflags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_ne!(flflags & libc::O_NONBLOCK, 0, "asked non-blocking");
        assert_eq!(accept_queue_len(l.as_fd()), None);
    }
}
