//! Supervisor restarts with real workers: backoff gaps and their reset after a stable run,
//! the crash-loop breaker, no-restart exit codes, a broken channel, and shutdown, after which
//! nothing is restarted.

mod util;

use corral_core::supervisor::{Cause, RestartOptions};
use corral_core::{Event, SupervisorEvent, SupervisorOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::supervisor::{args, opts, plan, quick_restart, start};

#[test]
fn backoff_gaps_grow_then_cap() {
    let mut s = start(plan(|_| args(&["exit", "1"])), opts(1), &[]);
    s.run_until("5 restarts", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Restart { .. })) >= 5
    });
    let delays: Vec<u128> = s
        .sup_events
        .iter()
        .filter_map(|(_, e)| match e {
            SupervisorEvent::Restart {
                delay,
                cause: Cause::Boot(st),
                ..
            } => {
                assert_eq!(st.code, Some(1));
                Some(delay.as_millis())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        &delays[..5],
        &[50, 100, 200, 400, 400],
        "boot failures back off: {delays:?}"
    );
    // The measured gaps between exits and restarts are at least the delays.
    let exits: Vec<Instant> = s
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Exit { .. }))
        .map(|(t, _)| *t)
        .collect();
    let restarts: Vec<Instant> = s
        .sup_events
        .iter()
        .filter(|(_, e)| matches!(e, SupervisorEvent::Restart { .. }))
        .map(|(t, _)| *t)
        .collect();
    for (i, (r, d)) in restarts.iter().zip(&delays).enumerate().take(5) {
        let gap = r.duration_since(exits[i]).as_millis();
        eprintln!("restart {i}: delay {d} ms, measured gap {gap} ms");
        assert!(
            gap + 5 >= *d,
            "restart {i} came after {gap} ms, before its {d} ms delay"
        );
    }
}

#[test]
fn stable_runs_reset_the_backoff() {
    let o = SupervisorOptions {
        restart: RestartOptions {
            reset_after: Duration::from_millis(200),
            ..quick_restart()
        },
        ..opts(1)
    };
    let mut s = start(
        plan(|_| args(&["crash-after", "300", "127.0.0.1:0"])),
        o,
        &[],
    );
    s.run_until("3 restarts", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Restart { .. })) >= 3
    });
    for (_, e) in &s.sup_events {
        if let SupervisorEvent::Restart { delay, cause, .. } = e {
            assert_eq!(delay.as_millis(), 50, "each run was stable: initial delay");
            assert!(
                matches!(cause, Cause::Crash(_)),
                "it crashed after listening: {cause:?}"
            );
        }
    }
}

#[test]
fn crash_loop_trips_the_breaker_while_healthy_workers_serve() {
    let o = SupervisorOptions {
        restart: RestartOptions {
            crash_loop_exits: 3,
            max_delay: Duration::from_secs(5),
            ..quick_restart()
        },
        ..opts(2)
    };
    let mut s = start(
        plan(|slot| {
            if slot == 0 {
                args(&["serve", "127.0.0.1:0"])
            } else {
                args(&["exit", "3"])
            }
        }),
        o,
        &[],
    );
    s.run_until("the crash loop", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::CrashLoop { .. })) == 1
    });
    let (slot, exits) = s
        .sup_events
        .iter()
        .find_map(|(_, e)| match e {
            SupervisorEvent::CrashLoop { slot, exits } => Some((*slot, exits.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(slot, 1);
    assert_eq!(exits.len(), 3);
    assert!(exits.iter().all(|e| e.code == Some(3)));
    // Slow retries now (the max delay), and slot 0 keeps serving.
    let restarts_before = s.count(|e| matches!(e, SupervisorEvent::Restart { .. }));
    let (sent, failed) = s.load_while("serving during the loop", Duration::from_secs(10), |s| {
        s.sup_events
            .last()
            .is_some_and(|(t, _)| t.elapsed() > Duration::from_millis(800))
    });
    assert!(sent > 10 && failed == 0, "sent {sent}, failed {failed}");
    assert_eq!(
        s.count(|e| matches!(e, SupervisorEvent::Restart { .. })),
        restarts_before,
        "no fast respawning"
    );
    assert_eq!(s.metrics().crash_looping_slots, vec![1]);
}

#[test]
fn no_restart_exit_codes_are_honoured() {
    let mut s = start(plan(|_| args(&["exit", "78"])), opts(1), &[]);
    s.run_until("NoRestart", Duration::from_secs(10), |s| {
        s.count(|e| matches!(e, SupervisorEvent::NoRestart { .. })) == 1
    });
    let t = Instant::now() + Duration::from_millis(500);
    s.run_until("quiet", Duration::from_secs(5), |_| Instant::now() >= t);
    assert_eq!(
        s.count(|e| matches!(e, SupervisorEvent::Restart { .. })),
        0,
        "{:#?}",
        s.log
    );
    assert!(s.c.primary().worker_ids().is_empty());
}

#[test]
fn a_worker_whose_channel_broke_is_stopped_and_replaced() {
    // Slot 0's first worker writes garbage on its channel and ignores the cut; it used to stay
    // up for good, unreplaced, shown as ready.
    let first = Arc::new(AtomicBool::new(true));
    let f = first.clone();
    let mut s = start(
        plan(move |_| {
            if f.swap(false, Ordering::SeqCst) {
                args(&["garbage-stay", "127.0.0.1:0"])
            } else {
                args(&["serve", "127.0.0.1:0"])
            }
        }),
        opts(1),
        &[],
    );
    s.run_until("the replacement", Duration::from_secs(10), |s| {
        s.count(|e| {
            matches!(
                e,
                SupervisorEvent::Restart {
                    cause: Cause::Channel,
                    ..
                }
            )
        }) == 1
    });
    assert!(s.error_containing("malformed frame"), "{:#?}", s.log);
    s.run_until("the replacement listening", Duration::from_secs(10), |s| {
        s.metrics().workers.iter().any(|w| w.state == "ready")
    });
    let m = s.metrics();
    assert_eq!(m.workers.len(), 1, "{m:?}");
    assert!(
        m.restarts_by_cause.contains(&("channel".to_string(), 1)),
        "{m:?}"
    );
}

#[test]
fn shutdown_drains_and_stops_restarting() {
    let mut s = start(plan(|_| args(&["serve", "127.0.0.1:0"])), opts(2), &[]);
    s.run_until("2 listening", Duration::from_secs(10), |s| {
        s.listening() == 2
    });
    s.c.with_supervisor(|sv, p| sv.shutdown(p)).unwrap();
    s.run_until("shutdown", Duration::from_secs(10), |s| {
        s.shutdown_complete().is_some()
    });
    assert!(s.shutdown_complete() == Some(true), "{:#?}", s.log);
    assert_eq!(s.count(|e| matches!(e, SupervisorEvent::Restart { .. })), 0);
}
