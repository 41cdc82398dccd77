//! Payloads from engine threads to JS. Fds stay `OwnedFd` until the conversion to JS values
//! (which runs on the JS thread): if napi drops a call, the fds close with it.

use napi::bindgen_prelude::{Buffer, ToNapiValue};
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

/// One event as JS sees it.
#[napi(object, object_from_js = false)]
pub struct JsEvent {
    pub kind: u32,
    pub worker: u32,
    pub pid: i32,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub data: Option<Buffer>,
    pub fds: Vec<i32>,
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

/// Events delivered together (one TSFN call per batch: fewer JS entries under load).
pub struct Batch(pub Vec<Event>);

impl ToNapiValue for Batch {
    unsafe fn to_napi_value(
        env: napi::sys::napi_env,
        val: Self,
    ) -> napi::Result<napi::sys::napi_value> {
        let items: Vec<JsEvent> = val
            .0
            .into_iter()
            .map(|e| JsEvent {
                kind: e.kind,
                worker: e.worker,
                pid: e.pid,
                code: e.code,
                signal: e.signal,
                data: e.data.map(Buffer::from),
                // Ownership passes to JS here.
                fds: e.fds.into_iter().map(|fd| fd.into_raw_fd()).collect(),
                message: e.message,
                errno: e.errno,
                syscall: e.syscall,
                id: e.id,
                address: e.address,
                port: e.port,
                family: e.family,
                listener: e.listener,
                flag: e.flag,
            })
            .collect();
        // SAFETY: called by napi on the JS thread with a valid env.
        unsafe { Vec::<JsEvent>::to_napi_value(env, items) }
    }
}
