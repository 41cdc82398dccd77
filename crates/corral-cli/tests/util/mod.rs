//! Shared helpers of the `corral` command's tests: a guarded `corral run` (killed and reaped
//! on drop, its stderr collected), a private runtime directory, HTTP over TCP and Unix
//! sockets, and deadlines that say what did not happen.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CORRAL: &str = env!("CARGO_BIN_EXE_corral");

/// `tests/programs`: the foreign programs (and apps) these tests run under corral.
pub fn programs_dir() -> String {
    format!("{}/tests/programs", env!("CARGO_MANIFEST_DIR"))
}

/// The path of `tests/programs/NAME`.
pub fn program(name: &str) -> String {
    format!("{}/{name}", programs_dir())
}

/// The Python worker (LISTEN_FDS only).
pub fn server_py() -> String {
    program("listen_fds_server.py")
}

/// The real python3 executable (not a version manager's shim script, which takes longer to
/// start than some tests' ready delays).
pub fn python() -> String {
    static PY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is needed by these tests");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
    .clone()
}

/// The python of the tests' virtualenv, with uvicorn and gunicorn from PyPI (made on first
/// use by tests/programs/python-venv.sh; needs PyPI then).
pub fn venv_python() -> String {
    let script = format!(
        "{}/tests/programs/python-venv.sh",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(&script)
        .output()
        .expect("run tests/programs/python-venv.sh");
    assert!(
        out.status.success(),
        "tests/programs/python-venv.sh could not install the packages into its virtualenv \
         (it needs PyPI): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A directory of its own for one test (0755 so a second uid can reach a socket in it),
/// removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "corral-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` until it gives `Some` or `timeout` passes; then panics saying `what` did not
/// happen.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `corral run`; SIGKILLed and reaped on drop (its workers die with it:
/// PR_SET_PDEATHSIG).
pub struct Corral {
    pub child: Child,
    pub dir: TempDir,
    pub control: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    /// Its stderr reached end-of-file (every line is in `lines`).
    eof: Arc<std::sync::atomic::AtomicBool>,
    status: Option<ExitStatus>,
}

impl Corral {
    /// `corral ARGS...` (`run ...`) with XDG_RUNTIME_DIR=DIR.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Corral {
        let dir = TempDir::new("run");
        Self::start_in(dir, CORRAL, args, envs)
    }

    /// `corral run FLAGS -- PROGRAM...`: `flags` is split at white space, so it reads as the
    /// command line does (a flag value with a space in it goes through [`Corral::start`]).
    pub fn run(flags: &str, program: &[&str], envs: &[(&str, &str)]) -> Corral {
        Self::run_in(TempDir::new("run"), flags, program, envs)
    }

    /// [`Corral::run`] with XDG_RUNTIME_DIR=DIR.
    pub fn run_in(dir: TempDir, flags: &str, program: &[&str], envs: &[(&str, &str)]) -> Corral {
        let mut args = vec!["run"];
        args.extend(flags.split_whitespace());
        args.push("--");
        args.extend(program);
        Self::start_in(dir, CORRAL, &args, envs)
    }

    pub fn start_in(dir: TempDir, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Corral {
        Self::start_with(dir, program, args, envs, |_| {})
    }

    /// [`Corral::start_in`], with a last change to the command (e.g. its process group).
    pub fn start_with(
        dir: TempDir,
        program: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        tweak: impl FnOnce(&mut Command),
    ) -> Corral {
        // The default place: $XDG_RUNTIME_DIR/corral/default.sock.
        let control = dir.path().join("corral/default.sock");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("XDG_RUNTIME_DIR", dir.path())
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        tweak(&mut cmd);
        let mut child = cmd.spawn().expect("start corral");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().unwrap();
        let sink = lines.clone();
        let eof = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen_eof = eof.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
            seen_eof.store(true, Ordering::Release);
        });
        Corral {
            child,
            dir,
            control,
            lines,
            eof,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < end,
                "timed out after {timeout:?} waiting for corral to print {needle:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lines of stderr containing `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The TCP port of the first listener corral printed.
    pub fn port(&self) -> u16 {
        let l = self.wait_line("corral: listening on tcp:", Duration::from_secs(10));
        let addr = l.split_whitespace().nth(3).unwrap();
        addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Runs `corral SUBCOMMAND --control ... ARGS`; (exit code, stdout, stderr).
    pub fn ctl(&self, sub: &str, args: &[&str]) -> (i32, String, String) {
        ctl_as(&[], &self.control, sub, args)
    }

    pub fn status(&self) -> Value {
        let (code, out, err) = self.ctl("status", &["--json"]);
        assert_eq!(code, 0, "corral status failed: {err}");
        serde_json::from_str(&out).unwrap()
    }

    /// Waits until `wanted` workers are ready (status); returns their pids.
    pub fn wait_ready(&self, wanted: usize, timeout: Duration) -> Vec<i64> {
        wait_for(&format!("{wanted} ready workers"), timeout, || {
            let (code, out, _) = self.ctl("status", &["--json"]);
            if code != 0 {
                return None;
            }
            let v: Value = serde_json::from_str(&out).ok()?;
            let ws = v["workers"].as_array()?;
            let ready: Vec<i64> = ws
                .iter()
                .filter(|w| w["ready"] == Value::Bool(true) && w["state"] == "ready")
                .map(|w| w["pid"].as_i64().unwrap())
                .collect();
            (ready.len() == wanted && ws.len() == wanted).then_some(ready)
        })
    }

    pub fn signal(&self, sig: &str) {
        kill(sig, &self.pid().to_string());
    }

    /// Asserts that `--policy kernel-rr` did not fall back (no eBPF on this machine).
    pub fn assert_kernel_rr(&self) {
        assert!(
            !self.stderr().contains("kernel-rr unavailable"),
            "no eBPF here: {}",
            self.stderr()
        );
    }

    /// The address of `--metrics` (from the line corral prints).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let line = self.wait_line("corral: metrics on http://", Duration::from_secs(10));
        line.split("http://")
            .nth(1)
            .and_then(|s| s.strip_suffix("/metrics"))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Asserts that corral exits with `code` within `timeout` (its stderr in the message).
    pub fn assert_exit(&mut self, code: i32, timeout: Duration) {
        assert_eq!(self.wait_exit(timeout), Some(code), "{}", self.stderr());
    }

    /// `corral stop`, then asserts that corral exits 0 within `timeout`.
    pub fn stop(&mut self, timeout: Duration) {
        let (code, _, err) = self.ctl("stop", &[]);
        assert_eq!(code, 0, "{err}");
        self.assert_exit(0, timeout);
    }

    /// SIGTERM while `clients` requests of `port` are in flight (sent 200 ms before): each
    /// must be answered and corral must exit 0 within `timeout`. The time from the signal to
    /// the exit.
    pub fn sigterm_in_flight(&mut self, port: u16, clients: usize, timeout: Duration) -> Duration {
        let inflight: Vec<_> = (0..clients)
            .map(|_| std::thread::spawn(move || get(port, Duration::from_secs(10))))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let t0 = Instant::now();
        self.signal("TERM");
        for t in inflight {
            let r = t.join().unwrap();
            assert!(
                r.is_ok(),
                "an in-flight request failed during the drain: {r:?}; corral:\n{}",
                self.stderr()
            );
        }
        self.assert_exit(0, timeout);
        t0.elapsed()
    }

    /// Waits for corral to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.status = Some(st);
                // Its last lines may still be in the pipe (workers that outlive it hold the
                // pipe too: 2 s at most).
                let end = Instant::now() + Duration::from_secs(2);
                while !self.eof.load(Ordering::Acquire) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return st.code();
            }
            assert!(
                Instant::now() < end,
                "corral did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        if self.status.is_none() {
            // Workers die with corral (PR_SET_PDEATHSIG), but what a worker forked itself
            // (uvicorn --workers, gunicorn) would be orphaned: each worker leads its own
            // process group, which its children share, so the groups are killed too.
            let groups = worker_groups(self.pid());
            let _ = self.child.kill();
            let _ = self.child.wait();
            for g in groups {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{g}")])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// The children of `parent` that lead their own process group (corral's workers).
fn worker_groups(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp ...".
            let f: Vec<&str> = stat
                .rfind(')')
                .map(|i| stat[i + 1..].split_whitespace().collect())
                .unwrap_or_default();
            f.get(1) == Some(&parent.to_string().as_str())
                && f.get(2) == Some(&pid.to_string().as_str())
        })
        .collect()
}

/// `kill -SIG TARGET` (a pid, or `-PGID` for a process group); asserts it was delivered.
pub fn kill(sig: &str, target: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), "--", target])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} -- {target}");
}

/// `GET PATH` over HTTP/1.0 to `addr` (the metrics listener); the whole answer, head included.
pub fn get_raw(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `corral SUB --control PATH ARGS`, run through `prefix` (e.g. setpriv).
pub fn ctl_as(prefix: &[&str], control: &Path, sub: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(CORRAL);
            c
        }
        None => Command::new(CORRAL),
    };
    cmd.arg(sub).arg("--control").arg(control).args(args);
    let out = cmd.output().expect("run corral client");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One HTTP/1.0 GET; the body, or why it failed.
pub fn get(port: u16, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    http(&mut s)
}

pub fn get_unix(path: &Path, timeout: Duration) -> Result<String, String> {
    let mut s =
        std::os::unix::net::UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    http(&mut s)
}

/// Failure text of a connection the server closed (FIN or RST) before sending any byte.
pub const UNANSWERED: &str = "closed before any answer";

fn http(s: &mut (impl Read + Write)) -> Result<String, String> {
    s.write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) if raw.is_empty() => return Err(UNANSWERED.into()),
            Err(e) => return Err(format!("read after {} bytes: {e}", raw.len())),
        }
    }
    if raw.is_empty() {
        return Err(UNANSWERED.into());
    }
    let out = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = out
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete answer: {out:?}"))?;
    // Node answers an HTTP/1.0 request as HTTP/1.1.
    if !(head.starts_with("HTTP/1.0 200 ") || head.starts_with("HTTP/1.1 200 ")) {
        return Err(format!("status: {head}"));
    }
    Ok(body.to_string())
}

/// The pid in a body "pid=N worker=M".
pub fn pid_of(body: &str) -> i64 {
    body.split_whitespace()
        .next()
        .and_then(|p| p.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
}

/// Clients requesting in a loop (each at most 5000 requests or 60 s) until `finish`.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    pub fn start(port: u16, clients: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut ok, mut errors) = (0, Vec::new());
                    let end = Instant::now() + Duration::from_secs(60);
                    for _ in 0..5000 {
                        if stop.load(Ordering::Relaxed) || Instant::now() > end {
                            break;
                        }
                        match get(port, Duration::from_secs(5)) {
                            Ok(_) => ok += 1,
                            Err(e) => errors.push(e),
                        }
                    }
                    (ok, errors)
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the clients and asserts that no request failed and at least `min_ok` succeeded;
    /// (requests that succeeded, failures).
    pub fn finish_clean(self, min_ok: u64) -> (u64, Vec<String>) {
        let (ok, errors) = self.finish();
        assert_clean(ok, &errors, min_ok);
        (ok, errors)
    }

    /// Stops the clients: requests that succeeded, and the failures.
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut ok = 0;
        let mut errors = Vec::new();
        for t in self.threads {
            let (o, e) = t.join().unwrap();
            ok += o;
            errors.extend(e);
        }
        (ok, errors)
    }
}

/// Asserts that a load loop saw no failure (the first five in the message) and ran: at least
/// `min_ok` requests succeeded.
pub fn assert_clean(ok: u64, errors: &[String], min_ok: u64) {
    assert!(
        errors.is_empty(),
        "{} failed, first failures: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(ok >= min_ok, "the load loop ran ({ok} requests)");
}

/// One HTTP/1.1 request on a connection the server keeps open; the answer's body.
pub fn keepalive_request(s: &mut (impl Read + Write)) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf).expect("answer on a keep-alive connection");
        assert!(n > 0, "the server closed a keep-alive connection");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("Content-Length");
            if body.len() >= len {
                return body.to_string();
            }
        }
    }
}

/// A client connection for [`keepalive_request`], 5 s to read each answer.
pub fn keepalive_tcp(port: u16) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}
