//! The primary: starts workers, owns listeners, hands connections out, relays messages, watches
//! exits, shuts down. Single-threaded and non-blocking: [`Primary::dispatch`] waits on one
//! poller, handles what is ready, and queues [`Event`]s for [`Primary::next_event`].
//!
//! Connection handoff (round-robin): accept (`accept4`, close-on-exec), offer the fd to the next
//! worker of the listener's rotation whose window of unacknowledged connections has room and
//! whose channel is not backed up, send it with `MSG_DONTWAIT`, close the primary's copy. When
//! nobody has room the connection waits in the listener's small pending queue and accepting
//! stops, so the kernel backlog absorbs the load. The primary keeps the worker's end of every
//! channel open as well: when a worker dies (or says goodbye) before taking connections already
//! sent to it, they are still in that socket's queue, and the primary reads them back and hands
//! them to another worker.
//!
//! Where things are:
//! - `options.rs`: `PrimaryOptions`, defaults, limits and their checks.
//! - `dispatch.rs`: the state behind a `Primary`, poll tokens, the event loop, signals and timers.
//! - `messages.rs`: reading and writing worker channels, handling what workers say.
//! - `listen.rs`: listen requests, shared listeners, host name lookups, orphaned listeners.
//! - `dealer.rs`: the dealer (`rr`, `sticky`, `least`): accepting, offering, refusals, stalls.
//! - `peek.rs`: connections parked for their PROXY header or sticky key before dealing.
//! - `lifecycle.rs`: worker records, adopting, disconnecting, exits, recovery, shutdown.
//!
//! This file holds [`Primary`], its public API and the public types it returns.

mod dealer;
mod dispatch;
mod lifecycle;
mod listen;
mod messages;
pub(crate) mod options;
mod peek;

pub use options::{
    check_send_queue_limit, PrimaryOptions, RoutingOptions, BALANCING_STALL_TIMEOUT,
    DEFAULT_MAX_LISTENERS_PER_WORKER, DEFAULT_ORPHAN_LISTENER_GRACE, DEFAULT_PEEK_BYTES,
    DEFAULT_PEEK_TIMEOUT, DEFAULT_SEND_QUEUE_LIMIT, DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_STALL_TIMEOUT, DEFAULT_WINDOW, MAX_ORPHAN_LISTENER_GRACE, MAX_PEEK_BYTES,
    MAX_PEEK_TIMEOUT, QUEUED_MESSAGE_COST, SEND_QUEUE_LIMIT_MAX, SEND_QUEUE_LIMIT_MIN,
};
pub use peek::{RoutingStats, MAX_PARKED};

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, WorkerId};
use crate::ipc::{frame, Channel, Kind};
use crate::listener::BoundAddr;
use crate::policy::Policy;
use crate::sys::{self, SignalPipe, SpawnSpec};
use crate::worker::{Worker, ENV_CHANNEL_FD, ENV_MESSAGE_FD, ENV_WORKER_ID};
pub use dispatch::Poller;
use dispatch::{token, Inner, TAG_SIGNAL};
use lifecycle::check_stdio;
use messages::{queue_cost, SEND_HIGH_WATER};
use mio::unix::SourceFd;
use mio::Interest;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// What [`Primary::send_tracked`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Sequence number of the message on the worker's channel.
    pub seq: u64,
    /// Already written to the socket.
    pub written: bool,
    /// `send`'s boolean: the queue is below the high-water mark.
    pub below_high_water: bool,
}

/// Lifecycle of a worker as the primary sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Started; its channel has not said online yet.
    Starting,
    /// Online, not listening.
    Online,
    /// Listening on at least one address.
    Listening,
    /// Asked to disconnect; finishing its work.
    Disconnecting,
    /// Channel closed; the process may still run.
    Disconnected,
}

/// A snapshot of one worker.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// Id.
    pub id: WorkerId,
    /// Process id.
    pub pid: i32,
    /// State.
    pub state: WorkerState,
    /// Connections sent and not yet acknowledged.
    pub inflight: u32,
    /// Connections handed to it so far.
    pub handed_off: u64,
    /// Connections it handed back ([`Worker::refuse`]: at its connection limit, or no longer
    /// serving that listener), which the primary dealt to other workers. Counted in
    /// `handed_off` too.
    pub refused: u64,
    /// Connections read back unread from its channel when it stalled (its loop blocked, or
    /// stopped) and dealt to other workers. Counted in `handed_off` too.
    pub taken_back: u64,
    /// Disconnect was asked for (or announced by the worker).
    pub exited_after_disconnect: bool,
    /// Its channel is open.
    pub connected: bool,
    /// Time since it was started.
    pub uptime: Duration,
    /// When its last heartbeat arrived.
    pub last_heartbeat: Option<Instant>,
    /// Connections it reported open in its last heartbeat.
    pub active_connections: Option<u32>,
    /// It said it is ready (after its warm-up).
    pub ready: bool,
    /// When it was started.
    pub started: Instant,
    /// It stopped reading its channel ([`PrimaryOptions::stall_timeout`]): no connections are
    /// dealt to it until it reads again.
    pub stalled: bool,
}

/// Result of [`Primary::fork_worker`].
#[derive(Debug)]
pub enum Forked {
    /// In the primary: the new worker's id.
    Primary(WorkerId),
    /// In the child: the worker side. The primary handle is unusable in this process.
    Worker(Box<Worker>),
}

/// The primary side of a cluster.
pub struct Primary {
    inner: Option<Box<Inner>>,
}

impl std::fmt::Debug for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(i) => f
                .debug_struct("Primary")
                .field("policy", &i.opts.policy)
                .field("workers", &i.workers.len())
                .field("listeners", &i.listeners.len())
                .finish(),
            None => f.write_str("Primary(forked child: unusable)"),
        }
    }
}

fn io_err(
    syscall: &'static str,
    what: impl std::fmt::Display,
) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::os(syscall, what, &e)
}

impl Primary {
    /// Creates a primary: a poller, and signal handlers when `shutdown_signals` asks.
    /// `CORRAL_*` variables override some options ([`crate::environ`], e.g.
    /// `CORRAL_SCHED_POLICY=rr|shared|kernel-rr`); a bad value is an error naming the variable or option.
    pub fn new(mut opts: PrimaryOptions) -> Result<Primary> {
        crate::environ::apply(&mut opts)?;
        opts.validate()?;
        let (poller, registry, poll_fd) = dispatch::new_poller()?;
        let mut wanted = Vec::new();
        if opts.shutdown_signals {
            wanted.extend([libc::SIGINT, libc::SIGTERM]);
        }
        if opts.reload_signal {
            wanted.push(libc::SIGHUP);
        }
        let signals = if !wanted.is_empty() {
            let s = SignalPipe::install(&wanted)
                .map_err(io_err("sigaction", "install signal handlers"))?;
            registry
                .register(
                    &mut SourceFd(&s.fd().as_raw_fd()),
                    token(TAG_SIGNAL, 0),
                    Interest::READABLE,
                )
                .map_err(io_err("epoll_ctl", "watch signals"))?;
            Some(s)
        } else {
            None
        };
        let (lookup_tx, lookup_rx) = std::sync::mpsc::channel();
        Ok(Primary {
            inner: Some(Box::new(Inner {
                opts,
                registry,
                poller: Some(poller),
                poll_fd,
                workers: BTreeMap::new(),
                next_id: 1,
                listeners: Vec::new(),
                by_addr: HashMap::new(),
                lookups: HashMap::new(),
                lookup_line: VecDeque::new(),
                lookup_tx,
                lookup_rx,
                forks: false,
                events: VecDeque::new(),
                signals,
                shutdown: None,
                hot_channels: Vec::new(),
                hot_listeners: Vec::new(),
                unix_paths: Vec::new(),
                owner_pid: std::process::id(),
                waker: None,
                next_stall_check: None,
                quiet_watch: Vec::new(),
                kernel_tickets: None,
                stop_delay: Duration::ZERO,
                steering_reported: Default::default(),
                parked: BTreeMap::new(),
                next_parked: 0,
                routing: RoutingStats::default(),
            })),
        })
    }

    fn inner(&mut self) -> Result<&mut Inner> {
        self.inner.as_deref_mut().ok_or_else(|| {
            Error::wrong_state(
                "this process is a forked worker: its copy of the primary is unusable",
            )
        })
    }

    fn inner_ref(&self) -> Option<&Inner> {
        self.inner.as_deref()
    }

    /// The scheduling policy in effect (after the environment override).
    pub fn policy(&self) -> Policy {
        self.inner_ref()
            .map_or(Policy::RoundRobin, |i| i.opts.policy)
    }

    /// The window in effect (after the `CORRAL_WINDOW` override): connections a worker may
    /// hold not yet taken.
    pub fn window(&self) -> u32 {
        self.inner_ref().map_or(DEFAULT_WINDOW, |i| i.opts.window)
    }

    /// Counters of the routing: connections closed for a bad PROXY header, routed by key or
    /// by address for want of one, parked now.
    pub fn routing_stats(&self) -> RoutingStats {
        self.inner_ref()
            .map_or_else(RoutingStats::default, |i| RoutingStats {
                parked: i.parked.len(),
                ..i.routing.clone()
            })
    }

    /// Gives a worker its stable position for `sticky` (a supervisor gives its slot, so a
    /// replacement inherits its predecessor's clients): the listeners it is in (and joins) map
    /// the clients of `slot` to it. Without it a worker takes the first free slot of each
    /// listener it joins. `NoSuchWorker` for an unknown id.
    pub fn set_worker_slot(&mut self, worker: WorkerId, slot: u32) -> Result<()> {
        let inner = self.inner()?;
        let rec = inner
            .workers
            .get_mut(&worker)
            .ok_or_else(|| Error::no_such_worker(worker))?;
        rec.slot = Some(slot);
        for l in &mut inner.listeners {
            if l.sticky.slot_of(worker).is_some() {
                l.sticky.vacate(worker);
                l.sticky.fill(slot, worker);
            }
        }
        Ok(())
    }

    /// A pollable fd: readable when [`Primary::dispatch`] has work. Embed it in another loop
    /// (epoll, libuv, libevent) and call `dispatch(Some(Duration::ZERO))` when it is readable or
    /// when [`Primary::next_timeout`] expires.
    pub fn poll_fd(&self) -> RawFd {
        self.inner_ref().map_or(-1, |i| i.poll_fd)
    }

    /// How long an embedding loop may sleep before calling `dispatch` again (`None`: until the
    /// poll fd is readable).
    pub fn next_timeout(&self) -> Option<Duration> {
        self.inner_ref()?.wait_time()
    }

    /// Takes the poller out of the primary, for a loop that waits on it without holding the
    /// primary (see [`Poller`]); [`Primary::dispatch`] fails from then on and
    /// [`Primary::dispatch_ready`] handles what the poller reports. `None` if it was taken
    /// already. [`Primary::poll_fd`] stays the poller's fd.
    pub fn take_poller(&mut self) -> Option<Poller> {
        self.inner.as_deref_mut()?.poller.take()
    }

    /// Handles what `poller` (this primary's, from [`Primary::take_poller`]) reported in its
    /// last [`Poller::wait`]: accepts and hands out connections, reads channels, reaps exits,
    /// then runs the timers that are due. The caller bounds each wait by
    /// [`Primary::next_timeout`], or timers run late.
    pub fn dispatch_ready(&mut self, poller: &Poller) -> Result<()> {
        self.inner()?.dispatch_ready(&poller.events)
    }

    /// A handle that wakes [`Primary::dispatch`] from another thread (for fronts that run the
    /// primary on its own thread and send it commands). Created on first use.
    pub fn waker(&mut self) -> Result<std::sync::Arc<mio::Waker>> {
        self.inner()?.waker()
    }

    /// Pops the next queued event.
    pub fn next_event(&mut self) -> Option<Event> {
        self.inner.as_deref_mut()?.events.pop_front()
    }

    /// Starts a worker by exec (`PrimaryOptions::exec`), adding `env` to its environment.
    /// The worker finds its id and channel in `CORRAL_WORKER_ID` and `CORRAL_CHANNEL_FD`.
    pub fn spawn_worker(&mut self, env: &[(String, String)]) -> Result<WorkerId> {
        let spec = self.inner()?.opts.exec.clone().ok_or_else(|| {
            Error::wrong_state("spawn_worker needs PrimaryOptions::exec (or use fork_worker)")
        })?;
        self.spawn_worker_with(&spec, env)
    }

    /// Starts a worker by exec of `spec` instead of `PrimaryOptions::exec`: for fronts whose
    /// settings change between workers (node:cluster's `setupPrimary`).
    pub fn spawn_worker_with(
        &mut self,
        spec: &SpawnSpec,
        env: &[(String, String)],
    ) -> Result<WorkerId> {
        let inner = self.inner()?;
        inner.check_running()?;
        check_stdio(spec)?;
        let (mine, theirs) =
            sys::seqpacket_pair().map_err(io_err("socketpair", "create worker channel"))?;
        let messages = if inner.opts.message_channels {
            Some(
                sys::seqpacket_pair()
                    .map_err(io_err("socketpair", "create worker message channel"))?,
            )
        } else {
            None
        };
        let id = inner.next_id;
        let mut vars: Vec<(&str, String)> = vec![(ENV_WORKER_ID, id.to_string())];
        vars.extend(env.iter().map(|(k, v)| (k.as_str(), v.clone())));
        // The channels go right above the worker's stdio entries (the first at a Channel
        // entry); sys::spawn names their numbers in these variables.
        let mut inherit = vec![(ENV_CHANNEL_FD, theirs.as_fd())];
        if let Some((_, their_msgs)) = &messages {
            inherit.push((ENV_MESSAGE_FD, their_msgs.as_fd()));
        }
        let spawned = sys::spawn(spec, &inherit, &vars).map_err(|e| {
            Error::os(
                "spawn",
                format!("start worker {}", spec.program.display()),
                &e,
            )
        })?;
        inner.next_id += 1;
        drop(inherit);
        // The worker's end of the message channel closes here: the front sees EOF when the
        // worker is gone.
        let messages = messages.map(|(mine, _theirs)| mine);
        inner.adopt(id, spawned.pid, mine, theirs, spawned.stdio)?;
        if let Some(slot) = inner.workers.get_mut(&id) {
            slot.messages = messages;
            slot.without_channel = spec.without_channel;
        }
        Ok(id)
    }

    /// Uses up the next worker id without starting a worker: node:cluster's `fork()` spends
    /// an id even when it throws, and the Node front mirrors that.
    pub fn skip_worker_id(&mut self) -> Result<WorkerId> {
        let inner = self.inner()?;
        let id = inner.next_id;
        inner.next_id += 1;
        Ok(id)
    }

    /// Forks a worker (prefork, as nginx and Apache). In the primary returns
    /// `Forked::Primary(id)`; in the child `Forked::Worker`, after closing every fd of the
    /// primary's (listeners, other workers' channels, the poller) and restoring the signal
    /// dispositions the primary installed. The child has the primary's memory otherwise.
    ///
    /// Refused with `WrongState` when the process has more than one thread: after `fork` only
    /// the calling thread exists, and locks other threads held (the allocator's) would stay
    /// locked forever. Use exec mode there.
    pub fn fork_worker(&mut self) -> Result<Forked> {
        let inner = self.inner()?;
        inner.check_running()?;
        let (mine, theirs) =
            sys::seqpacket_pair().map_err(io_err("socketpair", "create worker channel"))?;
        let id = inner.next_id;
        let outcome = sys::fork().map_err(|e| match e {
            sys::ForkError::Threads(n) => Error::wrong_state(format!(
                "fork mode needs a single-threaded primary, this process has {n} threads: \
                 use exec mode (PrimaryOptions::exec) instead"
            )),
            sys::ForkError::Os(e) => Error::os("fork", "fork worker", &e),
        })?;
        match outcome {
            sys::ForkOutcome::Parent(pid) => {
                inner.next_id += 1;
                inner.forks = true;
                inner.adopt(id, pid, mine, theirs, Vec::new())?;
                Ok(Forked::Primary(id))
            }
            sys::ForkOutcome::Child => {
                drop(mine);
                // Close this process's copies of everything the primary owns. Nothing else is
                // touched: the primary's Drop only unlinks Unix sockets in the owner process.
                drop(self.inner.take());
                Ok(Forked::Worker(Box::new(Worker::from_channel(id, theirs)?)))
            }
        }
    }

    /// Sends an application message to a worker. Returns `false` when the message had to be
    /// queued behind others beyond the high-water mark (backpressure, as Node's `send`).
    ///
    /// Errors: `NoSuchWorker`; `Disconnected` once its channel is closed; `TooLarge` above
    /// 64 MiB; `WouldBlock` when the queue would pass `PrimaryOptions::send_queue_limit`
    /// (nothing queued, the fds closed; `Event::Drain` says when to try again).
    pub fn send(&mut self, worker: WorkerId, data: Vec<u8>, fds: Vec<OwnedFd>) -> Result<bool> {
        self.send_tracked(worker, &data, fds)
            .map(|s| s.below_high_water)
    }

    /// [`Primary::send`], telling also whether the message is already written to the socket
    /// and, if not, its sequence number: it is out once [`Primary::written`] reaches it (the
    /// rest of the queue is written by `dispatch` when the socket has room).
    ///
    /// `data` is copied only if it cannot be written at once.
    pub fn send_tracked(
        &mut self,
        worker: WorkerId,
        data: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Result<Sent> {
        self.send_kind(worker, Kind::User, data, fds)
    }

    /// Sends several application messages as one (`Kind::Batch`: `batch` is their
    /// [`proto::Batch`](crate::ipc::proto::Batch) payload): one datagram where each would take
    /// one, and the worker reads them as the messages they are, in order. Tracked and limited
    /// as one message, like [`Primary::send_tracked`]. A malformed `batch` is
    /// `ErrorKind::InvalidArgument` and nothing is sent.
    pub fn send_batch_tracked(&mut self, worker: WorkerId, batch: &[u8]) -> Result<Sent> {
        crate::ipc::proto::batch_parts(batch).map_err(|e| {
            Error::invalid(format!("send batch to worker {worker}: {}", e.message()))
        })?;
        self.send_kind(worker, Kind::Batch, batch, Vec::new())
    }

    fn send_kind(
        &mut self,
        worker: WorkerId,
        kind: Kind,
        data: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Result<Sent> {
        let inner = self.inner()?;
        let limit = inner.opts.send_queue_limit;
        let slot = inner
            .workers
            .get_mut(&worker)
            .ok_or_else(|| Error::no_such_worker(worker))?;
        slot.stall.whole &= data.len() <= frame::MAX_CHUNK;
        let chan = slot.chan.as_mut().ok_or_else(|| {
            Error::new(
                ErrorKind::Disconnected,
                format!("worker {worker} is disconnected"),
            )
        })?;
        crate::ipc::channel::check_outgoing(data.len(), fds.len())?;
        let queued = queue_cost(chan);
        let cost = data.len() + QUEUED_MESSAGE_COST;
        if let Some(limit) = limit.filter(|&l| queued > 0 && queued.saturating_add(cost) > l) {
            slot.drain_wanted = true;
            return Err(Error::new(
                ErrorKind::WouldBlock,
                format!(
                    "send to worker {worker}: its queue weighs {queued} bytes (lengths plus \
                     {QUEUED_MESSAGE_COST} per message) and {cost} more would pass the send queue \
                     limit of {limit} bytes; wait for its drain event"
                ),
            ));
        }
        match chan.send_or_queue(kind, data, fds) {
            Ok(true) => {}
            Ok(false) => inner.arm_writable(worker),
            Err(e) if e.kind() == ErrorKind::Os => {
                // As a failed flush: the channel is broken, the worker goes.
                inner.events.push_back(Event::Error {
                    worker: Some(worker),
                    error: e,
                });
                inner.close_channel(worker, false);
            }
            Err(e) => return Err(e),
        }
        let chan = inner.workers.get(&worker).and_then(|s| s.chan.as_ref());
        let seq = chan.map_or(0, Channel::last_seq);
        let queued = chan.map_or(0, |c| c.queued_bytes());
        Ok(Sent {
            seq,
            written: chan.is_some_and(|c| c.written() >= seq),
            below_high_water: queued < SEND_HIGH_WATER,
        })
    }

    /// Messages completely written to a worker's channel so far; `None` once the channel is
    /// closed (what was still queued then is lost) or the worker is unknown.
    pub fn written(&self, worker: WorkerId) -> Option<u64> {
        self.inner_ref()?
            .workers
            .get(&worker)?
            .chan
            .as_ref()
            .map(Channel::written)
    }

    /// Sends `signal` to a worker's process. Nothing else changes (node:cluster's
    /// `worker.kill()` in the primary does the same).
    pub fn kill(&mut self, worker: WorkerId, signal: i32) -> Result<()> {
        let inner = self.inner()?;
        let slot = inner
            .workers
            .get(&worker)
            .ok_or_else(|| Error::no_such_worker(worker))?;
        sys::kill(slot.pid, signal).map_err(io_err(
            "kill",
            format!("signal {signal} to worker {worker}"),
        ))
    }

    /// Asks a worker to disconnect gracefully: it gets no new connections from now on, finishes
    /// what it has, closes its channel and exits. Its exit then has `exited_after_disconnect`.
    pub fn disconnect(&mut self, worker: WorkerId) -> Result<()> {
        let inner = self.inner()?;
        if !inner.workers.contains_key(&worker) {
            return Err(Error::no_such_worker(worker));
        }
        let delay = inner.stop_delay;
        inner.ask_disconnect_after(worker, delay);
        Ok(())
    }

    /// How long a worker started with `SpawnSpec::without_channel` that is asked to leave by
    /// [`Primary::disconnect`] (a reload, a scale-down) has before its SIGTERM; 0 (the
    /// default): at once. Whoever steers connections to it stops doing so first (`corral run
    /// --stop-delay` clears its kernel-rr slot), so it reads what it has already accepted
    /// before a server's shutdown closes those connections. A shutdown sends at once.
    pub fn set_stop_delay(&mut self, delay: Duration) -> Result<()> {
        self.inner()?.stop_delay = delay;
        Ok(())
    }

    /// Cuts a worker off: its channel closes at once, as after a protocol error on it. For a
    /// worker found broken (a front could not read its message channel) and for a
    /// child_process-level disconnect (Node's `worker.process.disconnect()`), which is not
    /// the graceful [`Primary::disconnect`]. It gets no more connections or messages, sees the
    /// end of its channel (and normally exits), and a supervisor stops and replaces it
    /// (`Cause::Channel`). `Event::Disconnect` follows.
    pub fn cut_off(&mut self, worker: WorkerId) -> Result<()> {
        let inner = self.inner()?;
        if !inner.workers.contains_key(&worker) {
            return Err(Error::no_such_worker(worker));
        }
        inner.close_channel(worker, false);
        Ok(())
    }

    /// Graceful shutdown of the whole cluster: stop accepting (listeners close), ask every
    /// worker to disconnect, and SIGKILL those still running at `timeout`. Completion is
    /// reported by `Event::ShutdownComplete { clean }`. Calling it again only shortens the
    /// deadline.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        self.inner()?.begin_shutdown(timeout);
        Ok(())
    }

    /// A shutdown was started.
    pub fn is_shutting_down(&self) -> bool {
        self.inner_ref().is_some_and(|i| i.shutdown.is_some())
    }

    /// Ids of the workers that have not been reaped yet, ascending.
    pub fn worker_ids(&self) -> Vec<WorkerId> {
        self.inner_ref()
            .map_or_else(Vec::new, |i| i.workers.keys().copied().collect())
    }

    /// A snapshot of one worker.
    pub fn worker(&self, id: WorkerId) -> Option<WorkerInfo> {
        let i = self.inner_ref()?;
        let s = i.workers.get(&id)?;
        Some(WorkerInfo {
            id,
            pid: s.pid,
            state: s.state,
            inflight: s.inflight,
            handed_off: s.handed_off,
            refused: s.refused,
            taken_back: s.taken_back,
            exited_after_disconnect: s.disconnect_asked,
            connected: s.chan.is_some(),
            uptime: s.started.elapsed(),
            last_heartbeat: s.last_heartbeat,
            active_connections: s.active,
            ready: s.ready,
            started: s.started,
            stalled: s.stall.stalled,
        })
    }

    /// Takes the primary's end of a worker's piped stdio stream (the worker's fd number), if
    /// it was piped.
    pub fn take_stdio(&mut self, worker: WorkerId, stream: usize) -> Option<OwnedFd> {
        self.inner
            .as_deref_mut()?
            .workers
            .get_mut(&worker)?
            .stdio
            .get_mut(stream)?
            .take()
    }

    /// Takes the primary's ends of all of a worker's stdio, by the worker's fd number (`None`
    /// where it was not piped or was taken already).
    pub fn take_all_stdio(&mut self, worker: WorkerId) -> Vec<Option<OwnedFd>> {
        self.inner
            .as_deref_mut()
            .and_then(|inner| inner.workers.get_mut(&worker))
            .map(|slot| std::mem::take(&mut slot.stdio))
            .unwrap_or_default()
    }

    /// The number of the primary's end of a worker's channel while it is open. For display
    /// only (Node shows it as `worker.process.channel.fd`): the engine alone reads and writes
    /// it.
    pub fn channel_raw_fd(&self, worker: WorkerId) -> Option<RawFd> {
        let s = self.inner_ref()?.workers.get(&worker)?;
        s.chan.as_ref().map(|c| c.raw_fd())
    }

    /// Takes the primary's end of a worker's message channel (with
    /// `PrimaryOptions::message_channels`, exec mode): application messages the worker sends
    /// arrive there as `Kind::User` frames, read by the caller (e.g. with `ipc::Channel`).
    pub fn take_message_channel(&mut self, worker: WorkerId) -> Option<OwnedFd> {
        self.inner
            .as_deref_mut()?
            .workers
            .get_mut(&worker)?
            .messages
            .take()
    }

    /// Resolved address of a listener.
    pub fn listener_addr(&self, listener: u32) -> Option<BoundAddr> {
        let i = self.inner_ref()?;
        i.listeners
            .get(listener.checked_sub(1)? as usize)
            .map(|l| l.addr.clone())
    }

    /// Waits up to `timeout` (`None`: until something happens) and handles what is ready:
    /// accepts and hands out connections, reads channels, reaps exits, enforces deadlines.
    /// Events are queued for [`Primary::next_event`].
    pub fn dispatch(&mut self, timeout: Option<Duration>) -> Result<()> {
        let inner = self.inner()?;
        inner.dispatch(timeout)
    }
}

/// Dropping the primary ends its cluster: remaining workers are SIGKILLed and reaped, Unix
/// socket paths it created are unlinked. (In a forked worker's copy, nothing happens.)
impl Drop for Primary {
    fn drop(&mut self) {
        let Some(i) = self.inner.as_deref() else {
            return;
        };
        if i.owner_pid != std::process::id() {
            return;
        }
        for slot in i.workers.values() {
            let _ = sys::kill(slot.pid, libc::SIGKILL);
        }
        for slot in i.workers.values() {
            // SIGKILL cannot be caught: the exit follows promptly; bounded anyway.
            for _ in 0..2000 {
                match sys::reap(slot.pid) {
                    Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                    _ => break,
                }
            }
        }
        for p in &i.unix_paths {
            let _ = std::fs::remove_file(p);
        }
    }
}
