//! `corral_primary`: the primary side, driven by a blocking `corral_primary_run` or embedded in
//! another event loop (`corral_primary_fd` + `corral_primary_dispatch`).

use super::boundary::{guard, guard_value, handle_mut, handle_ref, message, non_null, write_out};
use super::error::corral_status;
use super::event::{corral_event, corral_event_callback};
use super::options::corral_options;
use super::worker::corral_worker;
use corral_core::{
    Cluster, ClusterEvent, Error, ErrorKind, Event, Forked, Primary, Supervisor, SupervisorOptions,
};
use std::ffi::c_void;
use std::time::Duration;

/// A primary (opaque). Create with `corral_primary_new`, free with `corral_primary_free`.
/// Use it from one thread at a time (the one that created it, if it forks workers: they die
/// with that thread).
pub struct corral_primary {
    cluster: Cluster,
    callback: corral_event_callback,
    userdata: usize,
    stop: bool,
    /// Inside `corral_primary_run` or `corral_primary_dispatch` (see [`Running`]).
    running: bool,
}

/// Marks a primary as inside its loop while alive (also when the loop returns early or
/// unwinds). A nested run from the event callback used to take the outer loop's events,
/// `CORRAL_EVENT_SHUTDOWN_COMPLETE` included, and the outer run then waited forever.
struct Running(*mut corral_primary);

impl Running {
    /// # Safety
    /// `p` is a live handle; no borrow of it is held across this call.
    unsafe fn enter(p: *mut corral_primary, what: &str) -> Result<Running, Error> {
        // SAFETY: live by contract; this borrow ends here.
        let h = unsafe { &mut *p };
        if h.running {
            return Err(Error::wrong_state(format!(
                "{what}: already running on this primary (called from its event callback?)"
            )));
        }
        h.running = true;
        Ok(Running(p))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: the handle outlives its loop (freeing it from its callback is forbidden), and
        // no other borrow of it is live when the loop ends.
        unsafe { (*self.0).running = false };
    }
}

impl corral_primary {
    pub(crate) fn supervise(&mut self, opts: SupervisorOptions) -> Result<(), Error> {
        let env: Vec<(String, String)> = opts
            .heartbeat
            .as_ref()
            .map(|h| {
                vec![(
                    corral_core::ENV_HEARTBEAT.to_string(),
                    h.interval.as_millis().to_string(),
                )]
            })
            .unwrap_or_default();
        let spawn = Box::new(move |p: &mut Primary, _slot: usize| p.spawn_worker(&env));
        self.cluster.supervise(opts, spawn)
    }

    pub(crate) fn with_supervisor(
        &mut self,
        f: impl FnOnce(&mut Supervisor, &mut Primary) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.cluster.supervisor().is_none() {
            return Err(Error::wrong_state("call corral_primary_supervise first"));
        }
        self.cluster.with_supervisor(f)
    }

    pub(crate) fn metrics_text(&self) -> String {
        self.cluster.supervisor().map_or_else(String::new, |s| {
            s.metrics(self.cluster.primary()).to_prometheus()
        })
    }

    pub(crate) fn metrics_port(&self) -> u16 {
        self.cluster
            .supervisor()
            .and_then(|s| s.metrics_addr())
            .map_or(0, |a| a.port())
    }

    fn primary(&mut self) -> &mut Primary {
        self.cluster.primary_mut()
    }
}

/// Creates a primary from `opts` (copied; `opts` may be freed afterwards) and writes it to
/// `*out`. With shutdown signals enabled this installs SIGINT/SIGTERM handlers.
///
/// Returns `CORRAL_STATUS_OK`; `CORRAL_STATUS_INVALID_ARGUMENT` for NULL or a bad
/// `CORRAL_SCHED_POLICY` value in the environment; `CORRAL_STATUS_OS_ERROR` if the poller or
/// the signal handlers cannot be set up.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_new(
    opts: *const corral_options,
    out: *mut *mut corral_primary,
) -> corral_status {
    guard(|| {
        // SAFETY: NULL or a live options handle by contract.
        let o = unsafe { handle_ref(opts, "opts") }?;
        non_null(out, "out")?;
        let h = Box::new(corral_primary {
            cluster: Cluster::new(o.opts.clone())?,
            callback: o.callback,
            userdata: o.userdata,
            stop: false,
            running: false,
        });
        // SAFETY: non-NULL, writable by contract.
        unsafe { write_out(out, Box::into_raw(h)) };
        Ok(())
    })
}

/// Frees a primary: remaining workers are SIGKILLed and reaped, Unix socket files it created
/// are removed, signal handlers it installed are restored. NULL is a no-op. Must not be called
/// from its own event callback. In a forked worker, only frees the memory of its copy.
#[no_mangle]
pub unsafe extern "C" fn corral_primary_free(p: *mut corral_primary) {
    // SAFETY: created by corral_primary_new and freed once by contract.
    unsafe { super::boundary::free_box(p) }
}

fn with_primary(
    p: *mut corral_primary,
    f: impl FnOnce(&mut corral_primary) -> Result<(), Error>,
) -> corral_status {
    guard(|| {
        // SAFETY: NULL or a live primary handle by contract.
        let h = unsafe { handle_mut(p, "primary") }?;
        f(h)
    })
}

/// The scheduling policy in effect (a `CORRAL_POLICY_*` value), after the
/// `CORRAL_SCHED_POLICY` override. (Under `CORRAL_POLICY_KERNEL_RR` an address may still run
/// rr: see `CORRAL_EVENT_WARNING`.) `CORRAL_POLICY_RR` for NULL.
#[no_mangle]
pub unsafe extern "C" fn corral_primary_policy(p: *const corral_primary) -> u32 {
    super::boundary::guard_value(super::options::CORRAL_POLICY_RR, || {
        if p.is_null() {
            return super::options::CORRAL_POLICY_RR;
        }
        // SAFETY: a live handle by contract.
        super::options::policy_value(unsafe { &(*p).cluster }.primary().policy())
    })
}

/// Forks a worker (prefork). In the primary, writes the new worker's id to `*id_out` and NULL
/// to `*worker_out`. In the child, writes the child's own id and a new `corral_worker` (free it
/// with `corral_worker_free`); the child's copy of the primary is then unusable (calls return
/// `CORRAL_STATUS_WRONG_STATE`; `corral_primary_free` only frees memory). Its listeners,
/// channels and poller are closed in the child; the rest of memory is the primary's.
///
/// Returns `CORRAL_STATUS_WRONG_STATE` when the process has more than one thread (fork is only
/// safe single-threaded: use exec mode there) or during shutdown; `CORRAL_STATUS_OS_ERROR` if
/// fork fails.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_fork(
    p: *mut corral_primary,
    id_out: *mut u64,
    worker_out: *mut *mut corral_worker,
) -> corral_status {
    with_primary(p, |h| {
        non_null(id_out, "id_out")?;
        non_null(worker_out, "worker_out")?;
        match h.primary().fork_worker()? {
            Forked::Primary(id) => {
                // SAFETY: both checked non-NULL above, writable by contract.
                unsafe {
                    write_out(id_out, id);
                    write_out(worker_out, std::ptr::null_mut());
                }
            }
            Forked::Worker(w) => {
                let id = w.id();
                let cw = Box::into_raw(Box::new(corral_worker::new(*w)));
                // SAFETY: as above.
                unsafe {
                    write_out(id_out, id);
                    write_out(worker_out, cw);
                }
            }
        }
        Ok(())
    })
}

/// Starts a worker in exec mode (see `corral_options_set_exec`) and writes its id to `*id_out`.
/// The program finds its role with `corral_worker_from_env`.
///
/// Returns `CORRAL_STATUS_WRONG_STATE` without an exec program or during shutdown,
/// `CORRAL_STATUS_OS_ERROR` if the program cannot be started.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_spawn(
    p: *mut corral_primary,
    id_out: *mut u64,
) -> corral_status {
    with_primary(p, |h| {
        non_null(id_out, "id_out")?;
        let id = h.primary().spawn_worker(&[])?;
        // SAFETY: non-NULL, writable by contract.
        unsafe { write_out(id_out, id) };
        Ok(())
    })
}

/// Sends `len` bytes to a worker (at most 64 MiB). Never blocks: what the socket cannot take now
/// is copied into the worker's queue and sent in order by later dispatches. The queue is
/// bounded (`corral_options_set_send_queue_limit`, 16 MiB by default): past it the call returns
/// `CORRAL_STATUS_WOULD_BLOCK`, copies nothing, and `CORRAL_EVENT_DRAIN` for that worker
/// follows once its queue is down to half; a message is always taken when the queue is empty.
/// `data` is not kept after the call. Call it from the primary's thread, also from the callback.
///
/// Returns `CORRAL_STATUS_OK`; `CORRAL_STATUS_WOULD_BLOCK`; `CORRAL_STATUS_NO_SUCH_WORKER`;
/// `CORRAL_STATUS_DISCONNECTED` once the worker's channel is closed (it disconnected or
/// exited); `CORRAL_STATUS_TOO_LARGE` when `len` is above 64 MiB (checked before `data` is
/// read; the message names the limit); `CORRAL_STATUS_INVALID_ARGUMENT` for NULL `data` with
/// `len` > 0; `CORRAL_STATUS_WRONG_STATE` in a forked worker's copy.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_send(
    p: *mut corral_primary,
    worker_id: u64,
    data: *const u8,
    len: usize,
) -> corral_status {
    with_primary(p, |h| {
        // SAFETY: `len` readable bytes by contract; `len` is checked before the read.
        let d = unsafe { message(data, len, "data") }?;
        h.primary().send_tracked(worker_id, d, Vec::new()).map(drop)
    })
}

/// Sends `signal` to a worker's process, and nothing else.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_kill(
    p: *mut corral_primary,
    worker_id: u64,
    signal: i32,
) -> corral_status {
    with_primary(p, |h| {
        if !(0..=64).contains(&signal) {
            return Err(Error::invalid(format!("signal {signal} is out of range")));
        }
        h.primary().kill(worker_id, signal)
    })
}

/// Asks a worker to disconnect gracefully: no new connections from now on; it receives
/// `CORRAL_WORKER_EVENT_DISCONNECT`, finishes its work, disconnects and exits. Its `EXIT`
/// event then has `corral_event_exited_after_disconnect` true.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_disconnect(
    p: *mut corral_primary,
    worker_id: u64,
) -> corral_status {
    with_primary(p, |h| h.primary().disconnect(worker_id))
}

/// Starts a graceful shutdown: listeners close, every worker is asked to disconnect, those
/// still running after `timeout_ms` are SIGKILLed. `CORRAL_EVENT_SHUTDOWN_COMPLETE` reports the
/// end (and `corral_primary_run` returns). Calling it again can only shorten the deadline.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_shutdown(
    p: *mut corral_primary,
    timeout_ms: u32,
) -> corral_status {
    with_primary(p, |h| {
        // A supervisor sees the shutdown on its next tick and stops restarting.
        h.primary()
            .shutdown(Duration::from_millis(timeout_ms as u64))
    })
}

/// Makes `corral_primary_run` return after the current event (from a callback or a signal
/// handler's flag check in your code).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_stop(p: *mut corral_primary) -> corral_status {
    with_primary(p, |h| {
        h.stop = true;
        Ok(())
    })
}

/// A pollable fd (readable when `corral_primary_dispatch` has work), for embedding in another
/// event loop. Owned by the primary: do not close it. -1 for NULL or a forked child's copy.
#[no_mangle]
pub unsafe extern "C" fn corral_primary_fd(p: *const corral_primary) -> i32 {
    if p.is_null() {
        return -1;
    }
    // SAFETY: a live handle by contract.
    guard_value(-1, || unsafe { &(*p).cluster }.poll_fd())
}

/// How long an embedding loop may wait before calling `corral_primary_dispatch` even if the fd
/// is not readable: milliseconds (rounded up), or -1 for no deadline.
#[no_mangle]
pub unsafe extern "C" fn corral_primary_timeout_ms(p: *const corral_primary) -> i32 {
    if p.is_null() {
        return -1;
    }
    // SAFETY: a live handle by contract.
    guard_value(-1, || match unsafe { &*p }.cluster.next_timeout() {
        None => -1,
        Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
    })
}

/// Number of workers not yet reaped.
#[no_mangle]
pub unsafe extern "C" fn corral_primary_worker_count(p: *const corral_primary) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: a live handle by contract.
    guard_value(0, || unsafe { &(*p).cluster }.primary().worker_ids().len())
}

/// Writes a worker's pid, connections handed to it so far, and connections in flight (sent,
/// not yet taken) to the non-NULL out-params.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_worker_stats(
    p: *const corral_primary,
    worker_id: u64,
    pid_out: *mut i32,
    handed_off_out: *mut u64,
    inflight_out: *mut u32,
) -> corral_status {
    guard(|| {
        // SAFETY: NULL or a live handle by contract.
        let h = unsafe { handle_ref(p, "primary") }?;
        let w = h
            .cluster
            .primary()
            .worker(worker_id)
            .ok_or_else(|| Error::no_such_worker(worker_id))?;
        // SAFETY: each out-param is NULL (skipped) or writable by contract.
        unsafe {
            if !pid_out.is_null() {
                write_out(pid_out, w.pid);
            }
            if !handed_off_out.is_null() {
                write_out(handed_off_out, w.handed_off);
            }
            if !inflight_out.is_null() {
                write_out(inflight_out, w.inflight);
            }
        }
        Ok(())
    })
}

/// `corral_primary_worker_counter`: connections handed to the worker so far (refused and
/// taken-back ones count too).
pub const CORRAL_WORKER_COUNTER_HANDED_OFF: u32 = 1;
/// Connections in flight: sent to the worker, not taken yet.
pub const CORRAL_WORKER_COUNTER_INFLIGHT: u32 = 2;
/// Connections the worker handed back (`corral_worker_refuse`), dealt to others.
pub const CORRAL_WORKER_COUNTER_REFUSED: u32 = 3;
/// Connections read back unread from its channel when it stalled (a blocked loop, or
/// stopped) and dealt to others (`corral_options_set_stall_timeout`).
pub const CORRAL_WORKER_COUNTER_TAKEN_BACK: u32 = 4;
/// 1 while it is stalled (dealt nothing until it reads again), else 0.
pub const CORRAL_WORKER_COUNTER_STALLED: u32 = 5;
/// 1 once it said it is ready (`corral_worker_ready`), else 0.
pub const CORRAL_WORKER_COUNTER_READY: u32 = 6;
/// Milliseconds since it was started.
pub const CORRAL_WORKER_COUNTER_UPTIME_MS: u32 = 7;

/// Writes one of a worker's counters (`CORRAL_WORKER_COUNTER_*`) to `*out`: the same figures
/// the metrics endpoint exports per worker, one call each, so that a counter can be added
/// without changing this signature. Call it on the primary's thread (as every primary call);
/// not valid in a forked child.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for a NULL handle or `out`, or a `counter` that is
/// none of the constants; `CORRAL_STATUS_NO_SUCH_WORKER` for an id the primary does not have
/// (reaped, or never started). `*out` is written only on success.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_worker_counter(
    p: *const corral_primary,
    worker_id: u64,
    counter: u32,
    out: *mut u64,
) -> corral_status {
    guard(|| {
        // SAFETY: NULL or a live handle by contract.
        let h = unsafe { handle_ref(p, "primary") }?;
        non_null(out.cast_const(), "out")?;
        let w = h
            .cluster
            .primary()
            .worker(worker_id)
            .ok_or_else(|| Error::no_such_worker(worker_id))?;
        let v = match counter {
            CORRAL_WORKER_COUNTER_HANDED_OFF => w.handed_off,
            CORRAL_WORKER_COUNTER_INFLIGHT => u64::from(w.inflight),
            CORRAL_WORKER_COUNTER_REFUSED => w.refused,
            CORRAL_WORKER_COUNTER_TAKEN_BACK => w.taken_back,
            CORRAL_WORKER_COUNTER_STALLED => u64::from(w.stalled),
            CORRAL_WORKER_COUNTER_READY => u64::from(w.ready),
            CORRAL_WORKER_COUNTER_UPTIME_MS => w.uptime.as_millis() as u64,
            other => {
                return Err(Error::invalid(format!(
                    "counter: {other} is not a CORRAL_WORKER_COUNTER_* (1 to {CORRAL_WORKER_COUNTER_UPTIME_MS})"
                )))
            }
        };
        // SAFETY: `out` is non-NULL (checked) and writable by contract.
        unsafe { write_out(out, v) };
        Ok(())
    })
}

/// Delivers queued events to the callback without holding a borrow of the handle across it
/// (the callback may call back into the primary). Returns true if `ShutdownComplete` was seen
/// or a stop was requested.
unsafe fn deliver(p: *mut corral_primary) -> Result<bool, Error> {
    loop {
        let (ev, cb, ud) = {
            // SAFETY: a live handle; this borrow ends before the callback runs.
            let h = unsafe { &mut *p };
            if h.stop {
                h.stop = false;
                return Ok(true);
            }
            match h.cluster.next_event() {
                Some(ev) => (ev, h.callback, h.userdata),
                None => return Ok(false),
            }
        };
        let done = matches!(ev, ClusterEvent::Primary(Event::ShutdownComplete { .. }));
        let cev = corral_event { ev };
        if let Some(cb) = cb {
            // SAFETY: the callback is a C function given by the user; `cev` outlives the call.
            unsafe { cb(ud as *mut c_void, p, &cev) };
        }
        if done {
            return Ok(true);
        }
    }
}

/// Waits up to `timeout_ms` (-1: until something happens; 0: not at all), handles what is
/// ready (connections, messages, exits, deadlines) and calls the event callback for each event.
/// For embedding: call it when `corral_primary_fd` is readable or `corral_primary_timeout_ms`
/// expired.
///
/// Returns `CORRAL_STATUS_WRONG_STATE` when called from this primary's own event callback
/// (inside `corral_primary_run` or `corral_primary_dispatch`: nesting is not allowed; the outer
/// loop goes on) or in a forked worker's copy.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_dispatch(
    p: *mut corral_primary,
    timeout_ms: i32,
) -> corral_status {
    guard(|| {
        non_null(p, "primary")?;
        // SAFETY: a live handle by contract; no borrow is held.
        let _running = unsafe { Running::enter(p, "corral_primary_dispatch") }?;
        // SAFETY: a live handle; the borrow ends before events are delivered.
        let h = unsafe { &mut *p };
        let t = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        h.cluster.dispatch(t)?;
        // SAFETY: `p` is a live handle (checked above).
        unsafe { deliver(p) }.map(drop)
    })
}

/// Runs the primary's loop on this thread, calling the event callback, until a graceful
/// shutdown completes (after `CORRAL_EVENT_SHUTDOWN_COMPLETE`) or `corral_primary_stop` is
/// called. Returns `CORRAL_STATUS_WRONG_STATE` if this process became a worker inside a
/// callback (a forked child must not return into the primary's loop), and when called from
/// this primary's own event callback (nesting is not allowed: the nested call returns at once,
/// the outer run goes on and returns as usual).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_primary_run(p: *mut corral_primary) -> corral_status {
    guard(|| {
        non_null(p, "primary")?;
        // SAFETY: a live handle by contract; no borrow is held.
        let _running = unsafe { Running::enter(p, "corral_primary_run") }?;
        loop {
            {
                // SAFETY: a live handle; the borrow ends before events are delivered.
                let h = unsafe { &mut *p };
                h.cluster.dispatch(None).map_err(|e| {
                    if e.kind() == ErrorKind::WrongState {
                        Error::wrong_state(
                            "corral_primary_run: this process became a worker inside a callback; \
                             run the worker there and exit instead of returning",
                        )
                    } else {
                        e
                    }
                })?;
            }
            // SAFETY: `p` is a live handle.
            if unsafe { deliver(p) }? {
                return Ok(());
            }
        }
    })
}
