//! The PROXY protocol in front of the primary: a raw client writing v1 and v2 headers, a real
//! HAProxy with `send-proxy` and `send-proxy-v2`, a real nginx `stream` with
//! `proxy_protocol on`; the worker sees the client's address, the
//! header is consumed, `sticky` routes on the real address; a bad, missing or slow header
//! closes the connection and is counted.

mod util;
use corral_core::Policy;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};
use util::routing::*;
use util::*;

fn proxied(
    policy: Policy,
    n: usize,
    tweak: impl FnOnce(&mut corral_core::PrimaryOptions),
) -> (Harness, u16) {
    let mut h = harness_with(&["serve", "127.0.0.1:0"], policy, |o| {
        o.routing.proxy_protocol = true;
        tweak(o);
    });
    let port = h.start_listening(n);
    (h, port)
}

fn v1(src: SocketAddrV4) -> Vec<u8> {
    format!("PROXY TCP4 {} 127.0.0.1 {} 80\r\n", src.ip(), src.port()).into_bytes()
}

fn v2(src: SocketAddr) -> Vec<u8> {
    let mut h = corral_core::proxy_protocol::V2_SIGNATURE.to_vec();
    h.push(0x21); // version 2, PROXY
    match src {
        SocketAddr::V4(a) => {
            h.push(0x11); // TCP over IPv4
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&a.ip().octets());
            h.extend_from_slice(&[127, 0, 0, 1]);
            h.extend_from_slice(&a.port().to_be_bytes());
            h.extend_from_slice(&80u16.to_be_bytes());
        }
        SocketAddr::V6(a) => {
            h.push(0x21); // TCP over IPv6
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&a.ip().octets());
            h.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
            h.extend_from_slice(&a.port().to_be_bytes());
            h.extend_from_slice(&80u16.to_be_bytes());
        }
    }
    h
}

#[test]
fn a_raw_client_v1_and_v2_header_gives_the_worker_the_real_address() {
    let (mut h, port) = proxied(Policy::Sticky, 4, |_| {});
    let answers = with_client(&mut h, move || {
        let mut out = Vec::new();
        for i in 0..40u16 {
            let claimed: SocketAddr = if i % 4 == 3 {
                format!("[2001:db8::{}]:{}", i % 8, 1000 + i)
                    .parse()
                    .unwrap()
            } else {
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::new(203, 0, 113, (i % 8) as u8),
                    1000 + i,
                ))
            };
            let header = match (i % 2, claimed) {
                (0, SocketAddr::V4(a)) => v1(a),
                _ => v2(claimed),
            };
            // Every connection from the same real address (127.0.0.2): only the header differs.
            let a = request_from(client(0), port, &header).unwrap();
            out.push((claimed, a));
        }
        out
    });
    let mut per_client: BTreeMap<std::net::IpAddr, BTreeSet<u64>> = BTreeMap::new();
    for (claimed, a) in &answers {
        // The fixture answers after reading "hello\n": the header was consumed, exactly.
        assert_eq!(peer_of(a), *claimed, "{a}");
        per_client
            .entry(claimed.ip())
            .or_default()
            .insert(worker_of(a));
    }
    for (ip, w) in &per_client {
        assert_eq!(w.len(), 1, "{ip} reached {w:?}");
    }
    let used: BTreeSet<u64> = per_client.values().flatten().copied().collect();
    assert!(
        used.len() >= 2,
        "every claimed client on {used:?}: routed on the proxy's address?"
    );
    assert_eq!(h.p.routing_stats().proxy_errors, 0);
}

/// Sends `bytes`, then expects the primary to close the connection without an answer.
fn expect_closed(port: u16, bytes: &[u8]) -> Duration {
    let t0 = Instant::now();
    let mut s = connect_from(client(1), port).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 64];
    // A signal to this process (the portable backend's SIGCHLD handler) cuts a read that has
    // a timeout short with EINTR, which says nothing of the connection: read again.
    let read = loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r,
        }
    };
    match read {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!(
            "{:?}: expected a close, got {other:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
    t0.elapsed()
}

#[test]
fn a_bad_missing_or_slow_header_closes_the_connection_and_is_counted() {
    let (mut h, port) = proxied(Policy::RoundRobin, 2, |o| {
        o.routing.peek_timeout = Duration::from_millis(300);
    });
    let slow = with_client(&mut h, move || {
        expect_closed(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        expect_closed(port, b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n");
        expect_closed(port, b"PROXY TCP4 1.2.3.4 ");
        expect_closed(port, b"")
    });
    assert!(
        slow >= Duration::from_millis(250) && slow < Duration::from_secs(5),
        "the silent client was closed after {slow:?} (peek_timeout 300 ms)"
    );
    let stats = h.p.routing_stats();
    assert_eq!(stats.proxy_errors, 4, "{stats:?}");
    assert_eq!(stats.parked, 0);
    assert!(stats.last_proxy_error.unwrap().contains("PROXY header"));
    // The primary goes on serving well-formed connections.
    let a = with_client(&mut h, move || {
        request_from(client(2), port, &v1("198.51.100.1:4242".parse().unwrap())).unwrap()
    });
    assert_eq!(peer_of(&a), "198.51.100.1:4242".parse().unwrap());
}

/// Linux hands the primary a peeking listener's connections only once their first bytes came
/// (`TCP_DEFER_ACCEPT`): a client that has sent nothing yet is not accepted, so not parked and
/// watched, and is dealt as soon as its header comes.
#[cfg(target_os = "linux")]
#[test]
fn a_client_that_has_sent_nothing_is_not_accepted_yet() {
    let (mut h, port) = proxied(Policy::RoundRobin, 2, |_| {});
    let quiet = with_client(&mut h, move || {
        let s = connect_from(client(3), port).unwrap();
        // The handshake is done (connect returned): without the deferral the primary would
        // accept and park this connection within a few of its 2 ms turns.
        std::thread::sleep(Duration::from_millis(300));
        s
    });
    h.pump_for(Duration::from_millis(50));
    assert_eq!(
        h.p.routing_stats().parked,
        0,
        "a silent client was accepted"
    );
    let a = with_client(&mut h, move || {
        quiet
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut out = v1("192.0.2.7:4000".parse().unwrap());
        out.extend_from_slice(b"hello\n");
        (&quiet).write_all(&out).unwrap();
        read_answer(&quiet).unwrap()
    });
    assert_eq!(peer_of(&a), "192.0.2.7:4000".parse().unwrap());
    assert_eq!(h.p.routing_stats().proxy_errors, 0);
}

/// A HAProxy in front of the primary, killed and reaped on drop.
struct Haproxy {
    child: std::process::Child,
    port: u16,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Haproxy {
    fn start(backend: u16, send_proxy: &str) -> Haproxy {
        let dir = std::env::temp_dir().join(format!(
            "corral-haproxy-{}-{send_proxy}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = TempDir(dir);
        // HAProxy cannot report a port it chose: take a free one and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = format!(
            "global\n  maxconn 512\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 30s\n  timeout server 30s\nfrontend front\n  bind 127.0.0.1:{port}\n  \
             default_backend corral\nbackend corral\n  server primary 127.0.0.1:{backend} {send_proxy}\n"
        );
        let path = dir.0.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = std::process::Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (apt-get install haproxy; .ci/run installs it)");
        let hp = Haproxy {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {port} in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        hp
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn through_haproxy(send_proxy: &'static str) {
    let (mut h, port) = proxied(Policy::Sticky, 4, |_| {});
    let hp = Haproxy::start(port, send_proxy);
    clients_stick_behind(&mut h, hp.port, send_proxy);
    drop(hp);
}

/// 8 clients (127.0.0.2..9), 10 connections each, interleaved, through the proxy listening on
/// `front`: each client reaches one worker, which reports the client's address, not the
/// proxy's (127.0.0.1); the clients spread over at least 3 of the 4 workers.
fn clients_stick_behind(h: &mut Harness, front: u16, proxy: &str) {
    let answers = with_client(h, move || {
        let mut out = Vec::new();
        for _ in 0..10 {
            for c in 0..8 {
                out.push((c, request_from(client(c), front, b"").unwrap()));
            }
        }
        out
    });
    let mut per_client: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for (c, a) in &answers {
        // The worker saw the client (127.0.0.x, x > 1), not the proxy (127.0.0.1).
        assert_eq!(peer_of(a).ip(), client(*c), "{proxy}: {a}");
        per_client.entry(*c).or_default().insert(worker_of(a));
    }
    for (c, w) in &per_client {
        assert_eq!(w.len(), 1, "{proxy}: client {} reached {w:?}", client(*c));
    }
    let used: BTreeSet<u64> = per_client.values().flatten().copied().collect();
    assert!(used.len() >= 3, "{proxy}: 8 clients on {used:?}");
    let stats = h.p.routing_stats();
    assert_eq!(stats.proxy_errors, 0, "{proxy}: {stats:?}");
}

#[test]
fn behind_haproxy_send_proxy_v1() {
    through_haproxy("send-proxy");
}

#[test]
fn behind_haproxy_send_proxy_v2() {
    through_haproxy("send-proxy-v2");
}

/// `n` requests from 127.0.0.2, each behind a v1 header naming 127.0.0.9 (port 4000 + i); every
/// answer must name its own claimed client. Returns the answers.
fn claimed_requests(h: &mut Harness, port: u16, n: u16) -> Vec<String> {
    let answers = with_client(h, move || {
        (0..n)
            .map(|i| {
                let claimed = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 9), 4000 + i);
                let a = request_from(client(0), port, &v1(claimed))
                    .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
                (claimed, a)
            })
            .collect::<Vec<_>>()
    });
    for (claimed, a) in &answers {
        assert_eq!(
            peer_of(a),
            SocketAddr::V4(*claimed),
            "the worker saw the proxy, not the client its header named: {a}"
        );
    }
    answers.into_iter().map(|(_, a)| a).collect()
}

/// Worker 1 hands every connection back (`Worker::refuse`, a Node server at its
/// maxConnections): worker 2 is given each with the client its PROXY header named, although
/// the header was consumed before worker 1 got it.
#[test]
fn a_refused_connection_keeps_the_client_its_proxy_header_named() {
    let mut h = harness_with(&["serve", "127.0.0.1:0"], Policy::RoundRobin, |o| {
        o.routing.proxy_protocol = true;
    });
    let port = h.start_listening_with(&[&refusing("1000000:0"), &[]]);
    let answers = claimed_requests(&mut h, port, 12);
    assert!(answers.iter().all(|a| worker_of(a) == 2), "{answers:?}");
    let refused = h.p.worker(1).unwrap().refused;
    assert!(
        refused >= 1,
        "worker 1 was dealt connections and refused them"
    );
    assert_eq!(h.p.routing_stats().proxy_errors, 0);
}

/// Worker 2 stops reading its channel (SIGSTOP): the connections it was dealt are read back
/// after `stall_timeout` and worker 1 is given them with their PROXY clients.
#[test]
fn a_connection_read_back_from_a_stalled_worker_keeps_its_proxy_client() {
    let mut h = harness_with(&["serve", "127.0.0.1:0"], Policy::RoundRobin, |o| {
        o.routing.proxy_protocol = true;
        o.stall_timeout = Some(Duration::from_millis(100));
    });
    let port = h.start_listening(2);
    h.p.kill(2, libc::SIGSTOP).unwrap();
    let answers = claimed_requests(&mut h, port, 6);
    assert!(answers.iter().all(|a| worker_of(a) == 1), "{answers:?}");
    assert!(
        h.p.worker(2).unwrap().handed_off >= 1,
        "worker 2 was dealt a connection before it was seen stalled"
    );
    h.p.kill(2, libc::SIGCONT).unwrap();
}

/// Worker 2 is stopped with no stall check, then killed: the connections unread in its
/// channel are read back when it exits and worker 1 is given them with their PROXY clients.
#[test]
fn a_connection_read_back_from_a_dead_worker_keeps_its_proxy_client() {
    let mut h = harness_with(&["serve", "127.0.0.1:0"], Policy::RoundRobin, |o| {
        o.routing.proxy_protocol = true;
        o.stall_timeout = None;
    });
    let port = h.start_listening(2);
    h.p.kill(2, libc::SIGSTOP).unwrap();
    // Two clients at once: one is dealt to worker 1, one to the stopped worker 2, where it waits.
    let clients = std::thread::spawn(move || {
        (0..2u16)
            .map(|i| {
                std::thread::spawn(move || {
                    let claimed = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 9), 5000 + i);
                    (claimed, request_from(client(0), port, &v1(claimed)))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    h.wait_until(
        "a connection dealt to the stopped worker 2",
        Duration::from_secs(10),
        |p| p.worker(2).is_some_and(|w| w.handed_off >= 1),
    );
    h.p.kill(2, libc::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !clients.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the clients were not answered in 20 s after worker 2 was killed; events: {:#?}",
            h.log
        );
        h.pump_for(Duration::from_millis(2));
    }
    for (claimed, a) in clients.join().unwrap() {
        let a = a.unwrap_or_else(|e| panic!("{claimed}: {e}"));
        assert_eq!(worker_of(&a), 1, "{a}");
        assert_eq!(peer_of(&a), SocketAddr::V4(claimed), "{a}");
    }
}

/// nginx's `stream` module in front of the primary (`proxy_protocol on`: a v1 header), in a
/// temporary prefix, in the foreground without a master process (nginx runs as root here; its
/// one process is killed and reaped by pid on drop).
struct Nginx {
    child: std::process::Child,
    port: u16,
    dir: TempDir,
}

impl Nginx {
    /// nginx's stream module: `load_module` path when it is a Debian dynamic module
    /// (libnginx-mod-stream), none when nginx was built with it, `Err` when it has neither.
    fn stream_module() -> Result<Option<std::path::PathBuf>, String> {
        let v = std::process::Command::new("nginx")
            .arg("-V")
            .output()
            .map_err(|e| {
                format!(
                    "nginx: {e} (apt-get install nginx libnginx-mod-stream; .ci/run installs them)"
                )
            })?;
        // nginx -V writes its build options to stderr.
        let opts = String::from_utf8_lossy(&v.stderr).into_owned();
        if opts.split_whitespace().any(|o| o == "--with-stream") {
            return Ok(None);
        }
        let so = std::path::PathBuf::from("/usr/lib/nginx/modules/ngx_stream_module.so");
        if so.exists() {
            return Ok(Some(so));
        }
        Err(format!(
            "nginx has no stream module: not built in and {} is missing (apt-get install \
             libnginx-mod-stream; .ci/run installs it)",
            so.display()
        ))
    }

    fn start(backend: u16) -> Nginx {
        let module = Nginx::stream_module().unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join(format!("corral-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = TempDir(dir);
        // nginx cannot report a port it chose: take a free one and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.0.display();
        let load = module.map_or(String::new(), |m| format!("load_module {};\n", m.display()));
        let cfg = format!(
            "{load}daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             stream {{\n  server {{\n    listen 127.0.0.1:{port};\n    proxy_pass 127.0.0.1:{backend};\n    \
             proxy_protocol on;\n    proxy_connect_timeout 5s;\n    proxy_timeout 30s;\n  }}\n}}\n"
        );
        let path = dir.0.join("nginx.conf");
        std::fs::write(&path, cfg).unwrap();
        let child = std::process::Command::new("nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-e")
            .arg(dir.0.join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("nginx (apt-get install nginx libnginx-mod-stream; .ci/run installs them)");
        Nginx { child, port, dir }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn behind_nginx_stream_proxy_protocol() {
    let (mut h, port) = proxied(Policy::Sticky, 4, |_| {});
    let mut ng = Nginx::start(port);
    let front = ng.port;
    // Wait for nginx with whole requests (the primary dispatching): a probe that only
    // connected and closed could leave nginx a half-sent header to the primary.
    let probe = with_client(&mut h, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match request_from(client(0), front, b"") {
                Ok(a) => return Ok(a),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    if let Err(e) = probe {
        let exited = ng.child.try_wait().ok().flatten();
        panic!(
            "nginx did not serve on {front} in 10 s ({e}; exited: {exited:?}); error log:\n{}",
            ng.error_log()
        );
    }
    clients_stick_behind(&mut h, front, "nginx");
    drop(ng);
}
