//! The hang watchdog with real workers: a worker that stops heartbeating is replaced.

mod util;

use corral_core::supervisor::{Cause, HeartbeatOptions};
use corral_core::{SupervisorEvent, SupervisorOptions};
use std::time::{Duration, Instant};
use util::supervisor::{args, opts, plan, start};

#[test]
fn a_worker_that_stops_heartbeating_is_replaced() {
    let o = SupervisorOptions {
        heartbeat: Some(HeartbeatOptions {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(300),
        }),
        ..opts(1)
    };
    let mut s = start(
        plan(|_| args(&["hang-after", "400", "127.0.0.1:0"])),
        o,
        &[("CORRAL_FIXTURE_HEARTBEAT_MS", "50")],
    );
    let t0 = Instant::now();
    s.run_until("a hang", Duration::from_secs(10), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Hang { .. })) == 1
    });
    let detected = t0.elapsed();
    let silent = s
        .sup_events
        .iter()
        .find_map(|(_, e)| {
            if let SupervisorEvent::Hang { silent_for, .. } = e {
                Some(*silent_for)
            } else {
                None
            }
        })
        .unwrap();
    eprintln!("hang detected {detected:?} after start; silent for {silent:?}");
    assert!(
        silent > Duration::from_millis(300) && silent < Duration::from_millis(1500),
        "{silent:?}"
    );
    s.run_until("the replacement", Duration::from_secs(10), |s| {
        s.count(|e| {
            matches!(
                e,
                SupervisorEvent::Restart {
                    cause: Cause::Hang,
                    ..
                }
            )
        }) == 1
    });
}
