//! `SOCK_SEQPACKET` socketpairs and datagrams carrying fds (`SCM_RIGHTS`).
//!
//! Every datagram is sent in one `sendmsg` with `MSG_NOSIGNAL` (a dead peer is `EPIPE`, never
//! SIGPIPE). Non-blocking behaviour is chosen per call (`MSG_DONTWAIT`), not by `O_NONBLOCK`, so
//! one thread may block in `recvmsg` while another sends without blocking on the same socket.
//! Received fds arrive close-on-exec (`MSG_CMSG_CLOEXEC`) and owned.

use crate::sys::rights::{iovec, take_rights, CmsgBuf};
use crate::sys::sockopt::{queued_bytes, set_int_sockopt};
use crate::sys::{DatagramSent, More};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recv, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use crate::sys::rights::MAX_FDS;

/// A connected pair of close-on-exec `SOCK_SEQPACKET` sockets.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends `head` + `body` as one datagram with `fds` attached.
/// `Err(WouldBlock)` when `nonblocking` and the peer's queue is full.
pub fn send_datagram(
    sock: BorrowedFd<'_>,
    head: &[u8],
    body: &[u8],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<DatagramSent> {
    assert!(fds.len() <= MAX_FDS, "at most {MAX_FDS} fds per datagram");
    let iov = [IoSlice::new(head), IoSlice::new(body)];
    let iov = if body.is_empty() { &iov[..1] } else { &iov[..] };
    let mut raw = [0 as RawFd; MAX_FDS];
    for (r, fd) in raw.iter_mut().zip(fds) {
        *r = fd.as_raw_fd();
    }
    let rights = [ControlMessage::ScmRights(&raw[..fds.len()])];
    let cmsgs = if fds.is_empty() { &[][..] } else { &rights[..] };
    let flags = MsgFlags::MSG_NOSIGNAL
        | if nonblocking {
            MsgFlags::MSG_DONTWAIT
        } else {
            MsgFlags::empty()
        };
    loop {
        match sendmsg::<UnixAddr>(sock.as_raw_fd(), iov, cmsgs, flags, None) {
            // SEQPACKET sends are atomic: all or an error.
            Ok(n) => {
                debug_assert_eq!(n, head.len() + body.len());
                return Ok(DatagramSent::Whole);
            }
            Err(Errno::EINTR) => {}
            // A blocking send on a socket someone made O_NONBLOCK (libuv does that to the
            // shared open file description when it polls a duplicate): wait for room.
            Err(Errno::EAGAIN) if !nonblocking => wait_for(sock, PollFlags::POLLOUT)?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes the rest of a datagram [`send_datagram`] cut short: never happens on `SOCK_SEQPACKET`
/// (sends are atomic); here for the portable backend's signature. Returns the bytes written.
pub fn send_rest(sock: BorrowedFd<'_>, rest: &[u8], nonblocking: bool) -> io::Result<usize> {
    let flags = MsgFlags::MSG_NOSIGNAL
        | if nonblocking {
            MsgFlags::MSG_DONTWAIT
        } else {
            MsgFlags::empty()
        };
    loop {
        match nix::sys::socket::send(sock.as_raw_fd(), rest, flags) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) if !nonblocking => wait_for(sock, PollFlags::POLLOUT)?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until `sock` is ready for `events` (or has an error or hang-up, which the next call
/// reports).
fn wait_for(sock: BorrowedFd<'_>, events: PollFlags) -> io::Result<()> {
    loop {
        match poll(&mut [PollFd::new(sock, events)], PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// One received datagram.
#[derive(Debug)]
pub struct Received {
    /// Bytes written into the buffer; 0 with no fds means the peer closed its end.
    pub len: usize,
    /// Attached fds, close-on-exec, owned.
    pub fds: Vec<OwnedFd>,
    /// The datagram did not fit the buffer (`MSG_TRUNC`).
    pub truncated: bool,
    /// Attached fds were dropped (`MSG_CTRUNC`: the control buffer holds `MAX_FDS`, so this
    /// means the process could not take them, i.e. it is out of file descriptors).
    pub fds_dropped: bool,
}

/// Receives one datagram into `buf`. `Err(WouldBlock)` when `nonblocking` and nothing is queued.
///
/// libc, not nix: nix's `RecvMsg::cmsgs()` refuses to walk the control data when `MSG_CTRUNC`
/// is set (nix#2413), and then the fds the kernel did install before it ran out (EMFILE) would
/// leak; here every installed fd is owned at once and `fds_dropped` reports the rest.
pub fn recv_datagram(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> io::Result<Received> {
    let mut iov = iovec(buf);
    let mut cbuf = CmsgBuf::new();
    // SAFETY: msghdr is plain data; all pointers set below outlive the recvmsg call.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    cbuf.attach(&mut msg);
    let flags = libc::MSG_CMSG_CLOEXEC | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
    let n = loop {
        // SAFETY: msg points at our buffers, valid for the duration of the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) if !nonblocking => wait_for(sock, PollFlags::POLLIN)?,
            _ => return Err(err),
        }
    };
    // SAFETY: the kernel filled `msg` for this datagram.
    Ok(unsafe { received(&msg, n) })
}

/// Receives without waiting the datagram at the head of the queue into `first` and, if one
/// is queued behind it, that one into `second`, in one `recvmmsg(2)`. `Err(WouldBlock)` when
/// nothing is queued. `More::Empty` tells a reader that drains the socket that the `recvmsg`
/// it would make next can only say `EAGAIN`: on a channel where messages come one at a time
/// (a request and its answer), that call was half of the receive syscalls.
///
/// libc, not nix: as `recv_datagram` (every installed fd is owned at once).
pub fn recv_datagrams(
    sock: BorrowedFd<'_>,
    first: &mut [u8],
    second: &mut [u8],
) -> io::Result<(Received, More)> {
    let mut iov = [iovec(first), iovec(second)];
    let mut cbuf = [CmsgBuf::new(), CmsgBuf::new()];
    // SAFETY: mmsghdr is plain data; all pointers set below outlive the recvmmsg call.
    let mut msgs: [libc::mmsghdr; 2] = unsafe { mem::zeroed() };
    for ((m, iov), cbuf) in msgs.iter_mut().zip(iov.iter_mut()).zip(cbuf.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        cbuf.attach(&mut m.msg_hdr);
    }
    let flags = libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT;
    let n = loop {
        // SAFETY: `msgs` points at our buffers, valid for the duration of the call; no timeout.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as _,
                flags as _,
                std::ptr::null_mut(),
            )
        };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    };
    // A datagram read is never lost: an error behind the first one is kept by the kernel for
    // the next call (recvmmsg(2) BUGS), and EAGAIN there means the queue was empty.
    // SAFETY: the kernel filled the first `n` entries, each for its datagram.
    unsafe {
        let head = received(&msgs[0].msg_hdr, msgs[0].msg_len as usize);
        let more = if n >= 2 {
            More::Next(received(&msgs[1].msg_hdr, msgs[1].msg_len as usize))
        } else {
            More::Empty
        };
        Ok((head, more))
    }
}

/// The datagram of `n` bytes that `recvmsg`/`recvmmsg` described in `msg`, its fds owned.
///
/// # Safety
/// `msg` was filled by the kernel for one received datagram (its control data not yet taken).
unsafe fn received(msg: &libc::msghdr, n: usize) -> Received {
    let mut fds = Vec::new();
    // SAFETY: as this function's contract, which is take_rights'.
    unsafe { take_rights(msg, &mut fds) };
    Received {
        len: n,
        fds,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        fds_dropped: msg.msg_flags & libc::MSG_CTRUNC != 0,
    }
}

/// The first bytes of the datagram at the head of `sock`'s receive queue, without taking it
/// (`MSG_PEEK`; attached fds are not installed: there is no control buffer). `Ok(None)` when
/// the queue is empty. The primary peeks at a worker's end of its channel to tell a worker that
/// stopped reading (the same datagram stays at the head) from one that is only busy.
pub fn peek_datagram(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match recv(
            sock.as_raw_fd(),
            buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The first `N` bytes (fewer for a shorter datagram: zero-filled) of every datagram queued on
/// `sock`, head first, at most `max`, without taking any: `MSG_PEEK` walked with `SO_PEEK_OFF`
/// (attached fds are not installed). libc: nix has no `SO_PEEK_OFF`.
///
/// The offset belongs to the socket, which other readers share (a worker's end of its
/// channel): it is off again (-1) when this returns, and meanwhile their reads, which never
/// peek, are unaffected; a datagram one of them takes during the walk moves the offset back
/// by its length (the kernel does), so the walk neither skips nor repeats one.
pub fn queued_heads<const N: usize>(sock: BorrowedFd<'_>, max: usize) -> io::Result<Vec<[u8; N]>> {
    let set_offset =
        |off: libc::c_int| set_int_sockopt(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF, off);
    // What is queued, in bytes (`SIOCINQ` sums a SOCK_SEQPACKET queue): the walk ends there
    // even on a kernel that would take the option but not move the offset.
    let queued = queued_bytes(sock)?;
    set_offset(0)?;
    // Whole datagrams: the offset moves by what each peek copies, so the largest the channel
    // sends (`ipc::frame::MAX_DATAGRAM`, 64 KiB) must fit.
    let mut buf = vec![0u8; 64 * 1024];
    let mut heads = Vec::new();
    let mut seen = 0usize;
    let walked = loop {
        if heads.len() >= max || seen >= queued {
            break Ok(());
        }
        match recv(
            sock.as_raw_fd(),
            &mut buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => {
                seen += n.max(1);
                let mut head = [0u8; N];
                let k = n.min(N);
                head[..k].copy_from_slice(&buf[..k]);
                heads.push(head);
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => break Ok(()),
            Err(e) => break Err(io::Error::from(e)),
        }
    };
    set_offset(-1)?;
    walked.map(|()| heads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_queue_is_walked_without_taking_anything() {
        let (a, b) = seqpacket_pair().unwrap();
        let (x, _y) = seqpacket_pair().unwrap();
        assert!(queued_heads::<2>(b.as_fd(), 10).unwrap().is_empty());
        send_datagram(a.as_fd(), b"C1", b"....", &[x.as_fd()], true).unwrap();
        send_datagram(a.as_fd(), b"M", b"", &[], true).unwrap();
        send_datagram(a.as_fd(), b"C2", &[7u8; 60_000], &[x.as_fd()], true).unwrap();
        let before = crate::sys::fd_count().unwrap();
        let heads = queued_heads::<2>(b.as_fd(), 10).unwrap();
        assert_eq!(heads, [*b"C1", *b"M\0", *b"C2"]);
        assert_eq!(queued_heads::<2>(b.as_fd(), 2).unwrap(), [*b"C1", *b"M\0"]);
        assert_eq!(
            crate::sys::fd_count().unwrap(),
            before,
            "the walk installed an fd"
        );
        // The offset is off again: a plain peek and the reads see the queue from its head.
        let mut head = [0u8; 2];
        assert_eq!(peek_datagram(b.as_fd(), &mut head).unwrap(), Some(2));
        assert_eq!(&head, b"C1");
        let mut buf = vec![0u8; 64 * 1024];
        let r = recv_datagram(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!((&buf[..2], r.fds.len()), (&b"C1"[..], 1));
        assert_eq!(queued_heads::<2>(b.as_fd(), 10).unwrap(), [*b"M\0", *b"C2"]);
    }

    #[test]
    fn peeking_shows_the_head_and_takes_nothing() {
        let (a, b) = seqpacket_pair().unwrap();
        let (x, _y) = seqpacket_pair().unwrap();
        let mut head = [0u8; 4];
        assert_eq!(peek_datagram(b.as_fd(), &mut head).unwrap(), None);
        send_datagram(a.as_fd(), b"one!", b"", &[x.as_fd()], true).unwrap();
        send_datagram(a.as_fd(), b"two!", b"", &[], true).unwrap();
        let before = crate::sys::fd_count().unwrap();
        for _ in 0..3 {
            assert_eq!(peek_datagram(b.as_fd(), &mut head).unwrap(), Some(4));
            assert_eq!(&head, b"one!");
        }
        assert_eq!(
            crate::sys::fd_count().unwrap(),
            before,
            "peeking installed an fd"
        );
        let mut buf = [0u8; 16];
        let r = recv_datagram(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!(r.fds.len(), 1, "the fd is still attached after the peeks");
        peek_datagram(b.as_fd(), &mut head).unwrap();
        assert_eq!(&head, b"two!");
        recv_datagram(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!(peek_datagram(b.as_fd(), &mut head).unwrap(), None);
    }

    #[test]
    fn datagrams_keep_boundaries_and_fds() {
        let (a, b) = seqpacket_pair().unwrap();
        let (x, _y) = seqpacket_pair().unwrap();
        send_datagram(a.as_fd(), b"head", b"body", &[x.as_fd()], true).unwrap();
        send_datagram(a.as_fd(), b"second", b"", &[], true).unwrap();
        let mut buf = [0u8; 64];
        let r = recv_datagram(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!(&buf[..r.len], b"headbody");
        assert_eq!(r.fds.len(), 1);
        assert!(!r.truncated);
        let flags = nix::fcntl::fcntl(&r.fds[0], nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "received fd must be close-on-exec"
        );
        let r = recv_datagram(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!(&buf[..r.len], b"second");
        let e = recv_datagram(b.as_fd(), &mut buf, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        let r = recv_datagram(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!(r.len, 0, "EOF after the peer closed");
    }

    #[test]
    fn truncation_is_reported() {
        let (a, b) = seqpacket_pair().unwrap();
        send_datagram(a.as_fd(), &[7u8; 32], b"", &[], true).unwrap();
        let mut small = [0u8; 8];
        assert!(
            recv_datagram(b.as_fd(), &mut small, true)
                .unwrap()
                .truncated
        );
    }

    #[test]
    fn blocking_calls_wait_even_on_a_nonblocking_file_description() {
        let (a, b) = seqpacket_pair().unwrap();
        for fd in [&a, &b] {
            crate::sys::set_nonblocking(fd.as_fd(), true).unwrap();
        }
        // Fill the socket, then a blocking send must wait for the reader instead of failing.
        let chunk = vec![1u8; 4096];
        let mut sent = 0;
        while send_datagram(a.as_fd(), &chunk, b"", &[], true).is_ok() {
            sent += 1;
        }
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            let mut got = 0;
            // Blocking receive: waits for the last datagram (sent after a pause) too.
            while got < sent + 1 {
                let r = recv_datagram(b.as_fd(), &mut buf, false).unwrap();
                assert_eq!(r.len, 4096);
                got += 1;
                if got == 1 {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
            got
        });
        send_datagram(a.as_fd(), &chunk, b"", &[], false).unwrap();
        assert_eq!(reader.join().unwrap(), sent + 1);
    }
}
