//! The control socket: `corral status|reload|scale|stop` talk to a running `corral run`.
//!
//! A Unix stream socket, mode 0600, at `--control PATH` or `NAME.sock` in
//! `$XDG_RUNTIME_DIR/corral/` (`/run/corral/` for root). One request per connection: a JSON
//! line in, a JSON line out. The peer's uid (`SO_PEERCRED`) must be corral's own or root, also
//! when the file's mode was loosened by hand.

use crate::args::Target;
use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the runtime files of clusters live: `$XDG_RUNTIME_DIR/corral`, `/run/corral` for root,
/// else the temporary directory's `corral-UID`.
pub fn runtime_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("corral"),
        None if uid.is_root() => PathBuf::from("/run/corral"),
        None => std::env::temp_dir().join(format!("corral-{uid}")),
    }
}

/// The control socket's path for `target`.
pub fn socket_path(target: &Target) -> PathBuf {
    target
        .control
        .clone()
        .unwrap_or_else(|| runtime_dir().join(format!("{}.sock", target.name)))
}

/// Creates `dir` (0700) if it is missing.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The listening side, owned by `corral run`; the file is removed on drop.
#[derive(Debug)]
pub struct Server {
    pub listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

impl Server {
    /// Binds the socket 0600. A live cluster already answering there is an error; a stale
    /// file (its corral died) is replaced.
    pub fn bind(target: &Target) -> Result<Server, String> {
        let path = socket_path(target);
        let what = |e: &dyn std::fmt::Display| format!("control socket {}: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_dir(dir).map_err(|e| what(&e))?;
        }
        if UnixStream::connect(&path).is_ok() {
            return Err(what(
                &"another corral is running there (stop it, or give this one another --name)",
            ));
        }
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| what(&e))?;
        }
        // The mode is set while binding (umask 0177): chmod afterwards would leave a moment
        // when other users could connect. umask is process-wide; nothing else runs yet.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = std::os::unix::net::UnixListener::bind(&path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(|e| what(&e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| what(&e))?;
        listener.set_nonblocking(true).map_err(|e| what(&e))?;
        Ok(Server { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// New connections (at most 16 a call, so a flood cannot hold the cluster's loop), each
    /// non-blocking with 1 s to send its request line.
    pub fn accept_waiting(&self) -> Vec<Pending> {
        let mut out = Vec::new();
        while out.len() < 16 {
            match self.listener.accept() {
                Ok((stream, _)) => match Pending::new(stream) {
                    Ok(p) => out.push(p),
                    Err(e) => say!("corral: control connection: {e}"),
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        say!("corral: control socket accept: {e}");
                    }
                    break;
                }
            }
        }
        out
    }
}

/// How long a client has to send its request line.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(1);
const MAX_REQUEST: usize = 4096;

/// A control connection whose request line is still arriving. The cluster's loop reads it
/// when it is readable, never waiting on it.
#[derive(Debug)]
pub struct Pending {
    pub stream: UnixStream,
    buf: Vec<u8>,
    pub deadline: Instant,
    /// `Err(reason)` for a peer that is neither the owner nor root.
    allowed: Result<(), String>,
}

/// What a pending connection has for the loop.
#[derive(Debug)]
pub enum Request {
    /// Not a whole line yet.
    Incomplete,
    /// A request to answer with the handler.
    Ready(Value),
    /// To answer with this error (refused peer, bad JSON, too long, too slow).
    Refuse(String),
}

impl Pending {
    fn new(stream: UnixStream) -> io::Result<Pending> {
        stream.set_nonblocking(true)?;
        let cred =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)?;
        let me = nix::unistd::geteuid().as_raw();
        let allowed = if cred.uid() == me || cred.uid() == 0 {
            Ok(())
        } else {
            Err(format!(
                "refused: uid {} is neither this cluster's owner (uid {me}) nor root",
                cred.uid()
            ))
        };
        Ok(Pending {
            stream,
            buf: Vec::new(),
            deadline: Instant::now() + REQUEST_DEADLINE,
            allowed,
        })
    }

    /// Reads what has arrived. The line is read before any answer, also from a refused
    /// peer: answering and closing with its request unread would reset the connection and
    /// lose the answer.
    pub fn poll(&mut self, now: Instant) -> Request {
        let mut chunk = [0u8; 1024];
        loop {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if self.buf.contains(&b'\n') {
                        break;
                    }
                    if self.buf.len() > MAX_REQUEST {
                        return Request::Refuse(format!(
                            "bad request: longer than {MAX_REQUEST} bytes"
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if now >= self.deadline {
                        return Request::Refuse(format!(
                            "bad request: no request line within {} ms",
                            REQUEST_DEADLINE.as_millis()
                        ));
                    }
                    return Request::Incomplete;
                }
                Err(e) => return Request::Refuse(format!("bad request: {e}")),
            }
        }
        if let Err(why) = &self.allowed {
            return Request::Refuse(why.clone());
        }
        let line = self.buf.split(|&b| b == b'\n').next().unwrap_or_default();
        match serde_json::from_slice::<Value>(line) {
            Ok(req) => Request::Ready(req),
            Err(e) => Request::Refuse(format!("bad request: {e}")),
        }
    }

    /// Writes the answer line (1 s at most) and closes the connection.
    pub fn reply(self, reply: &Value) {
        let r = self
            .stream
            .set_nonblocking(false)
            .and_then(|_| self.stream.set_write_timeout(Some(REQUEST_DEADLINE)))
            .and_then(|_| writeln!(&self.stream, "{reply}"));
        if let Err(e) = r {
            say!("corral: control answer: {e}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends one request and returns the answer, or a one-line reason.
fn request(target: &Target, req: Value) -> Result<Value, String> {
    let path = socket_path(target);
    let s = UnixStream::connect(&path).map_err(|e| {
        format!(
            "control socket {}: {e} (is `corral run --name {}` running, as this user?)",
            path.display(),
            target.name
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|_| s.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| e.to_string())?;
    let mut w = &s;
    writeln!(w, "{req}").map_err(|e| format!("control socket {}: send: {e}", path.display()))?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .map_err(|e| format!("control socket {}: no answer: {e}", path.display()))?;
    let v: Value = serde_json::from_str(&line)
        .map_err(|e| format!("control socket {}: bad answer: {e}", path.display()))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v)
    } else {
        Err(v["error"].as_str().unwrap_or("request failed").to_string())
    }
}

/// `corral reload|scale N|stop`.
pub fn client_simple(target: &Target, cmd: &str, workers: Option<usize>) -> i32 {
    let mut req = json!({"cmd": cmd});
    if let Some(n) = workers {
        req["workers"] = json!(n);
    }
    match request(target, req) {
        Ok(v) => {
            println!("{}", v["message"].as_str().unwrap_or("ok"));
            0
        }
        Err(e) => {
            say!("corral {cmd}: {e}");
            1
        }
    }
}

/// `corral status [--json]`.
pub fn client_status(target: &Target, as_json: bool) -> i32 {
    let v = match request(target, json!({"cmd": "status"})) {
        Ok(v) => v,
        Err(e) => {
            say!("corral status: {e}");
            return 1;
        }
    };
    if as_json {
        println!("{v}");
        return 0;
    }
    println!(
        "cluster {} (pid {}): {} workers wanted, {}",
        v["name"].as_str().unwrap_or("?"),
        v["pid"],
        v["wanted"],
        if v["reloading"] == Value::Bool(true) {
            "reloading"
        } else {
            "steady"
        }
    );
    for l in v["listeners"].as_array().into_iter().flatten() {
        println!(
            "  listen {} = {}",
            l["name"].as_str().unwrap_or("?"),
            l["address"].as_str().unwrap_or("?")
        );
    }
    println!(
        "{:>4} {:>6} {:>8} {:>10} {:>6} {:>9} {:>10} {:>8} {:>6}  status",
        "slot", "id", "pid", "state", "ready", "uptime", "rss", "cpu", "conns"
    );
    for w in v["workers"].as_array().into_iter().flatten() {
        println!(
            "{:>4} {:>6} {:>8} {:>10} {:>6} {:>8.1}s {:>9}K {:>7.2}s {:>6}  {}",
            w["slot"].to_string(),
            w["id"].to_string(),
            w["pid"].to_string(),
            w["state"].as_str().unwrap_or("?"),
            w["ready"].to_string(),
            w["uptime_seconds"].as_f64().unwrap_or(0.0),
            w["rss_bytes"].as_u64().unwrap_or(0) / 1024,
            w["cpu_seconds"].as_f64().unwrap_or(0.0),
            // Unknown (the kernel would not tell): "-", not 0.
            w["connections"]
                .as_u64()
                .map_or("-".to_string(), |n| n.to_string()),
            w["status"].as_str().unwrap_or("")
        );
    }
    0
}
