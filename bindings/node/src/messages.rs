//! The primary reads its workers' application messages on the JS thread.
//!
//! With `PrimaryOptions::message_channels` every worker sends its messages (user and
//! node:cluster-internal ones) on a channel of their own. Reading them here, from a libuv poll
//! handle on the JS loop, costs one thread wake-up per message, as in node:cluster; through the
//! engine thread and a ThreadsafeFunction it cost two (bench/results/profile.md, IPC).
//!
//! Ordering, as node:cluster's single channel gives it:
//! - a worker's messages are read only after JS saw its `online` (index.js starts the reader
//!   then), so no message overtakes it;
//! - before JS handles a worker's `disconnect` or `exit`, it drains the channel
//!   ([`Readers::drain`]): everything the worker sent before it went away comes first.
//!
//! Everything here runs on the JS thread.

use crate::events::{kind, Batch, Event};
use crate::uvpoll::{Poller, Pull};
use crate::Result;
use corral_core::{Channel, Recv};
use napi::bindgen_prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

/// Messages read per wake-up before the loop gets a turn (libuv polls level-triggered).
const RECV_BATCH: usize = 256;

/// One worker's message channel, and whether it ended (or failed). The fd stays open until
/// [`Reader::close`], after the poll handle stopped watching it.
struct Channelled {
    chan: Option<Channel>,
    done: bool,
}

type Source = Rc<RefCell<Channelled>>;

/// Reads up to `limit` messages of worker `id` as MESSAGE events. At the end of the channel
/// (or on a malformed frame, reported as an ERROR event) nothing more is read; true then.
fn read(id: u32, source: &Source, limit: usize) -> (Vec<Event>, bool) {
    let mut src = source.borrow_mut();
    let Channelled { chan, done } = &mut *src;
    let Some(chan) = chan.as_mut().filter(|_| !*done) else {
        return (Vec::new(), true);
    };
    let mut out = Vec::new();
    // A datagram read ahead is taken before stopping: it is no longer in the socket, so the
    // poll would not report it.
    while out.len() < limit || chan.has_read_ahead() {
        // Two at a time (one syscall, and it tells when the socket is empty) while both fit.
        let got = if out.len() + 2 <= limit {
            chan.recv_reading_ahead()
        } else {
            chan.recv(true)
        };
        match got {
            // A batch stays whole (the reader keeps batches): JS splits it, without a copy per
            // message; the event's flag says which.
            Ok(Recv::Message(m)) => {
                let batch = m.is_batch();
                match m.into_user() {
                    Ok((data, fds)) => out.push(Event {
                        kind: kind::MESSAGE,
                        worker: id,
                        flag: batch,
                        data: Some(data),
                        fds,
                        ..Default::default()
                    }),
                    Err(m) => {
                        out.push(protocol_error(id, &format!("a {} frame", m.kind_name())));
                        *done = true;
                        break;
                    }
                }
            }
            Ok(Recv::WouldBlock) => break,
            Ok(Recv::Eof) => {
                *done = true;
                break;
            }
            // The primary is out of fds: this message's handles are lost; the rest still reads.
            Ok(Recv::FdsLost(k)) => out.push(crate::events::error_event(
                id,
                &corral_core::Error::fds_lost(format!("a {k:?} message from worker {id}")),
            )),
            Err(e) => {
                out.push(protocol_error(id, e.message()));
                *done = true;
                break;
            }
        }
        // The socket was empty behind that message: asking again would only say EAGAIN
        // (libuv polls level-triggered, so a message arriving meanwhile wakes us again).
        if !chan.may_have_more() {
            break;
        }
    }
    (out, *done)
}

fn protocol_error(id: u32, what: &str) -> Event {
    Event {
        kind: kind::ERROR,
        worker: id,
        message: Some(format!(
            "worker {id}'s message channel: {what}; its messages are no longer read"
        )),
        syscall: Some("ERR_CORRAL_PROTOCOL".into()),
        ..Default::default()
    }
}

struct Reader {
    source: Source,
    poller: Option<Rc<Poller>>,
}

impl Reader {
    fn close(&mut self, teardown: bool) {
        if let Some(p) = self.poller.take() {
            // Stops watching before the fd closes (the pull closure keeps `source` alive).
            p.stop(teardown);
        }
        self.source.borrow_mut().chan = None;
    }
}

/// The message channels of one primary's workers.
#[derive(Default)]
pub struct Readers {
    readers: RefCell<HashMap<u32, Reader>>,
}

impl Readers {
    fn reader(
        map: &mut HashMap<u32, Reader>,
        id: u32,
        fd: impl FnOnce() -> Option<OwnedFd>,
    ) -> Option<&mut Reader> {
        match map.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => Some(e.insert(Reader {
                source: Rc::new(RefCell::new(Channelled {
                    chan: Some({
                        let mut chan = Channel::new(fd()?);
                        chan.keep_batches();
                        chan
                    }),
                    done: false,
                })),
                poller: None,
            })),
        }
    }

    /// Starts delivering worker `id`'s messages to `callback` as they arrive. `fd` gives the
    /// channel the first time (None: the worker has none). Idempotent.
    pub fn watch(
        &self,
        env: &Env,
        id: u32,
        fd: impl FnOnce() -> Option<OwnedFd>,
        callback: &Function<'_, Batch, ()>,
    ) -> Result<()> {
        let mut map = self.readers.borrow_mut();
        let Some(r) = Self::reader(&mut map, id, fd) else {
            return Ok(());
        };
        if r.poller.is_some() {
            return Ok(());
        }
        let Some(raw) = r.source.borrow().chan.as_ref().map(|c| c.fd().as_raw_fd()) else {
            return Ok(());
        };
        let source = r.source.clone();
        let pull: Pull = Box::new(move || read(id, &source, RECV_BATCH));
        r.poller = Some(Poller::start(env, raw, callback, pull)?);
        Ok(())
    }

    /// Everything worker `id` sent that was not delivered yet; with `close`, also stops
    /// reading its channel and closes it.
    pub fn drain(&self, id: u32, fd: impl FnOnce() -> Option<OwnedFd>, close: bool) -> Vec<Event> {
        let mut map = self.readers.borrow_mut();
        let Some(r) = Self::reader(&mut map, id, fd) else {
            return Vec::new();
        };
        let (events, _ended) = read(id, &r.source, usize::MAX);
        if close {
            r.close(false);
            map.remove(&id);
        }
        events
    }

    /// The number of worker `id`'s channel while a reader holds it open.
    pub fn raw_fd(&self, id: u32) -> Option<i32> {
        let map = self.readers.borrow();
        let r = map.get(&id)?;
        let source = r.source.borrow();
        source.chan.as_ref().map(|c| c.fd().as_raw_fd())
    }

    /// Stops every reader (primary closing, or environment teardown: no napi calls then).
    pub fn close_all(&self, teardown: bool) {
        for (_, mut r) in self.readers.borrow_mut().drain() {
            r.close(teardown);
        }
    }
}
