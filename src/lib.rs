//! The C ABI of corral: `libcorral.so` / `libcorral.a` and `include/corral.h`.
//!
//! Conventions (rustls-ffi's): every name starts with `corral_`; handles are opaque and created
//! by `_new`, destroyed by `_free` (`_free(NULL)` is a no-op); fallible calls return a
//! `corral_status` and write results into trailing out-params only on success; the failing
//! call records a per-thread last error (`corral_last_error_message`). No call aborts or
//! unwinds into C: a Rust panic becomes `CORRAL_STATUS_PANIC`.
//!
//! Threads: handles are not synchronised. Use each handle from one thread at a time; different
//! handles may be used from different threads. The last error is per thread.
//!
//! Safety contract, for every export: each pointer argument is NULL (reported as
//! `CORRAL_STATUS_INVALID_ARGUMENT`, or a no-op for `_free`) or valid for what the function's
//! doc says (a live handle from this library, a NUL-terminated string, `len` readable bytes,
//! a writable out-param). It is stated here once instead of in a `# Safety` section per
//! function, as in regex-capi and rustls-ffi.
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

pub mod ffi;

pub use ffi::*;
