//! The worker side of the wire protocol, without I/O: what a worker says to its primary and
//! what the primary's messages mean, written once for both fronts' workers.
//!
//! The driver owns the socket (a [`Channel`](crate::Channel)) and its loop: the blocking/mio
//! [`Worker`](super::Worker) of the C front, the addon's worker driven from libuv's poll. It
//! hands each [`Recv`] it reads to [`WorkerProtocol::receive`], which decodes it into a
//! [`Delivered`] event and counts connections; at the end of each read it writes the
//! acknowledgement [`WorkerProtocol::end_read`] gives (acks are batched: the primary says in
//! every listen answer how many connections one ack may cover). Requests to the primary
//! (listen, unlisten, refuse, room, ready, heartbeat, application messages, goodbye) are
//! [`Message`]s made here for the driver to write. Nothing here owns an fd beyond the messages
//! passing through it or makes a system call, so the unit tests below run it on bytes alone;
//! the one exception is a load-aware kernel-steered listen answer, whose `load` map is mapped
//! here ([`LoadSlots`]) so that both fronts release connections the same way.

use crate::error::{Error, ErrorKind, Result};
use crate::ipc::channel::check_outgoing;
use crate::ipc::proto::{self, ListenReply, ListenRequest};
use crate::ipc::{Kind, Message, Recv};
use crate::listener::{BindOptions, BoundAddr, ListenAddr, SocketKind};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::load::LoadSlots;

/// Most connections a worker takes off its channel at a time (both fronts' workers). A
/// connection still in the channel is safe: if the worker dies (or stalls) the primary reads it
/// back and deals it to another worker. One taken into the worker is lost with it. Taking a few
/// at a time, as the worker gets to them, keeps what a SIGKILLed worker takes down close to what
/// it was serving. Measured with `bench/chaos.js` (4 rounds, same run as node:cluster): taking
/// all (up to the window) failed 36.5 requests a round against node:cluster's 20; 4 at a time,
/// 18 against 22.5 while serving 27 % more requests; 1 at a time, 13 against 21.5 but 12 %
/// fewer connections/s in the `Connection: close` benchmark (4 costs nothing there).
pub const CONNS_PER_READ: usize = 4;

/// What a message from the primary means for the worker.
#[derive(Debug)]
pub enum Delivered {
    /// A round-robin connection (the worker now owns the socket).
    Connection {
        /// The listener it came from.
        listener: u32,
        /// The connection.
        fd: OwnedFd,
        /// The client's address a PROXY protocol header named (the primary consumed the
        /// header); `None` without the PROXY protocol.
        peer: Option<std::net::SocketAddr>,
    },
    /// An application message.
    Message {
        /// Payload.
        data: Vec<u8>,
        /// Attached fds.
        fds: Vec<OwnedFd>,
    },
    /// Several application messages in one payload, kept whole because the channel was asked
    /// to ([`crate::Channel::keep_batches`]): `batch_parts` splits it (already checked whole
    /// by the channel).
    Batch {
        /// Length-prefixed messages back to back.
        data: Vec<u8>,
    },
    /// The primary asks the worker to finish its work and disconnect.
    Disconnect,
    /// The answer to listen request `req`: listening.
    Listened {
        /// The request it answers.
        req: u32,
        /// Listener id (shared by every worker on the same address).
        listener: u32,
        /// The resolved address.
        addr: BoundAddr,
        /// The listening socket (shared mode) or the UDP socket (datagram).
        fd: Option<OwnedFd>,
    },
    /// The answer to listen request `req`: failed, with the primary's error as it was (its
    /// kind, errno, syscall, message and option).
    ListenFailed {
        /// The request it answers.
        req: u32,
        /// The primary's error.
        error: Error,
    },
    /// A message arrived but the kernel dropped its fds: this worker is out of file descriptors.
    /// The channel is in step; a lost connection still counts as taken (acknowledged).
    FdsLost {
        /// What was lost, as an EMFILE-like error for the application.
        error: Error,
        /// It was a listen answer (the waiting listen fails with `error`).
        listen_answer: bool,
    },
    /// The primary is gone (the channel ended). A worker should exit now.
    PrimaryGone,
}

impl Delivered {
    /// The error of a [`Delivered::ListenFailed`] as the engine reports it (`None` otherwise).
    pub fn listen_error(&self) -> Option<Error> {
        match self {
            Delivered::ListenFailed { error, .. } => Some(error.clone()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The worker said goodbye: it reads and sends nothing more.
    Disconnected,
    /// The channel ended.
    PrimaryGone,
}

/// The worker side of one channel, as a state machine fed with what the driver reads.
#[derive(Debug)]
pub struct WorkerProtocol {
    /// Connections taken (or lost) and not acknowledged yet.
    unacked: u32,
    /// How many connections one acknowledgement may cover (the primary's last listen answer).
    ack_every: u32,
    /// Connections taken in the current read (see [`CONNS_PER_READ`]).
    taken: usize,
    state: State,
    /// Load-aware kernel-steered listeners: their `load` mapping and slot.
    loads: Arc<LoadSlots>,
}

impl Default for WorkerProtocol {
    fn default() -> Self {
        WorkerProtocol::new()
    }
}

impl WorkerProtocol {
    /// A fresh channel: nothing taken, every connection acknowledged at once until a listen
    /// answer says otherwise.
    pub fn new() -> WorkerProtocol {
        WorkerProtocol {
            unacked: 0,
            ack_every: 1,
            taken: 0,
            state: State::Open,
            loads: Arc::default(),
        }
    }

    /// The load mappings of this worker's load-aware kernel-steered listeners (`kernel-rr`
    /// with its window, `kernel-least`), filled from listen answers: a front releases through
    /// it when it takes a connection ([`LoadSlots::accepted`], kernel-rr) or closes one
    /// ([`LoadSlots::closed`], kernel-least), and tells the primary of a close only when the
    /// listener is not one of those.
    pub fn loads(&self) -> &Arc<LoadSlots> {
        &self.loads
    }

    /// The first message on a channel: this worker is up.
    pub fn online() -> Message {
        Message::new(Kind::Online, Vec::new(), Vec::new())
    }

    /// A listen request (`req` is echoed in the answer, [`Delivered::Listened`] or
    /// [`Delivered::ListenFailed`]; `index` tells apart several listeners of one address from
    /// one worker, as node:cluster's listen index). A datagram listener on a Unix socket path
    /// is `ErrorKind::InvalidArgument` (`what` names the call in the message).
    pub fn listen(
        req: u32,
        addr: &ListenAddr,
        kind: SocketKind,
        backlog: i32,
        index: u32,
        opts: BindOptions,
        what: &str,
    ) -> Result<Message> {
        if kind == SocketKind::Datagram {
            if let ListenAddr::Unix(_) = addr {
                return Err(Error::invalid_option(
                    "address",
                    format_args!("{what}: datagram listeners are UDP only, not Unix socket paths"),
                ));
            }
        }
        let msg = ListenRequest {
            req,
            backlog,
            addr: addr.clone(),
            index,
            opts,
            kind,
        };
        Ok(Message::new(Kind::Listen, msg.encode(), Vec::new()))
    }

    /// Stop dealing this worker `listener`'s connections (or: it leaves a datagram listener).
    pub fn unlisten(listener: u32) -> Message {
        Message::new(
            Kind::Unlisten,
            proto::u32_payload(listener).to_vec(),
            Vec::new(),
        )
    }

    /// Hands a round-robin connection of `listener` back to the primary, with the client
    /// address its delivery carried (`Delivered::Connection::peer`: a PROXY header's, which the
    /// connection itself no longer holds), so the next worker is given the same client.
    pub fn refuse(listener: u32, fd: OwnedFd, peer: Option<std::net::SocketAddr>) -> Message {
        let (b, n) = proto::refuse_payload(listener, peer);
        Message::new(Kind::Refuse, b[..n].to_vec(), vec![fd])
    }

    /// A connection of `listener` dealt to this worker has closed (for `least`).
    pub fn closed(listener: u32) -> Message {
        Message::new(
            Kind::Closed,
            proto::u32_payload(listener).to_vec(),
            Vec::new(),
        )
    }

    /// This worker has room again for `listener`'s connections.
    pub fn room(listener: u32) -> Message {
        Message::new(
            Kind::Room,
            proto::u32_payload(listener).to_vec(),
            Vec::new(),
        )
    }

    /// The application is ready.
    pub fn ready() -> Message {
        Message::new(Kind::Ready, Vec::new(), Vec::new())
    }

    /// The main loop is alive, optionally with the connections this worker has open.
    pub fn heartbeat(active_connections: Option<u32>) -> Message {
        let data = active_connections.map_or_else(Vec::new, |n| proto::u32_payload(n).to_vec());
        Message::new(Kind::Heartbeat, data, Vec::new())
    }

    /// An application message. `ErrorKind::TooLarge` above 64 MiB, `InvalidArgument` with too
    /// many fds.
    pub fn message(data: Vec<u8>, fds: Vec<OwnedFd>) -> Result<Message> {
        check_outgoing(data.len(), fds.len())?;
        Ok(Message::new(Kind::User, data, fds))
    }

    /// The goodbye, for a driver that manages its own closing (see [`Self::disconnect`]).
    pub fn bye() -> Message {
        Message::new(Kind::Bye, Vec::new(), Vec::new())
    }

    /// The worker disconnects: the goodbye to write, the first time only (`None` once
    /// disconnected or once the primary is gone). Afterwards [`Self::check_open`] fails and
    /// nothing more is read.
    pub fn disconnect(&mut self) -> Option<Message> {
        if self.state != State::Open {
            return None;
        }
        self.state = State::Disconnected;
        Some(Self::bye())
    }

    /// `ErrorKind::Disconnected` once this worker disconnected or saw the primary go (`what`
    /// names the call). Without it a send after a disconnect succeeded or failed depending on
    /// whether the primary had closed its end yet, and what "succeeded" was dropped unread.
    pub fn check_open(&self, what: &str) -> Result<()> {
        match self.state {
            State::Open => Ok(()),
            State::Disconnected => Err(Error::new(
                ErrorKind::Disconnected,
                format!("{what}: this worker has disconnected; nothing is sent after that"),
            )),
            State::PrimaryGone => Err(Error::new(
                ErrorKind::Disconnected,
                format!("{what}: the primary is gone"),
            )),
        }
    }

    /// Whether the channel is open (not disconnected, primary not gone).
    pub fn is_connected(&self) -> bool {
        self.state == State::Open
    }

    /// Whether this worker disconnected itself ([`Self::disconnect`]).
    pub fn is_disconnected(&self) -> bool {
        self.state == State::Disconnected
    }

    /// Whether the driver should take another message off the channel in this read: the
    /// channel is open and fewer than [`CONNS_PER_READ`] connections were taken since the last
    /// [`Self::end_read`]. The rest wait in the channel, where the primary takes them back if
    /// this worker dies or stalls.
    pub fn may_read(&self) -> bool {
        self.state == State::Open && self.taken < CONNS_PER_READ
    }

    /// Whether the driver may take two messages off the channel at once
    /// (`Channel::recv_reading_ahead`): [`Self::may_read`], and should both be connections,
    /// the read still takes no more than [`CONNS_PER_READ`].
    pub fn may_read_ahead(&self) -> bool {
        self.state == State::Open && self.taken + 2 <= CONNS_PER_READ
    }

    /// Ends a read: the acknowledgement to write now, when enough connections were taken (as
    /// many as the primary's `ack_every`; none after the channel closed).
    pub fn end_read(&mut self) -> Option<Message> {
        self.taken = 0;
        if self.state != State::Open || self.unacked < self.ack_every {
            return None;
        }
        let n = std::mem::take(&mut self.unacked);
        Some(Message::new(
            Kind::Ack,
            proto::u32_payload(n).to_vec(),
            Vec::new(),
        ))
    }

    /// What one read from the channel means. `Ok(None)`: nothing for the application (no
    /// message yet, or a ping, which reading answers). `Err`: a malformed or unexpected message
    /// (`ErrorKind::Protocol`, naming it); the channel is still in step and reading goes on.
    pub fn receive(&mut self, r: Recv) -> Result<Option<Delivered>> {
        let m = match r {
            Recv::Message(m) => m,
            Recv::WouldBlock => return Ok(None),
            Recv::Eof => {
                if self.state == State::Open {
                    self.state = State::PrimaryGone;
                }
                return Ok(Some(Delivered::PrimaryGone));
            }
            Recv::FdsLost(kind) => {
                if kind == Kind::Conn {
                    // Lost, but taken: the primary's window for this worker must not shrink.
                    self.unacked += 1;
                    self.taken += 1;
                }
                return Ok(Some(Delivered::FdsLost {
                    error: fds_lost_from_primary(kind),
                    listen_answer: kind == Kind::ListenOk,
                }));
            }
        };
        let Message { kind, data, fds } = m;
        Ok(Some(match kind {
            Kind::Conn => {
                let (listener, peer) = proto::decode_conn_peer(&data)?;
                let mut fds = fds.into_iter();
                let fd = fds
                    .next()
                    .ok_or_else(|| Error::protocol("malformed frame: conn without fd"))?;
                if fds.next().is_some() {
                    return Err(Error::protocol(
                        "malformed frame: conn with more than one fd",
                    ));
                }
                self.unacked += 1;
                self.taken += 1;
                Delivered::Connection { listener, fd, peer }
            }
            Kind::User => Delivered::Message { data, fds },
            // The channel refuses a batch with fds, so only the payload is left.
            Kind::Batch => Delivered::Batch { data },
            Kind::Disconnect => Delivered::Disconnect,
            Kind::ListenOk => {
                let ListenReply::Ok {
                    req,
                    listener,
                    addr,
                    ack_every,
                    load_slot,
                    load_release,
                } = ListenReply::decode_ok(&data)?
                else {
                    unreachable!("decode_ok returns Ok")
                };
                self.ack_every = ack_every;
                let mut fds = fds.into_iter();
                let fd = fds.next();
                if let Some(slot) = load_slot {
                    // Its own socket first, then the group's load map.
                    let (Some(_), Some(map)) = (fd.as_ref(), fds.next()) else {
                        return Err(Error::protocol(format!(
                            "malformed frame: the listen answer for {addr} names load slot \
                             {slot} without its socket and load map"
                        )));
                    };
                    self.loads
                        .add(listener, &map, slot, load_release)
                        .map_err(|e| load_map_error(&addr, &e))?;
                } else {
                    // Not (or no longer) load-aware: closes go to the primary again.
                    self.loads.forget(listener);
                }
                Delivered::Listened {
                    req,
                    listener,
                    addr,
                    fd,
                }
            }
            Kind::ListenErr => {
                let ListenReply::Err { req, error } = ListenReply::decode_err(&data)? else {
                    unreachable!("decode_err returns Err")
                };
                Delivered::ListenFailed { req, error }
            }
            // Reading it is all it asks (the primary's stall check).
            Kind::Ping => return Ok(None),
            other => {
                return Err(Error::protocol(format!(
                    "malformed frame: unexpected {other:?} from the primary"
                )))
            }
        }))
    }
}

/// The error a worker reports when the kernel dropped the fds of a message from the primary
/// (the worker is out of file descriptors; [`Recv::FdsLost`]).
pub(crate) fn fds_lost_from_primary(kind: Kind) -> Error {
    if kind == Kind::Conn {
        return Error::fds_lost("a connection from the primary (closed by the kernel)");
    }
    Error::fds_lost(format!("a {kind:?} message from the primary"))
}

/// A listen answer's load map that could not be mapped. An fd that is not a load array of a
/// group (a file, a pipe, another anonymous inode, a map of another size: `InvalidInput`,
/// ENODEV, EACCES, EINVAL) is the peer's malformed answer; anything else (ENOMEM) is the OS's.
fn load_map_error(addr: &BoundAddr, e: &std::io::Error) -> Error {
    let not_a_map = e.kind() == std::io::ErrorKind::InvalidInput
        || matches!(
            e.raw_os_error(),
            Some(libc::ENODEV | libc::EACCES | libc::EINVAL)
        );
    if not_a_map {
        Error::protocol(format!(
            "malformed frame: the listen answer for {addr} carries a load map that is not \
             one: {e}"
        ))
    } else {
        Error::os("mmap", format!("map the load counters of {addr}"), e).with_syscall("listen")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::frame::{self, FLAG_FIRST};
    use crate::ipc::reassembly::Reassembly;
    use crate::sys::LoadRelease;

    /// What the primary would put on the wire, read back through reassembly as a driver's
    /// channel would: bytes in, `Recv` out.
    fn wire(kind: Kind, data: &[u8], fds: Vec<OwnedFd>) -> Recv {
        let mut dgram = frame::encode(kind, FLAG_FIRST, data.len() as u32).to_vec();
        dgram.extend_from_slice(data);
        let m = Reassembly::new()
            .push(&dgram, fds)
            .expect("a well-formed datagram")
            .expect("one datagram is a whole message");
        Recv::Message(m)
    }

    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    fn conn(listener: u32) -> Recv {
        wire(Kind::Conn, &proto::conn_payload(listener, 0), vec![fd()])
    }

    fn listen_ok(req: u32, ack_every: u32) -> Recv {
        let reply = ListenReply::Ok {
            req,
            listener: 7,
            addr: BoundAddr::Tcp("127.0.0.1:8080".parse().unwrap()),
            ack_every,
            load_slot: None,
            load_release: LoadRelease::AtClose,
        };
        wire(Kind::ListenOk, &reply.encode(), Vec::new())
    }

    fn ack_count(m: Message) -> u32 {
        assert_eq!(m.kind, Kind::Ack);
        proto::decode_u32(&m.data, "ack").unwrap()
    }

    #[test]
    fn a_connection_frame_becomes_a_connection_and_is_acknowledged_at_the_end_of_the_read() {
        let mut p = WorkerProtocol::new();
        match p.receive(conn(3)).unwrap() {
            Some(Delivered::Connection { listener: 3, .. }) => {}
            other => panic!("expected a connection of listener 3, got {other:?}"),
        }
        assert_eq!(ack_count(p.end_read().expect("an ack")), 1);
        assert!(p.end_read().is_none(), "acknowledged once");
    }

    #[test]
    fn acks_are_batched_as_the_listen_answer_asks_and_reads_stop_after_conns_per_read() {
        let mut p = WorkerProtocol::new();
        match p.receive(listen_ok(1, 6)).unwrap() {
            Some(Delivered::Listened {
                req: 1,
                listener: 7,
                fd: None,
                ..
            }) => {}
            other => panic!("expected the listen answer, got {other:?}"),
        }
        for i in 0..CONNS_PER_READ {
            assert!(p.may_read());
            // Reading two at once is allowed only while two more connections may be taken.
            assert_eq!(p.may_read_ahead(), i + 2 <= CONNS_PER_READ, "after {i}");
            p.receive(conn(7)).unwrap().expect("a connection");
        }
        assert!(!p.may_read(), "{CONNS_PER_READ} connections per read");
        assert!(!p.may_read_ahead());
        assert!(p.end_read().is_none(), "4 taken, 6 per ack");
        assert!(p.may_read(), "a new read");
        for _ in 0..2 {
            p.receive(conn(7)).unwrap().expect("a connection");
        }
        assert_eq!(ack_count(p.end_read().expect("an ack for 6")), 6);
    }

    #[test]
    fn a_lost_connection_counts_as_taken_and_reports_emfile() {
        let mut p = WorkerProtocol::new();
        match p.receive(Recv::FdsLost(Kind::Conn)).unwrap() {
            Some(Delivered::FdsLost {
                error,
                listen_answer: false,
            }) => assert_eq!(error.errno(), libc::EMFILE, "{error}"),
            other => panic!("expected fds lost, got {other:?}"),
        }
        assert_eq!(ack_count(p.end_read().expect("an ack")), 1);
        match p.receive(Recv::FdsLost(Kind::ListenOk)).unwrap() {
            Some(Delivered::FdsLost {
                listen_answer: true,
                ..
            }) => {}
            other => panic!("expected a lost listen answer, got {other:?}"),
        }
    }

    #[test]
    fn messages_disconnect_requests_pings_and_listen_errors_decode() {
        let mut p = WorkerProtocol::new();
        match p.receive(wire(Kind::User, b"hi", vec![fd()])).unwrap() {
            Some(Delivered::Message { data, fds }) => {
                assert_eq!(data, b"hi");
                assert_eq!(fds.len(), 1);
            }
            other => panic!("expected a message, got {other:?}"),
        }
        assert!(matches!(
            p.receive(wire(Kind::Disconnect, &[], Vec::new())).unwrap(),
            Some(Delivered::Disconnect)
        ));
        assert!(p
            .receive(wire(Kind::Ping, &[], Vec::new()))
            .unwrap()
            .is_none());
        assert!(p.receive(Recv::WouldBlock).unwrap().is_none());
        let err = ListenReply::Err {
            req: 4,
            error: Error::from_errno("bind", "bind 127.0.0.1:80", libc::EADDRINUSE),
        };
        let d = p
            .receive(wire(Kind::ListenErr, &err.encode(), Vec::new()))
            .unwrap()
            .expect("an answer");
        let e = d.listen_error().expect("a listen error");
        assert_eq!((e.errno(), e.syscall()), (libc::EADDRINUSE, Some("bind")));
        assert!(matches!(d, Delivered::ListenFailed { req: 4, .. }));
    }

    /// A `kernel-rr` listen answer naming load slot `slot`.
    fn steered(slot: u32) -> Vec<u8> {
        ListenReply::Ok {
            req: 1,
            listener: 1,
            addr: "tcp:127.0.0.1:80".parse().unwrap(),
            ack_every: 1,
            load_slot: Some(slot),
            load_release: crate::sys::LoadRelease::AtAccept,
        }
        .encode()
    }

    #[test]
    fn malformed_frames_are_protocol_errors_not_panics_and_reading_goes_on() {
        let mut p = WorkerProtocol::new();
        let bad = [
            wire(Kind::Conn, &proto::conn_payload(1, 0), Vec::new()),
            wire(Kind::Conn, &[1, 2], vec![fd()]),
            wire(Kind::Conn, &proto::conn_payload(1, 0), vec![fd(), fd()]),
            wire(Kind::ListenOk, &[0; 3], Vec::new()),
            wire(Kind::ListenErr, &[9; 40], Vec::new()),
            wire(Kind::Listen, &[], Vec::new()),
            wire(Kind::Ack, &[1, 0, 0, 0], Vec::new()),
            // A load-aware answer whose load map is no map (/dev/null here): the
            // primary's error, not an OS one (a fuzz/run messages find), and a slot past
            // any group's.
            wire(Kind::ListenOk, &steered(5), vec![fd(), fd()]),
            wire(
                Kind::ListenOk,
                &steered(crate::steering::MAX_SLOTS),
                vec![fd(), fd()],
            ),
        ];
        for r in bad {
            let what = format!("{r:?}");
            let e = p.receive(r).expect_err(&what);
            assert_eq!(e.kind(), ErrorKind::Protocol, "{what}: {e}");
            assert!(e.message().contains("malformed frame"), "{what}: {e}");
        }
        assert!(p.end_read().is_none(), "nothing was taken");
        assert!(matches!(
            p.receive(conn(2)).unwrap(),
            Some(Delivered::Connection { listener: 2, .. })
        ));
    }

    #[test]
    fn after_the_primary_goes_or_a_disconnect_nothing_is_read_sent_or_acknowledged() {
        let mut p = WorkerProtocol::new();
        p.receive(conn(1)).unwrap();
        assert!(matches!(
            p.receive(Recv::Eof).unwrap(),
            Some(Delivered::PrimaryGone)
        ));
        assert!(!p.may_read() && !p.is_connected());
        assert!(p.end_read().is_none(), "no ack to a gone primary");
        let e = p.check_open("send").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected);
        assert_eq!(e.message(), "send: the primary is gone");
        assert!(p.disconnect().is_none(), "no goodbye to a gone primary");

        let mut p = WorkerProtocol::new();
        assert_eq!(p.disconnect().expect("a goodbye").kind, Kind::Bye);
        assert!(p.disconnect().is_none(), "idempotent");
        assert!(p.is_disconnected() && !p.may_read());
        let e = p.check_open("heartbeat").unwrap_err();
        assert!(e.message().contains("has disconnected"), "{e}");
    }

    #[test]
    fn requests_encode_as_the_primary_decodes_them() {
        let addr: ListenAddr = "127.0.0.1:0".parse().unwrap();
        let m = WorkerProtocol::listen(
            9,
            &addr,
            SocketKind::Stream,
            511,
            2,
            BindOptions::default(),
            "listen",
        )
        .unwrap();
        assert_eq!(m.kind, Kind::Listen);
        let req = ListenRequest::decode(&m.data).unwrap();
        assert_eq!((req.req, req.backlog, req.index), (9, 511, 2));
        assert_eq!(req.addr, addr);
        let unix: ListenAddr = "unix:/tmp/corral-x.sock".parse().unwrap();
        let e = WorkerProtocol::listen(
            1,
            &unix,
            SocketKind::Datagram,
            0,
            0,
            BindOptions::default(),
            "bind /tmp/corral-x.sock",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let hb = WorkerProtocol::heartbeat(Some(3));
        assert_eq!(proto::decode_u32(&hb.data, "heartbeat").unwrap(), 3);
        assert!(WorkerProtocol::heartbeat(None).data.is_empty());
        let big = vec![0u8; frame::MAX_MESSAGE_LEN + 1];
        let e = WorkerProtocol::message(big, Vec::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
    }

    /// A `REUSEPORT` group steering as `steer`, with slot 3's load at 2: what the primary
    /// gives a worker it puts in slot 3. None unless root (the load map is a BPF map).
    fn group_with_slot_3(steer: crate::sys::Steer) -> Option<crate::sys::ReuseportGroup> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let g = crate::sys::ReuseportGroup::with_steer(crate::steering::MAX_SLOTS, steer)
            .expect("as root");
        g.load_map().unwrap().set(3, 2);
        Some(g)
    }

    fn steered_ok(load_slot: Option<u32>, fds: Vec<OwnedFd>) -> Recv {
        steered_ok_releasing(load_slot, LoadRelease::AtClose, fds)
    }

    fn steered_ok_releasing(
        load_slot: Option<u32>,
        load_release: LoadRelease,
        fds: Vec<OwnedFd>,
    ) -> Recv {
        let reply = ListenReply::Ok {
            req: 1,
            listener: 7,
            addr: BoundAddr::Tcp("127.0.0.1:8080".parse().unwrap()),
            ack_every: 8,
            load_slot,
            load_release,
        };
        wire(Kind::ListenOk, &reply.encode(), fds)
    }

    #[test]
    fn a_load_slot_without_its_load_map_is_malformed() {
        let mut p = WorkerProtocol::new();
        let e = p.receive(steered_ok(Some(3), vec![fd()])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(e.message().contains("load slot 3"), "{e}");
        assert!(!p.loads().contains(7));
        // Without a slot (any other policy, or an older primary): closes go to the primary.
        assert!(p.receive(steered_ok(None, vec![fd()])).unwrap().is_some());
        assert!(!p.loads().closed(7));
        assert!(!p.loads().accepted(7));
    }

    /// A kernel-steered answer with a load slot released at close (`kernel-least`): the
    /// protocol maps the group's counters, and `closed` takes one off the worker's slot (never
    /// below 0) while `accepted` takes nothing; unlisten forgets it. Root only (the map is a
    /// BPF map).
    #[test]
    fn a_load_slot_is_mapped_and_closes_release_it() {
        let Some(g) = group_with_slot_3(crate::sys::Steer::least_of(32)) else {
            return;
        };
        let map_fd = crate::sys::dup_cloexec(g.load_map_fd().unwrap()).unwrap();
        let mut p = WorkerProtocol::new();
        match p.receive(steered_ok(Some(3), vec![fd(), map_fd])).unwrap() {
            Some(Delivered::Listened {
                listener: 7,
                fd: Some(_),
                ..
            }) => {}
            other => panic!("expected listener 7 with its socket, got {other:?}"),
        }
        assert_eq!(p.loads().get(7), Some(2));
        assert_eq!(p.loads().release_of(7), Some(LoadRelease::AtClose));
        assert!(
            !p.loads().accepted(7),
            "kernel-least counts open connections"
        );
        assert_eq!(g.load(3), Some(2));
        assert!(p.loads().closed(7));
        assert_eq!(g.load(3), Some(1), "the group sees the worker's release");
        assert!(p.loads().closed(7));
        assert!(p.loads().closed(7));
        assert_eq!(g.load(3), Some(0), "never below 0");
        p.loads().forget(7);
        assert!(
            !p.loads().closed(7),
            "after unlisten: the primary's business again"
        );
    }

    /// A connection the worker took and then handed back (refused) is not open here: when it
    /// leaves the listener and listens there again, only the ones it still has open come back
    /// as load on its slot. Root only.
    #[test]
    fn a_refused_connection_does_not_come_back_as_load() {
        let Some(g) = group_with_slot_3(crate::sys::Steer::least_of(32)) else {
            return;
        };
        let map_fd = || crate::sys::dup_cloexec(g.load_map_fd().unwrap()).unwrap();
        let mut p = WorkerProtocol::new();
        assert!(p
            .receive(steered_ok(Some(3), vec![fd(), map_fd()]))
            .unwrap()
            .is_some());
        // Two taken; one of them goes back to the primary, which releases its load.
        assert!(!p.loads().accepted(7));
        assert!(!p.loads().accepted(7));
        p.loads().refused(7);
        g.load_map().unwrap().release(3);
        p.loads().forget(7);
        // The slot's next owner is this worker again, from 0: its one open connection is back.
        g.load_map().unwrap().set(3, 0);
        assert!(p
            .receive(steered_ok(Some(3), vec![fd(), map_fd()]))
            .unwrap()
            .is_some());
        assert_eq!(g.load(3), Some(1), "the refused one is not counted again");
        assert!(p.loads().closed(7));
        assert_eq!(g.load(3), Some(0));
    }

    /// `kernel-rr`'s window releases at accept: `accepted` takes one off the slot, `closed`
    /// nothing (but still says the listener is load-aware: no message to the primary).
    #[test]
    fn a_window_slot_releases_at_accept_not_at_close() {
        let Some(g) = group_with_slot_3(crate::sys::Steer::window_of(32)) else {
            return;
        };
        let map_fd = crate::sys::dup_cloexec(g.load_map_fd().unwrap()).unwrap();
        let mut p = WorkerProtocol::new();
        let answer = steered_ok_releasing(Some(3), LoadRelease::AtAccept, vec![fd(), map_fd]);
        assert!(p.receive(answer).unwrap().is_some());
        assert_eq!(p.loads().release_of(7), Some(LoadRelease::AtAccept));
        assert!(p.loads().closed(7), "load-aware: nothing for the primary");
        assert_eq!(
            g.load(3),
            Some(2),
            "a close releases nothing under kernel-rr"
        );
        assert!(p.loads().accepted(7));
        assert_eq!(g.load(3), Some(1));
    }
}
