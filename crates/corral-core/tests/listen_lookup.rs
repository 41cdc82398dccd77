//! Host name lookups for listens run off the primary's loop: a resolver that never answers
//! stalls only the worker that asked for that name. The primary runs under `unshare --mount`
//! with a bind-mounted /etc/resolv.conf (and an nsswitch.conf with `hosts: files dns`) naming
//! a local DNS server (a UDP socket of this test) that ignores some names and answers others
//! late: the system resolver, really waiting.
//! Needs root (mount namespaces); otherwise the tests say why and return.

mod util;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::*;

/// Never answered.
const HANG: &str = "hang.corral.test";
/// Answered with 127.0.0.1 (A) or nothing (other types) after `SLOW_DELAY`.
const SLOW: &str = "slow.corral.test";
const SLOW_DELAY: Duration = Duration::from_millis(1500);
/// resolv.conf `timeout:` in seconds (one attempt).
const RESOLVER_TIMEOUT_S: u64 = 4;

/// A DNS server on 127.53.0.N:53 that records every query (name, type).
struct FakeDns {
    ip: String,
    queries: Arc<Mutex<Vec<(String, u16)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeDns {
    fn start() -> FakeDns {
        let sock = (1..=250)
            .find_map(|n| UdpSocket::bind(("127.53.0.".to_string() + &n.to_string(), 53)).ok())
            .expect("bind a UDP socket on 127.53.0.N:53");
        let ip = sock.local_addr().unwrap().ip().to_string();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (queries.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Some((name, qtype, end)) = parse_query(&buf[..n]) else {
                    continue;
                };
                q.lock().unwrap().push((name.clone(), qtype));
                if name == SLOW {
                    let reply = answer(&buf[..end], qtype == 1);
                    let sock = sock.try_clone().unwrap();
                    std::thread::spawn(move || {
                        std::thread::sleep(SLOW_DELAY);
                        let _ = sock.send_to(&reply, from);
                    });
                }
            }
        });
        FakeDns {
            ip,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    fn queries_for(&self, name: &str, qtype: u16) -> usize {
        let q = self.queries.lock().unwrap();
        q.iter().filter(|(n, t)| n == name && *t == qtype).count()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (name, qtype, end of the question section) of a one-question query.
fn parse_query(m: &[u8]) -> Option<(String, u16, usize)> {
    if m.len() < 12 || u16::from_be_bytes([m[4], m[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *m.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(m.get(i..i + len)?).to_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]);
    Some((labels.join("."), qtype, i + 4))
}

/// A reply to `query` (header and question): 127.0.0.1 when `a`, else no records.
fn answer(query: &[u8], a: bool) -> Vec<u8> {
    let mut r = query.to_vec();
    r[2] = 0x81; // QR, RD
    r[3] = 0x80; // RA, NOERROR
    r[6..12].copy_from_slice(&[0, a as u8, 0, 0, 0, 0]);
    if a {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    r
}

/// The fixture primary in a mount namespace whose /etc/resolv.conf names `dns`; `None` (with
/// the reason printed) where that cannot be done.
fn primary_with_resolver(dns: &FakeDns, tag: &str) -> Option<(CmdPrimary, [TempFile; 2])> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root for a mount namespace (unshare --mount)");
        return None;
    }
    let probe = std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .status();
    if !probe.as_ref().is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: `unshare --mount true` failed here: {probe:?}");
        return None;
    }
    let conf = TempFile(
        std::env::temp_dir().join(format!("corral-resolv-{}-{tag}.conf", std::process::id())),
    );
    std::fs::write(
        &conf.0,
        format!(
            "nameserver {}\noptions timeout:{RESOLVER_TIMEOUT_S} attempts:1\n",
            dns.ip
        ),
    )
    .unwrap();
    // Host lookups go to files, then DNS (not to a local caching daemon such as
    // systemd-resolved through nss-resolve, which would not ask our server).
    let nss = TempFile(conf.0.with_extension("nsswitch"));
    let hosts_line = "hosts: files dns";
    let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let mut lines: Vec<&str> = nsswitch
        .lines()
        .filter(|l| !l.trim_start().starts_with("hosts:"))
        .collect();
    lines.push(hosts_line);
    std::fs::write(&nss.0, lines.join("\n") + "\n").unwrap();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount --bind \"$1\" /etc/resolv.conf && \
             { [ ! -e /etc/nsswitch.conf ] || mount --bind \"$2\" /etc/nsswitch.conf; } && \
             exec \"$3\" primary-cmd",
        )
        .arg("sh")
        .arg(&conf.0)
        .arg(&nss.0)
        .arg(FIXTURE)
        // No search domains: each name is one query per type.
        .env("LOCALDOMAIN", "");
    Some((CmdPrimary::start(cmd), [conf, nss]))
}

struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One request to 127.0.0.1:`port`; the answer and how long it took.
fn timed_request(port: u16) -> (String, Duration) {
    let t = Instant::now();
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(b"hello\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .expect("an answer within 10 s");
    (line, t.elapsed())
}

#[test]
fn a_lookup_that_never_ends_stalls_only_the_worker_that_asked() {
    let dns = FakeDns::start();
    let Some((mut p, _conf)) = primary_with_resolver(&dns, "hang") else {
        return;
    };
    let s = Duration::from_secs;
    p.send("spawn serve 127.0.0.1:0");
    let port: u16 = p.expect_of("listening", 1, s(10)).parse().unwrap();

    p.send(&format!("spawn serve {HANG}:0"));
    let asked = Instant::now();
    let deadline = asked + s(10);
    while dns.queries_for(HANG, 1) == 0 {
        assert!(
            Instant::now() < deadline,
            "the primary never asked the DNS server for {HANG}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The lookup hangs now. Connections to the other worker are handed out at once...
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let (answer, took) = timed_request(port);
        assert!(answer.starts_with("worker 1 "), "{answer:?}");
        worst = worst.max(took);
    }
    assert!(
        worst < Duration::from_millis(100),
        "a request took {worst:?} while a lookup hung"
    );
    // ... and a new worker's numeric listen completes (the time includes starting it).
    let t = Instant::now();
    p.send("spawn serve 127.0.0.3:0");
    p.expect_of("listening", 3, s(10));
    let listen_took = t.elapsed();
    assert!(
        listen_took < Duration::from_secs(1),
        "a numeric listen took {listen_took:?} while a lookup hung"
    );
    assert!(
        asked.elapsed() < s(RESOLVER_TIMEOUT_S),
        "too slow to observe the hang: {:?}",
        asked.elapsed()
    );
    // The worker that asked gets the resolver's failure once it times out.
    let failed = p.expect_of("message", 2, s(RESOLVER_TIMEOUT_S * 4 + 10));
    let after = asked.elapsed();
    assert!(
        failed.contains(&format!("getaddrinfo {HANG}: host not found (ENOTFOUND)")),
        "{failed}"
    );
    assert!(
        after >= s(RESOLVER_TIMEOUT_S) - Duration::from_millis(500),
        "the lookup failed after {after:?}, before the resolver's timeout"
    );
    assert_eq!(p.expect_of("exit", 2, s(10)), "Some(2)");
    eprintln!("worst request latency during the hang {worst:?}, numeric listen {listen_took:?}, lookup failed after {after:?}");
}

#[test]
fn workers_asking_for_one_name_share_one_lookup_and_one_listener() {
    let dns = FakeDns::start();
    let Some((mut p, _conf)) = primary_with_resolver(&dns, "slow") else {
        return;
    };
    let s = Duration::from_secs;
    // A worker that dies while its lookup runs: its answer is dropped, the others get theirs.
    p.send(&format!("spawn serve {SLOW}:0"));
    let t = Instant::now();
    let doomed: i32 = p.expect_of("online", 1, s(10)).parse().unwrap();
    while dns.queries_for(SLOW, 1) == 0 {
        assert!(t.elapsed() < s(10), "the primary never asked for {SLOW}");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our child's worker, by pid.
    assert_eq!(unsafe { libc::kill(doomed, libc::SIGKILL) }, 0);
    p.send(&format!("spawn serve {SLOW}:0"));
    p.send(&format!("spawn serve {SLOW}:0"));
    let mut ports = std::collections::BTreeMap::new();
    let mut exited = false;
    p.expect("workers 2 and 3 listening, worker 1's exit", s(10), |l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["listening", id, port] => {
                ports.insert(id.to_string(), port.parse::<u16>().unwrap());
            }
            ["exit", "1", code] => {
                assert_eq!(*code, "None", "killed by SIGKILL");
                exited = true;
            }
            ["listening", ..] | ["exit", ..] => panic!("unexpected {l:?}"),
            _ => {}
        }
        (exited && ports.len() == 2).then_some(())
    });
    let took = t.elapsed();
    let a = ports["2"];
    assert_eq!(
        a, ports["3"],
        "same name and index, same listener (same port)"
    );
    assert!(
        took >= SLOW_DELAY,
        "listening after {took:?}, before the answer"
    );
    assert_eq!(dns.queries_for(SLOW, 1), 1, "one lookup for three workers");
    let mut by = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let (answer, _) = timed_request(a);
        by.insert(answer.split_whitespace().nth(1).unwrap().to_string());
    }
    assert_eq!(by.len(), 2, "both workers serve the listener: {by:?}");
    // The lookup is over: a later listen for the name joins the same listener at once.
    p.send(&format!("spawn serve {SLOW}:0"));
    assert_eq!(
        p.expect_of("listening", 4, s(10)).parse::<u16>().unwrap(),
        a
    );
    assert_eq!(dns.queries_for(SLOW, 1), 1);
    let errors: Vec<String> = p
        .drain()
        .into_iter()
        .filter(|l| l.starts_with("error "))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
