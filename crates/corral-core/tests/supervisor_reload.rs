//! Rolling reload with real workers: every worker replaced under load with zero failed
//! requests, and a reload whose new workers crash rolls back.

mod util;

use corral_core::supervisor::ReloadOptions;
use corral_core::{SupervisorEvent, SupervisorOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::supervisor::{args, opts, plan, start};
use util::{request, worker_of};

#[test]
fn reload_under_load_replaces_every_worker_with_zero_failed_requests() {
    let o = SupervisorOptions {
        reload: ReloadOptions {
            probation: Duration::from_millis(200),
            ..Default::default()
        },
        ..opts(2)
    };
    let mut s = start(plan(|_| args(&["serve", "127.0.0.1:0"])), o, &[]);
    s.run_until("2 listening", Duration::from_secs(10), |s| {
        s.listening() == 2
    });
    let before = s.c.primary().worker_ids();
    s.c.with_supervisor(|sv, p| sv.reload(p)).unwrap();
    assert!(s
        .c
        .with_supervisor(|sv, p| sv.reload(p))
        .unwrap_err()
        .message()
        .contains("already in progress"));
    let (sent, failed) = s.load_while("the reload report", Duration::from_secs(30), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Reload(_))) == 1
    });
    let report = s.reload_report();
    eprintln!("reload: {report:?}; requests sent {sent}, failed {failed}");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.replaced, 2);
    assert_eq!(failed, 0, "requests failed during the reload ({sent} sent)");
    assert!(sent > 50, "the load ran during the reload ({sent} sent)");
    let after = s.c.primary().worker_ids();
    assert!(
        after.iter().all(|id| !before.contains(id)),
        "every worker replaced: {before:?} -> {after:?}"
    );
    let port = s.port();
    let t = std::thread::spawn(move || worker_of(&request(port).unwrap()));
    while !t.is_finished() {
        s.run_until("request", Duration::from_secs(5), |_| true);
        s.c.dispatch(Some(Duration::from_millis(5))).unwrap();
    }
    assert!(!before.contains(&t.join().unwrap()));
}

#[test]
fn a_reload_whose_new_workers_crash_rolls_back() {
    let broken = Arc::new(AtomicBool::new(false));
    let b2 = broken.clone();
    let o = SupervisorOptions {
        reload: ReloadOptions {
            probation: Duration::from_millis(300),
            ..Default::default()
        },
        ..opts(2)
    };
    let mut s = start(
        plan(move |_| {
            if b2.load(Ordering::Acquire) {
                args(&["crash-after", "100", "127.0.0.1:0"])
            } else {
                args(&["serve", "127.0.0.1:0"])
            }
        }),
        o,
        &[],
    );
    s.run_until("2 listening", Duration::from_secs(10), |s| {
        s.listening() == 2
    });
    let before = s.c.primary().worker_ids();
    broken.store(true, Ordering::Release); // the "new code" crashes soon after it listens
    s.c.with_supervisor(|sv, p| sv.reload(p)).unwrap();
    let (_, failed) = s.load_while("the reload report", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Reload(_))) == 1
    });
    let report = s.reload_report();
    eprintln!("{report:?}");
    assert!(!report.ok);
    assert_eq!(report.replaced, 0);
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("exited with code 1"),
        "{report:?}"
    );
    assert_eq!(failed, 0, "the old generation kept serving");
    let t = Instant::now() + Duration::from_millis(300);
    s.run_until("settle", Duration::from_secs(5), |_| Instant::now() >= t);
    let now: Vec<u64> = s.c.primary().worker_ids();
    assert_eq!(
        now, before,
        "the old workers still serve, the new one is gone"
    );
}
