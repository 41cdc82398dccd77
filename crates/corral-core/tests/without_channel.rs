//! Workers started with `SpawnSpec::without_channel` (programs that know nothing of corral,
//! run by the `corral` command): asked to leave by SIGTERM, no `Event::Disconnect` for a
//! channel that was never theirs, and the supervisor told from outside that one serves
//! (`worker_ready`) or is alive (`worker_heartbeat`).

mod util;
use corral_core::supervisor::{Cause, HeartbeatOptions, RestartOptions};
use corral_core::{
    Event, Policy, Primary, PrimaryOptions, SpawnSpec, StdioSpec, Supervisor, SupervisorEvent,
    SupervisorOptions,
};
use std::time::{Duration, Instant};
use util::*;

fn sh(script: &str) -> SpawnSpec {
    SpawnSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        stdio: vec![StdioSpec::Null, StdioSpec::Inherit, StdioSpec::Inherit],
        without_channel: true,
        ..Default::default()
    }
}

#[test]
fn disconnect_sends_sigterm_and_only_the_exit_is_reported() {
    let mut h = harness(&[], Policy::Shared);
    // Ready once the trap is set (it writes to stdout... which is inherited: use a file).
    let dir = std::env::temp_dir().join(format!("corral-without-channel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mark = dir.join("trap-set");
    let script = format!(
        "trap 'exit 3' TERM; : > '{}'; while :; do sleep 0.02; done",
        mark.display()
    );
    let id = h.p.spawn_worker_with(&sh(&script), &[]).unwrap();
    h.wait_until("the worker's TERM trap", Duration::from_secs(10), |_| {
        mark.exists()
    });
    h.p.disconnect(id).unwrap();
    let mut disconnects = 0;
    let exit = h.wait(
        "the worker's exit",
        Duration::from_secs(10),
        |_, ev| match ev {
            Event::Disconnect { .. } => {
                disconnects += 1;
                None
            }
            Event::Exit {
                worker,
                status,
                exited_after_disconnect,
                ..
            } if *worker == id => Some((status.code, *exited_after_disconnect)),
            _ => None,
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        exit,
        (Some(3), true),
        "SIGTERM ran its trap; the exit was asked for"
    );
    assert_eq!(
        disconnects, 0,
        "no Disconnect for a channel the worker never had"
    );
}

#[test]
fn worker_ready_makes_a_death_a_crash_and_worker_heartbeat_feeds_the_watchdog() {
    no_policy_override();
    let mut p = Primary::new(PrimaryOptions {
        policy: Policy::Shared,
        ..Default::default()
    })
    .unwrap();
    let opts = SupervisorOptions {
        workers: 1,
        restart: RestartOptions {
            initial_delay: Duration::from_millis(10),
            jitter: 0.0,
            ..Default::default()
        },
        heartbeat: Some(HeartbeatOptions {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(300),
        }),
        ..Default::default()
    };
    let spec = sh("while :; do sleep 0.02; done");
    let mut sup = Supervisor::start(
        &mut p,
        opts,
        Box::new(move |p: &mut Primary, _| p.spawn_worker_with(&spec, &[])),
    )
    .unwrap();
    let first = p.worker_ids()[0];
    let mut seen: Vec<SupervisorEvent> = Vec::new();
    // Not watched before its first heartbeat (it has no channel to say online).
    sup.worker_ready(&mut p, first);
    let quiet = Instant::now() + Duration::from_millis(400);
    run_until(&mut p, &mut sup, &mut seen, "400 ms unwatched", |_| {
        Instant::now() >= quiet
    });
    assert!(seen.is_empty(), "no hang before any heartbeat: {seen:?}");
    sup.worker_heartbeat(first);
    run_until(
        &mut p,
        &mut sup,
        &mut seen,
        "the hang and its restart",
        |s| {
            s.iter().any(|e| {
                matches!(
                    e,
                    SupervisorEvent::Restart {
                        cause: Cause::Hang,
                        ..
                    }
                )
            })
        },
    );
    assert!(
        matches!(seen[0], SupervisorEvent::Hang { worker, .. } if worker == first),
        "{seen:?}"
    );
    let second = p
        .worker_ids()
        .into_iter()
        .find(|&w| w != first)
        .expect("replacement");
    sup.worker_ready(&mut p, second);
    let pid = p.worker(second).unwrap().pid;
    corral_core::__testing::sys::kill(pid, libc::SIGKILL).unwrap();
    run_until(&mut p, &mut sup, &mut seen, "the crash restart", |s| {
        s.iter().any(|e| {
            matches!(
                e,
                SupervisorEvent::Restart {
                    cause: Cause::Crash(_),
                    ..
                }
            )
        })
    });
}

/// Drives the primary and the supervisor until `done` holds for the supervisor's events so far.
fn run_until(
    p: &mut Primary,
    sup: &mut Supervisor,
    seen: &mut Vec<SupervisorEvent>,
    what: &str,
    done: impl Fn(&[SupervisorEvent]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(seen) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {seen:?}"
        );
        p.dispatch(Some(Duration::from_millis(20))).unwrap();
        while let Some(ev) = p.next_event() {
            sup.handle(p, &ev);
        }
        sup.tick(p);
        while let Some(ev) = sup.next_event() {
            seen.push(ev);
        }
    }
}
