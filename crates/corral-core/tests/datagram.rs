//! Datagram (UDP) listeners: the primary binds one socket per address and every worker that
//! asks gets the same one, under both policies; it closes with its last worker.

mod util;
use corral_core::{BoundAddr, Event, Policy, SpawnSpec};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use util::*;

/// Sends datagrams to `to` until every worker in `want` has answered one (at most 400
/// datagrams and 10 s); returns the workers that answered.
fn udp_answers(to: SocketAddr, want: usize) -> BTreeSet<u64> {
    let local: SocketAddr = match to.ip() {
        IpAddr::V4(_) => "127.0.0.1:0".parse().unwrap(),
        IpAddr::V6(_) => "[::1]:0".parse().unwrap(),
    };
    let c = UdpSocket::bind(local).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 256];
    for _ in 0..400 {
        if seen.len() >= want || Instant::now() > deadline {
            break;
        }
        c.send_to(b"hi", to).unwrap();
        if let Ok(n) = c.recv(&mut buf) {
            seen.insert(worker_of(std::str::from_utf8(&buf[..n]).unwrap()));
        }
    }
    seen
}

/// One datagram, one answer within `timeout` (None if none came).
fn udp_ask(to: SocketAddr, timeout: Duration) -> Option<String> {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(timeout)).unwrap();
    c.send_to(b"hi", to).unwrap();
    let mut buf = [0u8; 256];
    let n = c.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Starts `n` workers and waits for their LISTENING; returns the address and listener id,
/// checking that every worker got the same UDP listener.
fn start_udp(h: &mut Harness, n: usize) -> (SocketAddr, u32) {
    for _ in 0..n {
        h.p.spawn_worker(&[]).unwrap();
    }
    let mut got: Vec<(SocketAddr, u32)> = Vec::new();
    h.wait(
        "every worker bound to the UDP socket",
        Duration::from_secs(10),
        |_, ev| {
            if let Event::Listening { addr, listener, .. } = ev {
                let BoundAddr::Udp(sa) = addr else {
                    panic!("a datagram listener reported as {addr:?}");
                };
                got.push((*sa, *listener));
            }
            (got.len() == n).then_some(())
        },
    );
    assert!(
        got.windows(2).all(|w| w[0] == w[1]),
        "workers got different sockets: {got:?}"
    );
    assert_ne!(got[0].0.port(), 0, "port 0 resolved to a real port");
    got[0]
}

fn ipv6_loopback() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}

#[test]
fn workers_share_one_udp_socket_under_both_policies() {
    for policy in [Policy::RoundRobin, Policy::Shared] {
        let mut h = harness(&["udp", "127.0.0.1:0"], policy);
        let (addr, _) = start_udp(&mut h, 2);
        assert!(addr.is_ipv4());
        let seen = with_client(&mut h, move || udp_answers(addr, 2));
        assert_eq!(
            seen.len(),
            2,
            "{policy:?}: both workers read from the shared socket (answers from {seen:?})"
        );
    }
}

#[test]
fn udp6_on_the_ipv6_loopback() {
    if !ipv6_loopback() {
        eprintln!("no IPv6 loopback here: nothing to check");
        return;
    }
    let mut h = harness(&["udp", "[::1]:0"], Policy::RoundRobin);
    let (addr, _) = start_udp(&mut h, 2);
    assert!(addr.is_ipv6(), "{addr}");
    let seen = with_client(&mut h, move || udp_answers(addr, 2));
    assert_eq!(seen.len(), 2, "answers from {seen:?}");
}

/// Spawns one fixture worker with `args` and waits for its LISTENING.
fn spawn_listening(h: &mut Harness, args: &[&str]) -> (u64, u32, BoundAddr) {
    let spec = SpawnSpec {
        program: FIXTURE.into(),
        args: args.iter().map(|a| a.into()).collect(),
        ..Default::default()
    };
    let id = h.p.spawn_worker_with(&spec, &[]).unwrap();
    let (lid, addr) = h.wait(
        &format!("LISTENING of worker {id} ({args:?})"),
        Duration::from_secs(10),
        |_, ev| match ev {
            Event::Listening {
                worker,
                listener,
                addr,
            } if *worker == id => Some((*listener, addr.clone())),
            _ => None,
        },
    );
    (id, lid, addr)
}

#[test]
fn tcp_and_udp_are_different_listeners_on_the_same_address() {
    let mut h = harness(&["serve", "127.0.0.1:0"], Policy::RoundRobin);
    let port = h.start_listening(1);
    assert_eq!(h.p.listener_addr(1).map(|a| a.port()), Some(port));
    // The same address text as the TCP listener's: only the kind tells them apart.
    let (zero_worker, zero_lid, zero_addr) = spawn_listening(&mut h, &["udp", "127.0.0.1:0"]);
    assert_ne!(zero_lid, 1, "UDP 127.0.0.1:0 must not join TCP 127.0.0.1:0");
    assert!(matches!(zero_addr, BoundAddr::Udp(_)), "{zero_addr:?}");
    // The TCP listener's port number, for UDP.
    let same = format!("127.0.0.1:{port}");
    let (udp_worker, lid, addr) = spawn_listening(&mut h, &["udp", &same]);
    assert!(lid != 1 && lid != zero_lid, "a third listener: {lid}");
    assert_eq!(addr, BoundAddr::Udp(([127, 0, 0, 1], port).into()));
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    let BoundAddr::Udp(zero_to) = zero_addr else {
        unreachable!()
    };
    let answer = with_client(&mut h, move || {
        (
            udp_ask(to, Duration::from_secs(5)),
            udp_ask(zero_to, Duration::from_secs(5)),
            request(port).map_err(|e| e.to_string()),
        )
    });
    assert_eq!(
        answer.0.as_deref().map(worker_of),
        Some(udp_worker),
        "{answer:?}"
    );
    assert_eq!(
        answer.1.as_deref().map(worker_of),
        Some(zero_worker),
        "{answer:?}"
    );
    assert!(answer.2.unwrap().starts_with("worker 1 "));
}

#[test]
fn the_port_is_free_once_the_last_worker_leaves() {
    let mut h = harness(&["udp", "127.0.0.1:0"], Policy::RoundRobin);
    let (addr, _) = start_udp(&mut h, 2);
    let e = UdpSocket::bind(addr).expect_err("the workers' socket holds the port");
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    for id in h.p.worker_ids() {
        h.p.disconnect(id).unwrap();
    }
    let mut exits = 0;
    h.wait(
        "both workers to exit after the disconnect",
        Duration::from_secs(10),
        |_, ev| {
            if let Event::Exit { status, .. } = ev {
                assert_eq!(status.code, Some(0), "a clean exit");
                exits += 1;
            }
            (exits == 2).then_some(())
        },
    );
    UdpSocket::bind(addr).expect("the primary closed its copy: the port is free again");
}

#[test]
fn after_a_crash_the_socket_waits_for_a_replacement_within_the_grace() {
    let grace = Duration::from_millis(600);
    let mut h = harness_with(&["udp", "127.0.0.1:0"], Policy::Shared, |o| {
        o.orphan_listener_grace = grace
    });
    let (addr, lid) = start_udp(&mut h, 1);
    let first = h.p.worker_ids()[0];
    h.p.kill(first, libc::SIGKILL).unwrap();
    h.wait(
        "the crashed worker's exit",
        Duration::from_secs(10),
        |_, ev| matches!(ev, Event::Exit { .. }).then_some(()),
    );
    // Sent while nobody reads: it waits in the socket's buffer for the replacement.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.send_to(b"early", addr).unwrap();
    assert!(UdpSocket::bind(addr).is_err(), "the primary still holds it");
    let (addr2, lid2) = start_udp(&mut h, 1);
    assert_eq!(
        (addr2, lid2),
        (addr, lid),
        "the replacement joins the same socket"
    );
    let mut buf = [0u8; 256];
    let n = c
        .recv(&mut buf)
        .expect("the replacement answers the datagram sent before it started");
    let second = h.p.worker_ids()[0];
    assert_eq!(worker_of(std::str::from_utf8(&buf[..n]).unwrap()), second);
    h.p.kill(second, libc::SIGKILL).unwrap();
    h.wait("the second exit", Duration::from_secs(10), |_, ev| {
        matches!(ev, Event::Exit { .. }).then_some(())
    });
    h.pump_for(grace + Duration::from_millis(300));
    UdpSocket::bind(addr).expect("the grace is over: the primary closed the socket");
}

#[test]
fn datagram_listeners_count_against_max_listeners_per_worker() {
    let mut h = harness_with(&["flood", "5", "127.0.0.1:0"], Policy::RoundRobin, |o| {
        o.max_listeners_per_worker = 3
    });
    h.p.spawn_worker(&[("CORRAL_FIXTURE_KIND".into(), "datagram".into())])
        .unwrap();
    let text = h.wait(
        "the flood report",
        Duration::from_secs(10),
        |_, ev| match ev {
            Event::Message { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        },
    );
    assert!(text.starts_with("flood ok=3 err=2 "), "{text}");
    assert!(text.contains("max_listeners_per_worker is 3"), "{text}");
    let udp = h
        .log
        .iter()
        .filter(|l| l.contains("Listening") && l.contains("Udp("))
        .count();
    assert_eq!(udp, 3, "three UDP LISTENING events: {:#?}", h.log);
}

#[test]
fn a_unix_path_is_no_datagram_listener() {
    let mut h = harness(
        &["udp", "unix:/tmp/corral-no-such-dgram.sock"],
        Policy::Shared,
    );
    h.p.spawn_worker(&[]).unwrap();
    let text = h.wait(
        "the worker's error report",
        Duration::from_secs(10),
        |_, ev| match ev {
            Event::Message { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        },
    );
    assert!(text.contains("UDP only"), "{text}");
}

#[test]
fn a_host_name_is_resolved_off_the_loop_for_udp_too() {
    let mut h = harness(&["udp", "localhost:0"], Policy::RoundRobin);
    let (addr, _) = start_udp(&mut h, 2);
    assert!(addr.ip().is_loopback(), "{addr}");
    let seen = with_client(&mut h, move || udp_answers(addr, 1));
    assert_eq!(seen.len(), 1, "an answer through the looked-up address");
}
