//! Restart delays: exponential backoff with jitter, reset after a stable run, and the
//! crash-loop breaker (too many unstable exits in a window: retry at the maximum delay only).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Restart policy knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartOptions {
    /// First delay after a crash.
    pub initial_delay: Duration,
    /// Ceiling of the delay (and the delay while crash-looping).
    pub max_delay: Duration,
    /// Growth per consecutive unstable exit (>= 1).
    pub factor: f64,
    /// +/- this fraction of random spread on each delay (0..=1).
    pub jitter: f64,
    /// A worker that ran this long was stable: its crash restarts at the initial delay.
    pub reset_after: Duration,
    /// This many unstable exits of one slot within `crash_loop_window` is a crash loop.
    pub crash_loop_exits: u32,
    /// See `crash_loop_exits`.
    pub crash_loop_window: Duration,
    /// Exit codes that mean "do not restart" (bad configuration, a deliberate stop).
    pub no_restart_exit_codes: Vec<i32>,
}

impl Default for RestartOptions {
    fn default() -> Self {
        RestartOptions {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.2,
            reset_after: Duration::from_secs(30),
            crash_loop_exits: 5,
            crash_loop_window: Duration::from_secs(60),
            no_restart_exit_codes: Vec::new(),
        }
    }
}

/// The backoff state of one slot.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    last: Option<Duration>,
    unstable: VecDeque<Instant>,
    looping: bool,
}

/// What to do after an exit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Wait this long before the restart (jitter not applied yet).
    pub delay: Duration,
    /// The slot just entered a crash loop.
    pub entered_crash_loop: bool,
}

impl Backoff {
    /// Records an exit after `uptime` and returns the delay before the restart.
    pub fn on_exit(&mut self, o: &RestartOptions, uptime: Duration, now: Instant) -> Decision {
        if uptime >= o.reset_after {
            // A stable run: start over.
            self.last = None;
            self.unstable.clear();
            self.looping = false;
        } else {
            self.unstable.push_back(now);
        }
        while self
            .unstable
            .front()
            .is_some_and(|&t| now.duration_since(t) > o.crash_loop_window)
        {
            self.unstable.pop_front();
        }
        let mut entered = false;
        if self.unstable.len() as u32 >= o.crash_loop_exits && !self.looping {
            self.looping = true;
            entered = true;
        }
        let delay = if self.looping {
            o.max_delay
        } else {
            match self.last {
                None => o.initial_delay,
                Some(d) => grow(d, o.factor, o.max_delay),
            }
        };
        self.last = Some(delay);
        Decision {
            delay,
            entered_crash_loop: entered,
        }
    }

    /// The slot is crash-looping (restarts at the maximum delay).
    pub fn crash_looping(&self) -> bool {
        self.looping
    }
}

/// `d * factor`, saturating at `max` (and at `max` for a product that is not finite or does
/// not fit a `Duration`: `Duration::mul_f64` would panic there).
fn grow(d: Duration, factor: f64, max: Duration) -> Duration {
    let next = d.as_secs_f64() * factor;
    if !(next.is_finite() && next < max.as_secs_f64()) {
        return max;
    }
    Duration::try_from_secs_f64(next).map_or(max, |n| n.min(max))
}

/// A small xorshift generator for jitter (no crypto needed; seeded per supervisor).
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and the pid.
    pub fn new() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Jitter(t ^ ((std::process::id() as u64) << 32) | 1)
    }

    /// A number in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `d` spread by +/- `fraction`.
    pub fn apply(&mut self, d: Duration, fraction: f64) -> Duration {
        if fraction <= 0.0 {
            return d;
        }
        let f = 1.0 + fraction.min(1.0) * (2.0 * self.next_unit() - 1.0);
        // At most 2x a validated duration: cannot overflow; keep `d` if it somehow would.
        Duration::try_from_secs_f64(d.as_secs_f64() * f.max(0.0)).unwrap_or(d)
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RestartOptions {
        RestartOptions {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            factor: 2.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(10),
            crash_loop_exits: 4,
            crash_loop_window: Duration::from_secs(60),
            no_restart_exit_codes: vec![],
        }
    }

    #[test]
    fn delays_grow_cap_and_reset_after_a_stable_run() {
        let o = opts();
        let mut b = Backoff::default();
        let t = Instant::now();
        let quick = Duration::from_millis(10);
        let d: Vec<u128> = (0..3)
            .map(|_| b.on_exit(&o, quick, t).delay.as_millis())
            .collect();
        assert_eq!(d, [100, 200, 400]);
        let r = b.on_exit(&o, quick, t);
        assert!(r.entered_crash_loop, "4 unstable exits in the window");
        assert_eq!(r.delay.as_millis(), 1000);
        assert!(b.crash_looping());
        let r = b.on_exit(&o, Duration::from_secs(11), t);
        assert_eq!(r.delay.as_millis(), 100, "a stable run resets the backoff");
        assert!(!b.crash_looping());
    }

    #[test]
    fn huge_factors_saturate_at_the_maximum_delay() {
        // factor 1e300 used to panic at the second restart ("cannot convert float seconds to
        // Duration"), killing the Node engine thread without a word.
        for factor in [1e300, f64::MAX, 1e10] {
            let o = RestartOptions {
                factor,
                crash_loop_exits: 100,
                ..opts()
            };
            let mut b = Backoff::default();
            let t = Instant::now();
            let d: Vec<u128> = (0..4)
                .map(|_| b.on_exit(&o, Duration::ZERO, t).delay.as_millis())
                .collect();
            assert_eq!(d, [100, 1000, 1000, 1000], "factor {factor}");
        }
        let max = Duration::MAX;
        assert_eq!(grow(Duration::from_secs(u64::MAX / 2), 4.0, max), max);
        // Jitter on a duration near the top of the range: a product that does not fit keeps
        // the duration (Duration::mul_f64 panicked there).
        let mut j = Jitter::new();
        let d = Duration::from_secs(u64::MAX / 2 + 1);
        for _ in 0..1000 {
            let r = j.apply(d, 1.0);
            assert!(r == d || r < d.saturating_mul(2), "{r:?}");
        }
    }

    #[test]
    fn old_exits_leave_the_window() {
        let o = RestartOptions {
            crash_loop_window: Duration::from_millis(50),
            ..opts()
        };
        let mut b = Backoff::default();
        let t0 = Instant::now();
        for i in 0..3 {
            b.on_exit(&o, Duration::ZERO, t0 + Duration::from_millis(i));
        }
        let r = b.on_exit(&o, Duration::ZERO, t0 + Duration::from_secs(1));
        assert!(!r.entered_crash_loop);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let mut j = Jitter::new();
        for _ in 0..1000 {
            let d = j.apply(Duration::from_millis(1000), 0.2).as_millis();
            assert!((800..=1200).contains(&d), "{d}");
        }
    }
}
