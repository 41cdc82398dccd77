//! Fds received with `SCM_RIGHTS`: the control buffer both channel backends hand to `recvmsg`
//! (`SOCK_SEQPACKET` on Linux, the `SOCK_STREAM` records on macOS), and the walk that takes
//! ownership of every fd the kernel installed. libc, not nix: nix's `RecvMsg::cmsgs()` refuses
//! to walk the control data when `MSG_CTRUNC` is set (nix#2413), and then the fds the kernel
//! did install before it ran out (EMFILE) would leak.

use std::mem;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Most fds one datagram (or record) may carry.
pub const MAX_FDS: usize = 16;

const CMSG_SPACE_FDS: usize = 128; // >= CMSG_SPACE(MAX_FDS * sizeof(int)) on every ABI

/// Room for the control data of one datagram with up to [`MAX_FDS`] fds, aligned as a
/// `cmsghdr`.
#[repr(C, align(8))]
pub(super) struct CmsgBuf([u8; CMSG_SPACE_FDS]);

impl CmsgBuf {
    pub(super) fn new() -> CmsgBuf {
        CmsgBuf([0; CMSG_SPACE_FDS])
    }

    /// Points `msg`'s control fields at this buffer (which must outlive the call using `msg`).
    pub(super) fn attach(&mut self, msg: &mut libc::msghdr) {
        msg.msg_control = self.0.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_SPACE_FDS as _;
    }
}

/// An `iovec` over `buf`, for `recvmsg` to fill (`buf` must outlive the call).
pub(super) fn iovec(buf: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    }
}

/// Appends every fd of `msg`'s `SCM_RIGHTS` control messages to `fds`, owned.
///
/// # Safety
/// The kernel filled `msg` (its control data through a [`CmsgBuf`]) in the `recvmsg` or
/// `recvmmsg` call that just returned, and nothing took its fds yet: each is owned once.
pub(super) unsafe fn take_rights(msg: &libc::msghdr, fds: &mut Vec<OwnedFd>) {
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsg headers; we walk
    // them with the CMSG_* macros and take ownership of every SCM_RIGHTS fd exactly once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..bytes / mem::size_of::<RawFd>() {
                    let fd = data.cast::<RawFd>().add(i).read_unaligned();
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
}
