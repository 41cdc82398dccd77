//! Panics on request, to test the panic boundaries (test/boundary.test.js): a hidden export that
//! does nothing unless `CORRAL_FAULT=panic` is in the environment.

use crate::events::Batch;
use crate::uvpoll::{Poller, Pull};
use crate::{Failure, Result};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::io::Write;
use std::os::fd::AsRawFd;

/// With `CORRAL_FAULT=panic`: `"call"` panics in this call (napi-derive's `catch_unwind` must
/// make it a JS exception), `"uv"` starts a libuv poll handle on a socket that is readable at
/// once and panics in its callback (uvpoll.rs must make it an uncaught JS exception with code
/// `ERR_CORRAL_ENGINE`). `on_events` is the poll handle's JS callback, never reached.
#[napi(js_name = "__panicForTest", catch_unwind)]
pub fn panic_for_test(env: Env, place: String, on_events: Function<'_, Batch, ()>) -> Result<()> {
    if !std::env::var_os("CORRAL_FAULT").is_some_and(|v| v == "panic") {
        return Err(Failure::new(
            "ERR_CORRAL_WRONG_STATE",
            "__panicForTest needs CORRAL_FAULT=panic",
        ));
    }
    match place.as_str() {
        "call" => panic!("fault injected in a #[napi] call"),
        "uv" => {
            let (mut tx, rx) = std::os::unix::net::UnixStream::pair()
                .map_err(|e| Failure::new("ERR_CORRAL_OS", format!("socketpair: {e}")))?;
            tx.write_all(b"x")
                .map_err(|e| Failure::new("ERR_CORRAL_OS", format!("write: {e}")))?;
            let fd = rx.as_raw_fd();
            // The pull owns both ends: they close when the poll handle, stopped by the panic,
            // is closed.
            let pull: Pull = Box::new(move || {
                let _ends = (&tx, &rx);
                panic!("fault injected in a libuv callback")
            });
            Poller::start(&env, fd, &on_events, pull)?;
            Ok(())
        }
        other => Err(Failure::new(
            "ERR_CORRAL_INVALID_ARGUMENT",
            format!("__panicForTest: unknown place {other:?} (\"call\" or \"uv\")"),
        )),
    }
}
