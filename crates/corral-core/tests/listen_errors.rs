//! Listen errors go to the worker that asked, with errno and context; the primary carries on.

mod util;
use corral_core::{Event, Policy, StdioSpec};
use std::io::Read;
use std::time::Duration;
use util::*;

fn failing_listen(addr: &str) -> (Option<i32>, String) {
    let mut h = harness_with(&["serve", addr], Policy::RoundRobin, |o| {
        o.exec.as_mut().unwrap().stdio[2] = StdioSpec::Pipe;
    });
    let id = h.p.spawn_worker(&[]).unwrap();
    let mut stderr = std::fs::File::from(h.p.take_stdio(id, 2).expect("piped stderr"));
    let code = h.wait(
        "the worker's exit",
        Duration::from_secs(10),
        |_, ev| match ev {
            Event::Exit { status, .. } => Some(status.code),
            _ => None,
        },
    );
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    (code, text)
}

#[test]
fn eaddrinuse_reaches_the_worker() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, stderr) = failing_listen(&format!("127.0.0.1:{port}"));
    assert_eq!(code, Some(2), "the fixture exits 2 when listen fails");
    assert!(
        stderr.contains(&format!(
            "bind 127.0.0.1:{port}: Address already in use (EADDRINUSE)"
        )),
        "{stderr}"
    );
}

#[test]
fn unknown_hosts_reach_the_worker() {
    let (code, stderr) = failing_listen("no-such-host.invalid:0");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("getaddrinfo no-such-host.invalid") && stderr.contains("ENOTFOUND"),
        "{stderr}"
    );
}

#[test]
fn unix_socket_listeners_serve_and_are_unlinked() {
    let path = std::env::temp_dir().join(format!("corral-test-{}.sock", std::process::id()));
    let addr = format!("unix:{}", path.display());
    {
        let mut h = harness(&["serve", &addr], Policy::RoundRobin);
        h.start_listening(2);
        let p2 = path.clone();
        let answer = with_client(&mut h, move || request_unix(&p2).unwrap());
        assert!(answer.starts_with("worker "), "{answer}");
        assert!(path.exists());
    }
    assert!(
        !path.exists(),
        "the primary unlinks its Unix socket on drop"
    );
}

#[test]
fn a_unix_socket_path_longer_than_sun_path_serves_and_is_unlinked() {
    for policy in [Policy::RoundRobin, Policy::Shared] {
        let root = std::env::temp_dir().join(format!("corral-long-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        assert!(path.as_os_str().len() > corral_core::__testing::SUN_PATH_MAX);
        let addr = format!("unix:{}", path.display());
        {
            let mut h = harness(&["serve", &addr], policy);
            h.start_listening(2);
            let p2 = path.clone();
            let answer = with_client(&mut h, move || {
                let (short, _dir) = corral_core::__testing::short_socket_path(&p2).unwrap();
                request_unix(&short).unwrap()
            });
            assert!(answer.starts_with("worker "), "{policy:?}: {answer}");
            assert!(path.exists(), "{policy:?}");
        }
        let gone = !path.exists();
        let _ = std::fs::remove_dir_all(&root);
        assert!(
            gone,
            "{policy:?}: the primary unlinks its long-path socket on drop"
        );
    }
}

/// The first message worker `id` sends.
fn message_of(h: &mut Harness, id: u64, what: &str) -> String {
    h.wait(what, Duration::from_secs(10), |_, ev| match ev {
        Event::Message { worker, data, .. } if *worker == id => {
            Some(String::from_utf8_lossy(data).into_owned())
        }
        _ => None,
    })
}

#[test]
fn an_option_the_primary_refuses_reaches_the_worker_naming_the_option() {
    // A request the worker's own checks would have stopped (a datagram listener on a Unix
    // socket path), as a worker of another version may send it: the primary's refusal
    // arrives as the primary made it, an invalid `address`, not a generic OS error.
    let path = std::env::temp_dir().join(format!("corral-raw-{}.sock", std::process::id()));
    let mut h = harness(
        &[
            "raw-listen",
            "datagram",
            &format!("unix:{}", path.display()),
        ],
        Policy::RoundRobin,
    );
    let id = h.p.spawn_worker(&[]).unwrap();
    let report = message_of(&mut h, id, "the raw listen's answer");
    assert!(
        report.starts_with(
            "raw InvalidArgument Some(\"address\") 0 address: datagram listeners are UDP only"
        ),
        "{report}"
    );
    assert!(!path.exists(), "nothing was bound");
}

#[test]
fn a_listen_refused_while_disconnecting_is_wrong_state_in_the_worker() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    h.start_listening(1);
    let id = h.p.worker_ids()[0];
    // The listen request reaches the primary after it asked the worker to disconnect (both
    // calls return before the primary reads anything more from the worker).
    h.p.send(id, b"relisten".to_vec(), Vec::new()).unwrap();
    h.p.disconnect(id).unwrap();
    let reply = message_of(&mut h, id, "the second listen's answer");
    assert!(
        reply.starts_with("relistened Err(Error { kind: WrongState, errno: 0, syscall: None, "),
        "{reply}"
    );
    assert!(
        reply.contains(&format!("worker {id} is disconnecting")),
        "{reply}"
    );
}
