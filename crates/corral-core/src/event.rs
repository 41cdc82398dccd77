//! What the primary reports about its workers.

use crate::error::Error;
use crate::listener::BoundAddr;
use crate::sys::ExitStatus;
use std::os::fd::OwnedFd;

/// A worker id: starts at 1, increases, never reused within one primary.
pub type WorkerId = u64;

/// An event of the primary, in the order things happened.
#[derive(Debug)]
pub enum Event {
    /// A worker process was started.
    Fork {
        /// Worker.
        worker: WorkerId,
        /// Its pid.
        pid: i32,
    },
    /// The worker connected its channel (its runtime is up).
    Online {
        /// Worker.
        worker: WorkerId,
    },
    /// The worker listens on `addr` (through listener `listener`).
    Listening {
        /// Worker.
        worker: WorkerId,
        /// Listener id, shared by every worker on the same address.
        listener: u32,
        /// Resolved address (a real port where 0 was asked).
        addr: BoundAddr,
    },
    /// An application message from the worker.
    Message {
        /// Worker.
        worker: WorkerId,
        /// Payload (opaque bytes).
        data: Vec<u8>,
        /// Attached fds, owned by the receiver.
        fds: Vec<OwnedFd>,
    },
    /// The worker said it is ready (after its warm-up).
    Ready {
        /// Worker.
        worker: WorkerId,
    },
    /// The channel to the worker closed (it disconnected, exited, or broke the protocol).
    Disconnect {
        /// Worker.
        worker: WorkerId,
    },
    /// The worker process ended and was reaped.
    Exit {
        /// Worker.
        worker: WorkerId,
        /// Its pid.
        pid: i32,
        /// Exit code or signal.
        status: ExitStatus,
        /// It left after a disconnect the primary asked for (or it announced).
        exited_after_disconnect: bool,
    },
    /// Something went wrong with a worker (`Some`) or in the primary (`None`); the primary
    /// keeps running.
    Error {
        /// Worker concerned, if any.
        worker: Option<WorkerId>,
        /// What happened.
        error: Error,
    },
    /// A signal the primary handles arrived (see `PrimaryOptions::shutdown_signals`).
    Signal {
        /// Signal number.
        signal: i32,
    },
    /// A graceful shutdown finished: every worker is gone.
    ShutdownComplete {
        /// Every worker left before the deadline (none was SIGKILLed).
        clean: bool,
    },
    /// A worker's send queue, after refusing a message (`ErrorKind::WouldBlock`, see
    /// `PrimaryOptions::send_queue_limit`), is down to half the limit: sending may resume.
    /// Once per refusal episode; a closed channel gives `Disconnect` instead.
    Drain {
        /// Worker.
        worker: WorkerId,
    },
    /// The primary does something other than what was asked, which works: reported once, and
    /// not an error (nothing stopped). [`WARNING_KERNEL_RR_FALLBACK`]: a listener of the
    /// `kernel-rr` policy runs primary-accept `rr` (no `CAP_BPF`, an old kernel, a Unix
    /// socket); `message` says why and what to grant.
    Warning {
        /// The listener concerned, if any.
        listener: Option<u32>,
        /// What kind of warning: a stable name such as [`WARNING_KERNEL_RR_FALLBACK`].
        code: &'static str,
        /// The errno behind it (0 if none).
        errno: i32,
        /// What happened and what to do about it.
        message: String,
    },
}

/// [`Event::Warning`]'s code when a `kernel-rr` listener runs `rr` instead.
pub const WARNING_KERNEL_RR_FALLBACK: &str = "CORRAL_KERNEL_RR_FALLBACK";
