//! Status codes and the per-thread last error.

use corral_core::{Error, ErrorKind};
use std::cell::RefCell;
use std::ffi::c_char;

/// Result of every fallible call. `CORRAL_STATUS_OK` is 0; errors are positive. After an
/// error, `corral_last_error_message()` on the same thread says what happened, with context.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum corral_status {
    /// Success.
    CORRAL_STATUS_OK = 0,
    /// A bad argument: NULL, an unknown enum value, a malformed address, an out-of-range number.
    CORRAL_STATUS_INVALID_ARGUMENT = 1,
    /// The operating system refused; `corral_last_error_errno()` has the errno.
    CORRAL_STATUS_OS_ERROR = 2,
    /// A peer broke the channel protocol (malformed frame).
    CORRAL_STATUS_PROTOCOL_ERROR = 3,
    /// A message above the 64 MiB limit.
    CORRAL_STATUS_TOO_LARGE = 4,
    /// The call is not valid now: options changed after start, a primary call in a forked
    /// worker, a new worker during shutdown, `corral_primary_run`/`_dispatch` called from the
    /// primary's own event callback.
    CORRAL_STATUS_WRONG_STATE = 5,
    /// A worker call in a process that no corral primary started.
    CORRAL_STATUS_NOT_A_WORKER = 6,
    /// No worker with that id (never existed, or already reaped).
    CORRAL_STATUS_NO_SUCH_WORKER = 7,
    /// The channel is closed (the worker disconnected, or the primary is gone).
    CORRAL_STATUS_DISCONNECTED = 8,
    /// A bug in corral: a Rust panic was caught at the boundary. Please report it.
    CORRAL_STATUS_PANIC = 9,
    /// Not now, try again later: `corral_primary_send` found the worker's queue at its limit
    /// (`corral_options_set_send_queue_limit`). Nothing was copied or queued, nothing was
    /// closed; `CORRAL_EVENT_DRAIN` for that worker says when to send again.
    CORRAL_STATUS_WOULD_BLOCK = 10,
}

struct LastError {
    status: corral_status,
    errno: i32,
    message: String,
}

thread_local! {
    static LAST: RefCell<LastError> = const {
        RefCell::new(LastError { status: corral_status::CORRAL_STATUS_OK, errno: 0, message: String::new() })
    };
}

fn status_of(kind: ErrorKind) -> corral_status {
    use corral_status::*;
    match kind {
        ErrorKind::InvalidArgument => CORRAL_STATUS_INVALID_ARGUMENT,
        ErrorKind::Os => CORRAL_STATUS_OS_ERROR,
        ErrorKind::Protocol => CORRAL_STATUS_PROTOCOL_ERROR,
        ErrorKind::TooLarge => CORRAL_STATUS_TOO_LARGE,
        ErrorKind::WrongState => CORRAL_STATUS_WRONG_STATE,
        ErrorKind::NotWorker => CORRAL_STATUS_NOT_A_WORKER,
        ErrorKind::NoSuchWorker => CORRAL_STATUS_NO_SUCH_WORKER,
        ErrorKind::Disconnected => CORRAL_STATUS_DISCONNECTED,
        ErrorKind::WouldBlock => CORRAL_STATUS_WOULD_BLOCK,
    }
}

pub(crate) fn set_last_error(e: &Error) -> corral_status {
    let status = status_of(e.kind());
    LAST.with(|l| {
        *l.borrow_mut() = LastError {
            status,
            errno: e.errno(),
            message: e.message().to_string(),
        }
    });
    status
}

pub(crate) fn set_panic(what: &str) -> corral_status {
    let status = corral_status::CORRAL_STATUS_PANIC;
    LAST.with(|l| {
        *l.borrow_mut() = LastError {
            status,
            errno: 0,
            message: format!("internal error (panic): {what}"),
        }
    });
    status
}

/// Copies the calling thread's last error message into `buf` with snprintf semantics: at most
/// `len - 1` bytes plus a NUL are written; the return value is the message's full length, so a
/// return `>= len` means it was truncated. `buf` may be NULL when `len` is 0 (to ask the size).
/// The message is empty when no call failed on this thread yet.
///
/// Valid in every thread and in a forked child.
#[no_mangle]
pub unsafe extern "C" fn corral_last_error_message(buf: *mut c_char, len: usize) -> usize {
    super::boundary::guard_value(0, || {
        LAST.with(|l| {
            // SAFETY: `buf` has `len` writable bytes by contract.
            unsafe { super::boundary::copy_out(&l.borrow().message, buf, len) }
        })
    })
}

/// The status of the calling thread's last failed call (`CORRAL_STATUS_OK` if none).
#[no_mangle]
pub extern "C" fn corral_last_error_status() -> corral_status {
    LAST.with(|l| l.borrow().status)
}

/// The errno of the calling thread's last failed call (0 when the OS was not involved).
#[no_mangle]
pub extern "C" fn corral_last_error_errno() -> i32 {
    LAST.with(|l| l.borrow().errno)
}

/// A static, NUL-terminated name for a status (`"CORRAL_STATUS_OK"`); never free it.
/// Unknown values give `"CORRAL_STATUS_UNKNOWN"`.
#[no_mangle]
pub extern "C" fn corral_status_str(status: u32) -> *const c_char {
    super::boundary::guard_value(std::ptr::null(), || {
        let s: &'static str = match status {
            0 => "CORRAL_STATUS_OK\0",
            1 => "CORRAL_STATUS_INVALID_ARGUMENT\0",
            2 => "CORRAL_STATUS_OS_ERROR\0",
            3 => "CORRAL_STATUS_PROTOCOL_ERROR\0",
            4 => "CORRAL_STATUS_TOO_LARGE\0",
            5 => "CORRAL_STATUS_WRONG_STATE\0",
            6 => "CORRAL_STATUS_NOT_A_WORKER\0",
            7 => "CORRAL_STATUS_NO_SUCH_WORKER\0",
            8 => "CORRAL_STATUS_DISCONNECTED\0",
            9 => "CORRAL_STATUS_PANIC\0",
            10 => "CORRAL_STATUS_WOULD_BLOCK\0",
            _ => "CORRAL_STATUS_UNKNOWN\0",
        };
        s.as_ptr().cast()
    })
}
