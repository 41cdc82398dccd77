//! Payloads from engine threads to JS. Fds stay `OwnedFd` until the conversion to JS values
//! (which runs on the JS thread): if napi drops a call, the fds close with it.

use napi::bindgen_prelude::{Buffer, Int32Array, ToNapiValue};
use napi_derive::napi;
use std::os::fd::{IntoRawFd, OwnedFd};

/// Event kinds seen by index.js (mirrors of the engine's events, primary and worker side).
pub mod kind {
    pub const FORK: u32 = 1;
    pub const ONLINE: u32 = 2;
    pub const MESSAGE: u32 = 4;
    pub const DISCONNECT: u32 = 6;
    pub const EXIT: u32 = 7;
    pub const ERROR: u32 = 8;
    pub const READY: u32 = 5;
    pub const LISTENING: u32 = 3;
    pub const SHUTDOWN_COMPLETE: u32 = 10;
    // worker side
    pub const CONNECTION: u32 = 20;
    pub const LISTEN_OK: u32 = 21;
    pub const LISTEN_ERR: u32 = 22;
    pub const DISCONNECT_REQUEST: u32 = 23;
    pub const PRIMARY_GONE: u32 = 24;
    // supervisor: details as JSON in `message`
    pub const SUPERVISOR: u32 = 30;
}

/// One event, native side.
#[derive(Default)]
pub struct Event {
    pub kind: u32,
    pub worker: u32,
    pub pid: i32,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub data: Option<Vec<u8>>,
    pub fds: Vec<OwnedFd>,
    pub message: Option<String>,
    pub errno: i32,
    pub syscall: Option<String>,
    pub id: u32,
    pub address: Option<String>,
    pub port: u32,
    pub family: i32,
    pub listener: u32,
    pub flag: bool,
}

/// Fields per event in `JsBatch::meta`.
pub const META: usize = 17;

/// A batch as JS sees it: one flat Int32Array of fixed-size records, one Buffer with every
/// payload, the fds, and the few strings. Creating one JS object per event through napi cost
/// more than the IPC itself (measured: 3x slower than node:cluster on a 100-message window);
/// index.js builds the event objects in JS instead.
///
/// Record: kind, worker, pid, code (or i32::MIN), signal (0 = none), errno, id, port, family,
/// listener, flag, data offset, data length (-1 = no data), first fd index, fd count,
/// message string index (-1 = none), syscall/address string index (-1 = none).
#[napi(object, object_from_js = false)]
pub struct JsBatch {
    pub meta: Int32Array,
    pub blob: Buffer,
    pub fds: Int32Array,
    pub strings: Vec<String>,
}

/// Events waiting for the JS thread, with at most one ThreadsafeFunction call in flight: while
/// JS is busy, new events join the pending batch instead of queueing more calls (each call is
/// a wake-up of the JS thread; under load one batch then carries many events).
#[derive(Default)]
pub struct Queue {
    inner: std::sync::Mutex<(Vec<Event>, bool)>,
}

impl Queue {
    /// Adds events; returns true if the caller must make the (single) TSFN call.
    pub fn push(&self, events: Vec<Event>) -> bool {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.0.extend(events);
        let call = !q.1 && !q.0.is_empty();
        if call {
            q.1 = true;
        }
        call
    }

    fn take(&self) -> Vec<Event> {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.1 = false;
        std::mem::take(&mut q.0)
    }
}

/// What a TSFN call carries: the queue, drained when napi converts it on the JS thread (so the
/// batch holds everything that arrived until JS could take it). Fds stay owned until then.
pub struct Batch(pub std::sync::Arc<Queue>);

impl ToNapiValue for Batch {
    unsafe fn to_napi_value(
        env: napi::sys::napi_env,
        val: Self,
    ) -> napi::Result<napi::sys::napi_value> {
        // SAFETY: called by napi on the JS thread with a valid env.
        unsafe { to_js(env, val.0.take()) }
    }
}

/// Turns events into one `JsBatch` value; the fds pass to JS.
///
/// # Safety
/// On the JS thread, with a valid env and an open handle scope.
pub unsafe fn to_js(
    env: napi::sys::napi_env,
    events: Vec<Event>,
) -> napi::Result<napi::sys::napi_value> {
    let n = events.len();
    let mut meta = Vec::with_capacity(n * META);
    let mut blob = Vec::with_capacity(
        events
            .iter()
            .map(|e| e.data.as_ref().map_or(0, Vec::len))
            .sum(),
    );
    let mut fds = Vec::new();
    let mut strings = Vec::new();
    let mut string = |s: Option<String>| -> i32 {
        match s {
            Some(s) => {
                strings.push(s);
                strings.len() as i32 - 1
            }
            None => -1,
        }
    };
    for e in events {
        let (off, len) = match &e.data {
            Some(d) => {
                let off = blob.len();
                blob.extend_from_slice(d);
                (off as i32, d.len() as i32)
            }
            None => (0, -1),
        };
        let first_fd = fds.len() as i32;
        let nfds = e.fds.len() as i32;
        // Ownership of the fds passes to JS here.
        fds.extend(e.fds.into_iter().map(|fd| fd.into_raw_fd()));
        let message = string(e.message);
        let extra = string(e.syscall.or(e.address));
        meta.extend_from_slice(&[
            e.kind as i32,
            e.worker as i32,
            e.pid,
            e.code.unwrap_or(i32::MIN),
            e.signal.unwrap_or(0),
            e.errno,
            e.id as i32,
            e.port as i32,
            e.family,
            e.listener as i32,
            e.flag as i32,
            off,
            len,
            first_fd,
            nfds,
            message,
            extra,
        ]);
    }
    let batch = JsBatch {
        meta: Int32Array::new(meta),
        blob: Buffer::from(blob),
        fds: Int32Array::new(fds),
        strings,
    };
    // SAFETY: the caller's contract.
    unsafe { JsBatch::to_napi_value(env, batch) }
}
