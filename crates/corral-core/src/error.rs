//! The engine's error: a kind, an errno when the OS said no, and a message with context
//! ("bind 127.0.0.1:8080: Address already in use (EADDRINUSE)").

use std::fmt;
use std::io;

/// What went wrong, coarse enough to map onto C status codes and Node error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A bad value from the caller (option, address, id).
    InvalidArgument,
    /// The operating system refused; `errno` says why.
    Os,
    /// A peer sent a frame that breaks the protocol.
    Protocol,
    /// A message above [`crate::ipc::MAX_MESSAGE_LEN`].
    TooLarge,
    /// The call is not valid now (after start, after shutdown, from a forked child).
    WrongState,
    /// Worker-side call in a process that is not a corral worker.
    NotWorker,
    /// No worker with that id (never existed, or already gone).
    NoSuchWorker,
    /// The channel to the peer is closed.
    Disconnected,
    /// The peer's send queue is full (see `PrimaryOptions::send_queue_limit`): nothing was
    /// queued; try again after `Event::Drain`. Nothing was closed.
    WouldBlock,
}

/// An error with context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    errno: i32,
    syscall: Option<&'static str>,
    message: String,
    /// The option a bad value was given for ([`Error::invalid_option`]).
    option: Option<Box<str>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            errno: 0,
            syscall: None,
            message: message.into(),
            option: None,
        }
    }

    /// The error for a message whose attached fds the kernel dropped because this process is
    /// out of file descriptors ([`crate::ipc::Recv::FdsLost`]).
    pub fn fds_lost(what: impl fmt::Display) -> Error {
        Error::os(
            "recvmsg",
            format!("{what}: its fds were dropped, this process is out of file descriptors"),
            &io::Error::from_raw_os_error(libc::EMFILE),
        )
    }

    /// An OS error: `"<context>: <strerror> (<ENAME>)"`.
    pub fn os(syscall: &'static str, context: impl fmt::Display, err: &io::Error) -> Error {
        let errno = err.raw_os_error().unwrap_or(0);
        let kind = if errno == libc::EPIPE || errno == libc::ECONNRESET {
            ErrorKind::Disconnected
        } else {
            ErrorKind::Os
        };
        let mut message = format!("{context}: {}", strerror(errno, err));
        if let Some(name) = crate::sys::errno_name(errno) {
            message.push_str(&format!(" ({name})"));
        }
        Error {
            kind,
            errno,
            syscall: Some(syscall),
            message,
            option: None,
        }
    }

    /// An OS error from a raw errno (as relayed over the channel).
    pub fn from_errno(syscall: &'static str, context: impl fmt::Display, errno: i32) -> Error {
        Error::os(syscall, context, &io::Error::from_raw_os_error(errno))
    }

    /// [`ErrorKind::NoSuchWorker`] naming the id (what the primary says of an id it has no
    /// worker for; fronts that look a worker up themselves say the same).
    pub fn no_such_worker(id: u64) -> Error {
        Error::new(ErrorKind::NoSuchWorker, format!("no worker with id {id}"))
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// A bad value for the option `name` (as the fronts spell it: `restart.factor`): an
    /// [`ErrorKind::InvalidArgument`] whose message is `"<name>: <why>"` and whose
    /// [`Error::option`] is `name`, so a front can say which option without reading the text.
    pub fn invalid_option(name: &str, why: impl fmt::Display) -> Error {
        Error {
            option: Some(name.into()),
            ..Error::invalid(format!("{name}: {why}"))
        }
    }

    /// Shorthand for [`ErrorKind::WrongState`].
    pub fn wrong_state(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::WrongState, message)
    }

    /// Shorthand for [`ErrorKind::Protocol`].
    pub fn protocol(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, message)
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The errno (positive), or 0 when the OS was not involved.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The errno's symbolic name (`"EADDRINUSE"`), if any.
    pub fn code(&self) -> Option<&'static str> {
        crate::sys::errno_name(self.errno)
    }

    /// The failing system call (`"bind"`, `"listen"`), if any.
    pub fn syscall(&self) -> Option<&'static str> {
        self.syscall
    }

    /// The message with context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The option whose value was refused (`"restart.factor"`), for errors made by
    /// [`Error::invalid_option`]; `None` otherwise.
    pub fn option(&self) -> Option<&str> {
        self.option.as_deref()
    }

    /// Why the option's value was refused: the message after `"<option>: "` (the whole
    /// message when the error names no option). Context added in front
    /// ([`Error::context`]: `"worker 3: backlog: ..."`) is skipped too.
    pub fn reason(&self) -> &str {
        self.option
            .as_deref()
            .and_then(|o| {
                let at = self.message.find(&format!("{o}: "))?;
                Some(&self.message[at + o.len() + 2..])
            })
            .unwrap_or(&self.message)
    }

    /// The same error naming `syscall`.
    pub fn with_syscall(mut self, syscall: &'static str) -> Error {
        self.syscall = Some(syscall);
        self
    }

    /// An error relayed from the primary over the channel (errno, syscall and message as sent)
    /// by a primary that does not send its kind: an errno-less `EINVAL` is an invalid
    /// argument, the rest OS errors.
    pub fn relayed(errno: i32, syscall: &str, message: String) -> Error {
        let syscall = relayed_syscall(syscall);
        let kind = if errno == libc::EINVAL && syscall.is_none() {
            ErrorKind::InvalidArgument
        } else {
            ErrorKind::Os
        };
        Error {
            kind,
            errno,
            syscall,
            message,
            option: None,
        }
    }

    /// The primary's error as it was, rebuilt from what the channel carried: its kind, errno,
    /// syscall (`""` for none), message and option ([`Error::option`]).
    pub(crate) fn rebuilt(
        kind: ErrorKind,
        errno: i32,
        syscall: &str,
        message: String,
        option: Option<&str>,
    ) -> Error {
        Error {
            kind,
            errno,
            syscall: relayed_syscall(syscall),
            message,
            option: option.map(Into::into),
        }
    }

    /// The same error with `prefix: ` in front of the message.
    pub fn context(mut self, prefix: impl fmt::Display) -> Error {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
}

/// The calls an error relayed from the primary may name (every syscall its listen path
/// reports), as `&'static str`; an unknown name is dropped.
fn relayed_syscall(name: &str) -> Option<&'static str> {
    [
        "bind",
        "listen",
        "socket",
        "getaddrinfo",
        "setsockopt",
        "fcntl",
        "dup",
        "getsockopt",
        "getsockname",
        "getcwd",
        "open",
        "chmod",
        "recvmsg",
    ]
    .into_iter()
    .find(|s| *s == name)
}

fn strerror(errno: i32, err: &io::Error) -> String {
    // io::Error's Display appends " (os error N)"; keep the human part only.
    let s = err.to_string();
    match s.rfind(" (os error") {
        Some(i) if errno != 0 => s[..i].to_string(),
        _ => s,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_carry_context_and_name() {
        let e = Error::from_errno("bind", "bind 127.0.0.1:80", libc::EADDRINUSE);
        assert_eq!(
            e.message(),
            "bind 127.0.0.1:80: Address already in use (EADDRINUSE)"
        );
        assert_eq!(e.code(), Some("EADDRINUSE"));
        assert_eq!(e.syscall(), Some("bind"));
        assert_eq!(e.kind(), ErrorKind::Os);
    }

    #[test]
    fn option_errors_name_their_option() {
        let e = Error::invalid_option("restart.factor", "must be a number between 1 and 1000");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.option(), Some("restart.factor"));
        assert_eq!(e.reason(), "must be a number between 1 and 1000");
        assert_eq!(
            e.message(),
            "restart.factor: must be a number between 1 and 1000"
        );
        let plain = Error::invalid("bad");
        assert_eq!((plain.option(), plain.reason()), (None, "bad"));
    }
}
