//! The dealer: accepts on a listener, offers each connection to a worker with room in its
//! window (the next of its rotation under `rr`, the client's slot under `sticky`, the least
//! loaded under `least`), queues it when nobody has room (and stops accepting), backs off from
//! workers that refuse, detects workers that stopped reading their channel (stalls), and reads
//! back connections a worker never took so another gets them. `policy::*` hold only the
//! choice (a cursor, a slot table, the counts); the dealing is here. Connections whose PROXY
//! header or sticky key must be read first wait in `peek.rs` before they get here.

use super::dispatch::{token, Inner, TAG_QUIET};
use super::lifecycle::WorkerRecord;
use super::listen::ListenerSlot;
use super::options::BALANCING_STALL_TIMEOUT;
use crate::error::Error;
use crate::event::{Event, WorkerId};
use crate::ipc::proto;
use crate::ipc::{frame, Channel, Kind, Message, Recv};
use crate::policy::Policy;
use crate::sys;
use mio::unix::SourceFd;
use mio::Interest;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// An accepted connection on its way to a worker, with what routes it.
#[derive(Debug)]
pub(super) struct Dealt {
    pub(super) fd: OwnedFd,
    /// `sticky`: the client's key, when read from its request (else its address is the key).
    pub(super) key: Option<u64>,
    /// The client's address named by a PROXY header (the worker gets it with the fd).
    pub(super) peer: Option<SocketAddr>,
}

impl Dealt {
    /// A connection just accepted: routed by its own address.
    pub(super) fn new(fd: OwnedFd) -> Dealt {
        Dealt {
            fd,
            key: None,
            peer: None,
        }
    }

    /// A connection read back from a worker (or refused by one), with the client address its
    /// delivery carried and its sticky key ([`Inner::key_again`]).
    pub(super) fn again(fd: OwnedFd, peer: Option<SocketAddr>, key: Option<u64>) -> Dealt {
        Dealt { fd, key, peer }
    }
}

/// Connections accepted per listener per dispatch before others get a turn.
pub(super) const ACCEPT_BATCH: usize = 256;

/// After EMFILE/ENFILE and other accept errors, wait this long before accepting again (the
/// connections wait in the kernel backlog meanwhile).
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A worker that refused a connection ([`Worker::refuse`](crate::Worker::refuse)) is dealt none of that listener's
/// connections for this long, doubling while it keeps refusing, up to
/// [`REFUSAL_RETRY_MAX`], or until it says it has room again ([`Worker::room`](crate::Worker::room)).
/// node:cluster offers the connection back to it at once, and so bounces it between full
/// workers as fast as its IPC goes; the retry delay costs the primary a few wake-ups a second,
/// and a waiting client at most 50 ms once room appears in a worker that does not say so.
pub(super) const REFUSAL_RETRY_MIN: Duration = Duration::from_millis(1);

/// Longest delay before a refusing worker is offered connections again.
pub(super) const REFUSAL_RETRY_MAX: Duration = Duration::from_millis(50);

/// Bytes of a queued datagram the stall check compares: the frame header and a `Conn`
/// payload (listener and number).
pub(super) const HEAD_PEEK: usize = frame::HEADER_LEN + 8;

/// How much of a stalled worker's queue the primary reads back ([`Inner::stall`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadBack {
    /// Every datagram: nothing there is a message whose order could change, or nobody else
    /// reads the queue meanwhile (the worker is stopped), or what it holds is not known.
    All,
    /// At most this many from the head: the connections (and pings) ahead of the first
    /// message, which stays where it is with everything behind it.
    Leading(usize),
}

/// A datagram the read-back may take without changing the order of messages: a connection,
/// which goes to another worker, or a ping, which is written back and means nothing but "read
/// me". `head` starts with a frame header.
fn not_a_message(head: &[u8]) -> bool {
    matches!(
        frame::decode(head).map(|h| h.kind),
        Ok(Kind::Conn | Kind::Ping)
    )
}

/// What a stalled worker's queue (`peer`, the worker's end of its channel) may give back: see
/// [`ReadBack`]. A worker stopped by a signal reads nothing until it is continued.
fn read_back_plan(peer: BorrowedFd<'_>, pid: i32) -> ReadBack {
    let Ok(heads) = sys::queued_heads::<{ frame::HEADER_LEN }>(peer, 65_536) else {
        return ReadBack::All;
    };
    match heads.iter().position(|h| !not_a_message(h)) {
        None => ReadBack::All,
        Some(_) if sys::is_stopped(pid) => ReadBack::All,
        Some(first) => ReadBack::Leading(first),
    }
}

/// How often the stall check looks while it watches: a quarter of the timeout, at least 5 ms.
pub(super) fn stall_tick(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_millis(5))
}

/// What the stall check knows of one worker's channel (see `Inner::check_stalls`).
#[derive(Debug, Default)]
pub(super) struct StallWatch {
    /// Connections were handed to it since its queue was last seen empty.
    pub(super) watched: bool,
    /// The start of the datagram last seen at the head of its queue (a `Conn` carries its
    /// number, so a new head is a different value), and since when it has been there.
    pub(super) head: Option<[u8; HEAD_PEEK]>,
    pub(super) since: Option<Instant>,
    /// Every message written to it since its queue was last seen empty fits one datagram, so
    /// everything unread in its queue can be read back without cutting a message in two.
    pub(super) whole: bool,
    pub(super) stalled: bool,
    /// Its CPU times (`None`: not known on this system) and when they were read, from half
    /// the timeout of silence on: see [`starved`].
    pub(super) cpu: Option<(Instant, Option<sys::SchedTimes>)>,
    /// The same, for a kernel slot of its that holds connections it does not take
    /// (`Inner::check_kernel_stalls`).
    pub(super) kernel_cpu: Option<(Instant, Option<sys::SchedTimes>)>,
}

/// Whether a worker (`pid`) that read nothing over `span` (CPU times `before` at its start,
/// `after` at its end) was *starved* of CPU rather than stalled: it ran less than half the
/// span and waited on a run queue longer than it ran, a quarter of the span at least; or it
/// did not run at all and is runnable (the kernel adds a wait to `schedstat` when it ends, so
/// one that lasted the whole span reads 0 ran, 0 waited). It is not busy with something else
/// and will read as soon as it runs: the CPUs it may run on are short (more runnable processes
/// than CPUs, the server's processes pinned to fewer CPUs than there are of them, a throttled
/// cgroup), and taking its connections back gives them to workers that wait for the same
/// CPUs, at the price of a read-back each. Node server pinned to one CPU with 2 busy loops
/// (A/B, 3 runs each): 270 / 1,187 / 1,097 connections taken back without this, 18 / 60 / 2
/// with it; 741 / 487 / 549 against 659 / 529 / 730 req/s. A worker blocked in a synchronous
/// call, one busy running something else (half the span or more), or a stopped one waits on
/// no run queue: stalled. (A worker deprived by a process of higher priority while the others
/// have CPU is starved too, and keeps its connections until it runs: the price of not reading
/// every worker's times.)
fn starved(pid: i32, span: Duration, before: sys::SchedTimes, after: sys::SchedTimes) -> bool {
    let span = span.as_nanos() as u64;
    let ran = after.run_ns.saturating_sub(before.run_ns);
    let waited = after.wait_ns.saturating_sub(before.wait_ns);
    ran < span / 2 && ((waited > ran && waited >= span / 4) || (ran == 0 && sys::is_runnable(pid)))
}

/// The stall check's verdict on a worker (`pid`) silent for `silent` (its channel's head did
/// not move, or its kernel slot took nothing), from its CPU times `cpu`: noted from half the
/// timeout on, then at the timeout, over at least half a tick (a primary that ran late itself
/// noted them only now: it waits one more tick for a span to judge), stalled unless only
/// [`starved`] (then judged again over the next span). Where the times are not known, silent
/// for the timeout is stalled. A few reads of /proc per suspect, none for a worker that reads.
fn cpu_says_stalled(
    cpu: &mut Option<(Instant, Option<sys::SchedTimes>)>,
    pid: i32,
    now: Instant,
    silent: Duration,
    timeout: Duration,
) -> bool {
    let Some((then, Some(before))) = *cpu else {
        if cpu.is_none() {
            *cpu = Some((now, sys::sched_times(pid)));
        }
        return silent >= timeout && cpu.is_some_and(|(_, c)| c.is_none());
    };
    let span = now.saturating_duration_since(then);
    if silent < timeout || span < stall_tick(timeout) / 2 {
        return false;
    }
    match sys::sched_times(pid) {
        Some(after) if starved(pid, span, before, after) => {
            *cpu = Some((now, Some(after)));
            false
        }
        _ => true,
    }
}

impl WorkerRecord {
    pub(super) fn can_take(&self, window: u32) -> bool {
        self.inflight < window
            && !self.stall.stalled
            && !self.write_blocked
            && self.chan.as_ref().is_some_and(|c| !c.has_queued())
    }
}

/// A worker's last refusal of a listener's connections ([`REFUSAL_RETRY_MIN`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Refusal {
    pub(super) until: Instant,
    pub(super) backoff: Duration,
    /// The listener is pumped when `until` passes (cleared once it was).
    pub(super) armed: bool,
}

impl ListenerSlot {
    /// `worker` refused one of this listener's connections recently: skip it until it may
    /// have room again.
    pub(super) fn refused_by(&self, worker: WorkerId, now: Instant) -> bool {
        self.refusals.get(&worker).is_some_and(|r| r.until > now)
    }

    /// When a worker that refused becomes eligible again, if connections wait for one.
    pub(super) fn next_refusal_retry(&self) -> Option<Instant> {
        if self.fd.is_none() || (self.pending.is_empty() && !self.ready) {
            return None;
        }
        self.refusals
            .values()
            .filter(|r| r.armed)
            .map(|r| r.until)
            .min()
    }

    /// Takes a worker out of the rotation (its kernel slot, the sticky slots and the least
    /// counts) and forgets its refusals.
    pub(super) fn remove_worker(&mut self, worker: WorkerId) -> bool {
        self.refusals.remove(&worker);
        if let Some(k) = self.kernel.as_mut() {
            k.leave(worker);
        }
        self.sticky.vacate(worker);
        self.least.remove(worker);
        self.rotation.remove(worker)
    }
}

impl Inner {
    pub(super) fn pump_worker_listeners(&mut self, id: WorkerId) {
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

    /// Offers a connection to the listener's workers as the policy orders them (`rr`: in turn;
    /// `sticky`: the client's slot first, then its next choices; `least`: the least loaded).
    /// Gives the connection back when nobody can take it now. Workers whose channel broke are
    /// closed afterwards.
    pub(super) fn offer(&mut self, lid: u32, conn: Dealt) -> std::result::Result<(), Dealt> {
        let window = self.opts.window;
        let stall_on = self.stall_timeout().is_some();
        // How this listener deals: `kernel-least` where it fell back deals least-loaded;
        // what lands on a kernel group's anchor (every worker at its window, or none in a
        // slot) goes in turn.
        let grouped = self.listeners[lid as usize - 1].kernel.is_some();
        let policy = match self.opts.policy {
            Policy::KernelLeast if !grouped => Policy::Least(crate::policy::least::Pick::Least),
            Policy::KernelLeast | Policy::KernelRr => Policy::RoundRobin,
            p => p,
        };
        let key = match policy {
            Policy::Sticky => conn.key.or_else(|| {
                let ip = conn
                    .peer
                    .or_else(|| sys::peer_addr(conn.fd.as_fd()).ok().flatten())?
                    .ip();
                Some(self.opts.routing.address_key.key(ip))
            }),
            _ => None,
        };
        let Inner {
            listeners, workers, ..
        } = self;
        let l = &mut listeners[lid as usize - 1];
        let mut broken = Vec::new();
        let mut blocked = Vec::new();
        let mut watch = false;
        let now = Instant::now();
        let refusals = &l.refusals;
        // A load-aware kernel group: skip workers at their window, as the program does;
        // when every one is (all busy, or a worker that never reports closes), deal by `rr`'s
        // own rules (channel window, stall recovery) rather than let the client wait forever.
        let kernel = l
            .kernel
            .as_ref()
            .filter(|k| !l.rotation.members().iter().all(|&w| k.at_window(w)));
        let fd = &conn.fd;
        // `least` chooses on the counts among the workers that can take a connection now.
        let able: Vec<WorkerId> = if matches!(policy, Policy::Least(_)) {
            l.rotation
                .members()
                .iter()
                .copied()
                .filter(|w| {
                    workers.get(w).is_some_and(|s| s.can_take(window))
                        && !refusals.get(w).is_some_and(|r| r.until > now)
                })
                .collect()
        } else {
            Vec::new()
        };
        let (payload, payload_len) = proto::conn_payload_with_peer(lid, 0, conn.peer);
        let mut send = |wid: WorkerId| {
            let Some(slot) = workers.get_mut(&wid) else {
                return false;
            };
            if !slot.can_take(window)
                || refusals.get(&wid).is_some_and(|r| r.until > now)
                || kernel.is_some_and(|k| k.at_window(wid))
            {
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
            let mut payload = payload;
            payload[4..8].copy_from_slice(&(slot.handed_off as u32).to_le_bytes());
            match chan.try_send_single(Kind::Conn, &payload[..payload_len], &[fd.as_fd()]) {
                Ok(true) => {
                    slot.inflight += 1;
                    slot.handed_off += 1;
                    if !slot.stall.watched {
                        slot.stall.watched = true;
                        watch = true;
                    }
                    // The socket took only the start of the record (portable backend's stream):
                    // its end waits in the queue for the socket to be writable.
                    if chan.has_queued() {
                        blocked.push(wid);
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
        };
        let taken = match (policy, key) {
            // Best slot first: a worker without room sends the client to its next choice,
            // the same one every time.
            (Policy::Sticky, Some(key)) => l.sticky.pick(key, &mut send),
            (Policy::Least(_), _) => {
                // The choice is made on the counts alone, then sent; a worker whose send fails
                // now is left out and the next least loaded is chosen (at most once each).
                let mut tried: Vec<WorkerId> = Vec::new();
                loop {
                    let can = |w: WorkerId| able.contains(&w) && !tried.contains(&w);
                    let Some(w) = l.least.offer(can) else {
                        break None;
                    };
                    if send(w) {
                        break Some(w);
                    }
                    l.least.closed(w);
                    tried.push(w);
                }
            }
            _ => l.rotation.offer(&mut send),
        };
        if let (Some(w), Some(k)) = (taken, l.kernel.as_ref()) {
            // The worker releases it as one the program chose: kernel-rr's window when it
            // reads it off the channel (it stays counted while queued there, so a stopped
            // worker's two queues share one window), kernel-least when it closes.
            k.count_dealt(w);
        }
        for wid in blocked {
            self.arm_writable(wid);
        }
        if watch && self.next_stall_check.is_none() {
            if let Some(t) = self.stall_timeout() {
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
            None => Err(conn),
        }
    }

    pub(super) fn any_capacity(&self, lid: u32) -> bool {
        let l = &self.listeners[lid as usize - 1];
        let now = Instant::now();
        let kernel = l
            .kernel
            .as_ref()
            .filter(|k| !l.rotation.members().iter().all(|&w| k.at_window(w)));
        l.rotation.members().iter().any(|&w| {
            !l.refused_by(w, now)
                && !kernel.is_some_and(|k| k.at_window(w))
                && self
                    .workers
                    .get(&w)
                    .is_some_and(|s| s.can_take(self.opts.window))
        })
    }

    /// A worker handed a connection back ([`Worker::refuse`](crate::Worker::refuse)): it goes behind the listener's
    /// waiting connections (as node:cluster's `distribute` appends it) and on to the next
    /// worker with room, and the refusing worker is skipped for a while. A listener that
    /// closed meanwhile has nobody to give it to: the fd closes (the client sees a reset).
    pub(super) fn on_refused(&mut self, id: WorkerId, lid: u32, conn: Dealt) {
        if let Some(s) = self.workers.get_mut(&id) {
            s.refused += 1;
        }
        if let Some(l) = self.listener_mut(lid) {
            // It did not keep it open (and will not release it).
            l.least.closed(id);
            if let Some(k) = l.kernel.as_ref() {
                k.uncount_refused(id);
            }
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
        l.pending.push_back(conn);
        self.pump(lid);
    }

    pub(super) fn next_refusal_retry(&self) -> Option<Instant> {
        self.listeners
            .iter()
            .filter_map(ListenerSlot::next_refusal_retry)
            .min()
    }

    /// Pumps the listeners whose refusing workers may take connections again.
    pub(super) fn retry_refused(&mut self, now: Instant) {
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
    pub(super) fn pump(&mut self, lid: u32) {
        if lid == 0
            || lid as usize > self.listeners.len()
            || !self.listeners[lid as usize - 1].round_robin(self.opts.policy)
        {
            return;
        }
        let i = lid as usize - 1;
        let mut budget = ACCEPT_BATCH;
        // Connections known to be queued, asked once per pump.
        let mut queued = sys::AcceptQueue::default();
        loop {
            if let Some(conn) = self.listeners[i].pending.pop_front() {
                if let Err(conn) = self.offer(lid, conn) {
                    self.listeners[i].pending.push_front(conn);
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
            if !self.any_capacity(lid) || !self.may_park() {
                // Backpressure: leave connections in the kernel backlog.
                return;
            }
            let Some(lfd) = self.listeners[i].fd.as_ref() else {
                return;
            };
            if !queued.take_one(lfd.as_fd()) {
                // Drained: every connection that arrived since the kernel was asked raised a
                // new edge (the poller reports it next).
                self.listeners[i].ready = false;
                return;
            }
            budget -= 1;
            let accepted = sys::accept_cloexec(lfd.as_fd(), false);
            match accepted {
                Ok(Some(fd)) => {
                    let l = &mut self.listeners[lid as usize - 1];
                    l.accepted += 1;
                    l.accept_failing = false;
                    let Some(conn) = self.admit(lid, fd) else {
                        continue;
                    };
                    if let Err(conn) = self.offer(lid, conn) {
                        self.listeners[lid as usize - 1].pending.push_back(conn);
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

    /// A connection just accepted on listener `lid`, ready to deal; `None` while its PROXY
    /// header or key is awaited (peek.rs deals it when they come).
    fn admit(&mut self, lid: u32, fd: OwnedFd) -> Option<Dealt> {
        if self.needs_peek() {
            self.park(lid, fd)
        } else {
            Some(Dealt::new(fd))
        }
    }

    /// The stall check's timeout: [`PrimaryOptions::stall_timeout`](super::PrimaryOptions::stall_timeout),
    /// at most [`BALANCING_STALL_TIMEOUT`] under every policy but `sticky`.
    pub(super) fn stall_timeout(&self) -> Option<Duration> {
        match self.opts.policy {
            Policy::Sticky => self.opts.stall_timeout,
            _ => self
                .opts
                .stall_timeout
                .map(|t| t.min(BALANCING_STALL_TIMEOUT)),
        }
    }

    /// The stall check (round-robin; see [`PrimaryOptions::stall_timeout`](super::PrimaryOptions::stall_timeout)). It peeks at the
    /// head of each watched worker's queue (its end of the channel, which the primary keeps):
    /// empty means it read everything (a stalled one is back); a head that changed means it
    /// reads; the same head for the whole timeout means it stopped reading: stalled. A busy
    /// worker that takes one connection at a time is never stalled. Runs only while some
    /// worker is watched or stalled.
    pub(super) fn check_stalls(&mut self, now: Instant) {
        self.next_stall_check = None;
        let Some(timeout) = self.stall_timeout() else {
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
                w.cpu = None;
                if std::mem::take(&mut w.stalled) {
                    back.push(id);
                }
                continue;
            };
            watching = true;
            if w.head != Some(head) {
                w.head = Some(head);
                w.since = Some(now);
                w.cpu = None;
                if std::mem::take(&mut w.stalled) {
                    back.push(id);
                }
                continue;
            }
            let silent = w
                .since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            if w.stalled || silent < timeout / 2 {
                continue;
            }
            if cpu_says_stalled(&mut w.cpu, slot.pid, now, silent, timeout) {
                stalled.push(id);
            }
        }
        for id in stalled {
            self.stall(id);
        }
        for id in back {
            self.unpark_kernel(id);
            self.pump_worker_listeners(id);
        }
        let kernel = self.check_kernel_stalls(now, timeout);
        let next = match (watching, kernel) {
            (true, _) | (_, Some(true)) => {
                self.kernel_tickets = None;
                Some(now + stall_tick(timeout))
            }
            // Kernel groups with no suspect: a stall starts with a connection the program
            // assigns, unseen by the primary, so it looks again within one timeout (a stall
            // is then seen after 25 to 50 ms, and judged a tick or two later), unless the
            // groups are quiet: then the first connection wakes it.
            (false, Some(false)) if self.rest_kernel_stall_check() => None,
            (false, Some(false)) => Some(now + timeout),
            (false, None) => {
                self.kernel_tickets = None;
                None
            }
        };
        self.next_stall_check = next;
    }

    /// The kernel groups of open listeners that keep copies of their members (what the stall
    /// check looks at), with their listener's id.
    fn kept_groups(&self) -> impl Iterator<Item = (u32, &crate::steering::KernelSteering)> {
        self.listeners
            .iter()
            .filter(|l| l.fd.is_some())
            .filter_map(|l| Some((l.id, l.kernel.as_ref().filter(|k| k.keeps_copies())?)))
    }

    /// A quiet spell (at the last look and at this one nothing waited at any worker's slot,
    /// and the programs dealt nothing in between): no stall can start before a connection
    /// comes, so instead of looking again within one timeout the primary registers its copies
    /// of the members' sockets in its poller and sleeps until one has a connection queued
    /// (any other event ends the spell too, `Inner::end_quiet_spell`), then looks within one
    /// timeout again, as a stall clock starts at that connection. An idle cluster costs the
    /// primary no wake-up at all, where the check otherwise woke it 40 times a second. Under
    /// load the tickets move between two looks and nothing changes. Returns whether the spell
    /// began; false leaves the check on its timer (a look or a registration that failed).
    fn rest_kernel_stall_check(&mut self) -> bool {
        if !self.quiet_watch.is_empty() {
            // Resting already (a check armed by a call, not an event): registering again
            // would drop registered dups, whose registrations nothing could remove then.
            return true;
        }
        let mut quiet = true;
        let mut tickets = 0u64;
        for (_, k) in self.kept_groups() {
            match k.quiet() {
                Some((q, t)) => {
                    quiet &= q;
                    tickets = tickets.wrapping_add(t);
                }
                None => quiet = false,
            }
        }
        let unchanged = self.kernel_tickets == Some(tickets);
        self.kernel_tickets = Some(tickets);
        if !quiet || !unchanged {
            return false;
        }
        let mut watch = Vec::new();
        for (_, k) in self.kept_groups() {
            match k.watch_copies() {
                Ok(fds) => watch.extend(fds),
                Err(_) => return false, // EMFILE: the timer it is
            }
        }
        for (i, fd) in watch.iter().enumerate() {
            let registered = self.registry.register(
                &mut SourceFd(&fd.as_raw_fd()),
                token(TAG_QUIET, i as u64),
                Interest::READABLE,
            );
            if registered.is_err() {
                for fd in &watch[..i] {
                    let _ = self.registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
                }
                return false;
            }
        }
        self.quiet_watch = watch;
        true
    }

    /// Ends a quiet spell: the copies leave the poller, and the stall check looks again
    /// within one timeout.
    pub(super) fn end_quiet_spell(&mut self) {
        if self.quiet_watch.is_empty() {
            return;
        }
        for fd in std::mem::take(&mut self.quiet_watch) {
            // Deregistered before the dup closes: the registration is of this description,
            // which another process (the worker) keeps open.
            let _ = self.registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        self.kernel_tickets = None;
        if let Some(t) = self.stall_timeout() {
            let at = Instant::now() + t;
            if self.next_stall_check.map_or(true, |n| n > at) {
                self.next_stall_check = Some(at);
            }
        }
    }

    /// The stall check of the kernel groups that keep copies of their members
    /// ([`crate::steering::KernelSteering::keep_copies`]): a worker whose slot holds
    /// connections it took none of for the timeout (what the program's own stall check
    /// reads) is parked out of the group, what its socket has queued is accepted from the
    /// primary's copy and dealt to the others as `rr` deals, and it is stalled on its channel
    /// too ([`Inner::stall`]: what the primary dealt it there comes back, and a ping): it
    /// rejoins when it reads again. A worker only starved of CPU is left alone, as on its
    /// channel ([`starved`]). Parked workers' copies are drained again on every tick (a SYN
    /// the program assigned just before the park completes a moment later). `None` without
    /// such a group; else whether a worker is parked or suspect (connections waiting at it
    /// and none taken for half the timeout): the check then looks every tick, else once per
    /// timeout, so a healthy cluster under load costs the primary 40 wake-ups a second and no
    /// more (at every tick it cost 0.006 cores at 8k conn/s, where the target is 0.005), and
    /// a quiet one none ([`Inner::rest_kernel_stall_check`]).
    fn check_kernel_stalls(&mut self, now: Instant, timeout: Duration) -> Option<bool> {
        let mut kept = false;
        let mut watch = false;
        let mut parked: Vec<(u32, WorkerId)> = Vec::new();
        let mut suspects: Vec<(u32, WorkerId, Duration)> = Vec::new();
        for (lid, k) in self.kept_groups() {
            kept = true;
            parked.extend(k.parked_workers().into_iter().map(|w| (lid, w)));
            suspects.extend(
                k.stalled(timeout / 2)
                    .into_iter()
                    .map(|(w, idle)| (lid, w, idle)),
            );
        }
        if !kept {
            return None;
        }
        // Looked at every tick while a worker is parked or suspect; otherwise once per timeout
        // (a slot whose clock starts now is suspect within the next one).
        watch |= !parked.is_empty() || !suspects.is_empty();
        for (lid, w) in parked {
            // Back by any path (an ack clears the channel stall too): its slot returns.
            if self.workers.get(&w).is_some_and(|s| !s.stall.stalled) {
                if let Some(k) = self.listeners[lid as usize - 1].kernel.as_mut() {
                    let _ = k.unpark(w);
                }
            } else {
                self.drain_parked(lid, w);
            }
        }
        // As on the channel: CPU times from half the timeout on, judged at the timeout.
        for (id, slot) in &mut self.workers {
            if !suspects.iter().any(|s| s.1 == *id) {
                slot.stall.kernel_cpu = None;
            }
        }
        let mut judged: Vec<(WorkerId, bool)> = Vec::new();
        let mut stalled: Vec<(u32, WorkerId)> = Vec::new();
        for (lid, id, idle) in suspects {
            let verdict = match judged.iter().find(|j| j.0 == id) {
                Some(&(_, v)) => v,
                None => {
                    let Some(slot) = self.workers.get_mut(&id) else {
                        continue;
                    };
                    let v =
                        cpu_says_stalled(&mut slot.stall.kernel_cpu, slot.pid, now, idle, timeout);
                    judged.push((id, v));
                    v
                }
            };
            if verdict && idle >= timeout {
                stalled.push((lid, id));
            }
        }
        for (lid, id) in stalled {
            let parked = self.listeners[lid as usize - 1]
                .kernel
                .as_mut()
                .is_some_and(|k| k.park(id));
            if !parked {
                continue;
            }
            watch = true;
            if let Some(slot) = self.workers.get_mut(&id) {
                slot.stall.kernel_cpu = None;
                if !slot.stall.stalled {
                    self.stall(id);
                }
            }
            self.drain_parked(lid, id);
        }
        Some(watch)
    }

    /// Accepts what worker `id`'s parked socket of listener `lid` has queued and deals it
    /// (behind connections already waiting for a worker).
    fn drain_parked(&mut self, lid: u32, id: WorkerId) {
        let mut n = 0u64;
        // Bounded: the queue holds at most the backlog.
        for _ in 0..65_536 {
            let Some(k) = self.listeners[lid as usize - 1].kernel.as_ref() else {
                break;
            };
            let Some(copy) = k.parked_copy(id) else {
                break;
            };
            // An error (EMFILE) leaves the rest queued: they are taken on the next tick,
            // or by the worker.
            let Ok(Some(fd)) = sys::accept_cloexec(copy, false) else {
                break;
            };
            // Dealt to the worker, taken back: counted beneath its parked mark until now.
            k.uncount(id);
            n += 1;
            if let Some(conn) = self.admit(lid, fd) {
                self.listeners[lid as usize - 1].pending.push_back(conn);
            }
        }
        if n > 0 {
            if let Some(slot) = self.workers.get_mut(&id) {
                slot.taken_back += n;
            }
            self.pump(lid);
        }
    }

    /// Worker `id` reads again: its parked kernel slots take it back.
    pub(super) fn unpark_kernel(&mut self, id: WorkerId) {
        for l in &mut self.listeners {
            if let Some(k) = l.kernel.as_mut() {
                // Fails only for a socket the kernel no longer takes in the map (closed):
                // it stays out, as a closed one would be.
                let _ = k.unpark(id);
            }
        }
    }

    /// Arms the stall check for a kernel group that keeps copies (from its first member on,
    /// the check looks at least once per timeout).
    pub(super) fn watch_kernel_stalls(&mut self) {
        if let Some(t) = self.stall_timeout() {
            let at = Instant::now() + t;
            if self.next_stall_check.map_or(true, |n| n > at) {
                self.next_stall_check = Some(at);
            }
        }
    }

    /// Takes a stalled worker out of the dealing, reads back what is still unread in its
    /// channel (when no message there spans datagrams, see `StallWatch::whole`), deals the
    /// connections to the others and writes the other messages back in their order, ahead of
    /// anything queued after them; then pings it: it rejoins once it reads again.
    ///
    /// The worker has not read for the whole timeout, but its loop may be only blocked, and
    /// wake up in the very moment of the read-back. Each datagram still goes to exactly one
    /// reader (no connection is lost or doubled), and the order of messages must hold too: a
    /// message read back and written back behind one the worker took meanwhile would be
    /// overtaken. So the queue is looked at first ([`read_back_plan`]): only connections
    /// (and pings), or a stopped worker: all of it; else only the connections ahead of the
    /// first message, and messages are never read back. On the portable backend (no
    /// `SO_PEEK_OFF`) the queue is read back whole.
    pub(super) fn stall(&mut self, id: WorkerId) {
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        slot.stall.stalled = true;
        let mut taken: Vec<(u32, Dealt)> = Vec::new();
        let mut others: Vec<Message> = Vec::new();
        if slot.stall.whole {
            if let Some((peer, own)) = slot
                .peer
                .as_ref()
                .and_then(|p| Some((p, sys::dup_cloexec(p.as_fd()).ok()?)))
            {
                let plan = read_back_plan(peer.as_fd(), slot.pid);
                let mut chan = Channel::new(own);
                // Bounded: the queue holds at most what the socket buffer held.
                for i in 0..65_536 {
                    if let ReadBack::Leading(n) = plan {
                        // Only what the walk saw ahead of the first message, and each only if
                        // it is still at the head: a worker awake now may have taken it, and
                        // the next datagram could be the message.
                        let mut head = [0u8; HEAD_PEEK];
                        let still = matches!(
                            sys::peek_datagram(peer.as_fd(), &mut head),
                            Ok(Some(_)) if not_a_message(&head)
                        );
                        if i >= n || !still {
                            break;
                        }
                    }
                    let m = match chan.recv(true) {
                        Ok(Recv::Message(m)) => m,
                        // Out of fds: that one is lost, as it would have been for the worker.
                        Ok(Recv::FdsLost(_)) => continue,
                        _ => break,
                    };
                    match (m.kind, proto::decode_conn_peer(&m.data)) {
                        (Kind::Conn, Ok((lid, peer))) if m.fds.len() == 1 => taken.push((
                            lid,
                            // Its key is looked for again below (`slot` is borrowed here).
                            Dealt::again(m.fds.into_iter().next().expect("one fd"), peer, None),
                        )),
                        _ => others.push(m),
                    }
                }
            }
        }
        slot.inflight = slot.inflight.saturating_sub(taken.len() as u32);
        slot.taken_back += taken.len() as u64;
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
        for (lid, mut conn) in taken.into_iter().rev() {
            conn.key = self.key_again(conn.fd.as_fd());
            if let Some(l) = self.listener_mut(lid).filter(|l| l.fd.is_some()) {
                l.least.closed(id);
                if let Some(k) = l.kernel.as_ref() {
                    // Taken back before the worker read it: it will never release it.
                    k.uncount(id);
                }
                l.pending.push_front(conn);
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
}
