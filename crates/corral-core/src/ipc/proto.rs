//! Payloads of the engine's control messages (little-endian, length-prefixed strings).
//! Every decoder checks lengths: a short or trailing-garbage payload is a protocol error.

use crate::error::{Error, ErrorKind, Result};
use crate::listener::{BindOptions, BoundAddr, ListenAddr, SocketKind};
use crate::sys::LoadRelease;

/// Builds a payload.
#[derive(Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    /// An empty payload.
    pub fn new() -> Writer {
        Writer(Vec::with_capacity(32))
    }
    /// Appends a u32.
    pub fn u32(mut self, v: u32) -> Writer {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends an i32.
    pub fn i32(self, v: i32) -> Writer {
        self.u32(v as u32)
    }
    /// Appends a length-prefixed string.
    pub fn str(mut self, s: &str) -> Writer {
        self = self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// The bytes.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads a payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, naming the message in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::protocol(format!(
                "malformed frame: {} payload is too short",
                self.what
            )));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    /// Reads one byte if any is left.
    fn take_opt_u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }
    /// Reads a u32.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Reads an i32.
    pub fn i32(&mut self) -> Result<i32> {
        Ok(self.u32()? as i32)
    }
    /// Reads a length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| {
            Error::protocol(format!(
                "malformed frame: {} has a non-UTF-8 string",
                self.what
            ))
        })
    }
    /// Fails unless everything was read.
    pub fn end(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::protocol(format!(
                "malformed frame: {} payload has trailing bytes",
                self.what
            )))
        }
    }
}

/// worker -> primary: listen on `addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenRequest {
    /// Request id, echoed in the answer.
    pub req: u32,
    /// Backlog for `listen(2)`.
    pub backlog: i32,
    /// What to listen on.
    pub addr: ListenAddr,
    /// Distinguishes several listeners on the same address from one worker (node:cluster's
    /// listen index): requests share a listener only when address and index are equal.
    pub index: u32,
    /// How to bind. Not part of the listener's key (as in node:cluster): the request that
    /// binds decides, later ones with other options share the listener as it is.
    pub opts: BindOptions,
    /// Stream or datagram; part of the listener's key.
    pub kind: SocketKind,
}

impl ListenRequest {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u32(self.req)
            .i32(self.backlog)
            .str(&self.addr.to_string())
            .u32(self.index)
            .u32(self.opts.bits())
            .u32(self.kind.to_u32())
            .finish()
    }
    /// Decodes.
    pub fn decode(buf: &[u8]) -> Result<ListenRequest> {
        let mut r = Reader::new(buf, "listen request");
        let req = r.u32()?;
        let backlog = r.i32()?;
        let addr = r.str()?.parse()?;
        let index = r.u32()?;
        let opts = BindOptions::from_bits(r.u32()?).map_err(|e| {
            Error::protocol(format!("malformed frame: listen request: {}", e.message()))
        })?;
        let kind = SocketKind::from_u32(r.u32()?).map_err(|e| {
            Error::protocol(format!("malformed frame: listen request: {}", e.message()))
        })?;
        r.end()?;
        Ok(ListenRequest {
            req,
            backlog,
            addr,
            index,
            opts,
            kind,
        })
    }
}

/// [`ListenReply::Ok`]'s `load_release` on the wire.
const RELEASE_AT_CLOSE: u32 = 0;
const RELEASE_AT_ACCEPT: u32 = 1;

/// primary -> worker: the answer to a [`ListenRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenReply {
    /// Listening; in shared mode the message carries the listening fd.
    Ok {
        /// Request id.
        req: u32,
        /// Listener id (stable for the primary's lifetime).
        listener: u32,
        /// The resolved address (a real port where 0 was asked).
        addr: BoundAddr,
        /// Acknowledge connections in groups of this many (a quarter of the window, at least
        /// 1): fewer acks wake the primary less, and the window still never fills with
        /// connections already taken.
        ack_every: u32,
        /// A load-aware kernel-steered listener (`kernel-rr` with its window, `kernel-least`):
        /// the worker's slot in the group's `load` map, whose fd is the message's second fd
        /// (after the worker's own socket). The worker releases one unit of it per connection
        /// it is done with. Sent after `ack_every` only when present, so an answer without it
        /// (an older primary's) decodes as `None`.
        load_slot: Option<u32>,
        /// When the worker releases that unit (meaningful with `load_slot` only): on taking
        /// the connection (`kernel-rr`'s window counts connections not taken yet) or on its
        /// close (`kernel-least` counts open ones). Sent after `load_slot` as a `u32` 1 for
        /// [`LoadRelease::AtAccept`] only, so an answer with a slot and no mode (an older
        /// primary's, which counted open connections) decodes as [`LoadRelease::AtClose`].
        load_release: LoadRelease,
    },
    /// Failed: the primary's error. On the wire: errno, syscall and message, then, when
    /// [`Error::relayed`] would not rebuild it as it was (its kind is not [`ErrorKind::Os`],
    /// it names an option, or no syscall), its kind and option (`""` for none). An answer
    /// without them (an older primary's) decodes as [`Error::relayed`] says.
    Err {
        /// Request id.
        req: u32,
        /// The primary's error.
        error: Error,
    },
}

/// [`ErrorKind`] on the wire (a ListenErr's kind).
const KINDS: [ErrorKind; 9] = [
    ErrorKind::InvalidArgument,
    ErrorKind::Os,
    ErrorKind::Protocol,
    ErrorKind::TooLarge,
    ErrorKind::WrongState,
    ErrorKind::NotWorker,
    ErrorKind::NoSuchWorker,
    ErrorKind::Disconnected,
    ErrorKind::WouldBlock,
];

fn kind_code(kind: ErrorKind) -> u32 {
    KINDS.iter().position(|k| *k == kind).expect("every kind") as u32
}

impl ListenReply {
    /// Encodes (`Kind::ListenOk` or `Kind::ListenErr` payload).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ListenReply::Ok {
                req,
                listener,
                addr,
                ack_every,
                load_slot,
                load_release,
            } => {
                let w = Writer::new()
                    .u32(*req)
                    .u32(*listener)
                    .str(&addr.to_string())
                    .u32(*ack_every);
                match (load_slot, load_release) {
                    (Some(slot), LoadRelease::AtAccept) => w.u32(*slot).u32(RELEASE_AT_ACCEPT),
                    (Some(slot), LoadRelease::AtClose) => w.u32(*slot),
                    (None, _) => w,
                }
                .finish()
            }
            ListenReply::Err { req, error } => {
                let plain = error.kind() == ErrorKind::Os
                    && error.option().is_none()
                    && error.syscall().is_some();
                let w = Writer::new()
                    .u32(*req)
                    .i32(error.errno())
                    .str(error.syscall().unwrap_or(""))
                    .str(error.message());
                if plain {
                    w.finish()
                } else {
                    w.u32(kind_code(error.kind()))
                        .str(error.option().unwrap_or(""))
                        .finish()
                }
            }
        }
    }
    /// Decodes a `Kind::ListenOk` payload.
    pub fn decode_ok(buf: &[u8]) -> Result<ListenReply> {
        let mut r = Reader::new(buf, "listen reply");
        let req = r.u32()?;
        let listener = r.u32()?;
        let addr = r.str()?.parse()?;
        let ack_every = r.u32()?.max(1);
        let load_slot = if r.buf.is_empty() {
            None
        } else {
            let slot = r.u32()?;
            // The worker maps the group's load array by MAX_SLOTS entries: a slot past it is
            // no slot of any group (found by fuzz/run messages).
            let max = crate::steering::MAX_SLOTS;
            if slot >= max {
                return Err(Error::protocol(format!(
                    "malformed frame: listen reply with load slot {slot} (a group has {max})"
                )));
            }
            Some(slot)
        };
        let load_release = if r.buf.is_empty() {
            LoadRelease::AtClose
        } else {
            match r.u32()? {
                RELEASE_AT_CLOSE => LoadRelease::AtClose,
                RELEASE_AT_ACCEPT => LoadRelease::AtAccept,
                other => {
                    return Err(Error::protocol(format!(
                        "malformed frame: listen reply with load release mode {other} (0 at \
                         close, 1 at accept)"
                    )))
                }
            }
        };
        r.end()?;
        Ok(ListenReply::Ok {
            req,
            listener,
            addr,
            ack_every,
            load_slot,
            load_release,
        })
    }
    /// Decodes a `Kind::ListenErr` payload.
    pub fn decode_err(buf: &[u8]) -> Result<ListenReply> {
        let mut r = Reader::new(buf, "listen error");
        let req = r.u32()?;
        let errno = r.i32()?;
        let syscall = r.str()?;
        let message = r.str()?.to_string();
        let error = if r.buf.is_empty() {
            Error::relayed(errno, syscall, message)
        } else {
            let code = r.u32()?;
            let kind = *KINDS.get(code as usize).ok_or_else(|| {
                Error::protocol(format!(
                    "malformed frame: listen error of unknown kind {code}"
                ))
            })?;
            let option = Some(r.str()?).filter(|o| !o.is_empty());
            Error::rebuilt(kind, errno, syscall, message, option)
        };
        r.end()?;
        Ok(ListenReply::Err { req, error })
    }
}

/// Encodes a single u32 payload (`Ack`, `Unlisten`, `Room`, `Closed`).
pub fn u32_payload(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// Decodes a single u32 payload.
pub fn decode_u32(buf: &[u8], what: &'static str) -> Result<u32> {
    let mut r = Reader::new(buf, what);
    let v = r.u32()?;
    r.end()?;
    Ok(v)
}

/// Payload of a `Conn` message: the listener, and the connection's number on that worker's
/// channel (wrapping), which lets the primary see whether the head of a worker's queue moved
/// (`sys::peek_datagram`). A connection that came through a proxy speaking the PROXY protocol
/// carries the client's address after them ([`conn_payload_with_peer`]).
pub fn conn_payload(listener: u32, seq: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&listener.to_le_bytes());
    b[4..].copy_from_slice(&seq.to_le_bytes());
    b
}

/// Longest `Conn` payload: listener, number, family, an IPv6 address and a port.
pub const CONN_PAYLOAD_MAX: usize = 8 + 1 + 16 + 2;

/// A `Conn` payload that may carry the client's address: [`conn_payload`], then, when `peer` is
/// known, its family (4 or 6), its address bytes and its port (little-endian).
pub fn conn_payload_with_peer(
    listener: u32,
    seq: u32,
    peer: Option<std::net::SocketAddr>,
) -> ([u8; CONN_PAYLOAD_MAX], usize) {
    let mut b = [0u8; CONN_PAYLOAD_MAX];
    b[..8].copy_from_slice(&conn_payload(listener, seq));
    let len = 8 + put_peer(&mut b[8..], peer);
    (b, len)
}

/// Writes the optional client address that ends `Conn` and `Refuse` payloads: nothing for
/// `None`, else its family (4 or 6), its address bytes and its port (little-endian). Returns
/// the bytes written (at most 19).
fn put_peer(b: &mut [u8], peer: Option<std::net::SocketAddr>) -> usize {
    match peer {
        None => 0,
        Some(std::net::SocketAddr::V4(a)) => {
            b[0] = 4;
            b[1..5].copy_from_slice(&a.ip().octets());
            b[5..7].copy_from_slice(&a.port().to_le_bytes());
            7
        }
        Some(std::net::SocketAddr::V6(a)) => {
            b[0] = 6;
            b[1..17].copy_from_slice(&a.ip().octets());
            b[17..19].copy_from_slice(&a.port().to_le_bytes());
            19
        }
    }
}

/// Reads what [`put_peer`] wrote (the rest of the payload).
fn take_peer(mut r: Reader<'_>) -> Result<Option<std::net::SocketAddr>> {
    let peer = match r.take_opt_u8() {
        None => None,
        Some(4) => {
            let ip: [u8; 4] = r.take(4)?.try_into().expect("4 bytes");
            let port = r.take(2)?;
            Some(std::net::SocketAddr::from((
                ip,
                u16::from_le_bytes([port[0], port[1]]),
            )))
        }
        Some(6) => {
            let ip: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
            let port = r.take(2)?;
            Some(std::net::SocketAddr::from((
                ip,
                u16::from_le_bytes([port[0], port[1]]),
            )))
        }
        Some(f) => {
            return Err(Error::protocol(format!(
                "malformed frame: {} payload has address family {f}",
                r.what
            )))
        }
    };
    r.end()?;
    Ok(peer)
}

/// Longest `Refuse` payload: the listener, then the client address as in `Conn`.
pub const REFUSE_PAYLOAD_MAX: usize = 4 + 1 + 16 + 2;

/// Payload of a `Refuse` message: the listener, then the client address its `Conn` carried
/// (a PROXY header's, consumed by then), so the next worker is given the same client.
pub fn refuse_payload(
    listener: u32,
    peer: Option<std::net::SocketAddr>,
) -> ([u8; REFUSE_PAYLOAD_MAX], usize) {
    let mut b = [0u8; REFUSE_PAYLOAD_MAX];
    b[..4].copy_from_slice(&listener.to_le_bytes());
    let len = 4 + put_peer(&mut b[4..], peer);
    (b, len)
}

/// Decodes a `Refuse` payload: the listener and the client address, if it carries one.
pub fn decode_refuse(buf: &[u8]) -> Result<(u32, Option<std::net::SocketAddr>)> {
    let mut r = Reader::new(buf, "refuse");
    let listener = r.u32()?;
    Ok((listener, take_peer(r)?))
}

/// Decodes a `Conn` payload; returns the listener.
pub fn decode_conn(buf: &[u8]) -> Result<u32> {
    decode_conn_peer(buf).map(|(l, _)| l)
}

/// Decodes a `Conn` payload; returns the listener and the client address it carries, if any.
pub fn decode_conn_peer(buf: &[u8]) -> Result<(u32, Option<std::net::SocketAddr>)> {
    let mut r = Reader::new(buf, "conn");
    let listener = r.u32()?;
    r.u32()?;
    let peer = take_peer(r)?;
    Ok((listener, peer))
}

/// The payload of a `Kind::Batch` message: application messages back to back, each
/// `[len u32le][len bytes]`, at least one. Built by the sender (the Node front builds it in JS),
/// split by the reader; [`batch_parts`] checks it whole before anything is delivered, so a
/// malformed batch delivers nothing.
#[derive(Debug, Default)]
pub struct Batch(Vec<u8>);

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }
    /// Appends one message.
    pub fn push(&mut self, msg: &[u8]) {
        self.0.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        self.0.extend_from_slice(msg);
    }
    /// Payload bytes so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Nothing pushed yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The payload.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// The messages of a `Kind::Batch` payload, as offsets into it (start, end), after checking
/// all of it: every length within the payload, no trailing bytes, at least one message.
pub fn batch_parts(buf: &[u8]) -> Result<Vec<(usize, usize)>> {
    let mut parts = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let Some(len) = buf.get(at..at + 4) else {
            return Err(Error::protocol(format!(
                "malformed frame: batch has {} trailing bytes after message {}",
                buf.len() - at,
                parts.len()
            )));
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let start = at + 4;
        if len > buf.len() - start {
            return Err(Error::protocol(format!(
                "malformed frame: batch message {} of {len} bytes runs past the end ({} left)",
                parts.len(),
                buf.len() - start
            )));
        }
        parts.push((start, start + len));
        at = start + len;
    }
    if parts.is_empty() {
        return Err(Error::protocol("malformed frame: empty batch"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_errors_keep_their_kind_and_option_on_the_wire() {
        let cases = [
            Error::invalid_option("address", "datagram listeners are UDP only"),
            Error::wrong_state("worker 3 is disconnecting"),
            Error::from_errno("bind", "bind 127.0.0.1:80", libc::EADDRINUSE),
            Error::os(
                "listen",
                "listen fd:3",
                &std::io::Error::from_raw_os_error(libc::EPIPE),
            ),
            Error::new(ErrorKind::Os, "getaddrinfo x: host not found (ENOTFOUND)")
                .with_syscall("getaddrinfo"),
            Error::invalid_option("backlog", "must not be negative (got -5)").context("worker 2"),
        ];
        for error in cases {
            let reply = ListenReply::Err {
                req: 9,
                error: error.clone(),
            };
            let back = ListenReply::decode_err(&reply.encode()).unwrap();
            assert_eq!(back, reply, "{error}");
            let ListenReply::Err { error: e, .. } = back else {
                unreachable!()
            };
            assert_eq!((e.option(), e.reason()), (error.option(), error.reason()));
        }
        // An OS error with its syscall goes as an older primary sent it (no kind after the
        // message), so an older worker still reads it; an older primary's errno-less EINVAL
        // decodes as before.
        let os = ListenReply::Err {
            req: 1,
            error: Error::from_errno("bind", "bind x", libc::EACCES),
        };
        let old = Writer::new()
            .u32(1)
            .i32(libc::EACCES)
            .str("bind")
            .str("bind x: Permission denied (EACCES)")
            .finish();
        assert_eq!(os.encode(), old);
        let old_einval = Writer::new()
            .u32(1)
            .i32(libc::EINVAL)
            .str("")
            .str("bad")
            .finish();
        let ListenReply::Err { error, .. } = ListenReply::decode_err(&old_einval).unwrap() else {
            unreachable!()
        };
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        // A kind this worker does not know, or a cut option, is a protocol error.
        let base = || Writer::new().u32(1).i32(0).str("").str("m");
        for bad in [
            base().u32(KINDS.len() as u32).str("").finish(),
            base().u32(0).finish(),
            base().u32(0).u32(9).finish(),
            base().u32(0).str("").u32(0).finish(),
        ] {
            let e = ListenReply::decode_err(&bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        }
    }

    #[test]
    fn listen_messages_round_trip() {
        let q = ListenRequest {
            req: 7,
            backlog: 511,
            addr: "127.0.0.1:0".parse().unwrap(),
            index: 2,
            opts: BindOptions {
                ipv6_only: true,
                readable_all: false,
                writable_all: true,
                reuse_addr: true,
                mode_exact: true,
            },
            kind: SocketKind::Datagram,
        };
        assert_eq!(ListenRequest::decode(&q.encode()).unwrap(), q);
        let fd = ListenRequest {
            addr: "fd:3".parse().unwrap(),
            kind: SocketKind::Stream,
            ..q.clone()
        };
        assert_eq!(ListenRequest::decode(&fd.encode()).unwrap(), fd);
        let ok = ListenReply::Ok {
            req: 7,
            listener: 2,
            addr: "tcp:[::1]:8080".parse().unwrap(),
            ack_every: 8,
            load_slot: None,
            load_release: LoadRelease::AtClose,
        };
        assert_eq!(ListenReply::decode_ok(&ok.encode()).unwrap(), ok);
        // A load-aware kernel-steered answer carries the slot after ack_every; one without
        // it (an older primary's, 4 bytes shorter) still decodes, as None.
        let steered = ListenReply::Ok {
            req: 7,
            listener: 2,
            addr: "tcp:[::1]:8080".parse().unwrap(),
            ack_every: 8,
            load_slot: Some(5),
            load_release: LoadRelease::AtClose,
        };
        let bytes = steered.encode();
        assert_eq!(bytes.len(), ok.encode().len() + 4);
        assert_eq!(ListenReply::decode_ok(&bytes).unwrap(), steered);
        assert_eq!(
            ListenReply::decode_ok(&bytes[..bytes.len() - 4]).unwrap(),
            ok
        );
        let e = ListenReply::decode_ok(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(e.message().contains("too short"), "{e}");
        // kernel-rr's window releases at accept: the mode follows the slot; without it (an
        // older primary's answer) the slot decodes as released at close.
        let window = ListenReply::Ok {
            req: 7,
            listener: 2,
            addr: "tcp:[::1]:8080".parse().unwrap(),
            ack_every: 8,
            load_slot: Some(5),
            load_release: LoadRelease::AtAccept,
        };
        let wbytes = window.encode();
        assert_eq!(wbytes.len(), bytes.len() + 4);
        assert_eq!(ListenReply::decode_ok(&wbytes).unwrap(), window);
        assert_eq!(
            ListenReply::decode_ok(&wbytes[..wbytes.len() - 4]).unwrap(),
            steered
        );
        let mut bad = wbytes.clone();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&7u32.to_le_bytes());
        let e = ListenReply::decode_ok(&bad).unwrap_err();
        assert!(e.message().contains("load release mode 7"), "{e}");
        // A slot past a group's MAX_SLOTS is refused as malformed, not left to the worker's
        // mmap of the load array to fail as an OS error (a fuzz/run messages find).
        let max = crate::steering::MAX_SLOTS;
        let slot = |load_slot| ListenReply::Ok {
            req: 7,
            listener: 2,
            addr: "tcp:[::1]:8080".parse().unwrap(),
            ack_every: 8,
            load_slot: Some(load_slot),
            load_release: LoadRelease::AtAccept,
        };
        let last = slot(max - 1);
        assert_eq!(ListenReply::decode_ok(&last.encode()).unwrap(), last);
        let e = ListenReply::decode_ok(&slot(max).encode()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
        assert!(
            e.message()
                .contains(&format!("load slot {max} (a group has {max})")),
            "{e}"
        );
        let udp = ListenReply::Ok {
            req: 7,
            listener: 3,
            addr: "udp:[::1]:53".parse().unwrap(),
            ack_every: 1,
            load_slot: None,
            load_release: LoadRelease::AtClose,
        };
        assert_eq!(ListenReply::decode_ok(&udp.encode()).unwrap(), udp);
        let err = ListenReply::Err {
            req: 7,
            error: Error::from_errno("bind", "m", 98),
        };
        assert_eq!(ListenReply::decode_err(&err.encode()).unwrap(), err);
    }

    #[test]
    fn a_tcp_host_named_unix_stays_tcp_on_the_wire() {
        // Found by fuzz/ (target proto): the request decoded as a Unix socket at path "80".
        let q = ListenRequest {
            req: 1,
            backlog: 511,
            addr: ListenAddr::Tcp {
                host: "unix".into(),
                port: 80,
            },
            index: 0,
            opts: BindOptions::default(),
            kind: SocketKind::Stream,
        };
        assert_eq!(ListenRequest::decode(&q.encode()).unwrap(), q);
        // "fd" is a scheme too since fd:N: a host of that name keeps its tcp: on the wire.
        let q = ListenRequest {
            addr: ListenAddr::Tcp {
                host: "fd".into(),
                port: 80,
            },
            ..q
        };
        assert_eq!(ListenRequest::decode(&q.encode()).unwrap(), q);
    }

    #[test]
    fn batches_split_into_their_messages_or_are_refused_whole() {
        let mut b = Batch::new();
        for m in [&b"one"[..], b"", b"three"] {
            b.push(m);
        }
        let buf = b.finish();
        let parts: Vec<&[u8]> = batch_parts(&buf)
            .unwrap()
            .into_iter()
            .map(|(s, e)| &buf[s..e])
            .collect();
        assert_eq!(parts, [&b"one"[..], b"", b"three"]);
        let e = batch_parts(&[]).unwrap_err();
        assert!(e.message().contains("empty batch"), "{e}");
        let e = batch_parts(&buf[..buf.len() - 1]).unwrap_err();
        assert!(e.message().contains("runs past the end"), "{e}");
        let e = batch_parts(&[&buf[..], &[1, 0]].concat()).unwrap_err();
        assert!(e.message().contains("2 trailing bytes"), "{e}");
        let huge = [&u32::MAX.to_le_bytes()[..], b"x"].concat();
        assert!(batch_parts(&huge).is_err());
    }

    #[test]
    fn conn_payloads_carry_the_client_address_when_known() {
        for peer in [
            None,
            Some("192.0.2.7:40001".parse().unwrap()),
            Some("[2001:db8::9]:443".parse().unwrap()),
        ] {
            let (b, n) = conn_payload_with_peer(3, 77, peer);
            assert_eq!(decode_conn_peer(&b[..n]).unwrap(), (3, peer));
            assert_eq!(decode_conn(&b[..n]).unwrap(), 3);
            assert_eq!(b[..8], conn_payload(3, 77));
            // Cut anywhere inside the address: an error, never a wrong address.
            for cut in 9..n {
                assert!(
                    decode_conn_peer(&b[..cut]).is_err(),
                    "{peer:?} cut at {cut}"
                );
            }
        }
        let mut bad = conn_payload(1, 1).to_vec();
        bad.push(5);
        assert!(decode_conn_peer(&bad)
            .unwrap_err()
            .message()
            .contains("family 5"));
    }

    #[test]
    fn refuse_payloads_carry_the_client_address_back() {
        for peer in [
            None,
            Some("127.0.0.9:40001".parse().unwrap()),
            Some("[2001:db8::9]:443".parse().unwrap()),
        ] {
            let (b, n) = refuse_payload(7, peer);
            assert_eq!(decode_refuse(&b[..n]).unwrap(), (7, peer));
            for cut in 5..n {
                assert!(decode_refuse(&b[..cut]).is_err(), "{peer:?} cut at {cut}");
            }
        }
        // A worker that sends the listener alone (no address known) is still understood.
        assert_eq!(decode_refuse(&u32_payload(7)).unwrap(), (7, None));
        let e = decode_refuse(&[7, 0, 0, 0, 9]).unwrap_err();
        assert!(
            e.message().contains("refuse payload has address family 9"),
            "{e}"
        );
    }

    #[test]
    fn short_and_long_payloads_are_rejected() {
        assert!(decode_u32(&[1, 2], "ack").is_err());
        assert!(decode_u32(&[1, 2, 3, 4, 5], "ack").is_err());
        assert!(ListenRequest::decode(&Writer::new().u32(1).i32(1).u32(99).finish()).is_err());
        let unknown_option = Writer::new()
            .u32(1)
            .i32(1)
            .str("127.0.0.1:0")
            .u32(0)
            .u32(32)
            .u32(0)
            .finish();
        let e = ListenRequest::decode(&unknown_option).unwrap_err();
        assert!(
            e.message().contains("unknown listen option bits 0x20"),
            "{e}"
        );
        let unknown_kind = Writer::new()
            .u32(1)
            .i32(1)
            .str("127.0.0.1:0")
            .u32(0)
            .u32(0)
            .u32(2)
            .finish();
        let e = ListenRequest::decode(&unknown_kind).unwrap_err();
        assert!(e.message().contains("unknown socket kind 2"), "{e}");
    }
}
