//! A worker asking for thousands of listeners: refused past `max_listeners_per_worker`, the
//! other workers keep being served at a low fd limit, and once the hostile worker is killed its
//! listeners close after `orphan_listener_grace` (the primary gives its fds back). The primary
//! runs in a child process so its fd limit can be lowered with prlimit(2).

mod util;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use util::*;

/// Requests `n` answers at once, each with a deadline; returns how many were served.
fn served(port: u16, n: usize) -> usize {
    let clients: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<String> {
                let s = TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                (&s).write_all(b"hello\n")?;
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line)?;
                Ok(line)
            })
        })
        .collect();
    clients
        .into_iter()
        .map(|c| c.join())
        .filter(|r| {
            let ok = matches!(r, Ok(Ok(l)) if l.starts_with("worker 1 "));
            if !ok {
                eprintln!("request not served: {r:?}");
            }
            ok
        })
        .count()
}

#[test]
fn a_listen_flood_is_refused_past_the_limit_and_its_listeners_close_after_the_grace() {
    let grace = Duration::from_millis(1500);
    let mut cmd = std::process::Command::new(FIXTURE);
    cmd.arg("primary-cmd").env(
        "CORRAL_FIXTURE_ORPHAN_GRACE_MS",
        grace.as_millis().to_string(),
    );
    let mut p = CmdPrimary::start(cmd);
    let pid = p.pid();
    p.send("spawn serve 127.0.0.1:0");
    let port: u16 = p
        .expect_of("listening", 1, Duration::from_secs(10))
        .parse()
        .unwrap();
    assert_eq!(served(port, 1), 1, "the normal worker serves");
    let baseline = settled_fds(pid);
    // The default limit (64 listeners) fits in 100 free fds, 2000 listeners do not.
    allow_more_fds(pid, &baseline, 100);

    p.send("spawn flood 2000 127.0.0.2:0");
    let hostile_pid: i32 = p
        .expect_of("online", 2, Duration::from_secs(10))
        .parse()
        .unwrap();
    let report = p.expect_of("message", 2, Duration::from_secs(30));

    // The primary keeps serving the normal worker's listener, at the same low limit.
    let ok = served(port, 8);
    assert_eq!(
        ok,
        8,
        "requests served during the flood ({report}); primary said {:?}; fds {:?}",
        p.drain(),
        open_fds(pid)
    );
    assert!(
        report.starts_with("flood ok=64 err=1936 first=errno 22: "),
        "{report}"
    );
    assert!(
        report.contains("worker 2 holds 64 listeners (max_listeners_per_worker is 64)"),
        "{report}"
    );

    // SIGKILL: its listeners stay open for the grace (a replacement could take them over)...
    // SAFETY: kill(2) on the hostile worker, a child of our child, by pid.
    assert_eq!(unsafe { libc::kill(hostile_pid, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    p.expect_of("exit", 2, Duration::from_secs(10));
    let held = open_fds(pid).len();
    if killed.elapsed() < grace / 2 {
        assert_eq!(
            held,
            baseline.len() + 64,
            "open fds right after the exit: the 64 listeners wait for the grace"
        );
    }
    // ... and then close: the primary is back at its baseline.
    let deadline = Instant::now() + grace + Duration::from_secs(10);
    loop {
        let now = open_fds(pid);
        if now == baseline {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the primary still has {} fds {:?} {:?} after the grace ({} before the flood: {:?})",
            now.len(),
            killed.elapsed(),
            now,
            baseline.len(),
            baseline
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let closed_after = killed.elapsed();
    assert!(
        closed_after >= grace,
        "listeners closed after {closed_after:?}, before the grace"
    );
    assert_eq!(served(port, 8), 8, "still serving after the orphans closed");
    let errors: Vec<String> = p
        .drain()
        .into_iter()
        .filter(|l| l.starts_with("error "))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn emfile_on_bind_closes_orphaned_listeners_first() {
    // The default grace (60 s): the first flood's listeners are still waiting for a
    // replacement when the second flood runs out of fds.
    let mut cmd = std::process::Command::new(FIXTURE);
    cmd.arg("primary-cmd");
    let mut p = CmdPrimary::start(cmd);
    let pid = p.pid();
    let baseline = open_fds(pid);
    allow_more_fds(pid, &baseline, 100);

    p.send("spawn flood 64 127.0.0.2:0");
    let first_pid: i32 = p
        .expect_of("online", 1, Duration::from_secs(10))
        .parse()
        .unwrap();
    let report = p.expect_of("message", 1, Duration::from_secs(30));
    assert_eq!(report, "flood ok=64 err=0 first=");
    // SAFETY: kill(2) on our child's worker, by pid.
    assert_eq!(unsafe { libc::kill(first_pid, libc::SIGKILL) }, 0);
    p.expect_of("exit", 1, Duration::from_secs(10));
    assert_eq!(
        open_fds(pid).len(),
        baseline.len() + 64,
        "64 orphaned listeners"
    );

    // 100 - 64 fds left: the second flood runs out of fds after about 30 listeners, the
    // orphans close, and it gets its full 64.
    p.send("spawn flood 100 127.0.0.3:0");
    let second_pid: i32 = p
        .expect_of("online", 2, Duration::from_secs(10))
        .parse()
        .unwrap();
    let report = p.expect_of("message", 2, Duration::from_secs(30));
    // The flood worker sleeps until killed and never reads its channel, so it would outlive the
    // primary where nothing kills it with its parent (the portable backend has no
    // PR_SET_PDEATHSIG): end it here, by pid, and see its exit before checking the report.
    // SAFETY: kill(2) on our child's worker, by pid.
    assert_eq!(unsafe { libc::kill(second_pid, libc::SIGKILL) }, 0);
    p.expect_of("exit", 2, Duration::from_secs(10));
    assert!(
        report.starts_with("flood ok=64 err=36 first=errno 22: ")
            && report.contains("max_listeners_per_worker"),
        "{report}"
    );
}

/// Lowers `pid`'s fd limit so that exactly `more` fds can still be opened: new fds take the
/// lowest free numbers, so the limit is the number past the `more`-th free one.
/// The primary's open fds once they stop changing (two reads 50 ms apart agree; at most 2 s).
/// Right after an answer the count may still hold the connection: the primary closes its copy
/// just after handing it over, and the worker can answer before that.
fn settled_fds(pid: i32) -> std::collections::BTreeMap<u64, String> {
    let mut last = open_fds(pid);
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50));
        let now = open_fds(pid);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

fn allow_more_fds(pid: i32, open: &std::collections::BTreeMap<u64, String>, more: u32) {
    let (mut free, mut limit) = (0, 0u64);
    while free < more {
        if !open.contains_key(&limit) {
            free += 1;
        }
        limit += 1;
    }
    set_nofile(pid, limit);
}
