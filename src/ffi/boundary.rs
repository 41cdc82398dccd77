//! The boundary every export goes through: panics become statuses, NULLs become
//! `CORRAL_STATUS_INVALID_ARGUMENT` naming the parameter, errors become the last error.

use super::error::{corral_status, set_last_error};
use corral_core::{Error, ErrorKind};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; maps its error (or a panic) to a status and records the last error.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Error>) -> corral_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => corral_status::CORRAL_STATUS_OK,
        Ok(Err(e)) => set_last_error(&e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            super::error::set_panic(&what)
        }
    }
}

/// Runs `f` for an export that returns a plain value; a panic gives `fallback`.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Frees a handle made by `Box::into_raw` (NULL: nothing), for every `*_free` export: a panic in
/// a destructor (a `Drop` that closes fds, joins nothing) is caught like any other export's.
///
/// # Safety
/// `p` is NULL or came from `Box::into_raw` for a `T` and is not used again.
pub(crate) unsafe fn free_box<T>(p: *mut T) {
    if p.is_null() {
        return;
    }
    guard_value((), || {
        // SAFETY: from Box::into_raw and freed once, by the caller's contract.
        drop(unsafe { Box::from_raw(p) })
    })
}

/// A NULL check that names the parameter.
pub(crate) fn non_null<T>(p: *const T, name: &str) -> Result<(), Error> {
    if p.is_null() {
        Err(Error::invalid(format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

/// Borrows a handle mutably.
///
/// # Safety
/// `p` is NULL or a live handle not borrowed elsewhere for the duration of the use.
pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Error> {
    non_null(p, name)?;
    // SAFETY: non-NULL and, by the caller's contract, a live, unaliased handle.
    Ok(unsafe { &mut *p })
}

/// Borrows a handle.
///
/// # Safety
/// `p` is NULL or a live handle.
pub(crate) unsafe fn handle_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T, Error> {
    non_null(p, name)?;
    // SAFETY: non-NULL and, by the caller's contract, a live handle.
    Ok(unsafe { &*p })
}

/// Reads a NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or points at a NUL-terminated string.
pub(crate) unsafe fn c_str<'a>(p: *const std::ffi::c_char, name: &str) -> Result<&'a str, Error> {
    non_null(p, name)?;
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::invalid(format!("{name} is not valid UTF-8")))
}

/// Borrows `len` bytes (`data` may be NULL when `len` is 0).
///
/// # Safety
/// `data` points at `len` readable bytes, or `len` is 0.
pub(crate) unsafe fn bytes<'a>(data: *const u8, len: usize, name: &str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    non_null(data, name)?;
    // SAFETY: non-NULL, `len` readable bytes by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Borrows the `len` bytes of a message, checking `len` against the 64 MiB message limit
/// before any slice exists (a huge `len` would otherwise be copied, or make an invalid slice).
///
/// # Safety
/// `data` points at `len` readable bytes, or `len` is 0; only read when `len` is in the limit.
pub(crate) unsafe fn message<'a>(
    data: *const u8,
    len: usize,
    name: &str,
) -> Result<&'a [u8], Error> {
    let max = corral_core::MAX_MESSAGE_LEN;
    if len > max {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("{name}: message of {len} bytes exceeds the limit of {max} bytes (64 MiB)"),
        ));
    }
    // SAFETY: `len` <= 64 MiB (so <= isize::MAX), readable by the caller's contract.
    unsafe { bytes(data, len, name) }
}

/// Writes an out-param.
///
/// # Safety
/// `out` is NULL-checked here; otherwise it points at writable memory for a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: the caller checked `out` for NULL and it is writable by contract.
    unsafe { out.write(value) }
}

/// Copies `s` into `buf` with snprintf semantics: at most `len - 1` bytes and a NUL; returns
/// the full length of `s`.
///
/// # Safety
/// `buf` is NULL (then `len` must be 0) or points at `len` writable bytes.
pub(crate) unsafe fn copy_out(s: &str, buf: *mut std::ffi::c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let n = s.len().min(len - 1);
        // SAFETY: `buf` has `len` writable bytes; we write `n + 1 <= len`.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    s.len()
}
