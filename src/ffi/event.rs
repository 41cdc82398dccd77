//! `corral_event`: what the primary reports to its callback, read through accessors. An event
//! is only valid during the callback that received it.

use super::boundary::{copy_out, guard_value};
use super::primary::corral_primary;
use corral_core::Event;
use std::ffi::{c_char, c_void};

/// A worker process was started.
pub const CORRAL_EVENT_FORK: u32 = 1;
/// A worker's channel is up.
pub const CORRAL_EVENT_ONLINE: u32 = 2;
/// A worker listens (`corral_event_address`, `corral_event_port`, `corral_event_listener`).
pub const CORRAL_EVENT_LISTENING: u32 = 3;
/// A message from a worker (`corral_event_data`).
pub const CORRAL_EVENT_MESSAGE: u32 = 4;
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

/// An event of the primary (opaque; valid only during the callback that received it).
pub struct corral_event {
    pub(crate) ev: Event,
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

fn with<T>(ev: *const corral_event, fallback: T, f: impl FnOnce(&Event) -> T) -> T {
    if ev.is_null() {
        return fallback;
    }
    // SAFETY: a live event during its callback by contract.
    let e = unsafe { &(*ev).ev };
    guard_value(fallback, || f(e))
}

/// The event's kind (`CORRAL_EVENT_*`); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn corral_event_kind(ev: *const corral_event) -> u32 {
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
    })
}

/// The worker the event is about; 0 for events about the whole primary.
#[no_mangle]
pub unsafe extern "C" fn corral_event_worker_id(ev: *const corral_event) -> u64 {
    with(ev, 0, |e| match e {
        Event::Fork { worker, .. }
        | Event::Online { worker }
        | Event::Listening { worker, .. }
        | Event::Message { worker, .. }
        | Event::Ready { worker }
        | Event::Disconnect { worker }
        | Event::Exit { worker, .. } => *worker,
        Event::Error { worker, .. } => worker.unwrap_or(0),
        Event::Signal { .. } | Event::ShutdownComplete { .. } => 0,
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
    with(ev, -1, |e| match e {
        Event::Exit { status, .. } => status.code.unwrap_or(-1),
        _ => -1,
    })
}

/// The signal for `EXIT` (the one that killed the worker) and `SIGNAL`; 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn corral_event_signal(ev: *const corral_event) -> i32 {
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

/// For `LISTENING`: the listener id (shared by workers on the same address); 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn corral_event_listener(ev: *const corral_event) -> u32 {
    with(ev, 0, |e| match e {
        Event::Listening { listener, .. } => *listener,
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

/// For `ERROR`: the message with context, copied into `buf` with snprintf semantics; returns
/// the full length (0 for other events).
#[no_mangle]
pub unsafe extern "C" fn corral_event_error_message(
    ev: *const corral_event,
    buf: *mut c_char,
    len: usize,
) -> usize {
    let s = with(ev, String::new(), |e| match e {
        Event::Error { error, .. } => error.message().to_string(),
        _ => String::new(),
    });
    // SAFETY: `buf` has `len` writable bytes by contract.
    unsafe { copy_out(&s, buf, len) }
}

/// For `ERROR`: the errno (0 when the OS was not involved, and for other events).
#[no_mangle]
pub unsafe extern "C" fn corral_event_errno(ev: *const corral_event) -> i32 {
    with(ev, 0, |e| match e {
        Event::Error { error, .. } => error.errno(),
        _ => 0,
    })
}
