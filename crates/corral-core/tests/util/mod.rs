//! Shared helpers of the engine's integration tests: a primary running the fixture worker,
//! waiting for events with deadlines, and a line-based client. `http`: HTTP clients (one
//! request, a slowloris) for the metrics endpoint. `supervisor`: the supervisor tests' harness.
#![allow(dead_code)]

pub mod http;
pub mod routing;
pub mod supervisor;

use corral_core::{Event, Policy, Primary, PrimaryOptions, SpawnSpec, StdioSpec};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const FIXTURE: &str = env!("CARGO_BIN_EXE_corral-test-worker");

/// A primary whose workers run `corral-test-worker <args>`; dropping it kills and reaps them.
pub struct Harness {
    pub p: Primary,
    /// Every event seen so far, in order, as debug text (for failure messages).
    pub log: Vec<String>,
}

/// These tests choose their policy; `CORRAL_SCHED_POLICY` would override it (in `Primary::new`).
/// Removing it here would edit the environment while other test threads read it, so a run
/// with it set stops with a message instead.
pub fn no_policy_override() {
    assert!(
        std::env::var_os("CORRAL_SCHED_POLICY").is_none(),
        "CORRAL_SCHED_POLICY is set: the engine's tests choose their own policy; unset it"
    );
}

pub fn harness(args: &[&str], policy: Policy) -> Harness {
    harness_with(args, policy, |_| {})
}

pub fn harness_with(
    args: &[&str],
    policy: Policy,
    tweak: impl FnOnce(&mut PrimaryOptions),
) -> Harness {
    let mut opts = PrimaryOptions {
        policy,
        exec: Some(SpawnSpec {
            program: FIXTURE.into(),
            args: args.iter().map(|a| a.into()).collect(),
            stdio: vec![StdioSpec::Null, StdioSpec::Inherit, StdioSpec::Inherit],
            ..Default::default()
        }),
        ..Default::default()
    };
    tweak(&mut opts);
    no_policy_override();
    Harness {
        p: Primary::new(opts).expect("primary"),
        log: Vec::new(),
    }
}

impl Harness {
    /// Blocks the loop of `worker` (a serving fixture) for `ms` ms, as a slow synchronous
    /// handler would, and returns once it says it blocks.
    pub fn block_worker(&mut self, worker: corral_core::WorkerId, ms: u64) {
        self.p
            .send(worker, format!("block {ms}").into_bytes(), Vec::new())
            .unwrap();
        self.wait("the worker says it blocks", Duration::from_secs(10), |_, ev| {
            matches!(ev, Event::Message { worker: w, data, .. } if *w == worker && data == b"blocking")
                .then_some(())
        });
    }

    /// Dispatches until `f` returns `Some` for an event, or panics after `timeout` naming `what`.
    pub fn wait<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&mut Primary, &Event) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(ev) = self.p.next_event() {
                self.log.push(format!("{ev:?}"));
                if let Some(t) = f(&mut self.p, &ev) {
                    return t;
                }
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out after {timeout:?} waiting for {what}; events: {:#?}",
                self.log
            );
            self.p
                .dispatch(Some((deadline - now).min(Duration::from_millis(50))))
                .unwrap();
        }
    }

    /// Dispatches until `cond` holds, or panics after `timeout` naming `what`.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Primary) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !cond(&self.p) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; events: {:#?}",
                self.log
            );
            self.pump_for(Duration::from_millis(2));
        }
    }

    /// Spawns `n` workers and waits until all listen; returns the port.
    pub fn start_listening(&mut self, n: usize) -> u16 {
        self.start_listening_with(&vec![&[][..]; n])
    }

    /// Spawns one worker per entry of `envs` (its extra environment, e.g.
    /// `CORRAL_FIXTURE_SERVE_MS` for a slow one) and waits until all listen on one port;
    /// returns it.
    pub fn start_listening_with(&mut self, envs: &[&[(String, String)]]) -> u16 {
        for env in envs {
            self.p.spawn_worker(env).unwrap();
        }
        let mut port = 0;
        let mut listening = 0;
        self.wait(
            "every worker listening",
            Duration::from_secs(10),
            |_, ev| {
                if let Event::Listening { addr, .. } = ev {
                    assert!(
                        port == 0 || port == addr.port(),
                        "workers got different ports"
                    );
                    port = addr.port();
                    listening += 1;
                }
                (listening == envs.len()).then_some(())
            },
        );
        port
    }

    /// Spawns one worker per entry of `envs` (its environment) and waits until all listen on
    /// one TCP address; that address, and the warning `(code, message)` if one was reported
    /// (a second one fails the test).
    pub fn listen_tcp(
        &mut self,
        envs: &[Vec<(String, String)>],
    ) -> (std::net::SocketAddr, Option<(&'static str, String)>) {
        for env in envs {
            self.p.spawn_worker(env).unwrap();
        }
        let n = envs.len();
        let (mut listening, mut addr, mut warning) = (0, None, None);
        self.wait(
            "every worker listening",
            Duration::from_secs(10),
            |_, ev| {
                match ev {
                    Event::Listening {
                        addr: corral_core::BoundAddr::Tcp(a),
                        ..
                    } => {
                        if let Some(x) = addr {
                            assert_eq!(x, *a, "one address for all");
                        }
                        addr = Some(*a);
                        listening += 1;
                    }
                    Event::Warning { code, message, .. } => {
                        assert!(warning.is_none(), "reported twice: {message}");
                        warning = Some((*code, message.clone()));
                    }
                    _ => {}
                }
                (listening == n).then_some(())
            },
        );
        (addr.unwrap(), warning)
    }

    /// Keeps dispatching for `d` (lets the primary hand out connections while a client runs).
    pub fn pump_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.p.dispatch(Some(Duration::from_millis(5))).unwrap();
            while let Some(ev) = self.p.next_event() {
                self.log.push(format!("{ev:?}"));
            }
        }
    }
}

/// The environment of a fixture worker whose loop is blocked `ms` per request it serves
/// (`CORRAL_FIXTURE_SERVE_MS`), for [`Harness::start_listening_with`].
pub fn slow_serving(ms: u32) -> [(String, String); 1] {
    [("CORRAL_FIXTURE_SERVE_MS".into(), ms.to_string())]
}

/// The environment of a serving fixture worker that refuses connections
/// (`CORRAL_FIXTURE_REFUSE=N:MS[:room]`, see the fixture), for [`Harness::start_listening_with`].
pub fn refusing(spec: &str) -> [(String, String); 1] {
    [("CORRAL_FIXTURE_REFUSE".into(), spec.into())]
}

/// Sends one line, returns the answer line ("worker <id> pid <pid>").
pub fn request(port: u16) -> std::io::Result<String> {
    request_within(port, Duration::from_secs(10))
}

/// [`request`] with a deadline for the answer (`WouldBlock` when it passes).
pub fn request_within(port: u16, timeout: Duration) -> std::io::Result<String> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    (&s).write_all(b"hello\n")?;
    routing::read_answer(&s)
}

/// One request over the Unix socket at `path` (10 s to answer): the answer line.
pub fn request_unix(path: &std::path::Path) -> std::io::Result<String> {
    let s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    (&s).write_all(b"hello\n")?;
    routing::read_answer(&s)
}

/// One request to `addr` (any family, 10 s to connect and to answer): the answer line.
pub fn request_to(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    (&s).write_all(b"hello\n")?;
    routing::read_answer(&s)
}

/// Whether the tests run as root (the kernel paths need CAP_BPF; otherwise their fallback
/// is tested).
pub fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`...), from /proc/PID/stat.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Worker id from an answer line.
pub fn worker_of(answer: &str) -> u64 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad answer {answer:?}"))
}

/// Client threads requesting in a loop (each at most 1,000,000 requests) until [`Looping::end`].
pub struct Looping {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Tally>>,
}

/// What [`Looping`] clients saw.
#[derive(Default)]
pub struct Tally {
    pub ok: u32,
    /// Requests whose answer did not come within the read timeout (`WouldBlock`).
    pub hung: u32,
    /// Every other failure.
    pub failed: u32,
    /// Every failure (hung ones too), as text.
    pub errors: Vec<String>,
}

impl Looping {
    /// `n` threads, each calling `request` in a loop.
    pub fn start<F>(n: usize, request: F) -> Looping
    where
        F: Fn() -> std::io::Result<String> + Clone + Send + 'static,
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let (stop, request) = (stop.clone(), request.clone());
                std::thread::spawn(move || {
                    let mut t = Tally::default();
                    for _ in 0..1_000_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match request() {
                            Ok(_) => t.ok += 1,
                            Err(e) => {
                                if e.kind() == std::io::ErrorKind::WouldBlock {
                                    t.hung += 1;
                                } else {
                                    t.failed += 1;
                                }
                                t.errors.push(e.to_string());
                            }
                        }
                    }
                    t
                })
            })
            .collect();
        Looping { stop, threads }
    }

    /// Stops the clients and adds up what they saw, the primary dispatching meanwhile (a
    /// request in flight may need it).
    pub fn end(self, h: &mut Harness) -> Tally {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let threads = self.threads;
        with_client(h, move || {
            let mut all = Tally::default();
            for t in threads {
                let t = t.join().unwrap();
                all.ok += t.ok;
                all.hung += t.hung;
                all.failed += t.failed;
                all.errors.extend(t.errors);
            }
            all
        })
    }
}

/// For 3 s, SIGKILLs a worker every 200 ms (in turn) and spawns a replacement for each exit;
/// (kills, replacements spawned, connections the primary had handed the victims over their
/// channels in their lives: what a kill can cost beyond the connection being served).
pub fn kill_in_turn_for_3s(h: &mut Harness) -> (u32, u32, u64) {
    let end = Instant::now() + Duration::from_secs(3);
    let mut next_kill = Instant::now() + Duration::from_millis(200);
    let (mut kills, mut respawned, mut handed) = (0u32, 0u32, 0u64);
    while Instant::now() < end {
        h.p.dispatch(Some(Duration::from_millis(5))).unwrap();
        while let Some(ev) = h.p.next_event() {
            h.log.push(format!("{ev:?}"));
            if let Event::Exit { .. } = ev {
                h.p.spawn_worker(&[]).unwrap();
                respawned += 1;
            }
        }
        if Instant::now() >= next_kill {
            next_kill += Duration::from_millis(200);
            let ids = h.p.worker_ids();
            if let Some(&victim) = ids.get(kills as usize % ids.len().max(1)) {
                handed += h.p.worker(victim).map_or(0, |w| w.handed_off);
                h.p.kill(victim, libc::SIGKILL).unwrap();
                kills += 1;
            }
        }
    }
    (kills, respawned, handed)
}

/// SIGSTOPs worker `id` and waits (5 s at most) until it is stopped.
pub fn stop_worker(h: &mut Harness, id: u64) {
    let pid = h.p.worker(id).unwrap().pid;
    h.p.kill(id, libc::SIGSTOP).unwrap();
    let t0 = Instant::now();
    while proc_state(pid) != Some('T') {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "worker never stopped"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `f` on a thread while the primary dispatches; returns its result.
pub fn with_client<T: Send + 'static>(
    h: &mut Harness,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let t = std::thread::spawn(f);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !t.is_finished() {
        assert!(
            Instant::now() < deadline,
            "client did not finish in 60 s; events: {:#?}",
            h.log
        );
        h.pump_for(Duration::from_millis(2));
    }
    t.join().expect("client thread panicked")
}

/// The fixture binary run as a primary of `workers` workers in a child process, killed and
/// reaped on drop (also when the test fails). Its stdout is piped: lines "pid N", "port P",
/// "error MESSAGE".
pub struct FixturePrimary(pub std::process::Child);

impl FixturePrimary {
    pub fn start(workers: usize) -> FixturePrimary {
        let child = std::process::Command::new(FIXTURE)
            .args(["primary", &workers.to_string()])
            .env_remove("CORRAL_SCHED_POLICY")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the fixture primary");
        FixturePrimary(child)
    }
}

/// The fixture primary of `workers` workers under `CORRAL_SCHED_POLICY=policy`, run as uid
/// 65534 with no capabilities (`setpriv`) when the tests run as root, so a kernel policy
/// cannot load its program; started once every worker printed its port.
pub struct UnprivilegedPrimary {
    _p: FixturePrimary,
    lines: std::sync::mpsc::Receiver<String>,
    /// Each worker's port, in the order printed.
    pub ports: Vec<u16>,
    /// The "warning ..." lines printed until then.
    pub warnings: Vec<String>,
    /// Every line printed until then (for failure messages).
    pub log: Vec<String>,
}

impl UnprivilegedPrimary {
    pub fn start(policy: &str, workers: usize) -> UnprivilegedPrimary {
        no_policy_override();
        let mut cmd = if root() {
            let mut c = std::process::Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                FIXTURE,
            ]);
            c
        } else {
            std::process::Command::new(FIXTURE)
        };
        let child = cmd
            .args(["primary", &workers.to_string()])
            .env("CORRAL_SCHED_POLICY", policy)
            // The fallback's spread is asserted exact: a worker the machine's load holds for
            // the stall time (25 ms) would have its connection dealt to the next one. The
            // stall check has tests of its own (stalled_worker.rs).
            .env("CORRAL_STALL_TIMEOUT_MS", "0")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("setpriv (util-linux) and the fixture");
        let mut p = FixturePrimary(child);
        let out = p.0.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (mut ports, mut warnings, mut log) = (Vec::new(), Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        while ports.len() < workers {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{workers} workers not listening in 10 s: {log:?}"));
            if let Some(port) = line.strip_prefix("port ") {
                ports.push(port.parse::<u16>().unwrap());
            }
            if line.starts_with("warning ") {
                warnings.push(line.clone());
            }
            log.push(line);
        }
        UnprivilegedPrimary {
            _p: p,
            lines,
            ports,
            warnings,
            log,
        }
    }

    /// The one warning printed (asserts there was exactly one, and that it is
    /// CORRAL_KERNEL_RR_FALLBACK for EPERM).
    pub fn eperm_fallback_warning(&self) -> &str {
        assert_eq!(self.warnings.len(), 1, "reported once: {:?}", self.log);
        let w = &self.warnings[0];
        assert!(
            w.starts_with(&format!(
                "warning CORRAL_KERNEL_RR_FALLBACK {} ",
                libc::EPERM
            )),
            "{w}"
        );
        w
    }

    /// Asserts that the primary printed no "error ..." line since it started.
    pub fn assert_no_error(&self) {
        while let Ok(line) = self.lines.try_recv() {
            assert!(!line.starts_with("error "), "{line}");
        }
    }
}

impl Drop for FixturePrimary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fixture's `primary-cmd` primary in a child process (maybe under a wrapper such as
/// `unshare`), killed and reaped on drop. Commands go to its stdin; its stdout lines are read on
/// a thread.
pub struct CmdPrimary {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line seen so far (for failure messages).
    pub log: Vec<String>,
}

impl CmdPrimary {
    /// Starts `cmd` (which must end up running `corral-test-worker primary-cmd`) and waits for
    /// its "ready".
    pub fn start(mut cmd: std::process::Command) -> CmdPrimary {
        let mut child = cmd
            .env_remove("CORRAL_SCHED_POLICY")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the fixture primary");
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = CmdPrimary {
            child,
            stdin,
            lines,
            log: Vec::new(),
        };
        p.expect("ready", Duration::from_secs(10), |l| {
            (l == "ready").then_some(())
        });
        p
    }

    /// The primary's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the fixture primary");
        self.stdin.flush().unwrap();
    }

    /// Reads lines until `f` accepts one, or panics after `timeout` naming `what`.
    pub fn expect<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let r = f(&line);
                    self.log.push(line);
                    if let Some(t) = r {
                        return t;
                    }
                }
                Err(_) => panic!(
                    "timed out after {timeout:?} waiting for {what}; primary said: {:#?}",
                    self.log
                ),
            }
        }
    }

    /// Waits for the line `"<word> <id> ..."` and returns the rest after the id.
    pub fn expect_of(&mut self, word: &str, id: u64, timeout: Duration) -> String {
        let prefix = format!("{word} {id} ");
        self.expect(&format!("{prefix}..."), timeout, |l| {
            l.strip_prefix(&prefix).map(str::to_string)
        })
    }

    /// Lines that arrived so far without waiting.
    pub fn drain(&mut self) -> Vec<String> {
        let got: Vec<String> = self.lines.try_iter().collect();
        self.log.extend(got.iter().cloned());
        got
    }
}

impl Drop for CmdPrimary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The open fds of process `pid` (from /proc/PID/fd), with what they point at.
pub fn open_fds(pid: i32) -> std::collections::BTreeMap<u64, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((n, target.display().to_string()))
        })
        .collect()
}

/// The inodes of the TCP sockets listening on `port` (/proc/net/tcp and tcp6, state 0A),
/// whoever holds them. A listener stays there while any process holds a copy of it, so "its
/// inode is gone" says it is closed everywhere; unlike a `connect` to the port, which another
/// process that bound the freed port since (tests run in parallel), or a connection to itself
/// (source port = destination port, possible in the ephemeral range), can answer.
pub fn listening_inodes(port: u16) -> std::collections::BTreeSet<String> {
    let hex_port = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|table| {
            std::fs::read_to_string(table)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    // local_address is HEXIP:HEXPORT, st 0A is LISTEN, inode is field 9.
                    (f.len() > 9 && f[1].rsplit(':').next() == Some(&hex_port) && f[3] == "0A")
                        .then(|| f[9].to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The processes that hold socket `inode` open: "pid (command line)" each, for a failure
/// message.
pub fn socket_holders(inode: &str) -> Vec<String> {
    let link = format!("socket:[{inode}]");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .any(|t| t.to_str() == Some(link.as_str()))
        })
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "{pid} ({})",
                String::from_utf8_lossy(&cmd).replace('\0', " ").trim()
            )
        })
        .collect()
}

/// Sets RLIMIT_NOFILE of process `pid` (soft `n`, hard at least 4096).
pub fn set_nofile(pid: i32, n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: 4096.max(n),
    };
    // SAFETY: prlimit on our own child with a valid rlimit; no old-limit out-param.
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Lowers `pid`'s fd limit to its lowest free fd number: new fds take the lowest free one, so
/// its next `accept` fails with `EMFILE` (raise it again with [`set_nofile`]).
pub fn leave_no_fd_free(pid: i32) {
    let open = open_fds(pid);
    set_nofile(pid, (0..).find(|n| !open.contains_key(n)).unwrap());
}

/// User + system CPU seconds of a process so far (/proc/PID/stat).
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
}
