//! Connections parked in the primary before they are dealt: under the PROXY protocol until
//! their header is read, under `sticky` with a key source until the key is seen in the first
//! request. Each one is watched by the poller (its own token) and has a deadline
//! (`RoutingOptions::peek_timeout`); the bytes looked at are bounded (`peek_bytes`).
//!
//! The PROXY header is consumed (exactly `Header::len` bytes: the worker's first read starts at
//! the client's own bytes); the request is only peeked at (`MSG_PEEK`), the worker reads it
//! whole. A missing, malformed or slow header closes the connection and counts
//! [`RoutingStats::proxy_errors`]; a key that does not come in time (or is absent, or the bytes
//! are not HTTP/1.x) routes by the client address instead, which is not an error.
//!
//! At most [`MAX_PARKED`] connections wait at once: past that the listeners stop accepting and
//! clients wait in the kernel backlog, so slow clients cannot make the primary hold
//! unbounded fds.

use super::dealer::Dealt;
use super::dispatch::{token, Inner, TAG_PEEK};
use crate::event::Event;
use crate::policy::http_key::{self, Found};
use crate::policy::{sticky, Policy};
use crate::proxy_protocol::{self, Parse};
use crate::sys;
use mio::unix::SourceFd;
use mio::Interest;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

/// Most connections parked at once.
pub const MAX_PARKED: usize = 1024;

/// Counters of the primary's routing (see [`Primary::routing_stats`](super::Primary::routing_stats)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingStats {
    /// Connections closed for a missing, malformed or slow PROXY header.
    pub proxy_errors: u64,
    /// Why the last one was closed.
    pub last_proxy_error: Option<String>,
    /// Connections routed by a key read from their request.
    pub keyed: u64,
    /// Connections that waited for a key and were routed by address (absent, not HTTP/1.x,
    /// or the peek bounds were reached).
    pub key_fallbacks: u64,
    /// Connections waiting now for their header or key.
    pub parked: usize,
}

/// A connection waiting for its header or key.
pub(super) struct Parked {
    lid: u32,
    fd: OwnedFd,
    deadline: Instant,
    /// Its PROXY header was read (or none is expected).
    header_done: bool,
    /// The client's address named by the header.
    peer: Option<SocketAddr>,
    /// The poller watches it (it had to wait for more bytes).
    watched: bool,
}

/// What to do with a parked connection after a look at its bytes.
enum Next {
    Wait,
    Deal(Option<u64>),
    Close(&'static str),
}

impl Inner {
    /// Connections must be looked at before they are dealt.
    pub(super) fn needs_peek(&self) -> bool {
        self.opts.routing.proxy_protocol || self.wants_key()
    }

    fn wants_key(&self) -> bool {
        self.opts.policy == Policy::Sticky && self.opts.routing.key.is_some()
    }

    /// Room to park one more connection (always, when nothing is parked).
    pub(super) fn may_park(&self) -> bool {
        !self.needs_peek() || self.parked.len() < MAX_PARKED
    }

    /// Parks an accepted connection of listener `lid` and looks at what it has sent already:
    /// the poller watches it only when that is not enough (a client that connects and sends at
    /// once, as most do on loopback and behind a proxy, is dealt without two `epoll_ctl`s).
    /// Returns such a connection for the caller (the accept loop, `pump`) to deal: dealing it
    /// here would start an accept loop inside the accept loop, one level deeper per connection
    /// of a burst, each asking the accept queue's length again (a `getsockopt` per connection).
    pub(super) fn park(&mut self, lid: u32, fd: OwnedFd) -> Option<Dealt> {
        let id = self.next_parked;
        self.next_parked += 1;
        self.parked.insert(
            id,
            Parked {
                lid,
                fd,
                deadline: Instant::now() + self.opts.routing.peek_timeout,
                header_done: !self.opts.routing.proxy_protocol,
                peer: None,
                watched: false,
            },
        );
        let next = self.look(id);
        if !matches!(next, Next::Wait) {
            // No listener to pump for room: taking out the one just put in leaves the room
            // there was before, and the caller accepted because there was some.
            return self.unpark(id, next).map(|(_, conn)| conn);
        }
        let p = self.parked.get_mut(&id).expect("parked above");
        // Edge-triggered, but adding reports what is readable already: bytes that came since
        // the look above still wake it.
        match self.registry.register(
            &mut SourceFd(&p.fd.as_raw_fd()),
            token(TAG_PEEK, id),
            Interest::READABLE,
        ) {
            Ok(()) => p.watched = true,
            Err(e) => {
                // Not expected (epoll out of memory): the client sees a reset; say why once.
                self.parked.remove(&id);
                self.events.push_back(Event::Error {
                    worker: None,
                    error: crate::Error::os("epoll_ctl", "watch a connection's first bytes", &e),
                });
            }
        }
        None
    }

    /// A parked connection is readable (or was just parked): read its header, look for its key.
    pub(super) fn on_parked(&mut self, id: u64) {
        let next = self.look(id);
        self.settle(id, next);
    }

    fn look(&mut self, id: u64) -> Next {
        let cap = self.opts.routing.peek_bytes;
        let want_key = self.wants_key();
        let Some(p) = self.parked.get_mut(&id) else {
            return Next::Wait;
        };
        let mut buf = [0u8; super::options::MAX_PEEK_BYTES];
        if !p.header_done {
            let cap = cap.min(proxy_protocol::MAX_LEN);
            let n = match sys::peek_stream(p.fd.as_fd(), &mut buf[..cap]) {
                Ok(None) => return Next::Wait,
                Ok(Some(0)) => return Next::Close("closed before its PROXY header"),
                Ok(Some(n)) => n,
                Err(_) => return Next::Close("read error before its PROXY header"),
            };
            match proxy_protocol::parse(&buf[..n]) {
                Parse::Incomplete if n < cap => return Next::Wait,
                Parse::Incomplete => return Next::Close("PROXY header longer than peek_bytes"),
                Parse::Invalid(why) => return Next::Close(why),
                Parse::Done(h) => {
                    if sys::discard_peeked(p.fd.as_fd(), h.len).is_err() {
                        return Next::Close("read error in its PROXY header");
                    }
                    p.header_done = true;
                    p.peer = h.source;
                }
            }
        }
        let Some(source) = want_key.then_some(()).and(self.opts.routing.key.as_ref()) else {
            return Next::Deal(None);
        };
        let n = match sys::peek_stream(p.fd.as_fd(), &mut buf[..cap]) {
            Ok(None) => return Next::Wait,
            // Nothing more will come (or an error the worker will see): by address.
            Ok(Some(0)) | Err(_) => return Next::Deal(None),
            Ok(Some(n)) => n,
        };
        match http_key::find(&buf[..n], source) {
            Found::Incomplete if n < cap => Next::Wait,
            Found::Incomplete | Found::Absent => Next::Deal(None),
            Found::Key(k) => Next::Deal(Some(sticky::key_of(k))),
        }
    }

    fn settle(&mut self, id: u64, next: Next) {
        let was_full = self.parked.len() >= MAX_PARKED;
        if let Some((lid, conn)) = self.unpark(id, next) {
            // A listener closed meanwhile has nobody to give it to: the fd closes.
            if let Some(l) = self.listener_mut(lid).filter(|l| l.fd.is_some()) {
                l.pending.push_back(conn);
                self.pump(lid);
            }
        }
        if was_full && self.parked.len() < MAX_PARKED {
            // Room again: listeners that stopped accepting for want of it go on.
            let lids: Vec<u32> = self
                .listeners
                .iter()
                .filter(|l| l.ready && l.fd.is_some())
                .map(|l| l.id)
                .collect();
            for lid in lids {
                self.pump(lid);
            }
        }
    }

    /// Takes a parked connection out once `next` settles it (nothing when it says wait):
    /// closed and counted, or returned with its listener to be dealt.
    fn unpark(&mut self, id: u64, next: Next) -> Option<(u32, Dealt)> {
        if matches!(next, Next::Wait) {
            return None;
        }
        let p = self.parked.remove(&id)?;
        if p.watched {
            let _ = self.registry.deregister(&mut SourceFd(&p.fd.as_raw_fd()));
        }
        match next {
            Next::Wait => None,
            Next::Close(why) => {
                self.routing.proxy_errors += 1;
                self.routing.last_proxy_error = Some(why.to_string());
                drop(p.fd); // closes the connection
                None
            }
            Next::Deal(key) => {
                if self.wants_key() {
                    if key.is_some() {
                        self.routing.keyed += 1;
                    } else {
                        self.routing.key_fallbacks += 1;
                    }
                }
                let conn = Dealt {
                    fd: p.fd,
                    key,
                    peer: p.peer,
                };
                Some((p.lid, conn))
            }
        }
    }

    /// The sticky key of a connection dealt again: read back from a worker that will not take
    /// it, or refused by one. Its request was only peeked at, so it is still in the socket and
    /// is looked at once more, without waiting (it already waited once); `None` (no key
    /// source, key absent, or the worker read the request before refusing it) routes it by
    /// address.
    pub(super) fn key_again(&self, fd: BorrowedFd<'_>) -> Option<u64> {
        let source = self
            .opts
            .routing
            .key
            .as_ref()
            .filter(|_| self.wants_key())?;
        let mut buf = [0u8; super::options::MAX_PEEK_BYTES];
        let cap = self.opts.routing.peek_bytes;
        match sys::peek_stream(fd, &mut buf[..cap]) {
            Ok(Some(n)) if n > 0 => match http_key::find(&buf[..n], source) {
                Found::Key(k) => Some(sticky::key_of(k)),
                Found::Incomplete | Found::Absent => None,
            },
            _ => None,
        }
    }

    /// The earliest deadline of a parked connection (the first parked: every one waits the
    /// same time).
    pub(super) fn next_parked_deadline(&self) -> Option<Instant> {
        self.parked.first_key_value().map(|(_, p)| p.deadline)
    }

    /// Settles the parked connections whose deadline passed: without their PROXY header they
    /// close (counted); waiting for a key they are dealt by address.
    pub(super) fn expire_parked(&mut self, now: Instant) {
        let due: Vec<(u64, bool)> = self
            .parked
            .iter()
            .take_while(|(_, p)| p.deadline <= now)
            .map(|(&id, p)| (id, p.header_done))
            .collect();
        for (id, header_done) in due {
            let next = if header_done {
                Next::Deal(None)
            } else {
                Next::Close("no PROXY header within peek_timeout")
            };
            self.settle(id, next);
        }
    }
}
