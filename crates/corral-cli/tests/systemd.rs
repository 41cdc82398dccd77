//! corral under systemd: `systemd-socket-activate` passes it a listener (LISTEN_FDS for
//! corral's own pid), which the workers get in turn; corral's sd_notify sequence to a test
//! NOTIFY_SOCKET: READY=1 once the pool is up, RELOADING=1 + MONOTONIC_USEC then READY=1
//! around a reload, STOPPING=1 on SIGTERM.

mod util;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use util::*;

/// The next datagram, within `timeout`.
fn next(sock: &UnixDatagram, timeout: Duration, c: &Corral) -> String {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no sd_notify datagram from corral within {timeout:?}: {e}; stderr:\n{}",
            c.stderr()
        )
    });
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Datagrams until one contains `needle` (at most 20, within `timeout` each).
fn until(sock: &UnixDatagram, needle: &str, seen: &mut Vec<String>, c: &Corral) -> String {
    for _ in 0..20 {
        let m = next(sock, Duration::from_secs(20), c);
        seen.push(m.clone());
        if m.contains(needle) {
            return m;
        }
    }
    panic!("no {needle:?} in {seen:?}");
}

/// How corral gets its socket: Debian's systemd-socket-activate, or a small Python wrapper
/// that does what it does (bind, place the socket at fd 3, set LISTEN_FDS, LISTEN_PID to its
/// own pid and LISTEN_FDNAMES, exec corral) for machines without the systemd package.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Launcher {
    SocketActivate,
    Emulated,
}

const EMULATE: &str = r#"
import os, socket, sys
path, names = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(128)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)  # inheritable, as systemd's
else:
    os.set_inheritable(3, True)  # dup2(3, 3) would leave it close-on-exec
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=names)
os.execv(sys.argv[3], sys.argv[3:])
"#;

#[test]
fn socket_activated_corral_passes_its_listener_on_and_speaks_sd_notify() {
    match which("systemd-socket-activate") {
        Some(p) => activated(Launcher::SocketActivate, &p),
        None => eprintln!("systemd-socket-activate is not installed: only the emulation runs"),
    }
    activated(Launcher::Emulated, &python());
}

fn activated(how: Launcher, launcher: &str) {
    let dir = TempDir::new("systemd");
    let sock_path = dir.path().join("web.sock");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let py = server_py();
    let py_bin = python();
    let sock = sock_path.to_str().unwrap().to_string();
    let notify_env = notify_path.to_str().unwrap().to_string();
    let corral_args = [
        CORRAL,
        "run",
        "--workers",
        "2",
        "--reload-wait-ready",
        "--reload-probation",
        "100ms",
        "--",
        &py_bin,
        &py,
    ];
    let envs = [
        ("SERVER_NOTIFY", "ready"),
        ("NOTIFY_SOCKET", notify_env.as_str()),
    ];
    // systemd-socket-activate passes on only what --setenv names.
    let setenv = [
        format!("--setenv=NOTIFY_SOCKET={notify_env}"),
        format!("--setenv=XDG_RUNTIME_DIR={}", dir.path().display()),
        "--setenv=SERVER_NOTIFY=ready".to_string(),
        format!(
            "--setenv=PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ),
    ];
    let mut args: Vec<&str> = match how {
        Launcher::SocketActivate => {
            let mut a = vec!["-l", &sock, "--fdname=web"];
            a.extend(setenv.iter().map(String::as_str));
            a
        }
        Launcher::Emulated => vec!["-c", EMULATE, &sock, "web"],
    };
    args.extend(corral_args);
    let mut c = Corral::start_in(dir, launcher, &args, &envs);
    // systemd-socket-activate execs corral on the first connection, which waits in the
    // backlog and is served by the first worker up.
    let first_client = {
        let p = sock_path.clone();
        wait_for("the activated socket", Duration::from_secs(10), || {
            p.exists().then_some(())
        });
        std::thread::spawn(move || get_unix(&p, Duration::from_secs(20)))
    };
    let mut seen = Vec::new();
    let first = next(&notify, Duration::from_secs(20), &c);
    seen.push(first.clone());
    assert!(
        first.starts_with("STATUS=starting 2 workers"),
        "{how:?}: {first}"
    );
    let ready = until(&notify, "READY=1", &mut seen, &c);
    assert!(ready.contains("STATUS=2 workers ready"), "{how:?}: {ready}");
    let body = first_client
        .join()
        .unwrap()
        .expect("the connection that activated corral");
    assert!(body.starts_with("pid="), "{body}");
    // The workers serve on the socket corral was given, under its name.
    let body =
        get_unix(&sock_path, Duration::from_secs(5)).expect("served on the activated socket");
    assert!(body.starts_with("pid="), "{body}");
    let st = c.status();
    assert_eq!(st["listeners"][0]["name"], "web", "{how:?}: {st}");
    c.signal("HUP");
    let t0 = Instant::now();
    let reloading = until(&notify, "RELOADING=1", &mut seen, &c);
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec > 0);
    until(&notify, "READY=1", &mut seen, &c);
    eprintln!(
        "{how:?}: reload announced and finished in {:?}",
        t0.elapsed()
    );
    c.signal("TERM");
    until(&notify, "STOPPING=1", &mut seen, &c);
    c.assert_exit(0, Duration::from_secs(20));
    eprintln!("{how:?}: sd_notify sequence: {seen:?}");
}

#[test]
fn listen_fds_naming_a_closed_fd_is_refused_before_corral_opens_anything() {
    let dir = TempDir::new("closedfd");
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "export LISTEN_PID=$$ LISTEN_FDS=1 NOTIFY_SOCKET=/nonexistent; exec \"$0\" run -- true 3<&-",
            CORRAL,
        ])
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("LISTEN_FDS=1 but fd 3 is not open"), "{err}");
}

fn which(name: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}
