//! The metrics endpoint: serves the latest Prometheus text over HTTP/1.1 from one thread that
//! runs its own `mio::Poll`, so one client cannot hold up another, nor the owner's drop. It
//! also answers `GET /ready` (a Kubernetes readiness probe): 200 while the published state is
//! ready, 503 with the reason otherwise.
//!
//! Every connection lives under a deadline: its request head must arrive within
//! [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD`] bytes, and the answer must be taken within
//! [`WRITE_TIMEOUT`]. After the answer the write side is shut and whatever the client still
//! sends is read and dropped for up to [`LINGER`] (closing with unread input would reset the
//! connection and could destroy an answer the client has not read yet, e.g. a 431). At most
//! [`MAX_CLIENTS`] connections are open; a new client displaces the oldest one that has not
//! finished its request head. The poll timeout is the nearest deadline: there is no sleep.
//!
//! A front may add figures collected when a client asks ([`Endpoint::set_scrape_hook`]: the
//! `corral` command's per-worker connection counts, read from `/proc`). The hook runs on
//! this thread, at most once per [`SCRAPE_MIN_INTERVAL`]; scrapes in between get its last
//! text, so many clients cannot multiply its work.
//!
//! Dropping the [`Endpoint`] wakes the thread through a `mio::Waker`; it closes every
//! connection and exits at once, whatever the clients are doing.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time a client has, from its connection, to send a complete request head (slowloris bound).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole answer once it is ready.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long input is drained after the answer before the connection is closed anyway.
pub const LINGER: Duration = Duration::from_secs(1);
/// Largest request head (request line and headers) accepted; a longer one gets 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most connections open at once.
pub const MAX_CLIENTS: usize = 64;
/// Pause before accepting again after accept fails for want of fds or memory (EMFILE...):
/// the listener stays readable, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Least time between two runs of the scrape hook.
pub const SCRAPE_MIN_INTERVAL: Duration = Duration::from_millis(250);

/// Figures collected at scrape time: given the workers last published (id, pid), returns
/// Prometheus text (whole families, `# HELP`/`# TYPE` lines included) appended to the
/// published text. It runs on the endpoint's thread: it must not block for long.
pub type ScrapeHook = Box<dyn FnMut(&[(u64, i32)]) -> String + Send>;

#[derive(Default)]
struct Scrape {
    hook: Option<ScrapeHook>,
    /// The hook's last text and when it ran.
    last: Option<(Instant, String)>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape")
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CLIENT: usize = 2;

#[derive(Debug)]
struct Shared {
    text: Mutex<String>,
    /// `GET /ready`: `Ok` answers 200, `Err(why)` 503.
    ready: Mutex<Result<(), String>>,
    /// The workers (id, pid) the scrape hook is given.
    workers: Mutex<Vec<(u64, i32)>>,
    scrape: Mutex<Scrape>,
    stop: AtomicBool,
}

/// A metrics endpoint: answers `GET /metrics` (and `GET /`) with the latest published text.
#[derive(Debug)]
pub struct Endpoint {
    shared: Arc<Shared>,
    waker: Waker,
    addr: SocketAddr,
    owner_pid: u32,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Binds `addr` (use 127.0.0.1 unless you mean to expose it) and starts serving.
    pub fn start(addr: SocketAddr) -> io::Result<Endpoint> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            text: Mutex::new(String::new()),
            ready: Mutex::new(Err("nothing published yet".into())),
            workers: Mutex::new(Vec::new()),
            scrape: Mutex::new(Scrape::default()),
            stop: AtomicBool::new(false),
        });
        let server = Server {
            poll,
            listener,
            shared: shared.clone(),
            conns: HashMap::new(),
            next: FIRST_CLIENT,
            accept_paused_until: None,
        };
        let thread = std::thread::Builder::new()
            .name("corral-metrics".into())
            .spawn(move || server.run())?;
        Ok(Endpoint {
            shared,
            waker,
            addr,
            owner_pid: std::process::id(),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the served text.
    pub fn publish(&self, text: String) {
        *self
            .shared
            .text
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = text;
    }

    /// Replaces the workers (id, pid) given to the scrape hook.
    pub fn publish_workers(&self, workers: Vec<(u64, i32)>) {
        *self
            .shared
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = workers;
    }

    /// Sets the hook whose text is appended to every `GET /metrics` answer (see the module
    /// docs); it replaces the previous one.
    pub fn set_scrape_hook(&self, hook: ScrapeHook) {
        *self
            .shared
            .scrape
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Scrape {
            hook: Some(hook),
            last: None,
        };
    }

    /// Sets what `GET /ready` answers: 200 for `Ok`, 503 with the reason for `Err`.
    pub fn publish_ready(&self, state: Result<(), String>) {
        *self
            .shared
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = state;
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // A forked child has no copy of the thread to stop or join.
        if self.owner_pid != std::process::id() {
            return;
        }
        self.shared.stop.store(true, Ordering::Release);
        let Some(t) = self.thread.take() else { return };
        // Without the wake-up the thread could sleep on an idle poll: leave it rather than hang.
        if self.waker.wake().is_ok() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Reading the request head.
    Head,
    /// Writing the answer.
    Answer,
    /// Answer sent, write side shut: reading and dropping input until EOF or the deadline.
    Linger,
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    opened: Instant,
    deadline: Instant,
    /// The request head so far (Head), then the answer (Answer).
    buf: Vec<u8>,
    /// Bytes of the answer written.
    sent: usize,
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    shared: Arc<Shared>,
    conns: HashMap<Token, Conn>,
    next: usize,
    accept_paused_until: Option<Instant>,
}

impl Server {
    fn run(mut self) {
        let mut events = Events::with_capacity(128);
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The poll itself is broken: nothing can be served any more.
                return;
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    t => self.ready(t),
                }
            }
            let now = Instant::now();
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                self.accept();
            }
            self.expire(now);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .values()
            .map(|c| c.deadline)
            .chain(self.accept_paused_until)
            .min()
    }

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        // A burst is taken MAX_CLIENTS at a time, so the clients already in get their turn;
        // the rest are taken on the next round (a pause that ends now: poll does not block).
        for _ in 0..MAX_CLIENTS {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(_) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the backlog keeps the clients until then.
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
        self.accept_paused_until = Some(Instant::now());
    }

    fn admit(&mut self, mut stream: TcpStream) {
        if self.conns.len() >= MAX_CLIENTS && !self.evict_one() {
            // Every slot is busy writing an answer: refuse this one rather than keep it waiting.
            return;
        }
        let token = Token(self.next);
        self.next += 1;
        // The answer goes out in one buffer; without Nagle its tail is not held for an ACK.
        let _ = stream.set_nodelay(true);
        if self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            return;
        }
        let now = Instant::now();
        self.conns.insert(
            token,
            Conn {
                stream,
                phase: Phase::Head,
                opened: now,
                deadline: now + HEAD_TIMEOUT,
                buf: Vec::new(),
                sent: 0,
            },
        );
    }

    /// Makes room for a new client: a lingering connection if any (its answer is out), else
    /// the oldest one still sending its request head. False if every one is taking an answer.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Linger)
            .min_by_key(|(_, c)| c.opened)
            .or_else(|| {
                self.conns
                    .iter()
                    .filter(|(_, c)| c.phase == Phase::Head)
                    .min_by_key(|(_, c)| c.opened)
            })
            .map(|(&t, _)| t);
        match victim {
            Some(t) => {
                self.conns.remove(&t);
                true
            }
            None => false,
        }
    }

    fn ready(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if !c.advance(&self.shared) {
            self.conns.remove(&t);
        }
    }

    fn expire(&mut self, now: Instant) {
        self.conns.retain(|_, c| {
            if now < c.deadline {
                return true;
            }
            if c.phase == Phase::Head && !c.buf.is_empty() {
                // Best effort, one non-blocking write: say why before closing.
                let out = reply(
                    408,
                    false,
                    &format!(
                        "request head not complete within {} s\n",
                        HEAD_TIMEOUT.as_secs()
                    ),
                );
                let _ = c.stream.write(&out);
            }
            false
        });
    }
}

impl Conn {
    /// Moves the connection on as far as the socket allows. False when it is done with.
    fn advance(&mut self, shared: &Shared) -> bool {
        loop {
            match self.phase {
                Phase::Head => match self.read_head() {
                    Ok(Some(head_end)) => {
                        self.buf = answer(&self.buf[..head_end], shared);
                        self.sent = 0;
                        self.phase = Phase::Answer;
                        self.deadline = Instant::now() + WRITE_TIMEOUT;
                    }
                    Ok(None) => return true,
                    Err(_) => return false,
                },
                Phase::Answer => match self.write_answer() {
                    Ok(true) => {
                        if self.stream.shutdown(Shutdown::Write).is_err() {
                            return false;
                        }
                        self.buf = Vec::new();
                        self.phase = Phase::Linger;
                        self.deadline = Instant::now() + LINGER;
                    }
                    Ok(false) => return true,
                    Err(_) => return false,
                },
                Phase::Linger => {
                    // At most 64 KiB a turn, so a client that keeps sending cannot hold the
                    // thread; new input is a new edge, and the deadline ends it anyway.
                    let mut scratch = [0u8; 4096];
                    for _ in 0..16 {
                        match self.stream.read(&mut scratch) {
                            Ok(0) => return false,
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => return false,
                        }
                    }
                    return true;
                }
            }
        }
    }

    /// Reads what is there. `Some(n)`: the request head is complete in `buf[..n]`, or it is
    /// over the limit (then `n > MAX_HEAD`). `None`: wait for more. EOF before the end is an
    /// error: the client gave up.
    fn read_head(&mut self) -> io::Result<Option<usize>> {
        let mut chunk = [0u8; 4096];
        loop {
            let from = self.buf.len().saturating_sub(3);
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Some(end) = head_end(&self.buf, from) {
                return Ok(Some(end));
            }
            if self.buf.len() > MAX_HEAD {
                return Ok(Some(self.buf.len()));
            }
        }
    }

    /// Writes what the socket takes. True once all of it is out.
    fn write_answer(&mut self) -> io::Result<bool> {
        while self.sent < self.buf.len() {
            // TcpStream::write is send(MSG_NOSIGNAL): a client gone away is an error, not a
            // SIGPIPE in a C or Node host that did not ignore it.
            match self.stream.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Where the head ends (just past its empty line), looking from `from` on. A bare LF ends a
/// line too (RFC 9112 lets a server accept it).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\n\r\n") {
            Some(i + 3)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// The whole answer to a request head (or to the first `MAX_HEAD`+ bytes of one).
fn answer(head: &[u8], shared: &Shared) -> Vec<u8> {
    let head_only = head.starts_with(b"HEAD ");
    if head.len() > MAX_HEAD {
        return reply(
            431,
            head_only,
            &format!("request head over {MAX_HEAD} bytes\n"),
        );
    }
    match route(head) {
        Ok(Route::Ready) => {
            let state = shared
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            match state {
                Ok(()) => reply(200, head_only, "ready\n"),
                Err(why) => reply(503, head_only, &format!("not ready: {why}\n")),
            }
        }
        Ok(Route::Metrics) => {
            let scraped = scrape(shared);
            let mut text = shared
                .text
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            text.push_str(&scraped);
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                text.len()
            )
            .into_bytes();
            if !head_only {
                out.extend_from_slice(text.as_bytes());
            }
            out
        }
        Err((status, why)) => reply(status, head_only, why),
    }
}

/// The scrape hook's text: run now unless it ran within [`SCRAPE_MIN_INTERVAL`].
fn scrape(shared: &Shared) -> String {
    let mut sc = shared.scrape.lock().unwrap_or_else(PoisonError::into_inner);
    let sc = &mut *sc;
    let Some(hook) = sc.hook.as_mut() else {
        return String::new();
    };
    let now = Instant::now();
    match &sc.last {
        Some((at, text)) if now.duration_since(*at) < SCRAPE_MIN_INTERVAL => text.clone(),
        _ => {
            let workers = shared
                .workers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let text = hook(&workers);
            sc.last = Some((now, text.clone()));
            text
        }
    }
}

/// What a request asks for.
enum Route {
    /// `/metrics` or `/`.
    Metrics,
    /// `/ready`.
    Ready,
}

/// Checks the request line: the route for GET or HEAD of `/metrics`, `/` or `/ready`, else
/// the status and a line for the body.
fn route(head: &[u8]) -> Result<Route, (u16, &'static str)> {
    const BAD: (u16, &str) = (400, "malformed request line\n");
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| BAD)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty()
        || !method.bytes().all(tchar)
        || !target.starts_with('/')
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Err(BAD);
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let route = match path {
        "/metrics" | "/" => Route::Metrics,
        "/ready" => Route::Ready,
        _ => {
            return Err((
                404,
                "not found: the metrics are at /metrics, readiness at /ready\n",
            ))
        }
    };
    match method {
        "GET" | "HEAD" => Ok(route),
        _ => Err((405, "method not allowed: use GET or HEAD\n")),
    }
}

/// A complete non-200 answer; a HEAD request gets its head only.
fn reply(status: u16, head_only: bool, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\n{allow}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}
