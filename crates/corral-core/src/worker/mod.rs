//! The worker side: the channel to the primary, listening through it, and one stream of events
//! (connections, messages, a disconnect request, the primary's death).
//!
//! - `protocol`: the wire protocol as a state machine without I/O ([`WorkerProtocol`]), which
//!   both fronts' workers drive;
//! - `load`: the `load` counters of load-aware kernel-steered listeners ([`LoadSlots`]),
//!   which a worker releases when it takes a connection (`kernel-rr`) or closes it
//!   (`kernel-least`);
//! - `env`: what the primary passes an exec'd worker in the environment ([`WorkerEnv`]);
//! - here: [`Worker`], the blocking/mio driver the C front uses.
//!
//! Whatever the policy, connections arrive the same way: in round-robin they come over the
//! channel, in shared mode the worker accepts on the listening fd it was given. Connections are
//! acknowledged to the primary when they are taken off the channel, which opens room in the
//! worker's window.

pub mod env;
pub mod load;
pub mod protocol;

pub use env::{WorkerEnv, ENV_CHANNEL_FD, ENV_HEARTBEAT, ENV_MESSAGE_FD, ENV_WORKER_ID};
pub use load::LoadSlots;
pub use protocol::{Delivered, WorkerProtocol, CONNS_PER_READ};

use crate::error::{Error, ErrorKind, Result};
use crate::ipc::{Channel, Recv};
use crate::listener::{BindOptions, BoundAddr, ListenAddr, SocketKind};
use crate::sys;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

const CHANNEL_TOKEN: Token = Token(0);
/// Under a steady run of connections accepted on the worker's own listeners, the channel is
/// read at least once per this many (one `recvmsg` per 16 connections instead of one each).
const CHANNEL_LOOK_EVERY: u32 = 16;

/// Something for the worker to handle.
#[derive(Debug)]
pub enum WorkerEvent {
    /// A client connection (a blocking, close-on-exec socket the worker now owns).
    Connection {
        /// The listener it came from.
        listener: u32,
        /// The connection.
        fd: OwnedFd,
        /// The client's address as a PROXY protocol header named it (the primary read the
        /// header: the connection starts at the client's own bytes). `None` without the PROXY
        /// protocol: the socket's own peer address is the client's.
        peer: Option<std::net::SocketAddr>,
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
    /// Connections known to be queued since the last readiness, as the primary's dealer
    /// counts them.
    queued: sys::AcceptQueue,
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
    proto: WorkerProtocol,
    /// A message lost for want of fds, reported by the next `next_event`.
    lost: Option<Error>,
    next_req: u32,
    /// The message channel the primary gave ([`Worker::take_message_channel`]).
    messages: Option<OwnedFd>,
    heartbeat: Option<Duration>,
    /// The channel may have something to read: set by the poller's edge for it (and every
    /// [`CHANNEL_LOOK_EVERY`] accepted connections), cleared when a read finds it empty.
    chan_ready: bool,
    /// Connections accepted since the channel was last marked to be looked at.
    accepted_run: u32,
    /// Connections are handed out non-blocking ([`Worker::set_nonblocking_connections`]).
    nonblocking: bool,
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
    /// The worker side, if a corral primary started this process: takes its variables from the
    /// environment ([`WorkerEnv::take`]: `CORRAL_WORKER_ID` and `CORRAL_CHANNEL_FD` are
    /// removed, so the worker's own children are not workers), owns the channel and tells the
    /// primary it is online. `Ok(None)` when the variables are absent (this process is a
    /// primary).
    ///
    /// Removing variables changes the process environment: call it before starting threads.
    pub fn from_env() -> Result<Option<Worker>> {
        let Some(env) = WorkerEnv::take()? else {
            return Ok(None);
        };
        let mut w = Worker::from_channel(env.id, env.channel)?;
        w.messages = env.messages;
        w.heartbeat = env.heartbeat;
        Ok(Some(w))
    }

    /// Wraps a channel end (fork mode, or [`WorkerEnv::channel`]) and says online.
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
            proto: WorkerProtocol::new(),
            lost: None,
            next_req: 1,
            messages: None,
            heartbeat: None,
            chan_ready: true,
            accepted_run: 0,
            nonblocking: false,
        };
        w.chan.send_blocking_message(WorkerProtocol::online())?;
        Ok(w)
    }

    /// How often to send a [`Worker::heartbeat`]: the `CORRAL_HEARTBEAT_MS` a supervisor with
    /// a heartbeat watchdog set (`None`: send none, or not started by [`Worker::from_env`]).
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat
    }

    /// The message channel (`CORRAL_MESSAGE_FD`) a primary with
    /// `PrimaryOptions::message_channels` gave this worker, once: its application messages
    /// may travel there ([`WorkerProtocol::message`]), apart from the control channel.
    pub fn take_message_channel(&mut self) -> Option<Channel> {
        self.messages.take().map(Channel::new)
    }

    /// Hands out connections non-blocking (`O_NONBLOCK`) from now on, or blocking again (the
    /// default). A connection this worker accepts itself (`shared`, `kernel-rr`,
    /// `kernel-least`) is accepted that way, with no extra system call; one the primary deals
    /// (`rr`, `least`, `sticky`) travels blocking and gets one `fcntl` here. A connection
    /// given back with [`Worker::refuse`] is made blocking again first, so the next worker
    /// gets it as it asked.
    pub fn set_nonblocking_connections(&mut self, on: bool) {
        self.nonblocking = on;
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
                // A second listen on the same address: the answer's socket replaces the one
                // this worker held (kernel-rr: in its slot, which keeps its load count).
                let again = self.take_queue_of_replaced(listener);
                let raw = fd.as_raw_fd();
                self.poll
                    .registry()
                    .register(
                        &mut SourceFd(&raw),
                        Token(listener as usize),
                        Interest::READABLE,
                    )
                    .map_err(|e| Error::os("epoll_ctl", "watch shared listener", &e))?;
                self.shared.insert(
                    listener,
                    SharedListener {
                        fd,
                        ready: true,
                        queued: sys::AcceptQueue::default(),
                    },
                );
                if !again {
                    self.accept_turn.push(listener);
                }
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

    /// Before `listener`'s socket is replaced by a second listen's: takes every connection
    /// queued on the old one (as [`Worker::next_event`] would have, in order) and closes it.
    /// Closed with a queue, the kernel would move those connections to other members and
    /// count them there once more, while this worker's slot kept counting them (its count
    /// survives the second listen): it would never come down. Whether there was a socket to
    /// replace.
    fn take_queue_of_replaced(&mut self, listener: u32) -> bool {
        let Some(old) = self.shared.remove(&listener) else {
            return false;
        };
        // Only a load-aware listener's socket is this worker's own with counted connections
        // (a `shared` one is a copy of the one socket every worker accepts on).
        while self.proto.loads().contains(listener) {
            match sys::accept_cloexec(old.fd.as_fd(), self.nonblocking) {
                Ok(Some(fd)) => {
                    self.proto.loads().accepted(listener);
                    self.events.push_back(WorkerEvent::Connection {
                        listener,
                        fd,
                        peer: None,
                    });
                }
                Ok(None) => break,
                // Out of fds or memory: the rest moves to other members when it closes (none
                // is lost; this slot's count keeps them, as before this listen it would have
                // until the worker took them). The listen itself succeeded.
                Err(_) => break,
            }
        }
        // Dropping it closes it (epoll forgets a closed fd by itself).
        true
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
        self.proto.check_open(what)?;
        let req = self.next_req;
        let msg = WorkerProtocol::listen(req, addr, kind, backlog, 0, opts, what)?;
        self.next_req += 1;
        self.chan.send_blocking_message(msg)?;
        loop {
            let r = self.chan.recv(false)?;
            let d = match self.proto.receive(r)? {
                Some(d) => d,
                None => continue,
            };
            match d {
                Delivered::Listened {
                    req: r,
                    listener,
                    addr,
                    fd,
                } => {
                    if r != req {
                        return Err(Error::protocol(format!(
                            "listen reply for request {r}, expected {req}"
                        )));
                    }
                    return Ok((listener, addr, fd));
                }
                Delivered::ListenFailed { .. } => {
                    return Err(d.listen_error().expect("a listen failure"));
                }
                Delivered::FdsLost {
                    error,
                    listen_answer: true,
                } => return Err(error.context(what.to_string())),
                Delivered::PrimaryGone => {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        format!("{what}: the primary is gone"),
                    ));
                }
                other => self.deliver(other),
            }
        }
    }

    /// Stops receiving connections of a listener (closes the shared fd in shared mode), or
    /// leaves a datagram listener (its socket is the caller's to close). The primary closes a
    /// listener when its last worker leaves.
    pub fn unlisten(&mut self, listener: u32) -> Result<()> {
        self.proto.check_open("unlisten")?;
        self.proto.loads().forget(listener);
        if let Some(l) = self.shared.remove(&listener) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.fd.as_raw_fd()));
            self.accept_turn.retain(|&x| x != listener);
        }
        self.chan
            .send_blocking_message(WorkerProtocol::unlisten(listener))
    }

    /// Sends an application message (waits for room in the socket; the primary never blocks,
    /// so this cannot deadlock: the worker side has no queue to grow). `ErrorKind::Disconnected`
    /// after [`Worker::disconnect`] or once the primary is gone; `TooLarge` above 64 MiB.
    pub fn send(&mut self, data: Vec<u8>, fds: Vec<OwnedFd>) -> Result<()> {
        self.proto.check_open("send")?;
        self.chan
            .send_blocking_message(WorkerProtocol::message(data, fds)?)
    }

    /// Hands a round-robin connection back to the primary instead of serving it (this worker
    /// is at its connection limit, or no longer serves `listener`): the primary deals it to
    /// another worker, and gives this worker none of that listener's connections for a short
    /// while (1 ms, doubling up to 50 ms while it keeps refusing). When every worker refuses,
    /// the client waits in the primary until one takes it, as with node:cluster; it is reset
    /// only if the listener closes meanwhile. Counted in [`crate::WorkerInfo::refused`]. Under
    /// the shared policy workers accept by themselves: the primary closes a refused connection.
    ///
    /// `peer` is the [`WorkerEvent::Connection`]'s own `peer`, passed back as it came: under the
    /// PROXY protocol the header was consumed, so only it still names the client, and the next
    /// worker (and `sticky` routing) gets the client from it. `Disconnected` as
    /// [`Worker::send`] (the fd is closed then: the client sees a reset).
    pub fn refuse(
        &mut self,
        listener: u32,
        fd: OwnedFd,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<()> {
        self.proto.check_open("refuse")?;
        self.proto.loads().refused(listener);
        if self.nonblocking {
            sys::set_nonblocking(fd.as_fd(), false).map_err(|e| {
                Error::os(
                    "fcntl",
                    format!("O_NONBLOCK off on a refused connection of listener {listener}"),
                    &e,
                )
            })?;
        }
        self.chan
            .send_blocking_message(WorkerProtocol::refuse(listener, fd, peer))
    }

    /// Tells the primary this worker has room again for `listener`'s connections after it
    /// refused some ([`Worker::refuse`]), say when one of its connections closed: it is dealt
    /// them again at once instead of after the retry delay, so a client waiting for a full
    /// cluster is served as soon as room appears. Harmless when nothing was refused.
    /// `Disconnected` as [`Worker::send`].
    pub fn room(&mut self, listener: u32) -> Result<()> {
        self.proto.check_open("room")?;
        self.chan
            .send_blocking_message(WorkerProtocol::room(listener))
    }

    /// Says that a connection of `listener` this worker got (dealt by the primary, or
    /// accepted on its own socket) has closed. The `least` policy counts each worker's open
    /// connections with it (a message to the primary); `kernel-least` counts them in the
    /// kernel's `load` map, which this releases with an atomic decrement (no syscall, no
    /// message). A worker that does not call it looks ever more loaded: it is dealt ever fewer
    /// connections (`least`, `kernel-least`). `kernel-rr`'s window counts connections not
    /// taken yet, released when [`Worker::next_event`] hands them out, so there it does
    /// nothing. Call it once per connection, after closing it; other policies ignore it.
    /// `Disconnected` as [`Worker::send`].
    pub fn closed(&mut self, listener: u32) -> Result<()> {
        self.proto.check_open("closed")?;
        if self.proto.loads().closed(listener) {
            return Ok(());
        }
        self.chan
            .send_blocking_message(WorkerProtocol::closed(listener))
    }

    /// Tells the primary the application is ready (after its warm-up). `Disconnected` as
    /// [`Worker::send`].
    pub fn ready(&mut self) -> Result<()> {
        self.proto.check_open("ready")?;
        self.chan.send_blocking_message(WorkerProtocol::ready())
    }

    /// Tells the primary the main loop is alive, optionally with the number of connections
    /// this worker has open (for metrics). `Disconnected` as [`Worker::send`].
    pub fn heartbeat(&mut self, active_connections: Option<u32>) -> Result<()> {
        self.proto.check_open("heartbeat")?;
        self.chan
            .send_blocking_message(WorkerProtocol::heartbeat(active_connections))
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
            self.proto.check_open("next_event")?;
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
                if e.token() == CHANNEL_TOKEN {
                    self.chan_ready = true;
                } else if let Some(l) = self.shared.get_mut(&(e.token().0 as u32)) {
                    l.ready = true;
                    l.queued.forget();
                }
            }
        }
    }

    /// Reads what the channel has now (connections a few at a time: see [`CONNS_PER_READ`]);
    /// acknowledges connections taken off it.
    /// Reads only when the channel may have something (see `chan_ready`): on a kernel-steered
    /// or shared listener the worker accepts by itself, and a `recvmsg` per connection that
    /// only says `EAGAIN` was a tenth of its system calls.
    fn read_channel(&mut self) -> Result<()> {
        while self.chan_ready && self.proto.may_read() {
            let r = self.chan.recv(true)?;
            if matches!(r, Recv::WouldBlock) {
                // Empty (the channel's own buffers too): the poller's next edge says when not.
                self.chan_ready = false;
                break;
            }
            if let Some(d) = self.proto.receive(r)? {
                self.deliver(d);
            }
        }
        if let Some(ack) = self.proto.end_read() {
            self.chan.send_blocking_message(ack)?;
        }
        Ok(())
    }

    /// Queues what the protocol delivered for `next_event`.
    fn deliver(&mut self, d: Delivered) {
        let ev = match d {
            Delivered::Connection { listener, fd, peer } => {
                // kernel-rr: one the primary dealt from the anchor counted in this worker's
                // slot until taken, as one the program chose (LoadSlots).
                self.proto.loads().accepted(listener);
                if self.nonblocking {
                    if let Err(e) = sys::set_nonblocking(fd.as_fd(), true) {
                        // Handed out all the same (never dropped); the next call reports it.
                        self.lost.get_or_insert(Error::os(
                            "fcntl",
                            format!("O_NONBLOCK on a connection of listener {listener}"),
                            &e,
                        ));
                    }
                }
                WorkerEvent::Connection { listener, fd, peer }
            }
            Delivered::Message { data, fds } => WorkerEvent::Message { data, fds },
            // Only when batches are kept whole (this worker does not ask): one event each.
            Delivered::Batch { data } => {
                match crate::ipc::proto::batch_parts(&data) {
                    Ok(parts) => {
                        self.events
                            .extend(parts.into_iter().map(|(a, b)| WorkerEvent::Message {
                                data: data[a..b].to_vec(),
                                fds: Vec::new(),
                            }))
                    }
                    Err(e) => {
                        self.lost.get_or_insert(e);
                    }
                }
                return;
            }
            Delivered::Disconnect => WorkerEvent::Disconnect,
            Delivered::PrimaryGone => WorkerEvent::PrimaryGone,
            Delivered::FdsLost { error, .. } => {
                self.lost.get_or_insert(error);
                return;
            }
            // Answers come while `ask` waits for them; one at another time answers nothing
            // this worker asked.
            Delivered::Listened { req, .. } | Delivered::ListenFailed { req, .. } => {
                self.lost.get_or_insert(Error::protocol(format!(
                    "malformed frame: a listen answer to request {req}, which is not waiting"
                )));
                return;
            }
        };
        self.events.push_back(ev);
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
            if !l.queued.take_one(l.fd.as_fd()) {
                // Drained; the poller reports the next edge.
                l.ready = false;
                continue;
            }
            match sys::accept_cloexec(l.fd.as_fd(), self.nonblocking) {
                Ok(Some(fd)) => {
                    // kernel-rr: taken, so it no longer counts against the window.
                    self.proto.loads().accepted(lid);
                    // The poller is asked only once no listener has more; meanwhile the
                    // channel is looked at every few connections (a disconnect request or a
                    // message must not wait behind a long accept run).
                    self.accepted_run += 1;
                    if self.accepted_run >= CHANNEL_LOOK_EVERY {
                        self.accepted_run = 0;
                        self.chan_ready = true;
                    }
                    return Ok(Some(WorkerEvent::Connection {
                        listener: lid,
                        fd,
                        peer: None,
                    }));
                }
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
        let Some(bye) = self.proto.disconnect() else {
            return Ok(());
        };
        self.proto.loads().clear();
        self.events.clear();
        for (_, l) in self.shared.drain() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.fd.as_raw_fd()));
        }
        self.accept_turn.clear();
        self.chan.send_blocking_message(bye)
    }

    /// Whether the channel is still open (not disconnected, primary not gone).
    pub fn is_connected(&self) -> bool {
        self.proto.is_connected()
    }
}
