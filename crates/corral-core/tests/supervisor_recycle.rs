//! Recycling with real workers: over the RSS limit or the connection limit, a worker is
//! replaced without a failed request.

mod util;

use corral_core::supervisor::RecycleOptions;
use corral_core::{SupervisorEvent, SupervisorOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use util::supervisor::{args, opts, plan, start, Sup};

#[test]
fn a_worker_over_its_rss_limit_is_recycled_without_a_failed_request() {
    // The first worker of slot 0 bloats; its replacement does not.
    let mut s = over_rss_in_slot_0("rss");
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

/// A worker whose child holds the memory: the C and Node fronts' default counts the started
/// pid only, so it is left alone; with `count_descendants` (the `corral` command) its tree
/// is over the limit and it is recycled without a failed request.
#[test]
fn a_workers_child_counts_toward_max_rss_only_with_count_descendants() {
    let mut s = over_rss_in_slot_0("child-rss");
    // Three recycling checks (one a second) with the child's 64 MiB in place.
    let until = std::time::Instant::now() + Duration::from_millis(3200);
    s.run_until("3.2 s", Duration::from_secs(10), |_| {
        std::time::Instant::now() >= until
    });
    let own = s.metrics().workers[0].rss_bytes;
    assert_eq!(
        s.count(|e| matches!(e, SupervisorEvent::Recycle { .. })),
        0,
        "recycled on the pid's own {own} bytes: {:#?}",
        s.log
    );
    assert!(own < 48 << 20, "the started pid itself is small: {own}");
    s.c.with_supervisor(|sup, _| {
        sup.count_descendants(true);
        Ok(())
    })
    .unwrap();
    let tree = s.metrics().workers[0].rss_bytes;
    assert!(tree > 64 << 20, "the tree holds the child's 64 MiB: {tree}");
    let (sent, failed) = s.load_while("the recycle", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Recycle { slot: 0, .. })) == 1 && s.drained() >= 1
    });
    eprintln!(
        "pid's own {own} bytes, tree {tree}; recycled with count_descendants; requests sent \
         {sent}, failed {failed}"
    );
    assert_eq!(failed, 0);
}

/// 2 slots recycled over 48 MiB of RSS, both listening; slot 0's first worker runs the
/// fixture's `mode` with 64 MiB (`rss`: held by itself, `child-rss`: by its child), every
/// other worker serves.
fn over_rss_in_slot_0(mode: &'static str) -> Sup {
    let o = SupervisorOptions {
        recycle: RecycleOptions {
            max_rss: Some(48 << 20),
            ..Default::default()
        },
        ..opts(2)
    };
    let first = AtomicBool::new(true);
    let mut s = start(
        plan(move |slot| {
            if slot == 0 && first.swap(false, Ordering::AcqRel) {
                args(&[mode, "64", "127.0.0.1:0"])
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
    s
}
