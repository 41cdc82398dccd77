//! `corral_worker`: the worker side. Listen through the primary, then take events (connections,
//! messages, a disconnect request, the primary's death) from `corral_worker_next`, blocking or
//! embedded in your own loop through `corral_worker_fd`.

use super::boundary::{c_str, guard, guard_value, handle_mut, message, non_null, write_out};
use super::error::corral_status;
use corral_core::listener::BindOptions;
use corral_core::{Error, ErrorKind, ListenAddr, Worker, WorkerEvent};
use std::collections::HashMap;
use std::ffi::c_char;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A client connection (`corral_worker_event_take_fd`, `corral_worker_event_listener`).
pub const CORRAL_WORKER_EVENT_CONNECTION: u32 = 1;
/// A message from the primary (`corral_worker_event_data`).
pub const CORRAL_WORKER_EVENT_MESSAGE: u32 = 2;
/// The primary asks this worker to finish its work and disconnect: no new connections will
/// come; finish in-flight requests, then `corral_worker_disconnect` and exit.
pub const CORRAL_WORKER_EVENT_DISCONNECT: u32 = 3;
/// The primary is gone (channel closed). Exit now.
pub const CORRAL_WORKER_EVENT_PRIMARY_GONE: u32 = 4;

/// `corral_worker_listen_with_options`: set `IPV6_V6ONLY` on an IPv6 listener, so IPv4 on
/// the same port stays free (Node's `ipv6Only`).
pub const CORRAL_LISTEN_IPV6_ONLY: u32 = 1;
/// `corral_worker_listen_with_options`: make a Unix socket's file readable by everyone
/// (Node's `readableAll`).
pub const CORRAL_LISTEN_READABLE_ALL: u32 = 2;
/// `corral_worker_listen_with_options`: make a Unix socket's file writable by everyone, so
/// anyone may connect (Node's `writableAll`).
pub const CORRAL_LISTEN_WRITABLE_ALL: u32 = 4;
/// `corral_worker_bind_datagram`: set `SO_REUSEADDR` on the UDP socket (Node's dgram
/// `reuseAddr`), so other sockets that set it too may bind the same address. Stream listeners
/// always have it; for them this bit changes nothing.
pub const CORRAL_LISTEN_REUSE_ADDR: u32 = 8;
/// `corral_worker_listen_with_options`, with `CORRAL_LISTEN_READABLE_ALL` and/or
/// `CORRAL_LISTEN_WRITABLE_ALL`: the Unix socket file's mode becomes exactly those bits (0444,
/// 0222 or 0666), as libuv 1.51 and later set it, instead of the bits being added to the mode
/// the umask left.
pub const CORRAL_LISTEN_MODE_EXACT: u32 = 16;

/// The worker side of a cluster (opaque). From `corral_worker_from_env` (exec mode) or
/// `corral_primary_fork` (in the child). Free with `corral_worker_free`. One thread at a time.
pub struct corral_worker {
    w: Worker,
    /// The client address a PROXY header named, by the fd number its `CONNECTION` event
    /// delivered: C hands a connection back by number alone (`corral_worker_refuse`), and the
    /// header is consumed, so this is where the next worker gets its client from. An entry is
    /// replaced when the number is delivered again and taken by the refusal; at most one per
    /// fd number.
    peers: HashMap<RawFd, std::net::SocketAddr>,
}

impl corral_worker {
    pub(crate) fn new(w: Worker) -> corral_worker {
        corral_worker {
            w,
            peers: HashMap::new(),
        }
    }
}

/// An event of a worker (opaque). Free with `corral_worker_event_free`.
pub struct corral_worker_event {
    kind: u32,
    listener: u32,
    fd: Option<OwnedFd>,
    data: Vec<u8>,
    peer: Option<std::net::SocketAddr>,
}

impl corral_worker_event {
    fn new(ev: WorkerEvent) -> corral_worker_event {
        let mut peer = None;
        let (kind, listener, fd, data) = match ev {
            WorkerEvent::Connection {
                listener,
                fd,
                peer: from_proxy,
            } => {
                peer = from_proxy;
                (
                    CORRAL_WORKER_EVENT_CONNECTION,
                    listener,
                    Some(fd),
                    Vec::new(),
                )
            }
            // fds attached to messages are not exposed to C yet: dropping them closes them.
            WorkerEvent::Message { data, .. } => (CORRAL_WORKER_EVENT_MESSAGE, 0, None, data),
            WorkerEvent::Disconnect => (CORRAL_WORKER_EVENT_DISCONNECT, 0, None, Vec::new()),
            WorkerEvent::PrimaryGone => (CORRAL_WORKER_EVENT_PRIMARY_GONE, 0, None, Vec::new()),
        };
        corral_worker_event {
            kind,
            listener,
            fd,
            data,
            peer,
        }
    }
}

/// True if a corral primary started this process as a worker (the environment has
/// `CORRAL_WORKER_ID` and `CORRAL_CHANNEL_FD`). Does not consume them.
#[no_mangle]
pub extern "C" fn corral_is_worker() -> bool {
    guard_value(false, corral_core::WorkerEnv::is_present)
}

/// The worker side of a process started by `corral_primary_spawn`: reads and removes
/// `CORRAL_WORKER_ID` and `CORRAL_CHANNEL_FD` (so this worker's children are not workers), takes
/// the channel and tells the primary it is online. Call it before starting threads (it edits
/// the environment).
///
/// Returns `CORRAL_STATUS_NOT_A_WORKER` when the variables are absent,
/// `CORRAL_STATUS_INVALID_ARGUMENT`/`CORRAL_STATUS_OS_ERROR` when they are bogus.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_from_env(out: *mut *mut corral_worker) -> corral_status {
    guard(|| {
        non_null(out, "out")?;
        let w = Worker::from_env()?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotWorker,
                "not a corral worker: CORRAL_WORKER_ID/CORRAL_CHANNEL_FD are not set (start it with corral_primary_spawn)",
            )
        })?;
        // SAFETY: non-NULL and writable by contract.
        unsafe { write_out(out, Box::into_raw(Box::new(corral_worker::new(w)))) };
        Ok(())
    })
}

/// Frees a worker handle, closing its channel (the primary sees a disconnect). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn corral_worker_free(w: *mut corral_worker) {
    // SAFETY: created by this library and freed once by contract.
    unsafe { super::boundary::free_box(w) }
}

fn with_worker(
    w: *mut corral_worker,
    f: impl FnOnce(&mut Worker) -> Result<(), Error>,
) -> corral_status {
    with_handle(w, |h| f(&mut h.w))
}

fn with_handle(
    w: *mut corral_worker,
    f: impl FnOnce(&mut corral_worker) -> Result<(), Error>,
) -> corral_status {
    guard(|| {
        // SAFETY: NULL or a live worker handle by contract.
        let h = unsafe { handle_mut(w, "worker") }?;
        f(h)
    })
}

/// This worker's id (from 1, never reused by its primary); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn corral_worker_id(w: *const corral_worker) -> u64 {
    super::boundary::guard_value(0, || {
        if w.is_null() {
            return 0;
        }
        // SAFETY: a live handle by contract.
        unsafe { &(*w).w }.id()
    })
}

/// How often this worker should call `corral_worker_heartbeat`, in milliseconds: the
/// `CORRAL_HEARTBEAT_MS` a supervisor with a heartbeat watchdog set for it, read by
/// `corral_worker_from_env` with the other worker variables (it also stays in the environment).
/// 0 when no watchdog asked for heartbeats, for a forked worker, and for NULL. Any thread.
#[no_mangle]
pub unsafe extern "C" fn corral_worker_heartbeat_interval_ms(w: *const corral_worker) -> u32 {
    super::boundary::guard_value(0, || {
        if w.is_null() {
            return 0;
        }
        // SAFETY: a live handle by contract.
        let every = unsafe { &(*w).w }.heartbeat_interval();
        every.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
    })
}

/// A pollable fd: readable when `corral_worker_next(w, 0, ...)` may return an event. Owned by
/// the worker: do not close it. -1 for NULL.
#[no_mangle]
pub unsafe extern "C" fn corral_worker_fd(w: *const corral_worker) -> i32 {
    super::boundary::guard_value(-1, || {
        if w.is_null() {
            return -1;
        }
        // SAFETY: a live handle by contract.
        unsafe { &(*w).w }.poll_fd()
    })
}

/// Asks the primary to listen on `address` and waits for the answer. Workers asking for the
/// same address share one listener. `address`: `"127.0.0.1:8080"`, `"[::1]:0"`,
/// `"localhost:3000"`, `":8080"` (every interface) or `"unix:/path.sock"` (a relative path is
/// bound in the primary's working directory; a path longer than `sun_path` works as long as its
/// last component is shorter than about 85 bytes); port 0 means one kernel-chosen port for
/// every worker. `"fd:N"` shares the primary's own fd N (a listening socket it inherited, e.g.
/// from systemd socket activation): the primary checks it is a stream socket, puts it in
/// listening state and shares a duplicate; fd N is never closed (it becomes non-blocking).
/// `backlog` <= 0 means 511. Writes the listener id and the
/// resolved port (0 for Unix sockets) to the non-NULL out-params.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for a malformed address; `CORRAL_STATUS_OS_ERROR`
/// with the primary's errno and context for EADDRINUSE, EACCES or an unknown host
/// ("bind 127.0.0.1:8080: Address already in use (EADDRINUSE)"), and for a bad `fd:N`
/// (EBADF, ENOTSOCK, EPROTOTYPE for a datagram socket, EINVAL for a connected one);
/// `CORRAL_STATUS_WRONG_STATE` if the primary is shutting down or asked this worker to
/// disconnect (the primary's refusals keep their status, errno and message);
/// `CORRAL_STATUS_DISCONNECTED` if the primary is gone.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_listen(
    w: *mut corral_worker,
    address: *const c_char,
    backlog: i32,
    listener_out: *mut u32,
    port_out: *mut u16,
) -> corral_status {
    // SAFETY: the caller's pointers, passed on under the same contract.
    unsafe { listen_stream(w, address, backlog, 0, listener_out, port_out) }
}

/// `corral_worker_listen` with `options`, a bit set of `CORRAL_LISTEN_*` (0: none). The
/// options are not part of the listener's key: when a worker already listens on the same
/// address, this one joins that listener as it was bound, whatever its options.
///
/// Returns the statuses of `corral_worker_listen`, and `CORRAL_STATUS_INVALID_ARGUMENT` for
/// unknown bits in `options`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_listen_with_options(
    w: *mut corral_worker,
    address: *const c_char,
    backlog: i32,
    options: u32,
    listener_out: *mut u32,
    port_out: *mut u16,
) -> corral_status {
    // SAFETY: the caller's pointers, passed on under the same contract.
    unsafe { listen_stream(w, address, backlog, options, listener_out, port_out) }
}

/// Asks the primary for a shared UDP socket bound to `address` (node:cluster's dgram `bind()`
/// without `exclusive`) and waits for the answer. Whatever the scheduling policy, the primary
/// binds it once and every worker asking for the same address gets the same socket; each
/// datagram goes to one of the workers reading it. `address`: `"127.0.0.1:5353"`,
/// `"[::1]:0"`, `"localhost:0"`, `":5353"` (every interface) or `"fd:N"` (the primary's own
/// UDP fd N, which it never closes); port 0 means one kernel-chosen port for every worker.
/// `options`: `CORRAL_LISTEN_IPV6_ONLY`, `CORRAL_LISTEN_REUSE_ADDR`, or 0; like a stream
/// listener's, they are not part of the key (the first worker's bind decides). The primary reports `CORRAL_EVENT_LISTENING`
/// with `corral_event_listener_kind` = `CORRAL_LISTENER_DATAGRAM`.
///
/// On success writes the socket to `*fd_out` (required): close-on-exec and non-blocking (the
/// flag is on the open file description every worker shares). The caller owns it and closes
/// it; it outlives the worker handle if not closed. Then call `corral_worker_unlisten` with the
/// id written to `*listener_out` (or disconnect), so that the primary closes its copy once the
/// last worker holding it leaves. `listener_out` and `port_out` may be NULL. It counts against
/// the primary's `max_listeners_per_worker`. Call from the thread that owns the worker; valid
/// in a forked worker.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for a malformed address, a Unix socket path, NULL
/// `fd_out` or unknown option bits; `CORRAL_STATUS_OS_ERROR` with the primary's errno and
/// context (EADDRINUSE, an unknown host, a bad `fd:N`: EBADF, ENOTSOCK, or EPROTOTYPE for a
/// stream socket); `CORRAL_STATUS_DISCONNECTED` if the primary is gone or this worker
/// disconnected.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_bind_datagram(
    w: *mut corral_worker,
    address: *const c_char,
    options: u32,
    listener_out: *mut u32,
    port_out: *mut u16,
    fd_out: *mut i32,
) -> corral_status {
    with_worker(w, |w| {
        non_null(fd_out, "fd_out")?;
        // SAFETY: NULL or a NUL-terminated string by contract.
        let (a, opts) = unsafe { listen_args(address, options) }?;
        let d = w.bind_datagram(&a, opts)?;
        // SAFETY: `fd_out` is non-NULL and writable, the others NULL (skipped) or writable,
        // by contract.
        unsafe {
            write_listener(listener_out, port_out, d.id, d.addr.port());
            write_out(fd_out, d.fd.into_raw_fd());
        }
        Ok(())
    })
}

/// Leaves listener `listener` (an id from `corral_worker_listen` or
/// `corral_worker_bind_datagram`): no more connections from it (a shared-mode listening fd
/// held by the worker closes); a datagram socket is the caller's to close. The primary closes
/// the listener once its last worker has left. An id this worker does not hold changes nothing.
///
/// Returns `CORRAL_STATUS_DISCONNECTED` after `corral_worker_disconnect` or once the primary
/// is gone.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_unlisten(
    w: *mut corral_worker,
    listener: u32,
) -> corral_status {
    with_worker(w, |w| w.unlisten(listener))
}

/// Waits up to `timeout_ms` (-1: forever; 0: not at all) for the next event and writes it to
/// `*event_out` (free it with `corral_worker_event_free`), or NULL on timeout.
///
/// Returns `CORRAL_STATUS_DISCONNECTED` after `CORRAL_WORKER_EVENT_PRIMARY_GONE` was returned
/// or after `corral_worker_disconnect`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_next(
    w: *mut corral_worker,
    timeout_ms: i32,
    event_out: *mut *mut corral_worker_event,
) -> corral_status {
    with_handle(w, |h| {
        non_null(event_out, "event_out")?;
        let t = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        let ev = h.w.next_event(t)?;
        if let Some(WorkerEvent::Connection { fd, peer, .. }) = &ev {
            match peer {
                Some(p) => h.peers.insert(fd.as_raw_fd(), *p),
                None => h.peers.remove(&fd.as_raw_fd()),
            };
        }
        let ptr = ev.map_or(std::ptr::null_mut(), |ev| {
            Box::into_raw(Box::new(corral_worker_event::new(ev)))
        });
        // SAFETY: non-NULL, writable by contract.
        unsafe { write_out(event_out, ptr) };
        Ok(())
    })
}

/// Sends `len` bytes to the primary (at most 64 MiB), waiting for room in the socket: the worker
/// side has no queue of its own to grow (the primary always reads, so this does not deadlock).
///
/// Returns `CORRAL_STATUS_OK`; `CORRAL_STATUS_DISCONNECTED` after `corral_worker_disconnect` or
/// once the primary is gone (always: nothing is sent, nothing is lost silently);
/// `CORRAL_STATUS_TOO_LARGE` when `len` is above 64 MiB (checked before `data` is read; the
/// message names the limit); `CORRAL_STATUS_INVALID_ARGUMENT` for NULL `data` with `len` > 0.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_send(
    w: *mut corral_worker,
    data: *const u8,
    len: usize,
) -> corral_status {
    with_worker(w, |w| {
        // SAFETY: `len` readable bytes by contract; `len` is checked before the read.
        let d = unsafe { message(data, len, "data") }?;
        w.send(d.to_vec(), Vec::new())
    })
}

/// Hands a round-robin connection back to the primary instead of serving it: call it when
/// this worker is at its own connection limit (what Node's `server.maxConnections` does under
/// node:cluster) or no longer serves that listener. The primary deals the connection to
/// another worker and offers this one none of that listener's connections for a short while
/// (1 ms, doubling while it keeps refusing, up to 50 ms). When every worker refuses, the client
/// waits in the primary until one takes it; it is reset only if the listener closes meanwhile.
/// Refusals count in `corral_worker_connections_refused_total` (supervisor metrics). Call
/// `corral_worker_room` once this worker has room again.
///
/// `listener` is the event's `corral_worker_event_listener`; `fd` the connection from
/// `corral_worker_event_take_fd` (that number, not a dup of it: under the PROXY protocol the
/// worker remembers the client each delivered number came with, as
/// `corral_worker_event_peer_addr` gives it, and the next worker is given that client). This call takes `fd` over whatever it returns (it is closed
/// before the call returns; the primary has its own copy on success), except when `w` is NULL
/// or `fd` negative (`CORRAL_STATUS_INVALID_ARGUMENT`) or not an open file descriptor
/// (`CORRAL_STATUS_OS_ERROR`, EBADF): then nothing is closed. Under the `shared` policy the
/// worker accepts by itself and there is no one to deal to: the primary closes a refused
/// connection. May be called from the thread that uses the worker; not in a forked child of
/// the worker.
///
/// Returns `CORRAL_STATUS_OK`; `CORRAL_STATUS_DISCONNECTED` after `corral_worker_disconnect`
/// or once the primary is gone (the connection is closed: its client sees the end).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_refuse(
    w: *mut corral_worker,
    listener: u32,
    fd: i32,
) -> corral_status {
    with_handle(w, |h| {
        if fd < 0 {
            return Err(Error::invalid(format!(
                "fd: {fd} is not a connection's file descriptor"
            )));
        }
        // SAFETY: only borrowed for the dup; `fd` is open or dup fails with EBADF.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let copy = borrowed
            .try_clone_to_owned()
            .map_err(|e| Error::os("dup", format!("refuse connection fd {fd}"), &e))?;
        // SAFETY: the caller hands `fd` over by contract and it is open (the dup succeeded);
        // it is closed exactly once, here.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        let peer = h.peers.remove(&fd);
        h.w.refuse(listener, copy, peer)
    })
}

/// Tells the primary this worker has room again for `listener`'s connections after it refused
/// some with `corral_worker_refuse` (call it when one of its connections closes): the primary
/// deals it connections again at once instead of after its retry delay (up to 50 ms), so a
/// client waiting for a full cluster is served as soon as room appears. Harmless when nothing
/// was refused. Same threads as `corral_worker_refuse`.
///
/// Returns `CORRAL_STATUS_OK`; `CORRAL_STATUS_DISCONNECTED` after `corral_worker_disconnect`
/// or once the primary is gone; `CORRAL_STATUS_INVALID_ARGUMENT` for a NULL worker.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_room(w: *mut corral_worker, listener: u32) -> corral_status {
    with_worker(w, |w| w.room(listener))
}

/// Hands out connections non-blocking (`O_NONBLOCK`) from now on when `on`, blocking again
/// (the default) when not. Where the worker accepts by itself (`CORRAL_POLICY_SHARED`,
/// `_KERNEL_RR`, `_KERNEL_LEAST`) the connection is accepted that way, with no extra system
/// call: this saves the `fcntl` a non-blocking server would make on each one. One the primary
/// deals (`CORRAL_POLICY_RR`, `_LEAST`, `_STICKY`) travels blocking and gets that `fcntl`
/// here. `corral_worker_refuse` makes a connection blocking again before giving it back, so
/// the next worker gets it as it asked. Same threads as `corral_worker_refuse`.
///
/// Returns `CORRAL_STATUS_OK`; `CORRAL_STATUS_INVALID_ARGUMENT` for a NULL worker.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_set_nonblocking(
    w: *mut corral_worker,
    on: bool,
) -> corral_status {
    with_worker(w, |w| {
        w.set_nonblocking_connections(on);
        Ok(())
    })
}

/// Says that a connection of `listener` this worker got has closed; call it once per
/// connection, after closing it. Under `CORRAL_POLICY_LEAST` it tells the primary, which
/// counts each worker's open connections (it cannot see closes itself). Under
/// `CORRAL_POLICY_KERNEL_LEAST` it releases the connection in the kernel's per-worker count
/// of open connections (an atomic decrement in memory shared with the eBPF program: no
/// syscall, no message). A worker that never calls it looks ever more loaded: it is dealt
/// ever fewer connections (least, kernel-least). Under `CORRAL_POLICY_KERNEL_RR` it does
/// nothing: that window (64 by default) counts connections handed to the worker and not taken yet
/// (queued at it), and `corral_worker_next_event` releases each one as it hands out its
/// CONNECTION event, so held keep-alive connections never fill it. Other policies ignore it.
/// Same threads as `corral_worker_refuse`.
///
/// Returns `CORRAL_STATUS_OK`; `CORRAL_STATUS_DISCONNECTED` after `corral_worker_disconnect`
/// or once the primary is gone; `CORRAL_STATUS_INVALID_ARGUMENT` for a NULL worker.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_closed(
    w: *mut corral_worker,
    listener: u32,
) -> corral_status {
    with_worker(w, |w| w.closed(listener))
}

/// Tells the primary this worker's loop is alive, with the number of connections it has open
/// (for metrics). Call it every `corral_worker_heartbeat_interval_ms` milliseconds (a
/// supervisor with a heartbeat watchdog sets it, as `CORRAL_HEARTBEAT_MS` in the worker's
/// environment) from your main loop, so a stuck loop is noticed.
///
/// Returns `CORRAL_STATUS_DISCONNECTED` after `corral_worker_disconnect` or once the primary
/// is gone.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_heartbeat(
    w: *mut corral_worker,
    active_connections: u32,
) -> corral_status {
    with_worker(w, |w| w.heartbeat(Some(active_connections)))
}

/// Tells the primary this worker is ready (after its warm-up).
///
/// Returns `CORRAL_STATUS_DISCONNECTED` after `corral_worker_disconnect` or once the primary
/// is gone.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_ready(w: *mut corral_worker) -> corral_status {
    with_worker(w, |w| w.ready())
}

/// Disconnects gracefully: the primary stops handing out connections to this worker and gives
/// the ones it has not taken yet to others. No events follow, and nothing more is sent:
/// `corral_worker_send`, `_heartbeat`, `_ready`, `_listen` and `_next` return
/// `CORRAL_STATUS_DISCONNECTED` from now on. Call it once your in-flight work is done, then
/// exit. Idempotent.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_worker_disconnect(w: *mut corral_worker) -> corral_status {
    with_worker(w, |w| w.disconnect())
}

fn with_event<T>(
    ev: *const corral_worker_event,
    fallback: T,
    f: impl FnOnce(&corral_worker_event) -> T,
) -> T {
    if ev.is_null() {
        return fallback;
    }
    // SAFETY: a live event by contract.
    guard_value(fallback, || f(unsafe { &*ev }))
}

/// The event's kind (`CORRAL_WORKER_EVENT_*`); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn corral_worker_event_kind(ev: *const corral_worker_event) -> u32 {
    with_event(ev, 0, |e| e.kind)
}

/// For `CONNECTION`: the listener it came from; 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn corral_worker_event_listener(ev: *const corral_worker_event) -> u32 {
    with_event(ev, 0, |e| e.listener)
}

/// For `CONNECTION`: takes the connected socket (close-on-exec; blocking unless
/// `corral_worker_set_nonblocking`). The caller owns
/// it from now on and must close it. Returns -1 for other events or when already taken; an fd
/// not taken is closed by `corral_worker_event_free`.
#[no_mangle]
pub unsafe extern "C" fn corral_worker_event_take_fd(ev: *mut corral_worker_event) -> i32 {
    super::boundary::guard_value(-1, || {
        if ev.is_null() {
            return -1;
        }
        // SAFETY: a live event, not aliased during this call, by contract.
        let e = unsafe { &mut *ev };
        e.fd.take().map_or(-1, |fd| fd.into_raw_fd())
    })
}

/// For `CONNECTION` on a primary with the PROXY protocol on (`corral_options_set_proxy_protocol`):
/// the client's address as the proxy's header named it (the header is already consumed: the
/// socket's first byte is the client's). Copies the address as text (`"192.0.2.7"`, `"2001:db8::1"`)
/// into `buf` with snprintf semantics (at most `len - 1` bytes and a NUL; `buf` may be NULL
/// when `len` is 0) and the port into `*port_out` (may be NULL); returns the text's full
/// length (at most 45), so a return `>= len` means it was cut. Returns 0 and writes nothing
/// when the connection carries no such address (no PROXY protocol, a `LOCAL`/`UNKNOWN`
/// header, another event, NULL): the socket's own peer (`getpeername`) is the client then.
/// The event owns nothing it returns; valid until `corral_worker_event_free`.
#[no_mangle]
pub unsafe extern "C" fn corral_worker_event_peer_addr(
    ev: *const corral_worker_event,
    buf: *mut c_char,
    len: usize,
    port_out: *mut u16,
) -> usize {
    let Some(peer) = with_event(ev, None, |e| e.peer) else {
        return 0;
    };
    if !port_out.is_null() {
        // SAFETY: non-NULL, writable by contract.
        unsafe { *port_out = peer.port() };
    }
    guard_value(0, || {
        // SAFETY: `buf` has `len` writable bytes by contract.
        unsafe { super::boundary::copy_out(&peer.ip().to_string(), buf, len) }
    })
}

/// For `MESSAGE`: the payload (owned by the event) and its length in `*len_out` (may be NULL).
/// NULL and 0 for other events.
#[no_mangle]
pub unsafe extern "C" fn corral_worker_event_data(
    ev: *const corral_worker_event,
    len_out: *mut usize,
) -> *const u8 {
    let (ptr, len) = with_event(ev, (std::ptr::null(), 0), |e| {
        if e.kind == CORRAL_WORKER_EVENT_MESSAGE {
            (e.data.as_ptr(), e.data.len())
        } else {
            (std::ptr::null(), 0)
        }
    });
    if !len_out.is_null() {
        // SAFETY: non-NULL, writable by contract.
        unsafe { *len_out = len };
    }
    ptr
}

/// Frees an event (closing a connection fd that was not taken). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn corral_worker_event_free(ev: *mut corral_worker_event) {
    // SAFETY: created by corral_worker_next, freed once by contract.
    unsafe { super::boundary::free_box(ev) }
}

/// The body of `corral_worker_listen` and `corral_worker_listen_with_options`.
///
/// # Safety
/// As those exports: `w` a live handle or NULL, `address` NULL or NUL-terminated, the
/// out-params NULL or writable.
unsafe fn listen_stream(
    w: *mut corral_worker,
    address: *const c_char,
    backlog: i32,
    options: u32,
    listener_out: *mut u32,
    port_out: *mut u16,
) -> corral_status {
    with_worker(w, |w| {
        // SAFETY: NULL or a NUL-terminated string by contract.
        let (a, opts) = unsafe { listen_args(address, options) }?;
        let l = w.listen_with(&a, backlog, opts)?;
        // SAFETY: NULL or writable by contract.
        unsafe { write_listener(listener_out, port_out, l.id, l.addr.port()) };
        Ok(())
    })
}

/// The address and options of a listen call, as the three listen exports take them.
///
/// # Safety
/// `address` is NULL or a NUL-terminated string.
unsafe fn listen_args(
    address: *const c_char,
    options: u32,
) -> Result<(ListenAddr, BindOptions), Error> {
    // SAFETY: NULL or NUL-terminated by the caller's contract.
    let a: ListenAddr = unsafe { c_str(address, "address") }?.parse()?;
    // The engine's error names the option ("options: unknown listen option bits 0x10").
    let opts = BindOptions::from_bits(options)?;
    Ok((a, opts))
}

/// Writes a listener's id and port to the out-params that are not NULL.
///
/// # Safety
/// Each pointer is NULL or writable.
unsafe fn write_listener(listener_out: *mut u32, port_out: *mut u16, id: u32, port: u16) {
    // SAFETY: each out-param is NULL (skipped) or writable by the caller's contract.
    unsafe {
        if !listener_out.is_null() {
            write_out(listener_out, id);
        }
        if !port_out.is_null() {
            write_out(port_out, port);
        }
    }
}
