//! Payloads from engine threads to JS. Fds stay `OwnedFd` until the conversion to JS values
//! (which runs on the JS thread): if napi drops a call, the fds close with it.

use napi::bindgen_prelude::ToNapiValue;
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
    /// The engine's `Event::Warning`: `message`, `errno`, the code in `syscall`, the
    /// listener in `id`.
    pub const WARNING: u32 = 11;
    // worker side
    pub const CONNECTION: u32 = 20;
    pub const LISTEN_OK: u32 = 21;
    pub const LISTEN_ERR: u32 = 22;
    pub const DISCONNECT_REQUEST: u32 = 23;
    pub const PRIMARY_GONE: u32 = 24;
    /// The writer thread wrote queued messages (see `NativeWorker::written`).
    pub const FLUSHED: u32 = 25;
    // supervisor: the event as a JS object in the `message` slot (supervise.rs)
    pub const SUPERVISOR: u32 = 30;

    /// Every kind by name: what lib/native.js reads (`eventLayout()`), so the numbers are
    /// written once, here.
    pub const ALL: &[(&str, u32)] = &[
        ("FORK", FORK),
        ("ONLINE", ONLINE),
        ("LISTENING", LISTENING),
        ("MESSAGE", MESSAGE),
        ("READY", READY),
        ("DISCONNECT", DISCONNECT),
        ("EXIT", EXIT),
        ("ERROR", ERROR),
        ("SHUTDOWN_COMPLETE", SHUTDOWN_COMPLETE),
        ("WARNING", WARNING),
        ("CONNECTION", CONNECTION),
        ("LISTEN_OK", LISTEN_OK),
        ("LISTEN_ERR", LISTEN_ERR),
        ("DISCONNECT_REQUEST", DISCONNECT_REQUEST),
        ("PRIMARY_GONE", PRIMARY_GONE),
        ("FLUSHED", FLUSHED),
        ("SUPERVISOR", SUPERVISOR),
    ];
}

/// An ERROR event for an error from the engine, with the Node error code (`EMFILE`,
/// `ERR_CORRAL_PROTOCOL`...) in `syscall`, as index.js reads it.
pub fn error_event(worker: u32, e: &corral_core::Error) -> Event {
    let code = match e.kind() {
        corral_core::ErrorKind::Protocol => Some("ERR_CORRAL_PROTOCOL"),
        _ => e.code(),
    };
    Event {
        kind: kind::ERROR,
        worker,
        message: Some(e.message().to_string()),
        errno: e.errno(),
        syscall: code.map(str::to_string),
        ..Default::default()
    }
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
    /// A SUPERVISOR event's content, converted by napi (`#[napi]` enum) into the message slot.
    pub supervisor: Option<Box<crate::supervise::JsSupervisorEvent>>,
    /// An engine error made into a JS error (`code`, `option`, `reason`) in the message slot
    /// (a LISTEN_ERR the primary refused for a reason other than an OS error).
    pub error: Option<Box<crate::error::Failure>>,
}

/// Fields per event record.
pub const META: usize = 17;

/// Leading ints of a batch: the event count, the fd count, and flags (`EXTERNAL_BLOB`).
pub const HEAD: usize = 3;

/// Flag: the payload bytes are the array's second element (an external ArrayBuffer over the
/// received bytes), not the bytes after the ints.
const EXTERNAL_BLOB: i32 = 1;

/// Flag: the batch is written in its reader's [`SharedBuffer`], which the next batch of that
/// reader overwrites: JS uses (or copies) its payloads during the call only.
const SHARED: i32 = 2;

/// Bytes of a reader's [`SharedBuffer`]: a batch that fits (ints and payloads) is written there
/// instead of into an ArrayBuffer of its own.
pub const SHARED_LEN: usize = 64 * 1024;

/// An ArrayBuffer made once per reader (a poll handle on the JS thread) and reused for each
/// batch that fits: a small message then costs no ArrayBuffer (its zeroed backing store, its
/// GC bookkeeping) and no typed arrays over it (lib/native.js keeps its views by buffer).
/// Measured in bench/servers/node_ipc.js ping-pong json 64 B, see the commit.
pub struct SharedBuffer {
    reference: napi::sys::napi_ref,
    base: *mut u8,
}

impl SharedBuffer {
    /// Makes the buffer and a strong reference to it.
    ///
    /// # Safety
    /// On the JS thread, with a valid env and an open handle scope.
    pub unsafe fn new(env: napi::sys::napi_env) -> napi::Result<SharedBuffer> {
        use napi::sys;
        let mut ab = std::ptr::null_mut();
        let mut base: *mut std::ffi::c_void = std::ptr::null_mut();
        let mut reference = std::ptr::null_mut();
        // SAFETY: the caller's contract; the ArrayBuffer is never detached (JS only reads it),
        // so `base` stays valid while the reference keeps it alive.
        unsafe {
            napi::check_status!(sys::napi_create_arraybuffer(
                env, SHARED_LEN, &mut base, &mut ab
            ))?;
            napi::check_status!(sys::napi_create_reference(env, ab, 1, &mut reference))?;
        }
        Ok(SharedBuffer {
            reference,
            base: base.cast(),
        })
    }

    /// Drops the reference (the owner's teardown).
    ///
    /// # Safety
    /// On the JS thread with a live env, once.
    pub unsafe fn release(&self, env: napi::sys::napi_env) {
        // SAFETY: the caller's contract; made in `new`.
        unsafe { napi::sys::napi_delete_reference(env, self.reference) };
    }
}

/// A single payload at least this big is handed to JS without a copy (an external
/// ArrayBuffer; its finalizer costs less than copying and zero-filling that many bytes).
const EXTERNAL_MIN: usize = 32 * 1024;

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

/// Events already on the JS thread, returned from a call as one `JsBatch`.
pub struct Events(pub Vec<Event>);

impl ToNapiValue for Events {
    unsafe fn to_napi_value(
        env: napi::sys::napi_env,
        val: Self,
    ) -> napi::Result<napi::sys::napi_value> {
        // SAFETY: called by napi on the JS thread with a valid env.
        unsafe { to_js(env, val.0) }
    }
}

impl napi::bindgen_prelude::TypeName for Events {
    fn type_name() -> &'static str {
        "JsBatch"
    }
    fn value_type() -> napi::ValueType {
        napi::ValueType::Object
    }
}

/// Turns events into one batch value for index.js (`decodeBatch`); the fds pass to JS.
///
/// A batch is one JS-owned ArrayBuffer (copied into, no finalizer) laid out as ints
/// `[events, fds, flags, META ints per event..., fd numbers...]` followed by every payload's
/// bytes; when some events carry strings or objects, or one big payload is passed without a
/// copy (`EXTERNAL_BLOB`), the value is an array `[buffer, (payload buffer,) value...]` instead.
/// Creating one JS object and external typed arrays per batch through napi cost about as much
/// as a small message itself (external buffers need a finalizer and a weak handle each).
///
/// Record: kind, worker, pid, code (or i32::MIN), signal (0 = none), errno, id, port, family,
/// listener, flag, data offset in the payload bytes, data length (-1 = no data), first fd
/// index, fd count, message index (-1 = none; a string, or a supervisor event's object),
/// syscall/address string index (-1 = none); indexes are positions in the array.
///
/// # Safety
/// On the JS thread, with a valid env and an open handle scope.
pub unsafe fn to_js(
    env: napi::sys::napi_env,
    events: Vec<Event>,
) -> napi::Result<napi::sys::napi_value> {
    // SAFETY: the caller's contract.
    unsafe { to_js_in(env, events, None) }
}

/// [`to_js`], written into `shared` when the batch fits there and carries no values (strings,
/// objects, an external payload): then the value is that buffer, flagged [`SHARED`].
///
/// # Safety
/// As [`to_js`]; `shared` was made with this env.
pub unsafe fn to_js_in(
    env: napi::sys::napi_env,
    mut events: Vec<Event>,
    shared: Option<&SharedBuffer>,
) -> napi::Result<napi::sys::napi_value> {
    use napi::sys;
    let n = events.len();
    let nfds: usize = events.iter().map(|e| e.fds.len()).sum();
    let mut data_len: usize = events
        .iter()
        .map(|e| e.data.as_ref().map_or(0, Vec::len))
        .sum();
    // One big payload: give JS the received bytes themselves.
    let mut external = std::ptr::null_mut();
    // (event index, payload length) of the payload passed as `external`.
    let mut external_at = None;
    if data_len >= EXTERNAL_MIN && events.iter().filter(|e| e.data.is_some()).count() == 1 {
        let at = events
            .iter()
            .position(|e| e.data.is_some())
            .expect("counted");
        let bytes = events[at].data.take().expect("some");
        let len = bytes.len();
        // SAFETY: the caller's contract.
        match unsafe { external_arraybuffer(env, bytes) } {
            Ok(v) => {
                external = v;
                external_at = Some((at, len));
                data_len = 0;
            }
            Err(bytes) => events[at].data = Some(bytes),
        }
    }
    let ints = HEAD + n * META + nfds;
    let total = ints * 4 + data_len;
    let mut ab = std::ptr::null_mut();
    let mut base: *mut std::ffi::c_void = std::ptr::null_mut();
    let plain = external.is_null()
        && events.iter().all(|e| {
            e.message.is_none()
                && e.supervisor.is_none()
                && e.error.is_none()
                && e.syscall.is_none()
                && e.address.is_none()
        });
    let shared = shared.filter(|_| plain && total <= SHARED_LEN);
    if let Some(s) = shared {
        // SAFETY: the caller's contract; the reference is strong, so the buffer is alive, and
        // its SHARED_LEN bytes at `s.base` hold nothing JS still needs (the previous batch's
        // call has returned).
        napi::check_status!(unsafe { sys::napi_get_reference_value(env, s.reference, &mut ab) })?;
        base = s.base.cast();
    } else {
        // SAFETY: the caller's contract; napi allocates `total` bytes owned by the ArrayBuffer.
        napi::check_status!(unsafe {
            sys::napi_create_arraybuffer(env, total, &mut base, &mut ab)
        })?;
    }
    // SAFETY: `base` points at `total` writable bytes or more (a shared buffer's SHARED_LEN;
    // V8 aligns backing stores for any typed array); nothing else refers to them until this
    // returns.
    let (head, bytes) = unsafe {
        let all = std::slice::from_raw_parts_mut(base.cast::<u8>(), total);
        let (i, b) = all.split_at_mut(ints * 4);
        (
            std::slice::from_raw_parts_mut(i.as_mut_ptr().cast::<i32>(), ints),
            b,
        )
    };
    head[0] = n as i32;
    head[1] = nfds as i32;
    head[2] = match (external.is_null(), shared.is_some()) {
        (false, _) => EXTERNAL_BLOB,
        (true, true) => SHARED,
        (true, false) => 0,
    };
    // Array positions: the ints' buffer, then the payload buffer if external, then strings.
    let first_value = if external.is_null() { 1 } else { 2 };
    let (meta, fd_slots) = head[HEAD..].split_at_mut(n * META);
    let mut values: Vec<Value> = Vec::new();
    let mut value = |v: Option<Value>| -> i32 {
        match v {
            Some(v) => {
                values.push(v);
                first_value + values.len() as i32 - 1
            }
            None => -1,
        }
    };
    let (mut off, mut fd_at) = (0usize, 0usize);
    for (i, (e, rec)) in events
        .into_iter()
        .zip(meta.chunks_exact_mut(META))
        .enumerate()
    {
        let (doff, dlen) = match &e.data {
            // The external payload: all of the second buffer.
            None if external_at.is_some_and(|(at, _)| at == i) => {
                (0, external_at.map_or(0, |(_, len)| len as i32))
            }
            Some(d) => {
                bytes[off..off + d.len()].copy_from_slice(d);
                off += d.len();
                ((off - d.len()) as i32, d.len() as i32)
            }
            None => (0, -1),
        };
        let first_fd = fd_at as i32;
        let count = e.fds.len() as i32;
        // Ownership of the fds passes to JS here.
        for fd in e.fds {
            fd_slots[fd_at] = fd.into_raw_fd();
            fd_at += 1;
        }
        let message = value(match (e.supervisor, e.error) {
            (Some(ev), _) => Some(Value::Supervisor(ev)),
            (None, Some(f)) => Some(Value::Error(f)),
            (None, None) => e.message.map(Value::Str),
        });
        let extra = value(e.syscall.or(e.address).map(Value::Str));
        rec.copy_from_slice(&[
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
            doff,
            dlen,
            first_fd,
            count,
            message,
            extra,
        ]);
    }
    if values.is_empty() && external.is_null() {
        return Ok(ab);
    }
    let mut arr = std::ptr::null_mut();
    // SAFETY: the caller's contract; plain napi value creation.
    unsafe {
        napi::check_status!(sys::napi_create_array_with_length(
            env,
            values.len() + first_value as usize,
            &mut arr
        ))?;
        napi::check_status!(sys::napi_set_element(env, arr, 0, ab))?;
        if !external.is_null() {
            napi::check_status!(sys::napi_set_element(env, arr, 1, external))?;
        }
        for (i, v) in values.into_iter().enumerate() {
            let v = match v {
                Value::Str(s) => {
                    let mut v = std::ptr::null_mut();
                    napi::check_status!(sys::napi_create_string_utf8(
                        env,
                        s.as_ptr().cast(),
                        s.len() as isize,
                        &mut v
                    ))?;
                    v
                }
                Value::Supervisor(ev) => ToNapiValue::to_napi_value(env, *ev)?,
                Value::Error(f) => {
                    let env = napi::Env::from_raw(env);
                    ToNapiValue::to_napi_value(env.raw(), f.to_js_error(&env)?)?
                }
            };
            napi::check_status!(sys::napi_set_element(
                env,
                arr,
                i as u32 + first_value as u32,
                v
            ))?;
        }
    }
    Ok(arr)
}

/// A value of a batch's array after the ints' (and the payload's) buffer.
enum Value {
    Str(String),
    Supervisor(Box<crate::supervise::JsSupervisorEvent>),
    Error(Box<crate::error::Failure>),
}

/// An ArrayBuffer over `bytes` without copying them (freed by its finalizer); the bytes back
/// if napi refuses (some hosts forbid external buffers).
///
/// # Safety
/// On the JS thread, with a valid env and an open handle scope.
unsafe fn external_arraybuffer(
    env: napi::sys::napi_env,
    bytes: Vec<u8>,
) -> std::result::Result<napi::sys::napi_value, Vec<u8>> {
    unsafe extern "C" fn free(
        _env: napi::sys::napi_env,
        _data: *mut std::ffi::c_void,
        hint: *mut std::ffi::c_void,
    ) {
        // SAFETY: `hint` is the Box made below, released exactly once, here.
        drop(unsafe { Box::from_raw(hint.cast::<Vec<u8>>()) });
    }
    let len = bytes.len();
    let boxed = Box::into_raw(Box::new(bytes));
    let mut value = std::ptr::null_mut();
    // SAFETY: the data pointer stays valid until the finalizer drops the Box.
    let status = unsafe {
        napi::sys::napi_create_external_arraybuffer(
            env,
            (*boxed).as_mut_ptr().cast(),
            len,
            Some(free),
            boxed.cast(),
            &mut value,
        )
    };
    if status != napi::sys::Status::napi_ok {
        // SAFETY: napi did not take the Box.
        return Err(*unsafe { Box::from_raw(boxed) });
    }
    Ok(value)
}
