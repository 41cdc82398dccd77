#![no_main]
//! A stream of datagrams as a peer could send them, read the way every channel reader reads
//! them (ipc::reassembly, under Channel::recv: the engine, the C ABI, and the Node addon's
//! message channels in bindings/node/src/messages.rs), then each whole message decoded by its
//! kind as the primary and the worker sides do, and fed to the worker's protocol state machine
//! (`WorkerProtocol`, which both fronts' workers drive) as its channel would feed it.
//!
//! Input: records of `[fds: u8][len: u16 le][len bytes]`, one datagram each, carrying
//! `fds % 3` real (dup'ed) fds. Checked against a model that only concatenates chunks: every
//! message is exactly the chunks since its FIRST datagram, of the declared total, with the fds
//! of that datagram; any refusal is a protocol error, after which the reader stops (as
//! messages.rs does).

use corral_core::__fuzz::frame::{self, Kind, FLAG_FIRST, HEADER_LEN};
use corral_core::__fuzz::proto::{self, ListenReply, ListenRequest};
use corral_core::__fuzz::reassembly::Reassembly;
use corral_core::{ErrorKind, Recv, WorkerProtocol};
use libfuzzer_sys::fuzz_target;
use std::os::fd::{AsFd, OwnedFd};

/// What the model expects of the open message: kind, total, chunks so far, fds of its first
/// datagram.
struct Open {
    kind: Kind,
    total: usize,
    data: Vec<u8>,
    fds: usize,
}

fn datagrams(mut input: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    std::iter::from_fn(move || {
        let (&nfds, rest) = input.split_first()?;
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let len = (u16::from_le_bytes(*len) as usize).min(rest.len());
        let (d, rest) = rest.split_at(len);
        input = rest;
        Some((nfds as usize % 3, d))
    })
}

fn fds(n: usize) -> Vec<OwnedFd> {
    (0..n)
        .map(|_| {
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .expect("dup stdin")
        })
        .collect()
}

fuzz_target!(|input: &[u8]| {
    let mut r = Reassembly::new();
    let mut open: Option<Open> = None;
    let mut worker = WorkerProtocol::new();
    for (nfds, d) in datagrams(input) {
        let got = match r.push(d, fds(nfds)) {
            Ok(got) => got,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Protocol, "{e:?}");
                assert!(e.message().starts_with("malformed frame"), "{e:?}");
                return;
            }
        };
        // Accepted, so the header is valid and the model can follow it.
        let h = frame::decode(d).expect("an accepted datagram has a valid header");
        let chunk = &d[HEADER_LEN..];
        let o = if h.flags & FLAG_FIRST != 0 {
            assert!(open.is_none(), "FIRST accepted while a message was open");
            open.insert(Open {
                kind: h.kind,
                total: h.total as usize,
                data: Vec::new(),
                fds: nfds,
            })
        } else {
            assert_eq!(nfds, 0, "a continuation with fds was accepted");
            open.as_mut()
                .expect("a continuation was accepted with nothing open")
        };
        assert_eq!((o.kind, o.total), (h.kind, h.total as usize));
        o.data.extend_from_slice(chunk);
        assert!(o.data.len() <= o.total);
        let Some(m) = got else { continue };
        let o = open.take().expect("checked above");
        assert_eq!(m.kind(), o.kind);
        assert_eq!(m.data.len(), o.total);
        assert_eq!(m.data, o.data);
        assert_eq!(m.fds.len(), o.fds);
        decode(m.kind(), &m.data);
        // Whatever the primary's side of the channel sends, the worker decodes it or refuses
        // it with an error; it never panics.
        if let Err(e) = worker.receive(Recv::Message(m)) {
            assert!(
                matches!(e.kind(), ErrorKind::Protocol | ErrorKind::InvalidArgument),
                "{e:?}"
            );
        }
        let _ack = worker.end_read();
    }
});

/// The payload decoders each side runs for a message of this kind (User payloads are opaque).
fn decode(kind: Kind, data: &[u8]) {
    let refused = match kind {
        Kind::Conn => proto::decode_conn(data).err(),
        Kind::Ack | Kind::Unlisten | Kind::Heartbeat => proto::decode_u32(data, "fuzz").err(),
        Kind::Listen => ListenRequest::decode(data).err(),
        Kind::ListenOk => ListenReply::decode_ok(data).err(),
        Kind::ListenErr => ListenReply::decode_err(data).err(),
        // A checked batch is its messages and nothing else: length-prefixing them again
        // gives back the payload.
        Kind::Batch => match proto::batch_parts(data) {
            Ok(parts) => {
                let mut again = proto::Batch::new();
                for (start, end) in parts {
                    again.push(&data[start..end]);
                }
                assert_eq!(again.finish(), data);
                None
            }
            Err(e) => Some(e),
        },
        _ => None,
    };
    if let Some(e) = refused {
        assert!(
            matches!(e.kind(), ErrorKind::Protocol | ErrorKind::InvalidArgument),
            "{e:?}"
        );
    }
}
