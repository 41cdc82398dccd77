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
    Failure::new("ERR_CORRAL_INVALID_OPTION", e.message())
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
                    Failure::new(
                        "ERR_CORRAL_INVALID_OPTION",
                        format!("metrics.host: {host:?} is not an IP address"),
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

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn status_json(s: &ExitStatus) -> String {
    let num = |v: Option<i32>| v.map_or("null".to_string(), |x| x.to_string());
    format!("{{\"code\":{},\"signal\":{}}}", num(s.code), num(s.signal))
}

fn cause_json(c: &Cause) -> String {
    match c {
        Cause::Boot(s) | Cause::Crash(s) => format!(
            "{{\"type\":{},\"exit\":{}}}",
            json_str(c.label()),
            status_json(s)
        ),
        Cause::Recycle(r) => format!("{{\"type\":\"recycle\",\"reason\":{}}}", json_str(r)),
        other => format!("{{\"type\":{}}}", json_str(other.label())),
    }
}

/// A supervisor event for JS: `message` holds `{type, ...}` as JSON.
pub fn convert(ev: SupervisorEvent) -> Event {
    let msg = match ev {
        SupervisorEvent::Restart { slot, worker, previous, cause, delay } => format!(
            "{{\"type\":\"restart\",\"slot\":{slot},\"worker\":{worker},\"previous\":{},\"cause\":{},\"delay\":{}}}",
            previous.map_or("null".into(), |p| p.to_string()),
            cause_json(&cause),
            delay.as_millis()
        ),
        SupervisorEvent::CrashLoop { slot, exits } => format!(
            "{{\"type\":\"crashloop\",\"slot\":{slot},\"exits\":[{}]}}",
            exits.iter().map(status_json).collect::<Vec<_>>().join(",")
        ),
        SupervisorEvent::NoRestart { slot, worker, status } => format!(
            "{{\"type\":\"norestart\",\"slot\":{slot},\"worker\":{worker},\"exit\":{}}}",
            status_json(&status)
        ),
        SupervisorEvent::Hang { slot, worker, silent_for } => format!(
            "{{\"type\":\"hang\",\"slot\":{slot},\"worker\":{worker},\"silentFor\":{}}}",
            silent_for.as_millis()
        ),
        SupervisorEvent::Recycle { slot, worker, reason } => format!(
            "{{\"type\":\"recycle\",\"slot\":{slot},\"worker\":{worker},\"reason\":{}}}",
            json_str(&reason)
        ),
        SupervisorEvent::Reload(r) => format!(
            "{{\"type\":\"reload\",\"ok\":{},\"replaced\":{},\"reason\":{},\"duration\":{}}}",
            r.ok,
            r.replaced,
            r.reason.as_deref().map_or("null".into(), json_str),
            r.duration.as_millis()
        ),
        SupervisorEvent::Scaled { from, to } => format!("{{\"type\":\"scaled\",\"from\":{from},\"to\":{to}}}"),
    };
    Event {
        kind: kind::SUPERVISOR,
        message: Some(msg),
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
