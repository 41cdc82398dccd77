//! The primary leaks no fd over 10k connections (alone in its test binary: fd counts of
//! concurrent tests would blur the figure).

mod util;
use corral_core::Policy;
use util::*;

#[test]
fn no_fd_leaked_by_the_primary_after_10k_connections() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    let port = h.start_listening(2);
    with_client(&mut h, move || request(port).unwrap()); // warm-up: lazily created fds exist now
    h.pump_for(std::time::Duration::from_millis(50));
    let before = corral_core::__testing::fd_count().unwrap();
    let n = 10_000;
    let failures = with_client(&mut h, move || {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || (0..n / 4).filter(|_| request(port).is_err()).count())
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum::<usize>()
    });
    h.pump_for(std::time::Duration::from_millis(100));
    let after = corral_core::__testing::fd_count().unwrap();
    assert_eq!(failures, 0);
    assert_eq!(
        before, after,
        "fd count before {before}, after {after} connections"
    );
    // Each connection dealt once, plus once more for any read back from a worker whose loop
    // the machine's load held for the stall time (25 ms).
    let (handed, taken_back): (u64, u64) = h.p.worker_ids().iter().fold((0, 0), |(h0, t0), &id| {
        let w = h.p.worker(id).unwrap();
        (h0 + w.handed_off, t0 + w.taken_back)
    });
    assert_eq!(
        handed - taken_back,
        n as u64 + 1,
        "taken back: {taken_back}"
    );
}
