#![no_main]
//! The control-message payload decoders (ipc::proto) and the address parsers they call, on any
//! bytes: never panic, and whatever they accept survives encode -> decode unchanged.
//!
//! The first input byte picks the decoder, the rest is the payload.

use corral_core::__fuzz::proto::{self, ListenReply, ListenRequest};
use corral_core::{BoundAddr, ErrorKind, ListenAddr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(q) = checked(ListenRequest::decode(payload)) {
                assert_eq!(ListenRequest::decode(&q.encode()).ok(), Some(q));
            }
        }
        1 => {
            if let Ok(r) = checked(ListenReply::decode_ok(payload)) {
                assert!(matches!(r, ListenReply::Ok { ack_every, .. } if ack_every >= 1));
                assert_eq!(ListenReply::decode_ok(&r.encode()).ok(), Some(r));
            }
        }
        2 => {
            if let Ok(r) = checked(ListenReply::decode_err(payload)) {
                // An older primary's reply (no kind) or an unknown syscall name is read into
                // the error the worker reports; that error then goes and comes back as it is.
                assert!(matches!(r, ListenReply::Err { .. }));
                assert_eq!(ListenReply::decode_err(&r.encode()).ok(), Some(r));
            }
        }
        3 => {
            if let Ok(v) = checked(proto::decode_u32(payload, "fuzz")) {
                assert_eq!(proto::u32_payload(v), payload);
            }
            if let Ok(l) = checked(proto::decode_conn(payload)) {
                // The number is not kept; the listener comes back.
                assert_eq!(proto::conn_payload(l, 0)[..4], payload[..4]);
            }
        }
        4 => {
            let Ok(s) = std::str::from_utf8(payload) else {
                return;
            };
            if let Ok(a) = s.parse::<ListenAddr>() {
                assert_eq!(
                    a.to_string().parse::<ListenAddr>().ok(),
                    Some(a),
                    "from {s:?}"
                );
            }
        }
        _ => {
            let Ok(s) = std::str::from_utf8(payload) else {
                return;
            };
            if let Ok(a) = s.parse::<BoundAddr>() {
                assert_eq!(
                    a.to_string().parse::<BoundAddr>().ok(),
                    Some(a),
                    "from {s:?}"
                );
            }
        }
    }
});

/// A refused payload is a protocol error (the peer sent garbage) or an invalid address, with
/// a message: never another kind of failure.
fn checked<T>(r: corral_core::Result<T>) -> corral_core::Result<T> {
    if let Err(e) = &r {
        assert!(
            matches!(e.kind(), ErrorKind::Protocol | ErrorKind::InvalidArgument),
            "{e:?}"
        );
        assert!(!e.message().is_empty());
    }
    r
}
