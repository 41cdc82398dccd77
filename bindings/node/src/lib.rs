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
//! Panics never cross into Node (an abort would take the user's process down without a word):
//! every exported function is `#[napi(catch_unwind)]` (a panic becomes a JS exception), the
//! engine thread catches them and ends the cluster with an `'error'` (primary.rs `fail`), and
//! the libuv callbacks (uvpoll.rs) turn them into an uncaught JS exception.
//!
//! `unsafe` lives where the addon talks to napi or libuv directly: the event batch conversion
//! (events.rs: external ArrayBuffers), the dlsym'd libuv poll handle (uvpoll.rs), borrowing fds
//! JS passes in (`dup_handles`), and `poll(2)` on the engine's fd (primary.rs). Each block has
//! a `// SAFETY:` line.
#![deny(clippy::all)]

mod events;
mod messages;
mod primary;
mod supervise;
mod uvpoll;
mod worker;

use napi_derive::napi;

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
    let id = std::env::var(corral_core::ENV_WORKER_ID).ok()?;
    std::env::var_os(corral_core::ENV_CHANNEL_FD)?;
    id.parse().ok()
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

pub(crate) fn to_napi(e: corral_core::Error) -> napi::Error {
    let code = match e.kind() {
        corral_core::ErrorKind::Os | corral_core::ErrorKind::Disconnected => {
            e.code().unwrap_or("ERR_CORRAL_OS").to_string()
        }
        corral_core::ErrorKind::InvalidArgument => "ERR_CORRAL_INVALID_ARGUMENT".into(),
        corral_core::ErrorKind::Protocol => "ERR_CORRAL_PROTOCOL".into(),
        corral_core::ErrorKind::TooLarge => "ERR_CORRAL_MESSAGE_TOO_LARGE".into(),
        corral_core::ErrorKind::WrongState => "ERR_CORRAL_WRONG_STATE".into(),
        corral_core::ErrorKind::NotWorker => "ERR_CORRAL_NOT_A_WORKER".into(),
        corral_core::ErrorKind::NoSuchWorker => "ERR_CORRAL_NO_SUCH_WORKER".into(),
        // Not reached: the Node front's primary queues without a limit, as node:cluster does.
        corral_core::ErrorKind::WouldBlock => "ERR_CORRAL_WOULD_BLOCK".into(),
    };
    // index.js reads the code from the "[CODE] message" prefix.
    napi::Error::from_reason(format!("[{code}] {}", e.message()))
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
pub(crate) fn dup_handles(fds: &[i32]) -> napi::Result<Vec<std::os::fd::OwnedFd>> {
    fds.iter()
        .map(|&fd| {
            // SAFETY: JS passes fds it owns and keeps open during this call; we only dup them.
            let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            corral_core::sys::dup_cloexec(b)
                .map_err(|e| napi::Error::from_reason(format!("[EBADF] dup fd {fd}: {e}")))
        })
        .collect()
}
