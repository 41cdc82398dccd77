//! corral itself as a systemd service: listeners from socket activation (`LISTEN_FDS` for
//! this process), and sd_notify to the service manager (`READY=1` once the pool is up,
//! `RELOADING=1` with `MONOTONIC_USEC` for `Type=notify-reload`, `STOPPING=1`, `STATUS=`,
//! `WATCHDOG=1` when `WATCHDOG_USEC` asks).
//!
//! The variables are read once at start and removed from corral's environment (as
//! `sd_listen_fds(1)` does), so the workers never see corral's own.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// What systemd handed this process.
#[derive(Debug, Default)]
pub struct Inherited {
    /// `(name, fd number)` of each `LISTEN_FDS` socket, from fd 3.
    pub listeners: Vec<(String, i32)>,
    /// The manager's notify socket, if any.
    pub notify: Option<Notifier>,
    /// Send `WATCHDOG=1` this often (half of `WATCHDOG_USEC`).
    pub watchdog: Option<Duration>,
}

const VARS: [&str; 6] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// Reads and removes the variables. Call before any thread starts (it edits the environment).
pub fn take() -> Result<Inherited, String> {
    let get = |k: &str| std::env::var(k).ok();
    let me = std::process::id().to_string();
    let mut out = Inherited::default();
    let for_me = |pid: Option<String>| pid.map_or(true, |p| p == me);
    if let (Some(n), Some(pid)) = (get("LISTEN_FDS"), get("LISTEN_PID")) {
        if pid == me {
            let n: i32 = n
                .parse()
                .ok()
                .filter(|n| (0..=1024).contains(n))
                .ok_or_else(|| format!("LISTEN_FDS={n:?}: expected a count from 0 to 1024"))?;
            let names: Vec<String> = get("LISTEN_FDNAMES")
                .map(|s| s.split(':').map(str::to_string).collect())
                .unwrap_or_default();
            for i in 0..n {
                // Checked before corral opens anything: a missing fd's number would be
                // taken by corral's own next socket and adopted in its place.
                if !corral_core::fd_is_open(3 + i) {
                    return Err(format!(
                        "LISTEN_FDS={n} but fd {} is not open (the socket was not passed on)",
                        3 + i
                    ));
                }
                let name = names
                    .get(i as usize)
                    .cloned()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| format!("fd{}", 3 + i));
                out.listeners.push((name, 3 + i));
            }
        }
    }
    if let Some(path) = get("NOTIFY_SOCKET") {
        out.notify = Some(Notifier::new(path)?);
    }
    if let Some(us) = get("WATCHDOG_USEC") {
        if for_me(get("WATCHDOG_PID")) {
            let us: u64 = us
                .parse()
                .ok()
                .filter(|&u| u > 0)
                .ok_or_else(|| format!("WATCHDOG_USEC={us:?}: expected microseconds > 0"))?;
            out.watchdog = Some(Duration::from_micros(us / 2));
        }
    }
    for k in VARS {
        std::env::remove_var(k);
    }
    Ok(out)
}

/// sd_notify to the service manager.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    path: String,
}

impl Notifier {
    fn new(path: String) -> Result<Notifier, String> {
        let sock =
            UnixDatagram::unbound().map_err(|e| format!("NOTIFY_SOCKET {path}: socket: {e}"))?;
        Ok(Notifier { sock, path })
    }

    /// Sends one datagram; a manager that went away is not corral's failure (logged once).
    pub fn send(&self, msg: &str) {
        let r = match self.path.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
                    .and_then(|a| self.sock.send_to_addr(msg.as_bytes(), &a))
            }
            None => self.sock.send_to(msg.as_bytes(), &self.path),
        };
        if let Err(e) = r {
            say!("corral: sd_notify to NOTIFY_SOCKET {}: {e}", self.path);
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds, for `RELOADING=1`'s `MONOTONIC_USEC`.
pub fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}
