//! Integer socket options nix has no type for (`SO_PEEK_OFF`, `SO_ATTACH_REUSEPORT_EBPF`,
//! `SO_NOSIGPIPE`, `TCP_DEFER_ACCEPT`): one `setsockopt` call for all of them; and the one socket `ioctl` both
//! channel backends need (`FIONREAD`), which nix has no wrapper for either. Options nix has go
//! through `nix::sys::socket::setsockopt` with its `sockopt` types instead.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Sets the `c_int` option `name` at `level` (`SOL_SOCKET`, ...) on `sock` to `value`.
pub(super) fn set_int_sockopt(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads one int from `value`, a local that outlives the call, and the
    // length says so; `sock` is a borrowed, open fd.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes queued for reading on `sock` (`FIONREAD`, alias `SIOCINQ`: the sum over the queue
/// for a Unix `SOCK_STREAM` or `SOCK_SEQPACKET` socket).
pub(super) fn queued_bytes(sock: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into our local; `sock` is a borrowed, open fd.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}
