//! Listen addresses (what a worker asks for), bound addresses (what it got) and binding.

use crate::error::{Error, ErrorKind, Result};
use socket2::{Domain, SockAddr, Socket, Type};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;

/// Backlog when the caller gives none (Node's default).
pub const DEFAULT_BACKLOG: i32 = 511;

/// What a worker asks to listen on. Workers asking for equal `ListenAddr`s share one listener.
///
/// Text form: `"127.0.0.1:8080"`, `"[::1]:0"`, `"localhost:3000"`, `":8080"` (every interface),
/// `"unix:/run/app.sock"`. Port 0 means: the kernel picks a port once, every worker gets it.
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
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            // "unix:80" would read back as a socket path and "tcp:80" as no address at all: a
            // host spelled like a scheme keeps the `tcp:` that tells them apart.
            ListenAddr::Tcp { host, port } if host == "unix" || host == "tcp" => {
                write!(f, "tcp:{host}:{port}")
            }
            ListenAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<ListenAddr> {
        let bad = |why: &str| Error::invalid(format!("invalid listen address {s:?}: {why}"));
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            if path.len() > 107 {
                return Err(bad("socket path longer than 107 bytes"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
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
    /// Unix socket path.
    Unix(PathBuf),
}

impl BoundAddr {
    /// The port (0 for Unix sockets).
    pub fn port(&self) -> u16 {
        match self {
            BoundAddr::Tcp(a) => a.port(),
            BoundAddr::Unix(_) => 0,
        }
    }
    /// 4, 6, or -1 for a Unix socket (Node's `addressType`).
    pub fn address_type(&self) -> i32 {
        match self {
            BoundAddr::Tcp(SocketAddr::V4(_)) => 4,
            BoundAddr::Tcp(SocketAddr::V6(_)) => 6,
            BoundAddr::Unix(_) => -1,
        }
    }
    /// The IP as text, or the socket path.
    pub fn host(&self) -> String {
        match self {
            BoundAddr::Tcp(a) => a.ip().to_string(),
            BoundAddr::Unix(p) => p.display().to_string(),
        }
    }
}

impl fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundAddr::Tcp(a) => write!(f, "tcp:{a}"),
            BoundAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl FromStr for BoundAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<BoundAddr> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(BoundAddr::Unix(PathBuf::from(p)));
        }
        s.strip_prefix("tcp:")
            .and_then(|a| a.parse().ok())
            .map(BoundAddr::Tcp)
            .ok_or_else(|| Error::protocol(format!("malformed frame: bad bound address {s:?}")))
    }
}

/// A bound, listening, non-blocking, close-on-exec socket.
#[derive(Debug)]
pub struct Bound {
    /// The socket.
    pub fd: OwnedFd,
    /// Where it listens.
    pub addr: BoundAddr,
}

/// Binds and listens (`SO_REUSEADDR` for TCP). Errors name the syscall and the address.
pub fn bind(addr: &ListenAddr, backlog: i32) -> Result<Bound> {
    if backlog < 0 {
        return Err(Error::invalid(format!(
            "backlog must not be negative (got {backlog})"
        )));
    }
    match addr {
        ListenAddr::Unix(path) => {
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None)
                .map_err(|e| Error::os("socket", format!("socket for {addr}"), &e))?;
            let sa =
                SockAddr::unix(path).map_err(|e| Error::os("bind", format!("bind {addr}"), &e))?;
            sock.bind(&sa)
                .map_err(|e| Error::os("bind", format!("bind {addr}"), &e))?;
            finish(sock, addr, backlog, BoundAddr::Unix(path.clone()))
        }
        ListenAddr::Tcp { host, port } => {
            if host.is_empty() {
                let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), *port);
                match bind_tcp(any6, addr, backlog, true) {
                    Err(e)
                        if e.errno() == libc::EAFNOSUPPORT || e.errno() == libc::EADDRNOTAVAIL =>
                    {
                        bind_tcp(
                            SocketAddr::new(IpAddr::V4([0, 0, 0, 0].into()), *port),
                            addr,
                            backlog,
                            false,
                        )
                    }
                    r => r,
                }
            } else {
                let sa = match host.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, *port),
                    Err(_) => lookup(host, *port)?,
                };
                bind_tcp(sa, addr, backlog, false)
            }
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
pub fn bind_resolved(addr: &ListenAddr, sa: SocketAddr, backlog: i32) -> Result<Bound> {
    if backlog < 0 {
        return Err(Error::invalid(format!(
            "backlog must not be negative (got {backlog})"
        )));
    }
    bind_tcp(sa, addr, backlog, false)
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

fn bind_tcp(sa: SocketAddr, addr: &ListenAddr, backlog: i32, dual: bool) -> Result<Bound> {
    let sock = Socket::new(Domain::for_address(sa), Type::STREAM, None)
        .map_err(|e| Error::os("socket", format!("socket for {addr}"), &e))?;
    sock.set_reuse_address(true)
        .map_err(|e| Error::os("setsockopt", format!("SO_REUSEADDR on {addr}"), &e))?;
    if dual {
        // Best effort, as Node: some systems force v6-only.
        let _ = sock.set_only_v6(false);
    }
    sock.bind(&sa.into())
        .map_err(|e| Error::os("bind", format!("bind {sa}"), &e))?;
    let local = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(sa);
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
        ] {
            assert_eq!(s.parse::<ListenAddr>().unwrap().to_string(), s);
        }
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
        ] {
            let e = bad.parse::<ListenAddr>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(e.message().contains("invalid listen address"), "{e}");
        }
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
    fn unknown_hosts_fail_with_getaddrinfo() {
        let e = bind(&"no-such-host.invalid:0".parse().unwrap(), 16).unwrap_err();
        assert_eq!(e.syscall(), Some("getaddrinfo"));
        assert!(e.message().contains("ENOTFOUND"), "{e}");
    }
}
