//! A worker that stops reading its channel (SIGSTOP, a blocked loop) under round-robin: it is
//! dealt no more connections, the ones still unread in its channel go to the others, and it
//! rejoins once it reads again. Before the stall check, the default window of 32 kept up to 32
//! clients waiting on a stopped worker for as long as it stayed stopped.

mod util;
use corral_core::Policy;
use std::time::{Duration, Instant};
use util::*;

/// `clients` threads sending requests back to back for `run`; returns (answers, failures, the
/// slowest request).
fn load(port: u16, clients: usize, run: Duration) -> (Vec<String>, Vec<String>, Duration) {
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let end = Instant::now() + run;
                let (mut ok, mut failed, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
                // Bounded by time and by count.
                for _ in 0..100_000 {
                    if Instant::now() >= end {
                        break;
                    }
                    let t = Instant::now();
                    match request(port) {
                        Ok(a) => ok.push(a),
                        Err(e) => failed.push(e.to_string()),
                    }
                    slowest = slowest.max(t.elapsed());
                }
                (ok, failed, slowest)
            })
        })
        .collect();
    let mut all = (Vec::new(), Vec::new(), Duration::ZERO);
    for t in threads {
        let (ok, failed, slowest) = t.join().unwrap();
        all.0.extend(ok);
        all.1.extend(failed);
        all.2 = all.2.max(slowest);
    }
    all
}

#[test]
fn a_stopped_worker_hands_back_its_unread_connections_and_rejoins_when_it_reads() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    let port = h.start_listening(2);
    let stopped = 2;
    let w2 = h.p.worker(stopped).unwrap();
    assert!(!w2.stalled);
    h.p.kill(stopped, libc::SIGSTOP).unwrap();

    let (ok, failed, slowest) = with_client(&mut h, move || load(port, 8, Duration::from_secs(2)));
    assert!(
        failed.is_empty(),
        "{} requests failed: {failed:?}",
        failed.len()
    );
    assert!(
        ok.iter().all(|a| worker_of(a) == 1),
        "the stopped worker answered?"
    );
    assert!(
        ok.len() >= 100,
        "only {} requests in 2 s with 8 clients",
        ok.len()
    );
    // Detection within the stall timeout (250 ms) plus one check tick, with room for a
    // loaded machine; a connection never waits for the stopped worker itself.
    assert!(
        slowest < Duration::from_millis(1500),
        "a request waited {slowest:?} (stuck on the stopped worker?)"
    );
    let info = h.p.worker(stopped).unwrap();
    assert!(info.stalled, "the stopped worker is not marked stalled");
    assert_eq!(info.inflight, 0, "its unread connections were taken back");
    eprintln!(
        "stopped worker: {} requests in 2 s, slowest {slowest:?}",
        ok.len()
    );

    // Once it reads again (its ping), it is dealt connections again.
    h.p.kill(stopped, libc::SIGCONT).unwrap();
    h.wait_until(
        "the resumed worker leaving the stalled state",
        Duration::from_secs(5),
        |p| !p.worker(stopped).unwrap().stalled,
    );
    let (ok, failed, _) = with_client(&mut h, move || load(port, 4, Duration::from_millis(500)));
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        ok.iter().any(|a| worker_of(a) == stopped),
        "the resumed worker got no connection"
    );
}

#[test]
fn a_busy_but_reading_worker_is_never_stalled() {
    // Workers that answer slowly (50 ms) but keep reading their channel stay in the rotation.
    let mut h = harness(&["serve", "127.0.0.1:0", "slow", "50"], Policy::RoundRobin);
    let port = h.start_listening(2);
    let (ok, failed, _) = with_client(&mut h, move || load(port, 8, Duration::from_secs(1)));
    assert!(failed.is_empty(), "{failed:?}");
    let by_worker = |w| ok.iter().filter(|a| worker_of(a) == w).count();
    assert!(
        by_worker(1) > 0 && by_worker(2) > 0,
        "{} / {}",
        by_worker(1),
        by_worker(2)
    );
    assert!(!h.p.worker(1).unwrap().stalled && !h.p.worker(2).unwrap().stalled);
}

#[test]
fn the_stall_timeout_is_validated() {
    let e = corral_core::Primary::new(corral_core::PrimaryOptions {
        stall_timeout: Some(Duration::from_millis(1)),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.message().starts_with("stall_timeout:"), "{e}");
}
