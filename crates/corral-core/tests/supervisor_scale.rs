//! Scaling with real workers: up, then down with graceful drains; bad options name the option.

mod util;

use corral_core::supervisor::{ReloadOptions, RestartOptions};
use corral_core::{Primary, PrimaryOptions, Supervisor, SupervisorEvent, SupervisorOptions};
use std::time::Duration;
use util::supervisor::{args, opts, plan, quick_restart, start};

#[test]
fn scale_up_and_down_drains_gracefully() {
    let mut s = start(plan(|_| args(&["serve", "127.0.0.1:0"])), opts(1), &[]);
    s.run_until("1 listening", Duration::from_secs(10), |s| {
        s.listening() == 1
    });
    s.c.with_supervisor(|sv, p| sv.scale(p, 3)).unwrap();
    s.run_until("3 listening", Duration::from_secs(10), |s| {
        s.listening() == 3
    });
    s.c.with_supervisor(|sv, p| sv.scale(p, 1)).unwrap();
    let (sent, failed) = s.load_while("2 drained", Duration::from_secs(10), |s| s.drained() == 2);
    assert_eq!(failed, 0, "sent {sent}");
    assert_eq!(s.c.primary().worker_ids().len(), 1);
    assert_eq!(
        s.count(|e| matches!(e, SupervisorEvent::Restart { .. })),
        0,
        "scaled-down workers are not restarted"
    );
    assert!(s
        .c
        .with_supervisor(|sv, p| sv.scale(p, 0))
        .unwrap_err()
        .message()
        .contains("workers"));
}

#[test]
fn invalid_options_name_the_option() {
    let mut p = Primary::new(PrimaryOptions::default()).unwrap();
    for (o, name) in [
        (
            SupervisorOptions {
                workers: 0,
                ..opts(1)
            },
            "workers",
        ),
        (
            SupervisorOptions {
                restart: RestartOptions {
                    factor: 0.5,
                    ..quick_restart()
                },
                ..opts(1)
            },
            "restart.factor",
        ),
        (
            SupervisorOptions {
                restart: RestartOptions {
                    jitter: 2.0,
                    ..quick_restart()
                },
                ..opts(1)
            },
            "restart.jitter",
        ),
        (
            SupervisorOptions {
                reload: ReloadOptions {
                    batch: 0,
                    ..Default::default()
                },
                ..opts(1)
            },
            "reload.batch",
        ),
    ] {
        let e = Supervisor::start(&mut p, o, Box::new(|_, _| unreachable!())).unwrap_err();
        assert!(e.message().starts_with(name), "{e}");
        // The fronts read the name from the error, not from its text.
        assert_eq!(e.option(), Some(name), "{e}");
        assert!(
            e.reason().starts_with("must"),
            "the reason is the message without the option's name: {e}"
        );
    }
}
