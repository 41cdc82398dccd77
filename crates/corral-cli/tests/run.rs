//! `corral run` with a program that knows nothing of corral (tests/programs/
//! listen_fds_server.py, systemd's LISTEN_FDS only): N workers on one port, a killed worker
//! replaced, SIGTERM drains, bad input refused with the flag named.

mod util;
use std::time::Duration;
use util::*;

#[test]
fn n_workers_serve_on_one_port_each_with_its_own_listen_pid() {
    let py = server_py();
    let c = Corral::run(
        "--workers 3 --listen web=127.0.0.1:0 --reload-wait-ready",
        &[&python(), &py],
        // Every request takes 200 ms: 6 at once cannot all go to one worker.
        &[("SERVER_DELAY_MS", "200"), ("SERVER_NOTIFY", "ready")],
    );
    let port = c.port();
    let pids = c.wait_ready(3, Duration::from_secs(15));
    let clients: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || get(port, Duration::from_secs(10))))
        .collect();
    let mut served = std::collections::BTreeSet::new();
    for t in clients {
        let body = t.join().unwrap().expect("request");
        // The server asserts LISTEN_PID == its pid before it serves anything.
        served.insert(pid_of(&body));
    }
    assert!(
        served.len() >= 2 && served.iter().all(|p| pids.contains(p)),
        "6 concurrent slow requests went to workers {served:?} of {pids:?}"
    );
    let st = c.status();
    assert_eq!(st["listeners"][0]["name"], "web");
}

#[test]
fn a_killed_worker_is_replaced_and_its_slot_counts_the_restart() {
    let py = server_py();
    let c = Corral::run(
        "--workers 2 --listen 127.0.0.1:0 --ready-delay 200ms",
        &[&python(), &py],
        &[],
    );
    let port = c.port();
    let before = c.wait_ready(2, Duration::from_secs(15));
    let victim = before[0];
    kill("KILL", &victim.to_string());
    let after = wait_for("a replacement worker", Duration::from_secs(15), || {
        let pids = c.wait_ready(2, Duration::from_secs(15));
        (!pids.contains(&victim)).then_some(pids)
    });
    assert!(after.contains(&before[1]), "the other worker kept running");
    let st = c.status();
    assert_eq!(st["restarts_by_cause"]["crash"], 1, "{st}");
    for _ in 0..4 {
        let body = get(port, Duration::from_secs(5)).expect("served after the restart");
        assert!(after.contains(&pid_of(&body)));
    }
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let py = server_py();
    let mut c = Corral::run(
        "--workers 2 --listen 127.0.0.1:0 --ready-delay 200ms --shutdown-timeout 10s \
         --reload-wait-ready",
        &[&python(), &py],
        &[("SERVER_DELAY_MS", "700"), ("SERVER_NOTIFY", "ready")],
    );
    let port = c.port();
    c.wait_ready(2, Duration::from_secs(15));
    let took = c.sigterm_in_flight(port, 2, Duration::from_secs(15));
    eprintln!("SIGTERM to exit with 2 in-flight 700 ms requests: {took:?}");
    assert!(c.stderr().contains("clean shutdown"));
    assert!(
        get(port, Duration::from_secs(2)).is_err(),
        "nothing listens after the exit"
    );
}

#[test]
fn a_worker_that_ignores_sigterm_is_killed_at_the_deadline_and_the_exit_status_says_so() {
    let mut c = Corral::run(
        "--workers 1 --ready-delay 100ms --shutdown-timeout 300ms",
        &["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"],
        &[],
    );
    c.wait_ready(1, Duration::from_secs(10));
    c.signal("TERM");
    c.assert_exit(1, Duration::from_secs(10));
    assert!(c.stderr().contains("killed"), "{}", c.stderr());
}

#[test]
fn bad_input_is_refused_with_the_flag_named_and_exit_status_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--policy", "rr", "--", "true"], "--policy rr"),
        (
            &["run", "--policy", "kernel-least", "--", "true"],
            "--policy kernel-least: least-loaded dealing counts",
        ),
        (
            &["run", "--policy", "bogus", "--", "true"],
            "unknown policy",
        ),
        (&["run", "--workers", "0", "--", "true"], "--workers \"0\""),
        (
            &["run", "--listen", "127.0.0.1", "--", "true"],
            "--listen \"127.0.0.1\"",
        ),
        (
            &["run", "--restart-factor", "0.5", "--", "true"],
            "restart.factor",
        ),
        (
            &["run", "--ready-delay", "5h", "--", "true"],
            "--ready-delay",
        ),
        (&["run", "--workers", "1"], "no program to run"),
    ];
    for (args, needle) in cases {
        // Under a guard: an input taken by mistake would start a cluster that runs on.
        let mut c = Corral::start_in(TempDir::new("badcase"), CORRAL, args, &[]);
        let code = c.wait_exit(Duration::from_secs(10));
        let err = c.stderr();
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
    }
    let dir = TempDir::new("noprog");
    let out = std::process::Command::new(CORRAL)
        .args(["run", "--workers", "1", "--", "no-such-program-corral"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no-such-program-corral: not found"), "{err}");
}

/// WATCHDOG_USEC and WATCHDOG_PID (its own pid) tell the worker to ping; three WATCHDOG=1 and
/// then silence: the engine's hang watchdog kills it and its slot restarts with cause hang.
#[test]
fn a_worker_that_stops_sending_watchdog_1_is_killed_and_replaced_as_hung() {
    const PINGS: &str = r#"
import os, socket, sys, time
assert os.environ["WATCHDOG_PID"] == str(os.getpid()), "WATCHDOG_PID is not my pid"
assert os.environ["WATCHDOG_USEC"] == "400000", os.environ["WATCHDOG_USEC"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
for _ in range(3):
    s.sendto(b"WATCHDOG=1", os.environ["NOTIFY_SOCKET"])
    time.sleep(0.1)
time.sleep(60)
"#;
    let c = Corral::run(
        "--workers 1 --heartbeat-timeout 400ms --restart-jitter 0",
        &[&python(), "-c", PINGS],
        &[],
    );
    c.wait_line("worker 1 ready (READY=1)", Duration::from_secs(15));
    c.wait_line("slot 0: worker 1 hung", Duration::from_secs(15));
    c.wait_line("worker 2 replaces 1 (hang)", Duration::from_secs(15));
}

#[test]
fn a_config_file_gives_the_settings_flags_win_and_unknown_keys_are_named() {
    let dir = TempDir::new("config");
    let cfg = dir.path().join("corral.toml");
    std::fs::write(
        &cfg,
        format!(
            "workers = 3\nlisten = [\"cfg=127.0.0.1:0\"]\nreadyDelay = \"100ms\"\n\
             command = [{:?}, {:?}]\n[restart]\ninitialDelay = 50\ncrashLoop = {{ exits = 3 }}\n",
            python(),
            server_py()
        ),
    )
    .unwrap();
    let c = Corral::start(
        &["run", "--config", cfg.to_str().unwrap(), "--workers", "1"],
        &[],
    );
    let port = c.port();
    c.wait_ready(1, Duration::from_secs(15));
    let st = c.status();
    assert_eq!(st["wanted"], 1, "--workers beats the file: {st}");
    assert_eq!(st["listeners"][0]["name"], "cfg", "{st}");
    assert!(get(port, Duration::from_secs(5)).is_ok());
    std::fs::write(&cfg, "[restart]\ninitalDelay = 5\n").unwrap();
    let out = std::process::Command::new(CORRAL)
        .args(["run", "--config", cfg.to_str().unwrap(), "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("initalDelay") && err.contains("corral.toml"),
        "{err}"
    );
}

#[test]
fn workers_auto_is_the_engines_cgroup_aware_cpu_count() {
    let c = Corral::run("--workers auto --ready-delay 50ms", &["sleep", "60"], &[]);
    let n = corral_core::available_parallelism();
    c.wait_ready(n, Duration::from_secs(15));
    assert_eq!(c.status()["wanted"], n);
}

/// Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the workers are
/// in a group of their own, so only corral gets it and drains them with SIGTERM (the Python
/// server exits 0 on SIGTERM; on SIGINT it would die of KeyboardInterrupt).
#[test]
fn ctrl_c_to_corrals_process_group_reaches_only_corral_which_drains_the_workers() {
    let py = server_py();
    let mut c = Corral::start_with(
        TempDir::new("ctrlc"),
        CORRAL,
        &[
            "run",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--reload-wait-ready",
            "--",
            &python(),
            &py,
        ],
        &[("SERVER_NOTIFY", "ready")],
        |cmd| {
            std::os::unix::process::CommandExt::process_group(cmd, 0);
        },
    );
    c.wait_ready(2, Duration::from_secs(15));
    kill("INT", &format!("-{}", c.pid()));
    c.assert_exit(0, Duration::from_secs(15));
    assert_eq!(c.count_lines("exited with code 0"), 2, "{}", c.stderr());
}

/// Workers that exit at once can be reaped before the loop turn that started them has
/// adopted them (the first ones are started before the loop runs; with 8, most of them).
/// Each is still reported with its own pid, its exit removes its record, and
/// `--ready-delay` marks only living workers ready. Before the fix, 5 runs of 5 printed
/// "started (pid 0)" and marked dead workers ready.
#[test]
fn workers_that_exit_at_once_keep_no_record_and_only_the_living_are_marked_ready() {
    let dir = TempDir::new("exit-at-once");
    // Each slot's first worker exits at once with code 3, its replacement stays.
    let script = format!(
        "m='{}/crashed-'$CORRAL_WORKER_SLOT; if [ ! -e \"$m\" ]; then : > \"$m\"; exit 3; fi; \
         exec sleep 60",
        dir.path().display()
    );
    let c = Corral::run(
        "--workers 8 --ready-delay 500ms --restart-initial-delay 500ms --restart-jitter 0",
        &["/bin/sh", "-c", &script],
        &[],
    );
    wait_for("8 workers ready", Duration::from_secs(20), || {
        (c.count_lines(" ready (alive for") >= 8).then_some(())
    });
    let err = c.stderr();
    let st = c.status();
    let mut living: Vec<u64> = st["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_u64().unwrap())
        .collect();
    living.sort_unstable();
    let mut ready: Vec<u64> = err
        .lines()
        .filter_map(|l| l.strip_prefix("corral: worker "))
        .filter_map(|l| l.split_once(" ready (alive for"))
        .map(|(id, _)| id.parse().unwrap())
        .collect();
    ready.sort_unstable();
    assert_eq!(ready, living, "a worker marked ready is not alive: {err}");
    assert_eq!(living.len(), 8, "{st}");
    assert_eq!(c.count_lines("(pid 0)"), 0, "{err}");
    // Every exit is of a worker reported started, with the same pid.
    let exits: Vec<&str> = err
        .lines()
        .filter(|l| l.ends_with(") exited with code 3"))
        .collect();
    assert_eq!(exits.len(), 8, "{err}");
    for l in exits {
        let (id, pid) = l
            .strip_prefix("corral: worker ")
            .and_then(|r| r.strip_suffix(") exited with code 3"))
            .and_then(|r| r.split_once(" (pid "))
            .unwrap_or_else(|| panic!("exit line {l:?}"));
        let started = format!("corral: worker {id} started (pid {pid})");
        assert_eq!(c.count_lines(&started), 1, "no {started:?}: {err}");
    }
    // The restart counter: each slot restarted once, for an exit at start-up.
    assert_eq!(st["restarts_by_cause"]["boot"], 8, "{st}");
    for w in st["workers"].as_array().unwrap() {
        assert_eq!(w["restarts"], 1, "{st}");
    }
}

/// The same through a control request: `corral scale` starts workers in a turn whose next
/// dispatch can reap them before the turn's end adopts them. None is marked ready, none is
/// reported with pid 0. Before the fix, 3 runs of 3 marked dead workers ready.
#[test]
fn workers_a_scale_up_starts_that_exit_at_once_are_never_marked_ready() {
    let c = Corral::run(
        "--workers 1 --ready-delay 300ms --restart-initial-delay 10s --restart-jitter 0",
        &[
            "/bin/sh",
            "-c",
            "[ \"$CORRAL_WORKER_SLOT\" = 0 ] && exec sleep 60; exit 3",
        ],
        &[],
    );
    c.wait_line("worker 1 ready", Duration::from_secs(10));
    let (code, _, err) = c.ctl("scale", &["9"]);
    assert_eq!(code, 0, "{err}");
    wait_for("the 8 new workers to exit", Duration::from_secs(10), || {
        (c.count_lines("exited with code 3") >= 8).then_some(())
    });
    // Twice the ready delay from the last exit: a dead worker's record would be ready by now.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        c.count_lines(" ready (alive for"),
        1,
        "a dead worker marked ready: {}",
        c.stderr()
    );
    assert_eq!(c.count_lines("(pid 0)"), 0, "{}", c.stderr());
}

/// corral's stderr is its workers' too: each of its lines goes out in one write, so a worker
/// writing meanwhile cannot land inside one (eprintln! wrote a line in pieces, and a CI run
/// read "corral: reload done: " + a gunicorn line + "2 workers replaced").
#[test]
fn corral_lines_stay_whole_while_workers_write_to_the_same_stderr() {
    // Each worker writes 20,000 short lines as fast as it can, then waits to be stopped (as
    // `sleep` itself, so SIGTERM ends it).
    let flood = "i=0; while [ $i -lt 20000 ]; do echo flood >&2; i=$((i+1)); done; exec sleep 60";
    let mut c = Corral::run(
        "--workers 2 --listen 127.0.0.1:0 --ready-delay 50ms",
        &["sh", "-c", flood],
        &[],
    );
    c.wait_ready(2, Duration::from_secs(15));
    // A reload: corral writes its start, ready, exit and done lines while the new workers flood.
    c.signal("HUP");
    c.wait_line("reload done", Duration::from_secs(30));
    c.stop(Duration::from_secs(20));
    let err = c.stderr();
    let corral_lines = err.lines().filter(|l| l.starts_with("corral: ")).count();
    let floods = err.lines().filter(|l| *l == "flood").count();
    assert!(
        corral_lines >= 10,
        "corral's own lines are there: {corral_lines}"
    );
    assert!(floods > 1000, "the workers wrote meanwhile: {floods}");
    for l in err.lines() {
        assert!(
            l == "flood" || (l.starts_with("corral: ") && !l.contains("flood")),
            "a line in pieces: {l:?}"
        );
    }
}
