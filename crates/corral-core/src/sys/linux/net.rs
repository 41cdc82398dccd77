//! accept4 with close-on-exec; Unix socket names that fit `sun_path`.

#[cfg(not(feature = "portable"))]
use nix::errno::Errno;
#[cfg(not(feature = "portable"))]
use nix::sys::socket::{accept4, SockFlag};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
#[cfg(not(feature = "portable"))]
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[cfg(not(feature = "portable"))]
/// Accepts one connection as a close-on-exec fd, in blocking mode unless `nonblocking` (the
/// receiving worker picks its own I/O model; asked here, it costs no `fcntl`). `Ok(None)` when
/// the (non-blocking) listener has nothing pending.
pub fn accept_cloexec(listener: BorrowedFd<'_>, nonblocking: bool) -> io::Result<Option<OwnedFd>> {
    let flags = if nonblocking {
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK
    } else {
        SockFlag::SOCK_CLOEXEC
    };
    loop {
        match accept4(listener, flags) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Ok(None),
            // The peer gave up between SYN and accept: not our error, try the next one.
            Err(Errno::ECONNABORTED | Errno::EPROTO) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(not(feature = "portable"))]
/// Connections waiting in a TCP listener's accept queue (`tcpi_unacked` of `TCP_INFO`, which
/// is the accept backlog for a socket in `LISTEN`); `None` for other sockets (Unix listeners).
/// libc: nix has no `TCP_INFO` socket option.
///
/// Lets the primary accept exactly what is queued instead of draining to `EAGAIN`: on Linux a
/// failing `accept4` still allocates and frees a socket (about 3.4 µs measured on 6.18, a
/// third of a call per connection under load). An edge-triggered poller stays correct: every
/// connection queued after this query raises a new edge.
pub fn accept_queue_len(listener: BorrowedFd<'_>) -> Option<u32> {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid pointers to `info` and `len` for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    const TCP_LISTEN: u8 = 10;
    let reached = std::mem::offset_of!(libc::tcp_info, tcpi_unacked) + 4;
    (rc == 0 && len as usize >= reached && info.tcpi_state == TCP_LISTEN)
        .then_some(info.tcpi_unacked)
}

/// Longest Unix socket path `bind(2)` takes (`sun_path` is 108 bytes with its NUL).
pub const SUN_PATH_MAX: usize = 107;

/// A name for the socket file `path` (absolute) short enough for `sun_path`: `path` itself when
/// it fits, else `/proc/self/fd/<dir>/<file name>` through an `O_PATH` handle on its directory,
/// which must stay open while the name is used (systemd's `sockaddr_un_set_path` does the
/// same). Unlike binding a path relative to the cwd (Node's way), it does not race a
/// `chdir` by another thread of the process. `ENAMETOOLONG` when even that does not fit.
pub fn short_socket_path(path: &Path) -> io::Result<(PathBuf, Option<File>)> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return Ok((path.to_path_buf(), None));
    }
    let too_long = || io::Error::from_raw_os_error(libc::ENAMETOOLONG);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(too_long());
    };
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?;
    let short = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    if short.as_os_str().len() > SUN_PATH_MAX {
        return Err(too_long());
    }
    Ok((short, Some(dir)))
}

#[cfg(all(test, not(feature = "portable")))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn accept_queue_len_counts_what_accept_would_return() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(accept_queue_len(l.as_fd()), Some(0));
        // Loopback handshakes complete inside connect().
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        assert_eq!(accept_queue_len(l.as_fd()), Some(3));
        let mut taken = 0;
        while accept_cloexec(l.as_fd(), false).unwrap().is_some() {
            taken += 1;
        }
        assert_eq!(taken, 3);
        assert_eq!(accept_queue_len(l.as_fd()), Some(0));
        drop(clients);
    }

    /// `AcceptQueue` stops at what was queued when it asked, without a failing accept, and
    /// asks again after `forget`; `accept_cloexec` gives each connection the mode asked.
    #[test]
    fn an_accept_queue_takes_what_was_queued_and_connections_come_in_the_mode_asked() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let mut clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut q = crate::sys::AcceptQueue::default();
        for i in 0..3 {
            assert!(q.take_one(l.as_fd()), "connection {i} is counted as queued");
            let nonblocking = i % 2 == 1;
            let fd = accept_cloexec(l.as_fd(), nonblocking).unwrap().unwrap();
            let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
            assert_eq!(flags & libc::O_NONBLOCK != 0, nonblocking, "connection {i}");
        }
        assert!(!q.take_one(l.as_fd()), "drained: no accept is tried");
        // One that arrives after the count raises a new readiness: counted once forgotten.
        clients.push(std::net::TcpStream::connect(addr).unwrap());
        assert!(!q.take_one(l.as_fd()));
        q.forget();
        assert!(q.take_one(l.as_fd()));
        assert!(accept_cloexec(l.as_fd(), false).unwrap().is_some());
        assert!(!q.take_one(l.as_fd()));
    }

    #[test]
    fn accept_queue_len_is_none_for_other_sockets() {
        let dir = std::env::temp_dir().join(format!("corral-aql-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let u = std::os::unix::net::UnixListener::bind(&dir).unwrap();
        assert_eq!(accept_queue_len(u.as_fd()), None);
        let _ = std::fs::remove_file(&dir);
        let c = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(c.local_addr().unwrap()).unwrap();
        assert_eq!(
            accept_queue_len(s.as_fd()),
            None,
            "a connected socket is not a listener"
        );
    }
}
