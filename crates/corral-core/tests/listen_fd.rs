//! `fd:N`: workers share a socket the primary already has (its fd N, as Node's
//! `listen({ fd })` / `bind({ fd })` in a worker). The primary checks it, shares a copy and
//! never closes fd N itself; a bad fd is an error for the worker, not for the primary.

mod util;
use corral_core::{BoundAddr, Event, Policy, SpawnSpec};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;
use util::*;

fn spec(args: &[&str]) -> SpawnSpec {
    SpawnSpec {
        program: FIXTURE.into(),
        args: args.iter().map(|a| a.into()).collect(),
        ..Default::default()
    }
}

/// Disconnects every worker and waits until they all exited.
fn disconnect_all(h: &mut Harness) {
    let ids = h.p.worker_ids();
    for &id in &ids {
        h.p.disconnect(id).unwrap();
    }
    let mut left = ids.len();
    h.wait("every worker's exit", Duration::from_secs(10), |_, ev| {
        if matches!(ev, Event::Exit { .. }) {
            left -= 1;
        }
        (left == 0).then_some(())
    });
}

#[test]
fn a_listening_tcp_fd_of_the_primary_is_shared_under_both_policies() {
    for policy in [Policy::RoundRobin, Policy::Shared] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let addr = format!("fd:{}", l.as_raw_fd());
        let mut h = harness(&["serve", &addr], policy);
        assert_eq!(h.start_listening(2), port, "{policy:?}");
        let answers = with_client(&mut h, move || {
            (0..20)
                .map(|_| request(port).map(|a| worker_of(&a)))
                .collect::<std::io::Result<Vec<u64>>>()
        });
        let answers = answers.unwrap_or_else(|e| panic!("{policy:?}: a request failed: {e}"));
        assert_eq!(answers.len(), 20);
        disconnect_all(&mut h);
        drop(h);
        // Fd N is still the primary's, open and listening: a client is accepted on it.
        let c = std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("{policy:?}: fd N no longer listens: {e}"));
        l.set_nonblocking(false).unwrap();
        let (s, _) = l.accept().expect("accept on the original fd");
        assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    }
}

#[test]
fn a_udp_fd_of_the_primary_is_shared() {
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = u.local_addr().unwrap();
    let addr = format!("fd:{}", u.as_raw_fd());
    let mut h = harness(&["udp", &addr], Policy::RoundRobin);
    for _ in 0..2 {
        h.p.spawn_worker(&[]).unwrap();
    }
    let mut n = 0;
    h.wait(
        "both workers' LISTENING",
        Duration::from_secs(10),
        |_, ev| {
            if let Event::Listening { addr, .. } = ev {
                assert_eq!(*addr, BoundAddr::Udp(to));
                n += 1;
            }
            (n == 2).then_some(())
        },
    );
    let answer = with_client(&mut h, move || {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(b"hi", to).unwrap();
        let mut buf = [0u8; 256];
        let n = c.recv(&mut buf).expect("an answer from a worker");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    assert!(answer.starts_with("worker "), "{answer}");
    disconnect_all(&mut h);
    drop(h);
    // Still bound in the primary: the port is not free.
    assert!(UdpSocket::bind(to).is_err(), "fd N was closed");
    drop(u);
    // Free once the test closed fd N. Another test of this binary that forks at that moment holds
    // a copy of every fd until its child's exec closes them (close-on-exec), so allow that long.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match UdpSocket::bind(to) {
            Ok(_) => break,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("still bound 2 s after the test closed fd N: {e}"),
        }
    }
}

#[test]
fn an_adopted_unix_socket_file_is_left_alone() {
    let path = std::env::temp_dir().join(format!("corral-fd-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let addr = format!("fd:{}", l.as_raw_fd());
    {
        let mut h = harness(&["serve", &addr], Policy::RoundRobin);
        h.start_listening(1);
        let p2 = path.clone();
        let answer = with_client(&mut h, move || request_unix(&p2).unwrap());
        assert!(answer.starts_with("worker "), "{answer}");
        disconnect_all(&mut h);
    }
    let kept = path.exists();
    let _ = std::fs::remove_file(&path);
    assert!(kept, "the primary removed a socket file it did not create");
}

#[test]
fn bad_fds_get_a_clear_error_and_the_primary_keeps_running() {
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let connected = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
    let fd = |f: &dyn AsRawFd| format!("fd:{}", f.as_raw_fd());
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["serve".into(), "fd:1000000".into()],
            vec!["fd:1000000", "not an open file descriptor", "EBADF"],
        ),
        (
            vec!["serve".into(), fd(&file)],
            vec!["not a socket", "ENOTSOCK"],
        ),
        (
            vec!["serve".into(), fd(&udp)],
            vec!["a datagram socket, but a stream listener", "EPROTOTYPE"],
        ),
        (
            vec!["udp".into(), fd(&tcp)],
            vec!["a stream socket, but a datagram listener", "EPROTOTYPE"],
        ),
        (
            vec!["serve".into(), fd(&connected)],
            vec!["is it a listening socket?", "EINVAL"],
        ),
    ];
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    for (args, want) in &cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = h.p.spawn_worker_with(&spec(&argv), &[]).unwrap();
        let text = h.wait(
            &format!("the error report of {argv:?}"),
            Duration::from_secs(10),
            |_, ev| match ev {
                Event::Message { worker, data, .. } if *worker == id => {
                    Some(String::from_utf8_lossy(data).into_owned())
                }
                _ => None,
            },
        );
        for w in want {
            assert!(text.contains(w), "{argv:?}: {text:?} lacks {w:?}");
        }
        let code = h.wait("its exit", Duration::from_secs(10), |_, ev| match ev {
            Event::Exit { worker, status, .. } if *worker == id => Some(status.code),
            _ => None,
        });
        assert_eq!(
            code,
            Some(2),
            "{argv:?}: the fixture exits 2 on a listen error"
        );
    }
    // fd N survived the failed attempts.
    let to: SocketAddr = udp.local_addr().unwrap();
    assert!(UdpSocket::bind(to).is_err(), "the UDP fd is still open");
    // The primary carries on: a good listen still works.
    let port = h.start_listening(1);
    let answer = with_client(&mut h, move || request(port));
    assert!(answer.unwrap().starts_with("worker "));
}
