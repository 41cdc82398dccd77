//! `sticky`: a client's connections reach one worker; a crash moves only the crashed worker's
//! clients and its replacement gets them back; a fifth worker takes about a fifth; a key read
//! from the request routes clients whatever their address.

mod util;
use corral_core::{Event, Policy};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use util::routing::*;
use util::*;

/// Which worker each of `clients` reaches (one request each), checking the worker saw the
/// client's own address.
fn assignment(h: &mut Harness, port: u16, clients: u32) -> Vec<u64> {
    with_client(h, move || {
        (0..clients)
            .map(|c| {
                let a = request_from(client(c), port, b"").unwrap();
                assert_eq!(peer_of(&a).ip(), client(c), "{a}");
                worker_of(&a)
            })
            .collect()
    })
}

fn wait_exit(h: &mut Harness, id: u64) {
    h.wait(
        "the killed worker's exit",
        Duration::from_secs(10),
        |_, ev| matches!(ev, Event::Exit { worker, .. } if *worker == id).then_some(()),
    );
}

fn wait_listening(h: &mut Harness, id: u64) {
    h.wait(
        "the new worker listening",
        Duration::from_secs(10),
        |_, ev| matches!(ev, Event::Listening { worker, .. } if *worker == id).then_some(()),
    );
}

#[test]
fn a_client_address_sticks_to_one_worker_and_addresses_spread() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::Sticky);
    let port = h.start_listening(4);
    let clients = 8u32;
    let per_client = 50usize;
    let seen = with_client(&mut h, move || {
        let mut seen: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
        // Interleaved, so each client's connections meet the others' in the primary.
        for _ in 0..per_client {
            for c in 0..clients {
                let a = request_from(client(c), port, b"").unwrap();
                seen.entry(c).or_default().insert(worker_of(&a));
            }
        }
        seen
    });
    for (c, workers) in &seen {
        assert_eq!(
            workers.len(),
            1,
            "client {} reached {workers:?}",
            client(*c)
        );
    }
    let used: BTreeSet<u64> = seen.values().flatten().copied().collect();
    assert!(
        used.len() >= 3,
        "8 clients over 4 workers used only {used:?}"
    );
}

#[test]
fn a_crash_moves_only_its_clients_and_the_replacement_gets_them_back() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::Sticky);
    let port = h.start_listening(4);
    let n = 64;
    let before = assignment(&mut h, port, n);
    let victim = before[0];
    h.p.kill(victim, libc::SIGKILL).unwrap();
    wait_exit(&mut h, victim);
    let during = assignment(&mut h, port, n);
    let mut moved = 0;
    for (b, d) in before.iter().zip(&during) {
        if *b == victim {
            assert_ne!(*d, victim);
            moved += 1;
        } else {
            assert_eq!(b, d, "a client of a live worker moved");
        }
    }
    eprintln!(
        "sticky crash: {moved} of {n} clients moved ({:.2}; 4 workers, expected ~1/4)",
        moved as f64 / n as f64
    );
    // The replacement (no supervisor: it takes the first free slot, the crashed one's).
    let new = h.p.spawn_worker(&[]).unwrap();
    wait_listening(&mut h, new);
    let after = assignment(&mut h, port, n);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(if *b == victim { new } else { *b }, *a);
    }
}

#[test]
fn a_fifth_worker_takes_about_a_fifth_of_the_clients() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::Sticky);
    let port = h.start_listening(4);
    let n = 200;
    let before = assignment(&mut h, port, n);
    let new = h.p.spawn_worker(&[]).unwrap();
    wait_listening(&mut h, new);
    let after = assignment(&mut h, port, n);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert!(
        before.iter().zip(&after).all(|(b, a)| b == a || *a == new),
        "a client moved between old workers"
    );
    let share = moved as f64 / n as f64;
    eprintln!("sticky scale 4->5: {moved} of {n} clients moved ({share:.3}; expected ~0.2)");
    assert!((0.10..0.30).contains(&share), "moved {share}");
}

#[test]
fn a_key_from_the_request_routes_clients_whatever_their_address() {
    use corral_core::policy::http_key::KeySource;
    let mut h = harness_with(&["serve", "127.0.0.1:0"], Policy::Sticky, |o| {
        o.routing.key = Some(KeySource::Query("sid".into()));
    });
    let port = h.start_listening(4);
    let got = with_client(&mut h, move || {
        let mut per_sid: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
        for sid in 0..6u32 {
            // The same session from 10 addresses (a client changing address, or behind NAT).
            for c in 0..10 {
                let req = format!("GET /socket.io/?EIO=4&sid=s{sid} HTTP/1.1\r\nHost: x\r\n\r\n");
                // The fixture answers after one line: the request line.
                let s = connect_from(client(c), port).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                std::io::Write::write_all(&mut &s, req.as_bytes()).unwrap();
                let a = read_answer(&s).unwrap();
                per_sid.entry(sid).or_default().insert(worker_of(&a));
            }
        }
        per_sid
    });
    for (sid, w) in &got {
        assert_eq!(w.len(), 1, "session s{sid} reached {w:?}");
    }
    let used: BTreeSet<u64> = got.values().flatten().copied().collect();
    assert!(used.len() >= 2, "6 sessions all on {used:?}");
    let stats = h.p.routing_stats();
    assert_eq!((stats.keyed, stats.key_fallbacks), (60, 0), "{stats:?}");
}

/// A session's connections dealt to a worker that stopped reading (SIGSTOP) are read back
/// after `stall_timeout` and dealt again by their key (the request was only peeked at, so it
/// is still there to read), not by the address each came from: all of them reach the same
/// other worker.
#[test]
fn connections_read_back_from_a_stalled_worker_keep_their_key() {
    use corral_core::policy::http_key::KeySource;
    let mut h = harness_with(&["serve", "127.0.0.1:0"], Policy::Sticky, |o| {
        o.routing.key = Some(KeySource::Query("sid".into()));
        o.stall_timeout = Some(Duration::from_millis(100));
    });
    let port = h.start_listening(4);
    let ask = move |c: u32| {
        let s = connect_from(client(c), port)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        std::io::Write::write_all(&mut &s, b"GET /?sid=kept HTTP/1.1\r\nHost: x\r\n\r\n")?;
        read_answer(&s)
    };
    let home = with_client(&mut h, move || worker_of(&ask(0).unwrap()));
    h.p.kill(home, libc::SIGSTOP).unwrap();
    // The same session from 8 addresses at once: each is dealt to the stopped worker by its key.
    let got = with_client(&mut h, move || {
        (1..=8u32)
            .map(|c| std::thread::spawn(move || ask(c)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| worker_of(&t.join().unwrap().unwrap()))
            .collect::<BTreeSet<u64>>()
    });
    h.p.kill(home, libc::SIGCONT).unwrap();
    assert!(
        h.p.worker(home).unwrap().handed_off >= 2,
        "the session's connections were dealt to the stopped worker {home} first"
    );
    assert_eq!(
        got.len(),
        1,
        "the session went to {got:?} once {home} stopped"
    );
    assert!(!got.contains(&home), "{got:?}");
}

#[test]
fn without_the_key_the_address_routes_and_nothing_waits_for_the_timeout() {
    use corral_core::policy::http_key::KeySource;
    let mut h = harness_with(&["serve", "127.0.0.1:0"], Policy::Sticky, |o| {
        o.routing.key = Some(KeySource::Cookie("io".into()));
    });
    let port = h.start_listening(3);
    let t0 = std::time::Instant::now();
    let got = with_client(&mut h, move || {
        (0..20)
            .map(|i| {
                let s = connect_from(client(i % 2), port).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                // A complete header block without the cookie: routed at once, by address.
                std::io::Write::write_all(&mut &s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                (i % 2, worker_of(&read_answer(&s).unwrap()))
            })
            .collect::<Vec<_>>()
    });
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "routing waited for the peek timeout: {:?}",
        t0.elapsed()
    );
    for c in 0..2 {
        let ws: BTreeSet<u64> = got.iter().filter(|g| g.0 == c).map(|g| g.1).collect();
        assert_eq!(ws.len(), 1, "client {c}: {ws:?}");
    }
    assert_eq!(h.p.routing_stats().key_fallbacks, 20);
}

/// Which supervisor slot each client reaches (one request each), with the loop running.
fn slots_of_clients(s: &mut util::supervisor::Sup, clients: u32) -> Vec<usize> {
    let port = s.port();
    let t = std::thread::spawn(move || {
        (0..clients)
            .map(|c| worker_of(&request_from(client(c), port, b"").unwrap()))
            .collect::<Vec<_>>()
    });
    s.run_until("the clients' requests", Duration::from_secs(30), |_| {
        t.is_finished()
    });
    let workers = t.join().unwrap();
    let m = s.metrics();
    workers
        .iter()
        .map(|id| {
            m.workers
                .iter()
                .find(|w| w.id == *id)
                .unwrap_or_else(|| panic!("worker {id} is not in the metrics"))
                .slot
        })
        .collect()
}

#[test]
fn a_rolling_reload_keeps_every_client_on_its_supervisor_slot() {
    use util::supervisor::*;
    let mut s = start_with(
        plan(|_| args(&["serve", "127.0.0.1:0"])),
        opts(4),
        &[],
        corral_core::PrimaryOptions {
            policy: Policy::Sticky,
            ..Default::default()
        },
    );
    s.run_until("4 listening", Duration::from_secs(10), |s| {
        s.listening() == 4
    });
    let n = 60;
    let before = slots_of_clients(&mut s, n);
    let old: BTreeSet<u64> = s.metrics().workers.iter().map(|w| w.id).collect();
    s.c.with_supervisor(|sv, p| sv.reload(p)).unwrap();
    s.run_until("the reload report", Duration::from_secs(30), |s| {
        s.count(|e| matches!(e, corral_core::SupervisorEvent::Reload(_))) > 0
    });
    s.run_until("4 listening", Duration::from_secs(10), |s| {
        s.listening() == 4
    });
    let after = slots_of_clients(&mut s, n);
    let new: BTreeSet<u64> = s.metrics().workers.iter().map(|w| w.id).collect();
    assert!(
        old.is_disjoint(&new),
        "every worker was replaced: {old:?} {new:?}"
    );
    // Each replacement took its predecessor's slot, so each client is back on the same slot.
    assert_eq!(before, after);
    let used: BTreeSet<usize> = before.iter().copied().collect();
    assert!(used.len() >= 3, "60 clients on slots {used:?}");
}

/// A burst of keyed connections, all queued with their requests when the primary next looks, is
/// dealt by one flat accept loop. Each one's key is there at accept, so it is dealt at once;
/// that used to go through the parked path, which pumped the listener again from inside the
/// accept loop: one nesting per connection of the burst (and a `getsockopt(TCP_INFO)` each),
/// so 500 queued connections overflowed this 256 KiB stack.
#[test]
fn a_burst_of_keyed_connections_is_dealt_without_nesting_an_accept_loop_per_connection() {
    use corral_core::policy::http_key::KeySource;
    const BURST: u32 = 500; // under the fixture's backlog of 511
    let run = || {
        let mut h = harness_with(&["serve", "127.0.0.1:0"], Policy::Sticky, |o| {
            o.routing.key = Some(KeySource::Query("sid".into()));
            // Room for the whole burst, so nothing waits for a worker's acknowledgement.
            o.window = 2 * BURST;
        });
        let port = h.start_listening(2);
        // Nobody dispatches while these connect and send: they wait in the accept queue.
        let conns: Vec<std::net::TcpStream> = (0..BURST)
            .map(|i| {
                let s = connect_from(client(i % 8), port).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let req = format!("GET /?sid=s{i} HTTP/1.1\r\nHost: x\r\n\r\n");
                std::io::Write::write_all(&mut &s, req.as_bytes()).unwrap();
                s
            })
            .collect();
        let workers = with_client(&mut h, move || {
            conns
                .iter()
                .map(|s| worker_of(&read_answer(s).unwrap()))
                .collect::<BTreeSet<u64>>()
        });
        assert_eq!(workers.len(), 2, "500 sessions all on {workers:?}");
        let stats = h.p.routing_stats();
        assert_eq!(
            (stats.keyed, stats.key_fallbacks),
            (u64::from(BURST), 0),
            "{stats:?}"
        );
    };
    let t = std::thread::Builder::new()
        .name("small-stack primary".into())
        .stack_size(256 * 1024)
        .spawn(run)
        .unwrap();
    t.join().expect("the primary's thread failed");
}
