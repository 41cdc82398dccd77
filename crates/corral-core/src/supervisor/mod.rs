//! The supervisor: keeps N workers alive and replaces them without losing connections.
//! It drives a [`Primary`] from the same loop (feed it every event, call `tick`):
//!
//! - `backoff`: restart delays with jitter, reset after a stable run, and the crash-loop
//!   breaker (the slot retries at the maximum delay; the other workers keep serving).
//! - rolling reload: one batch at a time, start the new worker, wait until it listens (or says
//!   ready), keep it on probation, then drain the old one; a crash or a missed deadline stops
//!   the reload and the old generation keeps serving.
//! - hang watchdog (heartbeats), recycling (RSS or connections served), scaling.
//! - `metrics`: per-worker figures, Prometheus text, an optional HTTP endpoint.
//!
//! Workers are started by a spawn function (exec mode): a forked child could not return into
//! the supervisor's loop.
//!
//! Where things are: `options.rs` (what may be configured, validated), `events.rs` (what
//! the application is told), `restart.rs` (exits and restarts), `reload.rs`, `watchdog.rs`,
//! `recycle.rs`, `scale.rs`; this file keeps [`Supervisor`], its start, `handle` (the event
//! feed), `tick` (the timers), shutdown and the metrics it publishes.

pub mod backoff;
mod events;
pub mod metrics;
mod options;
mod recycle;
mod reload;
mod restart;
mod scale;
mod watchdog;

pub use backoff::RestartOptions;
pub use events::{Cause, ReloadReport, SupervisorEvent};
pub use metrics::{Metrics, WorkerMetrics};
pub use options::{HeartbeatOptions, RecycleOptions, ReloadOptions, SupervisorOptions};

use crate::error::{Error, Result};
use crate::event::{Event, WorkerId};
use crate::primary::Primary;
use crate::sys::{self, ExitStatus};
use backoff::{Backoff, Jitter};
use metrics::Endpoint;
use reload::{Phase, Reload};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A worker's state as [`WorkerMetrics::state`] names it.
fn state_of(w: &WorkerState, info: &crate::WorkerInfo) -> &'static str {
    match w.role {
        Role::Draining => "draining",
        _ if !info.connected => "disconnected",
        _ if w.listening || w.ready => "ready",
        _ => "starting",
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Current,
    /// Starting to replace the slot's current worker (reload or recycle).
    Next,
    Draining,
}

#[derive(Debug)]
struct WorkerState {
    slot: usize,
    role: Role,
    listening: bool,
    ready: bool,
    started: Instant,
    online_at: Option<Instant>,
    kill_cause: Option<Cause>,
    recycle_at: Option<u64>,
    /// Sent SIGTERM for a broken channel: SIGKILL at this time if it is still there.
    kill_at: Option<Instant>,
    /// Its last heartbeat from outside the channel ([`Supervisor::worker_heartbeat`]).
    heartbeat_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct SlotState {
    current: Option<WorkerId>,
    next: Option<WorkerId>,
    restart_at: Option<(Instant, Option<WorkerId>, Cause, Duration)>,
    backoff: Backoff,
    recent_exits: VecDeque<ExitStatus>,
    restarts: u64,
    last_cause: Option<String>,
    retired: bool,
}

/// Starts one worker (exec mode) for the supervisor, for the given slot.
pub type SpawnFn = Box<dyn FnMut(&mut Primary, usize) -> Result<WorkerId> + Send>;

/// Keeps a cluster's workers alive; see the module docs.
pub struct Supervisor {
    opts: SupervisorOptions,
    spawn: SpawnFn,
    slots: Vec<SlotState>,
    workers: HashMap<WorkerId, WorkerState>,
    reload: Option<Reload>,
    recycling: Option<usize>,
    shutting_down: bool,
    events: VecDeque<SupervisorEvent>,
    jitter: Jitter,
    restarts_by_cause: BTreeMap<String, u64>,
    reloads: u64,
    endpoint: Option<Endpoint>,
    last_publish: Option<Instant>,
    /// What the endpoint's `/ready` last said.
    last_ready: Option<Result<(), String>>,
    /// RSS and CPU of each worker's process tree, not of its pid alone.
    count_descendants: bool,
    /// When `recycle.maxRss` was last checked (once a second: a tree costs /proc reads).
    rss_checked_at: Option<Instant>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("slots", &self.slots.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Supervisor {
    /// Validates the options, starts the metrics endpoint if asked, and starts the workers.
    pub fn start(p: &mut Primary, opts: SupervisorOptions, spawn: SpawnFn) -> Result<Supervisor> {
        opts.validate()?;
        let endpoint = match opts.metrics {
            Some(addr) => Some(
                Endpoint::start(addr)
                    .map_err(|e| Error::os("bind", format!("metrics endpoint {addr}"), &e))?,
            ),
            None => None,
        };
        let mut s = Supervisor {
            slots: (0..opts.workers).map(|_| SlotState::default()).collect(),
            opts,
            spawn,
            workers: HashMap::new(),
            reload: None,
            recycling: None,
            shutting_down: false,
            events: VecDeque::new(),
            jitter: Jitter::new(),
            restarts_by_cause: BTreeMap::new(),
            reloads: 0,
            endpoint,
            last_publish: None,
            last_ready: None,
            count_descendants: false,
            rss_checked_at: None,
        };
        for slot in 0..s.slots.len() {
            let id = s.start_worker(p, slot, Role::Current)?;
            s.slots[slot].current = Some(id);
        }
        s.publish(p);
        Ok(s)
    }

    /// The metrics endpoint's address, if one runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().map(Endpoint::addr)
    }

    /// The options in effect.
    pub fn options(&self) -> &SupervisorOptions {
        &self.opts
    }

    /// Counts each worker's descendants in its resource figures (RSS, CPU: metrics, status
    /// and `recycle.maxRss`): on for the `corral` command, whose workers are foreign programs
    /// that may pre-fork (uvicorn `--workers 2`, gunicorn) and grow in a child; off by
    /// default, so the C and Node fronts keep the started pid's own figures.
    ///
    /// On Linux the tree is found from `/proc` (each thread's `children` file, else a scan
    /// of every process's parent; at most 1024 processes), its memory is the sum of `Pss`
    /// (`/proc/PID/smaps_rollup`: shared pages split between the processes that map them)
    /// or, where that cannot be read, of RSS, and its CPU time includes reaped children's.
    /// On macOS the figures stay the pid's own. A setter rather than a
    /// [`SupervisorOptions`] field: the fronts build that struct field by field.
    pub fn count_descendants(&mut self, on: bool) {
        self.count_descendants = on;
    }

    /// Adds figures collected when the metrics endpoint is scraped (see
    /// [`metrics::endpoint`]); false when no endpoint runs (`metrics` unset).
    pub fn set_scrape_hook(&mut self, hook: metrics::endpoint::ScrapeHook) -> bool {
        match &self.endpoint {
            Some(e) => {
                e.set_scrape_hook(hook);
                true
            }
            None => false,
        }
    }

    /// Memory in bytes and CPU seconds of a worker (its tree with `count_descendants`).
    fn resources(&self, pid: i32) -> Option<(u64, f64)> {
        if self.count_descendants {
            sys::proc_tree_stats(pid)
        } else {
            sys::proc_stats(pid)
        }
    }

    fn start_worker(&mut self, p: &mut Primary, slot: usize, role: Role) -> Result<WorkerId> {
        let id = (self.spawn)(p, slot)?;
        // `sticky` maps clients to slots: a replacement gets its predecessor's back.
        p.set_worker_slot(id, slot as u32)?;
        let recycle_at = self.opts.recycle.max_connections.map(|n| {
            let j = self.opts.recycle.jitter;
            (n as f64 * (1.0 + j * (2.0 * self.jitter.next_unit() - 1.0))).max(1.0) as u64
        });
        self.workers.insert(
            id,
            WorkerState {
                slot,
                role,
                listening: false,
                ready: false,
                started: Instant::now(),
                online_at: None,
                kill_cause: None,
                kill_at: None,
                heartbeat_at: None,
                recycle_at,
            },
        );
        Ok(id)
    }

    /// Pops the next supervisor event.
    pub fn next_event(&mut self) -> Option<SupervisorEvent> {
        self.events.pop_front()
    }

    /// The earliest time `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        for s in &self.slots {
            if let Some((when, ..)) = s.restart_at {
                at(when);
            }
        }
        if let Some(r) = &self.reload {
            for (_, _, ph) in &r.batch {
                match ph {
                    Phase::Starting(d) | Phase::Probation(d) => at(*d),
                }
            }
        }
        for w in self.workers.values() {
            if let Some(d) = w.kill_at {
                at(d);
            }
        }
        // Watchdog, recycling and metrics look every second at most.
        if self.opts.heartbeat.is_some()
            || self.opts.recycle.max_rss.is_some()
            || self.endpoint.is_some()
        {
            let step = self
                .opts
                .heartbeat
                .as_ref()
                .map_or(Duration::from_secs(1), |h| {
                    h.interval.min(Duration::from_secs(1))
                });
            at(Instant::now() + step);
        }
        t
    }

    /// Feeds one primary event.
    pub fn handle(&mut self, p: &mut Primary, ev: &Event) {
        match ev {
            Event::Online { worker } => {
                if let Some(w) = self.workers.get_mut(worker) {
                    w.online_at = Some(Instant::now());
                }
            }
            Event::Listening { worker, .. } => {
                if let Some(w) = self.workers.get_mut(worker) {
                    w.listening = true;
                }
            }
            Event::Ready { worker } => {
                if let Some(w) = self.workers.get_mut(worker) {
                    w.ready = true;
                }
            }
            Event::Exit { worker, status, .. } => self.on_exit(p, *worker, *status),
            Event::Disconnect { worker } => self.on_disconnect(p, *worker),
            Event::Signal { signal } if *signal == libc::SIGHUP => {
                let _ = self.reload(p);
            }
            _ => {}
        }
        self.tick(p);
    }

    /// A worker without a channel (`SpawnSpec::without_channel`, the `corral` command) said
    /// outside the engine's protocol that it serves (sd_notify `READY=1`, or alive for a
    /// delay). Its sockets were inherited at exec, so it counts as listening (a later death
    /// is a crash, not a failed start) and as ready (a reload step may go on). Unknown ids
    /// are ignored.
    pub fn worker_ready(&mut self, p: &mut Primary, worker: WorkerId) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.listening = true;
            w.ready = true;
        }
        self.tick(p);
    }

    /// A heartbeat that did not come over the channel (sd_notify `WATCHDOG=1`): the hang
    /// watchdog counts it as the channel's. A worker starts being watched at its first
    /// heartbeat (or when its channel says online). Unknown ids are ignored.
    pub fn worker_heartbeat(&mut self, worker: WorkerId) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.heartbeat_at = Some(Instant::now());
        }
    }

    /// Runs what is due: restarts, reload steps, the watchdog, recycling, metrics.
    pub fn tick(&mut self, p: &mut Primary) {
        let now = Instant::now();
        if p.is_shutting_down() && !self.shutting_down {
            // The primary started it (a signal): no more restarts or reloads.
            self.shutting_down = true;
            self.abort_reload("the cluster is shutting down");
        }
        for (&id, w) in &mut self.workers {
            if w.kill_at.is_some_and(|t| t <= now) {
                w.kill_at = None;
                let _ = p.kill(id, libc::SIGKILL);
            }
        }
        if !self.shutting_down {
            self.run_restarts(p, now);
            self.run_reload(p, now);
            self.run_watchdog(p, now);
            self.run_recycle(p);
        }
        if self.endpoint.is_some()
            && self.last_publish.map_or(true, |t| {
                now.duration_since(t) >= Duration::from_millis(500)
            })
        {
            self.publish(p);
        }
        if self.endpoint.is_some() {
            // At once, not at the next metrics turn: a probe must see a reload start.
            let ready = self.readiness();
            if self.last_ready.as_ref() != Some(&ready) {
                if let Some(e) = &self.endpoint {
                    e.publish_ready(ready.clone());
                }
                self.last_ready = Some(ready);
            }
        }
    }

    /// Graceful shutdown: no more restarts; the primary drains every worker and kills what is
    /// left at the deadline (see `Event::ShutdownComplete`).
    pub fn shutdown(&mut self, p: &mut Primary) -> Result<()> {
        self.shutting_down = true;
        self.abort_reload("the cluster is shutting down");
        p.shutdown(self.opts.shutdown_timeout)
    }

    /// A snapshot of every worker's figures.
    pub fn metrics(&self, p: &Primary) -> Metrics {
        let mut workers = Vec::new();
        for (&id, w) in &self.workers {
            let Some(info) = p.worker(id) else { continue };
            let (rss_bytes, cpu_seconds) = self.resources(info.pid).unwrap_or((0, 0.0));
            let s = &self.slots[w.slot];
            workers.push(WorkerMetrics {
                slot: w.slot,
                id,
                pid: info.pid,
                state: state_of(w, &info),
                handed_off: info.handed_off,
                refused: info.refused,
                taken_back: info.taken_back,
                inflight: info.inflight,
                active: info.active_connections,
                restarts: s.restarts,
                last_restart_cause: s.last_cause.clone(),
                uptime_seconds: info.uptime.as_secs_f64(),
                rss_bytes,
                cpu_seconds,
            });
        }
        workers.sort_by_key(|w| (w.slot, w.id));
        Metrics {
            workers,
            restarts_by_cause: self
                .restarts_by_cause
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            crash_looping_slots: (0..self.slots.len())
                .filter(|&s| self.slots[s].backoff.crash_looping())
                .collect(),
            reloads: self.reloads,
        }
    }

    /// Workers whose [`WorkerMetrics::state`] is "ready", without reading their resource
    /// figures from the OS (which [`Supervisor::metrics`] does, a process tree each with
    /// `count_descendants`): cheap enough for every turn of a loop.
    pub fn ready_workers(&self, p: &Primary) -> usize {
        self.workers
            .iter()
            .filter(|(&id, w)| {
                p.worker(id)
                    .is_some_and(|info| state_of(w, &info) == "ready")
            })
            .count()
    }

    /// Ready for traffic (the endpoint's `/ready`): every slot's worker is up (listening or
    /// said ready), no reload runs and no shutdown has started.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if self.shutting_down {
            return Err("shutting down".into());
        }
        if self.reload.is_some() {
            return Err("a rolling reload is running".into());
        }
        let slots: Vec<&SlotState> = self.slots.iter().filter(|s| !s.retired).collect();
        let up = slots
            .iter()
            .filter(|s| {
                s.current
                    .and_then(|id| self.workers.get(&id))
                    .is_some_and(|w| w.listening || w.ready)
            })
            .count();
        if up < slots.len() {
            return Err(format!("{up} of {} workers ready", slots.len()));
        }
        Ok(())
    }

    fn publish(&mut self, p: &Primary) {
        if let Some(e) = &self.endpoint {
            let m = self.metrics(p);
            e.publish_workers(m.workers.iter().map(|w| (w.id, w.pid)).collect());
            e.publish(m.to_prometheus());
            self.last_publish = Some(Instant::now());
        }
    }
}
