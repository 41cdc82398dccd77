//! The control socket: status --json, scale, stop, one cluster per name, and only the owner
//! (or root) may talk to it.

mod util;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use util::*;

#[test]
fn status_json_lists_the_workers_and_scale_changes_their_number() {
    let py = server_py();
    let c = Corral::run(
        "--workers 3 --listen 127.0.0.1:0 --ready-delay 100ms",
        &[&python(), &py],
        &[],
    );
    let pids = c.wait_ready(3, Duration::from_secs(15));
    let st = c.status();
    let ws = st["workers"].as_array().unwrap();
    assert_eq!(ws.len(), 3);
    for (i, w) in ws.iter().enumerate() {
        assert_eq!(w["slot"], i);
        assert!(pids.contains(&w["pid"].as_i64().unwrap()));
        assert!(w["rss_bytes"].as_u64().unwrap() > 0, "{w}");
    }
    let (code, table, _) = c.ctl("status", &[]);
    assert_eq!(code, 0);
    assert!(
        table.contains("3 workers wanted") && table.lines().count() >= 6,
        "{table}"
    );
    let (code, out, err) = c.ctl("scale", &["1"]);
    assert_eq!((code, out.trim()), (0, "scaling to 1 workers"), "{err}");
    c.wait_ready(1, Duration::from_secs(15));
    let (code, _, err) = c.ctl("scale", &["0"]);
    assert_eq!(code, 1);
    assert!(err.contains("workers"), "the error names the option: {err}");
}

#[test]
fn stop_drains_and_the_name_is_free_again() {
    let py = server_py();
    let mut c = Corral::run(
        "--workers 1 --listen 127.0.0.1:0 --ready-delay 100ms",
        &[&python(), &py],
        &[],
    );
    c.wait_ready(1, Duration::from_secs(15));
    // A second cluster with the same name (same runtime directory) is refused.
    let out = std::process::Command::new(CORRAL)
        .args(["run", "--workers", "1", "--", "true"])
        .env("XDG_RUNTIME_DIR", c.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another corral is running there"), "{err}");
    let (code, out, err) = c.ctl("stop", &[]);
    assert_eq!((code, out.trim()), (0, "shutting down"), "{err}");
    c.assert_exit(0, Duration::from_secs(15));
    assert!(!c.control.exists(), "the control socket is removed at exit");
}

#[test]
fn another_uid_is_refused_by_the_file_mode_and_by_so_peercred() {
    if !nix_is_root() {
        eprintln!("skipped: needs root to run a client as uid 65534 (setpriv)");
        return;
    }
    let c = Corral::run("--workers 1 --ready-delay 50ms", &["sleep", "60"], &[]);
    c.wait_ready(1, Duration::from_secs(10));
    let mode = std::fs::metadata(&c.control).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the control socket is created 0600");
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let (code, _, err) = ctl_as(&nobody, &c.control, "status", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("Permission denied"), "{err}");
    // Loosened by hand: the peer check still refuses.
    let dir = c.control.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&c.control, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) = ctl_as(&nobody, &c.control, "stop", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("refused: uid 65534"), "{err}");
    assert_eq!(
        c.status()["shutting_down"],
        false,
        "the refused stop did nothing"
    );
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A client that connects and says nothing holds no one up: `corral status` still answers
/// at once, and the silent one is told off after 1 s.
#[test]
fn a_silent_client_does_not_hold_the_cluster_and_is_answered_after_its_deadline() {
    let c = Corral::run("--workers 1 --ready-delay 50ms", &["sleep", "60"], &[]);
    c.wait_ready(1, Duration::from_secs(10));
    let silent = std::os::unix::net::UnixStream::connect(&c.control).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t0 = std::time::Instant::now();
    let (code, _, err) = c.ctl("status", &[]);
    let took = t0.elapsed();
    assert_eq!(code, 0, "{err}");
    assert!(
        took < Duration::from_millis(700),
        "status waited {took:?} behind a silent client"
    );
    let mut answer = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&silent), &mut answer).unwrap();
    assert!(
        answer.contains("no request line within 1000 ms"),
        "{answer}"
    );
}
