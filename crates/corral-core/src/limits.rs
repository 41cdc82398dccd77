//! The documented range of every numeric option, in one place for both fronts.
//!
//! The C ABI and the Node addon convert their callers' numbers with these functions and the
//! engine's `validate` methods check the results against the same constants, so a value is
//! accepted or refused the same way whichever front it came through, and the error names the
//! option and its range. The ranges are wide enough for any real deployment and narrow enough
//! that no arithmetic on them can overflow (`Instant + MAX_DURATION`, a backoff product, a
//! per-worker allocation).

use crate::error::{Error, Result};
use std::time::Duration;

/// Most workers a primary or a supervisor will run (`workers`, `scale`). A machine with more
/// cores than this is served by several primaries; a larger number is a typo (`1e9`) and would
/// otherwise be honoured by allocating per-worker state for each.
pub const MAX_WORKERS: usize = 4096;

/// Longest duration any option takes (delays, timeouts, windows): 7 days. Longer waits are
/// indistinguishable from "never" for a supervisor, and the bound keeps deadline arithmetic
/// (`now + d`) from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Largest restart backoff growth factor. The delay saturates at `max_delay` anyway; the bound
/// only catches nonsense early (and keeps the product finite).
pub const MAX_FACTOR: f64 = 1000.0;

/// Largest per-worker window of unacknowledged connections (round-robin).
pub const MAX_WINDOW: u32 = 65_536;

/// Largest count-like option (crash-loop exits, recycle after N connections): 2^53, the
/// largest integer JavaScript represents exactly.
pub const MAX_COUNT: u64 = 1 << 53;

/// A float as JavaScript would print it: `1000000000`, `1.5`, `1e300`, `NaN`.
fn show(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e21 {
        format!("{}", v as i128)
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v:?}").replace("inf", "Infinity")
    }
}

fn out_of_range(name: &str, range: &str, got: impl std::fmt::Display) -> Error {
    Error::invalid_option(name, format_args!("must be {range} (got {got})"))
}

/// A duration given in milliseconds as a float (Node passes numbers): finite, `0..=MAX_DURATION`.
pub fn duration_ms(name: &str, ms: f64) -> Result<Duration> {
    let max_ms = MAX_DURATION.as_millis() as f64;
    if !(ms.is_finite() && (0.0..=max_ms).contains(&ms)) {
        return Err(out_of_range(
            name,
            &format!("a number of milliseconds between 0 and {max_ms}"),
            show(ms),
        ));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// Checks a duration against `0..=MAX_DURATION` (and `> 0` when `positive`).
pub fn check_duration(name: &str, d: Duration, positive: bool) -> Result<()> {
    if d > MAX_DURATION || (positive && d.is_zero()) {
        let low = if positive { "more than 0" } else { "0" };
        return Err(out_of_range(
            name,
            &format!("between {low} and {} ms (7 days)", MAX_DURATION.as_millis()),
            format!("{} ms", d.as_millis()),
        ));
    }
    Ok(())
}

/// Checks a float against `lo..=hi` (finite).
pub fn check_f64(name: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if !(v.is_finite() && (lo..=hi).contains(&v)) {
        return Err(out_of_range(
            name,
            &format!("a number between {lo} and {hi}"),
            show(v),
        ));
    }
    Ok(())
}

/// Checks an integer against `lo..=hi`.
pub fn check_count(name: &str, v: u64, lo: u64, hi: u64) -> Result<()> {
    if !(lo..=hi).contains(&v) {
        return Err(out_of_range(
            name,
            &format!("an integer between {lo} and {hi}"),
            v,
        ));
    }
    Ok(())
}

/// A count given as a float (Node numbers): an integer in `lo..=hi`.
pub fn count_f64(name: &str, v: f64, lo: u64, hi: u64) -> Result<u64> {
    if !(v.is_finite() && v.fract() == 0.0 && v >= lo as f64 && v <= hi as f64) {
        return Err(out_of_range(
            name,
            &format!("an integer between {lo} and {hi}"),
            show(v),
        ));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_refuse_what_cannot_be_a_deadline() {
        assert_eq!(
            duration_ms("d", 1500.0).unwrap(),
            Duration::from_millis(1500)
        );
        for bad in [
            f64::NAN,
            f64::INFINITY,
            -1.0,
            1e300,
            7.0 * 24.0 * 3600e3 + 1.0,
        ] {
            let e = duration_ms("restart.maxDelay", bad).unwrap_err();
            assert!(e.message().contains("restart.maxDelay"), "{e}");
        }
        assert!(check_duration("t", Duration::ZERO, true).is_err());
        assert!(check_duration("t", MAX_DURATION, true).is_ok());
        assert!(check_duration("t", Duration::MAX, false).is_err());
    }

    #[test]
    fn counts_are_integers_in_range() {
        assert_eq!(count_f64("workers", 8.0, 1, 4096).unwrap(), 8);
        for bad in [0.0, 4097.0, 1e9, 1.5, f64::NAN] {
            let e = count_f64("workers", bad, 1, 4096).unwrap_err();
            assert!(e
                .message()
                .starts_with("workers: must be an integer between 1 and 4096"));
        }
    }
}
