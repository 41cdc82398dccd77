//! Workers SIGKILLed over and over under `Connection: close` load (round-robin, restarted on
//! exit, as every cluster tutorial does). What a killed worker had taken and was serving is
//! lost with it, as in any server; nothing queued to it in its channel may be, and no client
//! may be left hanging. The fixture serves one connection at a time and takes at most
//! `CONNS_PER_READ` off its channel, so each kill may cost at most that many: a worker that
//! took everything queued to it at once (up to the window, as before) lost all of it.

mod util;
use corral_core::Policy;
use std::time::Duration;
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
    // Bounded by count and stopped after the 3 s of kills.
    let clients = Looping::start(48, move || request_within(port, Duration::from_secs(3)));
    let (kills, respawned, _) = kill_in_turn_for_3s(&mut h);
    let Tally {
        ok, failed, hung, ..
    } = clients.end(&mut h);
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
