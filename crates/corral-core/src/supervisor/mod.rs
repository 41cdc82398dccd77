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

pub mod backoff;
pub mod metrics;

use crate::error::{Error, Result};
use crate::event::{Event, WorkerId};
use crate::primary::Primary;
use crate::sys::{self, ExitStatus};
pub use backoff::RestartOptions;
use backoff::{Backoff, Jitter};
use metrics::Endpoint;
pub use metrics::{Metrics, WorkerMetrics};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Rolling reload knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadOptions {
    /// A new worker must be listening (and ready, with `wait_ready`) within this time.
    pub ready_timeout: Duration,
    /// A new worker must stay up this long before its predecessor is drained.
    pub probation: Duration,
    /// Workers replaced at a time (at least 1).
    pub batch: usize,
    /// Wait for the worker's explicit `ready()` instead of its first listen.
    pub wait_ready: bool,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        ReloadOptions {
            ready_timeout: Duration::from_secs(10),
            probation: Duration::from_secs(1),
            batch: 1,
            wait_ready: false,
        }
    }
}

/// Hang detection.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatOptions {
    /// How often workers send heartbeats (the fronts use it to start their timers).
    pub interval: Duration,
    /// A worker silent this long is replaced.
    pub timeout: Duration,
}

/// Recycling knobs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecycleOptions {
    /// Replace a worker whose RSS exceeds this many bytes.
    pub max_rss: Option<u64>,
    /// Replace a worker after this many connections handed to it.
    pub max_connections: Option<u64>,
    /// +/- spread of `max_connections` per worker, so they do not all recycle at once.
    pub jitter: f64,
}

/// Everything the supervisor does.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorOptions {
    /// Workers to keep alive (at least 1).
    pub workers: usize,
    /// Restart policy.
    pub restart: RestartOptions,
    /// Deadline of a graceful shutdown.
    pub shutdown_timeout: Duration,
    /// Rolling reloads.
    pub reload: ReloadOptions,
    /// Hang watchdog; off when `None`.
    pub heartbeat: Option<HeartbeatOptions>,
    /// Recycling.
    pub recycle: RecycleOptions,
    /// Serve Prometheus text here (`GET /metrics` or `GET /`; per-client deadlines and limits
    /// in [`metrics::endpoint`]); off when `None`.
    pub metrics: Option<SocketAddr>,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions {
            workers: crate::available_parallelism(),
            restart: RestartOptions::default(),
            shutdown_timeout: Duration::from_secs(30),
            reload: ReloadOptions::default(),
            heartbeat: None,
            recycle: RecycleOptions::default(),
            metrics: None,
        }
    }
}

impl SupervisorOptions {
    /// Checks every value against its documented range ([`crate::limits`]); the error names
    /// the option. Both fronts call it, so C and Node accept and refuse the same values.
    ///
    /// | option | range |
    /// | --- | --- |
    /// | `workers` | 1..=[`MAX_WORKERS`](crate::limits::MAX_WORKERS) (4096) |
    /// | every duration | 0..=[`MAX_DURATION`](crate::limits::MAX_DURATION) (7 days); `reload.readyTimeout`, `heartbeat.*` > 0 |
    /// | `restart.factor` | 1..=1000 (the delay saturates at `restart.maxDelay`) |
    /// | `restart.jitter`, `recycle.jitter` | 0..=1 |
    /// | `restart.maxDelay` | >= `restart.initialDelay` |
    /// | `restart.crashLoop.exits` | 1..=2^53 |
    /// | `reload.batch` | 1..=4096 |
    /// | `heartbeat.timeout` | > `heartbeat.interval` |
    /// | `recycle.maxRss`, `recycle.maxConnections` | 1..=2^53 when set |
    pub fn validate(&self) -> Result<()> {
        use crate::limits::{
            check_count, check_duration, check_f64, MAX_COUNT, MAX_FACTOR, MAX_WORKERS,
        };
        let bad = |name: &str, why: &str| Err(Error::invalid(format!("{name}: {why}")));
        check_count("workers", self.workers as u64, 1, MAX_WORKERS as u64)?;
        let r = &self.restart;
        check_duration("restart.initialDelay", r.initial_delay, false)?;
        check_duration("restart.maxDelay", r.max_delay, false)?;
        check_f64("restart.factor", r.factor, 1.0, MAX_FACTOR)?;
        check_f64("restart.jitter", r.jitter, 0.0, 1.0)?;
        if r.max_delay < r.initial_delay {
            return bad("restart.maxDelay", "must not be below restart.initialDelay");
        }
        check_duration("restart.resetAfter", r.reset_after, false)?;
        check_count(
            "restart.crashLoop.exits",
            r.crash_loop_exits as u64,
            1,
            MAX_COUNT,
        )?;
        check_duration("restart.crashLoop.window", r.crash_loop_window, false)?;
        check_duration("shutdown.timeout", self.shutdown_timeout, false)?;
        check_duration("reload.readyTimeout", self.reload.ready_timeout, true)?;
        check_duration("reload.probation", self.reload.probation, false)?;
        check_count(
            "reload.batch",
            self.reload.batch as u64,
            1,
            MAX_WORKERS as u64,
        )?;
        if let Some(h) = &self.heartbeat {
            check_duration("heartbeat.interval", h.interval, true)?;
            check_duration("heartbeat.timeout", h.timeout, true)?;
            if h.timeout <= h.interval {
                return bad(
                    "heartbeat",
                    "interval must be > 0 and timeout greater than interval",
                );
            }
        }
        check_f64("recycle.jitter", self.recycle.jitter, 0.0, 1.0)?;
        if let Some(v) = self.recycle.max_connections {
            check_count("recycle.maxConnections", v, 1, MAX_COUNT)?;
        }
        if let Some(v) = self.recycle.max_rss {
            check_count("recycle.maxRss", v, 1, MAX_COUNT)?;
        }
        Ok(())
    }
}

/// Why a worker was replaced.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// It died before it listened (a start-up failure).
    Boot(ExitStatus),
    /// It died while serving.
    Crash(ExitStatus),
    /// Its heartbeats stopped.
    Hang,
    /// It went over a recycling limit.
    Recycle(String),
    /// A rolling reload replaced it.
    Reload,
    /// Its channel to the primary broke (a malformed frame) while it was serving: it can no
    /// longer be given connections or asked to leave, so it is stopped (SIGTERM, SIGKILL
    /// after `shutdown.timeout`) and replaced.
    Channel,
}

impl Cause {
    /// Short label: boot, crash, hang, recycle, reload.
    pub fn label(&self) -> &'static str {
        match self {
            Cause::Boot(_) => "boot",
            Cause::Crash(_) => "crash",
            Cause::Hang => "hang",
            Cause::Recycle(_) => "recycle",
            Cause::Reload => "reload",
            Cause::Channel => "channel",
        }
    }
}

/// The outcome of a rolling reload.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadReport {
    /// Every worker was replaced.
    pub ok: bool,
    /// Workers replaced before it ended.
    pub replaced: usize,
    /// Why it stopped early.
    pub reason: Option<String>,
    /// How long it took.
    pub duration: Duration,
}

/// What the supervisor did, for the application (logs, alerts, tests).
#[derive(Debug, Clone, PartialEq)]
pub enum SupervisorEvent {
    /// A replacement worker was started for `slot`.
    Restart {
        /// Slot.
        slot: usize,
        /// The new worker.
        worker: WorkerId,
        /// The worker it replaces, if one exited.
        previous: Option<WorkerId>,
        /// Why.
        cause: Cause,
        /// The backoff delay waited.
        delay: Duration,
    },
    /// A slot entered a crash loop: it now retries at the maximum delay.
    CrashLoop {
        /// Slot.
        slot: usize,
        /// The exits in the window, oldest first.
        exits: Vec<ExitStatus>,
    },
    /// A worker exited with a do-not-restart code; its slot stays empty.
    NoRestart {
        /// Slot.
        slot: usize,
        /// The worker.
        worker: WorkerId,
        /// How it exited.
        status: ExitStatus,
    },
    /// A worker stopped sending heartbeats and was killed.
    Hang {
        /// Slot.
        slot: usize,
        /// The worker.
        worker: WorkerId,
        /// Time since its last heartbeat.
        silent_for: Duration,
    },
    /// A worker went over a recycling limit; a replacement is starting.
    Recycle {
        /// Slot.
        slot: usize,
        /// The worker being replaced.
        worker: WorkerId,
        /// "rss 600000000 > 536870912" or "connections 1000 >= 1000".
        reason: String,
    },
    /// A rolling reload ended.
    Reload(ReloadReport),
    /// The worker count changed.
    Scaled {
        /// Before.
        from: usize,
        /// After.
        to: usize,
    },
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

#[derive(Debug)]
enum Phase {
    Starting(Instant),
    Probation(Instant),
}

#[derive(Debug)]
struct Reload {
    queue: VecDeque<usize>,
    batch: Vec<(usize, WorkerId, Phase)>,
    replaced: usize,
    started: Instant,
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

    fn start_worker(&mut self, p: &mut Primary, slot: usize, role: Role) -> Result<WorkerId> {
        let id = (self.spawn)(p, slot)?;
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

    /// A worker's channel closed. Asked for (drain, reload, scale, the worker's own goodbye):
    /// its exit follows. Otherwise the channel broke under it (a protocol error): it would
    /// stay up serving nobody, shown as ready, so it is stopped and its exit replaces it.
    fn on_disconnect(&mut self, p: &mut Primary, id: WorkerId) {
        if self.shutting_down || p.worker(id).map_or(true, |i| i.exited_after_disconnect) {
            return;
        }
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.role == Role::Draining || w.kill_cause.is_some() {
            return;
        }
        w.kill_cause = Some(Cause::Channel);
        w.kill_at = Some(Instant::now() + self.opts.shutdown_timeout);
        let _ = p.kill(id, libc::SIGTERM);
    }

    fn on_exit(&mut self, p: &mut Primary, id: WorkerId, status: ExitStatus) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        let now = Instant::now();
        let slot = w.slot;
        // A replacement that died: the reload (or recycle) stops; the old worker keeps serving.
        if w.role == Role::Next {
            self.slots[slot].next = None;
            if self.recycling == Some(slot) {
                self.recycling = None;
            }
            if let Some(r) = self.reload.as_mut() {
                r.batch.retain(|(_, wid, _)| *wid != id);
                let how = describe(status);
                self.fail_reload(
                    p,
                    format!("new worker {id} for slot {slot} {how} before taking over"),
                );
            }
            return;
        }
        if w.role == Role::Draining || self.shutting_down || p.is_shutting_down() {
            return;
        }
        let s = &mut self.slots[slot];
        if s.current == Some(id) {
            s.current = None;
        }
        if s.retired {
            return;
        }
        if let Some(code) = status.code {
            if self.opts.restart.no_restart_exit_codes.contains(&code) {
                self.events.push_back(SupervisorEvent::NoRestart {
                    slot,
                    worker: id,
                    status,
                });
                return;
            }
        }
        let cause = w.kill_cause.clone().unwrap_or(if w.listening {
            Cause::Crash(status)
        } else {
            Cause::Boot(status)
        });
        let d = s
            .backoff
            .on_exit(&self.opts.restart, now.duration_since(w.started), now);
        s.recent_exits.push_back(status);
        while s.recent_exits.len() > self.opts.restart.crash_loop_exits as usize {
            s.recent_exits.pop_front();
        }
        if d.entered_crash_loop {
            self.events.push_back(SupervisorEvent::CrashLoop {
                slot,
                exits: s.recent_exits.iter().copied().collect(),
            });
        }
        let delay = self.jitter.apply(d.delay, self.opts.restart.jitter);
        s.restart_at = Some((now + delay, Some(id), cause, delay));
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
    }

    fn run_restarts(&mut self, p: &mut Primary, now: Instant) {
        for slot in 0..self.slots.len() {
            let due = matches!(self.slots[slot].restart_at, Some((t, ..)) if t <= now);
            if !due {
                continue;
            }
            let (_, previous, cause, delay) = self.slots[slot].restart_at.take().expect("due");
            match self.start_worker(p, slot, Role::Current) {
                Ok(id) => {
                    let s = &mut self.slots[slot];
                    s.current = Some(id);
                    s.restarts += 1;
                    s.last_cause = Some(cause.label().to_string());
                    *self
                        .restarts_by_cause
                        .entry(cause.label().to_string())
                        .or_default() += 1;
                    self.events.push_back(SupervisorEvent::Restart {
                        slot,
                        worker: id,
                        previous,
                        cause,
                        delay,
                    });
                }
                Err(_) => {
                    // Could not even start it (fork/exec failed): try again at the max delay.
                    let max = self.opts.restart.max_delay;
                    self.slots[slot].restart_at = Some((now + max, previous, cause, max));
                }
            }
        }
    }

    /// Starts a rolling reload of every worker. Refused while one runs.
    pub fn reload(&mut self, p: &mut Primary) -> Result<()> {
        if self.reload.is_some() {
            return Err(Error::wrong_state(
                "a reload is already in progress; wait for its report",
            ));
        }
        if self.shutting_down {
            return Err(Error::wrong_state("the cluster is shutting down"));
        }
        let queue = (0..self.slots.len())
            .filter(|&s| !self.slots[s].retired)
            .collect();
        self.reload = Some(Reload {
            queue,
            batch: Vec::new(),
            replaced: 0,
            started: Instant::now(),
        });
        self.tick(p);
        Ok(())
    }

    /// A reload is running.
    pub fn reloading(&self) -> bool {
        self.reload.is_some()
    }

    fn run_reload(&mut self, p: &mut Primary, now: Instant) {
        let Some(mut r) = self.reload.take() else {
            return;
        };
        if r.batch.is_empty() {
            while r.batch.len() < self.opts.reload.batch {
                let Some(slot) = r.queue.pop_front() else {
                    break;
                };
                match self.start_worker(p, slot, Role::Next) {
                    Ok(id) => {
                        self.slots[slot].next = Some(id);
                        r.batch.push((
                            slot,
                            id,
                            Phase::Starting(now + self.opts.reload.ready_timeout),
                        ));
                    }
                    Err(e) => {
                        self.reload = Some(r);
                        self.fail_reload(p, format!("could not start a new worker: {e}"));
                        return;
                    }
                }
            }
        }
        let mut failure = None;
        let mut done = Vec::new();
        for (i, (slot, id, phase)) in r.batch.iter_mut().enumerate() {
            let Some(w) = self.workers.get(id) else {
                continue;
            };
            match phase {
                Phase::Starting(deadline) => {
                    let up = if self.opts.reload.wait_ready {
                        w.ready
                    } else {
                        w.listening || w.ready
                    };
                    if up {
                        *phase = Phase::Probation(now + self.opts.reload.probation);
                    } else if now >= *deadline {
                        failure = Some(format!(
                            "new worker {id} for slot {slot} missed its readiness deadline of {} ms",
                            self.opts.reload.ready_timeout.as_millis()
                        ));
                    }
                }
                Phase::Probation(until) if now >= *until => done.push(i),
                Phase::Probation(_) => {}
            }
        }
        for i in done.into_iter().rev() {
            let (slot, id, _) = r.batch.remove(i);
            self.promote(p, slot, id);
            r.replaced += 1;
        }
        self.reload = Some(r);
        if let Some(reason) = failure {
            self.fail_reload(p, reason);
            return;
        }
        let finished = self
            .reload
            .as_ref()
            .is_some_and(|r| r.batch.is_empty() && r.queue.is_empty());
        if finished {
            let r = self.reload.take().expect("checked");
            self.reloads += 1;
            self.events.push_back(SupervisorEvent::Reload(ReloadReport {
                ok: true,
                replaced: r.replaced,
                reason: None,
                duration: r.started.elapsed(),
            }));
        } else if self.reload.as_ref().is_some_and(|r| r.batch.is_empty()) {
            // Start the next batch now.
            self.run_reload(p, now);
        }
    }

    /// The new worker takes the slot; the old one drains (no connection is lost: the primary
    /// stops handing it connections and takes back any it had not received).
    fn promote(&mut self, p: &mut Primary, slot: usize, new: WorkerId) {
        let s = &mut self.slots[slot];
        let old = s.current.replace(new);
        s.next = None;
        if let Some(w) = self.workers.get_mut(&new) {
            w.role = Role::Current;
        }
        if let Some(old) = old {
            if let Some(w) = self.workers.get_mut(&old) {
                w.role = Role::Draining;
            }
            let _ = p.disconnect(old);
        }
    }

    fn fail_reload(&mut self, p: &mut Primary, reason: String) {
        let Some(r) = self.reload.take() else { return };
        for (slot, id, _) in &r.batch {
            self.slots[*slot].next = None;
            if let Some(w) = self.workers.get_mut(id) {
                w.role = Role::Draining;
                if w.listening {
                    let _ = p.disconnect(*id);
                } else {
                    let _ = p.kill(*id, libc::SIGKILL);
                }
            }
        }
        self.events.push_back(SupervisorEvent::Reload(ReloadReport {
            ok: false,
            replaced: r.replaced,
            reason: Some(reason),
            duration: r.started.elapsed(),
        }));
    }

    fn run_watchdog(&mut self, p: &mut Primary, now: Instant) {
        let Some(h) = self.opts.heartbeat.clone() else {
            return;
        };
        let mut hung = Vec::new();
        for (&id, w) in &self.workers {
            if w.role == Role::Draining || w.kill_cause.is_some() {
                continue;
            }
            let Some(info) = p.worker(id) else { continue };
            let Some(since) = info.last_heartbeat.or(w.online_at) else {
                continue;
            };
            let silent = now.saturating_duration_since(since);
            if silent > h.timeout {
                hung.push((id, w.slot, silent));
            }
        }
        for (id, slot, silent_for) in hung {
            if let Some(w) = self.workers.get_mut(&id) {
                w.kill_cause = Some(Cause::Hang);
            }
            self.events.push_back(SupervisorEvent::Hang {
                slot,
                worker: id,
                silent_for,
            });
            let _ = p.kill(id, libc::SIGKILL);
        }
    }

    fn run_recycle(&mut self, p: &mut Primary) {
        if let Some(slot) = self.recycling {
            // Replacement started: promote it once it listens.
            if let Some(next) = self.slots[slot].next {
                if self
                    .workers
                    .get(&next)
                    .is_some_and(|w| w.listening || w.ready)
                {
                    self.promote(p, slot, next);
                    self.slots[slot].restarts += 1;
                    self.slots[slot].last_cause = Some("recycle".into());
                    *self.restarts_by_cause.entry("recycle".into()).or_default() += 1;
                    self.recycling = None;
                }
            } else {
                self.recycling = None;
            }
            return;
        }
        if self.reload.is_some()
            || (self.opts.recycle.max_rss.is_none() && self.opts.recycle.max_connections.is_none())
        {
            return;
        }
        for slot in 0..self.slots.len() {
            let Some(id) = self.slots[slot].current else {
                continue;
            };
            let Some(w) = self.workers.get(&id) else {
                continue;
            };
            if !w.listening {
                continue;
            }
            let Some(info) = p.worker(id) else { continue };
            let mut reason = None;
            if let Some(limit) = w.recycle_at {
                if info.handed_off >= limit {
                    reason = Some(format!("connections {} >= {limit}", info.handed_off));
                }
            }
            if let (Some(max), None) = (self.opts.recycle.max_rss, &reason) {
                if let Some((rss, _)) = sys::proc_stats(info.pid) {
                    if rss > max {
                        reason = Some(format!("rss {rss} > {max}"));
                    }
                }
            }
            let Some(reason) = reason else { continue };
            if let Ok(next) = self.start_worker(p, slot, Role::Next) {
                self.slots[slot].next = Some(next);
                self.recycling = Some(slot);
                self.events.push_back(SupervisorEvent::Recycle {
                    slot,
                    worker: id,
                    reason,
                });
            }
            return; // one at a time
        }
    }

    /// Changes the worker count: new slots start now; removed slots drain gracefully.
    pub fn scale(&mut self, p: &mut Primary, workers: usize) -> Result<()> {
        crate::limits::check_count(
            "workers",
            workers as u64,
            1,
            crate::limits::MAX_WORKERS as u64,
        )?;
        if self.shutting_down {
            return Err(Error::wrong_state("the cluster is shutting down"));
        }
        let from = self.slots.iter().filter(|s| !s.retired).count();
        // Reuse retired slots first (their labels), then add new ones.
        let mut active = from;
        for slot in 0..self.slots.len() {
            if active >= workers {
                break;
            }
            if self.slots[slot].retired && self.slots[slot].current.is_none() {
                self.slots[slot].retired = false;
                let id = self.start_worker(p, slot, Role::Current)?;
                self.slots[slot].current = Some(id);
                active += 1;
            }
        }
        while active < workers {
            self.slots.push(SlotState::default());
            let slot = self.slots.len() - 1;
            let id = self.start_worker(p, slot, Role::Current)?;
            self.slots[slot].current = Some(id);
            active += 1;
        }
        for slot in (0..self.slots.len()).rev() {
            if active <= workers {
                break;
            }
            if self.slots[slot].retired {
                continue;
            }
            let s = &mut self.slots[slot];
            s.retired = true;
            s.restart_at = None;
            for id in [s.current.take(), s.next.take()].into_iter().flatten() {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.role = Role::Draining;
                }
                let _ = p.disconnect(id);
            }
            active -= 1;
        }
        if let Some(r) = self.reload.as_mut() {
            let slots = &self.slots;
            r.queue.retain(|&s| !slots[s].retired);
        }
        self.events
            .push_back(SupervisorEvent::Scaled { from, to: workers });
        Ok(())
    }

    /// Graceful shutdown: no more restarts; the primary drains every worker and kills what is
    /// left at the deadline (see `Event::ShutdownComplete`).
    pub fn shutdown(&mut self, p: &mut Primary) -> Result<()> {
        self.shutting_down = true;
        self.abort_reload("the cluster is shutting down");
        p.shutdown(self.opts.shutdown_timeout)
    }

    fn abort_reload(&mut self, reason: &str) {
        if let Some(r) = self.reload.take() {
            self.events.push_back(SupervisorEvent::Reload(ReloadReport {
                ok: false,
                replaced: r.replaced,
                reason: Some(reason.into()),
                duration: r.started.elapsed(),
            }));
        }
    }

    /// A snapshot of every worker's figures.
    pub fn metrics(&self, p: &Primary) -> Metrics {
        let mut workers = Vec::new();
        for (&id, w) in &self.workers {
            let Some(info) = p.worker(id) else { continue };
            let (rss_bytes, cpu_seconds) = sys::proc_stats(info.pid).unwrap_or((0, 0.0));
            let s = &self.slots[w.slot];
            workers.push(WorkerMetrics {
                slot: w.slot,
                id,
                pid: info.pid,
                state: match w.role {
                    Role::Draining => "draining",
                    _ if !info.connected => "disconnected",
                    _ if w.listening || w.ready => "ready",
                    _ => "starting",
                },
                handed_off: info.handed_off,
                refused: info.refused,
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

    fn publish(&mut self, p: &Primary) {
        if let Some(e) = &self.endpoint {
            e.publish(self.metrics(p).to_prometheus());
            self.last_publish = Some(Instant::now());
        }
    }
}

fn describe(s: ExitStatus) -> String {
    match (s.code, s.signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "exited".into(),
    }
}
