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
use std::time::Duration;

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

    /// Connections waiting to be answered (at most 16 a call, so status requests cannot
    /// starve the cluster's loop).
    pub fn accept_waiting(&self) -> Vec<UnixStream> {
        let mut out = Vec::new();
        while out.len() < 16 {
            match self.listener.accept() {
                Ok((s, _)) => out.push(s),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        eprintln!("corral: control socket accept: {e}");
                    }
                    break;
                }
            }
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers one request with `handle`, after checking the peer's uid. The client gets 1 s to
/// send its line (the loop waits for it: only the owner or root can connect).
pub fn answer(stream: &UnixStream, mut handle: impl FnMut(Value) -> Value) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
    let me = nix::unistd::geteuid().as_raw();
    // The line is read before any answer, also from a refused peer: answering and closing
    // with its request unread would reset the connection and lose the answer.
    let mut line = String::new();
    BufReader::new(stream.take(4096)).read_line(&mut line)?;
    let reply = if cred.uid() != me && cred.uid() != 0 {
        json!({"ok": false, "error": format!(
            "refused: uid {} is neither this cluster's owner (uid {me}) nor root", cred.uid())})
    } else {
        match serde_json::from_str::<Value>(&line) {
            Ok(req) => handle(req),
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        }
    };
    let mut w = stream;
    writeln!(w, "{reply}")?;
    Ok(())
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
            eprintln!("corral {cmd}: {e}");
            1
        }
    }
}

/// `corral status [--json]`.
pub fn client_status(target: &Target, as_json: bool) -> i32 {
    let v = match request(target, json!({"cmd": "status"})) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("corral status: {e}");
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
        "{:>4} {:>6} {:>8} {:>10} {:>6} {:>9} {:>10} {:>8}  status",
        "slot", "id", "pid", "state", "ready", "uptime", "rss", "cpu"
    );
    for w in v["workers"].as_array().into_iter().flatten() {
        println!(
            "{:>4} {:>6} {:>8} {:>10} {:>6} {:>8.1}s {:>9}K {:>7.2}s  {}",
            w["slot"].to_string(),
            w["id"].to_string(),
            w["pid"].to_string(),
            w["state"].as_str().unwrap_or("?"),
            w["ready"].to_string(),
            w["uptime_seconds"].as_f64().unwrap_or(0.0),
            w["rss_bytes"].as_u64().unwrap_or(0) / 1024,
            w["cpu_seconds"].as_f64().unwrap_or(0.0),
            w["status"].as_str().unwrap_or("")
        );
    }
    0
}
