//! Datagrams in, whole messages out: the pure half of [`Channel::recv`](super::Channel::recv),
//! with no socket, so the rules of [`super::frame`] about `FIRST`, `MORE`, `kind` and
//! `total` can be tested and fuzzed on bytes alone (`fuzz/`).
//!
//! Every reader of a channel goes through here: the engine's primary and worker, the C ABI, and
//! the Node addon (its message channels in `bindings/node/src/messages.rs` and its worker
//! receiver).

use super::channel::Message;
use super::frame::{self, FLAG_FIRST, FLAG_MORE, HEADER_LEN};
use crate::error::{Error, Result};
use std::os::fd::OwnedFd;

struct Partial {
    kind: frame::Kind,
    total: usize,
    data: Vec<u8>,
    fds: Vec<OwnedFd>,
    lost: bool,
}

/// The message being reassembled on one direction of a channel.
#[derive(Default)]
pub struct Reassembly {
    partial: Option<Partial>,
    /// The kernel dropped the fds of the datagram pushed next ([`Reassembly::fds_dropped`]).
    dropping: bool,
    /// The whole message `push` returned last had its fds dropped.
    lost: bool,
}

impl std::fmt::Debug for Reassembly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembly")
            .field("open", &self.partial.as_ref().map(|p| (p.kind, p.total)))
            .finish()
    }
}

impl Reassembly {
    /// Nothing open.
    pub fn new() -> Reassembly {
        Reassembly::default()
    }

    /// The kernel dropped the fds attached to the datagram pushed next (`MSG_CTRUNC`: the
    /// process is out of fds). Its message still comes out whole, and [`Reassembly::take_lost`]
    /// says so.
    pub fn fds_dropped(&mut self) {
        self.dropping = true;
    }

    /// Whether the message `push` returned last had its fds dropped (cleared by the call).
    pub fn take_lost(&mut self) -> bool {
        std::mem::take(&mut self.lost)
    }

    /// Takes one datagram (header and chunk) and the fds that came with it. `Ok(Some)`: a whole
    /// message; `Ok(None)`: part of one, more to come. A malformed datagram is an
    /// `ErrorKind::Protocol` error, after which the stream is unusable (close the channel).
    pub fn push(&mut self, datagram: &[u8], fds: Vec<OwnedFd>) -> Result<Option<Message>> {
        let dropped = std::mem::take(&mut self.dropping);
        self.lost = false;
        let h = frame::decode(datagram).map_err(|e| Error::protocol(e.to_string()))?;
        let chunk = &datagram[HEADER_LEN..];
        let first = h.flags & FLAG_FIRST != 0;
        let more = h.flags & FLAG_MORE != 0;
        let total = h.total as usize;
        let malformed = |why: &str| Err(Error::protocol(format!("malformed frame: {why}")));
        if first {
            if self.partial.is_some() {
                return malformed("a new message started before the previous one ended");
            }
            if chunk.len() > total || (!more && chunk.len() != total) {
                return malformed("chunk length does not match the message length");
            }
            if !more {
                self.lost = dropped;
                return Ok(Some(Message {
                    kind: h.kind,
                    data: chunk.to_vec(),
                    fds,
                }));
            }
            // `total` is at most MAX_MESSAGE_LEN (checked by frame::decode).
            let mut data = Vec::with_capacity(total);
            data.extend_from_slice(chunk);
            self.partial = Some(Partial {
                kind: h.kind,
                total,
                data,
                fds,
                lost: dropped,
            });
            return Ok(None);
        }
        let Some(p) = self.partial.as_mut() else {
            return malformed("a continuation without a first datagram");
        };
        // Fds ride on the first datagram only.
        if p.kind != h.kind || p.total != total || !fds.is_empty() || dropped {
            return malformed("a continuation that does not match its message");
        }
        if p.data.len() + chunk.len() > total || (!more && p.data.len() + chunk.len() != total) {
            return malformed("chunks exceed the message length");
        }
        p.data.extend_from_slice(chunk);
        if more {
            return Ok(None);
        }
        let p = self.partial.take().expect("checked above");
        self.lost = p.lost;
        Ok(Some(Message {
            kind: p.kind,
            data: p.data,
            fds: p.fds,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_whose_fds_were_dropped_comes_out_whole_and_says_so() {
        let mut r = Reassembly::new();
        r.fds_dropped();
        let m = r
            .push(&dgram(Kind::Conn, FLAG_FIRST, 2, b"ab"), vec![])
            .unwrap()
            .unwrap();
        assert_eq!((m.kind, m.data.as_slice()), (Kind::Conn, &b"ab"[..]));
        assert!(r.take_lost());
        assert!(!r.take_lost(), "cleared");
        // Across datagrams: lost is told with the whole message; the stream stays in step.
        r.fds_dropped();
        assert!(r
            .push(&dgram(Kind::User, FLAG_FIRST | FLAG_MORE, 4, b"ab"), vec![])
            .unwrap()
            .is_none());
        let m = r
            .push(&dgram(Kind::User, 0, 4, b"cd"), vec![])
            .unwrap()
            .unwrap();
        assert_eq!(m.data, b"abcd");
        assert!(r.take_lost());
        let m = r
            .push(&dgram(Kind::User, FLAG_FIRST, 1, b"x"), vec![fd()])
            .unwrap()
            .unwrap();
        assert_eq!(m.fds.len(), 1);
        assert!(!r.take_lost());
    }
    use crate::error::ErrorKind;
    use frame::Kind;

    fn dgram(kind: Kind, flags: u8, total: u32, chunk: &[u8]) -> Vec<u8> {
        let mut d = frame::encode(kind, flags, total).to_vec();
        d.extend_from_slice(chunk);
        d
    }

    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn whole_and_fragmented_messages_come_out_with_the_first_datagrams_fds() {
        let mut r = Reassembly::new();
        let m = r
            .push(&dgram(Kind::User, FLAG_FIRST, 3, b"abc"), vec![fd()])
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.kind, &m.data[..], m.fds.len()),
            (Kind::User, &b"abc"[..], 1)
        );
        let d1 = dgram(Kind::User, FLAG_FIRST | FLAG_MORE, 5, b"he");
        assert!(r.push(&d1, vec![fd(), fd()]).unwrap().is_none());
        let d2 = dgram(Kind::User, FLAG_MORE, 5, b"l");
        assert!(r.push(&d2, vec![]).unwrap().is_none());
        let m = r
            .push(&dgram(Kind::User, 0, 5, b"lo"), vec![])
            .unwrap()
            .unwrap();
        assert_eq!((&m.data[..], m.fds.len()), (&b"hello"[..], 2));
    }

    #[test]
    fn each_broken_rule_is_a_protocol_error_naming_it() {
        let open = || {
            let mut r = Reassembly::new();
            let d = dgram(Kind::User, FLAG_FIRST | FLAG_MORE, 4, b"ab");
            assert!(r.push(&d, vec![]).unwrap().is_none());
            r
        };
        let cases: [(Reassembly, Vec<u8>, Vec<OwnedFd>, &str); 7] = [
            (
                Reassembly::new(),
                b"short".to_vec(),
                vec![],
                "shorter than a header",
            ),
            (
                open(),
                dgram(Kind::User, FLAG_FIRST, 1, b"x"),
                vec![],
                "new message started",
            ),
            (
                Reassembly::new(),
                dgram(Kind::User, FLAG_FIRST, 1, b"xy"),
                vec![],
                "chunk length",
            ),
            (
                Reassembly::new(),
                dgram(Kind::User, 0, 1, b"x"),
                vec![],
                "without a first",
            ),
            (
                open(),
                dgram(Kind::Ack, 0, 4, b"cd"),
                vec![],
                "does not match",
            ),
            (
                open(),
                dgram(Kind::User, 0, 4, b"cd"),
                vec![fd()],
                "does not match",
            ),
            (open(), dgram(Kind::User, 0, 4, b"cde"), vec![], "exceed"),
        ];
        for (mut r, d, fds, why) in cases {
            let e = r.push(&d, fds).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            assert!(e.message().starts_with("malformed frame"), "{e}");
            assert!(e.message().contains(why), "{e} should say {why:?}");
        }
    }
}
