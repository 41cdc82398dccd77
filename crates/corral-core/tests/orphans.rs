//! A SIGKILLed primary leaves no orphans: every worker is gone within a second.

mod util;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};
use util::FixturePrimary;

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; its state letter is Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn workers_die_with_a_sigkilled_primary() {
    let mut guard = FixturePrimary::start(3);
    let mut out = BufReader::new(guard.0.stdout.take().unwrap());
    let mut pids = Vec::new();
    while pids.len() < 3 {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the primary ended early"
        );
        if let Some(pid) = line.trim().strip_prefix("pid ") {
            pids.push(pid.parse::<i32>().unwrap());
        }
    }
    assert!(pids.iter().all(|&p| alive(p)));
    guard.0.kill().unwrap(); // SIGKILL
    guard.0.wait().unwrap();
    let t0 = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "workers outlived the primary by 1 s: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
