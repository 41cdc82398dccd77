//! Reading a socket on the JS thread: a libuv poll handle on the environment's own loop calls
//! back into Rust when the socket is readable; Rust drains it and calls JS once per wake with
//! the batch.
//!
//! Why not a native thread and a ThreadsafeFunction (the house default, still the fallback): for a
//! worker's channel that design wakes two threads per connection, the receiver and then the JS
//! thread. Measured in bench/results/profile.md: the receive thread cost 10-11 µs of CPU and 0.47
//! context switches per connection, and kept corral rr at 0.89x node:cluster none with
//! `Connection: close`; receiving on the JS thread reached 0.95-0.99x. It also makes backpressure
//! honest: a blocked event loop stops taking connections, so the primary's per-worker window
//! fills and it skips this worker.
//!
//! libuv is not linked: its functions are looked up in the host process at run time (Node
//! exports them for addons, `napi_get_uv_event_loop` hands out the loop). A host without them
//! gets `None` and the caller uses the thread.

use crate::events::{self, Event};
use crate::{Failure, Result};
use napi::bindgen_prelude::*;
use napi::sys;
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void, CStr};
use std::os::fd::RawFd;
use std::ptr;
use std::rc::Rc;
use std::sync::OnceLock;

type PollCb = unsafe extern "C" fn(handle: *mut c_void, status: c_int, events: c_int);
type CloseCb = unsafe extern "C" fn(handle: *mut c_void);

type HandleSize = unsafe extern "C" fn(kind: c_int) -> usize;
type PollInit = unsafe extern "C" fn(lp: *mut c_void, handle: *mut c_void, fd: c_int) -> c_int;
type PollStart = unsafe extern "C" fn(handle: *mut c_void, events: c_int, cb: PollCb) -> c_int;
type HandleFn = unsafe extern "C" fn(handle: *mut c_void) -> c_int;
type Close = unsafe extern "C" fn(handle: *mut c_void, cb: CloseCb);
type Unref = unsafe extern "C" fn(handle: *mut c_void);

/// The libuv functions used, from the running process.
struct Uv {
    handle_size: HandleSize,
    poll_init: PollInit,
    poll_start: PollStart,
    poll_stop: HandleFn,
    close: Close,
    unref: Unref,
}

/// `UV_POLL` in `uv_handle_type` and `UV_READABLE` in `uv_poll_event` (stable across libuv 1.x).
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;

fn uv() -> Option<&'static Uv> {
    static UV: OnceLock<Option<Uv>> = OnceLock::new();
    UV.get_or_init(|| {
        fn sym(name: &CStr) -> Option<*mut c_void> {
            // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the process.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        }
        // SAFETY: each symbol is the libuv 1.x function of that name, whose C signature the
        // field's type spells out.
        unsafe {
            Some(Uv {
                handle_size: std::mem::transmute::<*mut c_void, HandleSize>(sym(
                    c"uv_handle_size",
                )?),
                poll_init: std::mem::transmute::<*mut c_void, PollInit>(sym(c"uv_poll_init")?),
                poll_start: std::mem::transmute::<*mut c_void, PollStart>(sym(c"uv_poll_start")?),
                poll_stop: std::mem::transmute::<*mut c_void, HandleFn>(sym(c"uv_poll_stop")?),
                close: std::mem::transmute::<*mut c_void, Close>(sym(c"uv_close")?),
                unref: std::mem::transmute::<*mut c_void, Unref>(sym(c"uv_unref")?),
            })
        }
    })
    .as_ref()
}

/// Whether this process has the libuv functions a [`Poller`] needs.
pub fn available() -> bool {
    uv().is_some()
}

/// What the poller asks of its owner when the socket is readable: the events read (at most a
/// bounded batch, so a flood cannot starve the loop: libuv polls level-triggered and calls
/// again) and whether the socket has ended.
pub type Pull = Box<dyn FnMut() -> (Vec<Event>, bool)>;

/// A poll handle on the JS thread's loop. Lives until libuv's close callback; everything here
/// runs on the JS thread.
pub struct Poller {
    env: sys::napi_env,
    uv: &'static Uv,
    /// The `uv_poll_t`, sized by `uv_handle_size` (8-byte words); valid until the close callback.
    handle: *mut c_void,
    words: usize,
    callback: sys::napi_ref,
    context: sys::napi_async_context,
    pull: RefCell<Pull>,
    stopped: Cell<bool>,
    /// Inside `napi_make_callback`: a stop from JS leaves the napi release to `on_readable`.
    delivering: Cell<bool>,
    released: Cell<bool>,
    /// The buffer small batches are written into (made on first use, released with the
    /// callback reference).
    shared: RefCell<Option<events::SharedBuffer>>,
}

impl Poller {
    /// Starts watching `fd` (which must stay open until [`Poller::stop`]); `callback` gets one
    /// `JsBatch` per wake. Fails if this host has no libuv to use ([`available`]). The handle
    /// does not keep the loop alive.
    pub fn start(
        env: &Env,
        fd: RawFd,
        callback: &Function<'_, events::Batch, ()>,
        pull: Pull,
    ) -> Result<Rc<Poller>> {
        let uv = uv().ok_or_else(|| {
            Failure::new("ERR_CORRAL_OS", "libuv is not available in this process")
        })?;
        let raw_env = env.raw();
        let lp = env.get_uv_event_loop()?;
        let mut callback_ref = ptr::null_mut();
        let mut context = ptr::null_mut();
        // SAFETY: napi calls on the JS thread with this call's env and a live function value.
        // Made before the handle, so that a failure here leaves nothing for libuv to close.
        unsafe {
            check_status!(sys::napi_create_reference(
                raw_env,
                callback.value().value,
                1,
                &mut callback_ref
            ))?;
            let mut name = ptr::null_mut();
            let made = check_status!(sys::napi_create_string_utf8(
                raw_env,
                c"corral.channel".as_ptr(),
                -1,
                &mut name
            ))
            .and_then(|_| {
                check_status!(sys::napi_async_init(
                    raw_env,
                    ptr::null_mut(),
                    name,
                    &mut context
                ))
            });
            if let Err(e) = made {
                sys::napi_delete_reference(raw_env, callback_ref);
                return Err(e.into());
            }
        }
        // SAFETY: uv_handle_size is a pure query.
        let words = unsafe { (uv.handle_size)(UV_POLL) }.div_ceil(8);
        let handle = Box::into_raw(vec![0u64; words].into_boxed_slice()).cast::<c_void>();
        // SAFETY: `handle` is zeroed memory of uv_poll_t's size and alignment, `lp` is this
        // environment's loop, and `fd` is an open socket.
        let rc = unsafe { (uv.poll_init)(lp.cast(), handle, fd) };
        if rc != 0 {
            // SAFETY: not registered with libuv; give the memory and the napi values back.
            unsafe {
                drop(Box::from_raw(ptr::slice_from_raw_parts_mut(
                    handle.cast::<u64>(),
                    words,
                )));
                sys::napi_delete_reference(raw_env, callback_ref);
                sys::napi_async_destroy(raw_env, context);
            }
            return Err(Failure::new(
                "ERR_CORRAL_OS",
                format!("uv_poll_init on the channel failed ({rc})"),
            ));
        }
        let poller = Rc::new(Poller {
            env: raw_env,
            uv,
            handle,
            words,
            callback: callback_ref,
            context,
            pull: RefCell::new(pull),
            stopped: Cell::new(false),
            delivering: Cell::new(false),
            released: Cell::new(false),
            shared: RefCell::new(None),
        });
        // The handle owns one reference, given back in `on_close`.
        // SAFETY: `data` is the first field of every uv handle.
        unsafe {
            *handle.cast::<*const Poller>() = Rc::into_raw(poller.clone());
            (uv.unref)(handle);
            let rc = (uv.poll_start)(handle, UV_READABLE, on_readable);
            if rc != 0 {
                poller.stop(false);
                return Err(Failure::new(
                    "ERR_CORRAL_OS",
                    format!("uv_poll_start on the channel failed ({rc})"),
                ));
            }
        }
        Ok(poller)
    }

    /// Stops watching and closes the handle (idempotent). `teardown`: the environment is going
    /// away, so no more napi calls.
    pub fn stop(&self, teardown: bool) {
        if teardown {
            self.released.set(true);
        }
        if !self.stopped.replace(true) {
            // SAFETY: the handle is live (not yet closed: `stopped` was false) and we are on
            // its loop's thread. The close callback runs later, from the loop.
            unsafe {
                (self.uv.poll_stop)(self.handle);
                (self.uv.close)(self.handle, on_close);
            }
        }
        if !self.delivering.get() {
            self.release();
        }
    }

    /// Drops the callback reference and the async context (once, and never during a call).
    fn release(&self) {
        if self.released.replace(true) {
            return;
        }
        // SAFETY: on the JS thread with a live env; all were created in `start` or `deliver`.
        unsafe {
            sys::napi_delete_reference(self.env, self.callback);
            sys::napi_async_destroy(self.env, self.context);
            if let Some(s) = self.shared.borrow_mut().take() {
                s.release(self.env);
            }
        }
    }

    /// Raises `message` as an uncaught JS error with code `ERR_CORRAL_ENGINE`.
    ///
    /// # Safety
    /// On the JS thread with a live env, outside any other napi call.
    unsafe fn raise(&self, message: &str) {
        if self.released.get() {
            return;
        }
        let env = self.env;
        // SAFETY: per this function's contract; every value lives in the scope opened here.
        unsafe {
            let mut scope = ptr::null_mut();
            if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
                return;
            }
            let mut code = ptr::null_mut();
            let mut msg = ptr::null_mut();
            let mut err = ptr::null_mut();
            let c = "ERR_CORRAL_ENGINE";
            if sys::napi_create_string_utf8(env, c.as_ptr().cast(), c.len() as isize, &mut code)
                == sys::Status::napi_ok
                && sys::napi_create_string_utf8(
                    env,
                    message.as_ptr().cast(),
                    message.len() as isize,
                    &mut msg,
                ) == sys::Status::napi_ok
                && sys::napi_create_error(env, code, msg, &mut err) == sys::Status::napi_ok
            {
                sys::napi_fatal_exception(env, err);
            }
            sys::napi_close_handle_scope(env, scope);
        }
    }

    fn deliver(&self, events: Vec<Event>) {
        let env = self.env;
        // SAFETY: on the JS thread, from the loop, outside any other napi call: a handle scope
        // and napi_make_callback (which runs the microtask and nextTick queues after the call,
        // like any callback from the loop) are how napi allows calling JS from here.
        unsafe {
            let mut scope = ptr::null_mut();
            if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
                return;
            }
            let mut func = ptr::null_mut();
            let mut recv = ptr::null_mut();
            let ok = sys::napi_get_reference_value(env, self.callback, &mut func)
                == sys::Status::napi_ok
                && !func.is_null()
                // napi_make_callback wants an object as `this`.
                && sys::napi_get_global(env, &mut recv) == sys::Status::napi_ok;
            if ok {
                // Only this poller writes its shared buffer, and never while JS still reads it:
                // `deliver` does not nest (it runs from the loop), and JS is done with a
                // batch's payloads when the call returns (lib/native.js decodeBatch).
                let mut shared = self.shared.borrow_mut();
                if shared.is_none() {
                    *shared = events::SharedBuffer::new(env).ok();
                }
                // Fds pass to JS in the conversion; on failure they are closed with `events`.
                let arg = events::to_js_in(env, events, shared.as_ref());
                drop(shared);
                if let Ok(arg) = arg {
                    let mut result = ptr::null_mut();
                    let status = sys::napi_make_callback(
                        env,
                        self.context,
                        recv,
                        func,
                        1,
                        &arg,
                        &mut result,
                    );
                    if status == sys::Status::napi_pending_exception {
                        // As a ThreadsafeFunction with callee_handled=false does: the exception
                        // goes to 'uncaughtException'.
                        let mut err = ptr::null_mut();
                        if sys::napi_get_and_clear_last_exception(env, &mut err)
                            == sys::Status::napi_ok
                        {
                            sys::napi_fatal_exception(env, err);
                        }
                    }
                }
            }
            sys::napi_close_handle_scope(env, scope);
        }
    }
}

unsafe extern "C" fn on_readable(handle: *mut c_void, _status: c_int, _events: c_int) {
    // SAFETY: `data` holds the reference the handle owns until `on_close`, which cannot run
    // during this callback. An error status is handled like readability: the read reports it.
    let poller = unsafe { &*(*handle.cast::<*const Poller>()) };
    if poller.stopped.get() {
        return;
    }
    // A panic must not unwind into libuv (that aborts the process): it stops this channel and
    // reaches JS as an uncaught exception, as an exception thrown by the callback does.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (events, ended) = {
            let mut pull = poller.pull.borrow_mut();
            (pull)()
        };
        if !events.is_empty() && !poller.released.get() {
            poller.delivering.set(true);
            poller.deliver(events);
            poller.delivering.set(false);
        }
        ended
    }));
    let ended = match run {
        Ok(ended) => ended,
        Err(panic) => {
            poller.delivering.set(false);
            let message = format!(
                "corral: reading a channel panicked: {}",
                crate::panic_message(&*panic)
            );
            // SAFETY: on the JS thread, from the loop, outside any other napi call.
            unsafe { poller.raise(&message) };
            true
        }
    };
    if ended || poller.stopped.get() {
        poller.stop(false);
    }
}

unsafe extern "C" fn on_close(handle: *mut c_void) {
    // SAFETY: libuv is done with the handle; take back the reference it owned.
    let poller = unsafe { Rc::from_raw(*handle.cast::<*const Poller>()) };
    let words = poller.words;
    // The last reference drops the owner's state with it (a channel, a receiver): a panic in
    // a Drop must not unwind into libuv either. Nothing is left to report it to.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(poller)));
    // SAFETY: the handle's memory, made in `start`; libuv no longer uses it.
    unsafe {
        drop(Box::from_raw(ptr::slice_from_raw_parts_mut(
            handle.cast::<u64>(),
            words,
        )))
    };
}
