//! Native part of `require('corral')`: a small internal surface (`NativePrimary`,
//! `NativeWorker`, `workerEnv`) that index.js wraps into node:cluster's API.
//!
//! Threads: the primary's engine runs its poll loop on a native thread; JS calls take the same
//! lock for the short time a call needs; the engine thread reaches JS only through
//! ThreadsafeFunctions with `callee_handled::<false>()`. A worker reads its channel on the JS
//! thread itself, from a libuv poll handle on its loop (uvpoll.rs: half the wake-ups per
//! connection, measured), with a native receive thread and a ThreadsafeFunction as the fallback.
//! Payloads own their fds until they are turned into JS values, so a call napi rejects
//! (environment closing) closes them.
//!
//! Errors reach JS as napi errors with Node's `code` (error.rs): `napi_create_error` sets it,
//! the message is the engine's own.
//!
//! Panics never cross into Node (an abort would take the user's process down without a word):
//! every exported function is `#[napi(catch_unwind)]` (a panic becomes a JS exception), the
//! engine thread catches them and ends the cluster with an `'error'` (primary.rs `fail`), a
//! worker's receive thread sends them as an error event (worker.rs), and the libuv callbacks
//! (uvpoll.rs) turn them into an uncaught JS exception. tests/boundary.rs fails on an export or
//! a C callback without its guard; test/boundary.test.js panics on purpose (fault.rs) and sees
//! the JS errors.
//!
//! `unsafe` lives where the addon talks to napi, libuv or the OS directly, and nowhere else:
//! - events.rs: the event batch written into a napi ArrayBuffer by hand, and external
//!   ArrayBuffers over received payloads (one napi object per batch instead of one per event:
//!   measured, see `to_js`);
//! - uvpoll.rs: libuv, looked up with `dlsym` in the host process (not linked, so the addon
//!   loads in any Node), a `uv_poll_t` on the JS thread's loop, and the raw napi calls that
//!   run JS from its callback (`napi_make_callback`, `napi_fatal_exception`);
//! - lib.rs `dup_handles`: borrowing the fds JS passes in, to duplicate them;
//! - primary.rs and worker.rs: `poll(2)` on the engine's fd, `kill(2)` of the workers of a
//!   failed engine, `shutdown(2)` to wake a receive thread.
//!
//! Each block has a `// SAFETY:` line.
#![deny(clippy::all)]

mod error;
mod events;
mod fault;
mod messages;
mod primary;
mod supervise;
mod uvpoll;
mod worker;

use napi_derive::napi;

pub(crate) use error::{to_napi, Failure, Result};
/// Reachable from the crate root (a `#[napi]` export, registered wherever it is defined).
pub use fault::panic_for_test;
/// Reachable from the crate root too (called once per connection by lib/child.js).
pub use worker::worker_accepted;

/// Version of the engine.
/// The event batch layout for lib/native.js: the kinds by name, the ints per event (`META`)
/// and before them (`HEAD`), written once in events.rs.
#[napi(object)]
pub struct EventLayout {
    pub kinds: std::collections::HashMap<String, u32>,
    pub meta: u32,
    pub head: u32,
}

#[napi(catch_unwind)]
pub fn event_layout() -> EventLayout {
    EventLayout {
        kinds: events::kind::ALL
            .iter()
            .map(|&(n, k)| (n.to_string(), k))
            .collect(),
        meta: events::META as u32,
        head: events::HEAD as u32,
    }
}

#[napi(catch_unwind)]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The worker id if a corral primary started this process (`CORRAL_WORKER_ID` and
/// `CORRAL_CHANNEL_FD` are set), without consuming the variables.
#[napi(catch_unwind)]
pub fn worker_env() -> Option<u32> {
    corral_core::WorkerEnv::peek_id().and_then(|id| u32::try_from(id).ok())
}

/// The default worker count (cgroup-aware CPU count).
#[napi(catch_unwind)]
pub fn available_parallelism() -> u32 {
    corral_core::available_parallelism() as u32
}

/// The text of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// What a native `send` returns to index.js (`SendCallbacks.settle`): 0 when the message was
/// written at once; otherwise its sequence number `n` on the channel (out once `written()`
/// reaches `n`), negated when the queue is over the high-water mark (`send` returns false).
pub(crate) fn sent_to_js(s: corral_core::Sent) -> f64 {
    match (s.written, s.below_high_water) {
        (true, _) => 0.0,
        (false, true) => s.seq as f64,
        (false, false) => -(s.seq as f64),
    }
}

/// Duplicates the fds of handles JS sends with a message (JS keeps or closes its own copies).
pub(crate) fn dup_handles(fds: &[i32]) -> Result<Vec<std::os::fd::OwnedFd>> {
    fds.iter()
        .map(|&fd| {
            // SAFETY: JS passes fds it owns and keeps open during this call; we only dup them.
            let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            b.try_clone_to_owned()
                .map_err(|e| Failure::new("EBADF", format!("dup fd {fd}: {e}")))
        })
        .collect()
}
