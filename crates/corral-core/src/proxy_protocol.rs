//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a proxy (HAProxy, nginx `stream`
//! with `proxy_protocol on`, AWS NLB) writes at the start of a connection to say who the client
//! really is.
//!
//! This module only parses; it does no I/O. The primary peeks at the first bytes of a connection
//! (`MSG_PEEK`, nothing consumed), feeds them to [`parse`] until it answers, then reads exactly
//! [`Header::len`] bytes so the worker's first read starts at the client's own bytes. The format is
//! the one in HAProxy's `doc/proxy-protocol.txt`:
//!
//! - v1: one text line, `PROXY TCP4|TCP6|UNKNOWN <src> <dst> <sport> <dport>\r\n`, at most 107
//!   bytes with the CRLF.
//! - v2: a 12-byte signature, a version/command byte, a family/protocol byte, a big-endian length,
//!   then the addresses and optional TLVs (which are skipped, not interpreted).
//!
//! A header that is malformed, too long, or absent is [`Parse::Invalid`] with the reason; the
//! caller closes that connection and counts it (a listener that expects PROXY must not let a
//! client forge its address by sending nothing).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest v1 line, CRLF included (from the specification).
pub const V1_MAX_LEN: usize = 107;

/// Longest v2 header accepted (16-byte fixed part + addresses + TLVs). The format allows 65,551;
/// real proxies send at most a few hundred bytes (AWS NLB's TLVs included), and the primary must
/// bound what it buffers per connection.
pub const V2_MAX_LEN: usize = 16 + 1024;

/// Longest header of either version: what the primary peeks at most.
pub const MAX_LEN: usize = V2_MAX_LEN;

/// A complete, valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header occupies at the start of the stream (to consume before the worker reads).
    pub len: usize,
    /// The client's address, `None` for v1 `UNKNOWN`, v2 `LOCAL` (a health check from the proxy
    /// itself) and families that are not IP (the connection's own peer address applies).
    pub source: Option<SocketAddr>,
    /// The address the client connected to on the proxy, when known.
    pub destination: Option<SocketAddr>,
}

/// What the bytes seen so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A prefix of a valid header: read more (up to [`MAX_LEN`]) and parse again.
    Incomplete,
    /// A whole header.
    Done(Header),
    /// Not a PROXY header, or a broken one; the reason says which.
    Invalid(&'static str),
}

/// Parses the start of a connection's stream.
pub fn parse(buf: &[u8]) -> Parse {
    if buf.is_empty() {
        return Parse::Incomplete;
    }
    if buf[0] == b'P' {
        parse_v1(buf)
    } else if buf[0] == b'\r' {
        parse_v2(buf)
    } else {
        Parse::Invalid("no PROXY protocol header")
    }
}

fn parse_v1(buf: &[u8]) -> Parse {
    const PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Parse::Invalid("no PROXY protocol header");
    }
    let Some(cr) = buf.iter().take(V1_MAX_LEN).position(|&b| b == b'\r') else {
        return if buf.len() >= V1_MAX_LEN {
            Parse::Invalid("PROXY v1 line longer than 107 bytes")
        } else {
            Parse::Incomplete
        };
    };
    match buf.get(cr + 1) {
        None => return Parse::Incomplete,
        Some(b'\n') => {}
        Some(_) => return Parse::Invalid("PROXY v1 line not ended by CRLF"),
    }
    let Ok(line) = std::str::from_utf8(&buf[PREFIX.len()..cr]) else {
        return Parse::Invalid("PROXY v1 line is not ASCII");
    };
    let len = cr + 2;
    let mut words = line.split(' ');
    let proto = words.next().unwrap_or("");
    if proto == "UNKNOWN" {
        // The receiver must ignore whatever follows UNKNOWN.
        return Parse::Done(Header {
            len,
            source: None,
            destination: None,
        });
    }
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Parse::Invalid("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    let fields: Vec<&str> = words.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Parse::Invalid("PROXY v1 line does not have 4 address fields");
    };
    let (Some(src), Some(dst)) = (v1_ip(src, v6), v1_ip(dst, v6)) else {
        return Parse::Invalid("PROXY v1 address does not match its protocol");
    };
    let (Some(sport), Some(dport)) = (v1_port(sport), v1_port(dport)) else {
        return Parse::Invalid("PROXY v1 port is not a number in 0..=65535");
    };
    Parse::Done(Header {
        len,
        source: Some(SocketAddr::new(src, sport)),
        destination: Some(SocketAddr::new(dst, dport)),
    })
}

fn v1_ip(s: &str, v6: bool) -> Option<IpAddr> {
    if v6 {
        s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// A port in decimal without sign or leading zeros (`0` itself is allowed).
fn v1_port(s: &str) -> Option<u16> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn parse_v2(buf: &[u8]) -> Parse {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Parse::Invalid("no PROXY protocol header");
    }
    if buf.len() < 16 {
        return Parse::Incomplete;
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Parse::Invalid("PROXY v2 version is not 2");
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Parse::Invalid("PROXY v2 command is neither LOCAL nor PROXY"),
    };
    let fam = buf[13];
    let body = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = 16 + body;
    if len > V2_MAX_LEN {
        return Parse::Invalid("PROXY v2 header longer than the 1,040 bytes accepted");
    }
    if buf.len() < len {
        return Parse::Incomplete;
    }
    let addrs = &buf[16..len];
    let (source, destination) = match fam >> 4 {
        // AF_INET: 4 + 4 + 2 + 2.
        1 => {
            let Some(a) = addrs.get(..12) else {
                return Parse::Invalid("PROXY v2 IPv4 addresses truncated");
            };
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(8))),
                Some(SocketAddr::new(ip(4), port(10))),
            )
        }
        // AF_INET6: 16 + 16 + 2 + 2.
        2 => {
            let Some(a) = addrs.get(..36) else {
                return Parse::Invalid("PROXY v2 IPv6 addresses truncated");
            };
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(32))),
                Some(SocketAddr::new(ip(16), port(34))),
            )
        }
        // AF_UNSPEC or AF_UNIX: no IP address to route on.
        0 | 3 => (None, None),
        _ => return Parse::Invalid("PROXY v2 address family unknown"),
    };
    if local {
        // LOCAL: the proxy speaking for itself; the addresses (if any) must be ignored.
        return Parse::Done(Header {
            len,
            source: None,
            destination: None,
        });
    }
    Parse::Done(Header {
        len,
        source,
        destination,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> Header {
        match parse(buf) {
            Parse::Done(h) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | cmd);
        b.push(fam);
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        let h = done(line);
        assert_eq!(h.len, 45);
        assert_eq!(h.source, Some("192.0.2.7:56324".parse().unwrap()));
        assert_eq!(h.destination, Some("198.51.100.1:443".parse().unwrap()));
        assert_eq!(&line[h.len..h.len + 3], b"GET");

        let h = done(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
        assert_eq!(h.source, Some("[2001:db8::1]:1".parse().unwrap()));
        assert_eq!(h.destination, Some("[::1]:65535".parse().unwrap()));
    }

    #[test]
    fn v1_unknown_has_no_address() {
        let h = done(b"PROXY UNKNOWN ffff::1 ::1 5 6\r\n");
        assert_eq!((h.len, h.source), (31, None));
        assert_eq!(done(b"PROXY UNKNOWN\r\n").len, 15);
    }

    #[test]
    fn every_prefix_of_a_valid_header_is_incomplete() {
        let line = b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 80\r\n";
        let bin = v2(1, 0x11, &[10, 0, 0, 1, 10, 0, 0, 2, 0x03, 0xe8, 0, 80]);
        for whole in [&line[..], &bin[..]] {
            for n in 0..whole.len() {
                assert_eq!(parse(&whole[..n]), Parse::Incomplete, "prefix {n}");
            }
            assert!(matches!(parse(whole), Parse::Done(h) if h.len == whole.len()));
        }
    }

    #[test]
    fn v1_rejects_what_the_specification_rejects() {
        for (bad, why) in [
            (&b"GET / HTTP/1.1\r\n"[..], "no PROXY"),
            (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "protocol"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "4 address fields"),
            (b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n", "does not match"),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "does not match"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "port"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n", "port"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "port"),
            (b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", "4 address fields"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX", "CRLF"),
        ] {
            match parse(bad) {
                Parse::Invalid(r) => assert!(r.contains(why), "{bad:?}: {r}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LEN, b'x');
        assert!(matches!(parse(&long), Parse::Invalid(r) if r.contains("107")));
        long.truncate(V1_MAX_LEN - 1);
        assert_eq!(parse(&long), Parse::Incomplete);
    }

    #[test]
    fn v2_ipv4_ipv6_and_tlvs() {
        let mut body = vec![192, 0, 2, 7, 127, 0, 0, 1, 0xdc, 0x04, 0x1f, 0x90];
        body.extend_from_slice(&[0x04, 0x00, 0x03, b'a', b'b', b'c']); // a TLV, skipped
        let mut b = v2(1, 0x11, &body);
        b.extend_from_slice(b"payload");
        let h = done(&b);
        assert_eq!(h.len, 16 + body.len());
        assert_eq!(h.source, Some("192.0.2.7:56324".parse().unwrap()));
        assert_eq!(h.destination, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(&b[h.len..], b"payload");

        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0, 9, 0, 80]);
        let h = done(&v2(1, 0x21, &body));
        assert_eq!(h.source, Some("[2001:db8::7]:9".parse().unwrap()));
        assert_eq!(h.destination, Some("[::1]:80".parse().unwrap()));
    }

    #[test]
    fn v2_local_and_unspec_carry_no_client() {
        let h = done(&v2(0, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]));
        assert_eq!((h.len, h.source), (28, None));
        let h = done(&v2(1, 0x00, &[]));
        assert_eq!((h.len, h.source), (16, None));
        let h = done(&v2(1, 0x31, &[0u8; 216]));
        assert_eq!((h.len, h.source), (232, None));
    }

    #[test]
    fn v2_rejects_bad_versions_commands_families_and_lengths() {
        let mut b = v2(1, 0x11, &[0; 12]);
        b[12] = 0x11;
        assert!(matches!(parse(&b), Parse::Invalid(r) if r.contains("version")));
        b[12] = 0x22;
        assert!(matches!(parse(&b), Parse::Invalid(r) if r.contains("command")));
        let b = v2(1, 0x41, &[0; 12]);
        assert!(matches!(parse(&b), Parse::Invalid(r) if r.contains("family")));
        let b = v2(1, 0x11, &[0; 11]);
        assert!(matches!(parse(&b), Parse::Invalid(r) if r.contains("truncated")));
        let b = v2(1, 0x21, &[0; 35]);
        assert!(matches!(parse(&b), Parse::Invalid(r) if r.contains("truncated")));
        // A length beyond the bound is refused from the fixed part alone, before buffering it.
        let mut b = v2(1, 0x11, &[]);
        b[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert!(matches!(parse(&b), Parse::Invalid(r) if r.contains("1,040")));
        let mut sig = V2_SIGNATURE;
        sig[5] = b'X';
        assert!(matches!(parse(&sig), Parse::Invalid(r) if r.contains("no PROXY")));
    }
}
