//! `corral_options`: an opaque builder for a primary. Set what you need, pass it to
//! `corral_primary_new` (which copies it), free it when you like.

use super::boundary::{c_str, guard, handle_mut, non_null, write_out};
use super::error::corral_status;
use super::event::corral_event_callback;
use corral_core::{Error, Policy, PrimaryOptions, SpawnSpec};
use std::ffi::{c_char, c_void};
use std::time::Duration;

/// Round-robin: the primary accepts and hands connections to workers in turn (the default).
pub const CORRAL_POLICY_RR: u32 = 0;
/// Shared: every worker accepts on the shared listening socket.
pub const CORRAL_POLICY_SHARED: u32 = 1;
/// Kernel round-robin: every worker accepts on its own socket of a `SO_REUSEPORT` group and an
/// eBPF program deals connections in turn; the primary is out of the data path. Needs
/// `CAP_BPF` (or root) and Linux 5.14: where the program cannot be loaded (or the address is
/// a Unix socket) that address runs `CORRAL_POLICY_RR`, reported once by
/// `CORRAL_EVENT_WARNING`. A worker with its window (64) of connections handed to it and not taken yet (the
/// `rr` window: queued at it, not open) is skipped, so a stopped or hung one is dealt no
/// more; `corral_worker_next` releases each connection as it hands it out, so held keep-alive
/// connections never fill the window and `corral_worker_closed` is not needed (a no-op).
pub const CORRAL_POLICY_KERNEL_RR: u32 = 2;

/// Sticky: the primary deals every connection of a client to the same worker (by its address,
/// cut to `corral_options_set_sticky_prefix`, the real one under
/// `corral_options_set_proxy_protocol`, or by `corral_options_set_sticky_key`). Clients map to
/// the workers' slots by rendezvous hashing: a crashed worker's clients go to others until its
/// replacement takes its slot back; a fifth worker takes ~1/5 of the clients.
pub const CORRAL_POLICY_STICKY: u32 = 3;
/// Least: the primary deals each connection to the worker with the fewest open ones (ties in
/// turn). Workers report closes with `corral_worker_closed`.
pub const CORRAL_POLICY_LEAST: u32 = 4;
/// Least, choosing the better of two workers drawn at random (for large worker counts).
pub const CORRAL_POLICY_LEAST_P2C: u32 = 5;
/// Kernel least-loaded: as `CORRAL_POLICY_KERNEL_RR` (each worker accepts on its own socket,
/// the primary is out of the data path), but the eBPF program picks the worker with the
/// fewest open connections. Workers must call `corral_worker_closed` once per connection
/// after closing it (an atomic decrement in shared memory, no message). Where the program
/// cannot be loaded, that address runs `CORRAL_POLICY_LEAST`, reported once by
/// `CORRAL_EVENT_WARNING`.
pub const CORRAL_POLICY_KERNEL_LEAST: u32 = 6;

/// `corral_options_set_sticky_key`: no key, route by address (the default).
pub const CORRAL_STICKY_KEY_NONE: u32 = 0;
/// `corral_options_set_sticky_key`: the value of the named cookie.
pub const CORRAL_STICKY_KEY_COOKIE: u32 = 1;
/// `corral_options_set_sticky_key`: the value of the named query parameter.
pub const CORRAL_STICKY_KEY_QUERY: u32 = 2;
/// `corral_options_set_sticky_key`: the value of the named header.
pub const CORRAL_STICKY_KEY_HEADER: u32 = 3;

/// The C value of a policy (`corral_primary_policy`).
pub(crate) fn policy_value(p: Policy) -> u32 {
    use corral_core::policy::least::Pick;
    match p {
        Policy::RoundRobin => CORRAL_POLICY_RR,
        Policy::Shared => CORRAL_POLICY_SHARED,
        Policy::KernelRr => CORRAL_POLICY_KERNEL_RR,
        Policy::KernelLeast => CORRAL_POLICY_KERNEL_LEAST,
        Policy::Sticky => CORRAL_POLICY_STICKY,
        Policy::Least(Pick::Least) => CORRAL_POLICY_LEAST,
        Policy::Least(Pick::TwoChoices) => CORRAL_POLICY_LEAST_P2C,
    }
}

/// Options of a primary (opaque). Create with `corral_options_new`, free with
/// `corral_options_free`. Not thread-safe; valid until freed.
pub struct corral_options {
    pub(crate) opts: PrimaryOptions,
    pub(crate) callback: corral_event_callback,
    pub(crate) userdata: usize,
}

/// Creates options with the defaults: round-robin, a window of 64 connections, fork mode (no
/// exec program), no signal handling, a send queue limit of 16 MiB per worker. Free with `corral_options_free`.
///
/// Returns `CORRAL_STATUS_OK`, or `CORRAL_STATUS_INVALID_ARGUMENT` if `out` is NULL.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_new(out: *mut *mut corral_options) -> corral_status {
    guard(|| {
        non_null(out, "out")?;
        let b = Box::new(corral_options {
            opts: PrimaryOptions::default(),
            callback: None,
            userdata: 0,
        });
        // SAFETY: `out` is non-NULL and writable by contract.
        unsafe { write_out(out, Box::into_raw(b)) };
        Ok(())
    })
}

/// Frees options. NULL is a no-op. Primaries created from them are not affected.
#[no_mangle]
pub unsafe extern "C" fn corral_options_free(opts: *mut corral_options) {
    // SAFETY: created by corral_options_new, freed once by contract.
    unsafe { super::boundary::free_box(opts) }
}

fn with_opts(
    opts: *mut corral_options,
    f: impl FnOnce(&mut corral_options) -> Result<(), Error>,
) -> corral_status {
    guard(|| {
        // SAFETY: NULL or a live options handle by contract.
        let o = unsafe { handle_mut(opts, "opts") }?;
        f(o)
    })
}

/// Changes one option and checks the result with the engine's ranges (corral-core's
/// `PrimaryOptions::validate`, the one place both fronts share); unchanged on error.
fn set_checked(
    opts: *mut corral_options,
    f: impl FnOnce(&mut corral_core::PrimaryOptions),
) -> corral_status {
    with_opts(opts, |o| {
        let mut next = o.opts.clone();
        f(&mut next);
        next.validate()?;
        o.opts = next;
        Ok(())
    })
}

/// Sets the scheduling policy: `CORRAL_POLICY_RR`, `CORRAL_POLICY_SHARED`,
/// `CORRAL_POLICY_KERNEL_RR`, `CORRAL_POLICY_STICKY`, `CORRAL_POLICY_LEAST`,
/// `CORRAL_POLICY_LEAST_P2C` or `CORRAL_POLICY_KERNEL_LEAST`. The environment variable
/// `CORRAL_SCHED_POLICY=rr|shared|kernel-rr|kernel-least|sticky|least|least-p2c` still
/// overrides it when the
/// primary starts.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for another value or a NULL handle.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_policy(
    opts: *mut corral_options,
    policy: u32,
) -> corral_status {
    with_opts(opts, |o| {
        o.opts.policy = match policy {
            CORRAL_POLICY_RR => Policy::RoundRobin,
            CORRAL_POLICY_SHARED => Policy::Shared,
            CORRAL_POLICY_KERNEL_RR => Policy::KernelRr,
            CORRAL_POLICY_STICKY => Policy::Sticky,
            CORRAL_POLICY_LEAST => Policy::Least(corral_core::policy::least::Pick::Least),
            CORRAL_POLICY_LEAST_P2C => Policy::Least(corral_core::policy::least::Pick::TwoChoices),
            CORRAL_POLICY_KERNEL_LEAST => Policy::KernelLeast,
            other => {
                return Err(Error::invalid(format!(
                    "policy {other} is unknown: use CORRAL_POLICY_RR (0), CORRAL_POLICY_SHARED \
                     (1), CORRAL_POLICY_KERNEL_RR (2), CORRAL_POLICY_STICKY (3), \
                     CORRAL_POLICY_LEAST (4), CORRAL_POLICY_LEAST_P2C (5) or \
                     CORRAL_POLICY_KERNEL_LEAST (6)"
                )))
            }
        };
        Ok(())
    })
}

/// `CORRAL_POLICY_STICKY`: clients whose addresses share their first `v4_prefix` bits (IPv4)
/// or `v6_prefix` bits (IPv6) are one client (for clients behind rotating addresses: e.g. 24
/// and 64). Default 32 and 128 (the whole address).
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` above 32 or 128 (the message names the limit) or
/// for a NULL handle; the options are unchanged then.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_sticky_prefix(
    opts: *mut corral_options,
    v4_prefix: u32,
    v6_prefix: u32,
) -> corral_status {
    with_opts(opts, |o| {
        let narrow = |p: u32| u8::try_from(p).unwrap_or(u8::MAX);
        o.opts.routing.address_key =
            corral_core::policy::sticky::AddressKey::new(narrow(v4_prefix), narrow(v6_prefix))?;
        Ok(())
    })
}

/// `CORRAL_POLICY_STICKY`: route by a key in the client's first HTTP/1.x request instead of
/// its address: `kind` is `CORRAL_STICKY_KEY_COOKIE`, `_QUERY` or `_HEADER` and `name` the
/// cookie, query parameter or header (socket.io: `CORRAL_STICKY_KEY_QUERY`, `"sid"`). The
/// primary peeks at the request (nothing is consumed) for at most the peek bounds
/// (`corral_options_set_peek`); a request without the key routes by address.
/// `CORRAL_STICKY_KEY_NONE` (with `name` NULL) turns it off. `name` is copied.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for an unknown kind, a NULL or invalid name (1 to
/// 256 characters valid in that place) or a NULL handle; unchanged then.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_sticky_key(
    opts: *mut corral_options,
    kind: u32,
    name: *const c_char,
) -> corral_status {
    use corral_core::policy::http_key::KeySource;
    with_opts(opts, |o| {
        if kind == CORRAL_STICKY_KEY_NONE {
            o.opts.routing.key = None;
            return Ok(());
        }
        // SAFETY: NULL or NUL-terminated by contract.
        let name = unsafe { c_str(name, "name") }?.to_string();
        let key = match kind {
            CORRAL_STICKY_KEY_COOKIE => KeySource::Cookie(name),
            CORRAL_STICKY_KEY_QUERY => KeySource::Query(name),
            CORRAL_STICKY_KEY_HEADER => KeySource::Header(name),
            other => {
                return Err(Error::invalid(format!(
                    "sticky key kind {other} is unknown: use CORRAL_STICKY_KEY_NONE (0), \
                     _COOKIE (1), _QUERY (2) or _HEADER (3)"
                )))
            }
        };
        key.validate()?;
        o.opts.routing.key = Some(key);
        Ok(())
    })
}

/// Every connection starts with a PROXY protocol header, v1 or v2 (HAProxy `send-proxy`,
/// nginx `proxy_protocol on`, AWS NLB): the primary reads it (the worker's first read is the
/// client's first byte), routes on the client address it names, and hands that address to the
/// worker (`corral_worker_event_peer_addr`). A connection without a valid header within the
/// peek bounds is closed and counted. For every listener of the primary, under every policy
/// but `CORRAL_POLICY_SHARED`. Default off.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for a NULL handle.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_proxy_protocol(
    opts: *mut corral_options,
    on: bool,
) -> corral_status {
    set_checked(opts, |o| o.routing.proxy_protocol = on)
}

/// Bounds of the primary's look at a new connection (PROXY header, sticky key): at most
/// `max_bytes` bytes (64 to 8192; default 4096) and `timeout_ms` milliseconds (1 to 60000;
/// default 2000). 0 keeps a value as it is. On Linux the primary's TCP listeners then hand it a
/// connection only once its first bytes came (`TCP_DEFER_ACCEPT`): a client that connects and
/// sends nothing is accepted about a second later, and `timeout_ms` runs from there.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for a value out of range (the message names it) or
/// a NULL handle; unchanged then.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_peek(
    opts: *mut corral_options,
    max_bytes: u32,
    timeout_ms: u32,
) -> corral_status {
    set_checked(opts, |o| {
        if max_bytes > 0 {
            o.routing.peek_bytes = max_bytes as usize;
        }
        if timeout_ms > 0 {
            o.routing.peek_timeout = Duration::from_millis(timeout_ms as u64);
        }
    })
}

/// Sets how many connections a worker may have in flight (handed out, not yet taken off its
/// channel) in round-robin; a full worker is skipped. 1 to 65536; default 64.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_window(
    opts: *mut corral_options,
    window: u32,
) -> corral_status {
    set_checked(opts, |o| o.window = window)
}

/// A worker with connections unread in its channel whose queue does not move for `timeout_ms`
/// (stopped, or its loop blocked) is dealt nothing more until it reads again, and the
/// connections still unread in its channel go to the other workers. 10 to 604800000 (7 days);
/// 0 turns the check off; default 250. Only `CORRAL_POLICY_STICKY` waits that long (a
/// connection dealt again moves its client's session); the other policies use at most 25 ms,
/// since a worker that reads nothing for that long is busy. Under `CORRAL_POLICY_KERNEL_RR` the
/// kernel skips a worker that holds connections and accepted none for that long, until it
/// accepts one (what it holds waits for it). `CORRAL_STALL_TIMEOUT_MS` in the environment
/// overrides it when the primary starts.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for a value out of range or a NULL handle.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_stall_timeout(
    opts: *mut corral_options,
    timeout_ms: u32,
) -> corral_status {
    set_checked(opts, |o| {
        o.stall_timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64))
    })
}

/// Sets how many listeners one worker may hold at once (each costs the primary an fd),
/// counting its listens still waiting for a host name lookup. A listen past it fails in that
/// worker with `EINVAL` and a message naming `max_listeners_per_worker`; the primary carries
/// on. 1 to 65536; default 64.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for a value out of range or a NULL handle.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_max_listeners_per_worker(
    opts: *mut corral_options,
    max: u32,
) -> corral_status {
    set_checked(opts, |o| o.max_listeners_per_worker = max)
}

/// Sets how long a listener whose workers all crashed stays open, waiting for a replacement
/// (clients wait in its backlog meanwhile), in milliseconds: a worker listening on the same
/// address in time keeps it, otherwise it closes and its fd is given back. 0 to 86400000 (one
/// day); default 60000. A graceful leave of the last worker closes the listener at once.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` for a value out of range or a NULL handle.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_orphan_listener_grace(
    opts: *mut corral_options,
    grace_ms: u32,
) -> corral_status {
    set_checked(opts, |o| {
        o.orphan_listener_grace = Duration::from_millis(grace_ms as u64)
    })
}

/// Sets how many bytes of messages from `corral_primary_send` may wait in one worker's queue
/// while that worker does not read, each message counting its length plus 128 bytes: 65536
/// (64 KiB) to 1073741824 (1 GiB); default 16777216 (16 MiB). Past it `corral_primary_send` returns `CORRAL_STATUS_WOULD_BLOCK` and
/// `CORRAL_EVENT_DRAIN` follows once the queue is down to half. The primary's memory for
/// queued messages is at most this much per worker, plus one message of up to 64 MiB.
///
/// Returns `CORRAL_STATUS_INVALID_ARGUMENT` (naming the range) for another value or a NULL
/// handle.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_send_queue_limit(
    opts: *mut corral_options,
    bytes: usize,
) -> corral_status {
    with_opts(opts, |o| {
        corral_core::check_send_queue_limit(bytes)?;
        o.opts.send_queue_limit = Some(bytes);
        Ok(())
    })
}

/// Exec mode: workers started by `corral_primary_spawn` run `program` with the `argc`
/// arguments in `argv` (not counting the program name; `argv` may be NULL when `argc` is 0).
/// Strings are copied. `program` without a slash is looked up in `PATH`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_exec(
    opts: *mut corral_options,
    program: *const c_char,
    argv: *const *const c_char,
    argc: usize,
) -> corral_status {
    with_opts(opts, |o| {
        // SAFETY: NUL-terminated strings by contract.
        let program = unsafe { c_str(program, "program") }?;
        if program.is_empty() {
            return Err(Error::invalid("program is empty"));
        }
        let mut args = Vec::with_capacity(argc);
        if argc > 0 {
            non_null(argv, "argv")?;
            for i in 0..argc {
                // SAFETY: `argv` has `argc` entries by contract.
                let a = unsafe { c_str(*argv.add(i), "argv[i]") }?;
                args.push(a.into());
            }
        }
        // A second call changes the program and arguments; the environment and directory
        // set so far stay.
        let kept = o.opts.exec.take().unwrap_or_default();
        o.opts.exec = Some(SpawnSpec {
            program: program.into(),
            args,
            env: kept.env,
            env_remove: kept.env_remove,
            cwd: kept.cwd,
            ..Default::default()
        });
        Ok(())
    })
}

fn exec_spec(o: &mut corral_options) -> Result<&mut SpawnSpec, Error> {
    o.opts
        .exec
        .as_mut()
        .ok_or_else(|| Error::wrong_state("call corral_options_set_exec first (exec mode only)"))
}

/// Adds `key=value` to the environment of exec-mode workers (after `corral_options_set_exec`).
/// Calls apply in order: the last `corral_options_add_env` or `corral_options_remove_env` of
/// a key decides.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_add_env(
    opts: *mut corral_options,
    key: *const c_char,
    value: *const c_char,
) -> corral_status {
    with_opts(opts, |o| {
        // SAFETY: NUL-terminated strings by contract.
        let (k, v) = unsafe { (c_str(key, "key")?, c_str(value, "value")?) };
        exec_spec(o)?.set_env(k, v)
    })
}

/// Exec-mode workers do not get `key`, even though the primary's environment has it (as
/// node:cluster's `fork({ KEY: undefined })`), after `corral_options_set_exec`. A later
/// `corral_options_add_env` of the same key sets it again; one made earlier is undone. The
/// worker variables corral sets itself (`CORRAL_*`, `LISTEN_FDS`) are not affected.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_remove_env(
    opts: *mut corral_options,
    key: *const c_char,
) -> corral_status {
    with_opts(opts, |o| {
        // SAFETY: NUL-terminated string by contract.
        let k = unsafe { c_str(key, "key")? };
        exec_spec(o)?.remove_env(k)
    })
}

/// Sets the working directory of exec-mode workers (after `corral_options_set_exec`).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_cwd(
    opts: *mut corral_options,
    dir: *const c_char,
) -> corral_status {
    with_opts(opts, |o| {
        // SAFETY: NUL-terminated string by contract.
        let d = unsafe { c_str(dir, "dir") }?;
        exec_spec(o)?.cwd = Some(d.into());
        Ok(())
    })
}

/// When `enable` is true, the primary handles SIGINT and SIGTERM: the first starts a graceful
/// shutdown with `timeout_ms` as its deadline, a second one SIGKILLs what is left. This
/// installs process-wide handlers when the primary is created (restored when it is freed).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_shutdown_signals(
    opts: *mut corral_options,
    enable: bool,
    timeout_ms: u32,
) -> corral_status {
    with_opts(opts, |o| {
        o.opts.shutdown_signals = enable;
        o.opts.shutdown_timeout = Duration::from_millis(timeout_ms as u64);
        Ok(())
    })
}

/// When `enable` is true, SIGHUP starts a rolling reload of a supervised cluster (see
/// `corral_primary_supervise`). Installs a process-wide handler when the primary is created
/// (restored when it is freed).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_reload_signal(
    opts: *mut corral_options,
    enable: bool,
) -> corral_status {
    with_opts(opts, |o| {
        o.opts.reload_signal = enable;
        Ok(())
    })
}

/// Sets the function that receives the primary's events (see `corral_event_callback`) and an
/// opaque pointer passed back to it. `callback` may be NULL (events are then dropped).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_event_callback(
    opts: *mut corral_options,
    callback: corral_event_callback,
    userdata: *mut c_void,
) -> corral_status {
    with_opts(opts, |o| {
        o.callback = callback;
        o.userdata = userdata as usize;
        Ok(())
    })
}
