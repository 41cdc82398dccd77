//! `corral_event`: what the primary reports to its callback, read through accessors. An event
//! is only valid during the callback that received it.

use super::boundary::{copy_out, guard_value};
use super::primary::corral_primary;
use corral_core::supervisor::Cause;
use corral_core::{Event, ExitStatus, SocketKind, SupervisorEvent};
use std::ffi::{c_char, c_void};

/// A worker process was started.
pub const CORRAL_EVENT_FORK: u32 = 1;
/// A worker's channel is up.
pub const CORRAL_EVENT_ONLINE: u32 = 2;
/// A worker listens (`corral_event_address`, `corral_event_port`, `corral_event_listener`).
pub const CORRAL_EVENT_LISTENING: u32 = 3;
/// A message from a worker (`corral_event_data`).
pub const CORRAL_EVENT_MESSAGE: u32 = 4;

/// `corral_event_listener_kind`: a stream listener (TCP or Unix; `corral_worker_listen`).
pub const CORRAL_LISTENER_STREAM: u32 = 1;
/// `corral_event_listener_kind`: a datagram listener (UDP; `corral_worker_bind_datagram`).
/// With the address's family it gives Node's `'udp4'`/`'udp6'`.
pub const CORRAL_LISTENER_DATAGRAM: u32 = 2;
/// A worker said it is ready.
pub const CORRAL_EVENT_READY: u32 = 5;
/// A worker's channel closed.
pub const CORRAL_EVENT_DISCONNECT: u32 = 6;
/// A worker exited (`corral_event_exit_code`, `corral_event_signal`,
/// `corral_event_exited_after_disconnect`).
pub const CORRAL_EVENT_EXIT: u32 = 7;
/// An error about a worker (worker id > 0) or the primary (0): `corral_event_error_message`,
/// `corral_event_errno`. The primary keeps running.
pub const CORRAL_EVENT_ERROR: u32 = 8;
/// A handled signal arrived (`corral_event_signal`); see `corral_options_set_shutdown_signals`.
pub const CORRAL_EVENT_SIGNAL: u32 = 9;
/// A graceful shutdown finished (`corral_event_clean`). `corral_primary_run` returns after it.
pub const CORRAL_EVENT_SHUTDOWN_COMPLETE: u32 = 10;
/// A worker's send queue, which refused a message (`CORRAL_STATUS_WOULD_BLOCK` from
/// `corral_primary_send`), is down to half its limit: send to it again. Once per refusal;
/// if the channel closes first, `CORRAL_EVENT_DISCONNECT` comes instead.
pub const CORRAL_EVENT_DRAIN: u32 = 11;
/// The primary does something other than what was asked, which works (not an error; reported
/// once): `corral_event_code` says what (`"CORRAL_KERNEL_RR_FALLBACK"`: a listener of
/// `CORRAL_POLICY_KERNEL_RR` runs rr), `corral_event_error_message` why and what to grant,
/// `corral_event_errno` the errno behind it, `corral_event_listener` the listener.
pub const CORRAL_EVENT_WARNING: u32 = 12;

/// The supervisor started a replacement (`corral_event_slot`, `corral_event_worker_id` (the
/// new worker), `corral_event_cause`, `corral_event_delay_ms`, and for crashes
/// `corral_event_exit_code`/`corral_event_signal`).
pub const CORRAL_EVENT_RESTART: u32 = 20;
/// A slot entered a crash loop and now retries at the maximum delay (`corral_event_slot`,
/// `corral_event_count` exits in the window).
pub const CORRAL_EVENT_CRASH_LOOP: u32 = 21;
/// A worker exited with a do-not-restart code; its slot stays empty.
pub const CORRAL_EVENT_NO_RESTART: u32 = 22;
/// A worker stopped sending heartbeats and was killed (`corral_event_delay_ms`: silence).
pub const CORRAL_EVENT_HANG: u32 = 23;
/// A worker went over a recycling limit (`corral_event_error_message`: which).
pub const CORRAL_EVENT_RECYCLE: u32 = 24;
/// A rolling reload ended (`corral_event_ok`, `corral_event_count` replaced,
/// `corral_event_error_message`: why it stopped, `corral_event_delay_ms`: duration).
pub const CORRAL_EVENT_RELOAD: u32 = 25;
/// The worker count changed (`corral_event_count`: the new count).
pub const CORRAL_EVENT_SCALED: u32 = 26;

/// The event itself: one of the primary or of its supervisor, in the engine's order.
pub(crate) use corral_core::ClusterEvent as Kind;

/// An event of the primary or of its supervisor (opaque; valid only during the callback that
/// received it).
pub struct corral_event {
    pub(crate) ev: Kind,
}

/// Receives the primary's events, in order, from `corral_primary_run` or
/// `corral_primary_dispatch`, on the thread that called them. It may call any
/// `corral_primary_*` function on `primary` except `corral_primary_free`. If it forks a worker
/// with `corral_primary_fork`, the child must not return from the callback: run the worker
/// there and exit. May be NULL where a callback is optional.
pub type corral_event_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        primary: *mut corral_primary,
        event: *const corral_event,
    ),
>;

fn with<T: Clone>(ev: *const corral_event, fallback: T, f: impl FnOnce(&Event) -> T) -> T {
    with_any(ev, fallback, |k, fallback| match k {
        Kind::Primary(e) => f(e),
        Kind::Supervisor(_) => fallback,
    })
}

fn with_sup<T: Clone>(
    ev: *const corral_event,
    fallback: T,
    f: impl FnOnce(&SupervisorEvent) -> T,
) -> T {
    with_any(ev, fallback, |k, fallback| match k {
        Kind::Supervisor(e) => f(e),
        Kind::Primary(_) => fallback,
    })
}

fn with_any<T>(ev: *const corral_event, fallback: T, f: impl FnOnce(&Kind, T) -> T) -> T
where
    T: Clone,
{
    if ev.is_null() {
        return fallback;
    }
    // SAFETY: a live event during its callback by contract.
    let e = unsafe { &(*ev).ev };
    let fb = fallback.clone();
    guard_value(fallback, || f(e, fb))
}

fn sup_exit(e: &SupervisorEvent) -> Option<ExitStatus> {
    match e {
        SupervisorEvent::Restart {
            cause: Cause::Boot(s) | Cause::Crash(s),
            ..
        } => Some(*s),
        SupervisorEvent::NoRestart { status, .. } => Some(*status),
        _ => None,
    }
}

/// The event's kind (`CORRAL_EVENT_*`); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn corral_event_kind(ev: *const corral_event) -> u32 {
    let sup = with_sup(ev, 0, |e| match e {
        SupervisorEvent::Restart { .. } => CORRAL_EVENT_RESTART,
        SupervisorEvent::CrashLoop { .. } => CORRAL_EVENT_CRASH_LOOP,
        SupervisorEvent::NoRestart { .. } => CORRAL_EVENT_NO_RESTART,
        SupervisorEvent::Hang { .. } => CORRAL_EVENT_HANG,
        SupervisorEvent::Recycle { .. } => CORRAL_EVENT_RECYCLE,
        SupervisorEvent::Reload(_) => CORRAL_EVENT_RELOAD,
        SupervisorEvent::Scaled { .. } => CORRAL_EVENT_SCALED,
    });
    if sup != 0 {
        return sup;
    }
    with(ev, 0, |e| match e {
        Event::Fork { .. } => CORRAL_EVENT_FORK,
        Event::Online { .. } => CORRAL_EVENT_ONLINE,
        Event::Listening { .. } => CORRAL_EVENT_LISTENING,
        Event::Message { .. } => CORRAL_EVENT_MESSAGE,
        Event::Ready { .. } => CORRAL_EVENT_READY,
        Event::Disconnect { .. } => CORRAL_EVENT_DISCONNECT,
        Event::Exit { .. } => CORRAL_EVENT_EXIT,
        Event::Error { .. } => CORRAL_EVENT_ERROR,
        Event::Signal { .. } => CORRAL_EVENT_SIGNAL,
        Event::ShutdownComplete { .. } => CORRAL_EVENT_SHUTDOWN_COMPLETE,
        Event::Drain { .. } => CORRAL_EVENT_DRAIN,
        Event::Warning { .. } => CORRAL_EVENT_WARNING,
    })
}

/// The worker the event is about; 0 for events about the whole primary.
#[no_mangle]
pub unsafe extern "C" fn corral_event_worker_id(ev: *const corral_event) -> u64 {
    let sup = with_sup(ev, 0, |e| match e {
        SupervisorEvent::Restart { worker, .. }
        | SupervisorEvent::NoRestart { worker, .. }
        | SupervisorEvent::Hang { worker, .. }
        | SupervisorEvent::Recycle { worker, .. } => *worker,
        _ => 0,
    });
    if sup != 0 {
        return sup;
    }
    with(ev, 0, |e| match e {
        Event::Fork { worker, .. }
        | Event::Online { worker }
        | Event::Listening { worker, .. }
        | Event::Message { worker, .. }
        | Event::Ready { worker }
        | Event::Disconnect { worker }
        | Event::Exit { worker, .. }
        | Event::Drain { worker } => *worker,
        Event::Error { worker, .. } => worker.unwrap_or(0),
        Event::Signal { .. } | Event::ShutdownComplete { .. } | Event::Warning { .. } => 0,
    })
}

/// The worker's pid for `FORK` and `EXIT`; 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn corral_event_pid(ev: *const corral_event) -> i32 {
    with(ev, 0, |e| match e {
        Event::Fork { pid, .. } | Event::Exit { pid, .. } => *pid,
        _ => 0,
    })
}

/// The exit code for `EXIT` when the worker exited normally; -1 when a signal killed it or for
/// other events.
#[no_mangle]
pub unsafe extern "C" fn corral_event_exit_code(ev: *const corral_event) -> i32 {
    if let Some(s) = with_sup(ev, None, sup_exit) {
        return s.code.unwrap_or(-1);
    }
    with(ev, -1, |e| match e {
        Event::Exit { status, .. } => status.code.unwrap_or(-1),
        _ => -1,
    })
}

/// The signal for `EXIT` (the one that killed the worker) and `SIGNAL`; 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn corral_event_signal(ev: *const corral_event) -> i32 {
    if let Some(s) = with_sup(ev, None, sup_exit) {
        return s.signal.unwrap_or(0);
    }
    with(ev, 0, |e| match e {
        Event::Exit { status, .. } => status.signal.unwrap_or(0),
        Event::Signal { signal } => *signal,
        _ => 0,
    })
}

/// For `EXIT`: the worker left after a disconnect the primary asked for (or it announced).
#[no_mangle]
pub unsafe extern "C" fn corral_event_exited_after_disconnect(ev: *const corral_event) -> bool {
    with(ev, false, |e| {
        matches!(
            e,
            Event::Exit {
                exited_after_disconnect: true,
                ..
            }
        )
    })
}

/// For `SHUTDOWN_COMPLETE`: every worker left before the deadline (none was SIGKILLed).
#[no_mangle]
pub unsafe extern "C" fn corral_event_clean(ev: *const corral_event) -> bool {
    with(ev, false, |e| {
        matches!(e, Event::ShutdownComplete { clean: true })
    })
}

/// For `MESSAGE`: the payload (owned by the event: copy it to keep it) and its length in
/// `*len_out`. NULL with `*len_out = 0` for other events. `len_out` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn corral_event_data(
    ev: *const corral_event,
    len_out: *mut usize,
) -> *const u8 {
    let (ptr, len) = with(ev, (std::ptr::null(), 0), |e| match e {
        Event::Message { data, .. } => (data.as_ptr(), data.len()),
        _ => (std::ptr::null(), 0),
    });
    if !len_out.is_null() {
        // SAFETY: non-NULL and writable by contract.
        unsafe { *len_out = len };
    }
    ptr
}

/// For `LISTENING`: the listener id (shared by workers on the same address); for `WARNING`
/// the listener concerned (0 if none); 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn corral_event_listener(ev: *const corral_event) -> u32 {
    with(ev, 0, |e| match e {
        Event::Listening { listener, .. } => *listener,
        Event::Warning { listener, .. } => listener.unwrap_or(0),
        _ => 0,
    })
}

/// For `LISTENING`: the listener's kind, `CORRAL_LISTENER_STREAM` (TCP, Unix) or
/// `CORRAL_LISTENER_DATAGRAM` (UDP); 0 for other events and NULL. TCP 8080 and UDP 8080 are
/// different listeners.
#[no_mangle]
pub unsafe extern "C" fn corral_event_listener_kind(ev: *const corral_event) -> u32 {
    with(ev, 0, |e| match e {
        Event::Listening { addr, .. } => match addr.kind() {
            SocketKind::Stream => CORRAL_LISTENER_STREAM,
            SocketKind::Datagram => CORRAL_LISTENER_DATAGRAM,
        },
        _ => 0,
    })
}

/// For `LISTENING`: the resolved port (0 for Unix sockets and other events).
#[no_mangle]
pub unsafe extern "C" fn corral_event_port(ev: *const corral_event) -> u16 {
    with(ev, 0, |e| match e {
        Event::Listening { addr, .. } => addr.port(),
        _ => 0,
    })
}

/// For `LISTENING`: the address as text (`"127.0.0.1"`, `"::1"`, or the socket path) copied
/// into `buf` with snprintf semantics; returns the full length (0 for other events).
#[no_mangle]
pub unsafe extern "C" fn corral_event_address(
    ev: *const corral_event,
    buf: *mut c_char,
    len: usize,
) -> usize {
    let s = with(ev, String::new(), |e| match e {
        Event::Listening { addr, .. } => addr.host(),
        _ => String::new(),
    });
    // SAFETY: `buf` has `len` writable bytes by contract.
    unsafe { copy_out(&s, buf, len) }
}

/// For `ERROR`: the message with context; for `WARNING` what happened and what to do; for
/// `RELOAD` why it stopped early; for `RECYCLE` the limit it went over. Copied into `buf` with snprintf semantics; returns
/// the full length (0 for other events).
#[no_mangle]
pub unsafe extern "C" fn corral_event_error_message(
    ev: *const corral_event,
    buf: *mut c_char,
    len: usize,
) -> usize {
    let sup = with_sup(ev, String::new(), |e| match e {
        SupervisorEvent::Reload(r) => r.reason.clone().unwrap_or_default(),
        SupervisorEvent::Recycle { reason, .. } => reason.clone(),
        _ => String::new(),
    });
    let s = if !sup.is_empty() {
        sup
    } else {
        with(ev, String::new(), |e| match e {
            Event::Error { error, .. } => error.message().to_string(),
            Event::Warning { message, .. } => message.clone(),
            _ => String::new(),
        })
    };
    // SAFETY: `buf` has `len` writable bytes by contract.
    unsafe { copy_out(&s, buf, len) }
}

/// For `ERROR` and `WARNING`: the errno (0 when the OS was not involved, and for other
/// events).
#[no_mangle]
pub unsafe extern "C" fn corral_event_errno(ev: *const corral_event) -> i32 {
    with(ev, 0, |e| match e {
        Event::Error { error, .. } => error.errno(),
        Event::Warning { errno, .. } => *errno,
        _ => 0,
    })
}

/// For `WARNING`: what kind of warning, a stable name (`"CORRAL_KERNEL_RR_FALLBACK"`), copied
/// into `buf` with snprintf semantics; returns the full length (0 for other events and NULL).
#[no_mangle]
pub unsafe extern "C" fn corral_event_code(
    ev: *const corral_event,
    buf: *mut c_char,
    len: usize,
) -> usize {
    let s = with(ev, "", |e| match e {
        Event::Warning { code, .. } => code,
        _ => "",
    });
    // SAFETY: `buf` has `len` writable bytes by contract.
    unsafe { copy_out(s, buf, len) }
}

/// For supervisor events: the slot (a stable position that survives restarts); 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn corral_event_slot(ev: *const corral_event) -> u32 {
    with_sup(ev, 0, |e| match e {
        SupervisorEvent::Restart { slot, .. }
        | SupervisorEvent::CrashLoop { slot, .. }
        | SupervisorEvent::NoRestart { slot, .. }
        | SupervisorEvent::Hang { slot, .. }
        | SupervisorEvent::Recycle { slot, .. } => *slot as u32,
        _ => 0,
    })
}

/// For `RESTART`: the backoff delay waited; for `HANG`: the silence; for `RELOAD`: how long it
/// took. Milliseconds; 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn corral_event_delay_ms(ev: *const corral_event) -> u64 {
    with_sup(ev, 0, |e| match e {
        SupervisorEvent::Restart { delay, .. } => delay.as_millis() as u64,
        SupervisorEvent::Hang { silent_for, .. } => silent_for.as_millis() as u64,
        SupervisorEvent::Reload(r) => r.duration.as_millis() as u64,
        _ => 0,
    })
}

/// For `RESTART`: why (`"boot"`: died before listening, `"crash"`, `"hang"`, `"recycle"`),
/// copied into `buf` with snprintf semantics; returns the full length (0 for other events).
#[no_mangle]
pub unsafe extern "C" fn corral_event_cause(
    ev: *const corral_event,
    buf: *mut c_char,
    len: usize,
) -> usize {
    let s = with_sup(ev, "", |e| match e {
        SupervisorEvent::Restart { cause, .. } => cause.label(),
        _ => "",
    });
    // SAFETY: `buf` has `len` writable bytes by contract.
    unsafe { copy_out(s, buf, len) }
}

/// For `RELOAD`: every worker was replaced.
#[no_mangle]
pub unsafe extern "C" fn corral_event_ok(ev: *const corral_event) -> bool {
    with_sup(
        ev,
        false,
        |e| matches!(e, SupervisorEvent::Reload(r) if r.ok),
    )
}

/// For `RELOAD`: workers replaced; `SCALED`: the new count; `CRASH_LOOP`: exits in the
/// window. 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn corral_event_count(ev: *const corral_event) -> u32 {
    with_sup(ev, 0, |e| match e {
        SupervisorEvent::Reload(r) => r.replaced as u32,
        SupervisorEvent::Scaled { to, .. } => *to as u32,
        SupervisorEvent::CrashLoop { exits, .. } => exits.len() as u32,
        _ => 0,
    })
}
