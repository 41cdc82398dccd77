//! fuzz/seeds/<target>/ holds the seed corpus of each fuzz target (fuzz/README.md), made here
//! from the real encoders so that it is reproducible and follows the wire format.
//! On drift: `CORRAL_BLESS=1 cargo test --test fuzz_seeds` rewrites the seeds.

mod util;
use corral_core::__fuzz::frame::{self, Kind, FLAG_FIRST, FLAG_MORE};
use corral_core::__fuzz::proto::{self, ListenReply, ListenRequest};
use corral_core::listener::{BindOptions, SocketKind};
use corral_core::steering::LoadRelease;
use std::collections::BTreeMap;

type Seeds = BTreeMap<&'static str, Vec<u8>>;

/// Target `frame`: one datagram header (and a chunk, which the decoder ignores).
fn frame_seeds() -> Seeds {
    let mut s = Seeds::new();
    s.insert(
        "user-whole",
        [&frame::encode(Kind::User, FLAG_FIRST, 5)[..], b"hello"].concat(),
    );
    s.insert(
        "conn-whole",
        [
            &frame::encode(Kind::Conn, FLAG_FIRST, 8)[..],
            &proto::conn_payload(1, 7),
        ]
        .concat(),
    );
    s.insert(
        "listen-first",
        frame::encode(Kind::Listen, FLAG_FIRST | FLAG_MORE, 70_000).to_vec(),
    );
    s.insert(
        "user-middle",
        frame::encode(Kind::User, FLAG_MORE, 200_000).to_vec(),
    );
    s.insert(
        "heartbeat-last",
        frame::encode(Kind::Heartbeat, 0, 4).to_vec(),
    );
    s.insert(
        "bye-empty",
        frame::encode(Kind::Bye, FLAG_FIRST, 0).to_vec(),
    );
    s
}

fn listen_request(addr: &str) -> Vec<u8> {
    listen_request_with(addr, BindOptions::default())
}

fn listen_request_with(addr: &str, opts: BindOptions) -> Vec<u8> {
    listen_request_kind(addr, opts, SocketKind::Stream)
}

fn listen_request_kind(addr: &str, opts: BindOptions, kind: SocketKind) -> Vec<u8> {
    ListenRequest {
        req: 7,
        backlog: 511,
        addr: addr.parse().unwrap(),
        index: 1,
        opts,
        kind,
    }
    .encode()
}

fn listen_ok(addr: &str) -> Vec<u8> {
    ListenReply::Ok {
        req: 7,
        listener: 3,
        addr: addr.parse().unwrap(),
        ack_every: 8,
        load_slot: None,
        load_release: LoadRelease::AtClose,
    }
    .encode()
}

fn listen_err() -> Vec<u8> {
    ListenReply::Err {
        req: 7,
        error: corral_core::Error::from_errno("bind", "bind 127.0.0.1:8080", libc::EADDRINUSE),
    }
    .encode()
}

/// A refusal that is no OS error: its kind and option follow the message.
fn listen_err_option() -> Vec<u8> {
    ListenReply::Err {
        req: 7,
        error: corral_core::Error::invalid_option(
            "address",
            "datagram listeners are UDP only: unix:/x is a Unix socket path",
        ),
    }
    .encode()
}

/// Target `proto`: a selector byte (which decoder) and a payload.
fn proto_seeds() -> Seeds {
    let with = |which: u8, payload: &[u8]| [&[which][..], payload].concat();
    let mut s = Seeds::new();
    s.insert("request-tcp4", with(0, &listen_request("127.0.0.1:0")));
    s.insert("request-tcp6", with(0, &listen_request("[::1]:8080")));
    s.insert("request-any", with(0, &listen_request(":80")));
    s.insert(
        "request-unix",
        with(0, &listen_request("unix:/tmp/corral.sock")),
    );
    let v6only = BindOptions {
        ipv6_only: true,
        ..BindOptions::default()
    };
    s.insert(
        "request-v6only",
        with(0, &listen_request_with("[::]:0", v6only)),
    );
    let mode = BindOptions {
        readable_all: true,
        writable_all: true,
        ..BindOptions::default()
    };
    s.insert(
        "request-unix-mode",
        with(0, &listen_request_with("unix:rel.sock", mode)),
    );
    s.insert(
        "request-udp",
        with(
            0,
            &listen_request_kind("127.0.0.1:0", BindOptions::default(), SocketKind::Datagram),
        ),
    );
    s.insert("request-fd", with(0, &listen_request("fd:3")));
    s.insert("ok-udp", with(1, &listen_ok("udp:[::1]:53")));
    s.insert("ok-tcp4", with(1, &listen_ok("tcp:127.0.0.1:8080")));
    s.insert("ok-tcp6", with(1, &listen_ok("tcp:[::1]:443")));
    s.insert("ok-unix", with(1, &listen_ok("unix:/tmp/corral.sock")));
    let load = ListenReply::Ok {
        req: 7,
        listener: 3,
        addr: "tcp:127.0.0.1:8080".parse().unwrap(),
        ack_every: 8,
        load_slot: Some(2),
        load_release: LoadRelease::AtClose,
    };
    s.insert("ok-kernel-load", with(1, &load.encode()));
    let window = ListenReply::Ok {
        req: 7,
        listener: 3,
        addr: "tcp:127.0.0.1:8080".parse().unwrap(),
        ack_every: 8,
        load_slot: Some(2),
        load_release: LoadRelease::AtAccept,
    };
    s.insert("ok-kernel-window", with(1, &window.encode()));
    s.insert("err-bind", with(2, &listen_err()));
    s.insert("err-option", with(2, &listen_err_option()));
    s.insert("u32", with(3, &proto::u32_payload(3)));
    s.insert("addr-host", with(4, b"tcp:localhost:3000"));
    s.insert("addr-tcp6", with(4, b"[::1]:0"));
    s.insert("bound-tcp6", with(5, b"tcp:[fe80::1%2]:80"));
    s.insert("addr-fd", with(4, b"fd:3"));
    s.insert("bound-udp4", with(5, b"udp:127.0.0.1:53"));
    s
}

/// A message as the channel sends it: datagrams of at most `chunk` payload bytes, FIRST on the
/// first (with the fds), MORE on all but the last, kind and total on every one. Each datagram
/// is a record `[fds][len u16 le][bytes]` of target `messages`.
fn message(kind: Kind, data: &[u8], fds: u8, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut parts: Vec<&[u8]> = data.chunks(chunk).collect();
    if parts.is_empty() {
        parts.push(&[]);
    }
    for (i, part) in parts.iter().enumerate() {
        let mut flags = 0;
        if i == 0 {
            flags |= FLAG_FIRST;
        }
        if i + 1 < parts.len() {
            flags |= FLAG_MORE;
        }
        let mut d = frame::encode(kind, flags, data.len() as u32).to_vec();
        d.extend_from_slice(part);
        out.push(if i == 0 { fds } else { 0 });
        out.extend_from_slice(&(d.len() as u16).to_le_bytes());
        out.extend_from_slice(&d);
    }
    out
}

/// Target `messages`: datagram streams as either side sends them.
fn messages_seeds() -> Seeds {
    let mut s = Seeds::new();
    s.insert(
        "worker-start",
        [
            message(Kind::Online, b"", 0, 64),
            message(Kind::Listen, &listen_request("127.0.0.1:0"), 0, 64),
            message(Kind::Ready, b"", 0, 64),
            message(Kind::Heartbeat, &proto::u32_payload(1), 0, 64),
        ]
        .concat(),
    );
    s.insert(
        "primary-replies",
        [
            message(Kind::ListenOk, &listen_ok("tcp:127.0.0.1:8080"), 1, 64),
            message(Kind::ListenErr, &listen_err(), 0, 16),
            message(Kind::Conn, &proto::conn_payload(1, 0), 1, 64),
            message(Kind::Disconnect, b"", 0, 64),
        ]
        .concat(),
    );
    s.insert(
        "user-fragmented",
        [
            message(Kind::User, br#"{"cmd":"hello","n":1}"#, 2, 64),
            message(Kind::User, &[7u8; 100], 1, 9),
            message(Kind::Ack, &proto::u32_payload(8), 0, 64),
            message(Kind::Bye, b"", 0, 64),
        ]
        .concat(),
    );
    let mut batch = proto::Batch::new();
    for m in [&br#"{"seq":1}"#[..], b"", &[9u8; 40]] {
        batch.push(m);
    }
    let batch = batch.finish();
    s.insert(
        "user-batches",
        [
            message(Kind::Batch, &batch, 0, 64),
            message(Kind::Batch, &batch, 0, 16),
            message(Kind::User, b"after", 0, 64),
        ]
        .concat(),
    );
    s
}

#[test]
fn committed_seeds_match_the_generated_ones() {
    let bless = std::env::var_os("CORRAL_BLESS").is_some();
    let mut drift = Vec::new();
    for (target, seeds) in [
        ("frame", frame_seeds()),
        ("proto", proto_seeds()),
        ("messages", messages_seeds()),
    ] {
        let dir = util::root().join("fuzz/seeds").join(target);
        if bless {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
            continue;
        }
        let mut committed = BTreeMap::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            committed.insert(name, std::fs::read(e.path()).unwrap());
        }
        for (name, bytes) in &seeds {
            if committed.remove(*name).as_ref() != Some(bytes) {
                drift.push(format!("{target}/{name} missing or different"));
            }
        }
        drift.extend(
            committed
                .keys()
                .map(|n| format!("{target}/{n} not generated")),
        );
    }
    assert!(
        drift.is_empty(),
        "fuzz/seeds is out of date with the encoders: {drift:?}.\n\
         Regenerate it with: CORRAL_BLESS=1 cargo test --test fuzz_seeds"
    );
}

#[test]
fn message_seeds_read_back_as_whole_messages() {
    // A seed the reader refuses would start the fuzzer from garbage, not from the wire format.
    use corral_core::__fuzz::reassembly::Reassembly;
    let mut messages = 0;
    for (name, seed) in messages_seeds() {
        let mut r = Reassembly::new();
        let mut rest = &seed[..];
        while let [nfds, a, b, tail @ ..] = rest {
            let len = u16::from_le_bytes([*a, *b]) as usize;
            let fds = (0..*nfds)
                .map(|_| std::fs::File::open("/dev/null").unwrap().into())
                .collect();
            let got = r.push(&tail[..len], fds);
            messages += got.unwrap_or_else(|e| panic!("{name}: {e}")).is_some() as usize;
            rest = &tail[len..];
        }
        assert!(rest.is_empty(), "{name}: trailing bytes");
    }
    assert_eq!(messages, 15);
}
