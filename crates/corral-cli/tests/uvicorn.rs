//! uvicorn (from PyPI, in a virtualenv made by tests/programs/python-venv.sh) with `--fd 3`
//! under corral: requests spread over the workers, `corral reload` under load fails no
//! request, SIGTERM drains in-flight requests and corral exits 0.

mod util;
use std::time::{Duration, Instant};
use util::*;

fn start(py: &str, workers: &str, extra: &[&str], env: &[(&str, &str)], log: &str) -> Corral {
    let app_dir = programs_dir();
    let mut args = vec!["run", "--workers", workers, "--listen", "127.0.0.1:0"];
    args.extend(extra);
    args.extend([
        "--",
        py,
        "-m",
        "uvicorn",
        "asgi_app:app",
        "--fd",
        "3",
        "--app-dir",
        &app_dir,
        "--log-level",
        log,
    ]);
    Corral::start(&args, env)
}

/// Three `corral reload`s of 2 uvicorn workers under 4 clients (20 ms requests), `policy`
/// as given; checks the workers were replaced. Returns (ok, failures).
fn reload_under_load(py: &str, policy: &str) -> (u64, Vec<String>) {
    let c = start(
        py,
        "2",
        &[
            "--policy",
            policy,
            "--ready-delay",
            "1s",
            "--reload-probation",
            "300ms",
        ],
        &[("APP_DELAY_MS", "20")],
        "warning",
    );
    let port = c.port();
    c.assert_kernel_rr();
    let before = c.wait_ready(2, Duration::from_secs(30));
    // Which worker accepts is the kernel's choice under `shared` (all wait on the one
    // socket): up to 100 rounds of 4 requests at once until both have answered. One at a
    // time, the worker that just answered could win them all (a fresh-clone CI saw 200 of
    // 200 go to one worker): with connections waiting together, the other one's wake-up
    // finds one too.
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..100 {
        std::thread::scope(|s| {
            let asks: Vec<_> = (0..4)
                .map(|_| s.spawn(|| get(port, Duration::from_secs(10)).expect("request")))
                .collect();
            for a in asks {
                served.insert(pid_of(&a.join().expect("client thread")));
            }
        });
        if served.len() == 2 {
            break;
        }
    }
    assert_eq!(
        served.len(),
        2,
        "requests reached both workers: {served:?} of {before:?}"
    );
    let load = Load::start(port, 4);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    for n in 1..=3 {
        let (code, _, err) = c.ctl("reload", &[]);
        assert_eq!(code, 0, "{err}");
        wait_for(&format!("reload {n} done"), Duration::from_secs(60), || {
            (c.count_lines("corral: reload") == n).then_some(())
        });
    }
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, errors) = load.finish();
    eprintln!(
        "{policy}: 3 corral reloads of 2 uvicorn workers under 4 clients (20 ms requests): \
         {ok} ok, {} failed, {took:?}",
        errors.len()
    );
    assert_eq!(
        c.count_lines("reload done: 2 workers replaced"),
        3,
        "{}",
        c.stderr()
    );
    assert!(
        errors.iter().all(|e| e == UNANSWERED),
        "first failures: {:?}\n{}",
        &errors[..errors.len().min(5)],
        c.stderr()
    );
    assert!(ok >= 5, "the load loop ran ({ok} requests)");
    let after = c.wait_ready(2, Duration::from_secs(30));
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    (ok, errors)
}

#[test]
fn uvicorn_workers_share_fd_3_reload_under_load_and_drain_on_sigterm() {
    let py = venv_python();
    // Spread and reload, shared socket. uvicorn's graceful shutdown closes connections it
    // has accepted but not yet read a request from (its rule for idle keep-alive
    // connections), and on a shared socket a worker keeps accepting until its SIGTERM: a
    // client that connected in that instant sees its connection closed (FIN, or RST when its
    // request was unread) before any answer, never cut mid-answer or an error status
    // (checked in reload_under_load). corral cannot stop one worker of a shared socket from
    // accepting, so these stay counted and bounded (1%), not 0: kernel-rr below is the
    // policy that fails none.
    let (ok, errors) = reload_under_load(&py, "shared");
    assert!(
        errors.len() as u64 * 100 <= ok,
        "{} of {ok} requests closed before any answer (more than 1%)",
        errors.len()
    );
    // kernel-rr: the leaving worker's slot is cleared, it reads what it accepted during
    // --stop-delay (250 ms), then gets SIGTERM: no request fails.
    let (ok, errors) = reload_under_load(&py, "kernel-rr");
    assert!(
        errors.is_empty(),
        "kernel-rr: {} of {} requests failed during the reloads: {:?}",
        errors.len(),
        ok + errors.len() as u64,
        &errors[..errors.len().min(5)]
    );

    // Drain.
    let mut c = start(
        &py,
        "2",
        &["--ready-delay", "1s", "--shutdown-timeout", "10s"],
        &[("APP_DELAY_MS", "700")],
        "info",
    );
    let port = c.port();
    c.wait_ready(2, Duration::from_secs(30));
    // Alive for --ready-delay is not serving yet on a busy machine: uvicorn says when it is
    // (its stderr is corral's), and its SIGTERM handler is set by then.
    let end = Instant::now() + Duration::from_secs(30);
    while c.count_lines("Uvicorn running on socket") < 2 {
        assert!(
            Instant::now() < end,
            "both uvicorn workers did not say they serve within 30 s:\n{}",
            c.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = c.sigterm_in_flight(port, 4, Duration::from_secs(20));
    eprintln!("SIGTERM to corral's exit, 4 in-flight 700 ms uvicorn requests: {took:?}");
}

/// `corral status` counts connections from the kernel over the process tree of the pid it
/// started: uvicorn `--workers 2` forks, its children hold the connections, and the one
/// row corral has (uvicorn's parent) shows them.
#[test]
fn status_counts_the_keep_alive_connections_of_uvicorns_own_children() {
    let py = venv_python();
    let app_dir = programs_dir();
    let c = Corral::run(
        "--workers 1 --listen 127.0.0.1:0 --ready-delay 500ms",
        &[
            &py,
            "-m",
            "uvicorn",
            "asgi_app:app",
            "--fd",
            "3",
            "--workers",
            "2",
            "--timeout-keep-alive",
            "60",
            "--app-dir",
            &app_dir,
            "--log-level",
            "warning",
        ],
        &[("APP_KEEPALIVE", "1")],
    );
    let port = c.port();
    let parent = c.wait_ready(1, Duration::from_secs(30))[0];
    // The children answer once they have imported the app: the first answer may take a while.
    let mut held = Vec::new();
    let mut answered_by = std::collections::BTreeSet::new();
    for _ in 0..3 {
        // The backlog takes the connection at once; the answer waits for a child.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        answered_by.insert(pid_of(&keepalive_request(&mut s)));
        held.push(s);
    }
    assert!(
        !answered_by.contains(&parent),
        "uvicorn's children serve, not its parent {parent}: {answered_by:?}"
    );
    let st = wait_for(
        "status to show uvicorn's 3 keep-alive connections on its row",
        Duration::from_secs(10),
        || {
            let st = c.status();
            (st["workers"][0]["connections"] == 3).then_some(st)
        },
    );
    assert_eq!(st["workers"][0]["pid"], parent, "{st}");
    drop(held);
    wait_for(
        "the count back at 0 after the clients closed",
        Duration::from_secs(10),
        || (c.status()["workers"][0]["connections"] == 0).then_some(()),
    );
    let mut c = c;
    c.stop(Duration::from_secs(20));
}

/// The processes whose parent is `pid` (from /proc).
fn children_of(pid: i64) -> Vec<i64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|st| {
                st.rfind(')')
                    .and_then(|i| st[i + 1..].split_whitespace().nth(1))
                    .and_then(|pp| pp.parse::<i64>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Alive and not a zombie.
fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
        st.rfind(')')
            .and_then(|i| st[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// Kills, on drop, the listed processes this test saw uvicorn start that are still alive
/// (the test fails if corral left them; they must not outlive it).
struct Orphans(Vec<i64>);

impl Drop for Orphans {
    fn drop(&mut self) {
        for &p in &self.0 {
            if alive(p) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .status();
            }
        }
    }
}

/// A uvicorn master killed outright (the OOM killer's way) cannot stop its children; they
/// would go on accepting on the inherited socket next to the replacement, unseen. corral
/// kills what is left in the dead worker's process group, then restarts the worker.
#[test]
fn a_killed_uvicorn_master_does_not_leave_its_children_serving() {
    let py = venv_python();
    let app_dir = programs_dir();
    let c = Corral::run(
        "--workers 1 --listen 127.0.0.1:0 --ready-delay 500ms --restart-initial-delay 100ms",
        &[
            &py,
            "-m",
            "uvicorn",
            "asgi_app:app",
            "--fd",
            "3",
            "--workers",
            "2",
            "--app-dir",
            &app_dir,
            "--log-level",
            "warning",
        ],
        &[],
    );
    let port = c.port();
    let master = c.wait_ready(1, Duration::from_secs(30))[0];
    let body = get(port, Duration::from_secs(30)).expect("uvicorn answers");
    let kids = children_of(master);
    let guard = Orphans(kids.clone());
    assert!(
        kids.contains(&pid_of(&body)) && kids.len() >= 2,
        "uvicorn {master} serves from its children {kids:?}: {body}"
    );
    kill("KILL", &master.to_string());
    wait_for(
        &format!("uvicorn's orphaned children {kids:?} to be gone"),
        Duration::from_secs(10),
        || kids.iter().all(|&k| !alive(k)).then_some(()),
    );
    c.wait_line(
        &format!("(pid {master}) left processes in its group behind: killed them"),
        Duration::from_secs(5),
    );
    let next = c.wait_ready(1, Duration::from_secs(30))[0];
    assert_ne!(next, master);
    let body = get(port, Duration::from_secs(30)).expect("the replacement answers");
    assert!(
        children_of(next).contains(&pid_of(&body)),
        "answered by the new master's children: {body}"
    );
    drop(guard);
    let mut c = c;
    c.stop(Duration::from_secs(20));
}
