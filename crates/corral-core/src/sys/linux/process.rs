//! Starting workers (exec and fork), watching them (pidfd), reaping and signalling.

use super::fd::cvt;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// How a worker's stdin, stdout or stderr is set up in exec mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdioSpec {
    /// Share the primary's.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe; the primary gets the other end (see [`Spawned`]).
    Pipe,
}

/// What to run in exec mode.
#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    /// Program path (looked up in `PATH` when it has no slash).
    pub program: PathBuf,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// `argv[0]`, when it must differ from `program`.
    pub arg0: Option<OsString>,
    /// Variables added to (or overriding) the primary's environment.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory; the primary's when `None`.
    pub cwd: Option<PathBuf>,
    /// stdin, stdout, stderr.
    pub stdio: [StdioSpec; 3],
    /// Run as this user id (requires privileges).
    pub uid: Option<u32>,
    /// Run as this group id (requires privileges).
    pub gid: Option<u32>,
}

/// A started child: its pid and the primary's ends of piped stdio.
#[derive(Debug)]
pub struct Spawned {
    /// Process id.
    pub pid: i32,
    /// Primary's ends of `StdioSpec::Pipe` streams (stdin, stdout, stderr).
    pub stdio: [Option<OwnedFd>; 3],
}

fn stdio(s: StdioSpec) -> Stdio {
    match s {
        StdioSpec::Inherit => Stdio::inherit(),
        StdioSpec::Null => Stdio::null(),
        StdioSpec::Pipe => Stdio::piped(),
    }
}

/// Starts `spec` with the `inherit` fds (at most 2: the channel, and the message channel)
/// inherited at their current fd numbers (their close-on-exec flags are cleared in the child
/// only) and `extra_env` set. The child gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the
/// thread that spawned it.
pub fn spawn(
    spec: &SpawnSpec,
    inherit: &[BorrowedFd<'_>],
    extra_env: &[(&str, String)],
) -> io::Result<Spawned> {
    assert!(inherit.len() <= 2, "at most 2 inherited fds");
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    if let Some(a0) = &spec.arg0 {
        cmd.arg0(a0);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(uid) = spec.uid {
        cmd.uid(uid);
    }
    if let Some(gid) = spec.gid {
        cmd.gid(gid);
    }
    cmd.stdin(stdio(spec.stdio[0]));
    cmd.stdout(stdio(spec.stdio[1]));
    cmd.stderr(stdio(spec.stdio[2]));
    // Copied into the closure (no allocation after fork): -1 marks an unused entry.
    let mut pass: [RawFd; 2] = [-1; 2];
    for (slot, fd) in pass.iter_mut().zip(inherit) {
        *slot = fd.as_raw_fd();
    }
    let parent = std::process::id() as libc::pid_t;
    // "Inherit" must survive exec even if the parent marked its stdio close-on-exec (Node does,
    // through uv_disable_stdio_inheritance; its own spawn dup2s them into place).
    let inherit = spec.stdio.map(|s| matches!(s, StdioSpec::Inherit));
    // SAFETY(fork): the closure runs between fork and exec and only calls async-signal-safe
    // functions (fcntl, prctl, getppid, kill) on values captured by copy.
    unsafe {
        cmd.pre_exec(move || {
            for fd in pass.into_iter().filter(|&fd| fd >= 0) {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (fd, inherit) in inherit.iter().enumerate() {
                let fd = fd as RawFd;
                let flags = libc::fcntl(fd, libc::F_GETFD);
                // A closed stdio fd (flags < 0) stays closed, as it would without the flag.
                if *inherit && flags >= 0 && flags & libc::FD_CLOEXEC != 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                }
            }
            after_fork_in_child(parent);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let fd = |o: Option<OwnedFd>| o;
    Ok(Spawned {
        pid: child.id() as i32,
        stdio: [
            fd(child.stdin.take().map(OwnedFd::from)),
            fd(child.stdout.take().map(OwnedFd::from)),
            fd(child.stderr.take().map(OwnedFd::from)),
        ],
    })
}

/// Die with the parent: SIGKILL on the parent's death, and at once if it is already gone.
///
/// SAFETY(fork): async-signal-safe (prctl, getppid, kill).
fn after_fork_in_child(parent: libc::pid_t) {
    // SAFETY: plain syscalls without memory arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != parent {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Result of [`fork`].
#[derive(Debug, PartialEq, Eq)]
pub enum ForkOutcome {
    /// In the primary: the child's pid.
    Parent(i32),
    /// In the new child.
    Child,
}

/// `fork()` of a single-threaded process; the child gets `PR_SET_PDEATHSIG(SIGKILL)`.
///
/// Fails with `EDEADLK`-free clarity instead of forking when the process has more than one
/// thread: in the child only the calling thread would exist, and locks held by the others (the
/// allocator's among them) would stay locked. `Err` carries the thread count in `Threads(n)`.
pub fn fork() -> Result<ForkOutcome, ForkError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(ForkError::Threads(threads));
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the process is single-threaded (checked above; only this thread could start
    // another one), so the child is a consistent copy.
    match unsafe { libc::fork() } {
        -1 => Err(ForkError::Os(io::Error::last_os_error())),
        0 => {
            after_fork_in_child(parent);
            Ok(ForkOutcome::Child)
        }
        pid => Ok(ForkOutcome::Parent(pid)),
    }
}

/// Why [`fork`] did not fork.
#[derive(Debug)]
pub enum ForkError {
    /// The process has this many threads.
    Threads(usize),
    /// fork(2) failed.
    Os(io::Error),
}

/// Takes ownership of an inherited fd number after checking it is a `SOCK_SEQPACKET` socket,
/// and makes it close-on-exec.
pub fn adopt_seqpacket(fd: RawFd) -> io::Result<OwnedFd> {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int into our local; a bad fd fails with EBADF/ENOTSOCK.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if ty != libc::SOCK_SEQPACKET {
        return Err(io::Error::from_raw_os_error(libc::ENOTSOCK));
    }
    // SAFETY: the fd is open (getsockopt succeeded) and was left to this process by its primary
    // for exactly this purpose; nothing else in the process claims it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    super::fd::set_cloexec(std::os::fd::AsFd::as_fd(&owned), true)?;
    Ok(owned)
}

/// Number of threads in this process (entries of `/proc/self/task`).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// A pidfd for `pid` (Linux 5.3+): readable once the process has exited. Close-on-exec.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
}

/// Reaps `pid` if it has exited (`WNOHANG`); `Ok(None)` if it still runs.
pub fn reap(pid: i32) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into our local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        break;
    }
    Ok(Some(if libc::WIFSIGNALED(status) {
        ExitStatus {
            code: None,
            signal: Some(libc::WTERMSIG(status)),
        }
    } else {
        ExitStatus {
            code: Some(libc::WEXITSTATUS(status)),
            signal: None,
        }
    }))
}

/// Sends `signal` to `pid`.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::kill(pid, signal) }).map(drop)
}
