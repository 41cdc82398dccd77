//! The exported C functions, one concept per file: `boundary` (panic and pointer checks),
//! `error` (status codes and the last error), `options`, `primary`, `event`, `worker`.

#[macro_use]
mod boundary;
pub mod error;
pub mod event;
pub mod options;
pub mod primary;
pub mod supervisor;
pub mod worker;

pub use error::*;
pub use event::*;
pub use options::*;
pub use primary::*;
pub use supervisor::*;
pub use worker::*;

/// Library version, `"MAJOR.MINOR.PATCH"` (static string; never free it).
///
/// Valid in every process and thread, also in a forked child.
#[no_mangle]
pub extern "C" fn corral_version() -> *const std::ffi::c_char {
    boundary::guard_value(std::ptr::null(), || {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}

/// The default worker count: CPUs this process may run on (affinity mask), lowered to a
/// cgroup v2 `cpu.max` quota (rounded up), and at least 1.
#[no_mangle]
pub extern "C" fn corral_available_parallelism() -> usize {
    boundary::guard_value(1, corral_core::available_parallelism)
}
