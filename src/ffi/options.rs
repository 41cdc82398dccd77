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
/// `CORRAL_EVENT_WARNING`.
pub const CORRAL_POLICY_KERNEL_RR: u32 = 2;

/// Options of a primary (opaque). Create with `corral_options_new`, free with
/// `corral_options_free`. Not thread-safe; valid until freed.
pub struct corral_options {
    pub(crate) opts: PrimaryOptions,
    pub(crate) callback: corral_event_callback,
    pub(crate) userdata: usize,
}

/// Creates options with the defaults: round-robin, a window of 32 connections, fork mode (no
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

/// Sets the scheduling policy: `CORRAL_POLICY_RR`, `CORRAL_POLICY_SHARED` or
/// `CORRAL_POLICY_KERNEL_RR`. The environment variable `CORRAL_SCHED_POLICY=rr|shared|kernel-rr`
/// still overrides it when the primary starts.
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
            other => {
                return Err(Error::invalid(format!(
                    "policy {other} is unknown: use CORRAL_POLICY_RR (0), CORRAL_POLICY_SHARED \
                     (1) or CORRAL_POLICY_KERNEL_RR (2)"
                )))
            }
        };
        Ok(())
    })
}

/// Sets how many connections a worker may have in flight (handed out, not yet taken off its
/// channel) in round-robin; a full worker is skipped. 1 to 65536; default 32.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn corral_options_set_window(
    opts: *mut corral_options,
    window: u32,
) -> corral_status {
    set_checked(opts, |o| o.window = window)
}

/// Round-robin: a worker with connections unread in its channel whose queue does not move for
/// `timeout_ms` (stopped, or its loop blocked) is dealt nothing more until it reads again, and
/// the connections still unread in its channel go to the other workers. 10 to 604800000 (7
/// days); 0 turns the check off; default 250. `CORRAL_STALL_TIMEOUT_MS` in the environment
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
        let env = o
            .opts
            .exec
            .take()
            .map(|s| (s.env, s.cwd))
            .unwrap_or_default();
        o.opts.exec = Some(SpawnSpec {
            program: program.into(),
            args,
            env: env.0,
            cwd: env.1,
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
        if k.is_empty() || k.contains('=') {
            return Err(Error::invalid(format!(
                "environment key {k:?} is empty or contains '='"
            )));
        }
        exec_spec(o)?.env.push((k.into(), v.into()));
        Ok(())
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
