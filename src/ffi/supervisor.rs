//! `corral_supervisor_options` and the supervisor calls on a primary: keep N workers alive
//! (backoff, crash-loop breaker), roll them over without losing connections, watch for hangs,
//! recycle, scale, and report metrics. Exec mode only: workers are started with the program
//! of `corral_options_set_exec` (a forked child could not return into the loop).

use super::boundary::{c_str, copy_out, guard, handle_mut, handle_ref, non_null, write_out};
use super::error::corral_status;
use super::primary::corral_primary;
use corral_core::supervisor::{HeartbeatOptions, RestartOptions};
use corral_core::{Error, SupervisorOptions};
use std::ffi::c_char;
use std::time::Duration;

/// Supervisor options (opaque builder). Create with `corral_supervisor_options_new`, free with
/// `corral_supervisor_options_free`. Defaults: one worker per CPU, restart backoff 100 ms x2
/// up to 30 s with 20% jitter reset after 30 s, crash loop at 5 exits in 60 s, shutdown
/// deadline 30 s, reload with a 10 s readiness deadline, 1 s probation, batches of 1; no
/// heartbeat watchdog, no recycling, no metrics endpoint.
pub struct corral_supervisor_options {
    pub(crate) o: SupervisorOptions,
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(v as u64)
}

/// Creates supervisor options with the defaults.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_supervisor_options_new(
    out: *mut *mut corral_supervisor_options,
) -> corral_status {
    guard(|| {
        non_null(out, "out")?;
        let b = Box::new(corral_supervisor_options {
            o: SupervisorOptions::default(),
        });
        // SAFETY: non-NULL, writable by contract.
        unsafe { write_out(out, Box::into_raw(b)) };
        Ok(())
    })
}

/// Frees supervisor options. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn corral_supervisor_options_free(o: *mut corral_supervisor_options) {
    // SAFETY: created by corral_supervisor_options_new, freed once by contract.
    unsafe { super::boundary::free_box(o) }
}

fn with(
    o: *mut corral_supervisor_options,
    f: impl FnOnce(&mut SupervisorOptions) -> Result<(), Error>,
) -> corral_status {
    guard(|| {
        // SAFETY: NULL or a live handle by contract.
        let h = unsafe { handle_mut(o, "options") }?;
        f(&mut h.o)
    })
}

/// Workers to keep alive: 1 to 4096; 0 means one per CPU (cgroup-aware). A larger number
/// returns `CORRAL_STATUS_INVALID_ARGUMENT` and leaves the options unchanged.
///
/// Every numeric supervisor option has a documented range, the same in C and Node: durations
/// 0 ms to 7 days, `factor` 1 to 1000, jitters 0 to 1 (see corral-core's `limits`). The
/// setters store what they are given; `corral_primary_supervise` checks the whole set and
/// returns `CORRAL_STATUS_INVALID_ARGUMENT` naming the first option out of range.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_supervisor_options_set_workers(
    o: *mut corral_supervisor_options,
    workers: u32,
) -> corral_status {
    with(o, |o| {
        o.workers = if workers == 0 {
            corral_core::available_parallelism()
        } else {
            use corral_core::limits::{check_count, MAX_WORKERS};
            check_count("workers", workers as u64, 1, MAX_WORKERS as u64)?;
            workers as usize
        };
        Ok(())
    })
}

/// Restart backoff: first delay, ceiling, growth factor (>= 1), jitter (0..1), and the uptime
/// after which a worker counts as stable (its crash restarts at the first delay again).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_supervisor_options_set_restart(
    o: *mut corral_supervisor_options,
    initial_delay_ms: u32,
    max_delay_ms: u32,
    factor: f64,
    jitter: f64,
    reset_after_ms: u32,
) -> corral_status {
    with(o, |o| {
        o.restart = RestartOptions {
            initial_delay: ms(initial_delay_ms),
            max_delay: ms(max_delay_ms),
            factor,
            jitter,
            reset_after: ms(reset_after_ms),
            ..o.restart.clone()
        };
        Ok(())
    })
}

/// The crash-loop breaker: `exits` unstable exits of one slot within `window_ms` stop the fast
/// respawning (the slot retries at the maximum delay; `CORRAL_EVENT_CRASH_LOOP` reports it).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_supervisor_options_set_crash_loop(
    o: *mut corral_supervisor_options,
    exits: u32,
    window_ms: u32,
) -> corral_status {
    with(o, |o| {
        o.restart.crash_loop_exits = exits;
        o.restart.crash_loop_window = ms(window_ms);
        Ok(())
    })
}

/// A worker exiting with `code` is not restarted (`CORRAL_EVENT_NO_RESTART`).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_supervisor_options_add_no_restart_exit_code(
    o: *mut corral_supervisor_options,
    code: i32,
) -> corral_status {
    with(o, |o| {
        if !(0..=255).contains(&code) {
            return Err(Error::invalid(format!(
                "no-restart exit code {code} is not 0-255"
            )));
        }
        o.restart.no_restart_exit_codes.push(code);
        Ok(())
    })
}

/// Deadline of a graceful shutdown (`corral_primary_shutdown` uses its own argument; this one
/// is for shutdowns started by a signal through the supervisor).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_supervisor_options_set_shutdown_timeout(
    o: *mut corral_supervisor_options,
    timeout_ms: u32,
) -> corral_status {
    with(o, |o| {
        o.shutdown_timeout = ms(timeout_ms);
        Ok(())
    })
}

/// Rolling reload: a new worker must listen (or, with `wait_ready`, call
/// `corral_worker_ready`) within `ready_timeout_ms`, then stay up `probation_ms` before its
/// predecessor drains; `batch` workers at a time.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_supervisor_options_set_reload(
    o: *mut corral_supervisor_options,
    ready_timeout_ms: u32,
    probation_ms: u32,
    batch: u32,
    wait_ready: bool,
) -> corral_status {
    with(o, |o| {
        o.reload.ready_timeout = ms(ready_timeout_ms);
        o.reload.probation = ms(probation_ms);
        o.reload.batch = batch as usize;
        o.reload.wait_ready = wait_ready;
        Ok(())
    })
}

/// Hang watchdog: workers call `corral_worker_heartbeat` every `interval_ms`; one silent for
/// `timeout_ms` is killed and replaced (`CORRAL_EVENT_HANG`). The interval is passed to exec'd
/// workers in `CORRAL_HEARTBEAT_MS`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_supervisor_options_set_heartbeat(
    o: *mut corral_supervisor_options,
    interval_ms: u32,
    timeout_ms: u32,
) -> corral_status {
    with(o, |o| {
        o.heartbeat = Some(HeartbeatOptions {
            interval: ms(interval_ms),
            timeout: ms(timeout_ms),
        });
        Ok(())
    })
}

/// Recycling: replace a worker over `max_rss_bytes` of resident memory or after
/// `max_connections` handed to it (+/- `jitter`); 0 disables a limit. One at a time, drained.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_supervisor_options_set_recycle(
    o: *mut corral_supervisor_options,
    max_rss_bytes: u64,
    max_connections: u64,
    jitter: f64,
) -> corral_status {
    with(o, |o| {
        o.recycle.max_rss = (max_rss_bytes > 0).then_some(max_rss_bytes);
        o.recycle.max_connections = (max_connections > 0).then_some(max_connections);
        o.recycle.jitter = jitter;
        Ok(())
    })
}

/// Serves Prometheus text on `host:port` (an IP literal; use "127.0.0.1" unless you mean to
/// expose it; port 0 picks one, see `corral_primary_metrics_port`).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_supervisor_options_set_metrics(
    o: *mut corral_supervisor_options,
    host: *const c_char,
    port: u16,
) -> corral_status {
    with(o, |o| {
        // SAFETY: NUL-terminated string by contract.
        let h = unsafe { c_str(host, "host") }?;
        let ip: std::net::IpAddr = h
            .parse()
            .map_err(|_| Error::invalid(format!("metrics host {h:?} is not an IP address")))?;
        o.metrics = Some(std::net::SocketAddr::new(ip, port));
        Ok(())
    })
}

/// Starts supervising: validates the options (the message names a bad one), starts the
/// metrics endpoint if asked, and starts the workers (exec mode). Events arrive through the
/// primary's callback (`CORRAL_EVENT_RESTART` ...). Once per primary.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for bad options, `CORRAL_STATUS_WRONG_STATE`
/// without `corral_options_set_exec` or when already supervising, `CORRAL_STATUS_OS_ERROR` if
/// a worker or the endpoint cannot start.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_supervise(
    p: *mut corral_primary,
    o: *const corral_supervisor_options,
) -> corral_status {
    guard(|| {
        // SAFETY: NULL or live handles by contract.
        let (h, so) = unsafe { (handle_mut(p, "primary")?, handle_ref(o, "options")?) };
        h.supervise(so.o.clone())
    })
}

/// Starts a rolling reload of every supervised worker. Its end is reported by
/// `CORRAL_EVENT_RELOAD`. `CORRAL_STATUS_WRONG_STATE` while one runs or without a supervisor.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_reload(p: *mut corral_primary) -> corral_status {
    guard(|| {
        // SAFETY: NULL or a live handle by contract.
        let h = unsafe { handle_mut(p, "primary") }?;
        h.with_supervisor(|s, p| s.reload(p))
    })
}

/// Changes the number of supervised workers (1 to 4096; else `CORRAL_STATUS_INVALID_ARGUMENT`):
/// new ones start now, removed ones drain gracefully. `CORRAL_EVENT_SCALED` follows.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_scale(
    p: *mut corral_primary,
    workers: u32,
) -> corral_status {
    guard(|| {
        // SAFETY: NULL or a live handle by contract.
        let h = unsafe { handle_mut(p, "primary") }?;
        h.with_supervisor(|s, p| s.scale(p, workers as usize))
    })
}

/// Copies the supervisor's metrics, in Prometheus text, into `buf` with snprintf semantics;
/// returns the full length (0 without a supervisor).
#[no_mangle]
pub unsafe extern "C" fn corral_primary_metrics_text(
    p: *mut corral_primary,
    buf: *mut c_char,
    len: usize,
) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: a live handle by contract.
    let text = super::boundary::guard_value(String::new(), || unsafe { &*p }.metrics_text());
    // SAFETY: `buf` has `len` writable bytes by contract.
    unsafe { copy_out(&text, buf, len) }
}

/// The port of the metrics endpoint (0 if none).
#[no_mangle]
pub unsafe extern "C" fn corral_primary_metrics_port(p: *const corral_primary) -> u16 {
    if p.is_null() {
        return 0;
    }
    // SAFETY: a live handle by contract.
    super::boundary::guard_value(0, || unsafe { &*p }.metrics_port())
}
