//! One end of a worker channel: an ordered outgoing queue and fragment reassembly on top of a
//! `SOCK_SEQPACKET` socket (or the portable backend's `SOCK_STREAM` records, see `sys/mod.rs`).
//!
//! Sending never blocks by itself: [`Channel::queue`] appends, [`Channel::flush`] writes until the
//! socket is full (`Ok(false)`) or the queue is empty (`Ok(true)`). Messages leave in the order
//! they were queued and are never interleaved. [`Channel::try_send_single`] is the hot path for
//! one-datagram messages (a connection handoff): it bypasses the queue only when the queue is
//! empty, which keeps the order.
//!
//! A `Kind::Batch` message (several application messages in one datagram, see
//! [`proto::batch_parts`]) reads as its `User` messages, one per [`Channel::recv`], unless the
//! reader asked for batches whole ([`Channel::keep_batches`]).

use super::frame::{self, Kind, FLAG_FIRST, FLAG_MORE, MAX_CHUNK, MAX_DATAGRAM};
use super::proto;
use super::reassembly::Reassembly;
use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// A message on a channel: one read from the peer, or one made by
/// [`WorkerProtocol`](crate::worker::protocol::WorkerProtocol) to be written. Its kind is the
/// engine's business: a front reads application messages with [`Message::into_user`] and hands
/// everything else to the protocol.
#[derive(Debug)]
pub struct Message {
    /// What it is.
    pub(crate) kind: Kind,
    /// Payload.
    pub data: Vec<u8>,
    /// Attached fds (owned: dropping the message closes them).
    pub fds: Vec<OwnedFd>,
}

impl Message {
    pub(crate) fn new(kind: Kind, data: Vec<u8>, fds: Vec<OwnedFd>) -> Message {
        Message { kind, data, fds }
    }

    /// The payload and fds of an application message (or of a batch of them kept whole: see
    /// [`Message::is_batch`]); any other message back, unchanged (name it with
    /// [`Message::kind_name`]).
    pub fn into_user(self) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), Message> {
        match self.kind {
            Kind::User | Kind::Batch => Ok((self.data, self.fds)),
            _ => Err(self),
        }
    }

    /// Whether this is a batch of application messages kept whole ([`Channel::keep_batches`]);
    /// [`crate::ipc::proto::batch_parts`] splits it, and `into_user` gives its payload back.
    pub fn is_batch(&self) -> bool {
        self.kind == Kind::Batch
    }

    /// What the message is, for error messages (`"ListenOk"`).
    pub fn kind_name(&self) -> String {
        format!("{:?}", self.kind)
    }

    /// The kind, for the fuzz targets (`__fuzz`), which compare it with decoded headers.
    #[doc(hidden)]
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// Outcome of [`Channel::recv`].
#[derive(Debug)]
pub enum Recv {
    /// A whole message.
    Message(Message),
    /// Nothing complete yet (non-blocking mode).
    WouldBlock,
    /// The peer closed its end.
    Eof,
    /// A whole message of this kind arrived, but the kernel dropped the fds attached to it
    /// because this process is out of file descriptors (EMFILE): for a `Conn`, the connection
    /// is lost (the client sees it closed). The channel stays in step.
    FdsLost(Kind),
}

struct Outgoing {
    kind: Kind,
    data: Vec<u8>,
    sent: usize,
    started: bool,
    fds: Vec<OwnedFd>,
    /// The unwritten end of a datagram the socket took only the start of (stream records of
    /// the portable backend): it goes out before anything else.
    rest: Vec<u8>,
}

impl Outgoing {
    /// The end of a datagram of a message otherwise written (or re-sent) whole.
    fn rest_of(kind: Kind, rest: Vec<u8>) -> Outgoing {
        Outgoing {
            kind,
            data: Vec::new(),
            sent: 0,
            started: true,
            fds: Vec::new(),
            rest,
        }
    }
}

/// A batch being handed out message by message.
struct Unbatching {
    data: Vec<u8>,
    parts: std::vec::IntoIter<(usize, usize)>,
}

/// One end of a channel.
pub struct Channel {
    fd: OwnedFd,
    out: VecDeque<Outgoing>,
    out_bytes: usize,
    /// Messages ever queued or sent (the sequence number of the last one).
    sent_or_queued: u64,
    rbuf: Box<[u8]>,
    /// Where [`Channel::recv_reading_ahead`] reads the datagram behind the first
    /// (`recv_datagrams`); allocated on first use.
    rbuf_next: Box<[u8]>,
    /// That datagram (its bytes in `rbuf_next`), taken by the next `recv` before the socket.
    next: Option<sys::Received>,
    /// The last read left the socket empty ([`Channel::may_have_more`]).
    drained: bool,
    incoming: Reassembly,
    unbatching: Option<Unbatching>,
    keep_batches: bool,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("fd", &self.fd.as_raw_fd())
            .field("queued", &self.out.len())
            .field("queued_bytes", &self.out_bytes)
            .finish()
    }
}

/// Checks a message against the size and fd limits (before anything is copied or queued).
pub(crate) fn check_outgoing(data_len: usize, nfds: usize) -> Result<()> {
    if data_len > frame::MAX_MESSAGE_LEN {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "message of {data_len} bytes exceeds the limit of {} bytes (64 MiB)",
                frame::MAX_MESSAGE_LEN
            ),
        ));
    }
    if nfds > sys::MAX_FDS {
        return Err(Error::invalid(format!(
            "{nfds} fds in one message; at most {} are allowed",
            sys::MAX_FDS
        )));
    }
    Ok(())
}

/// Writes the datagrams of one message from offset `*sent` on (fds ride on the first one,
/// then close here: the kernel holds its own references). `Ok(true)` once all of it is out,
/// `Ok(false)` when the socket is full (non-blocking); `*sent`/`*started` say how far it got,
/// and `rest` holds the end of a datagram the socket took only the start of.
#[allow(clippy::too_many_arguments)]
fn write_datagrams(
    fd: BorrowedFd<'_>,
    kind: Kind,
    data: &[u8],
    fds: &mut Vec<OwnedFd>,
    sent: &mut usize,
    started: &mut bool,
    rest: &mut Vec<u8>,
    blocking: bool,
) -> io::Result<bool> {
    let total = data.len();
    loop {
        if !rest.is_empty() {
            match sys::send_rest(fd, rest, !blocking) {
                Ok(n) => drop(rest.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
            if !rest.is_empty() {
                return Ok(false);
            }
        }
        if *started && *sent == total {
            return Ok(true);
        }
        let end = (*sent + MAX_CHUNK).min(total);
        let mut flags = 0;
        if !*started {
            flags |= FLAG_FIRST;
        }
        if end < total {
            flags |= FLAG_MORE;
        }
        let head = frame::encode(kind, flags, total as u32);
        let borrowed: Vec<BorrowedFd<'_>> = if *started {
            Vec::new()
        } else {
            fds.iter().map(|f| f.as_fd()).collect()
        };
        match sys::send_datagram(fd, &head, &data[*sent..end], &borrowed, !blocking) {
            Ok(sys::DatagramSent::Whole) => {}
            Ok(sys::DatagramSent::Partly(r)) => *rest = r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
        drop(borrowed);
        *started = true;
        fds.clear();
        *sent = end;
    }
}

impl Channel {
    /// Wraps a connected socket from `sys::seqpacket_pair` (`SOCK_SEQPACKET`, or `SOCK_STREAM`
    /// with the portable backend).
    pub fn new(fd: OwnedFd) -> Channel {
        Channel {
            fd,
            out: VecDeque::new(),
            out_bytes: 0,
            sent_or_queued: 0,
            rbuf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            rbuf_next: Box::default(),
            next: None,
            drained: false,
            incoming: Reassembly::new(),
            unbatching: None,
            keep_batches: false,
        }
    }

    /// From now on [`Channel::recv`] returns `Kind::Batch` messages whole (checked: a malformed
    /// batch is still a protocol error), for a reader that splits them itself without a copy
    /// per message.
    pub fn keep_batches(&mut self) {
        self.keep_batches = true;
    }

    /// The socket.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Bytes queued and not yet written to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.out_bytes
    }

    /// Whether anything waits in the outgoing queue.
    pub fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// Messages in the outgoing queue (a partly written one counts).
    pub fn queued_messages(&self) -> usize {
        self.out.len()
    }

    /// Sequence number of the last message queued or sent (1 for the first).
    pub fn last_seq(&self) -> u64 {
        self.sent_or_queued
    }

    /// How many messages were completely written to the socket: they leave in order, so
    /// message `n` is out once this reaches `n`.
    pub fn written(&self) -> u64 {
        self.sent_or_queued - self.out.len() as u64
    }

    /// Appends a message to the outgoing queue (checks the size and fd limits).
    pub(crate) fn queue(&mut self, kind: Kind, data: Vec<u8>, fds: Vec<OwnedFd>) -> Result<()> {
        check_outgoing(data.len(), fds.len())?;
        self.sent_or_queued += 1;
        self.out_bytes += data.len();
        self.out.push_back(Outgoing {
            kind,
            data,
            sent: 0,
            started: false,
            fds,
            rest: Vec::new(),
        });
        Ok(())
    }

    /// Sends a message that fits one datagram right now, if nothing is queued before it.
    /// `Ok(false)`: the socket is full or the queue is not empty; nothing was sent. `Ok(true)`
    /// with [`Channel::has_queued`]: the socket took the datagram's start (and its fds), the
    /// end waits in the queue for the socket to be writable again.
    pub(crate) fn try_send_single(
        &mut self,
        kind: Kind,
        data: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<bool> {
        debug_assert!(data.len() <= MAX_CHUNK && fds.len() <= sys::MAX_FDS);
        if !self.out.is_empty() {
            return Ok(false);
        }
        let head = frame::encode(kind, FLAG_FIRST, data.len() as u32);
        match sys::send_datagram(self.fd.as_fd(), &head, data, fds, true) {
            Ok(sent) => {
                self.sent_or_queued += 1;
                if let sys::DatagramSent::Partly(rest) = sent {
                    self.out.push_back(Outgoing::rest_of(kind, rest));
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes queued datagrams until the queue is empty (`Ok(true)`) or the socket is full
    /// (`Ok(false)`). `blocking` waits for room instead.
    pub fn flush(&mut self, blocking: bool) -> io::Result<bool> {
        while let Some(msg) = self.out.front_mut() {
            let before = msg.sent;
            let done = write_datagrams(
                self.fd.as_fd(),
                msg.kind,
                &msg.data,
                &mut msg.fds,
                &mut msg.sent,
                &mut msg.started,
                &mut msg.rest,
                blocking,
            );
            self.out_bytes -= msg.sent - before;
            if !done? {
                return Ok(false);
            }
            self.out.pop_front();
        }
        Ok(true)
    }

    /// Sends a message from `data` without copying it when nothing is queued before it and the
    /// socket takes it now; otherwise queues what is left (a copy), like [`Channel::queue`]
    /// followed by [`Channel::flush`]. `Ok(true)`: completely written.
    pub(crate) fn send_or_queue(
        &mut self,
        kind: Kind,
        data: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Result<bool> {
        check_outgoing(data.len(), fds.len())?;
        if !self.out.is_empty() {
            self.queue(kind, data.to_vec(), fds)?;
            return self
                .flush(false)
                .map_err(|e| Error::os("sendmsg", "send on channel", &e));
        }
        self.sent_or_queued += 1;
        let (mut fds, mut sent, mut started, mut rest) = (fds, 0, false, Vec::new());
        let done = write_datagrams(
            self.fd.as_fd(),
            kind,
            data,
            &mut fds,
            &mut sent,
            &mut started,
            &mut rest,
            false,
        )
        .map_err(|e| Error::os("sendmsg", "send on channel", &e))?;
        if !done {
            self.out_bytes += data.len() - sent;
            self.out.push_back(Outgoing {
                kind,
                data: data.to_vec(),
                sent,
                started,
                fds,
                rest,
            });
        }
        Ok(done)
    }

    /// Writes a one-datagram message now, ahead of anything queued and without counting it as
    /// a new one: for re-delivering a message read back from the peer's queue (it was counted
    /// when it was first sent). Gives the message back if the socket has no room for it, or
    /// is inside a stream record (whose end must go first).
    pub(crate) fn resend_now(&mut self, m: Message) -> std::result::Result<(), Message> {
        if m.data.len() > MAX_CHUNK || self.out.front().is_some_and(|o| !o.rest.is_empty()) {
            return Err(m);
        }
        let head = frame::encode(m.kind, FLAG_FIRST, m.data.len() as u32);
        let fds: Vec<BorrowedFd<'_>> = m.fds.iter().map(|f| f.as_fd()).collect();
        let sent = sys::send_datagram(self.fd.as_fd(), &head, &m.data, &fds, true);
        drop(fds);
        match sent {
            Ok(sys::DatagramSent::Whole) => Ok(()),
            // Its end goes before anything else (it is counted already: no new sequence).
            Ok(sys::DatagramSent::Partly(rest)) => {
                self.out.push_front(Outgoing::rest_of(m.kind, rest));
                Ok(())
            }
            Err(_) => Err(m),
        }
    }

    /// Queues and flushes, waiting for room: for callers without an event loop.
    pub(crate) fn send_blocking(
        &mut self,
        kind: Kind,
        data: Vec<u8>,
        fds: Vec<OwnedFd>,
    ) -> Result<()> {
        self.queue(kind, data, fds)?;
        self.flush(true)
            .map_err(|e| Error::os("sendmsg", "send on channel", &e))?;
        Ok(())
    }

    /// Reads datagrams until a whole message is there, the socket is empty (non-blocking) or the
    /// peer closed. A malformed frame is an `ErrorKind::Protocol` error; the channel is then
    /// unusable and should be closed. Takes nothing off the socket beyond that message (a
    /// datagram already read ahead by [`Channel::recv_reading_ahead`] comes first).
    pub fn recv(&mut self, nonblocking: bool) -> Result<Recv> {
        self.recv_inner(nonblocking, false)
    }

    /// [`Channel::recv`] without waiting, which may also take the datagram behind the message
    /// off the socket (one `recvmmsg` for two) and then tells, by
    /// [`Channel::may_have_more`], whether the socket was empty behind it, so that a reader on
    /// a level-triggered poll can stop without the `recvmsg` that would only say `EAGAIN`.
    ///
    /// The datagram read ahead is no longer in the socket: while [`Channel::has_read_ahead`],
    /// the caller must call `recv` again before it waits for the socket, or it waits for
    /// nothing. Only for a reader that takes the next message anyway: the worker, whose
    /// connections must stay in the channel while it may not take them (the primary takes
    /// back what a dead worker left there), reads ahead only when it may take two.
    pub fn recv_reading_ahead(&mut self) -> Result<Recv> {
        self.recv_inner(true, true)
    }

    /// Whether a datagram read ahead waits for the next `recv`.
    pub fn has_read_ahead(&self) -> bool {
        self.next.is_some()
    }

    fn recv_inner(&mut self, nonblocking: bool, read_ahead: bool) -> Result<Recv> {
        self.drained = false;
        if let Some(m) = self.next_of_batch() {
            return Ok(Recv::Message(m));
        }
        loop {
            let got = if let Some(r) = self.next.take() {
                // Read by the previous call behind its datagram: its bytes move into place.
                std::mem::swap(&mut self.rbuf, &mut self.rbuf_next);
                Ok(r)
            } else if read_ahead {
                if self.rbuf_next.is_empty() {
                    self.rbuf_next = vec![0u8; MAX_DATAGRAM].into_boxed_slice();
                }
                sys::recv_datagrams(self.fd.as_fd(), &mut self.rbuf, &mut self.rbuf_next).map(
                    |(r, more)| {
                        match more {
                            sys::More::Next(n) => self.next = Some(n),
                            sys::More::Empty => self.drained = true,
                            sys::More::Unknown => {}
                        }
                        r
                    },
                )
            } else {
                sys::recv_datagram(self.fd.as_fd(), &mut self.rbuf, nonblocking)
            };
            let r = match got {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Recv::WouldBlock),
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Ok(Recv::Eof),
                Err(e) => return Err(Error::os("recvmsg", "receive on channel", &e)),
            };
            if r.len == 0 && r.fds.is_empty() && !r.truncated && !r.fds_dropped {
                return Ok(Recv::Eof);
            }
            if r.truncated {
                return Err(Error::protocol(
                    "malformed frame: datagram or its fds truncated",
                ));
            }
            if r.fds_dropped {
                self.incoming.fds_dropped();
            }
            if let Some(m) = self.incoming.push(&self.rbuf[..r.len], r.fds)? {
                let lost = self.incoming.take_lost();
                if m.kind == Kind::Batch {
                    return self.on_batch(m, lost);
                }
                if lost {
                    return Ok(Recv::FdsLost(m.kind));
                }
                return Ok(Recv::Message(m));
            }
        }
    }

    /// Whether a non-blocking [`Channel::recv`] now could return more than `WouldBlock`:
    /// false when the last [`Channel::recv_reading_ahead`] found the socket empty behind what it
    /// returned (and left nothing read over); always true after a plain `recv`. A reader on a
    /// level-triggered poll (libuv's) stops there and saves the `recvmsg` that would only say
    /// `EAGAIN`; should a message arrive meanwhile, the poll reports it. A reader on an
    /// edge-triggered poll must read on until `WouldBlock`.
    pub fn may_have_more(&self) -> bool {
        !self.drained || self.next.is_some() || self.unbatching.is_some()
    }

    /// Sends an application message from `data` without copying it when nothing is queued
    /// before it and the socket takes it now; otherwise queues what is left (a copy).
    /// `Ok(true)`: completely written. `TooLarge` above 64 MiB, `InvalidArgument` with too many
    /// fds.
    pub fn send_or_queue_user(&mut self, data: &[u8], fds: Vec<OwnedFd>) -> Result<bool> {
        self.send_or_queue(Kind::User, data, fds)
    }

    /// Sends several application messages as one `Batch` frame (`data`: `[len u32le][bytes]`
    /// each, as [`crate::Batch`] builds it), which the peer reads as those messages
    /// in order; checked whole first (`InvalidArgument`, nothing sent). `Ok(true)`: written.
    pub fn send_or_queue_batch(&mut self, data: &[u8]) -> Result<bool> {
        proto::batch_parts(data)
            .map_err(|e| Error::invalid(format!("send batch: {}", e.message())))?;
        self.send_or_queue(Kind::Batch, data, Vec::new())
    }

    /// Writes a message now if nothing is queued before it and the socket takes it, else
    /// queues (the rest of) it; `Ok(true)`: completely written.
    pub fn send_or_queue_message(&mut self, m: Message) -> Result<bool> {
        self.queue(m.kind, m.data, m.fds)?;
        self.flush(false)
            .map_err(|e| Error::os("sendmsg", "send on channel", &e))
    }

    /// Appends a message to the outgoing queue ([`Channel::flush`] writes it).
    pub fn queue_message(&mut self, m: Message) -> Result<()> {
        self.queue(m.kind, m.data, m.fds)
    }

    /// Queues a message and flushes, waiting for room: for callers without an event loop.
    pub fn send_blocking_message(&mut self, m: Message) -> Result<()> {
        self.send_blocking(m.kind, m.data, m.fds)
    }

    /// A whole `Batch` message: checked, then returned whole or as its first message.
    fn on_batch(&mut self, m: Message, fds_lost: bool) -> Result<Recv> {
        if !m.fds.is_empty() || fds_lost {
            return Err(Error::protocol("malformed frame: a Batch with fds"));
        }
        let parts = proto::batch_parts(&m.data)?;
        if self.keep_batches {
            return Ok(Recv::Message(m));
        }
        self.unbatching = Some(Unbatching {
            data: m.data,
            parts: parts.into_iter(),
        });
        Ok(Recv::Message(
            self.next_of_batch().expect("a batch has a message"),
        ))
    }

    /// The next message of the batch being split, as a `User` message of its own.
    fn next_of_batch(&mut self) -> Option<Message> {
        let u = self.unbatching.as_mut()?;
        let Some((start, end)) = u.parts.next() else {
            self.unbatching = None;
            return None;
        };
        let data = u.data[start..end].to_vec();
        if u.parts.len() == 0 {
            self.unbatching = None;
        }
        Some(Message {
            kind: Kind::User,
            data,
            fds: Vec::new(),
        })
    }

    /// Raw fd number (for logging and pollers).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Gives the socket back, dropping anything still queued.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Channel, Channel) {
        let (a, b) = sys::seqpacket_pair().unwrap();
        (Channel::new(a), Channel::new(b))
    }

    fn recv_one(c: &mut Channel) -> Message {
        match c.recv(false).unwrap() {
            Recv::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn large_messages_are_fragmented_and_reassembled_in_order() {
        let (mut a, mut b) = pair();
        let big: Vec<u8> = (0..3 * MAX_CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let t = std::thread::spawn(move || {
            a.queue(Kind::User, b"one".to_vec(), vec![]).unwrap();
            a.queue(Kind::User, big, vec![]).unwrap();
            a.queue(Kind::User, b"three".to_vec(), vec![]).unwrap();
            assert!(a.flush(true).unwrap());
            a
        });
        assert_eq!(recv_one(&mut b).data, b"one");
        let m = recv_one(&mut b);
        assert_eq!(m.data.len(), 3 * MAX_CHUNK + 17);
        assert!(m
            .data
            .iter()
            .enumerate()
            .all(|(i, &x)| x == (i % 251) as u8));
        assert_eq!(recv_one(&mut b).data, b"three");
        drop(t.join().unwrap());
        assert!(matches!(b.recv(false).unwrap(), Recv::Eof));
    }

    fn recv_now(c: &mut Channel) -> Message {
        match c.recv_reading_ahead().unwrap() {
            Recv::Message(m) => m,
            other => panic!("expected a queued message, got {other:?}"),
        }
    }

    /// A non-blocking reader gets two datagrams per read and learns when the socket is empty
    /// behind what it got, so it need not ask again: what arrives later is still read, in
    /// order, fds included, and the end of the channel behind a message is still seen.
    #[test]
    fn nonblocking_reads_say_when_the_socket_is_empty() {
        // The portable backend reads one record per call and cannot tell (may_have_more
        // stays true there, the reader asks once more).
        let told = cfg!(all(target_os = "linux", not(feature = "portable")));
        let (mut a, mut b) = pair();
        a.send_or_queue_user(b"one", vec![]).unwrap();
        assert_eq!(recv_now(&mut b).data, b"one");
        assert!(
            !(told && b.may_have_more()),
            "nothing was queued behind `one`"
        );
        let (x, _y) = sys::seqpacket_pair().unwrap();
        a.send_or_queue_user(b"two", vec![]).unwrap();
        a.send_or_queue_user(b"three", vec![x]).unwrap();
        a.send_or_queue_user(b"four", vec![]).unwrap();
        assert_eq!(recv_now(&mut b).data, b"two");
        assert!(b.may_have_more(), "`three` was read along with `two`");
        let three = recv_now(&mut b);
        assert_eq!((&three.data[..], three.fds.len()), (&b"three"[..], 1));
        assert!(b.may_have_more());
        assert_eq!(recv_now(&mut b).data, b"four");
        assert!(!(told && b.may_have_more()));
        assert!(matches!(b.recv_reading_ahead().unwrap(), Recv::WouldBlock));
        // A message arriving after the reader saw an empty socket is read as usual.
        a.send_or_queue_user(b"five", vec![]).unwrap();
        assert_eq!(recv_now(&mut b).data, b"five");
        // The end of the channel behind a message.
        a.send_or_queue_user(b"last", vec![]).unwrap();
        drop(a);
        assert_eq!(recv_now(&mut b).data, b"last");
        assert!(b.may_have_more(), "the end was read behind `last`");
        assert!(b.has_read_ahead() || !told);
        assert!(matches!(b.recv(true).unwrap(), Recv::Eof));
    }

    /// A plain recv takes one message off the socket and leaves the next there: a worker's
    /// connections wait in the channel until it may take them, where the primary takes back
    /// what a dead worker left (the primary's `recover`).
    #[test]
    fn a_plain_recv_leaves_what_follows_in_the_socket() {
        let (mut a, mut b) = pair();
        let (x, _y) = sys::seqpacket_pair().unwrap();
        a.send_or_queue_user(b"first", vec![]).unwrap();
        a.send_or_queue_user(b"second", vec![x]).unwrap();
        match b.recv(true).unwrap() {
            Recv::Message(m) => assert_eq!(m.data, b"first"),
            other => panic!("expected `first`, got {other:?}"),
        }
        assert!(!b.has_read_ahead());
        assert!(b.may_have_more());
        let mut head = [0u8; 64];
        let n = sys::peek_datagram(b.fd(), &mut head)
            .unwrap()
            .expect("`second` is still in the socket");
        assert!(head[..n].ends_with(b"second"), "{:?}", &head[..n]);
        let second = recv_one(&mut b);
        assert_eq!((&second.data[..], second.fds.len()), (&b"second"[..], 1));
    }

    #[test]
    fn too_large_is_refused_with_the_limit() {
        let (mut a, _b) = pair();
        let e = a
            .queue(Kind::User, vec![0; frame::MAX_MESSAGE_LEN + 1], vec![])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert!(e.message().contains("64 MiB"), "{e}");
    }

    #[test]
    fn malformed_frames_are_errors() {
        let (a, mut b) = pair();
        sys::send_datagram(a.fd(), b"garbage!", b"", &[], true).unwrap();
        let e = b.recv(true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        let (a, mut b) = pair();
        let head = frame::encode(Kind::User, 0, 4);
        sys::send_datagram(a.fd(), &head, b"abcd", &[], true).unwrap();
        assert!(b.recv(true).unwrap_err().message().contains("continuation"));
    }

    #[test]
    fn a_batch_reads_as_its_messages_in_order_or_whole_when_kept() {
        let (mut a, mut b) = pair();
        let mut batch = proto::Batch::new();
        batch.push(b"first");
        batch.push(b"");
        batch.push(b"third");
        let batch = batch.finish();
        a.queue(Kind::User, b"before".to_vec(), vec![]).unwrap();
        a.queue(Kind::Batch, batch.clone(), vec![]).unwrap();
        a.queue(Kind::User, b"after".to_vec(), vec![]).unwrap();
        assert!(a.flush(false).unwrap());
        let got: Vec<(Kind, Vec<u8>)> = (0..5)
            .map(|_| recv_one(&mut b))
            .map(|m| (m.kind, m.data))
            .collect();
        let user = |d: &[u8]| (Kind::User, d.to_vec());
        assert_eq!(
            got,
            [
                user(b"before"),
                user(b"first"),
                user(b""),
                user(b"third"),
                user(b"after")
            ]
        );
        assert!(matches!(b.recv(true).unwrap(), Recv::WouldBlock));
        b.keep_batches();
        a.queue(Kind::Batch, batch.clone(), vec![]).unwrap();
        assert!(a.flush(false).unwrap());
        let m = recv_one(&mut b);
        assert_eq!((m.kind, m.data), (Kind::Batch, batch));
    }

    #[test]
    fn a_malformed_batch_or_one_with_fds_is_a_protocol_error() {
        let (mut a, mut b) = pair();
        a.queue(Kind::Batch, vec![9, 0, 0, 0, b'x'], vec![])
            .unwrap();
        assert!(a.flush(false).unwrap());
        let e = b.recv(true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(e.message().contains("runs past the end"), "{e}");
        let (mut a, mut b) = pair();
        let (x, _y) = sys::seqpacket_pair().unwrap();
        a.queue(Kind::Batch, vec![1, 0, 0, 0, b'x'], vec![x])
            .unwrap();
        assert!(a.flush(false).unwrap());
        let e = b.recv(true).unwrap_err();
        assert!(e.message().contains("Batch with fds"), "{e}");
    }

    #[test]
    fn single_datagram_fast_path_respects_the_queue() {
        let (mut a, mut b) = pair();
        a.queue(Kind::User, b"queued".to_vec(), vec![]).unwrap();
        assert!(!a.try_send_single(Kind::Ack, b"x", &[]).unwrap());
        assert!(a.flush(false).unwrap());
        assert!(a.try_send_single(Kind::Ack, b"x", &[]).unwrap());
        assert_eq!(recv_one(&mut b).data, b"queued");
        assert_eq!(recv_one(&mut b).kind, Kind::Ack);
    }

    /// Stream records (portable backend): a record the socket took only the start of is
    /// finished from the queue before anything else, and the reader gets every record whole.
    #[test]
    #[cfg(any(feature = "portable", not(target_os = "linux")))]
    fn a_record_cut_short_is_finished_first_from_the_queue() {
        let (mut a, mut b) = pair();
        let big = vec![5u8; MAX_CHUNK];
        let mut sent = 0;
        for _ in 0..10_000 {
            if !a.try_send_single(Kind::User, &big, &[]).unwrap() {
                break;
            }
            sent += 1;
            if a.has_queued() {
                break;
            }
        }
        assert!(a.has_queued(), "no record was cut short in {sent} sends");
        assert!(
            !a.try_send_single(Kind::Ack, b"x", &[]).unwrap(),
            "overtook a cut record"
        );
        a.queue(Kind::User, b"after".to_vec(), vec![]).unwrap();
        let t = std::thread::spawn(move || {
            assert!(a.flush(true).unwrap());
            a
        });
        for _ in 0..sent {
            let m = recv_one(&mut b);
            assert_eq!((m.kind, m.data.len()), (Kind::User, MAX_CHUNK));
        }
        assert_eq!(recv_one(&mut b).data, b"after");
        drop(t.join().unwrap());
    }

    #[test]
    fn send_or_queue_writes_in_place_and_queues_the_rest_in_order() {
        let (mut a, mut b) = pair();
        // Room: written at once, counted as written.
        assert!(a.send_or_queue(Kind::User, b"small", vec![]).unwrap());
        assert_eq!((a.last_seq(), a.written()), (1, 1));
        assert_eq!(recv_one(&mut b).data, b"small");
        // Fill the socket with a big message: part goes out now, the rest is queued.
        let big: Vec<u8> = (0..40 * MAX_CHUNK).map(|i| (i % 239) as u8).collect();
        let (x, _y) = sys::seqpacket_pair().unwrap();
        assert!(!a.send_or_queue(Kind::User, &big, vec![x]).unwrap());
        assert!(a.queued_bytes() > 0 && a.queued_bytes() < big.len());
        // Behind a queue, a message waits its turn.
        assert!(!a.send_or_queue(Kind::User, b"after", vec![]).unwrap());
        assert_eq!((a.last_seq(), a.written()), (3, 1));
        let t = std::thread::spawn(move || {
            assert!(a.flush(true).unwrap());
            assert_eq!(a.written(), 3);
            a
        });
        let m = recv_one(&mut b);
        assert_eq!(m.data, big);
        assert_eq!(m.fds.len(), 1, "the fd rides on the first datagram");
        assert_eq!(recv_one(&mut b).data, b"after");
        drop(t.join().unwrap());
    }
}
