//! Clients for the routing tests: a request from a chosen loopback source address (Linux
//! routes all of 127/8 to lo, so 127.0.0.x are distinct clients), optionally preceded by raw
//! bytes (a PROXY header), and the answer's fields.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Connects to `127.0.0.1:port` from `src` (any port), writes `prefix` then one line, returns
/// the answer line ("worker <id> pid <pid> peer <addr>").
pub fn request_from(src: Ipv4Addr, port: u16, prefix: &[u8]) -> std::io::Result<String> {
    let s = connect_from(src, port)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = prefix.to_vec();
    out.extend_from_slice(b"hello\n");
    (&s).write_all(&out)?;
    read_answer(&s)
}

/// A connection to `127.0.0.1:port` from `src`.
pub fn connect_from(src: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((src, 0)).into())?;
    sock.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    Ok(sock.into())
}

/// Reads one answer line; `UnexpectedEof` when the connection closed without one.
pub fn read_answer(s: impl std::io::Read) -> std::io::Result<String> {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        ));
    }
    Ok(line.trim_end().to_string())
}

/// The client address the worker reported in an answer.
pub fn peer_of(answer: &str) -> SocketAddr {
    answer
        .split_whitespace()
        .skip_while(|w| *w != "peer")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no peer in {answer:?}"))
}

/// The `n`-th client address (n < 250): 127.0.0.2, 127.0.0.3, ... (127.0.0.1 is left for
/// proxies, so a worker reporting 127.0.0.x with x > 1 saw the client, not the proxy).
pub fn client(n: u32) -> Ipv4Addr {
    assert!(n < 250, "client {n}: only 250 loopback clients");
    Ipv4Addr::new(127, 0, 0, 2 + n as u8)
}
