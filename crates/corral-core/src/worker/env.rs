//! The environment contract between a primary and the workers it execs, read once, early, for
//! both fronts' workers (the table of every `CORRAL_*` variable is in [`crate::environ`]).
//!
//! | variable | set by | taken by [`WorkerEnv::take`] |
//! | --- | --- | --- |
//! | `CORRAL_WORKER_ID` | every exec'd worker | the worker id; removed |
//! | `CORRAL_CHANNEL_FD` | every exec'd worker | the channel socket (checked to be a `SOCK_SEQPACKET` socket, then owned); removed |
//! | `CORRAL_MESSAGE_FD` | primaries with `PrimaryOptions::message_channels` (Node) | the message channel, likewise; removed |
//! | `CORRAL_HEARTBEAT_MS` | a supervisor with a heartbeat watchdog | how often to send a heartbeat; **left in place** |
//!
//! The role variables are removed so that the worker's own children are not taken for workers;
//! that edits the process environment, so take them before starting threads (the C front's
//! `corral_worker_from_env` and the addon's worker constructor run first thing). The heartbeat
//! variable stays: it is documented to C programs as a variable they may read themselves
//! (`corral.h`), and a child that inherits it sends nothing without a channel. There was never
//! a Node-only name for it: both fronts use `CORRAL_HEARTBEAT_MS`.

use crate::environ;
use crate::error::{Error, Result};
use crate::sys;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

/// Environment variable carrying the worker id (removed once read).
pub const ENV_WORKER_ID: &str = "CORRAL_WORKER_ID";
/// Environment variable carrying the channel's fd number (removed once read).
pub const ENV_CHANNEL_FD: &str = "CORRAL_CHANNEL_FD";
/// Environment variable with the fd of a worker's message channel, set only by primaries
/// started with `PrimaryOptions::message_channels` (the Node front): application messages from
/// the worker travel there, apart from the control channel.
pub const ENV_MESSAGE_FD: &str = "CORRAL_MESSAGE_FD";
/// Environment variable with the heartbeat interval in milliseconds, set by a supervisor with
/// a heartbeat watchdog (`0` or absent: send none).
pub const ENV_HEARTBEAT: &str = "CORRAL_HEARTBEAT_MS";

/// What a primary told the worker it exec'd, taken from the environment.
#[derive(Debug)]
pub struct WorkerEnv {
    /// This worker's id (from 1, never reused by its primary).
    pub id: u64,
    /// The channel to the primary.
    pub channel: OwnedFd,
    /// The message channel, when the primary made one (`PrimaryOptions::message_channels`).
    pub messages: Option<OwnedFd>,
    /// How often to send a heartbeat (`None`: no watchdog asked for one).
    pub heartbeat: Option<Duration>,
}

impl WorkerEnv {
    /// Whether a corral primary started this process as a worker (`CORRAL_WORKER_ID` and
    /// `CORRAL_CHANNEL_FD` are set). Reads without taking.
    pub fn is_present() -> bool {
        std::env::var_os(ENV_WORKER_ID).is_some() && std::env::var_os(ENV_CHANNEL_FD).is_some()
    }

    /// The worker id, if [`WorkerEnv::is_present`] and it is a number. Reads without taking.
    pub fn peek_id() -> Option<u64> {
        std::env::var_os(ENV_CHANNEL_FD)?;
        std::env::var(ENV_WORKER_ID).ok()?.parse().ok()
    }

    /// Reads the worker's variables, removes the role ones (see the module docs) and takes
    /// ownership of the channel fds. `Ok(None)` when `CORRAL_WORKER_ID` or `CORRAL_CHANNEL_FD`
    /// is absent (this process is not a worker). A value that is not UTF-8, not a number, or
    /// not a channel is `ErrorKind::InvalidArgument` (or the `getsockopt` error) naming the
    /// variable.
    pub fn take() -> Result<Option<WorkerEnv>> {
        let Some((id, fd)) = take_role()? else {
            return Ok(None);
        };
        let heartbeat = heartbeat()?;
        let messages = match take_fd(ENV_MESSAGE_FD)? {
            Some(raw) => Some(adopt(ENV_MESSAGE_FD, raw)?),
            None => None,
        };
        let channel = adopt(ENV_CHANNEL_FD, fd)?;
        Ok(Some(WorkerEnv {
            id,
            channel,
            messages,
            heartbeat,
        }))
    }
}

fn not_a_worker(what: String) -> Error {
    Error::invalid(format!("{what}; is this process really a corral worker?"))
}

/// Reads and removes the role variables (`Ok(None)` when absent).
fn take_role() -> Result<Option<(u64, RawFd)>> {
    let (id, fd) = (environ::var(ENV_WORKER_ID), environ::var(ENV_CHANNEL_FD));
    let (Some(id), Some(fd)) = (id?, fd?) else {
        return Ok(None);
    };
    std::env::remove_var(ENV_WORKER_ID);
    std::env::remove_var(ENV_CHANNEL_FD);
    let id: u64 = id
        .parse()
        .map_err(|_| not_a_worker(format!("{ENV_WORKER_ID}={id:?} is not a number")))?;
    let fd: RawFd = fd
        .parse()
        .map_err(|_| not_a_worker(format!("{ENV_CHANNEL_FD}={fd:?} is not an fd")))?;
    Ok(Some((id, fd)))
}

/// Reads and removes an fd variable (`Ok(None)` when absent).
fn take_fd(name: &str) -> Result<Option<RawFd>> {
    let Some(v) = environ::var(name)? else {
        return Ok(None);
    };
    std::env::remove_var(name);
    v.parse()
        .map(Some)
        .map_err(|_| not_a_worker(format!("{name}={v:?} is not an fd")))
}

fn adopt(name: &str, raw: RawFd) -> Result<OwnedFd> {
    sys::adopt_seqpacket(raw).map_err(|e| {
        Error::os(
            "getsockopt",
            format!("{name}={raw} is not a corral channel"),
            &e,
        )
    })
}

fn heartbeat() -> Result<Option<Duration>> {
    let Some(v) = environ::var(ENV_HEARTBEAT)? else {
        return Ok(None);
    };
    let ms: u64 = v.trim().parse().map_err(|_| {
        Error::invalid(format!(
            "{ENV_HEARTBEAT}={v:?} is not a whole number of milliseconds"
        ))
    })?;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}
