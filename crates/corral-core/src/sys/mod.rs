//! Everything that touches the operating system lives below this module.
//!
//! A platform must provide, with the same signatures as `sys/linux/`. The portable Unix
//! backend (`sys/unix/`) is what macOS runs; Linux runs it too with the `portable` feature, so
//! CI tests it (`cargo test -p corral-core --features portable`).
//!
//! | need                     | Linux (`sys/linux/`)                   | portable Unix (`sys/unix/`): macOS, Linux with `portable` |
//! |--------------------------|----------------------------------------|-------------------------------------------------|
//! | message channel          | `socketpair(AF_UNIX, SOCK_SEQPACKET)`  | `SOCK_STREAM` + `u32`-length-prefixed records, taken off only whole (`FIONREAD`), partial writes finished first (`send_rest`) |
//! | fd passing               | `SCM_RIGHTS`, `MSG_CMSG_CLOEXEC`       | `SCM_RIGHTS` on a record's first byte, then `FD_CLOEXEC` by `fcntl` |
//! | worker stopped reading?  | `recv(MSG_PEEK)` on the worker's end   | same (the record's head, after its length)      |
//! | what a worker's queue holds | `recv(MSG_PEEK)` walked with `SO_PEEK_OFF` | not known (`Unsupported`)                    |
//! | accept                   | `accept4(SOCK_CLOEXEC)`                | `accept` + `fcntl(FD_CLOEXEC)`, back to blocking |
//! | a connection's first bytes | `recv(MSG_PEEK \| MSG_DONTWAIT)`, `getpeername` (`linux/peek.rs`) | same file |
//! | accept once data came    | `TCP_DEFER_ACCEPT` (peeking listeners)  | none: connections are watched until their bytes come |
//! | accept queue length      | `TCP_INFO` (`tcpi_unacked`)            | none: accept until `EAGAIN` (no `TCP_INFO`; macOS's `TCP_CONNECTION_INFO` has no backlog) |
//! | spawn (exec) / fork      | `fork`/`execve` through `std::process` | same                                            |
//! | child watching           | `pidfd_open` (Linux 5.3) in the poller | `SIGCHLD` handler (chained, installed at the first worker) waking a pipe per child, then `waitpid(pid, WNOHANG)` |
//! | worker dies with primary | `PR_SET_PDEATHSIG` + channel EOF       | channel EOF only                                |
//! | poller                   | epoll through mio                      | kqueue through mio (macOS); epoll (Linux)       |
//! | CPU count                | affinity mask and cgroup v2 `cpu.max`  | Linux's (Linux); `std::thread::available_parallelism` (macOS) |
//! | worker starved of CPU?   | `/proc/PID/schedstat` (run and run-queue wait) | Linux's (Linux); not known (macOS)     |
//! | signal wake-up (opt-in)  | `sigaction` + self-pipe                | same                                            |
//!
//! On Linux the calls go through **nix** (socketpair, sendmsg with `ScmRights`, accept4, poll,
//! fcntl, pipe2, prctl, getrlimit, sysconf, sched_getaffinity, errno names) and std (fd
//! duplication), which own the fds they return. **libc** stays where nix is wrong or missing:
//!
//! | call                     | why libc                                                         |
//! |--------------------------|------------------------------------------------------------------|
//! | `recvmsg`, `recvmmsg` (SCM_RIGHTS) | nix's `cmsgs()` refuses to walk truncated control data (MSG_CTRUNC, nix#2413): the fds installed before EMFILE would leak; one walk for both backends (`rights.rs`) |
//! | `getsockopt(TCP_INFO)`   | nix has no `TCP_INFO` option                                      |
//! | `setsockopt` of an int   | nix has no `SO_PEEK_OFF`, `SO_ATTACH_REUSEPORT_EBPF` (only CBPF), `SO_NOSIGPIPE` or Linux `TCP_DEFER_ACCEPT` option: one call for them, `sockopt.rs` |
//! | `pidfd_open`             | nix has no pidfd_open                                             |
//! | `waitpid`                | nix turns a child killed by a real-time signal into EINVAL after reaping it |
//! | `kill`, `sigaction`      | nix's `Signal` has no real-time signals (SIGRTMIN+n)              |
//! | signal handler `write`   | raw async-signal-safe code, errno saved and restored              |
//! | `dup2` after fork        | the targets are numbers, not fds of this process (nix's dup2 replaces an `OwnedFd`) |
//! | `fcntl` on a bare number | `fd_is_open`, `F_DUPFD_CLOEXEC` of a spec's fd and of a listen's `fd:N`, `SO_TYPE` of an inherited fd: not known open, so not a `BorrowedFd` |
//! | `fork`                   | as unsafe in nix; the thread check before it is ours              |
//!
//! `unsafe` is allowed here and in the C ABI crate only; every block says why it is sound.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::*;

#[cfg(any(target_os = "linux", target_os = "macos"))]
mod unix;

#[cfg(any(target_os = "linux", target_os = "macos"))]
mod rights;
mod sockopt;
mod steer;
pub use steer::{LoadRelease, Steer, LOAD_EMPTY};
// Named imports shadow the globs above: with `portable` these replace Linux's own.
#[cfg(any(feature = "portable", target_os = "macos"))]
pub use unix::{
    accept_cloexec, accept_queue_len, peek_datagram, pidfd_open, queued_heads, reap, recv_datagram,
    recv_datagrams, send_datagram, send_rest, seqpacket_pair, Received, MAX_FDS,
};

/// What [`send_datagram`] did with one datagram.
#[derive(Debug)]
pub enum DatagramSent {
    /// All of it went out (always so on a `SOCK_SEQPACKET` channel).
    Whole,
    /// Only its start went (the portable backend's `SOCK_STREAM` records, non-blocking): these
    /// are its remaining bytes, to write with [`send_rest`] before anything else. Its fds went
    /// with the start.
    Partly(Vec<u8>),
}

/// What follows the datagram that [`recv_datagrams`] returns first.
#[derive(Debug)]
pub enum More {
    /// The datagram behind it, read by the same call (into the second buffer).
    Next(Received),
    /// Nothing: the queue was empty behind the first datagram when the call returned.
    Empty,
    /// Not known (the portable backend reads one record per call).
    Unknown,
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!(
    "corral-core supports Linux and macOS: another Unix needs sys/<os>/ with the per-OS parts \
     of sys/macos/ (CPU count, process figures, socket path limit), the portable backend in \
     sys/unix/ gives the rest; see the table in sys/mod.rs"
);

/// What is known of a listener's accept queue since its last readiness: lets the primary's
/// dealer and a worker accepting on its own socket take exactly what is queued, without the
/// failing `accept4` that ends a drain to `EAGAIN` (on Linux it allocates and frees a socket).
/// The kernel is asked once per readiness ([`accept_queue_len`]); every connection queued
/// after that raises a new edge, so an edge-triggered poller stays correct. Where the length
/// is unknown (Unix listeners, macOS) it allows accepting until `EAGAIN`.
#[derive(Debug, Default, Clone, Copy)]
pub struct AcceptQueue(Option<u32>);

impl AcceptQueue {
    /// Whether one more connection is queued; counts it as taken. `false`: what was queued
    /// when the kernel was asked is taken (under `shared` another worker may have taken some,
    /// and `accept4` then says `EAGAIN`).
    pub fn take_one(&mut self, listener: std::os::fd::BorrowedFd<'_>) -> bool {
        let left = *self
            .0
            .get_or_insert_with(|| accept_queue_len(listener).unwrap_or(u32::MAX));
        if left == 0 {
            return false;
        }
        self.0 = Some(left - 1);
        true
    }

    /// A new readiness: ask the kernel again at the next [`AcceptQueue::take_one`].
    pub fn forget(&mut self) {
        self.0 = None;
    }
}
