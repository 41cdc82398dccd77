//! The `CORRAL_*` environment variables, read in one place for both fronts.
//!
//! | variable | read by | meaning |
//! | --- | --- | --- |
//! | `CORRAL_WORKER_ID`, `CORRAL_CHANNEL_FD` | worker | set by the primary for an exec'd worker; removed once read |
//! | `CORRAL_MESSAGE_FD` | worker | the worker's message channel (`PrimaryOptions::message_channels`); removed once read |
//! | `CORRAL_SCHED_POLICY` | primary | `rr` or `shared`: overrides the policy of the whole cluster |
//! | `CORRAL_STALL_TIMEOUT_MS` | primary | overrides `PrimaryOptions::stall_timeout` (`0`: off; else 10 ms to 7 days) |
//! | `CORRAL_HEARTBEAT_MS` | worker | set by a supervisor with a heartbeat watchdog: how often to send one |
//!
//! A value that is not UTF-8 or not in its documented form is an error naming the variable,
//! never silently ignored (a typo in a deployment must not quietly change behaviour).

use crate::error::{Error, Result};
use std::time::Duration;

/// The stall timeout override (see [`crate::PrimaryOptions::stall_timeout`]).
pub const ENV_STALL_TIMEOUT: &str = "CORRAL_STALL_TIMEOUT_MS";

/// A variable's value: `Ok(None)` when it is unset, an error when it is not UTF-8.
pub fn var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::invalid(format!(
            "{name}={:?} is not UTF-8",
            v.to_string_lossy()
        ))),
    }
}

/// `CORRAL_STALL_TIMEOUT_MS`: `Ok(None)` when unset, `Ok(Some(None))` for `0` (off).
pub fn stall_timeout() -> Result<Option<Option<Duration>>> {
    let Some(v) = var(ENV_STALL_TIMEOUT)? else {
        return Ok(None);
    };
    let ms: u64 = v.trim().parse().map_err(|_| {
        Error::invalid(format!(
            "{ENV_STALL_TIMEOUT}={v:?} is not a number of milliseconds"
        ))
    })?;
    Ok(Some((ms > 0).then(|| Duration::from_millis(ms))))
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
