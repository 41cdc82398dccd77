//! Recycling with real workers: over the RSS limit or the connection limit, a worker is
//! replaced without a failed request.

mod util;

use corral_core::supervisor::RecycleOptions;
use corral_core::{SupervisorEvent, SupervisorOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::supervisor::{args, opts, plan, start};

#[test]
fn a_worker_over_its_rss_limit_is_recycled_without_a_failed_request() {
    let o = SupervisorOptions {
        recycle: RecycleOptions {
            max_rss: Some(48 << 20),
            ..Default::default()
        },
        ..opts(2)
    };
    let first = Arc::new(AtomicBool::new(true));
    let f2 = first.clone();
    // The first worker of slot 0 bloats; its replacement does not.
    let mut s = start(
        plan(move |slot| {
            if slot == 0 && f2.swap(false, Ordering::AcqRel) {
                args(&["rss", "64", "127.0.0.1:0"])
            } else {
                args(&["serve", "127.0.0.1:0"])
            }
        }),
        o,
        &[],
    );
    s.run_until("2 listening", Duration::from_secs(10), |s| {
        s.listening() >= 2
    });
    let (sent, failed) = s.load_while("the recycle", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Recycle { .. })) == 1 && s.drained() >= 1
    });
    let reason = s
        .sup_events
        .iter()
        .find_map(|(_, e)| {
            if let SupervisorEvent::Recycle {
                reason, slot: 0, ..
            } = e
            {
                Some(reason.clone())
            } else {
                None
            }
        })
        .unwrap();
    eprintln!("recycled: {reason}; requests sent {sent}, failed {failed}");
    assert!(reason.starts_with("rss "), "{reason}");
    assert_eq!(failed, 0);
}

#[test]
fn a_worker_over_its_connection_limit_is_recycled() {
    let o = SupervisorOptions {
        recycle: RecycleOptions {
            max_connections: Some(40),
            jitter: 0.0,
            ..Default::default()
        },
        ..opts(1)
    };
    let mut s = start(plan(|_| args(&["serve", "127.0.0.1:0"])), o, &[]);
    s.run_until("listening", Duration::from_secs(10), |s| s.listening() == 1);
    let (sent, failed) = s.load_while("the recycle", Duration::from_secs(20), |s| s.drained() >= 1);
    assert_eq!(failed, 0, "sent {sent}");
    assert!(s.count(|e| matches!(e, SupervisorEvent::Recycle { reason, .. } if reason.starts_with("connections "))) >= 1);
}
