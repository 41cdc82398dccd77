//! The environment contract between a primary and the workers it execs: [`WorkerEnv::take`]
//! reads it once, early, for both fronts' workers. The variables and what each means are in the
//! one table of [`crate::environ`]. The heartbeat variable stays in the environment because
//! `corral.h` documents it to C programs as one they may read; there is one name for both
//! fronts (the Node-only `CORRAL_NODE_HEARTBEAT_MS` went away before this module, set and read
//! by the same release, so no alias is read).

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    /// One test: the variables are process-wide, and no other unit test touches them.
    #[test]
    fn take_reads_every_worker_variable_once_and_names_a_bad_one() {
        assert!(WorkerEnv::take().unwrap().is_none(), "not a worker");
        let (chan, _primary_end) = sys::seqpacket_pair().unwrap();
        let (msgs, _primary_msgs) = sys::seqpacket_pair().unwrap();
        let (chan, msgs) = (chan.into_raw_fd(), msgs.into_raw_fd());
        std::env::set_var(ENV_WORKER_ID, "7");
        std::env::set_var(ENV_CHANNEL_FD, chan.to_string());
        std::env::set_var(ENV_MESSAGE_FD, msgs.to_string());
        std::env::set_var(ENV_HEARTBEAT, "250");
        assert!(WorkerEnv::is_present());
        assert_eq!(WorkerEnv::peek_id(), Some(7));
        let env = WorkerEnv::take().unwrap().expect("a worker");
        assert_eq!(env.id, 7);
        assert_eq!(env.channel.as_raw_fd(), chan);
        assert_eq!(env.messages.as_ref().map(|m| m.as_raw_fd()), Some(msgs));
        assert_eq!(env.heartbeat, Some(Duration::from_millis(250)));
        for gone in [ENV_WORKER_ID, ENV_CHANNEL_FD, ENV_MESSAGE_FD] {
            assert!(std::env::var_os(gone).is_none(), "{gone} is removed");
        }
        assert_eq!(std::env::var(ENV_HEARTBEAT).as_deref(), Ok("250"), "left");
        assert!(WorkerEnv::take().unwrap().is_none(), "taken once");

        std::env::set_var(ENV_WORKER_ID, "8");
        std::env::set_var(ENV_CHANNEL_FD, "9");
        std::env::set_var(ENV_HEARTBEAT, "soon");
        let e = WorkerEnv::take().unwrap_err();
        assert!(
            e.message().starts_with("CORRAL_HEARTBEAT_MS=\"soon\""),
            "{e}"
        );
        std::env::set_var(ENV_WORKER_ID, "8");
        std::env::set_var(ENV_CHANNEL_FD, "9");
        std::env::set_var(ENV_HEARTBEAT, "0");
        std::env::set_var(ENV_MESSAGE_FD, "x");
        let e = WorkerEnv::take().unwrap_err();
        assert!(e.message().starts_with("CORRAL_MESSAGE_FD=\"x\""), "{e}");
        std::env::remove_var(ENV_HEARTBEAT);
        assert!(!WorkerEnv::is_present());
    }
}
