//! `NativeWorker`: the worker side for Node. The JS thread's loop watches the channel and
//! reads it (uvpoll.rs; a native receive thread with a ThreadsafeFunction is the fallback); JS
//! sends without blocking (what the socket cannot take now is flushed by a writer thread, in
//! order). What goes on the wire and what comes off it means is the engine's
//! `corral_core::WorkerProtocol`, the same state machine the C front's worker drives: this file
//! only moves its messages between the socket and JS.

use crate::events::{kind, Batch, Event, Queue};
use crate::uvpoll::Poller;
use crate::{to_napi, Failure, Result};
use corral_core::listener::{BindOptions, SocketKind};
use corral_core::{
    Channel, Delivered, Error as CoreError, ErrorKind, LoadSlots, Message, Recv, Sent, WorkerEnv,
    WorkerProtocol,
};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

type Tsfn = ThreadsafeFunction<Batch, (), Batch, Status, false, true>;

/// `send` returns false above this many queued bytes (Node's IPC threshold).
const HIGH_WATER: usize = 128 * 1024;
/// `CORRAL_NODE_RECV=thread` receives on a native thread instead of the JS thread.
pub(crate) const ENV_RECV: &str = "CORRAL_NODE_RECV";
/// Messages taken off the channel before they are handed to JS as one batch.
const RECV_BATCH: usize = 256;

struct Sender {
    chan: Mutex<Channel>,
    backlog: Condvar,
    closed: AtomicBool,
    /// Tells JS that the writer thread wrote queued messages (a FLUSHED event), so that send
    /// callbacks fire once their message is out, as Node's do.
    notify: OnceLock<(Tsfn, Arc<Queue>)>,
}

impl Sender {
    fn new(fd: OwnedFd) -> Arc<Sender> {
        Arc::new(Sender {
            chan: Mutex::new(Channel::new(fd)),
            backlog: Condvar::new(),
            closed: AtomicBool::new(false),
            notify: OnceLock::new(),
        })
    }

    /// Stops sending; wakes the writer thread so that it ends.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.backlog.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Channel> {
        self.chan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what the socket takes now and queues the rest; the writer thread writes that.
    fn send(&self, m: Message) -> std::result::Result<Sent, CoreError> {
        self.write(|c| c.send_or_queue_message(m))
    }

    /// [`Sender::send`] for an application message, from `data` itself when nothing waits
    /// before it (copied only if it must be queued).
    fn send_user(&self, data: &[u8], fds: Vec<OwnedFd>) -> std::result::Result<Sent, CoreError> {
        self.write(|c| c.send_or_queue_user(data, fds))
    }

    fn write(
        &self,
        f: impl FnOnce(&mut Channel) -> std::result::Result<bool, CoreError>,
    ) -> std::result::Result<Sent, CoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(CoreError::new(
                ErrorKind::Disconnected,
                "the channel to the primary is closed",
            ));
        }
        let mut c = self.lock();
        let written = f(&mut c)?;
        if !written {
            self.backlog.notify_one();
        }
        Ok(Sent {
            seq: c.last_seq(),
            written,
            below_high_water: c.queued_bytes() < HIGH_WATER,
        })
    }

    /// Writes everything queued, waiting for room (the goodbye path).
    fn flush_all(&self, what: &str) -> std::result::Result<(), CoreError> {
        self.lock()
            .flush(true)
            .map(drop)
            .map_err(|e| CoreError::os("sendmsg", what, &e))
    }
}

fn writer_loop(s: Arc<Sender>) {
    let mut o = s.lock();
    loop {
        if s.closed.load(Ordering::Acquire) {
            return;
        }
        if !o.has_queued() {
            o = s.backlog.wait(o).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let before = o.written();
        let r = o.flush(false);
        if o.written() > before {
            if let Some((tsfn, queue)) = s.notify.get() {
                let flushed = Event {
                    kind: kind::FLUSHED,
                    ..Default::default()
                };
                if queue.push(vec![flushed]) {
                    tsfn.call(
                        Batch(queue.clone()),
                        ThreadsafeFunctionCallMode::NonBlocking,
                    );
                }
            }
        }
        match r {
            Ok(true) => continue,
            Ok(false) => {
                let fd = o.raw_fd();
                drop(o);
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: polls the channel fd, owned by the sender, which outlives this thread.
                unsafe { libc::poll(&mut pfd, 1, 1000) };
                o = s.lock();
            }
            Err(_) => return,
        }
    }
}

/// The JS event for what the protocol delivered.
fn to_event(d: Delivered) -> Event {
    match d {
        // Under the PROXY protocol: the client's address, which child.js gives the socket as
        // its remoteAddress/remotePort/remoteFamily.
        Delivered::Connection { listener, fd, peer } => Event {
            kind: kind::CONNECTION,
            listener,
            fds: vec![fd],
            address: peer.map(|p| p.ip().to_string()),
            port: peer.map_or(0, |p| u32::from(p.port())),
            family: peer.map_or(0, |p| if p.is_ipv4() { 4 } else { 6 }),
            ..Default::default()
        },
        Delivered::Listened {
            req,
            listener,
            addr,
            fd,
        } => Event {
            kind: kind::LISTEN_OK,
            id: req,
            listener,
            address: Some(addr.host()),
            port: addr.port() as u32,
            family: addr.address_type(),
            fds: fd.into_iter().collect(),
            ..Default::default()
        },
        // An OS failure becomes node:cluster's error in child.js (errno, syscall 'bind'); any
        // other refusal (an option, a disconnecting worker) arrives as the engine's error, made
        // here with its ERR_CORRAL_* code, option and reason.
        Delivered::ListenFailed { req, error } => Event {
            kind: kind::LISTEN_ERR,
            id: req,
            errno: error.errno(),
            syscall: Some(error.syscall().unwrap_or("listen").to_string()),
            error: (!matches!(error.kind(), ErrorKind::Os | ErrorKind::Disconnected))
                .then(|| Box::new(Failure::from(error.clone()))),
            message: Some(error.message().to_string()),
            ..Default::default()
        },
        Delivered::Message { data, fds } => Event {
            kind: kind::MESSAGE,
            data: Some(data),
            fds,
            ..Default::default()
        },
        // A batch stays whole (flag set): JS splits it, without a copy per message.
        Delivered::Batch { data } => Event {
            kind: kind::MESSAGE,
            flag: true,
            data: Some(data),
            ..Default::default()
        },
        Delivered::Disconnect => Event {
            kind: kind::DISCONNECT_REQUEST,
            ..Default::default()
        },
        // Out of fds: JS gets an EMFILE error (a lost connection still counts as taken).
        Delivered::FdsLost { error, .. } => crate::events::error_event(0, &error),
        Delivered::PrimaryGone => Event {
            kind: kind::PRIMARY_GONE,
            ..Default::default()
        },
    }
}

/// The receiving end of the channel: reads messages, turns them into events, and acknowledges
/// connections in the groups the primary asked for.
struct Receiver {
    chan: Channel,
    sender: Arc<Sender>,
    proto: WorkerProtocol,
}

impl Receiver {
    fn new(mut chan: Channel, sender: Arc<Sender>) -> Receiver {
        chan.keep_batches();
        Receiver {
            chan,
            sender,
            proto: WorkerProtocol::new(),
        }
    }

    /// Reads up to `RECV_BATCH` messages (waiting for the first one if `wait`); true when the
    /// channel ended (a PRIMARY_GONE event is then the last one).
    fn pull(&mut self, wait: bool) -> (Vec<Event>, bool) {
        let mut batch = Vec::new();
        let mut gone = false;
        let mut nonblocking = !wait;
        // Connections a few at a time (corral_core::worker::CONNS_PER_READ): the rest wait in
        // the channel, safe if this worker dies; libuv polls level-triggered, so the next turn
        // of the loop takes them.
        // A datagram read ahead is taken before stopping: it is no longer in the socket, so
        // neither the poll nor the receive thread's blocking read would see it.
        while !gone
            && ((batch.len() < RECV_BATCH && self.proto.may_read()) || self.chan.has_read_ahead())
        {
            // Two at a time (one syscall, and it tells when the socket is empty) only while
            // both may be taken: connections stay in the channel until this worker may take
            // them (corral_core::worker::CONNS_PER_READ).
            let got = if !nonblocking {
                self.chan.recv(false)
            } else if batch.len() + 2 <= RECV_BATCH && self.proto.may_read_ahead() {
                self.chan.recv_reading_ahead()
            } else {
                self.chan.recv(true)
            };
            match got {
                Ok(Recv::WouldBlock) => break,
                Ok(r) => match self.proto.receive(r) {
                    Ok(Some(Delivered::PrimaryGone)) => gone = true,
                    Ok(Some(d)) => batch.push(to_event(d)),
                    Ok(None) => {}
                    // A malformed message: JS hears of it; the channel is still in step.
                    Err(e) => batch.push(crate::events::error_event(0, &e)),
                },
                Err(e) => {
                    // A broken channel (a malformed frame): say why before it ends. Before,
                    // this looked like the primary going away and the worker exited 0.
                    batch.push(crate::events::error_event(0, &e));
                    gone = true;
                }
            }
            // Empty behind that message: the next recvmsg would only say EAGAIN. The poll
            // (level-triggered) or the receive thread's blocking read takes what comes next.
            if !self.chan.may_have_more() {
                break;
            }
            nonblocking = true;
        }
        if let Some(ack) = self.proto.end_read() {
            let _ = self.sender.send(ack);
        }
        if gone {
            batch.push(Event {
                kind: kind::PRIMARY_GONE,
                ..Default::default()
            });
        }
        (batch, gone)
    }
}

/// The fallback receive path (a host without libuv symbols, or `CORRAL_NODE_RECV=thread`): a
/// native thread blocks in `recvmsg` and reaches JS through a ThreadsafeFunction.
fn recv_loop(mut rx: Receiver, tsfn: Tsfn) {
    let queue = Arc::new(Queue::default());
    loop {
        // A panic must not end this thread silently (the worker would go deaf): it reaches JS
        // as an ERR_CORRAL_ENGINE error (thrown in the worker), then the channel's end.
        let pulled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rx.pull(true)));
        let (batch, gone) = pulled.unwrap_or_else(|panic| {
            let e = CoreError::new(
                corral_core::ErrorKind::Protocol,
                format!(
                    "reading the channel panicked: {}",
                    crate::panic_message(&*panic)
                ),
            );
            let mut failed = crate::events::error_event(0, &e);
            failed.syscall = Some("ERR_CORRAL_ENGINE".into());
            let end = Event {
                kind: kind::PRIMARY_GONE,
                ..Default::default()
            };
            (vec![failed, end], true)
        });
        let closing = queue.push(batch)
            && tsfn.call(
                Batch(queue.clone()),
                ThreadsafeFunctionCallMode::NonBlocking,
            ) == Status::Closing;
        if closing || gone {
            return;
        }
    }
}

/// The worker side of this process.
#[napi]
pub struct NativeWorker {
    id: u32,
    heartbeat_ms: u32,
    /// The channel's fd (the sender's copy), for `process.channel.fd`.
    fd: i32,
    sender: Arc<Sender>,
    wake: Arc<OwnedFd>,
    /// The JS-thread receiver (None with the receive thread).
    poller: Option<Rc<Poller>>,
    /// The message channel's sender, when the primary gave one.
    messages: Option<Arc<Sender>>,
    /// Load-aware kernel-steered listeners (`kernel-least`, `kernel-rr`'s window), filled by
    /// the receiver from listen answers; `closed` releases through it.
    loads: Arc<LoadSlots>,
    threads: Vec<JoinHandle<()>>,
}

/// This process's worker's load slots, for [`worker_accepted`]: a worker process has one
/// `NativeWorker`, set when it is made.
static LOADS: std::sync::Mutex<Option<Arc<LoadSlots>>> = std::sync::Mutex::new(None);

/// The worker took a connection of `listener` (its server's `onconnection` ran, whether the
/// worker accepted it on its own socket or the primary dealt it): under `kernel-rr` an atomic
/// decrement of its slot's count, since the window counts connections not taken yet. Whether
/// it released: false for any other listener (or with no worker here), whose connections are
/// then reported at close (`NativeWorker::closed`). A function, not a method: it runs once
/// per connection, and a method call pays napi-rs's borrow bookkeeping of `this` (0.5 % of a
/// worker's CPU in `perf`, with the lookups it brings).
#[napi(catch_unwind)]
pub fn worker_accepted(listener: u32) -> bool {
    // Under the lock, not a clone of the Arc: two atomic operations fewer per connection
    // (`accepted` takes the slots' own lock, never this one).
    let loads = LOADS.lock().unwrap_or_else(|e| e.into_inner());
    loads.as_ref().is_some_and(|l| l.accepted(listener))
}

#[napi]
impl NativeWorker {
    /// Takes the role from the environment (removing the variables), says online, and starts
    /// receiving. `on_events(events[])` gets event batches.
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, on_events: Function<'_, Batch, ()>) -> Result<Self> {
        // The environment contract (corral_core::worker::env), read once, first thing.
        let worker_env = WorkerEnv::take().map_err(to_napi)?.ok_or_else(|| {
            to_napi(CoreError::new(
                ErrorKind::NotWorker,
                "not started by a corral primary",
            ))
        })?;
        let fd = worker_env.channel;
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| to_napi(CoreError::os("dup", "channel", &e)))
        };
        let rfd = dup(&fd)?;
        // A third copy of the socket, only for shutdown(2) (which acts on the socket, not the
        // fd): valid for as long as anyone may call it, whatever the receive thread closed.
        let wake = Arc::new(dup(&fd)?);
        let channel_fd = fd.as_raw_fd();
        let sender = Sender::new(fd);
        // Application messages go on their own channel when the primary gave one (a Node
        // primary reads it on its JS thread, see messages.rs).
        let messages = worker_env.messages.map(Sender::new);
        sender.send(WorkerProtocol::online()).map_err(to_napi)?;
        // The writer thread of the user messages' sender announces what it wrote.
        let notify: Tsfn = on_events
            .build_threadsafe_function::<Batch>()
            .callee_handled::<false>()
            .weak::<true>()
            .build()?;
        let _ = messages
            .as_ref()
            .unwrap_or(&sender)
            .notify
            .set((notify, Arc::new(Queue::default())));
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| Failure::new("ERR_CORRAL_OS", format!("start {name}: {e}")))
        };
        let s2 = sender.clone();
        let mut threads = vec![spawn("corral-send", Box::new(move || writer_loop(s2)))?];
        if let Some(m) = &messages {
            let m2 = m.clone();
            threads.push(spawn("corral-msg-send", Box::new(move || writer_loop(m2)))?);
        }
        // Receive on the JS thread (see uvpoll.rs for why) unless told otherwise or impossible.
        let use_thread = std::env::var_os(ENV_RECV).is_some_and(|v| v == "thread")
            || !crate::uvpoll::available();
        let raw_rfd = rfd.as_raw_fd();
        let mut rx = Some(Receiver::new(Channel::new(rfd), sender.clone()));
        let loads = rx.as_ref().expect("just made").proto.loads().clone();
        let mut poller = None;
        if !use_thread {
            // The receiver (and its copy of the fd) lives as long as the poll handle: the fd
            // must stay open until libuv has stopped watching it.
            let mut rx_js = rx.take().expect("set above");
            let pull: crate::uvpoll::Pull = Box::new(move || rx_js.pull(false));
            poller = Some(Poller::start(&env, raw_rfd, &on_events, pull)?);
        }
        if let Some(rx) = rx {
            let tsfn: Tsfn = on_events
                .build_threadsafe_function::<Batch>()
                .callee_handled::<false>()
                .weak::<true>()
                .build()?;
            threads.push(spawn("corral-recv", Box::new(move || recv_loop(rx, tsfn)))?);
        }
        // Environment teardown: stop receiving and wake the native threads.
        let s0 = sender.clone();
        let w0 = wake.clone();
        let p0 = poller.clone();
        let m0 = messages.clone();
        env.add_env_cleanup_hook((s0, w0, p0, m0), |(s, w, p, m)| {
            s.close();
            if let Some(m) = m {
                m.close();
            }
            if let Some(p) = p {
                p.stop(true);
            }
            // SAFETY: shutdown(2) on our own open duplicate of the channel.
            unsafe { libc::shutdown(w.as_raw_fd(), libc::SHUT_RDWR) };
        })?;
        *LOADS.lock().unwrap_or_else(|e| e.into_inner()) = Some(loads.clone());
        Ok(NativeWorker {
            id: worker_env.id as u32,
            heartbeat_ms: worker_env
                .heartbeat
                .map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
            fd: channel_fd,
            sender,
            wake,
            poller,
            messages,
            loads,
            threads,
        })
    }

    /// This worker's id.
    #[napi(getter, catch_unwind)]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// How often to send a heartbeat, in milliseconds (`CORRAL_HEARTBEAT_MS`, read by the
    /// engine with the other worker variables); 0: no watchdog asked for one.
    #[napi(getter, catch_unwind)]
    pub fn heartbeat_ms(&self) -> u32 {
        self.heartbeat_ms
    }

    /// The channel's file descriptor (Node's `process.channel.fd`). It stays open until the
    /// environment is torn down, also after `disconnect()`.
    #[napi(getter, catch_unwind)]
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// Asks the primary to listen; the answer arrives as a LISTEN_OK/LISTEN_ERR event with `id`.
    /// `options`: bits of `BindOptions` (1 ipv6Only, 2 readableAll, 4 writableAll, 8
    /// reuseAddr for datagram sockets).
    /// `datagram`: a UDP socket (dgram's `bind()`), which the answer always carries, whatever
    /// the policy; `address` may be `fd:N` (the primary's fd N) for both kinds.
    ///
    /// A refused address or option throws with `err.option` naming it.
    // The JS call's arguments, plus the env napi passes to throw with `option`.
    #[allow(clippy::too_many_arguments)]
    #[napi(catch_unwind)]
    pub fn listen(
        &self,
        env: Env,
        req: u32,
        address: String,
        backlog: i32,
        index: u32,
        options: u32,
        datagram: Option<bool>,
    ) -> Result<()> {
        let named = |e| to_napi(e).throw_naming_option(&env);
        let addr = address.parse().map_err(named)?;
        let opts = BindOptions::from_bits(options).map_err(named)?;
        let kind = if datagram == Some(true) {
            SocketKind::Datagram
        } else {
            SocketKind::Stream
        };
        let what = format!("listen {address}");
        let msg = WorkerProtocol::listen(req, &addr, kind, backlog, index, opts, &what);
        self.sender
            .send(msg.map_err(named)?)
            .map(drop)
            .map_err(to_napi)
    }

    /// Stops receiving connections for a listener.
    #[napi(catch_unwind)]
    pub fn unlisten(&self, listener: u32) -> Result<()> {
        self.loads.forget(listener);
        self.sender
            .send(WorkerProtocol::unlisten(listener))
            .map(drop)
            .map_err(to_napi)
    }

    /// Hands a round-robin connection back to the primary (a duplicate of `fd`; the caller
    /// closes its own): the server is at its `maxConnections` or no longer listens, and the
    /// primary deals it to another worker (`corral_core::Worker::refuse`). `address`/`port`
    /// are the connection event's own (the client a PROXY header named; the header is
    /// consumed), passed back so the next worker is given the same client.
    #[napi(catch_unwind)]
    pub fn refuse(
        &self,
        listener: u32,
        fd: i32,
        address: Option<String>,
        port: Option<u32>,
    ) -> Result<()> {
        let peer = match address {
            None => None,
            Some(a) => {
                let ip: std::net::IpAddr = a.parse().map_err(|_| {
                    to_napi(CoreError::invalid(format!(
                        "refuse: address {a:?} is not an IP address"
                    )))
                })?;
                let port = port.unwrap_or(0);
                let port = u16::try_from(port).map_err(|_| {
                    to_napi(CoreError::invalid(format!(
                        "refuse: port {port} is not 0..=65535"
                    )))
                })?;
                Some(std::net::SocketAddr::new(ip, port))
            }
        };
        let owned = crate::dup_handles(&[fd])?.into_iter().next();
        let owned = owned.expect("one fd in, one fd out");
        self.loads.refused(listener);
        self.sender
            .send(WorkerProtocol::refuse(listener, owned, peer))
            .map(drop)
            .map_err(to_napi)
    }

    /// Tells the primary this worker has room again for `listener`'s connections after refusing
    /// some (a connection of the server closed): it is dealt them again at once.
    #[napi(catch_unwind)]
    pub fn room(&self, listener: u32) -> Result<()> {
        self.sender
            .send(WorkerProtocol::room(listener))
            .map(drop)
            .map_err(to_napi)
    }

    /// A connection of `listener` this worker got has closed (`corral_core::Worker::closed`):
    /// on a load-aware kernel-steered listener an atomic decrement of its slot's count for
    /// `kernel-least`, nothing for `kernel-rr` (released at `accepted`), no message either way;
    /// otherwise it tells the primary (the `least` policy counts open connections with it).
    #[napi(catch_unwind)]
    pub fn closed(&self, listener: u32) -> Result<()> {
        if self.loads.closed(listener) {
            return Ok(());
        }
        self.sender
            .send(WorkerProtocol::closed(listener))
            .map(drop)
            .map_err(to_napi)
    }

    /// Whether `listener` is a load-aware kernel-steered one here (`kernel-least`, `kernel-rr`
    /// with its window): every connection of it must be released once (`accepted`, else
    /// `closed`), whether the worker accepted it on its own socket or the primary dealt it.
    #[napi(catch_unwind)]
    pub fn load_aware(&self, listener: u32) -> bool {
        self.loads.contains(listener)
    }

    /// Sends a message (with duplicates of `fds`). Returns 0 when it was written at once;
    /// otherwise its sequence number `n` (it is out once `written()` reaches `n`, announced by
    /// a FLUSHED event), negated when the queue is over the high-water mark (`send` returns
    /// false then, as Node's).
    #[napi(catch_unwind)]
    pub fn send(&self, data: BufferSlice<'_>, fds: Option<Vec<i32>>) -> Result<f64> {
        let owned = crate::dup_handles(fds.as_deref().unwrap_or_default())?;
        self.user_sender()
            .send_user(&data, owned)
            .map(crate::sent_to_js)
            .map_err(to_napi)
    }

    /// Sends several messages as one Batch frame (`data`: `[len u32le][bytes]` each, checked;
    /// see `corral_core::Channel::send_or_queue_batch`), which the primary reads as those messages in
    /// order. Returns as `send`, for all of them.
    #[napi(catch_unwind)]
    pub fn send_batch(&self, data: BufferSlice<'_>) -> Result<f64> {
        self.user_sender()
            .write(|c| c.send_or_queue_batch(&data))
            .map(crate::sent_to_js)
            .map_err(to_napi)
    }

    /// How many messages `send` has written so far.
    #[napi(catch_unwind)]
    pub fn written(&self) -> f64 {
        self.user_sender().lock().written() as f64
    }

    fn user_sender(&self) -> &Arc<Sender> {
        self.messages.as_ref().unwrap_or(&self.sender)
    }

    /// Tells the primary the event loop is alive, with the connections this worker has open.
    #[napi(catch_unwind)]
    pub fn heartbeat(&self, active: u32) -> Result<()> {
        self.sender
            .send(WorkerProtocol::heartbeat(Some(active)))
            .map(drop)
            .map_err(to_napi)
    }

    /// Tells the primary the application is ready.
    #[napi(catch_unwind)]
    pub fn ready(&self) -> Result<()> {
        self.sender
            .send(WorkerProtocol::ready())
            .map(drop)
            .map_err(to_napi)
    }

    /// Disconnects: says goodbye (the primary takes back connections not yet received) and
    /// stops receiving. Idempotent.
    #[napi(catch_unwind)]
    pub fn disconnect(&self) -> Result<()> {
        if self.sender.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        // Its slots go to other workers with their counts at 0: later closes here are not
        // theirs.
        self.loads.clear();
        // Messages already sent go out before the goodbye (the primary drains the message
        // channel when it sees the goodbye).
        let flushed = self
            .messages
            .as_ref()
            .map_or(Ok(()), |m| m.flush_all("send messages"));
        let r = flushed.and_then(|_| {
            self.sender.lock().queue_message(WorkerProtocol::bye())?;
            self.sender.flush_all("send goodbye")
        });
        self.close();
        r.map_err(to_napi)
    }

    /// Stops the native threads (also run on environment teardown).
    #[napi(catch_unwind)]
    pub fn close(&self) {
        if self.sender.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.sender.backlog.notify_all();
        if let Some(m) = &self.messages {
            m.close();
        }
        if let Some(p) = &self.poller {
            p.stop(false);
        }
        // Wakes the thread blocked in recvmsg (it sees EOF and ends).
        // SAFETY: shutdown(2) on our own open duplicate of the channel.
        unsafe { libc::shutdown(self.wake.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

impl Drop for NativeWorker {
    fn drop(&mut self) {
        self.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
