//! Round-robin handoff spreads connections evenly; shared mode serves; port 0 is one port.

mod util;
use corral_core::{Event, Policy};
use std::collections::BTreeMap;
use util::*;

#[test]
fn rr_spreads_connections_evenly() {
    // Exact turns: the stall check off, since it would deal a connection to the next worker
    // when the machine's load holds one for 25 ms (stalled_worker.rs tests it).
    let mut h = harness_with(&["serve", "127.0.0.1:0"], Policy::RoundRobin, |o| {
        o.stall_timeout = None
    });
    let port = h.start_listening(3);
    let n = 300;
    let answers = with_client(&mut h, move || {
        (0..n).map(|_| request(port).unwrap()).collect::<Vec<_>>()
    });
    let mut per: BTreeMap<u64, usize> = BTreeMap::new();
    for a in &answers {
        *per.entry(worker_of(a)).or_default() += 1;
    }
    assert_eq!(per.len(), 3, "every worker served: {per:?}");
    let (min, max) = (per.values().min().unwrap(), per.values().max().unwrap());
    assert!(max - min <= 1, "rr spread must be within ±1: {per:?}");
    let handed: u64 =
        h.p.worker_ids()
            .iter()
            .map(|&id| h.p.worker(id).unwrap().handed_off)
            .sum();
    assert_eq!(handed, n as u64, "the primary counted every handoff");
}

#[test]
fn shared_mode_serves_from_every_worker_on_one_port() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::Shared);
    let port = h.start_listening(2);
    assert_ne!(port, 0, "port 0 resolved to a real port");
    let answers = with_client(&mut h, move || {
        (0..50).map(|_| request(port).unwrap()).collect::<Vec<_>>()
    });
    assert_eq!(answers.len(), 50);
    // The primary hands nothing out in shared mode.
    for id in h.p.worker_ids() {
        assert_eq!(h.p.worker(id).unwrap().handed_off, 0);
    }
}

#[test]
fn port_zero_is_resolved_once_and_shared_by_every_worker() {
    for policy in [Policy::RoundRobin, Policy::Shared] {
        let mut h = harness(&["serve", "127.0.0.1:0"], policy);
        for _ in 0..3 {
            h.p.spawn_worker(&[]).unwrap();
        }
        let mut seen = Vec::new();
        h.wait(
            "3 listening",
            std::time::Duration::from_secs(10),
            |_, ev| {
                if let Event::Listening { listener, addr, .. } = ev {
                    seen.push((*listener, addr.clone()));
                }
                (seen.len() == 3).then_some(())
            },
        );
        assert!(
            seen.iter().all(|s| s == &seen[0]),
            "{policy:?}: one listener, one port: {seen:?}"
        );
        assert_ne!(seen[0].1.port(), 0);
    }
}

#[test]
fn connections_wait_in_the_backlog_until_a_worker_listens() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    let port = h.start_listening(1);
    let id = h.p.worker_ids()[0];
    h.p.kill(id, libc::SIGKILL).unwrap();
    h.wait("exit", std::time::Duration::from_secs(5), |_, ev| {
        matches!(ev, Event::Exit { .. }).then_some(())
    });
    // No worker now: a client connects (the backlog holds it) and is answered once a new
    // worker comes up.
    let client = std::thread::spawn(move || request(port));
    h.pump_for(std::time::Duration::from_millis(200));
    h.p.spawn_worker(&[]).unwrap();
    let answer = loop {
        h.pump_for(std::time::Duration::from_millis(5));
        if client.is_finished() {
            break client.join().unwrap().expect("served after the respawn");
        }
    };
    assert_eq!(worker_of(&answer), 2, "ids are never reused");
}

#[test]
fn the_last_worker_leaving_gracefully_closes_the_listener() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    let port = h.start_listening(2);
    h.p.disconnect(1).unwrap();
    // One worker left: still served.
    let answer = with_client(&mut h, move || request(port).unwrap());
    assert_eq!(worker_of(&answer), 2);
    // The last one leaves gracefully: new clients are refused at once (as node:cluster does),
    // not queued for a worker that will never come.
    let listeners = listening_inodes(port);
    assert!(!listeners.is_empty(), "nothing listens on {port}");
    h.p.disconnect(2).unwrap();
    // The listener is closed everywhere: its inode leaves /proc/net/tcp. (Retried briefly: a
    // child spawned by a concurrent test holds copies of every fd between its fork and exec.
    // Not a connect(): another process may have bound the freed port since.)
    let t0 = std::time::Instant::now();
    while !listening_inodes(port).is_disjoint(&listeners) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(2),
            "the listener is still open"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A new worker listening on port 0 gets a fresh listener.
    h.p.spawn_worker(&[]).unwrap();
    let new_port = h.wait(
        "the new worker listening",
        std::time::Duration::from_secs(10),
        |_, ev| match ev {
            Event::Listening { addr, .. } => Some(addr.port()),
            _ => None,
        },
    );
    assert_ne!(new_port, 0);
}

/// A worker accepting on its own copy of the listener takes what the kernel says is queued
/// (TCP_INFO) and then waits for the poller's next edge: connections that arrive in bursts,
/// some while it is still accepting the previous ones, are all served, none left waiting.
#[test]
fn bursts_of_connections_are_all_taken_from_a_shared_listener() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::Shared);
    let port = h.start_listening(1);
    let served = with_client(&mut h, move || {
        let mut served = 0;
        for burst in 0..8 {
            let conns: Vec<_> = (0..32 + burst * 8)
                .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
                .collect();
            for mut c in &conns {
                c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                    .unwrap();
                std::io::Write::write_all(&mut c, b"hello\n").unwrap();
            }
            for c in &conns {
                let answer = util::routing::read_answer(c).expect("answered within 10 s");
                assert!(answer.starts_with("worker "), "{answer}");
                served += 1;
            }
        }
        served
    });
    assert_eq!(served, (0..8).map(|b| 32 + b * 8).sum::<usize>());
}
