//! Options of a supervisor: [`SupervisorOptions`] and its parts (reload, heartbeat, recycle;
//! restart delays live in `backoff`), their defaults, and `validate`, which names the bad option.

use super::RestartOptions;
use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::time::Duration;

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
    /// in [`metrics::endpoint`](super::metrics::endpoint)); off when `None`.
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
        let bad = |name: &str, why: &str| Err(Error::invalid_option(name, why));
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
