//! `least`: a worker slow to serve holds its connections longer and is dealt fewer new ones,
//! where round-robin gives it its 1/N regardless.

mod util;
use corral_core::policy::least::Pick;
use corral_core::Policy;
use std::collections::BTreeMap;
use util::*;

/// 3 workers, the first one taking 40 ms per request; 6 clients, 30 requests each. Returns
/// the slow worker's share and the requests per worker. `stall_check`: off, a worker blocked
/// 40 ms is never seen busy by the stall check (25 ms), which would otherwise hand what it has
/// not read to the others under any policy.
fn slow_worker_share(policy: Policy, stall_check: bool) -> (f64, BTreeMap<u64, usize>) {
    let mut h = harness_with(&["serve", "127.0.0.1:0"], policy, |o| {
        if !stall_check {
            o.stall_timeout = None;
        }
    });
    let port = h.start_listening_with(&[&slow_serving(40), &[], &[]]);
    // Ids go in spawn order: the first is the slow one.
    let slow = h.p.worker_ids()[0];
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

/// least sees the slow worker by its open connections alone (the stall check off for both).
#[test]
fn a_slow_worker_gets_fewer_connections_under_least() {
    let (rr, rr_per) = slow_worker_share(Policy::RoundRobin, false);
    let (least, least_per) = slow_worker_share(Policy::Least(Pick::Least), false);
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

/// With the stall check on (the default), rr too gives a worker whose loop is blocked 40 ms
/// per request less than its third: what it has not read after 25 ms goes to the others, as
/// node:cluster's rr hands a worker its next connection only once it took the last.
#[test]
fn the_stall_check_keeps_rr_from_queueing_at_a_blocked_worker() {
    let (rr, rr_per) = slow_worker_share(Policy::RoundRobin, true);
    eprintln!("slow worker's share under rr with the stall check: {rr:.3} {rr_per:?}");
    assert!(rr < 0.2, "rr queued at the blocked worker: {rr_per:?}");
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
