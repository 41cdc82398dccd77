//! Starting workers (exec and fork), watching them (pidfd), reaping and signalling.

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::SockType;
use nix::sys::stat::Mode;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

/// How one of a worker's fds is set up in exec mode (entry `i` of [`SpawnSpec::stdio`] is the
/// worker's fd `i`, as in Node's `child_process` `stdio` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdioSpec {
    /// The primary's fd with the same number (left closed when the primary's is closed).
    #[default]
    Inherit,
    /// `/dev/null` (read-only as fd 0, read-write otherwise).
    Null,
    /// One end of a connected `AF_UNIX` stream socket pair, duplex as libuv's (Node's) stdio
    /// pipes are; the primary gets the other end (`Primary::take_stdio` hands it out).
    Pipe,
    /// A copy of the primary's fd with this number (spawning fails with `EBADF` if it is not
    /// open).
    Fd(RawFd),
    /// Nothing: the worker's fd stays closed. For fds 3 and up only (a closed fd 0-2 would be
    /// taken by the worker's next `open`).
    Closed,
    /// The worker's channel (the first channel the spawn places, named by its variable), as
    /// Node's `'ipc'` entry puts the IPC channel at its own index (`NODE_CHANNEL_FD`). At most
    /// one entry; the other channel still goes above the last entry.
    Channel,
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
    /// Variables of the primary's environment the worker does not get (node:cluster's
    /// `fork({ X: undefined })`); `env` and the worker's own variables still apply.
    pub env_remove: Vec<OsString>,
    /// Working directory; the primary's when `None`.
    pub cwd: Option<PathBuf>,
    /// The worker's fds 0, 1, 2, 3...: entry `i` becomes fd `i`. Missing entries below 3 are
    /// [`StdioSpec::Inherit`]; the worker's channels are placed above the last entry, or the
    /// first one at the [`StdioSpec::Channel`] entry.
    pub stdio: Vec<StdioSpec>,
    /// Run as this user id (requires privileges).
    pub uid: Option<u32>,
    /// Run as this group id (requires privileges).
    pub gid: Option<u32>,
    /// The program knows nothing of corral (the `corral` command runs any server): `spawn`
    /// gives it none of the channels and none of their variables, so its fds are exactly the
    /// stdio entries (the systemd `LISTEN_FDS` layout). The primary keeps both ends of the
    /// channel, which therefore never reaches end-of-file: the worker's liveness is its
    /// pidfd. `Primary::disconnect` (and a shutdown, a reload step, a scale-down) sends it
    /// SIGTERM instead of a request it could not read, and no `Event::Disconnect` is reported
    /// for it, only its `Event::Exit`. A [`StdioSpec::Channel`] entry is refused with this
    /// flag.
    pub without_channel: bool,
    /// Put the worker in this process group (`setpgid`; 0: a new group it leads). A terminal's
    /// Ctrl-C (SIGINT to the foreground group) then reaches only the primary, which drains
    /// the workers its own way, instead of every worker at once. `None`: the primary's group.
    pub process_group: Option<i32>,
}

impl SpawnSpec {
    /// The setup of the worker's fd `i`.
    pub fn stdio_at(&self, i: usize) -> StdioSpec {
        match self.stdio.get(i) {
            Some(s) => *s,
            None if i < 3 => StdioSpec::Inherit,
            None => StdioSpec::Closed,
        }
    }

    /// Number of fds the spec sets up (at least 3: stdin, stdout, stderr).
    pub fn stdio_len(&self) -> usize {
        self.stdio.len().max(3)
    }

    /// Gives the worker `key=value`, over the primary's value and an earlier
    /// [`remove_env`](Self::remove_env) of `key`: of the calls for one key, the last decides.
    /// A key that is empty or holds `=` or NUL is refused ([`Error::invalid`](crate::Error)).
    pub fn set_env(&mut self, key: &str, value: &str) -> crate::Result<()> {
        if value.contains('\0') {
            return Err(crate::Error::invalid(format!(
                "environment value of {key:?} contains NUL"
            )));
        }
        self.env.push((env_key(key)?.into(), value.into()));
        Ok(())
    }

    /// Keeps `key` of the primary's environment from the worker (node:cluster's
    /// `fork({ KEY: undefined })`) and undoes an earlier [`set_env`](Self::set_env) of it: of
    /// the calls for one key, the last decides. Refuses the keys `set_env` refuses.
    pub fn remove_env(&mut self, key: &str) -> crate::Result<()> {
        let key = env_key(key)?;
        // spawn applies the removals before the additions, so an earlier addition must go.
        self.env.retain(|(have, _)| have != key);
        self.env_remove.push(key.into());
        Ok(())
    }
}

/// An environment variable name: not empty, no `=` (it would end the name), no NUL.
fn env_key(key: &str) -> crate::Result<&str> {
    if key.is_empty() || key.contains(['=', '\0']) {
        return Err(crate::Error::invalid(format!(
            "environment key {key:?} is empty or contains '=' or NUL"
        )));
    }
    Ok(key)
}

/// A started child: its pid and the primary's ends of piped stdio.
#[derive(Debug)]
pub struct Spawned {
    /// Process id.
    pub pid: i32,
    /// The primary's ends of [`StdioSpec::Pipe`] entries, by the worker's fd number
    /// ([`SpawnSpec::stdio_len`] entries).
    pub stdio: Vec<Option<OwnedFd>>,
}

/// The soft `RLIMIT_NOFILE`: fd numbers a process can use are below it.
pub fn fd_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    Ok(Errno::result(ret)?)
}

/// `fcntl(F_DUPFD_CLOEXEC)`: a close-on-exec copy of `fd` numbered `min` or above. libc: `fd`
/// is a number from the spec (checked open, not owned), and nix's fcntl gives a raw int too.
fn dup_at_least(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a fresh fd that nobody else owns (or fails).
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: `new` is a freshly created fd owned by us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn open_cloexec(path: &std::ffi::CStr, flags: OFlag) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        path,
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// A connected `AF_UNIX` stream socket pair, close-on-exec.
fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    crate::sys::unix::socket_pair_cloexec(SockType::Stream)
}

/// Whether `fd` is an open fd of this process. libc: a number not known to be open cannot be a
/// `BorrowedFd`, which nix's fcntl takes.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any number; no memory is passed.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Starts `spec` with its stdio entries at their fd numbers and the `channels` (at most 2: the
/// channel, and the message channel) at the numbers right above them (the first at the
/// [`StdioSpec::Channel`] entry when there is one), each named to the child in its variable;
/// `extra_env` is set too. The child gets `PR_SET_PDEATHSIG(SIGKILL)`, so it
/// dies with the thread that spawned it.
///
/// An `Fd` entry naming a closed fd fails with `EBADF` before anything is created.
///
/// Every fd the child gets is first copied in the primary to a number above all the child's
/// fds, so placing one (`dup2`, which also clears close-on-exec) never overwrites another
/// that is still to be placed (`stdio: [0, 2, 1]` swaps stdout and stderr, as in libuv).
pub fn spawn(
    spec: &SpawnSpec,
    channels: &[(&str, BorrowedFd<'_>)],
    extra_env: &[(&str, String)],
) -> io::Result<Spawned> {
    assert!(channels.len() <= 2, "at most 2 channels");
    let channels = if spec.without_channel {
        &[][..]
    } else {
        channels
    };
    let n = spec.stdio_len();
    let at: Vec<usize> = (0..n)
        .filter(|&i| spec.stdio_at(i) == StdioSpec::Channel)
        .collect();
    if at.len() > 1 || (at.len() == 1 && channels.is_empty()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "stdio: {} Channel entries for {} channels (at most one, and only with a channel; \
                 SpawnSpec::without_channel gives none)",
                at.len(),
                channels.len()
            ),
        ));
    }
    // The channels' numbers in the child: the first at the Channel entry if any, the others
    // right above the entries.
    let mut next = n as RawFd;
    let channel_targets: Vec<RawFd> = (0..channels.len())
        .map(|k| match at.first() {
            Some(&i) if k == 0 => i as RawFd,
            _ => {
                next += 1;
                next - 1
            }
        })
        .collect();
    // Above every fd the child gets: where the primary keeps its copies until the spawn.
    let above = next;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    if let Some(a0) = &spec.arg0 {
        cmd.arg0(a0);
    }
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    for ((var, _), target) in channels.iter().zip(&channel_targets) {
        cmd.env(var, target.to_string());
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
    if let Some(pgid) = spec.process_group {
        cmd.process_group(pgid);
    }
    let mut primary_ends: Vec<Option<OwnedFd>> = (0..n).map(|_| None).collect();
    // (the primary's copy, the child's fd number); the copies close after the spawn.
    let mut copies: Vec<(OwnedFd, RawFd)> = Vec::with_capacity(n + channels.len());
    // The primary's fds named by number are checked, then copied, before any fd is created
    // here: a new fd could otherwise take a closed number an entry names.
    for i in 0..n {
        match spec.stdio_at(i) {
            StdioSpec::Closed if i < 3 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("stdio[{i}]: Closed is for fds 3 and up"),
                ))
            }
            StdioSpec::Fd(fd) if !fd_is_open(fd) => {
                return Err(io::Error::from_raw_os_error(libc::EBADF))
            }
            _ => {}
        }
    }
    for i in 0..n {
        let source = match spec.stdio_at(i) {
            StdioSpec::Inherit if fd_is_open(i as RawFd) => i as RawFd,
            StdioSpec::Fd(fd) => fd,
            _ => continue,
        };
        copies.push((dup_at_least(source, above)?, i as RawFd));
    }
    for (i, end) in primary_ends.iter_mut().enumerate() {
        let target = i as RawFd;
        let copy = match spec.stdio_at(i) {
            StdioSpec::Closed | StdioSpec::Inherit | StdioSpec::Fd(_) | StdioSpec::Channel => {
                continue
            }
            StdioSpec::Null => {
                let mode = if i == 0 {
                    OFlag::O_RDONLY
                } else {
                    OFlag::O_RDWR
                };
                let null = open_cloexec(c"/dev/null", mode)?;
                dup_at_least(null.as_raw_fd(), above)?
            }
            StdioSpec::Pipe => {
                let (mine, theirs) = stream_pair()?;
                *end = Some(mine);
                dup_at_least(theirs.as_raw_fd(), above)?
            }
        };
        copies.push((copy, target));
    }
    let stdio_copies = copies.len();
    for ((_, fd), &target) in channels.iter().zip(&channel_targets) {
        copies.push((dup_at_least(fd.as_raw_fd(), above)?, target));
    }
    // Copied into the closure (no allocation after fork): (source, target, is a stdio entry).
    let plan: Vec<(RawFd, RawFd, bool)> = copies
        .iter()
        .enumerate()
        .map(|(k, (c, t))| (c.as_raw_fd(), *t, k < stdio_copies))
        .collect();
    // std's own error pipe takes the lowest free fds: if one were a target, placing that
    // target would cut std off from the child and an exec failure would go unreported. Filling
    // the free numbers below `above` for the time of the spawn keeps it clear of them.
    let reserved = fill_free_below(above)?;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: (fork) the closure runs between fork and exec and only calls async-signal-safe
    // functions (dup2, fcntl, prctl, getppid, kill) on values it owns or copied, and reads a
    // Vec it owns (no allocation). libc's dup2 on raw numbers: the targets are not fds of
    // this process yet (nix's dup2 wants an OwnedFd to replace).
    unsafe {
        cmd.pre_exec(move || {
            for &(source, target, stdio) in &plan {
                cvt(libc::dup2(source, target))?;
                // As libuv: stdin, stdout and stderr start blocking (the worker's runtime sets
                // them up as it wants). A channel placed there keeps its mode.
                if stdio && target <= 2 {
                    let flags = libc::fcntl(target, libc::F_GETFL);
                    if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
                        libc::fcntl(target, libc::F_SETFL, flags & !libc::O_NONBLOCK);
                    }
                }
            }
            after_fork_in_child(parent);
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(reserved);
    drop(copies);
    Ok(Spawned {
        pid: child?.id() as i32,
        stdio: primary_ends,
    })
}

/// Opens `/dev/null` until it gets a number at or above `limit`: every number below that was
/// free is now taken by one of the returned fds (close-on-exec, closed when dropped).
fn fill_free_below(limit: RawFd) -> io::Result<Vec<OwnedFd>> {
    let mut held = Vec::new();
    loop {
        let fd = open_cloexec(c"/dev/null", OFlag::O_RDONLY)?;
        if fd.as_raw_fd() >= limit {
            return Ok(held);
        }
        held.push(fd);
    }
}

/// Die with the parent: SIGKILL on the parent's death, and at once if it is already gone.
///
/// Runs between fork and exec: async-signal-safe only (prctl, getppid, kill; nix's wrappers
/// are the bare syscalls, no allocation).
fn after_fork_in_child(parent: libc::pid_t) {
    use nix::sys::signal::Signal;
    // The portable backend, as on macOS, has no PR_SET_PDEATHSIG: the worker learns of the
    // primary's death by the EOF on its channel.
    #[cfg(all(target_os = "linux", not(feature = "portable")))]
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid().as_raw() != parent {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGKILL);
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
            // The primary's child watches are not the worker's (portable backend).
            #[cfg(any(feature = "portable", not(target_os = "linux")))]
            crate::sys::unix::forget_watches_after_fork();
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
/// and makes it close-on-exec. libc for the check: the number is not known to be open yet, so
/// it cannot be the `BorrowedFd` nix's getsockopt takes.
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
    // The channel's socket type: SOCK_STREAM with the portable backend's records.
    let expected = if cfg!(any(feature = "portable", not(target_os = "linux"))) {
        libc::SOCK_STREAM
    } else {
        libc::SOCK_SEQPACKET
    };
    if ty != expected {
        return Err(io::Error::from_raw_os_error(libc::ENOTSOCK));
    }
    // SAFETY: the fd is open (getsockopt succeeded) and was left to this process by its primary
    // for exactly this purpose; nothing else in the process claims it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    super::fd::set_cloexec(std::os::fd::AsFd::as_fd(&owned), true)?;
    Ok(owned)
}

/// Number of threads in this process (entries of `/proc/self/task`).
#[cfg(target_os = "linux")]
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// Number of threads in this process (`proc_pidinfo(PROC_PIDTASKINFO)`; libc: nix has no
/// wrapper). 1 if it cannot be read, as on Linux.
#[cfg(target_os = "macos")]
pub fn thread_count() -> usize {
    // SAFETY: proc_taskinfo is plain data; proc_pidinfo writes at most `size` bytes into it.
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
    // SAFETY: a valid pointer to `info` of `size` bytes for the duration of the call.
    let n = unsafe {
        libc::proc_pidinfo(
            std::process::id() as libc::c_int,
            libc::PROC_PIDTASKINFO,
            0,
            (&mut info as *mut libc::proc_taskinfo).cast(),
            size,
        )
    };
    if n == size {
        info.pti_threadnum.max(1) as usize
    } else {
        1
    }
}

#[cfg(all(target_os = "linux", not(feature = "portable")))]
/// A pidfd for `pid` (Linux 5.3+): readable once the process has exited. Close-on-exec.
/// libc: nix has no pidfd_open.
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

#[cfg(all(target_os = "linux", not(feature = "portable")))]
/// Reaps `pid` if it has exited (`WNOHANG`); `Ok(None)` if it still runs. libc: nix's
/// waitpid turns a child killed by a real-time signal into EINVAL after reaping it.
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

/// Sends `signal` to `pid`. libc: nix's `Signal` has no real-time signals.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::kill(pid, signal) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::SpawnSpec;
    use crate::ErrorKind;

    #[test]
    fn of_the_env_calls_for_one_key_the_last_decides() {
        let mut s = SpawnSpec::default();
        s.set_env("A", "1").unwrap();
        s.set_env("B", "2").unwrap();
        s.remove_env("A").unwrap();
        // spawn removes first, then adds: A is gone, B stays.
        assert_eq!(s.env, [("B".into(), "2".into())]);
        assert_eq!(s.env_remove, ["A"]);
        s.set_env("A", "3").unwrap();
        assert_eq!(s.env, [("B".into(), "2".into()), ("A".into(), "3".into())]);
    }

    #[test]
    fn env_keys_that_cannot_name_a_variable_are_refused() {
        let mut s = SpawnSpec::default();
        for key in ["", "A=B", "A\0"] {
            assert_eq!(
                s.set_env(key, "v").unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{key:?}"
            );
            assert_eq!(
                s.remove_env(key).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{key:?}"
            );
        }
        assert_eq!(
            s.set_env("A", "v\0").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert!(s.env.is_empty() && s.env_remove.is_empty());
    }
}
