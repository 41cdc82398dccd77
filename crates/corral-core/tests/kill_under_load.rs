//! Workers SIGKILLed over and over under `Connection: close` load (round-robin, restarted on
//! exit, as every cluster tutorial does). What a killed worker had taken and was serving is
//! lost with it, as in any server; nothing queued to it in its channel may be, and no client
//! may be left hanging. The fixture serves one connection at a time and takes at most
//! `CONNS_PER_READ` off its channel, so each kill may cost at most that many: a worker that
//! took everything queued to it at once (up to the window, as before) lost all of it.

mod util;
use corral_core::{Event, Policy};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::*;

#[test]
fn repeated_sigkill_loses_at_most_what_the_dead_workers_were_serving() {
    // Workers slower than their clients (2 ms a request, 48 clients for 4 workers), so
    // connections queue up for each of them, more than CONNS_PER_READ.
    let mut h = harness_with(&["serve", "127.0.0.1:0"], Policy::RoundRobin, |o| {
        let spec = o.exec.as_mut().expect("exec mode");
        spec.env
            .push(("CORRAL_FIXTURE_SERVE_MS".into(), "2".into()));
    });
    let port = h.start_listening(4);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..48)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut failed, mut hung) = (0u32, 0u32, 0u32);
                // Bounded by the flag (set after 3 s) and by count.
                for _ in 0..1_000_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match request_within(port, Duration::from_secs(3)) {
                        Ok(_) => ok += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => hung += 1,
                        Err(_) => failed += 1,
                    }
                }
                (ok, failed, hung)
            })
        })
        .collect();

    let end = Instant::now() + Duration::from_secs(3);
    let mut next_kill = Instant::now() + Duration::from_millis(200);
    let (mut kills, mut respawned) = (0u32, 0u32);
    while Instant::now() < end {
        h.p.dispatch(Some(Duration::from_millis(5))).unwrap();
        while let Some(ev) = h.p.next_event() {
            h.log.push(format!("{ev:?}"));
            if let Event::Exit { .. } = ev {
                h.p.spawn_worker(&[]).unwrap();
                respawned += 1;
            }
        }
        if Instant::now() >= next_kill {
            next_kill += Duration::from_millis(200);
            let ids = h.p.worker_ids();
            if let Some(&victim) = ids.get(kills as usize % ids.len().max(1)) {
                h.p.kill(victim, libc::SIGKILL).unwrap();
                kills += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let results = with_client(&mut h, move || {
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .fold((0, 0, 0), |a, r| (a.0 + r.0, a.1 + r.1, a.2 + r.2))
    });
    let (ok, failed, hung) = results;
    eprintln!(
        "{kills} kills, {respawned} restarts: {ok} requests served, {failed} failed, {hung} hung"
    );
    assert!(kills >= 10, "only {kills} kills");
    assert!(ok > 100, "only {ok} requests served");
    assert_eq!(hung, 0, "connections left hanging (leaked)");
    // At most 4 (CONNS_PER_READ) per kill; a worker that took all 12 queued to it lost them.
    const { assert!(corral_core::worker::CONNS_PER_READ <= 4) };
    assert!(
        failed <= 4 * kills,
        "{failed} failed requests for {kills} kills: more than the 4 connections each dead \
         worker may have taken"
    );
}
