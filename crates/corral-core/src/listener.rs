//! Listen addresses (what a worker asks for), bound addresses (what it got) and binding:
//! stream listeners (TCP, Unix) and datagram ones (UDP), bound by the primary or adopted from
//! an fd the primary already has (`fd:N`, e.g. socket activation).

use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use socket2::{Domain, SockAddr, Socket, Type};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Backlog when the caller gives none (Node's default).
pub const DEFAULT_BACKLOG: i32 = 511;

/// Longest Unix socket path a listen address may name (`PATH_MAX` less its NUL). Paths longer
/// than `sun_path` (107 bytes) are bound through their directory (see [`bind_with`]).
pub const MAX_UNIX_PATH: usize = 4095;

/// How to bind, beyond the address: the options of Node's `listen()`. Like Node's cluster,
/// the first worker's options bind the listener; workers joining it later share it as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BindOptions {
    /// `IPV6_V6ONLY` on an IPv6 listener (Node's `ipv6Only`): the same port stays free for
    /// IPv4. Without it an IPv6 listener is dual-stack where the system allows.
    pub ipv6_only: bool,
    /// Unix sockets: make the file readable by everyone (Node's `readableAll`).
    pub readable_all: bool,
    /// Unix sockets: make the file writable by everyone, so anyone may connect (Node's
    /// `writableAll`).
    pub writable_all: bool,
    /// Datagram listeners: `SO_REUSEADDR` (Node's dgram `reuseAddr`), so other sockets that
    /// set it too may bind the same address. Stream listeners always have it.
    pub reuse_addr: bool,
    /// Unix sockets with `readable_all` and/or `writable_all`: the file's mode becomes exactly
    /// those bits (0o444, 0o222 or 0o666), as libuv 1.51 and later (Node 22.23, 24, 26) set
    /// it. Without it they are added to the mode the umask left (libuv up to 1.50, Node 20:
    /// 0o777 for both with umask 022). The Node front asks for the one its libuv does.
    pub mode_exact: bool,
}

impl BindOptions {
    const IPV6_ONLY: u32 = 1;
    const READABLE_ALL: u32 = 2;
    const WRITABLE_ALL: u32 = 4;
    const REUSE_ADDR: u32 = 8;
    const MODE_EXACT: u32 = 16;

    /// The options as bits (the wire form).
    pub fn bits(self) -> u32 {
        (self.ipv6_only as u32 * Self::IPV6_ONLY)
            | (self.readable_all as u32 * Self::READABLE_ALL)
            | (self.writable_all as u32 * Self::WRITABLE_ALL)
            | (self.reuse_addr as u32 * Self::REUSE_ADDR)
            | (self.mode_exact as u32 * Self::MODE_EXACT)
    }

    /// Options from bits; unknown bits are an error naming them.
    pub fn from_bits(bits: u32) -> Result<BindOptions> {
        let known = Self::IPV6_ONLY
            | Self::READABLE_ALL
            | Self::WRITABLE_ALL
            | Self::REUSE_ADDR
            | Self::MODE_EXACT;
        if bits & !known != 0 {
            return Err(Error::invalid_option(
                "options",
                format_args!("unknown listen option bits {:#x}", bits & !known),
            ));
        }
        Ok(BindOptions {
            ipv6_only: bits & Self::IPV6_ONLY != 0,
            readable_all: bits & Self::READABLE_ALL != 0,
            writable_all: bits & Self::WRITABLE_ALL != 0,
            reuse_addr: bits & Self::REUSE_ADDR != 0,
            mode_exact: bits & Self::MODE_EXACT != 0,
        })
    }
}

/// The kind of socket a listener is. Part of a listener's key: TCP 8080 and UDP 8080 are two
/// listeners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SocketKind {
    /// A listening stream socket (TCP or Unix): connections are accepted, in round-robin by
    /// the primary, in shared mode by the workers.
    #[default]
    Stream,
    /// A bound UDP socket. Never round-robined: whatever the policy, the primary binds it once
    /// and every worker that asks gets the same socket (as node:cluster's dgram sharing).
    Datagram,
}

impl SocketKind {
    /// The wire form.
    pub fn to_u32(self) -> u32 {
        match self {
            SocketKind::Stream => 0,
            SocketKind::Datagram => 1,
        }
    }

    /// From the wire form; an unknown value is an error naming it.
    pub fn from_u32(v: u32) -> Result<SocketKind> {
        match v {
            0 => Ok(SocketKind::Stream),
            1 => Ok(SocketKind::Datagram),
            v => Err(Error::invalid(format!("unknown socket kind {v}"))),
        }
    }
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SocketKind::Stream => "stream",
            SocketKind::Datagram => "datagram",
        })
    }
}

/// What a worker asks to listen on. Workers asking for equal `ListenAddr`s (of the same
/// [`SocketKind`]) share one listener.
///
/// Text form: `"127.0.0.1:8080"`, `"[::1]:0"`, `"localhost:3000"`, `":8080"` (every interface),
/// `"unix:/run/app.sock"`, `"fd:3"` (the primary's fd 3). Port 0 means: the kernel picks a port
/// once, every worker gets it. A host named `unix`, `tcp` or `fd` is written `tcp:fd:80`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// TCP; an empty host means every interface (IPv6 dual-stack, else IPv4).
    Tcp {
        /// Host name or IP literal; empty for every interface.
        host: String,
        /// Port; 0 for a kernel-chosen one.
        port: u16,
    },
    /// A Unix domain socket path.
    Unix(PathBuf),
    /// The primary's own fd number N (Node's `listen({ fd })` and `bind({ fd })`): a socket the
    /// primary already has, such as one inherited through systemd socket activation. The
    /// primary checks that it is a socket of the kind asked (`SO_TYPE`), duplicates it and
    /// shares the copy; fd N itself is never closed. A stream socket is put in listening state
    /// (`listen(2)` with the request's backlog, as Node does). Both copies share one open file
    /// description, so fd N becomes non-blocking too.
    Fd(i32),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            // "unix:80" would read back as a socket path and "tcp:80" as no address at all: a
            // host spelled like a scheme keeps the `tcp:` that tells them apart.
            ListenAddr::Tcp { host, port } if host == "unix" || host == "tcp" || host == "fd" => {
                write!(f, "tcp:{host}:{port}")
            }
            ListenAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Fd(n) => write!(f, "fd:{n}"),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<ListenAddr> {
        let bad = |why: &str| {
            Error::invalid_option(
                "address",
                format_args!("invalid listen address {s:?}: {why}"),
            )
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            if path.len() > MAX_UNIX_PATH {
                return Err(bad("socket path longer than 4095 bytes (PATH_MAX)"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Some(n) = s.strip_prefix("fd:") {
            // Digits only: "fd:80" is the primary's fd 80; a TCP host named "fd" is "tcp:fd:80".
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("fd: takes a file descriptor number (fd:3)"));
            }
            return n
                .parse::<i32>()
                .map(ListenAddr::Fd)
                .map_err(|_| bad("fd number is above 2147483647"));
        }
        let s2 = s.strip_prefix("tcp:").unwrap_or(s);
        let (host, port) = if let Some(rest) = s2.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or_else(|| bad("expected [ipv6]:port"))?;
            h.parse::<Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address"))?;
            (h, p)
        } else {
            s2.rsplit_once(':')
                .ok_or_else(|| bad("expected host:port"))?
        };
        if host.contains(':') && !s2.starts_with('[') {
            return Err(bad("IPv6 hosts need brackets: [::1]:8080"));
        }
        if host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad("host contains a space or slash"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("port is not a number from 0 to 65535"))?;
        Ok(ListenAddr::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

/// The address a listener is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BoundAddr {
    /// TCP.
    Tcp(SocketAddr),
    /// Unix socket path (empty for an unnamed socket adopted with `fd:N`).
    Unix(PathBuf),
    /// UDP (a datagram listener).
    Udp(SocketAddr),
}

impl BoundAddr {
    /// The port (0 for Unix sockets).
    pub fn port(&self) -> u16 {
        match self {
            BoundAddr::Tcp(a) | BoundAddr::Udp(a) => a.port(),
            BoundAddr::Unix(_) => 0,
        }
    }
    /// 4, 6, or -1 for a Unix socket (Node's `addressType` for servers; for a datagram
    /// listener Node says `'udp4'`/`'udp6'`: see [`BoundAddr::kind`]).
    pub fn address_type(&self) -> i32 {
        match self {
            BoundAddr::Tcp(SocketAddr::V4(_)) | BoundAddr::Udp(SocketAddr::V4(_)) => 4,
            BoundAddr::Tcp(SocketAddr::V6(_)) | BoundAddr::Udp(SocketAddr::V6(_)) => 6,
            BoundAddr::Unix(_) => -1,
        }
    }
    /// Stream (TCP, Unix) or datagram (UDP).
    pub fn kind(&self) -> SocketKind {
        match self {
            BoundAddr::Udp(_) => SocketKind::Datagram,
            BoundAddr::Tcp(_) | BoundAddr::Unix(_) => SocketKind::Stream,
        }
    }
    /// The IP as text, or the socket path.
    pub fn host(&self) -> String {
        match self {
            BoundAddr::Tcp(a) | BoundAddr::Udp(a) => a.ip().to_string(),
            BoundAddr::Unix(p) => p.display().to_string(),
        }
    }
}

impl fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundAddr::Tcp(a) => write!(f, "tcp:{a}"),
            BoundAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BoundAddr::Udp(a) => write!(f, "udp:{a}"),
        }
    }
}

impl FromStr for BoundAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<BoundAddr> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(BoundAddr::Unix(PathBuf::from(p)));
        }
        let bad = || Error::protocol(format!("malformed frame: bad bound address {s:?}"));
        if let Some(a) = s.strip_prefix("udp:") {
            return a.parse().map(BoundAddr::Udp).map_err(|_| bad());
        }
        s.strip_prefix("tcp:")
            .and_then(|a| a.parse().ok())
            .map(BoundAddr::Tcp)
            .ok_or_else(bad)
    }
}

/// A bound (and for streams listening), non-blocking, close-on-exec socket.
#[derive(Debug)]
pub struct Bound {
    /// The socket.
    pub fd: OwnedFd,
    /// Where it listens.
    pub addr: BoundAddr,
    /// Adopted from an fd the primary had (`fd:N`): a Unix socket's file is not ours to
    /// remove.
    pub adopted: bool,
}

/// Binds and listens (`SO_REUSEADDR` for TCP). Errors name the syscall and the address.
pub fn bind(addr: &ListenAddr, backlog: i32) -> Result<Bound> {
    bind_with(addr, backlog, BindOptions::default())
}

/// [`bind`] with options. See [`bind_kind`] for datagram listeners and `fd:N`.
pub fn bind_with(addr: &ListenAddr, backlog: i32, opts: BindOptions) -> Result<Bound> {
    bind_kind(addr, SocketKind::Stream, backlog, opts)
}

/// Binds a listener of `kind`: a stream one listens with `backlog`, a datagram one (UDP:
/// no `SO_REUSEADDR`, as Node's dgram without `reuseAddr`) is only bound. `fd:N` adopts the
/// primary's fd N ([`ListenAddr::Fd`]). A relative Unix socket path is bound relative to the current
/// directory and reported (and later unlinked) as the absolute path it names, so a `chdir`
/// afterwards does not lose it; a path longer than `sun_path` still binds (through an `O_PATH`
/// handle on its directory, `sys::short_socket_path`) as long as its last component fits.
pub fn bind_kind(
    addr: &ListenAddr,
    kind: SocketKind,
    backlog: i32,
    opts: BindOptions,
) -> Result<Bound> {
    bind_kind_in_group(addr, kind, backlog, opts, false)
}

/// Binds a TCP listener that heads a `SO_REUSEPORT` group (the `kernel-rr` policy's anchor,
/// `crate::steering`): bound *without* `SO_REUSEPORT` first, so a port somebody holds (even
/// another group of the same user) fails with EADDRINUSE as any listen does, then given
/// `SO_REUSEPORT` before `listen`, so the sockets the primary binds later to the same address
/// join its group. `resolved`: the address a host name resolved to ([`bind_resolved`]).
pub fn bind_group_anchor(
    addr: &ListenAddr,
    resolved: Option<SocketAddr>,
    backlog: i32,
    opts: BindOptions,
) -> Result<Bound> {
    match resolved {
        Some(sa) if backlog >= 0 => {
            bind_ip(sa, addr, SocketKind::Stream, backlog, false, opts, true)
        }
        _ => bind_kind_in_group(addr, SocketKind::Stream, backlog, opts, true),
    }
}

fn bind_kind_in_group(
    addr: &ListenAddr,
    kind: SocketKind,
    backlog: i32,
    opts: BindOptions,
    group: bool,
) -> Result<Bound> {
    if backlog < 0 {
        return Err(Error::invalid_option(
            "backlog",
            format_args!("must not be negative (got {backlog})"),
        ));
    }
    match addr {
        ListenAddr::Unix(_) if kind == SocketKind::Datagram => Err(Error::invalid_option(
            "address",
            format_args!("datagram listeners are UDP only: {addr} is a Unix socket path"),
        )),
        ListenAddr::Unix(path) => bind_unix(path, addr, backlog, opts),
        ListenAddr::Fd(n) => adopt(*n, kind, backlog),
        ListenAddr::Tcp { host, port } => {
            if host.is_empty() {
                let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), *port);
                match bind_ip(any6, addr, kind, backlog, !opts.ipv6_only, opts, group) {
                    Err(e)
                        if e.errno() == libc::EAFNOSUPPORT || e.errno() == libc::EADDRNOTAVAIL =>
                    {
                        bind_ip(
                            SocketAddr::new(IpAddr::V4([0, 0, 0, 0].into()), *port),
                            addr,
                            kind,
                            backlog,
                            false,
                            opts,
                            group,
                        )
                    }
                    r => r,
                }
            } else {
                let sa = match host.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, *port),
                    Err(_) => lookup(host, *port)?,
                };
                bind_ip(sa, addr, kind, backlog, false, opts, group)
            }
        }
    }
}

/// Adopts the primary's fd `n` (`fd:N`): a duplicate of it, checked to be a socket of `kind`
/// (`EBADF`, `ENOTSOCK`, or `EPROTOTYPE` naming both kinds), a stream one put in listening
/// state with `backlog`. Fd `n` stays open whatever happens.
fn adopt(n: i32, kind: SocketKind, backlog: i32) -> Result<Bound> {
    let what = format!("fd:{n}");
    let fd = sys::dup_raw_cloexec(n).map_err(|e| {
        Error::os(
            "dup",
            format!("{what}: not an open file descriptor of the primary"),
            &e,
        )
    })?;
    let sock = Socket::from(fd);
    let ty = sock.r#type().map_err(|e| {
        let why = if e.raw_os_error() == Some(libc::ENOTSOCK) {
            format!("{what}: not a socket")
        } else {
            format!("{what}: SO_TYPE")
        };
        Error::os("getsockopt", why, &e)
    })?;
    let found = if ty == Type::STREAM {
        Some(SocketKind::Stream)
    } else if ty == Type::DGRAM {
        Some(SocketKind::Datagram)
    } else {
        None
    };
    if found != Some(kind) {
        let found = found.map_or_else(|| "neither stream nor datagram".into(), |k| k.to_string());
        return Err(Error::from_errno(
            "listen",
            format!("{what}: a {found} socket, but a {kind} listener was asked for"),
            libc::EPROTOTYPE,
        ));
    }
    let local = sock
        .local_addr()
        .map_err(|e| Error::os("getsockname", format!("{what}: getsockname"), &e))?;
    let addr = match (kind, local.as_socket(), local.as_pathname()) {
        (SocketKind::Datagram, Some(sa), _) => BoundAddr::Udp(sa),
        (SocketKind::Datagram, None, _) => {
            return Err(Error::from_errno(
                "listen",
                format!("{what}: not a UDP socket; datagram listeners are UDP only"),
                libc::EAFNOSUPPORT,
            ))
        }
        (SocketKind::Stream, Some(sa), _) => BoundAddr::Tcp(sa),
        (SocketKind::Stream, None, path) => {
            BoundAddr::Unix(path.map(Path::to_path_buf).unwrap_or_default())
        }
    };
    if kind == SocketKind::Stream {
        // On a listening socket this only sets the backlog; on a connected one it fails
        // (EINVAL), which is the error a worker should see.
        sock.listen(backlog).map_err(|e| {
            Error::os(
                "listen",
                format!("listen {what} (is it a listening socket?)"),
                &e,
            )
        })?;
    }
    sock.set_nonblocking(true)
        .map_err(|e| Error::os("fcntl", format!("O_NONBLOCK on {what}"), &e))?;
    // A TCP socket listened on while unbound got its port only now.
    let addr = match (&addr, sock.local_addr().ok().and_then(|a| a.as_socket())) {
        (BoundAddr::Tcp(_), Some(sa)) => BoundAddr::Tcp(sa),
        _ => addr,
    };
    Ok(Bound {
        fd: OwnedFd::from(sock),
        addr,
        adopted: true,
    })
}

fn bind_unix(path: &Path, addr: &ListenAddr, backlog: i32, opts: BindOptions) -> Result<Bound> {
    let err = |syscall: &'static str| {
        move |e: std::io::Error| Error::os(syscall, format!("{syscall} {addr}"), &e)
    };
    let abs = std::path::absolute(path).map_err(err("getcwd"))?;
    // The short name (and the directory handle behind it) only live through bind and chmod.
    let (name, _dir) = sys::short_socket_path(&abs).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
            let why = format!(
                "bind {addr} (its file name does not fit sun_path, {} bytes, even bound through its directory)",
                sys::SUN_PATH_MAX
            );
            Error::os("bind", why, &e)
        } else {
            err("open")(e)
        }
    })?;
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(err("socket"))?;
    let sa = SockAddr::unix(&name).map_err(err("bind"))?;
    sock.bind(&sa).map_err(err("bind"))?;
    if opts.readable_all || opts.writable_all {
        // As libuv's uv_pipe_chmod (Node's readableAll/writableAll): the bits for everyone,
        // added to the mode (libuv up to 1.50) or as the whole mode (1.51 on).
        let mut bits = 0;
        if opts.readable_all {
            bits |= 0o444;
        }
        if opts.writable_all {
            bits |= 0o222;
        }
        let chmod = || -> std::io::Result<()> {
            let mode = if opts.mode_exact {
                bits
            } else {
                std::fs::metadata(&name)?.permissions().mode() | bits
            };
            std::fs::set_permissions(&name, std::fs::Permissions::from_mode(mode))
        };
        if let Err(e) = chmod() {
            let _ = std::fs::remove_file(&name);
            return Err(err("chmod")(e));
        }
    }
    match finish(sock, addr, backlog, BoundAddr::Unix(abs.clone())) {
        Ok(b) => Ok(b),
        Err(e) => {
            // Bound but not listening: the file is ours, leave nothing behind.
            let _ = std::fs::remove_file(&abs);
            Err(e)
        }
    }
}

/// The host name `addr` needs looked up before it can be bound, or `None` when binding needs
/// no name service (an IP literal, every interface, a Unix path). The primary resolves names
/// off its loop ([`lookup`] blocks for as long as the resolver takes).
pub fn host_to_look_up(addr: &ListenAddr) -> Option<(&str, u16)> {
    match addr {
        ListenAddr::Tcp { host, port } if !host.is_empty() && host.parse::<IpAddr>().is_err() => {
            Some((host.as_str(), *port))
        }
        _ => None,
    }
}

/// Binds and listens on `sa`, the address a name in `addr` resolved to (see
/// [`host_to_look_up`] and [`lookup`]); errors name `addr` as [`bind`]'s do.
pub fn bind_resolved(
    addr: &ListenAddr,
    sa: SocketAddr,
    kind: SocketKind,
    backlog: i32,
    opts: BindOptions,
) -> Result<Bound> {
    if backlog < 0 {
        return Err(Error::invalid_option(
            "backlog",
            format_args!("must not be negative (got {backlog})"),
        ));
    }
    bind_ip(sa, addr, kind, backlog, false, opts, false)
}

/// Resolves a host name with the system resolver (`getaddrinfo`): the first address. Blocks
/// for as long as the resolver takes (its timeout and attempts, from resolv.conf).
pub fn lookup(host: &str, port: u16) -> Result<SocketAddr> {
    let not_found = || {
        let mut e = Error::new(
            ErrorKind::Os,
            format!("getaddrinfo {host}: host not found (ENOTFOUND)"),
        );
        e = e.with_syscall("getaddrinfo");
        e
    };
    let mut addrs = (host, port).to_socket_addrs().map_err(|_| not_found())?;
    addrs.next().ok_or_else(not_found)
}

fn bind_ip(
    sa: SocketAddr,
    addr: &ListenAddr,
    kind: SocketKind,
    backlog: i32,
    dual: bool,
    opts: BindOptions,
    group: bool,
) -> Result<Bound> {
    let ty = match kind {
        SocketKind::Stream => Type::STREAM,
        SocketKind::Datagram => Type::DGRAM,
    };
    let sock = Socket::new(Domain::for_address(sa), ty, None)
        .map_err(|e| Error::os("socket", format!("socket for {addr}"), &e))?;
    if kind == SocketKind::Stream || opts.reuse_addr {
        // For UDP it lets other sockets bind the same port: only when asked (reuseAddr).
        sock.set_reuse_address(true)
            .map_err(|e| Error::os("setsockopt", format!("SO_REUSEADDR on {addr}"), &e))?;
    }
    if dual {
        // Best effort, as Node: some systems force v6-only.
        let _ = sock.set_only_v6(false);
    } else if opts.ipv6_only && sa.is_ipv6() {
        sock.set_only_v6(true)
            .map_err(|e| Error::os("setsockopt", format!("IPV6_V6ONLY on {addr}"), &e))?;
    }
    sock.bind(&sa.into())
        .map_err(|e| Error::os("bind", format!("bind {sa}"), &e))?;
    let local = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(sa);
    if kind == SocketKind::Datagram {
        sock.set_nonblocking(true)
            .map_err(|e| Error::os("fcntl", format!("O_NONBLOCK on {addr}"), &e))?;
        return Ok(Bound {
            fd: OwnedFd::from(sock),
            addr: BoundAddr::Udp(local),
            adopted: false,
        });
    }
    if group {
        // After bind (see `bind_group_anchor`), before listen: the group forms at listen.
        sock.set_reuse_port(true)
            .map_err(|e| Error::os("setsockopt", format!("SO_REUSEPORT on {addr}"), &e))?;
    }
    finish(sock, addr, backlog, BoundAddr::Tcp(local))
}

fn finish(sock: Socket, addr: &ListenAddr, backlog: i32, bound: BoundAddr) -> Result<Bound> {
    sock.listen(backlog)
        .map_err(|e| Error::os("listen", format!("listen {addr}"), &e))?;
    sock.set_nonblocking(true)
        .map_err(|e| Error::os("fcntl", format!("O_NONBLOCK on {addr}"), &e))?;
    Ok(Bound {
        fd: OwnedFd::from(sock),
        addr: bound,
        adopted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_addresses() {
        for s in [
            "127.0.0.1:8080",
            "[::1]:0",
            "localhost:3000",
            ":80",
            "unix:/tmp/x.sock",
            "fd:3",
            "fd:0",
            "tcp:fd:80",
        ] {
            assert_eq!(s.parse::<ListenAddr>().unwrap().to_string(), s);
        }
        assert_eq!("fd:7".parse::<ListenAddr>().unwrap(), ListenAddr::Fd(7));
        assert_eq!(
            "tcp:127.0.0.1:1".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 1
            }
        );
        for bad in [
            "",
            "8080",
            "host:99999",
            "::1:80",
            "[zz]:1",
            "unix:",
            "a b:1",
            "fd:",
            "fd:-1",
            "fd:+3",
            "fd:3x",
            "fd:2147483648",
        ] {
            let e = bad.parse::<ListenAddr>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(e.message().contains("invalid listen address"), "{e}");
        }
        // Longer than sun_path is fine (bound through its directory), longer than PATH_MAX not.
        let long = format!("unix:/{}", "a".repeat(MAX_UNIX_PATH - 1));
        assert_eq!(long.parse::<ListenAddr>().unwrap().to_string(), long);
        let e = format!("unix:/{}", "a".repeat(MAX_UNIX_PATH))
            .parse::<ListenAddr>()
            .unwrap_err();
        assert!(e.message().contains("longer than 4095 bytes"), "{e}");
    }

    #[test]
    fn hosts_named_like_a_scheme_print_back_as_tcp() {
        // Found by fuzz/ (target proto): "tcp:unix:80" printed as "unix:80", which a primary
        // decoding the listen request took for the socket path "80".
        for s in ["tcp:unix:80", "tcp:tcp:80"] {
            let a: ListenAddr = s.parse().unwrap();
            assert!(matches!(&a, ListenAddr::Tcp { port: 80, .. }), "{a:?}");
            assert_eq!(a.to_string(), s);
            assert_eq!(a.to_string().parse::<ListenAddr>().unwrap(), a);
        }
    }

    #[test]
    fn port_zero_resolves_and_in_use_is_reported() {
        let b = bind(&"127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let port = b.addr.port();
        assert_ne!(port, 0);
        assert_eq!(b.addr.address_type(), 4);
        let e = bind(&format!("127.0.0.1:{port}").parse().unwrap(), 16).unwrap_err();
        assert_eq!(e.code(), Some("EADDRINUSE"));
        assert_eq!(e.syscall(), Some("bind"));
        assert!(
            e.message().starts_with(&format!("bind 127.0.0.1:{port}: ")),
            "{e}"
        );
    }

    #[test]
    fn udp_binds_once_per_port_and_reports_udp() {
        let b = bind_kind(
            &"127.0.0.1:0".parse().unwrap(),
            SocketKind::Datagram,
            0,
            BindOptions::default(),
        )
        .unwrap();
        let BoundAddr::Udp(sa) = b.addr else {
            panic!("{:?}", b.addr)
        };
        assert_ne!(sa.port(), 0);
        assert_eq!(b.addr.kind(), SocketKind::Datagram);
        assert_eq!(b.addr.to_string().parse::<BoundAddr>().unwrap(), b.addr);
        // No SO_REUSEADDR: a second UDP bind of the port fails, as Node's dgram without
        // reuseAddr; a TCP listener on the same port number is another socket altogether.
        let addr: ListenAddr = format!("127.0.0.1:{}", sa.port()).parse().unwrap();
        let e = bind_kind(&addr, SocketKind::Datagram, 0, BindOptions::default()).unwrap_err();
        assert_eq!(e.code(), Some("EADDRINUSE"), "{e}");
        // reuseAddr (SO_REUSEADDR on both): the same port binds twice.
        let reuse = BindOptions {
            reuse_addr: true,
            ..BindOptions::default()
        };
        let r1 = bind_kind(
            &"127.0.0.1:0".parse().unwrap(),
            SocketKind::Datagram,
            0,
            reuse,
        )
        .unwrap();
        let again: ListenAddr = format!("127.0.0.1:{}", r1.addr.port()).parse().unwrap();
        bind_kind(&again, SocketKind::Datagram, 0, reuse).expect("a second reuseAddr bind");
        let unix = bind_kind(
            &"unix:/tmp/x.sock".parse().unwrap(),
            SocketKind::Datagram,
            0,
            BindOptions::default(),
        )
        .unwrap_err();
        assert_eq!(unix.kind(), ErrorKind::InvalidArgument);
        assert!(unix.message().contains("UDP only"), "{unix}");
    }

    /// A fresh directory under the temp dir whose absolute path is longer than `sun_path`;
    /// removed (with what is in it) on drop.
    struct LongDir(PathBuf);
    impl LongDir {
        fn new(tag: &str) -> LongDir {
            let root = std::env::temp_dir().join(format!("corral-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            let dir = root.join("d".repeat(60)).join("e".repeat(60));
            std::fs::create_dir_all(&dir).unwrap();
            LongDir(dir)
        }
    }
    impl Drop for LongDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap().parent().unwrap());
        }
    }

    #[test]
    fn ipv6_only_leaves_the_ipv4_port_free() {
        // IPv4 first: a v6-only listen(0) may get a port some other process holds on
        // 127.0.0.1 (the kernel only checks IPv6 for it), so the other order would be flaky.
        let v4 = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let any6: ListenAddr = format!("[::]:{port}").parse().unwrap();
        let only = BindOptions {
            ipv6_only: true,
            ..BindOptions::default()
        };
        match bind_with(&any6, 16, only) {
            Err(e) if e.errno() == libc::EAFNOSUPPORT || e.errno() == libc::EADDRNOTAVAIL => {
                eprintln!("no IPv6 here ({e}): nothing to check");
            }
            r => {
                r.expect("a v6-only listener next to an IPv4 one on the same port");
                // Without the option it is dual-stack (bindv6only=0, Linux's default) and
                // wants the IPv4 port too.
                let v6only_default = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
                    .map(|s| s.trim() == "1")
                    .unwrap_or(false);
                if !v6only_default {
                    let e = bind(&any6, 16).unwrap_err();
                    assert_eq!(e.code(), Some("EADDRINUSE"), "{e}");
                }
            }
        }
    }

    #[test]
    fn a_unix_path_longer_than_sun_path_binds() {
        let dir = LongDir::new("longpath");
        let path = dir.0.join("s.sock");
        assert!(path.as_os_str().len() > sys::SUN_PATH_MAX, "{path:?}");
        let b = bind(&ListenAddr::Unix(path.clone()), 16).unwrap();
        assert_eq!(b.addr, BoundAddr::Unix(path.clone()));
        let meta = std::fs::metadata(&path).expect("the socket file is where it was asked");
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
        // A client reaches it through the same kind of short name.
        let (short, _dir) = sys::short_socket_path(&path).unwrap();
        std::os::unix::net::UnixStream::connect(&short).expect("connect to the long path");

        let name = "n".repeat(100);
        let e = bind(&ListenAddr::Unix(dir.0.join(&name)), 16).unwrap_err();
        assert_eq!(e.code(), Some("ENAMETOOLONG"));
        assert!(e.message().contains("sun_path"), "{e}");
        assert!(!dir.0.join(&name).exists());
    }

    #[test]
    fn readable_all_and_writable_all_set_the_file_mode() {
        let dir = LongDir::new("mode");
        // Short and long paths both go through the same chmod.
        for (name, path) in [
            (
                "short",
                std::env::temp_dir().join(format!("corral-mode-{}.sock", std::process::id())),
            ),
            ("long", dir.0.join("m.sock")),
        ] {
            let _ = std::fs::remove_file(&path);
            // (readable, writable, exact) -> the mode's permission bits, the umask's part
            // masked off where the bits are added.
            for (r, w, exact, want, mask) in [
                (true, true, false, 0o666, 0o666),
                (true, false, false, 0o444, 0o444),
                (true, true, true, 0o666, 0o7777),
                (true, false, true, 0o444, 0o7777),
                (false, true, true, 0o222, 0o7777),
            ] {
                let _ = std::fs::remove_file(&path);
                let opts = BindOptions {
                    readable_all: r,
                    writable_all: w,
                    mode_exact: exact,
                    ..BindOptions::default()
                };
                let b = bind_with(&ListenAddr::Unix(path.clone()), 16, opts).unwrap();
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                let _ = std::fs::remove_file(&path);
                drop(b);
                assert_eq!(
                    mode & mask,
                    want,
                    "{name} r={r} w={w} exact={exact}: mode {mode:o}"
                );
            }
        }
    }

    #[test]
    fn unknown_hosts_fail_with_getaddrinfo() {
        let e = bind(&"no-such-host.invalid:0".parse().unwrap(), 16).unwrap_err();
        assert_eq!(e.syscall(), Some("getaddrinfo"));
        assert!(e.message().contains("ENOTFOUND"), "{e}");
    }
}
