//! The worker channel over `SOCK_STREAM` (macOS has no `SOCK_SEQPACKET` for `AF_UNIX`), with
//! the same calls and guarantees as `sys/linux/seqpacket.rs`.
//!
//! Each datagram travels as one record: a `u32` little-endian length, then that many bytes.
//! Its fds go with the `sendmsg` that writes the record's first byte, so the kernel attaches
//! them to that byte.
//!
//! - A record is taken off the socket only whole: a non-blocking receive first peeks at the
//!   length and checks with `FIONREAD` that all of it is queued, else reports `WouldBlock` and
//!   takes nothing (the rest of the record raises a new readiness edge when it arrives), and
//!   a record queued whole is taken in one `recvmsg`. Two readers of one socket (the worker,
//!   and the primary reading back a stalled or dead worker's queue) therefore never split a
//!   record between them, as with datagrams, and a reader stopped or killed between two calls
//!   leaves no record cut, unless the writer sent it in parts.
//! - A reader never reads past the end of the current record, so fds the kernel hands over
//!   belong to that record, and they are released (owned by the caller) only with the whole
//!   record: fds of a record cut short by the peer's exit are closed here.
//! - A non-blocking send may be cut short by the kernel: [`DatagramSent::Partly`] gives back
//!   the unwritten end of the record, which the caller writes with [`send_rest`] before any other
//!   record (the channel's outgoing queue does; see `ipc/channel.rs`).
//! - The bounds stay those of the datagram channel: at most `MAX_FDS` fds per record, and a
//!   record longer than the reader's buffer is reported `truncated` (and left in place: the
//!   channel treats it as a protocol error and closes).

use super::{cloexec_received, socket_pair_cloexec, wait_for, SEND_FLAGS};
use crate::sys::rights::{iovec, take_rights, CmsgBuf};
use crate::sys::sockopt::queued_bytes;
use crate::sys::DatagramSent;
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{recv, sendmsg, ControlMessage, MsgFlags, SockType, UnixAddr};
use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use crate::sys::rights::MAX_FDS;

const PREFIX: usize = 4;

/// A connected pair of close-on-exec `SOCK_STREAM` sockets (named after the Linux backend's
/// call, which every platform provides under this name).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socket_pair_cloexec(SockType::Stream)
}

/// Sends `head` + `body` as one record with `fds` attached to its first byte.
/// `Err(WouldBlock)` when `nonblocking` and nothing could be written; `Partly(rest)` when the
/// kernel took the record's start only (the fds went with it).
pub fn send_datagram(
    sock: BorrowedFd<'_>,
    head: &[u8],
    body: &[u8],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<DatagramSent> {
    assert!(fds.len() <= MAX_FDS, "at most {MAX_FDS} fds per datagram");
    let len = u32::try_from(head.len() + body.len()).expect("a record's length fits a u32");
    let prefix = len.to_le_bytes();
    let iov = [
        IoSlice::new(&prefix),
        IoSlice::new(head),
        IoSlice::new(body),
    ];
    let mut raw = [0 as RawFd; MAX_FDS];
    for (r, fd) in raw.iter_mut().zip(fds) {
        *r = fd.as_raw_fd();
    }
    let rights = [ControlMessage::ScmRights(&raw[..fds.len()])];
    let cmsgs = if fds.is_empty() { &[][..] } else { &rights[..] };
    let flags = SEND_FLAGS | MsgFlags::MSG_DONTWAIT;
    let total = PREFIX + len as usize;
    let n = loop {
        match sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, cmsgs, flags, None) {
            Ok(n) => break n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) if !nonblocking => wait_for(sock, PollFlags::POLLOUT)?,
            Err(e) => return Err(e.into()),
        }
    };
    if n == total {
        return Ok(DatagramSent::Whole);
    }
    let mut rest = Vec::with_capacity(total - n);
    for part in [&prefix[..], head, body] {
        rest.extend_from_slice(part);
    }
    rest.drain(..n);
    if nonblocking {
        return Ok(DatagramSent::Partly(rest));
    }
    send_rest(sock, &rest, false)?;
    Ok(DatagramSent::Whole)
}

/// Writes the end of a record that [`send_datagram`] cut short; returns how many bytes went
/// (all of them when blocking). `Err(WouldBlock)` when `nonblocking` and none did.
pub fn send_rest(sock: BorrowedFd<'_>, rest: &[u8], nonblocking: bool) -> io::Result<usize> {
    let mut done = 0;
    while done < rest.len() {
        match nix::sys::socket::send(
            sock.as_raw_fd(),
            &rest[done..],
            SEND_FLAGS | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) if nonblocking && done == 0 => {
                return Err(io::Error::from(io::ErrorKind::WouldBlock))
            }
            Err(Errno::EAGAIN) if nonblocking => return Ok(done),
            Err(Errno::EAGAIN) => wait_for(sock, PollFlags::POLLOUT)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// One received record.
#[derive(Debug)]
pub struct Received {
    /// Bytes written into the buffer; 0 with no fds means the peer closed its end.
    pub len: usize,
    /// Attached fds, close-on-exec, owned.
    pub fds: Vec<OwnedFd>,
    /// The record did not fit the buffer (it stays in the socket).
    pub truncated: bool,
    /// Attached fds were dropped (`MSG_CTRUNC`: the process is out of file descriptors).
    pub fds_dropped: bool,
}

impl Received {
    fn eof() -> Received {
        Received {
            len: 0,
            fds: Vec::new(),
            truncated: false,
            fds_dropped: false,
        }
    }
}

/// Peeks up to `buf.len()` bytes of the stream without taking them. `Ok(0)`: the peer closed
/// and nothing is queued; `Err(WouldBlock)`: nothing is queued.
fn peek(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match recv(
            sock.as_raw_fd(),
            buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the peer has closed its end (`POLLHUP`: Linux sets it on a stream socket whose peer
/// is gone, macOS's kqueue-based poll with `EV_EOF`).
fn peer_closed(sock: BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollTimeout};
    let mut fds = [PollFd::new(sock, PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1..))
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP))
}

/// [`recv_datagram`] without waiting, for the reader that the Linux backend serves two
/// datagrams per call: one record per call here, and what follows is not looked at.
pub fn recv_datagrams(
    sock: BorrowedFd<'_>,
    first: &mut [u8],
    _second: &mut [u8],
) -> io::Result<(Received, crate::sys::More)> {
    recv_datagram(sock, first, true).map(|r| (r, crate::sys::More::Unknown))
}

/// Receives one whole record into `buf`. `Err(WouldBlock)` when `nonblocking` and no whole
/// record is queued (nothing is taken then).
///
/// A record queued whole is taken in one `recvmsg` (its length and its bytes, two iovecs), so
/// that a reader stopped or killed between two calls never leaves a record cut at the head of
/// the queue: the primary reads a stalled or dead worker's queue back record by record, and a
/// cut one would hide every record behind it. (Seen: a worker SIGSTOPped as it took its
/// `ListenOk` had read the length only; the 8 connections dealt to it behind that stayed
/// unread for as long as it was stopped.) Only a record the writer sent in parts (its socket
/// was full) or one that spans socket buffers and carries fds (the kernel ends a read after
/// the buffer that brought fds) takes more than one call.
///
/// libc for `recvmsg`, as in the Linux backend: every fd the kernel installed is owned at once,
/// also when the control data was cut short (`MSG_CTRUNC`, out of fds).
pub fn recv_datagram(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> io::Result<Received> {
    let mut prefix = [0u8; PREFIX];
    // The record's length, when it is queued whole; `None`: read it step by step.
    let whole_len = loop {
        let n = match peek(sock, &mut prefix) {
            Ok(0) => return Ok(Received::eof()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !nonblocking => {
                wait_for(sock, PollFlags::POLLIN)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == PREFIX {
            let len = u32::from_le_bytes(prefix) as usize;
            if len > buf.len() {
                return Ok(Received {
                    len: 0,
                    fds: Vec::new(),
                    truncated: true,
                    fds_dropped: false,
                });
            }
            if queued_bytes(sock)? >= PREFIX + len {
                break Some(len);
            }
        } else if nonblocking && queued_bytes(sock)? >= PREFIX {
            // A peek stops after bytes that carry fds (Linux). The first write of a record
            // carries its whole length (Linux queues a sendmsg's first buffer whole, BSD
            // writes at least the low-water mark of 2 KiB), so this is a cut no sender here
            // makes; should the length be queued anyway, read the record waiting for its end
            // rather than never.
            break None;
        }
        if !nonblocking {
            // The writer is inside this record: wait for its end while reading.
            break None;
        }
        // The writer is inside this record; it raises a new edge when it writes on. A peer
        // that died inside it never will: that is the end of the channel.
        if peer_closed(sock) {
            return Ok(Received::eof());
        }
        return Err(io::Error::from(io::ErrorKind::WouldBlock));
    };
    // Read its length, then exactly its bytes, never past its end: in one call when it is all
    // queued.
    let mut fds = Vec::new();
    let mut fds_dropped = false;
    let mut got = 0;
    if let Some(len) = whole_len {
        got = read_some(
            sock,
            &mut prefix,
            &mut buf[..len],
            &mut fds,
            &mut fds_dropped,
        )?;
        if got == 0 {
            return Ok(Received::eof());
        }
    }
    while got < PREFIX {
        match read_some(
            sock,
            &mut prefix[got..],
            &mut [],
            &mut fds,
            &mut fds_dropped,
        )? {
            0 => return Ok(Received::eof()),
            n => got += n,
        }
    }
    let len = u32::from_le_bytes(prefix) as usize;
    if len > buf.len() {
        // Blocking reader with a record longer than its buffer: the length is taken, the
        // channel is out of step; the caller closes it on `truncated`.
        return Ok(Received {
            len: 0,
            fds: Vec::new(),
            truncated: true,
            fds_dropped,
        });
    }
    let mut got = got - PREFIX;
    while got < len {
        match read_some(
            sock,
            &mut [],
            &mut buf[got..len],
            &mut fds,
            &mut fds_dropped,
        )? {
            // The peer died inside the record: its fds close here, with the rest of it.
            0 => return Ok(Received::eof()),
            n => got += n,
        }
    }
    Ok(Received {
        len,
        fds,
        truncated: false,
        fds_dropped,
    })
}

/// One `recvmsg` of at most `head.len() + body.len()` bytes (`head` filled first), waiting for
/// data; the fds it brings are made close-on-exec and appended to `fds`. `Ok(0)`: the peer
/// closed.
fn read_some(
    sock: BorrowedFd<'_>,
    head: &mut [u8],
    body: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    fds_dropped: &mut bool,
) -> io::Result<usize> {
    let mut iov = [iovec(head), iovec(body)];
    let mut cbuf = CmsgBuf::new();
    // SAFETY: msghdr is plain data; all pointers set below outlive the recvmsg call.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    cbuf.attach(&mut msg);
    let n = loop {
        #[cfg(test)]
        tests::RECVMSG_CALLS.with(|c| c.set(c.get() + 1));
        // SAFETY: msg points at our buffers, valid for the duration of the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => wait_for(sock, PollFlags::POLLIN)?,
            Some(libc::ECONNRESET) => return Ok(0),
            _ => return Err(err),
        }
    };
    let first_new = fds.len();
    // SAFETY: the kernel just filled `msg` for this call (through `cbuf`); nothing took its fds.
    unsafe { take_rights(&msg, fds) };
    cloexec_received(&fds[first_new..])?;
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        *fds_dropped = true;
    }
    Ok(n)
}

/// The first bytes of the record at the head of `sock`'s receive queue (after its length),
/// without taking it (`MSG_PEEK`; attached fds are not installed: there is no control buffer).
/// `Ok(None)` when the queue is empty. See the Linux backend's `peek_datagram` for its use.
pub fn peek_datagram(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut tmp = [0u8; PREFIX + 64];
    let want = PREFIX + buf.len().min(64);
    match peek(sock, &mut tmp[..want]) {
        Ok(n) => {
            let n = n.saturating_sub(PREFIX);
            buf[..n].copy_from_slice(&tmp[PREFIX..PREFIX + n]);
            Ok(Some(n))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// See the Linux backend's `queued_heads`: a stream has no peek offset per record, so the
/// queue cannot be walked here (`Unsupported`); the primary then reads a stalled worker's
/// queue back whole, as before it could tell what the queue holds.
pub fn queued_heads<const N: usize>(
    _sock: BorrowedFd<'_>,
    _max: usize,
) -> io::Result<Vec<[u8; N]>> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    std::thread_local! {
        /// `recvmsg` calls this thread made ([`read_some`]).
        pub(super) static RECVMSG_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn raw_send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs = if fds.is_empty() { &[][..] } else { &rights[..] };
        let n = sendmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &[IoSlice::new(bytes)],
            cmsgs,
            SEND_FLAGS,
            None,
        )
        .unwrap();
        assert_eq!(n, bytes.len());
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut r = (payload.len() as u32).to_le_bytes().to_vec();
        r.extend_from_slice(payload);
        r
    }

    #[test]
    fn records_keep_boundaries_and_fds() {
        let (a, b) = seqpacket_pair().unwrap();
        let (x, _y) = seqpacket_pair().unwrap();
        let sent = send_datagram(a.as_fd(), b"head", b"body", &[x.as_fd()], true).unwrap();
        assert!(matches!(sent, DatagramSent::Whole));
        send_datagram(a.as_fd(), b"second", b"", &[], true).unwrap();
        let mut buf = [0u8; 64];
        let r = recv_datagram(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!(&buf[..r.len], b"headbody");
        assert_eq!(r.fds.len(), 1);
        let flags = nix::fcntl::fcntl(&r.fds[0], nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "received fd must be close-on-exec"
        );
        let r = recv_datagram(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!((&buf[..r.len], r.fds.len()), (&b"second"[..], 0));
        let e = recv_datagram(b.as_fd(), &mut buf, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        let r = recv_datagram(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!(r.len, 0, "EOF after the peer closed");
    }

    #[test]
    fn a_record_is_taken_only_whole_and_its_fds_only_with_it() {
        let (a, b) = seqpacket_pair().unwrap();
        let (x, _y) = seqpacket_pair().unwrap();
        let whole = record(b"0123456789");
        let fds_before = crate::sys::fd_count().unwrap();
        let mut buf = [0u8; 64];
        // Cut twice inside the payload: nothing is taken, no fd installed.
        raw_send(a.as_fd(), &whole[..6], &[x.as_fd()]);
        let e = recv_datagram(b.as_fd(), &mut buf, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        raw_send(a.as_fd(), &whole[6..9], &[]);
        let e = recv_datagram(b.as_fd(), &mut buf, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            crate::sys::fd_count().unwrap(),
            fds_before,
            "an fd was released early"
        );
        // Peeking sees a record there (Linux stops a peek after the bytes carrying fds).
        let mut head = [0u8; 3];
        assert!(peek_datagram(b.as_fd(), &mut head).unwrap().is_some());
        raw_send(a.as_fd(), &whole[9..], &[]);
        let r = recv_datagram(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!((&buf[..r.len], r.fds.len()), (&b"0123456789"[..], 1));
        assert_eq!(peek_datagram(b.as_fd(), &mut head).unwrap(), None);
    }

    /// A record queued whole is taken in one `recvmsg`, its length and its bytes together: a
    /// reader stopped or killed between two calls would leave the head of the queue cut, and
    /// the primary reading a stalled worker's queue back would find no record there. Before,
    /// each record took two calls.
    #[test]
    fn a_record_queued_whole_is_taken_in_one_call() {
        let (a, b) = seqpacket_pair().unwrap();
        let (x, _y) = seqpacket_pair().unwrap();
        let mut buf = [0u8; 64];
        for nonblocking in [true, false] {
            send_datagram(a.as_fd(), b"conn", b"-one", &[x.as_fd()], true).unwrap();
            send_datagram(a.as_fd(), b"ping", b"", &[], true).unwrap();
            for (want, fds) in [(&b"conn-one"[..], 1), (&b"ping"[..], 0)] {
                RECVMSG_CALLS.with(|c| c.set(0));
                let r = recv_datagram(b.as_fd(), &mut buf, nonblocking).unwrap();
                assert_eq!((&buf[..r.len], r.fds.len()), (want, fds));
                assert_eq!(
                    RECVMSG_CALLS.with(|c| c.get()),
                    1,
                    "nonblocking {nonblocking}: {want:?} took more than one recvmsg"
                );
            }
            assert_eq!(peek_datagram(b.as_fd(), &mut [0u8; 4]).unwrap(), None);
        }
    }

    #[test]
    fn a_record_cut_by_the_peers_exit_is_the_end_and_closes_its_fds() {
        let (a, b) = seqpacket_pair().unwrap();
        let (x, _y) = seqpacket_pair().unwrap();
        let whole = record(b"0123456789");
        raw_send(a.as_fd(), &whole[..6], &[x.as_fd()]);
        drop(a);
        let fds_before = crate::sys::fd_count().unwrap();
        let mut buf = [0u8; 64];
        for nonblocking in [true, false] {
            let r = recv_datagram(b.as_fd(), &mut buf, nonblocking).unwrap();
            assert_eq!((r.len, r.fds.len()), (0, 0), "nonblocking {nonblocking}");
        }
        assert_eq!(crate::sys::fd_count().unwrap(), fds_before, "an fd leaked");
    }

    #[test]
    fn a_record_longer_than_the_buffer_is_truncated() {
        let (a, b) = seqpacket_pair().unwrap();
        send_datagram(a.as_fd(), &[7u8; 32], b"", &[], true).unwrap();
        let mut small = [0u8; 8];
        assert!(
            recv_datagram(b.as_fd(), &mut small, true)
                .unwrap()
                .truncated
        );
        assert!(
            recv_datagram(b.as_fd(), &mut small, false)
                .unwrap()
                .truncated
        );
    }

    #[test]
    fn a_send_cut_short_gives_back_the_rest_which_completes_the_record() {
        let (a, b) = seqpacket_pair().unwrap();
        let (x, _y) = seqpacket_pair().unwrap();
        let chunk = vec![3u8; 60 * 1024];
        // Fill the socket; a record cut short hands back its end.
        let mut rest = None;
        let mut whole = 0;
        for _ in 0..10_000 {
            match send_datagram(a.as_fd(), b"hd", &chunk, &[x.as_fd()], true) {
                Ok(DatagramSent::Whole) => whole += 1,
                Ok(DatagramSent::Partly(r)) => {
                    rest = Some(r);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut n = 0;
            loop {
                let r = recv_datagram(b.as_fd(), &mut buf, false).unwrap();
                if r.len == 0 {
                    return n;
                }
                assert_eq!(r.len, 2 + chunk.len());
                assert_eq!(r.fds.len(), 1);
                assert!(buf[2..r.len].iter().all(|&c| c == 3));
                n += 1;
            }
        });
        let extra = match rest {
            Some(r) => {
                assert!(!r.is_empty() && r.len() < 2 + 4 + 60 * 1024);
                assert_eq!(send_rest(a.as_fd(), &r, false).unwrap(), r.len());
                1
            }
            None => 0,
        };
        drop(a);
        assert_eq!(reader.join().unwrap(), whole + extra);
    }

    #[test]
    fn blocking_calls_wait_even_on_a_nonblocking_file_description() {
        let (a, b) = seqpacket_pair().unwrap();
        for fd in [&a, &b] {
            crate::sys::set_nonblocking(fd.as_fd(), true).unwrap();
        }
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            let r = recv_datagram(b.as_fd(), &mut buf, false).unwrap();
            r.len
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        send_datagram(a.as_fd(), &[1u8; 4096], b"", &[], false).unwrap();
        assert_eq!(reader.join().unwrap(), 4096);
    }
}
