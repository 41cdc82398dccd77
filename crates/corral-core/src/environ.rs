//! The `CORRAL_*` environment variables, read in one place for both fronts.
//!
//! | variable | read by | meaning |
//! | --- | --- | --- |
//! | `CORRAL_WORKER_ID`, `CORRAL_CHANNEL_FD` | worker | set by the primary for an exec'd worker; removed once read |
//! | `CORRAL_MESSAGE_FD` | worker | the worker's message channel (`PrimaryOptions::message_channels`); removed once read |
//! | `CORRAL_SCHED_POLICY` | primary | `rr`, `shared`, `kernel-rr`, `sticky`, `least` or `least-p2c`: overrides the policy of the whole cluster |
//! | `CORRAL_WINDOW` | primary | overrides `PrimaryOptions::window`, the connections a worker may hold not yet taken (1 to 65536) |
//! | `CORRAL_STALL_TIMEOUT_MS` | primary | overrides `PrimaryOptions::stall_timeout` (`0`: off; else 10 ms to 7 days) |
//! | `CORRAL_MAX_LISTENERS_PER_WORKER` | primary | overrides `PrimaryOptions::max_listeners_per_worker` (1 to 65536) |
//! | `CORRAL_ORPHAN_LISTENER_GRACE_MS` | primary | overrides `PrimaryOptions::orphan_listener_grace` (0 to 1 day) |
//! | `CORRAL_HEARTBEAT_MS` | worker | set by a supervisor with a heartbeat watchdog: how often to send one (`0`: none); left in place, C programs may read it themselves |
//!
//! A worker's variables are read once, by [`crate::WorkerEnv::take`], for both fronts' workers
//! (`corral_worker_from_env` in C, the addon's worker constructor in Node), first thing: it
//! removes the role variables, which edits the process environment, so it runs before any
//! thread starts (and the worker's own children are not taken for workers).
//!
//! A value that is not UTF-8 or not in its documented form is an error naming the variable,
//! never silently ignored (a typo in a deployment must not quietly change behaviour).

use crate::error::{Error, Result};
use std::time::Duration;

/// The window override (see [`crate::PrimaryOptions::window`]).
pub const ENV_WINDOW: &str = "CORRAL_WINDOW";
/// The stall timeout override (see [`crate::PrimaryOptions::stall_timeout`]).
pub const ENV_STALL_TIMEOUT: &str = "CORRAL_STALL_TIMEOUT_MS";
/// See [`crate::PrimaryOptions::max_listeners_per_worker`].
pub const ENV_MAX_LISTENERS: &str = "CORRAL_MAX_LISTENERS_PER_WORKER";
/// See [`crate::PrimaryOptions::orphan_listener_grace`].
pub const ENV_ORPHAN_GRACE: &str = "CORRAL_ORPHAN_LISTENER_GRACE_MS";

/// A variable's value: `Ok(None)` when it is unset, an error when it is not UTF-8.
pub fn var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::invalid_option(
            name,
            format_args!("{:?} is not UTF-8", v.to_string_lossy()),
        )),
    }
}

/// A whole number (`Ok(None)` when unset); its range is checked where the option is.
fn number(name: &str) -> Result<Option<u64>> {
    let Some(v) = var(name)? else {
        return Ok(None);
    };
    v.trim()
        .parse()
        .map(Some)
        .map_err(|_| Error::invalid_option(name, format_args!("{v:?} is not a whole number")))
}

/// Applies the primary's overrides to `opts`. A bad value is an error whose option
/// ([`Error::option`]) is the variable: that is what the user set, not the field.
pub(crate) fn apply(opts: &mut crate::PrimaryOptions) -> Result<()> {
    use crate::primary::options::{check_orphan_listener_grace, check_stall_timeout};
    if let Some(p) = crate::Policy::from_env()? {
        opts.policy = p;
    }
    if let Some(n) = number(ENV_WINDOW)? {
        crate::limits::check_count(ENV_WINDOW, n, 1, crate::limits::MAX_WINDOW as u64)?;
        opts.window = n as u32;
    }
    if let Some(ms) = number(ENV_STALL_TIMEOUT)? {
        let t = (ms > 0).then(|| Duration::from_millis(ms));
        if let Some(t) = t {
            check_stall_timeout(ENV_STALL_TIMEOUT, t)?;
        }
        opts.stall_timeout = t;
    }
    if let Some(n) = number(ENV_MAX_LISTENERS)? {
        crate::limits::check_count(ENV_MAX_LISTENERS, n, 1, 65_536)?;
        opts.max_listeners_per_worker = n as u32;
    }
    if let Some(ms) = number(ENV_ORPHAN_GRACE)? {
        let grace = Duration::from_millis(ms);
        check_orphan_listener_grace(ENV_ORPHAN_GRACE, grace)?;
        opts.orphan_listener_grace = grace;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn non_utf8_values_are_errors_that_name_the_variable() {
        // A name no other test uses: the environment is process-wide.
        let name = "CORRAL_TEST_ENVIRON_NOT_UTF8";
        std::env::set_var(name, std::ffi::OsStr::from_bytes(b"r\xffr"));
        let e = var(name).unwrap_err();
        assert!(e.message().starts_with(name), "{e}");
        std::env::remove_var(name);
        assert_eq!(var(name).unwrap(), None);
    }
}
