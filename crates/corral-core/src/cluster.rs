//! A primary and, optionally, its supervisor, driven as one: the loop every front runs.
//!
//! The supervisor acts on the primary's events (an exit starts a restart) and on time (backoff,
//! rolling reload, watchdog), and may start workers, whose events then come first. Getting that
//! order right is what this type does once for the C ABI, the Node addon and the tests:
//!
//! ```no_run
//! # use corral_core::{Cluster, ClusterEvent, PrimaryOptions};
//! # fn main() -> corral_core::Result<()> {
//! let mut cluster = Cluster::new(PrimaryOptions::default())?;
//! loop {
//!     // Waits on the primary's poller at most until the nearest deadline of either.
//!     cluster.dispatch(None)?;
//!     while let Some(ev) = cluster.next_event() {
//!         match ev {
//!             ClusterEvent::Primary(ev) => { /* fork, online, listening, message, exit... */ }
//!             ClusterEvent::Supervisor(ev) => { /* restart, reload, crash loop... */ }
//!         }
//!     }
//! }
//! # }
//! ```
//!
//! An embedding loop polls [`Cluster::poll_fd`] itself and calls `dispatch(Some(ZERO))` when it
//! is readable or [`Cluster::next_timeout`] has passed.

use crate::supervisor::SpawnFn;
use crate::SupervisorOptions;
use crate::{Error, Event, Primary, PrimaryOptions, Result, Supervisor, SupervisorEvent};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// An event of the cluster, in the order the fronts report them.
#[derive(Debug)]
pub enum ClusterEvent {
    /// From the primary (already seen by the supervisor, if any).
    Primary(Event),
    /// From the supervisor.
    Supervisor(SupervisorEvent),
}

/// A primary plus an optional supervisor (see the module docs).
pub struct Cluster {
    primary: Primary,
    supervisor: Option<Supervisor>,
}

impl Cluster {
    /// A cluster with a new primary (see [`Primary::new`]).
    pub fn new(opts: PrimaryOptions) -> Result<Cluster> {
        Ok(Cluster::from_primary(Primary::new(opts)?))
    }

    /// A cluster around an existing primary.
    pub fn from_primary(primary: Primary) -> Cluster {
        Cluster {
            primary,
            supervisor: None,
        }
    }

    /// The primary.
    pub fn primary(&self) -> &Primary {
        &self.primary
    }

    /// The primary, to fork, send, listen or shut down.
    pub fn primary_mut(&mut self) -> &mut Primary {
        &mut self.primary
    }

    /// Starts supervising: `spawn` starts the worker of a slot (see [`Supervisor::start`]).
    /// `WrongState` when already supervising.
    pub fn supervise(&mut self, opts: SupervisorOptions, spawn: SpawnFn) -> Result<()> {
        if self.supervisor.is_some() {
            return Err(Error::wrong_state("this primary is already supervising"));
        }
        self.supervisor = Some(Supervisor::start(&mut self.primary, opts, spawn)?);
        Ok(())
    }

    /// The supervisor, once [`Cluster::supervise`] was called.
    pub fn supervisor(&self) -> Option<&Supervisor> {
        self.supervisor.as_ref()
    }

    /// Runs `f` on the supervisor and the primary (reload, scale, shutdown take both);
    /// `WrongState` before [`Cluster::supervise`].
    pub fn with_supervisor<R>(
        &mut self,
        f: impl FnOnce(&mut Supervisor, &mut Primary) -> Result<R>,
    ) -> Result<R> {
        let s = self
            .supervisor
            .as_mut()
            .ok_or_else(|| Error::wrong_state("not supervising (call supervise first)"))?;
        f(s, &mut self.primary)
    }

    /// Stops supervising and hands the supervisor out (its metrics endpoint closes when it is
    /// dropped); the workers stay, now the primary's alone.
    pub fn take_supervisor(&mut self) -> Option<Supervisor> {
        self.supervisor.take()
    }

    /// The fd to poll for readability (the primary's poller).
    pub fn poll_fd(&self) -> RawFd {
        self.primary.poll_fd()
    }

    /// How long the caller may wait before the next [`Cluster::dispatch`] even with nothing to
    /// read: the nearest deadline of the primary and the supervisor. `None`: no deadline.
    pub fn next_timeout(&self) -> Option<Duration> {
        let sup = self
            .supervisor
            .as_ref()
            .and_then(|s| s.next_deadline())
            .map(|d| d.saturating_duration_since(Instant::now()));
        match (self.primary.next_timeout(), sup) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Waits for I/O at most `timeout` (`None`: until something happens), bounded by
    /// [`Cluster::next_timeout`], and handles it. Events are then taken with
    /// [`Cluster::next_event`].
    pub fn dispatch(&mut self, timeout: Option<Duration>) -> Result<()> {
        let t = match (timeout, self.next_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.primary.dispatch(t)
    }

    /// Takes the primary's poller out (see [`crate::Poller`]), for a loop that waits without
    /// holding the cluster: wait with [`crate::Poller::wait`] for at most
    /// [`Cluster::next_timeout`], then [`Cluster::dispatch_ready`]. `None` if taken already.
    pub fn take_poller(&mut self) -> Option<crate::Poller> {
        self.primary.take_poller()
    }

    /// Handles what `poller` reported in its last wait ([`Primary::dispatch_ready`]).
    pub fn dispatch_ready(&mut self, poller: &crate::Poller) -> Result<()> {
        self.primary.dispatch_ready(poller)
    }

    /// The next event: the primary's first (each one handed to the supervisor as it is
    /// taken), then the supervisor's; when both are drained, the supervisor's timers run
    /// ([`Supervisor::tick`]), which may start workers (their events come next) or queue
    /// its own. `None` when nothing is left.
    pub fn next_event(&mut self) -> Option<ClusterEvent> {
        if let Some(ev) = self.primary.next_event() {
            if let Some(s) = self.supervisor.as_mut() {
                s.handle(&mut self.primary, &ev);
            }
            return Some(ClusterEvent::Primary(ev));
        }
        let s = self.supervisor.as_mut()?;
        if let Some(ev) = s.next_event() {
            return Some(ClusterEvent::Supervisor(ev));
        }
        s.tick(&mut self.primary);
        if let Some(ev) = self.primary.next_event() {
            s.handle(&mut self.primary, &ev);
            return Some(ClusterEvent::Primary(ev));
        }
        s.next_event().map(ClusterEvent::Supervisor)
    }

    /// Takes the cluster apart (the supervisor, if any, is dropped).
    pub fn into_primary(self) -> Primary {
        self.primary
    }
}
