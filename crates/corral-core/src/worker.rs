//! The worker side: the channel to the primary, listening through it, and one stream of events
//! (connections, messages, a disconnect request, the primary's death).
//!
//! Whatever the policy, connections arrive the same way: in round-robin they come over the
//! channel, in shared mode the worker accepts on the listening fd it was given. Connections are
//! acknowledged to the primary when they are taken off the channel, which opens room in the
//! worker's window.

use crate::error::{Error, ErrorKind, Result};
use crate::ipc::proto::{self, ListenReply, ListenRequest};
use crate::ipc::{Channel, Kind, Message, Recv};
use crate::listener::{BindOptions, BoundAddr, ListenAddr, SocketKind};
use crate::sys;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Environment variable carrying the worker id (removed once read).
pub const ENV_WORKER_ID: &str = "CORRAL_WORKER_ID";
/// Environment variable carrying the channel's fd number (removed once read).
pub const ENV_CHANNEL_FD: &str = "CORRAL_CHANNEL_FD";
/// Environment variable with the fd of a worker's message channel, set only by primaries
/// started with `PrimaryOptions::message_channels` (the Node front): application messages from
/// the worker travel there, apart from the control channel.
pub const ENV_MESSAGE_FD: &str = "CORRAL_MESSAGE_FD";

const CHANNEL_TOKEN: Token = Token(0);

/// Something for the worker to handle.
#[derive(Debug)]
pub enum WorkerEvent {
    /// A client connection (a blocking, close-on-exec socket the worker now owns).
    Connection {
        /// The listener it came from.
        listener: u32,
        /// The connection.
        fd: OwnedFd,
    },
    /// An application message from the primary.
    Message {
        /// Payload.
        data: Vec<u8>,
        /// Attached fds.
        fds: Vec<OwnedFd>,
    },
    /// The primary asks this worker to finish its work and disconnect (no new connections
    /// will come; close listeners, finish in-flight requests, then [`Worker::disconnect`]).
    Disconnect,
    /// The primary is gone (channel EOF). A worker should exit now.
    PrimaryGone,
}

/// Most connections a worker takes off its channel at a time (both fronts' workers). A
/// connection still in the channel is safe: if the worker dies (or stalls) the primary reads it
/// back and deals it to another worker. One taken into the worker is lost with it. Taking a few
/// at a time, as the worker gets to them, keeps what a SIGKILLed worker takes down close to what
/// it was serving. Measured with `bench/chaos.js` (4 rounds, same run as node:cluster): taking
/// all (up to the window) failed 36.5 requests a round against node:cluster's 20; 4 at a time,
/// 18 against 22.5 while serving 27 % more requests; 1 at a time, 13 against 21.5 but 12 %
/// fewer connections/s in the `Connection: close` benchmark (4 costs nothing there).
pub const CONNS_PER_READ: usize = 4;

/// The error a worker reports when the kernel dropped the fds of a message from the primary
/// (the worker is out of file descriptors; [`crate::ipc::Recv::FdsLost`]).
pub fn fds_lost_from_primary(kind: Kind) -> Error {
    if kind == Kind::Conn {
        return Error::fds_lost("a connection from the primary (closed by the kernel)");
    }
    Error::fds_lost(format!("a {kind:?} message from the primary"))
}

/// A listener as the worker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// Listener id (shared by every worker on the same address).
    pub id: u32,
    /// The resolved address.
    pub addr: BoundAddr,
    /// In shared mode, the listening socket (owned by the worker; it accepts on it).
    pub shared_fd: Option<RawFd>,
}

/// A datagram listener as the worker sees it ([`Worker::bind_datagram`]).
#[derive(Debug)]
pub struct Datagram {
    /// Listener id (shared by every worker on the same address); [`Worker::unlisten`] takes it.
    pub id: u32,
    /// The bound address (`BoundAddr::Udp`, a real port where 0 was asked).
    pub addr: BoundAddr,
    /// The UDP socket, shared with every other worker of the listener: owned by the caller,
    /// close-on-exec and non-blocking (the flag is on the open file description the primary
    /// and the other workers share). Each datagram goes to one of the workers reading it.
    pub fd: OwnedFd,
}

struct SharedListener {
    fd: OwnedFd,
    ready: bool,
}

/// The worker side of a channel.
pub struct Worker {
    id: u64,
    chan: Channel,
    poll: Poll,
    mio_events: mio::Events,
    shared: HashMap<u32, SharedListener>,
    accept_turn: Vec<u32>,
    events: VecDeque<WorkerEvent>,
    unacked: u32,
    /// A message lost for want of fds, reported by the next `next_event`.
    lost: Option<Error>,
    ack_every: u32,
    next_req: u32,
    gone: bool,
    /// [`Worker::disconnect`] was called (`gone` is also set when the primary went away).
    disconnected: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("chan", &self.chan)
            .finish()
    }
}

impl Worker {
    /// The worker side, if a corral primary started this process: reads `CORRAL_WORKER_ID` and
    /// `CORRAL_CHANNEL_FD`, removes both from the environment (so the worker's own children are
    /// not workers), takes ownership of the channel fd and tells the primary it is online.
    /// `Ok(None)` when the variables are absent (this process is a primary).
    ///
    /// Removing variables changes the process environment: call it before starting threads.
    pub fn from_env() -> Result<Option<Worker>> {
        let Some((id, fd)) = Self::take_env()? else {
            return Ok(None);
        };
        let fd = sys::adopt_seqpacket(fd).map_err(|e| {
            Error::os(
                "getsockopt",
                format!("{ENV_CHANNEL_FD}={fd} is not a corral channel"),
                &e,
            )
        })?;
        Worker::from_channel(id, fd).map(Some)
    }

    /// Reads and removes the role variables (`Ok(None)` when absent). The fd is not checked
    /// or taken yet: see `sys::adopt_seqpacket`.
    pub fn take_env() -> Result<Option<(u64, RawFd)>> {
        let (id, fd) = (
            crate::environ::var(ENV_WORKER_ID),
            crate::environ::var(ENV_CHANNEL_FD),
        );
        let (Some(id), Some(fd)) = (id?, fd?) else {
            return Ok(None);
        };
        std::env::remove_var(ENV_WORKER_ID);
        std::env::remove_var(ENV_CHANNEL_FD);
        let bad = |what: String| {
            Error::invalid(format!("{what}; is this process really a corral worker?"))
        };
        let id: u64 = id
            .parse()
            .map_err(|_| bad(format!("{ENV_WORKER_ID}={id:?} is not a number")))?;
        let fd: RawFd = fd
            .parse()
            .map_err(|_| bad(format!("{ENV_CHANNEL_FD}={fd:?} is not an fd")))?;
        Ok(Some((id, fd)))
    }

    /// Reads and removes [`ENV_MESSAGE_FD`] (`Ok(None)` when absent). The fd is not checked
    /// or taken yet: see `sys::adopt_seqpacket`.
    pub fn take_message_env() -> Result<Option<RawFd>> {
        let Some(fd) = crate::environ::var(ENV_MESSAGE_FD)? else {
            return Ok(None);
        };
        std::env::remove_var(ENV_MESSAGE_FD);
        fd.parse().map(Some).map_err(|_| {
            Error::invalid(format!(
                "{ENV_MESSAGE_FD}={fd:?} is not an fd; is this process really a corral worker?"
            ))
        })
    }

    /// Wraps a channel end (fork mode, or after [`Worker::take_env`]) and says online.
    pub fn from_channel(id: u64, fd: OwnedFd) -> Result<Worker> {
        let poll =
            Poll::new().map_err(|e| Error::os("epoll_create", "create worker poller", &e))?;
        poll.registry()
            .register(
                &mut SourceFd(&fd.as_raw_fd()),
                CHANNEL_TOKEN,
                Interest::READABLE,
            )
            .map_err(|e| Error::os("epoll_ctl", "watch channel", &e))?;
        let mut w = Worker {
            id,
            chan: Channel::new(fd),
            poll,
            mio_events: mio::Events::with_capacity(64),
            shared: HashMap::new(),
            accept_turn: Vec::new(),
            events: VecDeque::new(),
            unacked: 0,
            lost: None,
            ack_every: 1,
            next_req: 1,
            gone: false,
            disconnected: false,
        };
        w.chan.send_blocking(Kind::Online, Vec::new(), Vec::new())?;
        Ok(w)
    }

    /// This worker's id (from 1, never reused by its primary).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A pollable fd: readable when [`Worker::next_event`] may have something. For embedding in
    /// another event loop; call `next_event(Some(Duration::ZERO))` until it returns `None`.
    pub fn poll_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    /// The channel socket (for fronts that run their own receive loop).
    pub fn channel_fd(&self) -> BorrowedFd<'_> {
        self.chan.fd()
    }

    /// Asks the primary to listen on `addr` and waits for the answer. In shared mode the
    /// listening fd is kept here and accepted on by [`Worker::next_event`]. Events that arrive
    /// meanwhile are kept in order. Errors (EADDRINUSE, EACCES, unknown host) come back with the
    /// primary's errno and context.
    pub fn listen(&mut self, addr: &ListenAddr, backlog: i32) -> Result<Listening> {
        self.listen_with(addr, backlog, BindOptions::default())
    }

    /// [`Worker::listen`] with bind options (`IPV6_V6ONLY`, the socket file's mode). They are
    /// not part of the listener's key: when the listener exists already, this worker joins it
    /// as it was bound.
    pub fn listen_with(
        &mut self,
        addr: &ListenAddr,
        backlog: i32,
        opts: BindOptions,
    ) -> Result<Listening> {
        let what = format!("listen {addr}");
        let (listener, bound, fd) = self.ask(addr, SocketKind::Stream, backlog, opts, &what)?;
        let shared_fd = match fd {
            Some(fd) => {
                let raw = fd.as_raw_fd();
                self.poll
                    .registry()
                    .register(
                        &mut SourceFd(&raw),
                        Token(listener as usize),
                        Interest::READABLE,
                    )
                    .map_err(|e| Error::os("epoll_ctl", "watch shared listener", &e))?;
                self.shared
                    .insert(listener, SharedListener { fd, ready: true });
                self.accept_turn.push(listener);
                Some(raw)
            }
            None => None,
        };
        Ok(Listening {
            id: listener,
            addr: bound,
            shared_fd,
        })
    }

    /// Asks the primary for a shared UDP socket bound to `addr` (node:cluster's dgram
    /// `bind()` without `exclusive`) and waits for the answer. Whatever the policy, the primary
    /// binds it once and every worker asking for the same address gets the same socket
    /// (`"127.0.0.1:0"`: one kernel-chosen port for all); `"fd:N"` shares the primary's UDP
    /// fd N. The socket is the caller's ([`Datagram::fd`]); close it, and call
    /// [`Worker::unlisten`] with [`Datagram::id`] (or disconnect) so the primary closes its copy
    /// once the last worker holding it leaves. It counts against the primary's
    /// `max_listeners_per_worker` like a stream listener. Errors as [`Worker::listen`]; a Unix
    /// socket path is `ErrorKind::InvalidArgument`.
    pub fn bind_datagram(&mut self, addr: &ListenAddr, opts: BindOptions) -> Result<Datagram> {
        let what = format!("bind {addr}");
        let (id, bound, fd) = self.ask(addr, SocketKind::Datagram, 0, opts, &what)?;
        let fd = fd.ok_or_else(|| {
            Error::protocol(format!(
                "malformed frame: the answer to {what} (datagram) carries no socket"
            ))
        })?;
        if bound.kind() != SocketKind::Datagram {
            return Err(Error::protocol(format!(
                "malformed frame: the answer to {what} (datagram) names {bound}"
            )));
        }
        Ok(Datagram {
            id,
            addr: bound,
            fd,
        })
    }

    /// One listen round trip: the listener id, its address and the fd that came with the
    /// answer (shared mode or datagram).
    fn ask(
        &mut self,
        addr: &ListenAddr,
        kind: SocketKind,
        backlog: i32,
        opts: BindOptions,
        what: &str,
    ) -> Result<(u32, BoundAddr, Option<OwnedFd>)> {
        self.check_open(what)?;
        if kind == SocketKind::Datagram {
            if let ListenAddr::Unix(_) = addr {
                return Err(Error::invalid(format!(
                    "{what}: datagram listeners are UDP only, not Unix socket paths"
                )));
            }
        }
        let req = self.next_req;
        self.next_req += 1;
        let msg = ListenRequest {
            req,
            backlog,
            addr: addr.clone(),
            index: 0,
            opts,
            kind,
        };
        self.chan
            .send_blocking(Kind::Listen, msg.encode(), Vec::new())?;
        loop {
            let m = match self.chan.recv(false)? {
                Recv::Message(m) => m,
                Recv::WouldBlock => continue,
                Recv::FdsLost(kind) => {
                    let e = self.fds_lost(kind);
                    if kind == Kind::ListenOk {
                        return Err(e.context(what.to_string()));
                    }
                    continue;
                }
                Recv::Eof => {
                    self.gone = true;
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        format!("{what}: the primary is gone"),
                    ));
                }
            };
            match m.kind {
                Kind::ListenOk => {
                    let ListenReply::Ok {
                        req: r,
                        listener,
                        addr,
                        ack_every,
                    } = ListenReply::decode_ok(&m.data)?
                    else {
                        unreachable!("decode_ok returns Ok")
                    };
                    if r != req {
                        return Err(Error::protocol(format!(
                            "listen reply for request {r}, expected {req}"
                        )));
                    }
                    self.ack_every = ack_every;
                    return Ok((listener, addr, m.fds.into_iter().next()));
                }
                Kind::ListenErr => {
                    let ListenReply::Err {
                        errno,
                        syscall,
                        message,
                        ..
                    } = ListenReply::decode_err(&m.data)?
                    else {
                        unreachable!("decode_err returns Err")
                    };
                    return Err(Error::relayed(errno, &syscall, message));
                }
                _ => self.on_message(m)?,
            }
        }
    }

    /// Stops receiving connections of a listener (closes the shared fd in shared mode), or
    /// leaves a datagram listener (its socket is the caller's to close). The primary closes a
    /// listener when its last worker leaves.
    pub fn unlisten(&mut self, listener: u32) -> Result<()> {
        self.check_open("unlisten")?;
        if let Some(l) = self.shared.remove(&listener) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.fd.as_raw_fd()));
            self.accept_turn.retain(|&x| x != listener);
        }
        self.chan.send_blocking(
            Kind::Unlisten,
            proto::u32_payload(listener).to_vec(),
            Vec::new(),
        )
    }

    /// `ErrorKind::Disconnected` once this worker disconnected or saw the primary go. Without
    /// it a send after a disconnect succeeded or failed depending on whether the primary had
    /// closed its end yet, and what "succeeded" was dropped unread.
    fn check_open(&self, what: &str) -> Result<()> {
        if self.disconnected {
            return Err(Error::new(
                ErrorKind::Disconnected,
                format!("{what}: this worker has disconnected; nothing is sent after that"),
            ));
        }
        if self.gone {
            return Err(Error::new(
                ErrorKind::Disconnected,
                format!("{what}: the primary is gone"),
            ));
        }
        Ok(())
    }

    /// Sends an application message (waits for room in the socket; the primary never blocks,
    /// so this cannot deadlock: the worker side has no queue to grow). `ErrorKind::Disconnected`
    /// after [`Worker::disconnect`] or once the primary is gone; `TooLarge` above 64 MiB.
    pub fn send(&mut self, data: Vec<u8>, fds: Vec<OwnedFd>) -> Result<()> {
        self.check_open("send")?;
        self.chan.send_blocking(Kind::User, data, fds)
    }

    /// Hands a round-robin connection back to the primary instead of serving it (this worker
    /// is at its connection limit, or no longer serves `listener`): the primary deals it to
    /// another worker, and gives this worker none of that listener's connections for a short
    /// while (1 ms, doubling up to 50 ms while it keeps refusing). When every worker refuses,
    /// the client waits in the primary until one takes it, as with node:cluster; it is reset
    /// only if the listener closes meanwhile. Counted in [`crate::WorkerInfo::refused`]. Under
    /// the shared policy workers accept by themselves: the primary closes a refused connection.
    /// `Disconnected` as [`Worker::send`] (the fd is closed then: the client sees a reset).
    pub fn refuse(&mut self, listener: u32, fd: OwnedFd) -> Result<()> {
        self.check_open("refuse")?;
        self.chan.send_blocking(
            Kind::Refuse,
            proto::u32_payload(listener).to_vec(),
            vec![fd],
        )
    }

    /// Tells the primary this worker has room again for `listener`'s connections after it
    /// refused some ([`Worker::refuse`]), say when one of its connections closed: it is dealt
    /// them again at once instead of after the retry delay, so a client waiting for a full
    /// cluster is served as soon as room appears. Harmless when nothing was refused.
    /// `Disconnected` as [`Worker::send`].
    pub fn room(&mut self, listener: u32) -> Result<()> {
        self.check_open("room")?;
        self.chan.send_blocking(
            Kind::Room,
            proto::u32_payload(listener).to_vec(),
            Vec::new(),
        )
    }

    /// Tells the primary the application is ready (after its warm-up). `Disconnected` as
    /// [`Worker::send`].
    pub fn ready(&mut self) -> Result<()> {
        self.check_open("ready")?;
        self.chan.send_blocking(Kind::Ready, Vec::new(), Vec::new())
    }

    /// Tells the primary the main loop is alive, optionally with the number of connections
    /// this worker has open (for metrics). `Disconnected` as [`Worker::send`].
    pub fn heartbeat(&mut self, active_connections: Option<u32>) -> Result<()> {
        self.check_open("heartbeat")?;
        let data = active_connections.map_or_else(Vec::new, |n| proto::u32_payload(n).to_vec());
        self.chan.send_blocking(Kind::Heartbeat, data, Vec::new())
    }

    /// The next event, waiting up to `timeout` (`None`: forever; `Some(ZERO)`: never).
    /// `Ok(None)` on timeout. After `WorkerEvent::PrimaryGone` every call fails with
    /// `ErrorKind::Disconnected`.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<WorkerEvent>> {
        // A timeout too long to be a deadline waits forever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        // The poller is polled at least once per call, even with a zero timeout: an embedding
        // loop watches its fd, which stays readable until the poller's ready list is drained.
        let mut polled = false;
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Ok(Some(ev));
            }
            if let Some(e) = self.lost.take() {
                // The channel is in step: the next call goes on.
                return Err(e);
            }
            // After our own disconnect the error says so, not that the primary is gone.
            self.check_open("next_event")?;
            self.read_channel()?;
            if !self.events.is_empty() {
                continue;
            }
            if let Some(ev) = self.accept_shared()? {
                return Ok(Some(ev));
            }
            let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if polled && wait == Some(Duration::ZERO) {
                return Ok(None);
            }
            match self.poll.poll(&mut self.mio_events, wait) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::os("epoll_wait", "worker poll", &e)),
            }
            polled = true;
            for e in self.mio_events.iter() {
                if let Some(l) = self.shared.get_mut(&(e.token().0 as u32)) {
                    l.ready = true;
                }
            }
        }
    }

    /// Reads everything the channel has now; acknowledges connections taken off it.
    fn read_channel(&mut self) -> Result<()> {
        let mut conns = 0;
        // Connections are taken a few at a time (the rest wait in the channel, where the
        // primary takes them back if this worker dies or stalls; see CONNS_PER_READ).
        while conns < CONNS_PER_READ {
            match self.chan.recv(true)? {
                Recv::Message(m) => {
                    conns += usize::from(m.kind == Kind::Conn);
                    self.on_message(m)?
                }
                Recv::WouldBlock => break,
                Recv::FdsLost(kind) => {
                    let e = self.fds_lost(kind);
                    self.lost.get_or_insert(e);
                }
                Recv::Eof => {
                    self.gone = true;
                    self.events.push_back(WorkerEvent::PrimaryGone);
                    break;
                }
            }
        }
        if self.unacked >= self.ack_every && !self.gone {
            let n = std::mem::take(&mut self.unacked);
            self.chan
                .send_blocking(Kind::Ack, proto::u32_payload(n).to_vec(), Vec::new())?;
        }
        Ok(())
    }

    /// A message whose fds the kernel dropped (this worker is out of fds): a connection is
    /// lost, but it still counts as taken, so the primary's window for this worker does not
    /// shrink.
    fn fds_lost(&mut self, kind: Kind) -> Error {
        if kind == Kind::Conn {
            self.unacked += 1;
        }
        fds_lost_from_primary(kind)
    }

    fn on_message(&mut self, m: Message) -> Result<()> {
        match m.kind {
            Kind::Conn => {
                let listener = proto::decode_conn(&m.data)?;
                let fd = m
                    .fds
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::protocol("malformed frame: conn without fd"))?;
                self.unacked += 1;
                self.events
                    .push_back(WorkerEvent::Connection { listener, fd });
            }
            Kind::User => self.events.push_back(WorkerEvent::Message {
                data: m.data,
                fds: m.fds,
            }),
            Kind::Disconnect => self.events.push_back(WorkerEvent::Disconnect),
            // Reading it is all it asks (the primary's stall check).
            Kind::Ping => {}
            other => {
                return Err(Error::protocol(format!(
                    "malformed frame: unexpected {other:?} from the primary"
                )))
            }
        }
        Ok(())
    }

    fn accept_shared(&mut self) -> Result<Option<WorkerEvent>> {
        for _ in 0..self.accept_turn.len() {
            let lid = self.accept_turn[0];
            self.accept_turn.rotate_left(1);
            let Some(l) = self.shared.get_mut(&lid) else {
                continue;
            };
            if !l.ready {
                continue;
            }
            match sys::accept_cloexec(l.fd.as_fd()) {
                Ok(Some(fd)) => return Ok(Some(WorkerEvent::Connection { listener: lid, fd })),
                Ok(None) => l.ready = false,
                // Another worker won the race, or a transient error: wait for readiness again.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    l.ready = false;
                    return Err(Error::os("accept", format!("accept on listener {lid}"), &e));
                }
                Err(_) => l.ready = false,
            }
        }
        Ok(None)
    }

    /// Disconnects: tells the primary, which stops sending and takes back the connections this
    /// worker has not taken off the channel yet; shared listeners close. Afterwards the worker
    /// reads nothing more and sends nothing more: `next_event`, `send`, `ready`, `heartbeat`,
    /// `listen` and `unlisten` fail with `ErrorKind::Disconnected`. Idempotent.
    pub fn disconnect(&mut self) -> Result<()> {
        if self.gone {
            return Ok(());
        }
        self.gone = true;
        self.disconnected = true;
        self.events.clear();
        for (_, l) in self.shared.drain() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.fd.as_raw_fd()));
        }
        self.accept_turn.clear();
        self.chan.send_blocking(Kind::Bye, Vec::new(), Vec::new())
    }

    /// Whether the channel is still open (not disconnected, primary not gone).
    pub fn is_connected(&self) -> bool {
        !self.gone
    }
}
