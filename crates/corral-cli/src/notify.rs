//! Per-worker `NOTIFY_SOCKET`s: sd_notify from programs that know nothing of corral.
//!
//! Each worker gets its own datagram socket (a file in a 0700 directory corral creates and
//! removes), so a message names its worker by the socket it arrives on, also when a child of
//! the worker sends it (gunicorn's arbiter, uvicorn's supervisor). One socket per worker
//! rather than one shared socket with `SO_PASSCRED`: the pid of a grandchild would not match.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// The directory of one cluster's notify sockets.
#[derive(Debug)]
pub struct NotifyDir {
    dir: PathBuf,
    seq: u64,
}

impl NotifyDir {
    /// Creates `base/NAME.PID.notify/` (0700), removed again on drop.
    pub fn create(base: &Path, name: &str) -> io::Result<NotifyDir> {
        let dir = base.join(format!("{name}.{}.notify", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        // The mode above is filtered by the umask; the directory is what keeps other users
        // from sending READY=1 for our workers.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(NotifyDir { dir, seq: 0 })
    }

    /// A new bound, non-blocking socket and its path. `sun_path` holds 107 bytes: a longer
    /// path fails here with a message naming it.
    pub fn socket(&mut self) -> io::Result<(PathBuf, UnixDatagram)> {
        self.seq += 1;
        let path = self.dir.join(format!("w{}", self.seq));
        let sock = UnixDatagram::bind(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("bind NOTIFY_SOCKET {}: {e}", path.display()),
            )
        })?;
        sock.set_nonblocking(true)?;
        Ok((path, sock))
    }
}

impl Drop for NotifyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one sd_notify datagram said (newline-separated `KEY=VALUE` assignments).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notice {
    pub ready: bool,
    pub watchdog: bool,
    pub stopping: bool,
    pub reloading: bool,
    pub status: Option<String>,
}

/// Parses one datagram; unknown keys and malformed lines are ignored, as systemd does.
pub fn parse(msg: &[u8]) -> Notice {
    let mut n = Notice::default();
    for line in String::from_utf8_lossy(msg).lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => n.ready = true,
            Some(("WATCHDOG", "1")) => n.watchdog = true,
            Some(("STOPPING", "1")) => n.stopping = true,
            Some(("RELOADING", "1")) => n.reloading = true,
            Some(("STATUS", s)) => n.status = Some(s.chars().take(256).collect()),
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_sets_what_it_names_and_ignores_the_rest() {
        let n = parse(b"READY=1\nSTATUS=serving 3 clients\nMAINPID=12\nbogus\nWATCHDOG=0");
        assert!(n.ready && !n.watchdog && !n.stopping);
        assert_eq!(n.status.as_deref(), Some("serving 3 clients"));
        assert_eq!(
            parse(b"WATCHDOG=1"),
            Notice {
                watchdog: true,
                ..Notice::default()
            }
        );
    }
}
