//! A worker's stdio in exec mode (`SpawnSpec::stdio`): entry `i` is the worker's fd `i`, pipes
//! are duplex socket pairs, `Fd(n)` copies the primary's fd `n`, and the worker's channels sit
//! right above the last entry (the first one at a `Channel` entry).

mod util;
use corral_core::{Error, ErrorKind, Event, Policy, SpawnSpec, StdioSpec};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use util::*;

fn sh(script: &str, stdio: Vec<StdioSpec>) -> SpawnSpec {
    SpawnSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        stdio,
        ..Default::default()
    }
}

fn wait_exit(h: &mut Harness, id: u64) -> Option<i32> {
    h.wait(
        "the worker's exit",
        Duration::from_secs(10),
        |_, ev| match ev {
            Event::Exit { worker, status, .. } if *worker == id => Some(status.code),
            _ => None,
        },
    )
}

/// Everything worker `id` writes to its stdout (a `Pipe` entry at 1) until it exits 0.
fn stdout_of(h: &mut Harness, id: u64) -> String {
    let mut stdout = UnixStream::from(h.p.take_all_stdio(id)[1].take().unwrap());
    stdout
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(wait_exit(h, id), Some(0), "stdout: {out}");
    out
}

/// What the worker should report for a slot the spec leaves closed: "closed", unless the test
/// process itself leaks an fd with that number (cargo's jobserver pipes are not close-on-exec).
fn unplaced(fd: RawFd) -> &'static str {
    // SAFETY: F_GETFD on a number; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
        "closed"
    } else if std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        .unwrap_or(false)
    {
        "socket"
    } else {
        "open"
    }
}

fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct into our local.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur
}

const REPORT: &str = r#"
kind() { if [ -S /proc/self/fd/$1 ]; then echo socket; elif [ -c /proc/self/fd/$1 ]; then echo chr;
         elif [ -e /proc/self/fd/$1 ]; then echo open; else echo closed; fi; }
"#;

#[test]
fn extra_pipes_are_duplex_at_their_fd_numbers_and_the_channel_goes_above_them() {
    let mut h = harness(&[], Policy::RoundRobin);
    let script = format!(
        "{REPORT}
         echo \"channel fd $CORRAL_CHANNEL_FD: $(kind $CORRAL_CHANNEL_FD)\"
         for fd in 0 3 4 5 6; do echo \"fd $fd: $(kind $fd)\"; done
         read line <&4; echo \"fd 4 got $line\" >&4
         echo 'fd 6 says hi' >&6"
    );
    use StdioSpec::*;
    let spec = sh(
        &script,
        vec![Null, Pipe, Inherit, Closed, Pipe, Closed, Pipe],
    );
    let id = h.p.spawn_worker_with(&spec, &[]).expect("spawn");
    let ends = h.p.take_all_stdio(id);
    assert_eq!(ends.len(), 7, "one slot per entry");
    let piped: Vec<usize> = (0..7).filter(|&i| ends[i].is_some()).collect();
    assert_eq!(piped, [1, 4, 6], "the primary's ends of the Pipe entries");
    let mut ends: Vec<Option<UnixStream>> =
        ends.into_iter().map(|e| e.map(UnixStream::from)).collect();
    let fd4 = ends[4].take().unwrap();
    fd4.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&fd4).write_all(b"ping\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&fd4).read_line(&mut answer).unwrap();
    assert_eq!(
        answer, "fd 4 got ping\n",
        "the worker read what the primary wrote on fd 4 and answered on it"
    );
    let mut out = String::new();
    let mut stdout = ends[1].take().unwrap();
    stdout
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stdout.read_to_string(&mut out).unwrap();
    let mut six = String::new();
    let mut fd6 = ends[6].take().unwrap();
    fd6.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    fd6.read_to_string(&mut six).unwrap();
    assert_eq!(wait_exit(&mut h, id), Some(0), "stdout: {out}");
    let expected = format!(
        "channel fd 7: socket\nfd 0: chr\nfd 3: {}\nfd 4: socket\nfd 5: {}\nfd 6: socket\n",
        unplaced(3),
        unplaced(5)
    );
    assert_eq!(out, expected);
    assert_eq!(six, "fd 6 says hi\n");
}

/// A Channel entry is where the worker's channel goes, as Node's 'ipc' entry is the fd of its
/// IPC channel (NODE_CHANNEL_FD): fd 3 with the default layout, fd 0 when it comes first.
#[test]
fn a_channel_entry_places_the_workers_channel_at_its_index() {
    let mut h = harness(&[], Policy::RoundRobin);
    let script = format!(
        "{REPORT}
         echo \"channel fd $CORRAL_CHANNEL_FD: $(kind $CORRAL_CHANNEL_FD)\"
         for fd in 3 4; do echo \"fd $fd: $(kind $fd)\"; done"
    );
    use StdioSpec::*;
    for (stdio, expected) in [
        (
            vec![Null, Pipe, Inherit, Channel],
            format!(
                "channel fd 3: socket\nfd 3: socket\nfd 4: {}\n",
                unplaced(4)
            ),
        ),
        (
            vec![Channel, Pipe, Inherit],
            format!(
                "channel fd 0: socket\nfd 3: {}\nfd 4: {}\n",
                unplaced(3),
                unplaced(4)
            ),
        ),
    ] {
        let id =
            h.p.spawn_worker_with(&sh(&script, stdio.clone()), &[])
                .expect("spawn");
        let out = stdout_of(&mut h, id);
        assert_eq!(out, expected, "stdio {stdio:?}");
    }
}

/// Two fds of the primary, given to the worker crosswise at each other's numbers: placing one
/// must not overwrite the other before it is placed.
#[test]
fn fd_entries_copy_the_primarys_fds_even_crosswise() {
    let mut h = harness(&[], Policy::RoundRobin);
    // Pipes: dash can only reach fds above 9 by opening /proc/self/fd/N, which sockets refuse.
    let pipe = || {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fresh fds into our array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both just created, owned by nobody else.
        unsafe {
            (
                std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
                OwnedFd::from_raw_fd(fds[1]),
            )
        }
    };
    let (a_read, a_write) = pipe();
    let (b_read, b_write) = pipe();
    // High numbers, so the worker's fds are named by the primary's own numbers.
    let dup40 = |fd: RawFd| {
        // SAFETY: F_DUPFD_CLOEXEC returns a fresh fd owned by nobody else.
        let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 40) };
        assert!(n >= 40, "{}", std::io::Error::last_os_error());
        // SAFETY: just created.
        unsafe { OwnedFd::from_raw_fd(n) }
    };
    let a = dup40(a_write.as_raw_fd());
    let b = dup40(b_write.as_raw_fd());
    drop((a_write, b_write));
    let (na, nb) = (a.as_raw_fd(), b.as_raw_fd());
    let mut stdio = vec![StdioSpec::Null, StdioSpec::Inherit, StdioSpec::Inherit];
    stdio.resize(na.max(nb) as usize + 1, StdioSpec::Closed);
    stdio[na as usize] = StdioSpec::Fd(nb);
    stdio[nb as usize] = StdioSpec::Fd(na);
    let script =
        format!("echo 'on {na}' > /proc/self/fd/{na}; echo 'on {nb}' > /proc/self/fd/{nb}");
    let id =
        h.p.spawn_worker_with(&sh(&script, stdio), &[])
            .expect("spawn");
    drop((a, b));
    assert_eq!(wait_exit(&mut h, id), Some(0));
    // The worker has exited and the primary's write ends are closed: these reads end.
    let read = |mut s: std::fs::File| {
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        t
    };
    assert_eq!(
        read(a_read),
        format!("on {nb}\n"),
        "the worker's fd {nb} is the primary's fd {na}"
    );
    assert_eq!(
        read(b_read),
        format!("on {na}\n"),
        "the worker's fd {na} is the primary's fd {nb}"
    );
}

#[test]
fn bad_stdio_entries_are_refused_and_the_primary_carries_on() {
    let mut h = harness(&[], Policy::RoundRobin);
    // A number the primary certainly has not open.
    let closed = fd_limit() as RawFd - 1;
    let refused = |h: &mut Harness, stdio: Vec<StdioSpec>| -> Error {
        h.p.spawn_worker_with(&sh("exit 0", stdio), &[])
            .expect_err("spawn must fail")
    };
    let e = refused(
        &mut h,
        vec![
            StdioSpec::Inherit,
            StdioSpec::Inherit,
            StdioSpec::Inherit,
            StdioSpec::Fd(closed),
        ],
    );
    assert_eq!(e.code(), Some("EBADF"), "{}", e.message());
    assert_eq!(e.syscall(), Some("spawn"));
    let e = refused(&mut h, vec![StdioSpec::Inherit, StdioSpec::Closed]);
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("stdio[1]"), "{}", e.message());
    let e = refused(
        &mut h,
        vec![
            StdioSpec::Inherit,
            StdioSpec::Inherit,
            StdioSpec::Inherit,
            StdioSpec::Channel,
            StdioSpec::Channel,
        ],
    );
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("Channel"), "{}", e.message());
    let e = refused(&mut h, vec![StdioSpec::Null; fd_limit() as usize]);
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("RLIMIT_NOFILE"), "{}", e.message());
    let id =
        h.p.spawn_worker_with(&sh("exit 3", vec![]), &[])
            .expect("spawn after the refusals");
    assert_eq!(wait_exit(&mut h, id), Some(3));
}

/// `without_channel`: a program that knows nothing of corral gets exactly its stdio entries
/// (fd 3 here, as systemd's LISTEN_FDS layout), no channel fd and no channel variable; the
/// primary still sees it exit (by its pidfd) with its status.
#[test]
fn without_channel_the_worker_gets_only_its_entries_and_its_exit_is_still_seen() {
    let mut h = harness(&[], Policy::Shared);
    let script = format!(
        "{REPORT}
         echo \"channel var: ${{CORRAL_CHANNEL_FD-unset}}\"
         for fd in 3 4 5; do echo \"fd $fd: $(kind $fd)\"; done
         exit 7"
    );
    let (keep, _other) = UnixStream::pair().unwrap();
    use StdioSpec::*;
    let mut spec = sh(&script, vec![Null, Pipe, Inherit, Fd(keep.as_raw_fd())]);
    spec.without_channel = true;
    let id = h.p.spawn_worker_with(&spec, &[]).expect("spawn");
    let mut stdout = UnixStream::from(h.p.take_stdio(id, 1).expect("stdout pipe"));
    stdout
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(wait_exit(&mut h, id), Some(7), "stdout: {out}");
    assert_eq!(
        out,
        format!(
            "channel var: unset\nfd 3: socket\nfd 4: {}\nfd 5: {}\n",
            unplaced(4),
            unplaced(5)
        )
    );
}

/// `SpawnSpec::env_remove`: a variable of the primary's environment the worker does not get
/// (node:cluster's `fork({ X: undefined })`), while `env` still adds its own.
#[test]
fn env_remove_leaves_out_a_variable_of_the_primarys_environment() {
    // Cargo sets CARGO_PKG_NAME for the tests it runs (dash would make up a PATH).
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some(), "run by cargo");
    let mut h = harness(&[], Policy::RoundRobin);
    let mut spec = sh(
        "echo \"${CARGO_PKG_NAME-unset} ${CORRAL_TEST_ADDED-unset}\"",
        vec![StdioSpec::Null, StdioSpec::Pipe, StdioSpec::Inherit],
    );
    spec.env_remove = vec!["CARGO_PKG_NAME".into()];
    spec.env = vec![("CORRAL_TEST_ADDED".into(), "added".into())];
    let id = h.p.spawn_worker_with(&spec, &[]).expect("spawn");
    assert_eq!(stdout_of(&mut h, id), "unset added\n");
}
