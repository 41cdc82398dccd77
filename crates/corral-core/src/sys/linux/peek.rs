//! A new connection's first bytes and its peer, for the primary's routing (PROXY protocol
//! header, sticky key): `getpeername`, `recv(MSG_PEEK | MSG_DONTWAIT)`, and consuming exactly
//! what was peeked. POSIX: shared with macOS (`sys/macos/mod.rs`).

use nix::errno::Errno;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The peer address of a connected IP socket; `None` for other sockets (Unix) and for a peer
/// already gone (`ENOTCONN`).
pub fn peer_addr(sock: BorrowedFd<'_>) -> io::Result<Option<std::net::SocketAddr>> {
    match socket2::SockRef::from(&sock).peer_addr() {
        Ok(a) => Ok(a.as_socket()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Copies what a connected socket has received into `buf` without consuming it (`MSG_PEEK`,
/// non-blocking whatever the socket's mode). `Ok(None)` when nothing has arrived yet;
/// `Ok(Some(0))` at end of stream.
pub fn peek_stream(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    use nix::sys::socket::{recv, MsgFlags};
    loop {
        match recv(
            sock.as_raw_fd(),
            buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Asks the kernel to hand out a TCP listener's connections only once their first bytes came
/// (Linux `TCP_DEFER_ACCEPT`, nginx's `deferred`), waiting at most about `secs` seconds for
/// them (the kernel counts SYN-ACK retransmissions: a silent client is accepted after that).
/// The primary then finds what it peeks at already there, instead of watching each new
/// connection until its request comes. `Ok(false)` where the system has no such option
/// (macOS).
pub fn defer_accept(listener: BorrowedFd<'_>, secs: u32) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        let secs = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
        crate::sys::sockopt::set_int_sockopt(
            listener,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            secs,
        )?;
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (listener, secs);
        Ok(false)
    }
}

/// Consumes exactly `n` bytes that [`peek_stream`] has already seen (they are in the socket's
/// receive queue, so a non-blocking read takes them whole). Fails with `UnexpectedEof` if fewer
/// came, which a queue that held them cannot do.
pub fn discard_peeked(sock: BorrowedFd<'_>, n: usize) -> io::Result<()> {
    use nix::sys::socket::{recv, MsgFlags};
    let mut buf = [0u8; 1024];
    let mut left = n;
    while left > 0 {
        let want = left.min(buf.len());
        match recv(sock.as_raw_fd(), &mut buf[..want], MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(got) => left -= got,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn peek_leaves_the_bytes_and_discard_takes_exactly_those() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, from) = l.accept().unwrap();
        assert_eq!(peer_addr(s.as_fd()).unwrap(), Some(from));
        let mut buf = [0u8; 16];
        assert_eq!(
            peek_stream(s.as_fd(), &mut buf).unwrap(),
            None,
            "nothing sent yet"
        );
        c.write_all(b"PROXYhello").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let n = loop {
            if let Some(n) = peek_stream(s.as_fd(), &mut buf)
                .unwrap()
                .filter(|&n| n == 10)
            {
                break n;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the 10 bytes did not arrive in 5 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        assert_eq!(&buf[..n], b"PROXYhello");
        discard_peeked(s.as_fd(), 5).unwrap();
        let mut rest = [0u8; 16];
        let got = std::io::Read::read(&mut &s, &mut rest).unwrap();
        assert_eq!(&rest[..got], b"hello");
        drop(c);
        while peek_stream(s.as_fd(), &mut buf).unwrap() != Some(0) {
            assert!(
                std::time::Instant::now() < deadline,
                "no end of stream in 5 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}
