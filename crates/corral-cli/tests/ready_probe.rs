//! `--ready-cmd`: a worker that never sends READY=1 is ready when its probe command exits 0
//! (tests/programs/tcp_probe.py connects to a health port the worker opens itself, 1 s after
//! its start); the rolling reload waits for it; a hanging attempt is killed at
//! `--ready-cmd-timeout`; bad values are refused with the flag named.

mod util;
use std::time::{Duration, Instant};
use util::*;

fn probe_py() -> String {
    program("tcp_probe.py")
}

/// Milliseconds from "worker ID started" to "worker ID ready" as this test saw the lines.
fn started_to_ready(c: &Corral, id: u64) -> (Duration, String) {
    c.wait_line(
        &format!("corral: worker {id} started"),
        Duration::from_secs(15),
    );
    let t0 = Instant::now();
    let line = c.wait_line(
        &format!("corral: worker {id} ready"),
        Duration::from_secs(15),
    );
    (t0.elapsed(), line)
}

#[test]
fn a_worker_is_ready_only_once_its_probe_answers_and_reload_waits_for_it() {
    let probes = TempDir::new("probes");
    let cmd = format!(
        "exec {} {} {}",
        python(),
        probe_py(),
        probes.path().display()
    );
    let py = server_py();
    let dir = probes.path().to_str().unwrap().to_string();
    let c = Corral::start(
        &[
            "run",
            "--workers",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--ready-cmd",
            &cmd,
            "--reload-probation",
            "0",
            "--",
            &python(),
            &py,
        ],
        &[
            ("SERVER_READY_AFTER_MS", "1000"),
            ("SERVER_PROBE_DIR", &dir),
        ],
    );
    let port = c.port();
    let (took, line) = started_to_ready(&c, 1);
    eprintln!("worker 1: {line} after {took:?}");
    assert!(
        line.contains("--ready-cmd exited 0"),
        "ready by the probe: {line}"
    );
    // The probe failed while the port was not open yet (each attempt ~100 ms apart).
    let attempts: u32 = line
        .rsplit("attempt ")
        .next()
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no attempt count in {line:?}"));
    assert!(
        attempts >= 2,
        "the probe failed before the port opened: {line}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "ready {took:?} after start, but its probe port opens 1 s after it"
    );
    let pids = c.wait_ready(1, Duration::from_secs(5));
    assert!(get(port, Duration::from_secs(5)).is_ok());
    let log = std::fs::read_to_string(probes.path().join("probes.log")).unwrap();
    let first = log.lines().next().unwrap();
    assert_eq!(
        first,
        format!("{} 1 0", pids[0]),
        "the probe gets CORRAL_WORKER_PID, _ID, _SLOT"
    );

    // Reload: the old worker serves until the new one's probe answers, 1 s after its start.
    let t0 = Instant::now();
    let (code, _, err) = c.ctl("reload", &[]);
    assert_eq!(code, 0, "{err}");
    let done = c.wait_line("corral: reload done", Duration::from_secs(20));
    let took = t0.elapsed();
    let (_, line) = started_to_ready(&c, 2);
    assert!(line.contains("--ready-cmd exited 0"), "{line}");
    eprintln!("reload of 1 worker with a 1 s probe: {done} (seen after {took:?})");
    assert!(took >= Duration::from_millis(900), "{done} after {took:?}");
    let after = c.wait_ready(1, Duration::from_secs(5));
    assert_ne!(after, pids);
}

#[test]
fn a_hanging_probe_is_killed_at_its_timeout_and_the_reload_gives_up() {
    let marker = TempDir::new("hang");
    // A sleep no other test runs: its process is found by its argument.
    let secs = format!("37.{}", std::process::id());
    let cmd = format!(": {}; sleep {secs}", marker.path().display());
    let py = server_py();
    let c = Corral::start(
        &[
            "run",
            "--workers",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--ready-cmd",
            &cmd,
            "--ready-cmd-timeout",
            "200ms",
            "--reload-ready-timeout",
            "1500ms",
            "--",
            &python(),
            &py,
        ],
        &[],
    );
    // Never ready: the first worker stays unready, a reload fails at its ready timeout.
    c.wait_line("corral: worker 1 started", Duration::from_secs(15));
    let (code, _, err) = c.ctl("reload", &[]);
    assert_eq!(code, 0, "{err}");
    let line = c.wait_line("corral: reload stopped", Duration::from_secs(20));
    assert!(line.contains("missed its readiness deadline"), "{line}");
    assert_eq!(c.count_lines(" ready ("), 0, "{}", c.stderr());
    // Each attempt was killed after 200 ms: at most the one running now is alive.
    let sleeps = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == secs.as_bytes()))
            })
            .count()
    };
    let n = sleeps();
    assert!(n <= 1, "{n} probe attempts of `sleep {secs}` still running");
    let (code, _, err) = c.ctl("stop", &[]);
    assert_eq!(code, 0, "{err}");
    let mut c = c;
    c.wait_exit(Duration::from_secs(15));
    wait_for(
        "no probe attempt left after corral exited",
        Duration::from_secs(5),
        || (sleeps() == 0).then_some(()),
    );
}

#[test]
fn ready_cmd_errors_name_the_flag_or_key() {
    let dir = TempDir::new("probe-args");
    let cfg = dir.path().join("corral.toml");
    std::fs::write(&cfg, "readyCmd = \"true\"\nreadyCmdTimeout = \"90s\"\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--ready-cmd", " "],
            "--ready-cmd (readyCmd): empty command",
        ),
        (
            vec!["--ready-cmd", "true", "--ready-delay", "1s"],
            "--ready-delay",
        ),
        (
            vec!["--ready-cmd", "true", "--ready-cmd-timeout", "0"],
            "--ready-cmd-timeout (readyCmdTimeout) 0 ms",
        ),
        (vec!["--ready-cmd-timeout", "1s"], "without --ready-cmd"),
        (vec!["--config", cfg], "readyCmdTimeout) 90000 ms"),
    ] {
        let out = std::process::Command::new(CORRAL)
            .arg("run")
            .args(&args)
            .args(["--listen", "127.0.0.1:0", "--", "true"])
            .env("XDG_RUNTIME_DIR", dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let help = std::process::Command::new(CORRAL)
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--ready-cmd <CMD>"), "{help}");
    let top = std::process::Command::new(CORRAL)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&top.stdout).contains("--ready-cmd \\"),
        "an example in corral --help"
    );
}
