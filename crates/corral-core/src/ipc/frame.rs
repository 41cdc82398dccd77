//! Wire format of one datagram on a worker channel.
//!
//! ```text
//! 0      2      3       4              8
//! +------+------+-------+--------------+----------------------+
//! | C0 7A| kind | flags | total (u32le)| chunk (<= MAX_CHUNK) |
//! +------+------+-------+--------------+----------------------+
//! ```
//! A message of `total` bytes travels as one or more datagrams (the socket keeps boundaries):
//! the first has `FIRST`, every one but the last has `MORE`, all repeat `kind` and `total`, and
//! fds ride on the first only. Messages are never interleaved in one direction, so a `FIRST`
//! while a message is open, a chunk past `total`, or a kind change mid-message is malformed.

use std::fmt;

/// Bytes of header in every datagram.
pub const HEADER_LEN: usize = 8;
/// Largest datagram either side sends or accepts (fits the default `SO_SNDBUF`).
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Largest payload chunk in one datagram.
pub const MAX_CHUNK: usize = MAX_DATAGRAM - HEADER_LEN;
/// Largest message payload: 64 MiB. Bigger sends fail with an error naming this limit.
pub const MAX_MESSAGE_LEN: usize = 64 << 20;

const MAGIC: [u8; 2] = [0xC0, 0x7A];
/// First datagram of a message.
pub const FLAG_FIRST: u8 = 1;
/// More datagrams of this message follow.
pub const FLAG_MORE: u8 = 2;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// primary -> worker: an accepted connection (1 fd) for a listener.
    Conn = 1,
    /// worker -> primary: this many connections were taken off the channel.
    Ack = 2,
    /// worker -> primary: please listen on an address.
    Listen = 3,
    /// primary -> worker: listening (in shared mode with the listening fd).
    ListenOk = 4,
    /// primary -> worker: the listen request failed.
    ListenErr = 5,
    /// worker -> primary: stop sending connections of this listener.
    Unlisten = 6,
    /// worker -> primary: the worker is up.
    Online = 7,
    /// primary -> worker: finish what you have, then disconnect.
    Disconnect = 8,
    /// worker -> primary: the worker closes the channel and reads nothing more.
    Bye = 9,
    /// either way: an application message (opaque bytes, optional fds).
    User = 10,
    /// worker -> primary: the application said it is ready (after warm-up).
    Ready = 11,
    /// worker -> primary: the worker's main loop is alive.
    Heartbeat = 12,
    /// primary -> worker: nothing to do. Sent to a worker that stopped reading its channel;
    /// the primary sees it taken off the queue (`sys::peer_has_unread`) once the worker reads
    /// again, and deals it connections again.
    Ping = 13,
    /// worker -> primary: a connection of this listener (1 fd) the worker will not take (a
    /// Node server at its `maxConnections`, a server closing): the primary deals it to another
    /// worker, as node:cluster's round-robin does with a connection answered `accepted: false`.
    Refuse = 14,
    /// worker -> primary: the worker has room again for this listener's connections after
    /// refusing some (a connection of its server closed): it is dealt them again at once.
    Room = 15,
    /// either way: several application messages in one, as `User` messages would carry them
    /// one by one (`proto::Batch`: `[len u32le][bytes]` each, at least one; no fds). Readers
    /// see the `User` messages ([`Channel::recv`](super::Channel::recv) splits it) unless they
    /// asked for batches whole. One datagram for what would be many: the per-datagram cost of
    /// the socket (an skb, a wake-up, a syscall each side) is paid once.
    Batch = 16,
    /// worker -> primary: one of this listener's connections it was dealt has closed (the
    /// `least` policy counts each worker's open connections).
    Closed = 17,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        use Kind::*;
        Some(match b {
            1 => Conn,
            2 => Ack,
            3 => Listen,
            4 => ListenOk,
            5 => ListenErr,
            6 => Unlisten,
            7 => Online,
            8 => Disconnect,
            9 => Bye,
            10 => User,
            11 => Ready,
            12 => Heartbeat,
            13 => Ping,
            14 => Refuse,
            15 => Room,
            16 => Batch,
            17 => Closed,
            _ => return None,
        })
    }
}

/// A decoded datagram header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message kind.
    pub kind: Kind,
    /// `FLAG_FIRST` | `FLAG_MORE`.
    pub flags: u8,
    /// Length of the whole message payload.
    pub total: u32,
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed frame: {}", self.0)
    }
}

/// Encodes a header.
pub fn encode(kind: Kind, flags: u8, total: u32) -> [u8; HEADER_LEN] {
    let t = total.to_le_bytes();
    [
        MAGIC[0], MAGIC[1], kind as u8, flags, t[0], t[1], t[2], t[3],
    ]
}

/// Decodes and checks a header (magic, kind, flags, total within the limit).
pub fn decode(buf: &[u8]) -> Result<Header, FrameError> {
    if buf.len() < HEADER_LEN {
        return Err(FrameError(format!(
            "datagram of {} bytes is shorter than a header",
            buf.len()
        )));
    }
    if buf[..2] != MAGIC {
        return Err(FrameError(format!(
            "bad magic {:02x}{:02x}",
            buf[0], buf[1]
        )));
    }
    let kind =
        Kind::from_u8(buf[2]).ok_or_else(|| FrameError(format!("unknown kind {}", buf[2])))?;
    let flags = buf[3];
    if flags & !(FLAG_FIRST | FLAG_MORE) != 0 {
        return Err(FrameError(format!("unknown flags {flags:#x}")));
    }
    let total = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if total as usize > MAX_MESSAGE_LEN {
        return Err(FrameError(format!(
            "message of {total} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit"
        )));
    }
    Ok(Header { kind, flags, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = encode(Kind::User, FLAG_FIRST | FLAG_MORE, 123_456);
        assert_eq!(
            decode(&h).unwrap(),
            Header {
                kind: Kind::User,
                flags: 3,
                total: 123_456
            }
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(&[0xC0]).is_err());
        assert!(decode(&[0, 0, 1, 1, 0, 0, 0, 0])
            .unwrap_err()
            .0
            .contains("magic"));
        assert!(decode(&[0xC0, 0x7A, 99, 1, 0, 0, 0, 0])
            .unwrap_err()
            .0
            .contains("kind"));
        assert!(decode(&[0xC0, 0x7A, 1, 8, 0, 0, 0, 0])
            .unwrap_err()
            .0
            .contains("flags"));
        let big = encode(Kind::User, 1, (MAX_MESSAGE_LEN + 1) as u32);
        assert!(decode(&big).unwrap_err().0.contains("limit"));
    }
}
