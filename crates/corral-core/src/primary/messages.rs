//! Worker channels: reading them in batches, handling what a worker says (`on_message`), and
//! writing to them without blocking (`queue_to`, `flush`, writable interest, drain). A
//! queue's weight against `send_queue_limit` counts bytes and messages.

use super::dispatch::{token, Inner, TAG_CHANNEL};
use super::options::QUEUED_MESSAGE_COST;
use super::WorkerState;
use crate::error::{Error, Result};
use crate::event::{Event, WorkerId};
use crate::ipc::proto::{self, ListenRequest};
use crate::ipc::{frame, Channel, Kind, Message, Recv};
use mio::unix::SourceFd;
use mio::Interest;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

/// `send` reports backpressure (returns false) above this many queued bytes, as Node does.
pub(super) const SEND_HIGH_WATER: usize = 128 * 1024;

/// The queue's weight against `send_queue_limit`.
pub(super) fn queue_cost(chan: &Channel) -> usize {
    chan.queued_bytes() + chan.queued_messages() * QUEUED_MESSAGE_COST
}

/// Messages read from one worker per dispatch before others get a turn.
pub(super) const READ_BATCH: usize = 512;

impl Inner {
    /// Reads messages from a worker's channel (at most a batch; the rest next dispatch).
    pub(super) fn read_channel(&mut self, id: WorkerId) {
        if self.read_channel_up_to(id, READ_BATCH) {
            self.hot_channels.push(id);
        }
    }

    /// Handles up to `limit` messages of a worker's channel; true if it may have more.
    pub(super) fn read_channel_up_to(&mut self, id: WorkerId, limit: usize) -> bool {
        for _ in 0..limit {
            let Some(chan) = self.workers.get_mut(&id).and_then(|s| s.chan.as_mut()) else {
                return false;
            };
            match chan.recv(true) {
                Ok(Recv::Message(m)) => {
                    if let Err(error) = self.on_message(id, m) {
                        self.events.push_back(Event::Error {
                            worker: Some(id),
                            error,
                        });
                        self.close_channel(id, false);
                        return false;
                    }
                }
                Ok(Recv::WouldBlock) => return false,
                Ok(Recv::Eof) => {
                    self.close_channel(id, false);
                    return false;
                }
                Ok(Recv::FdsLost(kind)) => {
                    // The primary is out of fds; the channel stays in step.
                    self.events.push_back(Event::Error {
                        worker: Some(id),
                        error: Error::fds_lost(format!("a {kind:?} message from worker {id}")),
                    });
                }
                Err(error) => {
                    let error = error.context(format!("worker {id}"));
                    self.events.push_back(Event::Error {
                        worker: Some(id),
                        error,
                    });
                    self.close_channel(id, false);
                    return false;
                }
            }
        }
        true
    }

    pub(super) fn on_message(&mut self, id: WorkerId, m: Message) -> Result<()> {
        let expect_fds = |n: usize| {
            if m.fds.len() > n {
                Err(Error::protocol(format!(
                    "malformed frame: {:?} with {} fds",
                    m.kind,
                    m.fds.len()
                )))
            } else {
                Ok(())
            }
        };
        match m.kind {
            Kind::Ack => {
                expect_fds(0)?;
                let n = proto::decode_u32(&m.data, "ack")?;
                let slot = self.workers.get_mut(&id).expect("reading its channel");
                slot.inflight = slot.inflight.saturating_sub(n);
                // It reads: a stalled worker is back (and its parked kernel slots with it).
                if std::mem::take(&mut slot.stall.stalled) {
                    self.unpark_kernel(id);
                }
                self.pump_worker_listeners(id);
            }
            Kind::Online => {
                expect_fds(0)?;
                let slot = self.workers.get_mut(&id).expect("reading its channel");
                if !slot.online {
                    slot.online = true;
                    if slot.state == WorkerState::Starting {
                        slot.state = WorkerState::Online;
                    }
                    // Also when a disconnect was already asked for: it did come online.
                    self.events.push_back(Event::Online { worker: id });
                }
            }
            Kind::Listen => {
                expect_fds(0)?;
                let req = ListenRequest::decode(&m.data)?;
                self.on_listen(id, req);
            }
            Kind::Unlisten => {
                expect_fds(0)?;
                let lid = proto::decode_u32(&m.data, "unlisten")?;
                let emptied = self
                    .listener_mut(lid)
                    .is_some_and(|l| l.remove_worker(id) && l.rotation.is_empty());
                if emptied {
                    self.close_listener(lid);
                }
            }
            Kind::User => {
                self.events.push_back(Event::Message {
                    worker: id,
                    data: m.data,
                    fds: m.fds,
                });
            }
            // The channel splits batches into User messages; whole only if a reader kept them.
            Kind::Batch => {
                expect_fds(0)?;
                for (start, end) in proto::batch_parts(&m.data)? {
                    self.events.push_back(Event::Message {
                        worker: id,
                        data: m.data[start..end].to_vec(),
                        fds: Vec::new(),
                    });
                }
            }
            Kind::Ready => {
                expect_fds(0)?;
                if let Some(s) = self.workers.get_mut(&id) {
                    s.ready = true;
                }
                self.events.push_back(Event::Ready { worker: id });
            }
            Kind::Heartbeat => {
                expect_fds(0)?;
                // Optional payload: the connections the worker has open.
                let active = if m.data.is_empty() {
                    None
                } else {
                    Some(proto::decode_u32(&m.data, "heartbeat")?)
                };
                let slot = self.workers.get_mut(&id).expect("reading its channel");
                slot.last_heartbeat = Some(Instant::now());
                if active.is_some() {
                    slot.active = active;
                }
            }
            Kind::Bye => {
                expect_fds(0)?;
                if let Some(s) = self.workers.get_mut(&id) {
                    s.disconnect_asked = true;
                }
                self.close_channel(id, true);
            }
            Kind::Refuse => {
                if m.fds.len() != 1 {
                    return Err(Error::protocol(format!(
                        "malformed frame: Refuse with {} fds (expected the connection)",
                        m.fds.len()
                    )));
                }
                let (lid, peer) = proto::decode_refuse(&m.data)?;
                let fd = m.fds.into_iter().next().expect("one fd");
                let key = self.key_again(fd.as_fd());
                self.on_refused(id, lid, super::dealer::Dealt::again(fd, peer, key));
            }
            Kind::Closed => {
                expect_fds(0)?;
                let lid = proto::decode_u32(&m.data, "closed")?;
                if let Some(l) = self.listener_mut(lid) {
                    l.least.closed(id);
                }
            }
            Kind::Room => {
                expect_fds(0)?;
                let lid = proto::decode_u32(&m.data, "room")?;
                let had = self
                    .listener_mut(lid)
                    .is_some_and(|l| l.refusals.remove(&id).is_some());
                if had {
                    self.pump(lid);
                }
            }
            Kind::Conn | Kind::ListenOk | Kind::ListenErr | Kind::Disconnect | Kind::Ping => {
                return Err(Error::protocol(format!(
                    "malformed frame: {:?} is only sent by the primary",
                    m.kind
                )));
            }
        }
        Ok(())
    }

    /// Queues a message to a worker and flushes. `false` if the worker's channel is gone.
    pub(super) fn queue_to(
        &mut self,
        id: WorkerId,
        kind: Kind,
        data: Vec<u8>,
        fds: Vec<OwnedFd>,
    ) -> bool {
        let Some(slot) = self.workers.get_mut(&id) else {
            return false;
        };
        slot.stall.whole &= data.len() <= frame::MAX_CHUNK;
        let Some(chan) = slot.chan.as_mut() else {
            return false;
        };
        if let Err(error) = chan.queue(kind, data, fds) {
            self.events.push_back(Event::Error {
                worker: Some(id),
                error,
            });
            return false;
        }
        self.flush(id);
        self.workers.get(&id).is_some_and(|s| s.chan.is_some())
    }

    /// Flushes a worker's queue; arms writable interest when the socket is full.
    pub(super) fn flush(&mut self, id: WorkerId) {
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(chan) = slot.chan.as_mut() else {
            return;
        };
        let flushed = chan.flush(false);
        if slot.drain_wanted {
            let low_water = self.opts.send_queue_limit.unwrap_or(0) / 2;
            if queue_cost(chan) <= low_water {
                slot.drain_wanted = false;
                self.events.push_back(Event::Drain { worker: id });
            }
        }
        match flushed {
            Ok(true) => {}
            Ok(false) => self.arm_writable(id),
            Err(e) => {
                let error = Error::os("sendmsg", format!("send to worker {id}"), &e);
                self.events.push_back(Event::Error {
                    worker: Some(id),
                    error,
                });
                self.close_channel(id, false);
            }
        }
    }

    pub(super) fn arm_writable(&mut self, id: WorkerId) {
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        if slot.write_blocked {
            return;
        }
        slot.write_blocked = true;
        if let Some(chan) = slot.chan.as_ref() {
            let _ = self.registry.reregister(
                &mut SourceFd(&chan.raw_fd()),
                token(TAG_CHANNEL, id),
                Interest::READABLE | Interest::WRITABLE,
            );
        }
    }

    pub(super) fn on_writable(&mut self, id: WorkerId) {
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        if !slot.write_blocked {
            return;
        }
        slot.write_blocked = false;
        if let Some(chan) = slot.chan.as_ref() {
            let _ = self.registry.reregister(
                &mut SourceFd(&chan.raw_fd()),
                token(TAG_CHANNEL, id),
                Interest::READABLE,
            );
        }
        self.flush(id);
        self.pump_worker_listeners(id);
    }

    pub(super) fn has_channel(&self, id: WorkerId) -> bool {
        self.workers.get(&id).is_some_and(|s| s.chan.is_some())
    }
}
