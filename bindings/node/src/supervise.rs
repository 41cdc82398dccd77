//! The supervisor's options, events and metrics as JS sees them. index.js validates the
//! user's nested options (names, types, ranges) and passes them flat, in milliseconds.

use crate::events::{kind, Event};
use crate::{Failure, Result};
use corral_core::supervisor::metrics::Metrics;
use corral_core::supervisor::{
    Cause, HeartbeatOptions, RecycleOptions, ReloadOptions, RestartOptions,
};
use corral_core::{ExitStatus, SupervisorEvent, SupervisorOptions};
use napi_derive::napi;
use std::collections::HashMap;
use std::time::Duration;

/// Flat supervisor options (index.js builds them from `supervise({...})`).
#[napi(object)]
pub struct JsSupervisorOptions {
    pub workers: f64,
    pub initial_delay: f64,
    pub max_delay: f64,
    pub factor: f64,
    pub jitter: f64,
    pub reset_after: f64,
    pub crash_loop_exits: f64,
    pub crash_loop_window: f64,
    pub no_restart_exit_codes: Vec<i32>,
    pub shutdown_timeout: f64,
    pub ready_timeout: f64,
    pub probation: f64,
    pub batch: f64,
    pub wait_ready: bool,
    pub heartbeat_interval: Option<f64>,
    pub heartbeat_timeout: Option<f64>,
    pub max_rss: Option<f64>,
    pub max_connections: Option<f64>,
    pub recycle_jitter: f64,
    pub metrics_host: Option<String>,
    pub metrics_port: Option<u32>,
}

fn invalid(e: corral_core::Error) -> Failure {
    Failure::from_option_error(e)
}

impl JsSupervisorOptions {
    /// Converts JS numbers with the engine's checks ([`corral_core::limits`]): the ranges live
    /// there, once, for C and Node; the error names the option.
    pub fn into_core(self) -> Result<SupervisorOptions> {
        use corral_core::limits::{count_f64, duration_ms, MAX_COUNT, MAX_WORKERS};
        let ms = |name: &str, v: f64| -> Result<Duration> { duration_ms(name, v).map_err(invalid) };
        let count = |name: &str, v: f64, hi: u64| -> Result<u64> {
            count_f64(name, v, 1, hi).map_err(invalid)
        };
        let metrics = match (self.metrics_host, self.metrics_port) {
            (host, Some(port)) => {
                let host = host.unwrap_or_else(|| "127.0.0.1".into());
                let ip: std::net::IpAddr = host.parse().map_err(|_| {
                    Failure::invalid_option(
                        "metrics.host",
                        format!("{host:?} is not an IP address"),
                    )
                })?;
                Some(std::net::SocketAddr::new(ip, port as u16))
            }
            _ => None,
        };
        let workers = MAX_WORKERS as u64;
        let o = SupervisorOptions {
            workers: count("workers", self.workers, workers)? as usize,
            restart: RestartOptions {
                initial_delay: ms("restart.initialDelay", self.initial_delay)?,
                max_delay: ms("restart.maxDelay", self.max_delay)?,
                factor: self.factor,
                jitter: self.jitter,
                reset_after: ms("restart.resetAfter", self.reset_after)?,
                crash_loop_exits: count(
                    "restart.crashLoop.exits",
                    self.crash_loop_exits,
                    u32::MAX as u64,
                )? as u32,
                crash_loop_window: ms("restart.crashLoop.window", self.crash_loop_window)?,
                no_restart_exit_codes: self.no_restart_exit_codes,
            },
            shutdown_timeout: ms("shutdown.timeout", self.shutdown_timeout)?,
            reload: ReloadOptions {
                ready_timeout: ms("reload.readyTimeout", self.ready_timeout)?,
                probation: ms("reload.probation", self.probation)?,
                batch: count("reload.batch", self.batch, workers)? as usize,
                wait_ready: self.wait_ready,
            },
            heartbeat: match (self.heartbeat_interval, self.heartbeat_timeout) {
                (Some(i), Some(t)) => Some(HeartbeatOptions {
                    interval: ms("heartbeat.interval", i)?,
                    timeout: ms("heartbeat.timeout", t)?,
                }),
                _ => None,
            },
            recycle: RecycleOptions {
                max_rss: self
                    .max_rss
                    .map(|v| count("recycle.maxRss", v, MAX_COUNT))
                    .transpose()?,
                max_connections: self
                    .max_connections
                    .map(|v| count("recycle.maxConnections", v, MAX_COUNT))
                    .transpose()?,
                jitter: self.recycle_jitter,
            },
            metrics,
        };
        o.validate().map_err(invalid)?;
        Ok(o)
    }
}

/// A worker's exit status.
#[napi(object, use_nullable = true)]
pub struct JsExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl From<&ExitStatus> for JsExit {
    fn from(s: &ExitStatus) -> JsExit {
        JsExit {
            code: s.code,
            signal: s.signal,
        }
    }
}

/// Why a worker was restarted: `{type, exit}` (boot, crash), `{type: 'recycle', reason}`, or
/// `{type}` (hang, reload, channel).
#[napi(discriminant = "type", discriminant_case = "lowercase")]
pub enum JsCause {
    Boot { exit: JsExit },
    Crash { exit: JsExit },
    Hang,
    Recycle { reason: String },
    Reload,
    Channel,
}

impl From<Cause> for JsCause {
    fn from(c: Cause) -> JsCause {
        match c {
            Cause::Boot(s) => JsCause::Boot { exit: (&s).into() },
            Cause::Crash(s) => JsCause::Crash { exit: (&s).into() },
            Cause::Hang => JsCause::Hang,
            Cause::Recycle(reason) => JsCause::Recycle { reason },
            Cause::Reload => JsCause::Reload,
            Cause::Channel => JsCause::Channel,
        }
    }
}

/// A supervisor event as lib/supervisor.js gets it: `type` names the event it emits (`scaled`
/// is emitted as `'scale'`), the other fields are its argument. Times in milliseconds.
#[napi(
    discriminant = "type",
    discriminant_case = "lowercase",
    use_nullable = true
)]
pub enum JsSupervisorEvent {
    Restart {
        slot: u32,
        worker: u32,
        previous: Option<u32>,
        cause: JsCause,
        delay: f64,
    },
    CrashLoop {
        slot: u32,
        exits: Vec<JsExit>,
    },
    NoRestart {
        slot: u32,
        worker: u32,
        exit: JsExit,
    },
    Hang {
        slot: u32,
        worker: u32,
        silent_for: f64,
    },
    Recycle {
        slot: u32,
        worker: u32,
        reason: String,
    },
    Reload {
        ok: bool,
        replaced: u32,
        reason: Option<String>,
        duration: f64,
    },
    Scaled {
        from: u32,
        to: u32,
    },
}

fn ms(d: Duration) -> f64 {
    d.as_millis() as f64
}

/// A supervisor event for JS: a SUPERVISOR event carrying the [`JsSupervisorEvent`].
pub fn convert(ev: SupervisorEvent) -> Event {
    let event = match ev {
        SupervisorEvent::Restart {
            slot,
            worker,
            previous,
            cause,
            delay,
        } => JsSupervisorEvent::Restart {
            slot: slot as u32,
            worker: worker as u32,
            previous: previous.map(|p| p as u32),
            cause: cause.into(),
            delay: ms(delay),
        },
        SupervisorEvent::CrashLoop { slot, exits } => JsSupervisorEvent::CrashLoop {
            slot: slot as u32,
            exits: exits.iter().map(JsExit::from).collect(),
        },
        SupervisorEvent::NoRestart {
            slot,
            worker,
            status,
        } => JsSupervisorEvent::NoRestart {
            slot: slot as u32,
            worker: worker as u32,
            exit: (&status).into(),
        },
        SupervisorEvent::Hang {
            slot,
            worker,
            silent_for,
        } => JsSupervisorEvent::Hang {
            slot: slot as u32,
            worker: worker as u32,
            silent_for: ms(silent_for),
        },
        SupervisorEvent::Recycle {
            slot,
            worker,
            reason,
        } => JsSupervisorEvent::Recycle {
            slot: slot as u32,
            worker: worker as u32,
            reason,
        },
        SupervisorEvent::Reload(r) => JsSupervisorEvent::Reload {
            ok: r.ok,
            replaced: r.replaced as u32,
            reason: r.reason,
            duration: ms(r.duration),
        },
        SupervisorEvent::Scaled { from, to } => JsSupervisorEvent::Scaled {
            from: from as u32,
            to: to as u32,
        },
    };
    Event {
        kind: kind::SUPERVISOR,
        supervisor: Some(Box::new(event)),
        ..Default::default()
    }
}

/// One worker's figures.
#[napi(object)]
pub struct JsWorkerMetrics {
    pub slot: u32,
    pub id: u32,
    pub pid: i32,
    pub state: String,
    pub handed_off: f64,
    pub refused: f64,
    pub taken_back: f64,
    pub inflight: u32,
    pub active: Option<u32>,
    pub restarts: f64,
    pub last_restart_cause: Option<String>,
    pub uptime: f64,
    pub rss: f64,
    pub cpu: f64,
}

/// The metrics snapshot.
#[napi(object)]
pub struct JsMetrics {
    pub workers: Vec<JsWorkerMetrics>,
    pub restarts: HashMap<String, f64>,
    pub crash_looping_slots: Vec<u32>,
    pub reloads: f64,
    pub endpoint: Option<String>,
}

impl JsMetrics {
    pub fn new(m: &Metrics, endpoint: Option<std::net::SocketAddr>) -> JsMetrics {
        JsMetrics {
            workers: m
                .workers
                .iter()
                .map(|w| JsWorkerMetrics {
                    slot: w.slot as u32,
                    id: w.id as u32,
                    pid: w.pid,
                    state: w.state.to_string(),
                    handed_off: w.handed_off as f64,
                    refused: w.refused as f64,
                    taken_back: w.taken_back as f64,
                    inflight: w.inflight,
                    active: w.active,
                    restarts: w.restarts as f64,
                    last_restart_cause: w.last_restart_cause.clone(),
                    uptime: w.uptime_seconds,
                    rss: w.rss_bytes as f64,
                    cpu: w.cpu_seconds,
                })
                .collect(),
            restarts: m
                .restarts_by_cause
                .iter()
                .map(|(k, v)| (k.clone(), *v as f64))
                .collect(),
            crash_looping_slots: m.crash_looping_slots.iter().map(|&s| s as u32).collect(),
            reloads: m.reloads as f64,
            endpoint: endpoint.map(|a| a.to_string()),
        }
    }
}
