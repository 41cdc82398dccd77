//! A worker hands a round-robin connection back (`Worker::refuse`, what a Node worker does at
//! its server's `maxConnections`): the primary deals it to another worker and no client is
//! dropped; when every worker refuses, the client waits in the primary until one takes it.

mod util;
use corral_core::Policy;
use std::time::{Duration, Instant};
use util::*;

/// Worker 1 refuses every connection, worker 2 serves: every client is answered by worker 2.
#[test]
fn a_refused_connection_goes_to_another_worker() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    let port = h.start_listening_with(&[&refusing("1000000:0"), &[]]);
    let n = 40;
    let answers = with_client(&mut h, move || {
        (0..n)
            .map(|i| request(port).unwrap_or_else(|e| panic!("client {i} dropped: {e}")))
            .collect::<Vec<_>>()
    });
    assert!(
        answers.iter().all(|a| worker_of(a) == 2),
        "every client served by the worker with room: {answers:?}"
    );
    let refused = h.p.worker(1).unwrap().refused;
    assert!(
        refused >= 1,
        "worker 1 was dealt connections and refused them"
    );
    assert_eq!(h.p.worker(2).unwrap().refused, 0);
    let handed_2 = h.p.worker(2).unwrap().handed_off;
    assert_eq!(handed_2, n, "worker 2 got each connection once");
    assert_eq!(
        h.p.worker(1).unwrap().handed_off,
        refused,
        "worker 1 refused every connection it was dealt"
    );
}

/// The only worker refuses everything for 300 ms: the client is neither reset nor lost, it
/// waits and is served once the worker takes connections again.
#[test]
fn when_every_worker_refuses_the_client_waits() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    let port = h.start_listening_with(&[&refusing("0:300")]);
    let t0 = Instant::now();
    let answer = with_client(&mut h, move || request(port));
    let answer = answer.expect("the client waited and was served, not dropped");
    assert_eq!(worker_of(&answer), 1);
    let info = h.p.worker(1).unwrap();
    assert!(info.refused >= 2, "refused while full: {}", info.refused);
    // Retried with a growing delay, not bounced as fast as the channel goes: in 300 ms at
    // 1..50 ms apart that is at most ~12 offers.
    assert!(
        info.refused <= 20,
        "refusals were retried with a delay, not in a busy loop: {}",
        info.refused
    );
    assert!(t0.elapsed() >= Duration::from_millis(200), "it waited");
}

/// A worker that says it has room again after refusing is dealt the waiting connection at
/// once, not after the retry delay (which has grown to 50 ms after 8 refusals).
#[test]
fn a_worker_that_says_it_has_room_is_dealt_at_once() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    let port = h.start_listening_with(&[&refusing("8:0:room")]);
    let client = std::thread::spawn(move || {
        let answer = request(port);
        (answer, Instant::now())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_refusal = None;
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "the client was not served");
        h.p.dispatch(Some(Duration::from_millis(1))).unwrap();
        while h.p.next_event().is_some() {}
        if last_refusal.is_none() && h.p.worker(1).is_some_and(|w| w.refused == 8) {
            last_refusal = Some(Instant::now());
        }
    }
    let (answer, served_at) = client.join().unwrap();
    assert_eq!(worker_of(&answer.expect("served")), 1);
    let after = served_at.saturating_duration_since(last_refusal.expect("8 refusals seen"));
    assert!(
        after < Duration::from_millis(25),
        "served {after:?} after the last refusal: the room message should end the 50 ms wait"
    );
}

/// A refused connection for a listener whose last worker left closes (the client sees the
/// end), and the primary keeps running.
#[test]
fn a_refusal_after_the_listener_closed_resets_only_that_client() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    let port = h.start_listening_with(&[&refusing("1000000:0")]);
    let client = std::thread::spawn(move || request_within(port, Duration::from_secs(10)));
    // Let it be refused at least once, then take the worker away gracefully.
    h.wait_until("a refusal", Duration::from_secs(5), |p| {
        p.worker(1).is_some_and(|w| w.refused >= 1)
    });
    h.p.disconnect(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "the client was left hanging");
        h.pump_for(Duration::from_millis(5));
    }
    assert!(
        client.join().unwrap().is_err(),
        "no worker: the client is closed, not answered"
    );
    // The primary still serves new workers.
    let port = h.start_listening(1);
    let answer = with_client(&mut h, move || request(port).unwrap());
    assert_eq!(worker_of(&answer), 2);
}

/// Under the shared policy workers accept by themselves and nobody is dealt connections: a
/// refused one is closed (not kept pending forever), and the next one is served.
#[test]
fn under_the_shared_policy_a_refused_connection_is_closed() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::Shared);
    let port = h.start_listening_with(&[&refusing("1:0")]);
    let first = with_client(&mut h, move || request_within(port, Duration::from_secs(5)));
    let closed = first.as_ref().is_err_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        )
    });
    assert!(
        closed,
        "refused under shared: closed at once, got {first:?}"
    );
    let second = with_client(&mut h, move || request(port).unwrap());
    assert_eq!(worker_of(&second), 1);
    assert_eq!(h.p.worker(1).unwrap().refused, 1);
}
