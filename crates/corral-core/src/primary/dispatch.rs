//! The event loop: the [`Inner`] state behind a `Primary`, the poll tokens that say what became
//! ready (listener, channel, pidfd, signal pipe or waker), and `Inner::dispatch`, which waits
//! on the poller, hands each readiness to its handler, runs due timers (refusal retries,
//! stall checks, orphan grace, the shutdown deadline) and bounds the time to the next one.

use super::io_err;
use super::lifecycle::{Shutdown, WorkerRecord};
use super::listen::{ListenKey, ListenerSlot, Lookup, LookupResult};
use super::options::PrimaryOptions;
use crate::error::{Error, Result};
use crate::event::{Event, WorkerId};
use crate::sys::SignalPipe;
use mio::{Poll, Token};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub(super) const TAG_LISTENER: usize = 0;
pub(super) const TAG_CHANNEL: usize = 1;
pub(super) const TAG_PIDFD: usize = 2;
/// Id 0: the signal pipe; id 1: the waker.
pub(super) const TAG_SIGNAL: usize = 3;
pub(super) const WAKER_ID: u64 = 1;
/// A connection parked for its PROXY header or sticky key (`peek.rs`).
pub(super) const TAG_PEEK: usize = 4;
/// A member socket of a kernel group watched while the cluster is quiet (`dealer.rs`,
/// `Inner::rest_kernel_stall_check`): any event ends the quiet spell.
pub(super) const TAG_QUIET: usize = 5;
const TAG_BITS: usize = 3;

pub(super) fn token(tag: usize, id: u64) -> Token {
    Token(((id as usize) << TAG_BITS) | tag)
}

/// The primary's poller (epoll, kqueue) and its event buffer. The primary waits on it itself
/// in [`super::Primary::dispatch`]; a caller that must not hold the primary while it waits
/// (the Node front's engine thread: JS calls take the primary meanwhile) takes it out with
/// [`super::Primary::take_poller`], waits with [`Poller::wait`] and hands what it saw to
/// [`super::Primary::dispatch_ready`]: one system call per wake-up, where polling the
/// primary's fd and then dispatching took two.
pub struct Poller {
    poll: Poll,
    pub(super) events: mio::Events,
}

impl Poller {
    /// Waits at most `timeout` (`None`: until something is ready) for readiness. A signal
    /// that interrupts the wait is no error: it returns with nothing ready.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                self.events.clear();
                Ok(())
            }
            Err(e) => Err(Error::os("epoll_wait", "poll", &e)),
        }
    }
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("fd", &self.poll.as_raw_fd())
            .finish()
    }
}

pub(super) fn new_poller() -> Result<(Poller, mio::Registry, RawFd)> {
    let poll = Poll::new().map_err(io_err("epoll_create", "create poller"))?;
    let registry = poll
        .registry()
        .try_clone()
        .map_err(io_err("fcntl", "clone the poller's registry"))?;
    let fd = poll.as_raw_fd();
    let events = mio::Events::with_capacity(256);
    Ok((Poller { poll, events }, registry, fd))
}

pub(super) struct Inner {
    pub(super) opts: PrimaryOptions,
    /// Registers fds with the poller, wherever the poller is (here or taken out).
    pub(super) registry: mio::Registry,
    /// The poller while the primary waits on it itself; `None` once taken.
    pub(super) poller: Option<Poller>,
    /// The poller's fd (`Primary::poll_fd`), also once taken.
    pub(super) poll_fd: RawFd,
    pub(super) workers: BTreeMap<WorkerId, WorkerRecord>,
    pub(super) next_id: WorkerId,
    pub(super) listeners: Vec<ListenerSlot>,
    pub(super) by_addr: HashMap<ListenKey, u32>,
    pub(super) lookups: HashMap<ListenKey, Lookup>,
    /// Lookups waiting for a thread (at most `MAX_LOOKUP_THREADS` run at once).
    pub(super) lookup_line: VecDeque<ListenKey>,
    pub(super) lookup_tx: std::sync::mpsc::Sender<LookupResult>,
    pub(super) lookup_rx: std::sync::mpsc::Receiver<LookupResult>,
    /// A worker was forked: names are then resolved on the loop, as a lookup thread would make
    /// `fork_worker` fail while it runs.
    pub(super) forks: bool,
    pub(super) events: VecDeque<Event>,
    pub(super) signals: Option<SignalPipe>,
    pub(super) shutdown: Option<Shutdown>,
    /// Channels and listeners with work left over from the last dispatch (batch limits).
    pub(super) hot_channels: Vec<WorkerId>,
    pub(super) hot_listeners: Vec<u32>,
    pub(super) unix_paths: Vec<PathBuf>,
    pub(super) owner_pid: u32,
    pub(super) waker: Option<std::sync::Arc<mio::Waker>>,
    /// When the stall check runs next (only while some worker is watched or stalled).
    pub(super) next_stall_check: Option<Instant>,
    /// The kernel groups' quiet spell (`dealer.rs`): the member sockets registered in the
    /// poller instead of a timer (empty: not quiet), and the tickets at the last look.
    pub(super) quiet_watch: Vec<std::os::fd::OwnedFd>,
    pub(super) kernel_tickets: Option<u64>,
    /// Addresses whose `kernel-rr` fallback was reported (once each).
    pub(super) steering_reported: std::collections::HashSet<super::listen::ListenKey>,
    /// [`super::Primary::set_stop_delay`].
    pub(super) stop_delay: Duration,
    /// Connections waiting for their PROXY header or sticky key, by park order (`peek.rs`).
    pub(super) parked: BTreeMap<u64, super::peek::Parked>,
    pub(super) next_parked: u64,
    pub(super) routing: super::peek::RoutingStats,
}

impl Inner {
    pub(super) fn waker(&mut self) -> Result<std::sync::Arc<mio::Waker>> {
        if self.waker.is_none() {
            let w = mio::Waker::new(&self.registry, token(TAG_SIGNAL, WAKER_ID))
                .map_err(io_err("eventfd", "create waker"))?;
            self.waker = Some(std::sync::Arc::new(w));
        }
        Ok(self.waker.clone().expect("just set"))
    }

    /// The nearest timer: the shutdown deadline, a listener's accept retry, the stall
    /// check, an orphan listener's grace, a refusal retry, a due SIGTERM, a parked
    /// connection's deadline.
    fn next_deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut cap = |r: Instant| t = Some(t.map_or(r, |x| x.min(r)));
        if let Some(s) = self.shutdown.as_ref().filter(|s| !s.killed) {
            cap(s.deadline);
        }
        for l in &self.listeners {
            if let Some(r) = l.retry_at {
                cap(r);
            }
        }
        for r in [
            self.next_stall_check,
            self.next_orphan_deadline(),
            self.next_refusal_retry(),
            self.next_term(),
            self.next_parked_deadline(),
        ]
        .into_iter()
        .flatten()
        {
            cap(r);
        }
        t
    }

    /// How long a wait for readiness may last: zero while work is left over (events not
    /// taken, channels or listeners past their batch), else until the nearest timer (`None`:
    /// no timer).
    pub(super) fn wait_time(&self) -> Option<Duration> {
        if !self.events.is_empty() {
            return Some(Duration::ZERO);
        }
        self.dispatch_wait()
    }

    /// [`Self::wait_time`] without the events not taken: they do not shorten the wait of
    /// [`Self::dispatch`]'s caller (as before the poller could be taken out), only work left
    /// over and timers do.
    fn dispatch_wait(&self) -> Option<Duration> {
        if !self.hot_channels.is_empty() || !self.hot_listeners.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        self.next_deadline()
            .map(|t| t.saturating_duration_since(now))
    }

    pub(super) fn dispatch(&mut self, timeout: Option<Duration>) -> Result<()> {
        let timeout = [timeout, self.dispatch_wait()].into_iter().flatten().min();
        let Some(mut poller) = self.poller.take() else {
            return Err(Error::wrong_state(
                "the poller was taken (Primary::take_poller): dispatch with dispatch_ready",
            ));
        };
        let waited = poller.wait(timeout);
        let handled = waited.and_then(|()| self.dispatch_ready(&poller.events));
        self.poller = Some(poller);
        handled
    }

    /// Handles the readiness `events` reported (by this primary's poller), then the timers
    /// that are due.
    pub(super) fn dispatch_ready(&mut self, events: &mio::Events) -> Result<()> {
        let ready: Vec<(usize, bool)> = events
            .iter()
            .map(|e| (e.token().0, e.is_writable() && !e.is_readable()))
            .collect();
        if !ready.is_empty() {
            // Whatever woke the loop may change the groups (a worker that joins, leaves or
            // dies): the stall check looks again on its timer.
            self.end_quiet_spell();
        }
        let hot_channels = std::mem::take(&mut self.hot_channels);
        let hot_listeners = std::mem::take(&mut self.hot_listeners);
        for (t, write_only) in ready {
            let id = (t >> TAG_BITS) as u64;
            match t & ((1 << TAG_BITS) - 1) {
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
                TAG_PEEK => self.on_parked(id),
                TAG_QUIET => {}           // ended above
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
        self.send_due_terms(now);
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
        if self.next_parked_deadline().is_some_and(|t| t <= now) {
            self.expire_parked(now);
        }
        if !self.lookups.is_empty() {
            self.finish_lookups();
        }
        self.close_orphans(Some(Instant::now()));
        self.check_deadline();
        Ok(())
    }

    pub(super) fn on_signals(&mut self) {
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
}
