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
const TAG_BITS: usize = 3;

pub(super) fn token(tag: usize, id: u64) -> Token {
    Token(((id as usize) << TAG_BITS) | tag)
}

pub(super) struct Inner {
    pub(super) opts: PrimaryOptions,
    pub(super) poll: Poll,
    pub(super) mio_events: mio::Events,
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
            let w = mio::Waker::new(self.poll.registry(), token(TAG_SIGNAL, WAKER_ID))
                .map_err(io_err("eventfd", "create waker"))?;
            self.waker = Some(std::sync::Arc::new(w));
        }
        Ok(self.waker.clone().expect("just set"))
    }

    pub(super) fn dispatch(&mut self, timeout: Option<Duration>) -> Result<()> {
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
        if let Some(r) = self.next_term() {
            cap(r);
        }
        if let Some(r) = self.next_parked_deadline() {
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
