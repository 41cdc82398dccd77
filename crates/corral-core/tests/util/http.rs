//! HTTP clients for the metrics endpoint tests: one request with a deadline, a client that
//! trickles its request a byte at a time (slowloris), and a check that a socket is still open.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Sends `request` and reads the answer until the server closes; `Err` says what went wrong
/// (including no answer within `timeout`).
pub fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Result<Answer, String> {
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.write_all(request).map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no complete answer within {timeout:?} ({} bytes so far)",
                raw.len()
            ));
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("read after {} bytes: {e}", raw.len())),
        }
    }
    Answer::parse(&raw)
}

/// A parsed answer.
#[derive(Debug)]
pub struct Answer {
    /// Status line and headers, without the empty line.
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn parse(raw: &[u8]) -> Result<Answer, String> {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("no end of head in {:?}", String::from_utf8_lossy(raw)))?;
        Ok(Answer {
            head: String::from_utf8_lossy(&raw[..end]).into_owned(),
            body: raw[end + 4..].to_vec(),
        })
    }

    pub fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {:?}", self.head))
    }

    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A client that sends `request` one byte every `interval` from a thread, at most
/// `request.len()` bytes; dropping it stops the thread (at once) and closes the socket.
pub struct SlowClient {
    /// A handle on the same socket, for the test to read from.
    pub reader: TcpStream,
    pub connected: Instant,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowClient {
    pub fn start(addr: SocketAddr, request: &[u8], interval: Duration) -> SlowClient {
        let s = TcpStream::connect(addr).expect("slow client connect");
        let connected = Instant::now();
        let mut w = s.try_clone().unwrap();
        let (stop, stopped) = mpsc::channel::<()>();
        let request = request.to_vec();
        let thread = std::thread::spawn(move || {
            for b in request {
                if w.write_all(&[b]).is_err() {
                    return;
                }
                // A message or a dropped sender both mean stop.
                if !matches!(
                    stopped.recv_timeout(interval),
                    Err(mpsc::RecvTimeoutError::Timeout)
                ) {
                    return;
                }
            }
        });
        SlowClient {
            reader: s,
            connected,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for SlowClient {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Panics unless the server still holds `s` open: nothing to read, no EOF, no error.
pub fn assert_open(s: &TcpStream, what: &str) {
    s.set_nonblocking(true).unwrap();
    let r = (&*s).read(&mut [0u8; 1]);
    s.set_nonblocking(false).unwrap();
    match r {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok(0) => panic!("{what}: the server closed it"),
        Ok(_) => panic!("{what}: the server answered it"),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Waits up to `timeout` for the server to close `s` (EOF or reset, after any answer);
/// returns what was read before. Panics naming `what` if it stays open.
pub fn wait_closed(s: &TcpStream, what: &str, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: still open after {timeout:?}");
        s.set_read_timeout(Some(left)).unwrap();
        match (&*s).read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return got,
        }
    }
}
