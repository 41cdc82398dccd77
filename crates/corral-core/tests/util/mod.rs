//! Shared helpers of the engine's integration tests: a primary running the fixture worker,
//! waiting for events with deadlines, and a line-based client. `http`: HTTP clients (one
//! request, a slowloris) for the metrics endpoint.
#![allow(dead_code)]

pub mod http;

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
            stdio: [StdioSpec::Null, StdioSpec::Inherit, StdioSpec::Inherit],
            ..Default::default()
        }),
        ..Default::default()
    };
    tweak(&mut opts);
    // The environment may force a policy; these tests choose their own.
    std::env::remove_var("CORRAL_SCHED_POLICY");
    Harness {
        p: Primary::new(opts).expect("primary"),
        log: Vec::new(),
    }
}

impl Harness {
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
        for _ in 0..n {
            self.p.spawn_worker(&[]).unwrap();
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
                (listening == n).then_some(())
            },
        );
        port
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

/// Sends one line, returns the answer line ("worker <id> pid <pid>").
pub fn request(port: u16) -> std::io::Result<String> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    (&s).write_all(b"hello\n")?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        ));
    }
    Ok(line.trim_end().to_string())
}

/// Worker id from an answer line.
pub fn worker_of(answer: &str) -> u64 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad answer {answer:?}"))
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

impl Drop for FixturePrimary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
