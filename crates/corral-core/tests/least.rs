//! `least`: a worker slow to serve holds its connections longer and is dealt fewer new ones,
//! where round-robin gives it its 1/N regardless.

mod util;
use corral_core::policy::least::Pick;
use corral_core::Policy;
use std::collections::BTreeMap;
use std::time::Duration;
use util::*;

/// 3 workers, the first one taking 40 ms per request; 6 clients, 30 requests each. Returns
/// the slow worker's share and the requests per worker.
fn slow_worker_share(policy: Policy) -> (f64, BTreeMap<u64, usize>) {
    let mut h = harness(&["serve", "127.0.0.1:0"], policy);
    let slow =
        h.p.spawn_worker(&[("CORRAL_FIXTURE_SERVE_MS".into(), "40".into())])
            .unwrap();
    for _ in 0..2 {
        h.p.spawn_worker(&[]).unwrap();
    }
    let mut port = 0;
    let mut listening = 0;
    h.wait("3 listening", Duration::from_secs(10), |_, ev| {
        if let corral_core::Event::Listening { addr, .. } = ev {
            port = addr.port();
            listening += 1;
        }
        (listening == 3).then_some(())
    });
    let answers = with_client(&mut h, move || {
        let clients: Vec<_> = (0..6)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..30)
                        .map(|_| worker_of(&request(port).unwrap()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut per: BTreeMap<u64, usize> = BTreeMap::new();
    for w in &answers {
        *per.entry(*w).or_default() += 1;
    }
    let share = per.get(&slow).copied().unwrap_or(0) as f64 / answers.len() as f64;
    (share, per)
}

#[test]
fn a_slow_worker_gets_fewer_connections_under_least() {
    let (rr, rr_per) = slow_worker_share(Policy::RoundRobin);
    let (least, least_per) = slow_worker_share(Policy::Least(Pick::Least));
    eprintln!("slow worker's share: rr {rr:.3} {rr_per:?}, least {least:.3} {least_per:?}");
    assert!(
        rr > 0.3,
        "round-robin gives the slow worker its third: {rr_per:?}"
    );
    assert!(
        least < 0.15,
        "least still gave the slow worker {least:.3}: {least_per:?}"
    );
}

#[test]
fn least_p2c_serves_and_spreads_over_equal_workers() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::Least(Pick::TwoChoices));
    let port = h.start_listening(4);
    let answers = with_client(&mut h, move || {
        (0..200)
            .map(|_| worker_of(&request(port).unwrap()))
            .collect::<Vec<_>>()
    });
    let mut per: BTreeMap<u64, usize> = BTreeMap::new();
    for w in answers {
        *per.entry(w).or_default() += 1;
    }
    assert_eq!(per.len(), 4, "every worker served: {per:?}");
    assert!(per.values().all(|&n| n >= 20), "{per:?}");
}

/// How long after a stopped worker was dealt a connection the primary saw it stalled (took it
/// out of the dealing and gave what it had not read to the other worker).
fn time_to_stall(policy: Policy) -> Duration {
    let mut h = harness(&["serve", "127.0.0.1:0"], policy);
    let port = h.start_listening(2);
    let victim = h.p.worker_ids()[0];
    stop_worker(&mut h, victim);
    // Two clients at once: one is dealt to each worker (rr's turn; least's counts tie, then
    // the stopped worker holds one more).
    let clients: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || request(port)))
        .collect();
    h.wait_until(
        "a connection dealt to the stopped worker",
        Duration::from_secs(10),
        |p| p.worker(victim).unwrap().handed_off >= 1,
    );
    let dealt = std::time::Instant::now();
    h.wait_until(
        "the stopped worker seen stalled",
        Duration::from_secs(10),
        |p| p.worker(victim).unwrap().stalled,
    );
    let took = dealt.elapsed();
    for c in clients {
        let answer = c
            .join()
            .unwrap()
            .expect("every client is answered by the other worker");
        assert_ne!(worker_of(&answer), victim);
    }
    h.p.kill(victim, libc::SIGCONT).unwrap();
    took
}

/// Under `least` a worker that stops reading (a blocked event loop) is busy after 25 ms
/// (LEAST_STALL_TIMEOUT), not rr's 250: new clients do not wait for it.
#[test]
fn least_takes_back_what_a_blocked_worker_has_not_read_within_25_ms() {
    let least = time_to_stall(Policy::Least(Pick::Least));
    let rr = time_to_stall(Policy::RoundRobin);
    eprintln!("stalled after: least {least:?}, rr {rr:?}");
    assert!(
        rr >= Duration::from_millis(240),
        "rr's stall timeout is 250 ms: {rr:?}"
    );
    // 25 ms plus the check's 6 ms tick; generous for a loaded machine.
    assert!(least < Duration::from_millis(150), "least: {least:?}");
}
