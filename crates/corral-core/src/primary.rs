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

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, WorkerId};
use crate::ipc::proto::{self, ListenReply, ListenRequest};
use crate::ipc::{frame, Channel, Kind, Message, Recv};
use crate::listener::{self, BoundAddr, ListenAddr, SocketKind};
use crate::policy::round_robin::Rotation;
use crate::policy::Policy;
use crate::sys::{self, ExitStatus, SignalPipe, SpawnSpec};
use crate::worker::{Worker, ENV_CHANNEL_FD, ENV_MESSAGE_FD, ENV_WORKER_ID};
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Default window of connections handed to a worker and not yet acknowledged.
pub const DEFAULT_WINDOW: u32 = 32;
/// Default deadline of a graceful shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// `send` reports backpressure (returns false) above this many queued bytes, as Node does.
const SEND_HIGH_WATER: usize = 128 * 1024;
/// Default of [`PrimaryOptions::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Default of `PrimaryOptions::send_queue_limit`: 16 MiB per worker.
pub const DEFAULT_SEND_QUEUE_LIMIT: usize = 16 << 20;
/// Smallest `send_queue_limit`: one datagram (64 KiB).
pub const SEND_QUEUE_LIMIT_MIN: usize = crate::ipc::frame::MAX_DATAGRAM;
/// Largest `send_queue_limit`: 1 GiB.
pub const SEND_QUEUE_LIMIT_MAX: usize = 1 << 30;
/// What a queued message costs against `send_queue_limit` besides its bytes (its queue entry
/// and allocation), so that many tiny or empty messages are bounded too.
pub const QUEUED_MESSAGE_COST: usize = 128;

/// The queue's weight against `send_queue_limit`.
fn queue_cost(chan: &Channel) -> usize {
    chan.queued_bytes() + chan.queued_messages() * QUEUED_MESSAGE_COST
}
/// Connections accepted per listener per dispatch before others get a turn.
const ACCEPT_BATCH: usize = 256;
/// Messages read from one worker per dispatch before others get a turn.
const READ_BATCH: usize = 512;
/// After EMFILE/ENFILE and other accept errors, wait this long before accepting again (the
/// connections wait in the kernel backlog meanwhile).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Default of [`PrimaryOptions::max_listeners_per_worker`].
pub const DEFAULT_MAX_LISTENERS_PER_WORKER: u32 = 64;
/// Default of [`PrimaryOptions::orphan_listener_grace`]: twice the supervisor's longest
/// restart delay by default (30 s), so a replacement started by the supervisor joins before
/// the listener closes even after a few restarts at that delay.
pub const DEFAULT_ORPHAN_LISTENER_GRACE: Duration = Duration::from_secs(60);
/// Longest [`PrimaryOptions::orphan_listener_grace`] accepted.
pub const MAX_ORPHAN_LISTENER_GRACE: Duration = Duration::from_secs(86_400);
/// Host name lookups running at once, one short-lived thread each; more wait in line.
const MAX_LOOKUP_THREADS: usize = 8;
/// A worker that refused a connection ([`Worker::refuse`]) is dealt none of that listener's
/// connections for this long, doubling while it keeps refusing, up to
/// [`REFUSAL_RETRY_MAX`], or until it says it has room again ([`Worker::room`]).
/// node:cluster offers the connection back to it at once, and so bounces it between full
/// workers as fast as its IPC goes; the retry delay costs the primary a few wake-ups a second,
/// and a waiting client at most 50 ms once room appears in a worker that does not say so.
const REFUSAL_RETRY_MIN: Duration = Duration::from_millis(1);
/// Longest delay before a refusing worker is offered connections again.
const REFUSAL_RETRY_MAX: Duration = Duration::from_millis(50);

const TAG_LISTENER: usize = 0;
const TAG_CHANNEL: usize = 1;
const TAG_PIDFD: usize = 2;
/// Id 0: the signal pipe; id 1: the waker.
const TAG_SIGNAL: usize = 3;
const WAKER_ID: u64 = 1;

/// Bytes of a queued datagram the stall check compares: the frame header and a `Conn`
/// payload (listener and number).
const HEAD_PEEK: usize = frame::HEADER_LEN + 8;

/// How often the stall check looks while it watches: a quarter of the timeout, at least 5 ms.
fn stall_tick(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_millis(5))
}

fn token(tag: usize, id: u64) -> Token {
    Token(((id as usize) << 2) | tag)
}

/// Options of a primary. Fixed once the primary is created.
#[derive(Debug, Clone)]
pub struct PrimaryOptions {
    /// Scheduling policy. `CORRAL_SCHED_POLICY` in the environment overrides it.
    pub policy: Policy,
    /// Connections a worker may have in flight (sent, not yet acknowledged). At least 1.
    pub window: u32,
    /// The program workers run in exec mode; `None` allows fork mode only.
    pub exec: Option<SpawnSpec>,
    /// Handle SIGINT and SIGTERM: the first starts a graceful shutdown, a second one SIGKILLs
    /// what is left. This installs process-wide signal handlers (restored on drop).
    pub shutdown_signals: bool,
    /// Handle SIGHUP: reported as `Event::Signal`, which a supervisor turns into a rolling
    /// reload. Installs a process-wide handler (restored on drop).
    pub reload_signal: bool,
    /// Deadline of a shutdown started by a signal.
    pub shutdown_timeout: Duration,
    /// Give every exec'd worker a second channel for its application messages to the primary
    /// (`ENV_MESSAGE_FD`), which the front reads itself ([`Primary::take_message_channel`])
    /// instead of the engine's loop. The Node front reads it on the JS thread: one thread
    /// wake-up per message instead of two. Control traffic stays on the worker channel.
    pub message_channels: bool,
    /// Round-robin: a worker that has connections waiting unread in its channel and neither
    /// reads nor acknowledges any for this long is *stalled* (stopped, or its loop blocked):
    /// it is dealt no more connections, the ones still unread in its channel are taken back
    /// and dealt to the others, and it rejoins the rotation once it reads again. `None`
    /// turns the check off. Range: 10 ms to 7 days. See `guide` (stalled workers).
    pub stall_timeout: Option<Duration>,
    /// Listeners one worker may be a member of at once, counting its listens that wait for a
    /// host name lookup; 1 to 65536, default [`DEFAULT_MAX_LISTENERS_PER_WORKER`]. Each
    /// listener costs the primary an fd: past this a listen gets an error (EINVAL, naming this
    /// option) and the primary carries on, so one worker cannot use up the primary's fds.
    pub max_listeners_per_worker: u32,
    /// How long a listener stays open with no worker after its last one crashed (or never
    /// joined): clients wait in its backlog for a replacement meanwhile. A worker joining in
    /// time keeps it; otherwise it closes. At most [`MAX_ORPHAN_LISTENER_GRACE`], default
    /// [`DEFAULT_ORPHAN_LISTENER_GRACE`]. When binding a new listener fails with EMFILE or
    /// ENFILE, such listeners close at once and the bind is tried again.
    pub orphan_listener_grace: Duration,
    /// Bytes of application messages ([`Primary::send`]) that may wait in one worker's queue
    /// while its socket is full (a worker that does not read), each message counting its length
    /// plus [`QUEUED_MESSAGE_COST`] (128) bytes. A send that would go past it is
    /// refused with `ErrorKind::WouldBlock`: nothing is queued (its fds are closed), nothing
    /// else changes, and `Event::Drain` follows once the queue is down to half the limit. A
    /// message is always taken when the queue is empty, so one message of up to 64 MiB can
    /// always go. Range [`SEND_QUEUE_LIMIT_MIN`] to [`SEND_QUEUE_LIMIT_MAX`] (checked by
    /// [`check_send_queue_limit`]); default [`DEFAULT_SEND_QUEUE_LIMIT`] (16 MiB). `None`: no
    /// limit, as node:cluster (the Node front).
    pub send_queue_limit: Option<usize>,
}

impl PrimaryOptions {
    /// Checks every value against its documented range ([`crate::limits`]): `window`
    /// 1..=65536, `shutdown_timeout` 0..=7 days, `stall_timeout` 10 ms..=7 days,
    /// `max_listeners_per_worker` 1..=65536, `orphan_listener_grace` 0..=1 day.
    pub fn validate(&self) -> Result<()> {
        use crate::limits::{check_count, check_duration, MAX_WINDOW};
        check_count("window", self.window as u64, 1, MAX_WINDOW as u64)?;
        check_duration("shutdown_timeout", self.shutdown_timeout, false)?;
        if let Some(t) = self.stall_timeout {
            check_duration("stall_timeout", t, true)?;
            if t < Duration::from_millis(10) {
                return Err(Error::invalid(format!(
                    "stall_timeout: must be between 10 ms and 7 days (got {} ms)",
                    t.as_millis()
                )));
            }
        }
        check_count(
            "max_listeners_per_worker",
            self.max_listeners_per_worker as u64,
            1,
            65_536,
        )?;
        if self.orphan_listener_grace > MAX_ORPHAN_LISTENER_GRACE {
            return Err(Error::invalid(format!(
                "orphan_listener_grace: must be at most {} ms (1 day) (got {} ms)",
                MAX_ORPHAN_LISTENER_GRACE.as_millis(),
                self.orphan_listener_grace.as_millis()
            )));
        }
        if let Some(limit) = self.send_queue_limit {
            check_send_queue_limit(limit)?;
        }
        Ok(())
    }
}

/// The one place `PrimaryOptions::send_queue_limit` is range-checked.
pub fn check_send_queue_limit(bytes: usize) -> Result<()> {
    if !(SEND_QUEUE_LIMIT_MIN..=SEND_QUEUE_LIMIT_MAX).contains(&bytes) {
        return Err(Error::invalid(format!(
            "send queue limit of {bytes} bytes is out of range: {SEND_QUEUE_LIMIT_MIN} (64 KiB) \
             to {SEND_QUEUE_LIMIT_MAX} (1 GiB)"
        )));
    }
    Ok(())
}

impl Default for PrimaryOptions {
    fn default() -> Self {
        PrimaryOptions {
            policy: Policy::RoundRobin,
            window: DEFAULT_WINDOW,
            exec: None,
            shutdown_signals: false,
            reload_signal: false,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            message_channels: false,
            stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
            max_listeners_per_worker: DEFAULT_MAX_LISTENERS_PER_WORKER,
            orphan_listener_grace: DEFAULT_ORPHAN_LISTENER_GRACE,
            send_queue_limit: Some(DEFAULT_SEND_QUEUE_LIMIT),
        }
    }
}

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

struct Slot {
    pid: i32,
    pidfd: OwnedFd,
    chan: Option<Channel>,
    /// The worker's end of the channel, kept to recover connections it never took.
    peer: Option<OwnedFd>,
    state: WorkerState,
    inflight: u32,
    write_blocked: bool,
    disconnect_asked: bool,
    handed_off: u64,
    refused: u64,
    started: Instant,
    /// The primary's ends of piped stdio, by the worker's fd number.
    stdio: Vec<Option<OwnedFd>>,
    /// The primary's end of the message channel, until the front takes it.
    messages: Option<OwnedFd>,
    last_heartbeat: Option<Instant>,
    active: Option<u32>,
    ready: bool,
    online: bool,
    stall: StallWatch,
    /// A send was refused (queue limit): `Event::Drain` is owed once the queue is down to half.
    drain_wanted: bool,
}

/// What the stall check knows of one worker's channel (see `Inner::check_stalls`).
#[derive(Debug, Default)]
struct StallWatch {
    /// Connections were handed to it since its queue was last seen empty.
    watched: bool,
    /// The start of the datagram last seen at the head of its queue (a `Conn` carries its
    /// number, so a new head is a different value), and since when it has been there.
    head: Option<[u8; HEAD_PEEK]>,
    since: Option<Instant>,
    /// Every message written to it since its queue was last seen empty fits one datagram, so
    /// everything unread in its queue can be read back without cutting a message in two.
    whole: bool,
    stalled: bool,
}

impl Slot {
    fn can_take(&self, window: u32) -> bool {
        self.inflight < window
            && !self.stall.stalled
            && !self.write_blocked
            && self.chan.as_ref().is_some_and(|c| !c.has_queued())
    }
}

struct ListenerSlot {
    id: u32,
    fd: Option<OwnedFd>,
    addr: BoundAddr,
    rotation: Rotation,
    /// Readiness seen and not yet drained to EAGAIN (the poller is edge-triggered).
    ready: bool,
    pending: VecDeque<OwnedFd>,
    retry_at: Option<Instant>,
    accepted: u64,
    accept_failing: bool,
    /// Since when it has had no worker (not after a graceful leave: that closes it at once).
    orphaned_at: Option<Instant>,
    /// Adopted from the primary's own fd (`fd:N`): its Unix socket file is not ours.
    adopted: bool,
    /// Workers that refused one of its connections, not offered any until `until`.
    refusals: HashMap<WorkerId, Refusal>,
}

/// A worker's last refusal of a listener's connections ([`REFUSAL_RETRY_MIN`]).
#[derive(Debug, Clone, Copy)]
struct Refusal {
    until: Instant,
    backoff: Duration,
    /// The listener is pumped when `until` passes (cleared once it was).
    armed: bool,
}

impl ListenerSlot {
    /// `worker` refused one of this listener's connections recently: skip it until it may
    /// have room again.
    fn refused_by(&self, worker: WorkerId, now: Instant) -> bool {
        self.refusals.get(&worker).is_some_and(|r| r.until > now)
    }

    /// When a worker that refused becomes eligible again, if connections wait for one.
    fn next_refusal_retry(&self) -> Option<Instant> {
        if self.fd.is_none() || (self.pending.is_empty() && !self.ready) {
            return None;
        }
        self.refusals
            .values()
            .filter(|r| r.armed)
            .map(|r| r.until)
            .min()
    }

    /// Takes a worker out of the rotation and forgets its refusals.
    fn remove_worker(&mut self, worker: WorkerId) -> bool {
        self.refusals.remove(&worker);
        self.rotation.remove(worker)
    }
}

impl ListenerSlot {
    /// Connections go through the primary: a stream listener under round-robin. Datagram
    /// listeners are always shared, whatever the policy.
    fn round_robin(&self, policy: Policy) -> bool {
        policy == Policy::RoundRobin && self.addr.kind() == SocketKind::Stream
    }
}

/// Listen requests for the same host name, index and kind share one lookup (and then one
/// listener). The kind keeps TCP 8080 and UDP 8080 apart.
type ListenKey = (ListenAddr, u32, SocketKind);

/// A host name lookup for a listen, running on its own thread or waiting for one.
struct Lookup {
    backlog: i32,
    opts: listener::BindOptions,
    /// Workers waiting for the answer, with their request ids.
    waiters: Vec<(WorkerId, u32)>,
    /// Set once its thread runs.
    thread: Option<std::thread::JoinHandle<()>>,
}

type LookupResult = (ListenKey, Result<std::net::SocketAddr>);

struct Shutdown {
    deadline: Instant,
    killed: bool,
    reported: bool,
}

struct Inner {
    opts: PrimaryOptions,
    poll: Poll,
    mio_events: mio::Events,
    workers: BTreeMap<WorkerId, Slot>,
    next_id: WorkerId,
    listeners: Vec<ListenerSlot>,
    by_addr: HashMap<ListenKey, u32>,
    lookups: HashMap<ListenKey, Lookup>,
    /// Lookups waiting for a thread (at most `MAX_LOOKUP_THREADS` run at once).
    lookup_line: VecDeque<ListenKey>,
    lookup_tx: std::sync::mpsc::Sender<LookupResult>,
    lookup_rx: std::sync::mpsc::Receiver<LookupResult>,
    /// A worker was forked: names are then resolved on the loop, as a lookup thread would make
    /// `fork_worker` fail while it runs.
    forks: bool,
    events: VecDeque<Event>,
    signals: Option<SignalPipe>,
    shutdown: Option<Shutdown>,
    /// Channels and listeners with work left over from the last dispatch (batch limits).
    hot_channels: Vec<WorkerId>,
    hot_listeners: Vec<u32>,
    unix_paths: Vec<PathBuf>,
    owner_pid: u32,
    waker: Option<std::sync::Arc<mio::Waker>>,
    /// When the stall check runs next (only while some worker is watched or stalled).
    next_stall_check: Option<Instant>,
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
    /// `CORRAL_SCHED_POLICY=rr|shared`); a bad value is an error naming the variable or option.
    pub fn new(mut opts: PrimaryOptions) -> Result<Primary> {
        crate::environ::apply(&mut opts)?;
        opts.validate()?;
        let poll = Poll::new().map_err(io_err("epoll_create", "create poller"))?;
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
            poll.registry()
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
                poll,
                mio_events: mio::Events::with_capacity(256),
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

    /// A pollable fd: readable when [`Primary::dispatch`] has work. Embed it in another loop
    /// (epoll, libuv, libevent) and call `dispatch(Some(Duration::ZERO))` when it is readable or
    /// when [`Primary::next_timeout`] expires.
    pub fn poll_fd(&self) -> RawFd {
        self.inner_ref().map_or(-1, |i| i.poll.as_raw_fd())
    }

    /// How long an embedding loop may sleep before calling `dispatch` again (`None`: until the
    /// poll fd is readable).
    pub fn next_timeout(&self) -> Option<Duration> {
        let i = self.inner_ref()?;
        if !i.events.is_empty() || !i.hot_channels.is_empty() || !i.hot_listeners.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let mut t: Option<Instant> = i
            .shutdown
            .as_ref()
            .filter(|s| !s.killed)
            .map(|s| s.deadline);
        for l in &i.listeners {
            if let Some(r) = l.retry_at {
                t = Some(t.map_or(r, |x| x.min(r)));
            }
        }
        if let Some(r) = i.next_stall_check {
            t = Some(t.map_or(r, |x| x.min(r)));
        }
        if let Some(r) = i.next_orphan_deadline() {
            t = Some(t.map_or(r, |x| x.min(r)));
        }
        if let Some(r) = i.next_refusal_retry() {
            t = Some(t.map_or(r, |x| x.min(r)));
        }
        t.map(|t| t.saturating_duration_since(now))
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
        let inner = self.inner()?;
        let limit = inner.opts.send_queue_limit;
        let slot = inner
            .workers
            .get_mut(&worker)
            .ok_or_else(|| no_such(worker))?;
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
        match chan.send_or_queue(Kind::User, data, fds) {
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
        let slot = inner.workers.get(&worker).ok_or_else(|| no_such(worker))?;
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
            return Err(no_such(worker));
        }
        inner.ask_disconnect(worker);
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
            return Err(no_such(worker));
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

fn no_such(worker: WorkerId) -> Error {
    Error::new(
        ErrorKind::NoSuchWorker,
        format!("no worker with id {worker}"),
    )
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

impl Inner {
    fn waker(&mut self) -> Result<std::sync::Arc<mio::Waker>> {
        if self.waker.is_none() {
            let w = mio::Waker::new(self.poll.registry(), token(TAG_SIGNAL, WAKER_ID))
                .map_err(io_err("eventfd", "create waker"))?;
            self.waker = Some(std::sync::Arc::new(w));
        }
        Ok(self.waker.clone().expect("just set"))
    }

    fn check_running(&self) -> Result<()> {
        if self.shutdown.is_some() {
            return Err(Error::wrong_state(
                "the primary is shutting down: no new workers",
            ));
        }
        Ok(())
    }

    fn adopt(
        &mut self,
        id: WorkerId,
        pid: i32,
        chan: OwnedFd,
        peer: OwnedFd,
        stdio: Vec<Option<OwnedFd>>,
    ) -> Result<()> {
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                // Without a pidfd we could never notice its exit: do not leave it running.
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::reap(pid);
                return Err(Error::os(
                    "pidfd_open",
                    format!("watch worker {id} (pid {pid})"),
                    &e,
                ));
            }
        };
        let reg = self.poll.registry();
        reg.register(
            &mut SourceFd(&pidfd.as_raw_fd()),
            token(TAG_PIDFD, id),
            Interest::READABLE,
        )
        .map_err(io_err("epoll_ctl", "watch worker exit"))?;
        reg.register(
            &mut SourceFd(&chan.as_raw_fd()),
            token(TAG_CHANNEL, id),
            Interest::READABLE,
        )
        .map_err(io_err("epoll_ctl", "watch worker channel"))?;
        self.workers.insert(
            id,
            Slot {
                pid,
                pidfd,
                chan: Some(Channel::new(chan)),
                peer: Some(peer),
                state: WorkerState::Starting,
                inflight: 0,
                write_blocked: false,
                disconnect_asked: false,
                handed_off: 0,
                refused: 0,
                started: Instant::now(),
                stdio,
                messages: None,
                last_heartbeat: None,
                active: None,
                ready: false,
                online: false,
                stall: StallWatch {
                    whole: true,
                    ..StallWatch::default()
                },
                drain_wanted: false,
            },
        );
        self.events.push_back(Event::Fork { worker: id, pid });
        Ok(())
    }

    fn dispatch(&mut self, timeout: Option<Duration>) -> Result<()> {
        let mut timeout = timeout;
        let busy = !self.hot_channels.is_empty() || !self.hot_listeners.is_empty();
        if busy {
            timeout = Some(Duration::ZERO);
        }
        let now = Instant::now();
        let mut cap = |t: Instant| {
            let d = t.saturating_duration_since(now);
            timeout = Some(timeout.map_or(d, |x| x.min(d)));
        };
        if let Some(s) = self.shutdown.as_ref().filter(|s| !s.killed) {
            cap(s.deadline);
        }
        for l in &self.listeners {
            if let Some(r) = l.retry_at {
                cap(r);
            }
        }
        if let Some(r) = self.next_stall_check {
            cap(r);
        }
        if let Some(r) = self.next_orphan_deadline() {
            cap(r);
        }
        if let Some(r) = self.next_refusal_retry() {
            cap(r);
        }
        match self.poll.poll(&mut self.mio_events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::os("epoll_wait", "poll", &e)),
        }
        let ready: Vec<(usize, bool)> = self
            .mio_events
            .iter()
            .map(|e| (e.token().0, e.is_writable() && !e.is_readable()))
            .collect();
        let hot_channels = std::mem::take(&mut self.hot_channels);
        let hot_listeners = std::mem::take(&mut self.hot_listeners);
        for (t, write_only) in ready {
            let id = (t >> 2) as u64;
            match t & 3 {
                TAG_LISTENER => {
                    if let Some(l) = self.listener_mut(id as u32) {
                        l.ready = true;
                    }
                    self.pump(id as u32);
                }
                TAG_CHANNEL => {
                    self.on_writable(id);
                    if !write_only {
                        self.read_channel(id);
                    }
                }
                TAG_PIDFD => self.on_exit(id),
                _ if id == WAKER_ID => {} // only wakes the caller up
                _ => self.on_signals(),
            }
        }
        for id in hot_channels {
            self.read_channel(id);
        }
        for lid in hot_listeners {
            self.pump(lid);
        }
        let now = Instant::now();
        let retry: Vec<u32> = self
            .listeners
            .iter_mut()
            .filter(|l| l.retry_at.is_some_and(|r| r <= now))
            .map(|l| {
                l.retry_at = None;
                l.id
            })
            .collect();
        for lid in retry {
            self.pump(lid);
        }
        if self.next_stall_check.is_some_and(|t| t <= now) {
            self.check_stalls(now);
        }
        self.retry_refused(now);
        if !self.lookups.is_empty() {
            self.finish_lookups();
        }
        self.close_orphans(Some(Instant::now()));
        self.check_deadline();
        Ok(())
    }

    fn listener_mut(&mut self, lid: u32) -> Option<&mut ListenerSlot> {
        self.listeners.get_mut(lid.checked_sub(1)? as usize)
    }

    fn on_signals(&mut self) {
        let sigs = self.signals.as_ref().map(|s| s.drain()).unwrap_or_default();
        for signal in sigs {
            self.events.push_back(Event::Signal { signal });
            if signal == libc::SIGHUP {
                continue; // for the supervisor (reload)
            }
            if self.shutdown.is_some() {
                // A second signal: stop waiting.
                self.kill_all();
            } else {
                self.begin_shutdown(self.opts.shutdown_timeout);
            }
        }
    }

    /// Reads messages from a worker's channel (at most a batch; the rest next dispatch).
    fn read_channel(&mut self, id: WorkerId) {
        if self.read_channel_up_to(id, READ_BATCH) {
            self.hot_channels.push(id);
        }
    }

    /// Handles up to `limit` messages of a worker's channel; true if it may have more.
    fn read_channel_up_to(&mut self, id: WorkerId, limit: usize) -> bool {
        for _ in 0..limit {
            let Some(chan) = self.workers.get_mut(&id).and_then(|s| s.chan.as_mut()) else {
                return false;
            };
            match chan.recv(true) {
                Ok(Recv::Message(m)) => {
                    if let Err(error) = self.on_message(id, m) {
                        self.events.push_back(Event::Error {
                            worker: Some(id),
                            error,
                        });
                        self.close_channel(id, false);
                        return false;
                    }
                }
                Ok(Recv::WouldBlock) => return false,
                Ok(Recv::Eof) => {
                    self.close_channel(id, false);
                    return false;
                }
                Ok(Recv::FdsLost(kind)) => {
                    // The primary is out of fds; the channel stays in step.
                    self.events.push_back(Event::Error {
                        worker: Some(id),
                        error: Error::fds_lost(format!("a {kind:?} message from worker {id}")),
                    });
                }
                Err(error) => {
                    let error = error.context(format!("worker {id}"));
                    self.events.push_back(Event::Error {
                        worker: Some(id),
                        error,
                    });
                    self.close_channel(id, false);
                    return false;
                }
            }
        }
        true
    }

    fn on_message(&mut self, id: WorkerId, m: Message) -> Result<()> {
        let expect_fds = |n: usize| {
            if m.fds.len() > n {
                Err(Error::protocol(format!(
                    "malformed frame: {:?} with {} fds",
                    m.kind,
                    m.fds.len()
                )))
            } else {
                Ok(())
            }
        };
        match m.kind {
            Kind::Ack => {
                expect_fds(0)?;
                let n = proto::decode_u32(&m.data, "ack")?;
                let slot = self.workers.get_mut(&id).expect("reading its channel");
                slot.inflight = slot.inflight.saturating_sub(n);
                // It reads: a stalled worker is back.
                slot.stall.stalled = false;
                self.pump_worker_listeners(id);
            }
            Kind::Online => {
                expect_fds(0)?;
                let slot = self.workers.get_mut(&id).expect("reading its channel");
                if !slot.online {
                    slot.online = true;
                    if slot.state == WorkerState::Starting {
                        slot.state = WorkerState::Online;
                    }
                    // Also when a disconnect was already asked for: it did come online.
                    self.events.push_back(Event::Online { worker: id });
                }
            }
            Kind::Listen => {
                expect_fds(0)?;
                let req = ListenRequest::decode(&m.data)?;
                self.on_listen(id, req);
            }
            Kind::Unlisten => {
                expect_fds(0)?;
                let lid = proto::decode_u32(&m.data, "unlisten")?;
                let emptied = self
                    .listener_mut(lid)
                    .is_some_and(|l| l.remove_worker(id) && l.rotation.is_empty());
                if emptied {
                    self.close_listener(lid);
                }
            }
            Kind::User => {
                self.events.push_back(Event::Message {
                    worker: id,
                    data: m.data,
                    fds: m.fds,
                });
            }
            Kind::Ready => {
                expect_fds(0)?;
                if let Some(s) = self.workers.get_mut(&id) {
                    s.ready = true;
                }
                self.events.push_back(Event::Ready { worker: id });
            }
            Kind::Heartbeat => {
                expect_fds(0)?;
                // Optional payload: the connections the worker has open.
                let active = if m.data.is_empty() {
                    None
                } else {
                    Some(proto::decode_u32(&m.data, "heartbeat")?)
                };
                let slot = self.workers.get_mut(&id).expect("reading its channel");
                slot.last_heartbeat = Some(Instant::now());
                if active.is_some() {
                    slot.active = active;
                }
            }
            Kind::Bye => {
                expect_fds(0)?;
                if let Some(s) = self.workers.get_mut(&id) {
                    s.disconnect_asked = true;
                }
                self.close_channel(id, true);
            }
            Kind::Refuse => {
                if m.fds.len() != 1 {
                    return Err(Error::protocol(format!(
                        "malformed frame: Refuse with {} fds (expected the connection)",
                        m.fds.len()
                    )));
                }
                let lid = proto::decode_u32(&m.data, "refuse")?;
                let fd = m.fds.into_iter().next().expect("one fd");
                self.on_refused(id, lid, fd);
            }
            Kind::Room => {
                expect_fds(0)?;
                let lid = proto::decode_u32(&m.data, "room")?;
                let had = self
                    .listener_mut(lid)
                    .is_some_and(|l| l.refusals.remove(&id).is_some());
                if had {
                    self.pump(lid);
                }
            }
            Kind::Conn | Kind::ListenOk | Kind::ListenErr | Kind::Disconnect | Kind::Ping => {
                return Err(Error::protocol(format!(
                    "malformed frame: {:?} is only sent by the primary",
                    m.kind
                )));
            }
        }
        Ok(())
    }

    fn on_listen(&mut self, id: WorkerId, req: ListenRequest) {
        let key: ListenKey = (req.addr.clone(), req.index, req.kind);
        if let Err(e) = self
            .may_listen(id)
            .and_then(|()| self.within_listener_limit(id, &key))
        {
            self.listen_err(id, req.req, &e);
            return;
        }
        let backlog = if req.backlog <= 0 {
            listener::DEFAULT_BACKLOG
        } else {
            req.backlog
        };
        if let Some(&lid) = self.by_addr.get(&key) {
            self.join_listener(id, req.req, lid);
        } else if !self.forks && listener::host_to_look_up(&req.addr).is_some() {
            // The resolver may take seconds (or its whole timeout): never on this loop.
            self.look_up(key, backlog, req.opts, id, req.req);
        } else {
            let addr = req.addr.clone();
            match self
                .bind_freeing_orphans(|| listener::bind_kind(&addr, req.kind, backlog, req.opts))
                .and_then(|b| self.add_listener(key, b))
            {
                Ok(lid) => self.join_listener(id, req.req, lid),
                Err(e) => self.listen_err(id, req.req, &e),
            }
        }
    }

    /// Whether worker `id` may join a listener now.
    fn may_listen(&self, id: WorkerId) -> Result<()> {
        if self.shutdown.is_some() {
            Err(Error::wrong_state("the primary is shutting down"))
        } else if self.workers.get(&id).is_some_and(|s| s.disconnect_asked) {
            // Asked to disconnect: it must not join a rotation any more.
            Err(Error::wrong_state(format!("worker {id} is disconnecting")))
        } else {
            Ok(())
        }
    }

    /// `max_listeners_per_worker`: the listeners `id` is a member of plus its listens waiting
    /// for a lookup. Joining a listener it is already in costs nothing.
    fn within_listener_limit(&self, id: WorkerId, key: &ListenKey) -> Result<()> {
        if let Some(&lid) = self.by_addr.get(key) {
            if self.listeners[lid as usize - 1].rotation.contains(id) {
                return Ok(());
            }
        }
        let max = self.opts.max_listeners_per_worker as usize;
        let member = self
            .listeners
            .iter()
            .filter(|l| l.fd.is_some() && l.rotation.contains(id))
            .count();
        let waiting: usize = self
            .lookups
            .values()
            .map(|lk| lk.waiters.iter().filter(|(w, _)| *w == id).count())
            .sum();
        if member + waiting < max {
            return Ok(());
        }
        Err(Error::relayed(
            libc::EINVAL,
            "listen",
            format!(
                "listen {}: worker {id} holds {} listeners (max_listeners_per_worker is {max})",
                key.0,
                member + waiting
            ),
        ))
    }

    fn listen_err(&mut self, id: WorkerId, req: u32, e: &Error) {
        let reply = ListenReply::Err {
            req,
            errno: e.errno(),
            syscall: e.syscall().unwrap_or("listen").to_string(),
            message: e.message().to_string(),
        };
        self.queue_to(id, Kind::ListenErr, reply.encode(), Vec::new());
    }

    /// Answers worker `id`'s listen request `req` with listener `lid` and adds it to the
    /// listener's members.
    fn join_listener(&mut self, id: WorkerId, req: u32, lid: u32) {
        let policy = self.opts.policy;
        let l = &self.listeners[lid as usize - 1];
        let addr = l.addr.clone();
        let round_robin = l.round_robin(policy);
        let fds = if round_robin {
            Vec::new()
        } else {
            match l.fd.as_ref().map(|fd| sys::dup_cloexec(fd.as_fd())) {
                Some(Ok(fd)) => vec![fd],
                Some(Err(e)) => {
                    let e = Error::os("dup", format!("share listener {addr}"), &e);
                    self.listen_err(id, req, &e.with_syscall("listen"));
                    self.mark_if_orphan(lid);
                    return;
                }
                None => Vec::new(),
            }
        };
        let reply = ListenReply::Ok {
            req,
            listener: lid,
            addr: addr.clone(),
            ack_every: (self.opts.window / 4).max(1),
        };
        if !self.queue_to(id, Kind::ListenOk, reply.encode(), fds) {
            self.mark_if_orphan(lid);
            return;
        }
        if let Some(slot) = self.workers.get_mut(&id) {
            if matches!(slot.state, WorkerState::Starting | WorkerState::Online) {
                slot.state = WorkerState::Listening;
            }
        }
        // Membership in both policies (it decides when a listener closes); only round-robin
        // hands connections out.
        let l = &mut self.listeners[lid as usize - 1];
        l.rotation.add(id);
        l.orphaned_at = None;
        if round_robin {
            self.pump(lid);
        }
        self.events.push_back(Event::Listening {
            worker: id,
            listener: lid,
            addr,
        });
    }

    /// Starts the grace period of an open listener nobody is a member of (a new one whose
    /// worker vanished before it joined).
    fn mark_if_orphan(&mut self, lid: u32) {
        if let Some(l) = self.listener_mut(lid) {
            if l.fd.is_some() && l.rotation.is_empty() && l.orphaned_at.is_none() {
                l.orphaned_at = Some(Instant::now());
            }
        }
    }

    fn next_orphan_deadline(&self) -> Option<Instant> {
        let grace = self.opts.orphan_listener_grace;
        self.listeners
            .iter()
            .filter(|l| l.fd.is_some())
            .filter_map(|l| l.orphaned_at)
            .min()
            .map(|t| t + grace)
    }

    /// Closes orphaned listeners whose grace ended by `now`, or all of them (`None`). Returns
    /// how many closed.
    fn close_orphans(&mut self, now: Option<Instant>) -> usize {
        let grace = self.opts.orphan_listener_grace;
        let due: Vec<u32> = self
            .listeners
            .iter()
            .filter(|l| l.fd.is_some() && l.rotation.is_empty())
            .filter(|l| {
                l.orphaned_at
                    .is_some_and(|t| !matches!(now, Some(now) if t + grace > now))
            })
            .map(|l| l.id)
            .collect();
        for &lid in &due {
            self.close_listener(lid);
        }
        due.len()
    }

    /// Binds; on EMFILE/ENFILE closes the orphaned listeners (fds nobody uses now) and tries
    /// once more.
    fn bind_freeing_orphans(
        &mut self,
        bind: impl Fn() -> Result<listener::Bound>,
    ) -> Result<listener::Bound> {
        match bind() {
            Err(e)
                if (e.errno() == libc::EMFILE || e.errno() == libc::ENFILE)
                    && self.close_orphans(None) > 0 =>
            {
                bind()
            }
            r => r,
        }
    }

    /// Registers a newly bound listener under `key`.
    fn add_listener(&mut self, key: ListenKey, bound: listener::Bound) -> Result<u32> {
        let lid = self.listeners.len() as u32 + 1;
        let stream = bound.addr.kind() == SocketKind::Stream;
        if self.opts.policy == Policy::RoundRobin && stream {
            self.poll
                .registry()
                .register(
                    &mut SourceFd(&bound.fd.as_raw_fd()),
                    token(TAG_LISTENER, lid as u64),
                    Interest::READABLE,
                )
                .map_err(io_err("epoll_ctl", "watch listener"))?;
        }
        match &bound.addr {
            BoundAddr::Unix(p) if !bound.adopted => self.unix_paths.push(p.clone()),
            _ => {}
        }
        self.listeners.push(ListenerSlot {
            id: lid,
            fd: Some(bound.fd),
            addr: bound.addr,
            rotation: Rotation::default(),
            // Only stream listeners are accepted on (round-robin): a datagram one never is.
            ready: stream,
            pending: VecDeque::new(),
            retry_at: None,
            accepted: 0,
            accept_failing: false,
            orphaned_at: None,
            adopted: bound.adopted,
            refusals: HashMap::new(),
        });
        self.by_addr.insert(key, lid);
        Ok(lid)
    }

    /// Worker `id` waits for the lookup of `key`'s host name: joins the lookup already running
    /// for the same key (so both get the same listener), or starts one.
    fn look_up(
        &mut self,
        key: ListenKey,
        backlog: i32,
        opts: listener::BindOptions,
        id: WorkerId,
        req: u32,
    ) {
        if let Some(lk) = self.lookups.get_mut(&key) {
            lk.waiters.push((id, req));
            return;
        }
        self.lookups.insert(
            key.clone(),
            Lookup {
                backlog,
                opts,
                waiters: vec![(id, req)],
                thread: None,
            },
        );
        self.lookup_line.push_back(key);
        self.start_lookups();
    }

    fn has_channel(&self, id: WorkerId) -> bool {
        self.workers.get(&id).is_some_and(|s| s.chan.is_some())
    }

    /// Starts threads for waiting lookups, up to `MAX_LOOKUP_THREADS` at once. Short-lived
    /// threads rather than one resident resolver: a hung lookup does not hold up the others,
    /// and the primary is single-threaded again (fork mode works) once lookups are done.
    fn start_lookups(&mut self) {
        let mut running = self.lookups.values().filter(|l| l.thread.is_some()).count();
        while running < MAX_LOOKUP_THREADS {
            let Some(key) = self.lookup_line.pop_front() else {
                return;
            };
            let Some(lk) = self.lookups.get(&key) else {
                continue;
            };
            if !lk.waiters.iter().any(|(w, _)| self.has_channel(*w)) {
                // Everybody who asked is gone: nothing to look up.
                self.lookups.remove(&key);
                continue;
            }
            let (host, port) = listener::host_to_look_up(&key.0)
                .map(|(h, p)| (h.to_string(), p))
                .expect("only names are looked up");
            let spawned = self.waker().and_then(|waker| {
                let tx = self.lookup_tx.clone();
                let k = key.clone();
                std::thread::Builder::new()
                    .name("corral-lookup".into())
                    .spawn(move || {
                        let r = listener::lookup(&host, port);
                        // The primary may be gone: then nobody waits for the answer.
                        if tx.send((k, r)).is_ok() {
                            let _ = waker.wake();
                        }
                    })
                    .map_err(|e| {
                        Error::os("getaddrinfo", format!("start the lookup of {}", key.0), &e)
                    })
            });
            match spawned {
                Ok(t) => {
                    self.lookups.get_mut(&key).expect("present").thread = Some(t);
                    running += 1;
                }
                Err(e) => {
                    let lk = self.lookups.remove(&key).expect("present");
                    for (w, req) in lk.waiters {
                        self.listen_err(w, req, &e);
                    }
                }
            }
        }
    }

    /// Answers the workers whose lookups ended: binds the listener (once per key) and has them
    /// join it, or relays the resolver's error. Workers that left meanwhile are skipped.
    fn finish_lookups(&mut self) {
        while let Ok((key, result)) = self.lookup_rx.try_recv() {
            let Some(lk) = self.lookups.remove(&key) else {
                continue;
            };
            if let Some(t) = lk.thread {
                // It has sent its answer: it is ending.
                let _ = t.join();
            }
            self.start_lookups();
            let mut waiters = Vec::new();
            for (w, req) in lk.waiters {
                if !self.has_channel(w) {
                    continue;
                }
                match self.may_listen(w) {
                    Ok(()) => waiters.push((w, req)),
                    Err(e) => self.listen_err(w, req, &e),
                }
            }
            if waiters.is_empty() {
                continue;
            }
            let (backlog, opts, kind) = (lk.backlog, lk.opts, key.2);
            let addr = key.0.clone();
            let lid = result.and_then(|sa| {
                self.bind_freeing_orphans(|| {
                    listener::bind_resolved(&addr, sa, kind, backlog, opts)
                })
                .and_then(|b| self.add_listener(key, b))
            });
            for (w, req) in waiters {
                match &lid {
                    Ok(lid) => self.join_listener(w, req, *lid),
                    Err(e) => self.listen_err(w, req, e),
                }
            }
        }
    }

    /// Queues a message to a worker and flushes. `false` if the worker's channel is gone.
    fn queue_to(&mut self, id: WorkerId, kind: Kind, data: Vec<u8>, fds: Vec<OwnedFd>) -> bool {
        let Some(slot) = self.workers.get_mut(&id) else {
            return false;
        };
        slot.stall.whole &= data.len() <= frame::MAX_CHUNK;
        let Some(chan) = slot.chan.as_mut() else {
            return false;
        };
        if let Err(error) = chan.queue(kind, data, fds) {
            self.events.push_back(Event::Error {
                worker: Some(id),
                error,
            });
            return false;
        }
        self.flush(id);
        self.workers.get(&id).is_some_and(|s| s.chan.is_some())
    }

    /// Flushes a worker's queue; arms writable interest when the socket is full.
    fn flush(&mut self, id: WorkerId) {
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(chan) = slot.chan.as_mut() else {
            return;
        };
        let flushed = chan.flush(false);
        if slot.drain_wanted {
            let low_water = self.opts.send_queue_limit.unwrap_or(0) / 2;
            if queue_cost(chan) <= low_water {
                slot.drain_wanted = false;
                self.events.push_back(Event::Drain { worker: id });
            }
        }
        match flushed {
            Ok(true) => {}
            Ok(false) => self.arm_writable(id),
            Err(e) => {
                let error = Error::os("sendmsg", format!("send to worker {id}"), &e);
                self.events.push_back(Event::Error {
                    worker: Some(id),
                    error,
                });
                self.close_channel(id, false);
            }
        }
    }

    fn arm_writable(&mut self, id: WorkerId) {
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        if slot.write_blocked {
            return;
        }
        slot.write_blocked = true;
        if let Some(chan) = slot.chan.as_ref() {
            let _ = self.poll.registry().reregister(
                &mut SourceFd(&chan.raw_fd()),
                token(TAG_CHANNEL, id),
                Interest::READABLE | Interest::WRITABLE,
            );
        }
    }

    fn on_writable(&mut self, id: WorkerId) {
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        if !slot.write_blocked {
            return;
        }
        slot.write_blocked = false;
        if let Some(chan) = slot.chan.as_ref() {
            let _ = self.poll.registry().reregister(
                &mut SourceFd(&chan.raw_fd()),
                token(TAG_CHANNEL, id),
                Interest::READABLE,
            );
        }
        self.flush(id);
        self.pump_worker_listeners(id);
    }

    fn pump_worker_listeners(&mut self, id: WorkerId) {
        let lids: Vec<u32> = self
            .listeners
            .iter()
            .filter(|l| l.rotation.contains(id) && (l.ready || !l.pending.is_empty()))
            .map(|l| l.id)
            .collect();
        for lid in lids {
            self.pump(lid);
        }
    }

    /// Offers `fd` to the listener's workers in turn. Gives the fd back when nobody can take
    /// it now. Workers whose channel broke are closed afterwards.
    fn offer(&mut self, lid: u32, fd: OwnedFd) -> std::result::Result<(), OwnedFd> {
        let window = self.opts.window;
        let stall_on = self.opts.stall_timeout.is_some();
        let Inner {
            listeners, workers, ..
        } = self;
        let l = &mut listeners[lid as usize - 1];
        let mut broken = Vec::new();
        let mut blocked = Vec::new();
        let mut watch = false;
        let now = Instant::now();
        let refusals = &l.refusals;
        let taken = l.rotation.offer(|wid| {
            let Some(slot) = workers.get_mut(&wid) else {
                return false;
            };
            if !slot.can_take(window) || refusals.get(&wid).is_some_and(|r| r.until > now) {
                return false;
            }
            if stall_on && !slot.stall.watched && !slot.stall.whole {
                // The first connection since its queue was last seen empty: if it is empty
                // now, whatever was sent before (a big message) has been read whole.
                let mut head = [0u8; HEAD_PEEK];
                if let Some(peer) = slot.peer.as_ref() {
                    if let Ok(None) = sys::peek_datagram(peer.as_fd(), &mut head) {
                        slot.stall.whole = true;
                    }
                }
            }
            let chan = slot.chan.as_mut().expect("can_take checks the channel");
            let payload = proto::conn_payload(lid, slot.handed_off as u32);
            match chan.try_send_single(Kind::Conn, &payload, &[fd.as_fd()]) {
                Ok(true) => {
                    slot.inflight += 1;
                    slot.handed_off += 1;
                    if !slot.stall.watched {
                        slot.stall.watched = true;
                        watch = true;
                    }
                    true
                }
                Ok(false) => {
                    blocked.push(wid);
                    false
                }
                Err(e) => {
                    broken.push((wid, e));
                    false
                }
            }
        });
        for wid in blocked {
            self.arm_writable(wid);
        }
        if watch && self.next_stall_check.is_none() {
            if let Some(t) = self.opts.stall_timeout {
                self.next_stall_check = Some(Instant::now() + stall_tick(t));
            }
        }
        for (wid, e) in broken {
            let error = Error::os("sendmsg", format!("hand a connection to worker {wid}"), &e);
            self.events.push_back(Event::Error {
                worker: Some(wid),
                error,
            });
            self.close_channel(wid, false);
        }
        match taken {
            // The primary's copy closes here, right after the send.
            Some(_) => Ok(()),
            None => Err(fd),
        }
    }

    fn any_capacity(&self, lid: u32) -> bool {
        let l = &self.listeners[lid as usize - 1];
        let now = Instant::now();
        l.rotation.members().iter().any(|&w| {
            !l.refused_by(w, now)
                && self
                    .workers
                    .get(&w)
                    .is_some_and(|s| s.can_take(self.opts.window))
        })
    }

    /// A worker handed a connection back ([`Worker::refuse`]): it goes behind the listener's
    /// waiting connections (as node:cluster's `distribute` appends it) and on to the next
    /// worker with room, and the refusing worker is skipped for a while. A listener that
    /// closed meanwhile has nobody to give it to: the fd closes (the client sees a reset).
    fn on_refused(&mut self, id: WorkerId, lid: u32, fd: OwnedFd) {
        if let Some(s) = self.workers.get_mut(&id) {
            s.refused += 1;
        }
        if self.opts.policy == Policy::Shared {
            // Workers accept by themselves: nobody is dealt connections (as net drops it).
            return;
        }
        let now = Instant::now();
        let Some(l) = self.listener_mut(lid).filter(|l| l.fd.is_some()) else {
            return;
        };
        if l.rotation.contains(id) {
            let r = l.refusals.entry(id).or_insert(Refusal {
                until: now,
                backoff: Duration::ZERO,
                armed: false,
            });
            // Connections sent before the last refusal come back with the same delay; one
            // refused again after the delay passed doubles it; a refusal long after the last
            // one starts small again.
            if r.backoff.is_zero() || now >= r.until + REFUSAL_RETRY_MAX {
                r.backoff = REFUSAL_RETRY_MIN;
                r.until = now + r.backoff;
            } else if now >= r.until {
                r.backoff = (r.backoff * 2).min(REFUSAL_RETRY_MAX);
                r.until = now + r.backoff;
            }
            r.armed = true;
        }
        l.pending.push_back(fd);
        self.pump(lid);
    }

    fn next_refusal_retry(&self) -> Option<Instant> {
        self.listeners
            .iter()
            .filter_map(ListenerSlot::next_refusal_retry)
            .min()
    }

    /// Pumps the listeners whose refusing workers may take connections again.
    fn retry_refused(&mut self, now: Instant) {
        let mut due = Vec::new();
        for l in &mut self.listeners {
            let mut fired = false;
            for r in l.refusals.values_mut() {
                if r.armed && r.until <= now {
                    r.armed = false;
                    fired = true;
                }
            }
            if fired {
                due.push(l.id);
            }
        }
        for lid in due {
            self.pump(lid);
        }
    }

    /// Hands out pending connections, then accepts while some worker has room.
    fn pump(&mut self, lid: u32) {
        if lid == 0
            || lid as usize > self.listeners.len()
            || !self.listeners[lid as usize - 1].round_robin(self.opts.policy)
        {
            return;
        }
        let i = lid as usize - 1;
        let mut budget = ACCEPT_BATCH;
        // Connections known to be queued (TCP: asked once per pump, see
        // `sys::accept_queue_len`); a Unix listener drains to EAGAIN.
        let mut queued: Option<u32> = None;
        loop {
            if let Some(fd) = self.listeners[i].pending.pop_front() {
                if let Err(fd) = self.offer(lid, fd) {
                    self.listeners[i].pending.push_front(fd);
                    return;
                }
                continue;
            }
            let l = &self.listeners[i];
            if l.fd.is_none() || !l.ready || l.retry_at.is_some() || self.shutdown.is_some() {
                return;
            }
            if budget == 0 {
                self.hot_listeners.push(lid);
                return;
            }
            if !self.any_capacity(lid) {
                // Backpressure: leave connections in the kernel backlog.
                return;
            }
            let Some(lfd) = self.listeners[i].fd.as_ref() else {
                return;
            };
            let left = *queued
                .get_or_insert_with(|| sys::accept_queue_len(lfd.as_fd()).unwrap_or(u32::MAX));
            if left == 0 {
                // Drained: what was queued when we asked is taken, and every connection that
                // arrived since then raised a new edge (the poller reports it next), so there
                // is no need to ask again.
                self.listeners[i].ready = false;
                return;
            }
            budget -= 1;
            queued = Some(left - 1);
            let accepted = sys::accept_cloexec(lfd.as_fd());
            match accepted {
                Ok(Some(fd)) => {
                    let l = &mut self.listeners[lid as usize - 1];
                    l.accepted += 1;
                    l.accept_failing = false;
                    if let Err(fd) = self.offer(lid, fd) {
                        self.listeners[lid as usize - 1].pending.push_back(fd);
                        return;
                    }
                }
                Ok(None) => {
                    self.listeners[lid as usize - 1].ready = false;
                    return;
                }
                Err(e) => {
                    let l = &mut self.listeners[lid as usize - 1];
                    l.retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    // Reported once per episode (not every retry); clients wait in the backlog.
                    if !l.accept_failing {
                        l.accept_failing = true;
                        let error = Error::os("accept", format!("accept on {}", l.addr), &e);
                        self.events.push_back(Event::Error {
                            worker: None,
                            error,
                        });
                    }
                    return;
                }
            }
        }
    }

    /// The stall check (round-robin; see [`PrimaryOptions::stall_timeout`]). It peeks at the
    /// head of each watched worker's queue (its end of the channel, which the primary keeps):
    /// empty means it read everything (a stalled one is back); a head that changed means it
    /// reads; the same head for the whole timeout means it stopped reading: stalled. A busy
    /// worker that takes one connection at a time is never stalled. Runs only while some
    /// worker is watched or stalled.
    fn check_stalls(&mut self, now: Instant) {
        self.next_stall_check = None;
        let Some(timeout) = self.opts.stall_timeout else {
            return;
        };
        let mut stalled = Vec::new();
        let mut back = Vec::new();
        let mut watching = false;
        for (&id, slot) in &mut self.workers {
            let w = &mut slot.stall;
            let Some(peer) = slot.peer.as_ref().filter(|_| w.watched || w.stalled) else {
                continue;
            };
            let mut head = [0u8; HEAD_PEEK];
            // An error (not expected on a live socketpair) counts as "read": never a reason
            // to take connections away.
            let Ok(Some(_)) = sys::peek_datagram(peer.as_fd(), &mut head) else {
                w.watched = false;
                w.whole = true;
                w.head = None;
                if std::mem::take(&mut w.stalled) {
                    back.push(id);
                }
                continue;
            };
            watching = true;
            if w.head != Some(head) {
                w.head = Some(head);
                w.since = Some(now);
                if std::mem::take(&mut w.stalled) {
                    back.push(id);
                }
                continue;
            }
            let silent = w
                .since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            if !w.stalled && silent >= timeout {
                stalled.push(id);
            }
        }
        for id in stalled {
            self.stall(id);
        }
        for id in back {
            self.pump_worker_listeners(id);
        }
        if watching {
            self.next_stall_check = Some(now + stall_tick(timeout));
        }
    }

    /// Takes a stalled worker out of the dealing, reads back what is still unread in its
    /// channel (when no message there spans datagrams, see `StallWatch::whole`), deals the
    /// connections to the others and writes the other messages back in their order, ahead of
    /// anything queued after them; then pings it: it rejoins once it reads again.
    ///
    /// The worker has not read for the whole timeout; should it wake up in the very moment of
    /// the read-back, each datagram still goes to exactly one reader (no connection is lost or
    /// doubled), but a message it reads then may overtake one written back.
    fn stall(&mut self, id: WorkerId) {
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        slot.stall.stalled = true;
        let mut taken: Vec<(u32, OwnedFd)> = Vec::new();
        let mut others: Vec<Message> = Vec::new();
        if slot.stall.whole {
            if let Some(peer) = slot
                .peer
                .as_ref()
                .and_then(|p| sys::dup_cloexec(p.as_fd()).ok())
            {
                let mut chan = Channel::new(peer);
                // Bounded: the queue holds at most what the socket buffer held.
                for _ in 0..65_536 {
                    let m = match chan.recv(true) {
                        Ok(Recv::Message(m)) => m,
                        // Out of fds: that one is lost, as it would have been for the worker.
                        Ok(Recv::FdsLost(_)) => continue,
                        _ => break,
                    };
                    match (m.kind, proto::decode_conn(&m.data)) {
                        (Kind::Conn, Ok(lid)) if m.fds.len() == 1 => {
                            taken.push((lid, m.fds.into_iter().next().expect("one fd")))
                        }
                        _ => others.push(m),
                    }
                }
            }
        }
        slot.inflight = slot.inflight.saturating_sub(taken.len() as u32);
        if let Some(chan) = slot.chan.as_mut() {
            for m in others {
                // Room is there: the read-back just emptied the queue. Should it not be, the
                // message goes behind the queue rather than nowhere.
                if let Err(m) = chan.resend_now(m) {
                    let _ = chan.queue(m.kind, m.data, m.fds);
                }
            }
        }
        let mut lids: Vec<u32> = Vec::new();
        // In arrival order, ahead of connections not dealt yet (they came earlier).
        for (lid, fd) in taken.into_iter().rev() {
            if let Some(l) = self.listener_mut(lid).filter(|l| l.fd.is_some()) {
                l.pending.push_front(fd);
                lids.push(lid);
            }
        }
        self.queue_to(id, Kind::Ping, Vec::new(), Vec::new());
        // The head of its queue is now what we left there (the ping at the latest): it is
        // back when that moves, not because we moved it.
        if let Some(slot) = self.workers.get_mut(&id) {
            let mut head = [0u8; HEAD_PEEK];
            slot.stall.head = slot
                .peer
                .as_ref()
                .and_then(|p| sys::peek_datagram(p.as_fd(), &mut head).ok().flatten())
                .map(|_| head);
        }
        lids.sort_unstable();
        lids.dedup();
        for lid in lids {
            self.pump(lid);
        }
    }

    /// Takes a worker out of every listener. When it leaves gracefully (disconnect, goodbye,
    /// unlisten) and was a listener's last worker, the listener closes, as node:cluster's does:
    /// the application is going away, so new clients are refused instead of queued. After a
    /// crash the listener stays open and clients wait in the backlog for the replacement, for
    /// `orphan_listener_grace` at most. Returns the listeners to close once the caller is done
    /// with the worker.
    fn leave_listeners(&mut self, id: WorkerId, graceful: bool) -> Vec<u32> {
        let mut emptied = Vec::new();
        let now = Instant::now();
        for l in &mut self.listeners {
            if l.remove_worker(id) && l.rotation.is_empty() {
                if graceful {
                    emptied.push(l.id);
                } else if l.fd.is_some() {
                    l.orphaned_at = Some(now);
                }
            }
        }
        emptied
    }

    /// Closes a listener: no more accepting; connections not yet handed out are reset; a later
    /// listen on the same address binds anew (a new port where 0 is asked).
    fn close_listener(&mut self, lid: u32) {
        let Some(l) = self.listener_mut(lid) else {
            return;
        };
        let fd = l.fd.take();
        l.pending.clear();
        l.ready = false;
        l.orphaned_at = None;
        let addr = l.addr.clone();
        let adopted = l.adopted;
        if let Some(fd) = fd {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        self.by_addr.retain(|_, v| *v != lid);
        match addr {
            BoundAddr::Unix(p) if !adopted => {
                let _ = std::fs::remove_file(&p);
                self.unix_paths.retain(|x| *x != p);
            }
            _ => {}
        }
    }

    fn ask_disconnect(&mut self, id: WorkerId) {
        for lid in self.leave_listeners(id, true) {
            self.close_listener(lid);
        }
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        slot.disconnect_asked = true;
        if slot.chan.is_none() || slot.state == WorkerState::Disconnecting {
            return;
        }
        slot.state = WorkerState::Disconnecting;
        self.queue_to(id, Kind::Disconnect, Vec::new(), Vec::new());
    }

    /// Closes the primary's end of a worker's channel. With `recover`, the worker will never
    /// read again (it said goodbye), so connections still queued to it are taken back.
    fn close_channel(&mut self, id: WorkerId, recover: bool) {
        let emptied = self.leave_listeners(id, recover);
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(chan) = slot.chan.take() else { return };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&chan.raw_fd()));
        drop(chan);
        slot.state = WorkerState::Disconnected;
        slot.write_blocked = false;
        self.hot_channels.retain(|&w| w != id);
        if recover {
            self.recover(id);
        }
        for lid in emptied {
            self.close_listener(lid);
        }
        self.events.push_back(Event::Disconnect { worker: id });
    }

    /// Reads back connections that were sent to a worker that will never take them, and hands
    /// them to others.
    fn recover(&mut self, id: WorkerId) {
        let Some(peer) = self.workers.get_mut(&id).and_then(|s| s.peer.take()) else {
            return;
        };
        let mut chan = Channel::new(peer);
        let mut lids = Vec::new();
        // Bounded: the queue holds at most what the socket buffer held.
        for _ in 0..65_536 {
            match chan.recv(true) {
                Ok(Recv::Message(m)) if m.kind == Kind::Conn => {
                    let Ok(lid) = proto::decode_conn(&m.data) else {
                        continue;
                    };
                    if let (Some(l), Some(fd)) = (self.listener_mut(lid), m.fds.into_iter().next())
                    {
                        // A closed listener has nobody to give it to: the client sees a reset.
                        if l.fd.is_some() {
                            l.pending.push_front(fd);
                        }
                        lids.push(lid);
                    }
                }
                Ok(Recv::Message(_)) | Ok(Recv::FdsLost(_)) | Err(_) => {}
                Ok(Recv::WouldBlock) | Ok(Recv::Eof) => break,
            }
        }
        if let Some(s) = self.workers.get_mut(&id) {
            s.inflight = 0;
        }
        lids.sort_unstable();
        lids.dedup();
        for lid in lids {
            self.pump(lid);
        }
    }

    fn on_exit(&mut self, id: WorkerId) {
        let Some(slot) = self.workers.get(&id) else {
            return;
        };
        let pid = slot.pid;
        let status = match sys::reap(pid) {
            Ok(Some(st)) => st,
            Ok(None) => return, // spurious wake-up
            Err(e) => {
                // ECHILD: someone else reaped it (a process-wide SIGCHLD handler); report it.
                let error = Error::os("waitpid", format!("reap worker {id} (pid {pid})"), &e);
                self.events.push_back(Event::Error {
                    worker: Some(id),
                    error,
                });
                ExitStatus {
                    code: None,
                    signal: None,
                }
            }
        };
        // What the worker sent before it exited comes first (its exit may be seen before
        // its last messages are read; nothing more can arrive now).
        while self.read_channel_up_to(id, READ_BATCH) {}
        self.close_channel(id, false);
        self.recover(id);
        let slot = self.workers.remove(&id).expect("present above");
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&slot.pidfd.as_raw_fd()));
        self.events.push_back(Event::Exit {
            worker: id,
            pid,
            status,
            exited_after_disconnect: slot.disconnect_asked,
        });
        self.check_shutdown_done();
    }

    fn begin_shutdown(&mut self, timeout: Duration) {
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + crate::limits::MAX_DURATION);
        if let Some(s) = self.shutdown.as_mut() {
            s.deadline = s.deadline.min(deadline);
            return;
        }
        self.shutdown = Some(Shutdown {
            deadline,
            killed: false,
            reported: false,
        });
        for l in &mut self.listeners {
            if let Some(fd) = l.fd.take() {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            // Not yet handed out: the clients see a reset, as with any closing server.
            l.pending.clear();
        }
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            self.ask_disconnect(id);
        }
        self.check_shutdown_done();
    }

    fn kill_all(&mut self) {
        if let Some(s) = self.shutdown.as_mut() {
            s.killed = true;
        }
        for slot in self.workers.values() {
            let _ = sys::kill(slot.pid, libc::SIGKILL);
        }
    }

    fn check_deadline(&mut self) {
        if let Some(s) = &self.shutdown {
            if !s.killed && Instant::now() >= s.deadline && !self.workers.is_empty() {
                self.kill_all();
            }
        }
    }

    fn check_shutdown_done(&mut self) {
        if let Some(s) = self.shutdown.as_mut() {
            if self.workers.is_empty() && !s.reported {
                s.reported = true;
                self.events
                    .push_back(Event::ShutdownComplete { clean: !s.killed });
            }
        }
    }
}

/// Rejects stdio setups `sys::spawn` cannot give a worker, naming the entry or the limit.
fn check_stdio(spec: &SpawnSpec) -> Result<()> {
    if let Some(i) = (0..3).find(|&i| spec.stdio_at(i) == sys::StdioSpec::Closed) {
        return Err(Error::invalid(format!(
            "stdio[{i}]: Closed is for fds 3 and up (use Null for stdin, stdout or stderr)"
        )));
    }
    let channels = spec
        .stdio
        .iter()
        .filter(|s| **s == sys::StdioSpec::Channel)
        .count();
    if channels > 1 {
        return Err(Error::invalid(format!(
            "stdio: {channels} Channel entries (a worker has one channel: at most one)"
        )));
    }
    // Checked before the worker's channels are created: one could take that number.
    if let Some(fd) = spec.stdio.iter().find_map(|s| match *s {
        sys::StdioSpec::Fd(fd) if !sys::fd_is_open(fd) => Some(fd),
        _ => None,
    }) {
        return Err(Error::from_errno(
            "spawn",
            format!("stdio: the primary's fd {fd}"),
            libc::EBADF,
        ));
    }
    // The worker's fds are numbered by entry, its two channels right above them; the
    // primary's copies of them go above those.
    let top = spec.stdio_len() as u64 + 2;
    let limit = sys::fd_limit();
    if top * 2 >= limit {
        return Err(Error::invalid(format!(
            "stdio: {} entries need fds up to {} in the worker and as many copies in the \
             primary: over RLIMIT_NOFILE ({limit})",
            spec.stdio.len(),
            top
        )));
    }
    Ok(())
}
