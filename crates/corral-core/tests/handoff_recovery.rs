//! A worker SIGKILLed with connections queued to it loses none of them: the primary reads them
//! back from the dead worker's channel and hands them to a live worker.

mod util;
use corral_core::{Event, Policy};
use std::time::Duration;
use util::*;

#[test]
fn sigkilled_worker_loses_no_connection_that_had_not_reached_it() {
    // Worker 1 serves; worker 2 listens, then never takes a connection, so its window fills
    // with connections that have not reached it.
    // The stall check would take the connections back from the staller before it dies (see
    // tests/stalled_worker.rs); here the recovery on death is under test.
    let mut h = harness_with(&["serve", "127.0.0.1:0"], Policy::RoundRobin, |o| {
        o.window = 16;
        o.stall_timeout = None;
    });
    let port = h.start_listening(1);
    let staller = spawn_staller(&mut h);

    let n = 200;
    let clients = std::thread::spawn(move || {
        let handles: Vec<_> = (0..n)
            .map(|_| std::thread::spawn(move || request(port)))
            .collect();
        handles
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    // Let the staller's window fill up, then kill it.
    h.wait_until(
        "connections queued to the stalled worker",
        Duration::from_secs(20),
        |p| p.worker(staller).map_or(0, |w| w.inflight) >= 16,
    );
    let inflight = h.p.worker(staller).unwrap().inflight;
    h.p.kill(staller, libc::SIGKILL).unwrap();
    h.wait("the staller's exit", Duration::from_secs(5), |_, ev| {
        matches!(ev, Event::Exit { worker, .. } if *worker == staller).then_some(())
    });
    let results = with_client(&mut h, move || clients.join().unwrap());
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert_eq!(
        inflight, 16,
        "the staller held a full window when it was killed"
    );
    assert!(
        failed.is_empty(),
        "{} of {n} connections failed: {failed:?}",
        failed.len()
    );
    assert!(results.iter().all(|r| worker_of(r.as_ref().unwrap()) == 1));
}

/// Starts a worker that listens on the same address and never takes a connection.
fn spawn_staller(h: &mut Harness) -> u64 {
    let id =
        h.p.spawn_worker(&[("CORRAL_FIXTURE_MODE".into(), "stall".into())])
            .unwrap();
    h.wait("the staller listening", Duration::from_secs(10), |_, ev| {
        matches!(ev, Event::Listening { worker, .. } if *worker == id).then_some(())
    });
    id
}
