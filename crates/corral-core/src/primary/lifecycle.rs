//! A worker's life as the primary sees it: its [`WorkerRecord`], adopting a spawned or forked
//! child (pidfd and channel watched), disconnecting it, closing its channel and recovering the
//! connections left in it, its exit, and the primary's shutdown (deadline, then SIGKILL).

use super::dealer::{Dealt, StallWatch};
use super::dispatch::{token, Inner, TAG_CHANNEL, TAG_PIDFD};
use super::messages::READ_BATCH;
use super::{io_err, WorkerState};
use crate::error::{Error, Result};
use crate::event::{Event, WorkerId};
use crate::ipc::proto;
use crate::ipc::{Channel, Kind, Recv};
use crate::sys::{self, ExitStatus, SpawnSpec};
use mio::unix::SourceFd;
use mio::Interest;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub(super) struct WorkerRecord {
    pub(super) pid: i32,
    pub(super) pidfd: OwnedFd,
    pub(super) chan: Option<Channel>,
    /// The worker's end of the channel, kept to recover connections it never took.
    pub(super) peer: Option<OwnedFd>,
    pub(super) state: WorkerState,
    pub(super) inflight: u32,
    pub(super) write_blocked: bool,
    pub(super) disconnect_asked: bool,
    pub(super) handed_off: u64,
    pub(super) refused: u64,
    /// Connections read back from its channel when it stalled (`WorkerInfo::taken_back`).
    pub(super) taken_back: u64,
    pub(super) started: Instant,
    /// The primary's ends of piped stdio, by the worker's fd number.
    pub(super) stdio: Vec<Option<OwnedFd>>,
    /// The primary's end of the message channel, until the front takes it.
    pub(super) messages: Option<OwnedFd>,
    pub(super) last_heartbeat: Option<Instant>,
    pub(super) active: Option<u32>,
    pub(super) ready: bool,
    pub(super) online: bool,
    pub(super) stall: StallWatch,
    /// A send was refused (queue limit): `Event::Drain` is owed once the queue is down to half.
    pub(super) drain_wanted: bool,
    /// Started with `SpawnSpec::without_channel`: asked to leave by SIGTERM, and its channel
    /// (never the worker's) closing is not reported.
    pub(super) without_channel: bool,
    /// A `without_channel` worker asked to leave gets its SIGTERM then (the stop delay).
    pub(super) term_at: Option<Instant>,
    /// Its stable position for `sticky` ([`Primary::set_worker_slot`](super::Primary::set_worker_slot)):
    /// the supervisor's slot. `None`: the first free one of each listener it joins.
    pub(super) slot: Option<u32>,
}

pub(super) struct Shutdown {
    pub(super) deadline: Instant,
    pub(super) killed: bool,
    pub(super) reported: bool,
}

/// Rejects stdio setups `sys::spawn` cannot give a worker, naming the entry or the limit.
pub(super) fn check_stdio(spec: &SpawnSpec) -> Result<()> {
    if let Some(i) = (0..3).find(|&i| spec.stdio_at(i) == sys::StdioSpec::Closed) {
        return Err(Error::invalid_option(
            &format!("stdio[{i}]"),
            "Closed is for fds 3 and up (use Null for stdin, stdout or stderr)",
        ));
    }
    let channels = spec
        .stdio
        .iter()
        .filter(|s| **s == sys::StdioSpec::Channel)
        .count();
    if channels > 1 {
        return Err(Error::invalid_option(
            "stdio",
            format_args!("{channels} Channel entries (a worker has one channel: at most one)"),
        ));
    }
    // Checked before the worker's channels are created: one could take that number.
    if let Some(fd) = spec.stdio.iter().find_map(|s| match *s {
        sys::StdioSpec::Fd(fd) if !sys::fd_is_open(fd) => Some(fd),
        _ => None,
    }) {
        return Err(Error::from_errno(
            "spawn",
            format!("stdio: the primary's fd {fd}"),
            libc::EBADF,
        ));
    }
    // The worker's fds are numbered by entry, its two channels right above them; the
    // primary's copies of them go above those.
    let top = spec.stdio_len() as u64 + 2;
    let limit = sys::fd_limit();
    if top * 2 >= limit {
        return Err(Error::invalid_option(
            "stdio",
            format_args!(
                "{} entries need fds up to {} in the worker and as many copies in the primary: \
                 over RLIMIT_NOFILE ({limit})",
                spec.stdio.len(),
                top
            ),
        ));
    }
    Ok(())
}

impl Inner {
    pub(super) fn check_running(&self) -> Result<()> {
        if self.shutdown.is_some() {
            return Err(Error::wrong_state(
                "the primary is shutting down: no new workers",
            ));
        }
        Ok(())
    }

    pub(super) fn adopt(
        &mut self,
        id: WorkerId,
        pid: i32,
        chan: OwnedFd,
        peer: OwnedFd,
        stdio: Vec<Option<OwnedFd>>,
    ) -> Result<()> {
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                // Without a pidfd we could never notice its exit: do not leave it running.
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::reap(pid);
                return Err(Error::os(
                    "pidfd_open",
                    format!("watch worker {id} (pid {pid})"),
                    &e,
                ));
            }
        };
        let reg = &self.registry;
        reg.register(
            &mut SourceFd(&pidfd.as_raw_fd()),
            token(TAG_PIDFD, id),
            Interest::READABLE,
        )
        .map_err(io_err("epoll_ctl", "watch worker exit"))?;
        reg.register(
            &mut SourceFd(&chan.as_raw_fd()),
            token(TAG_CHANNEL, id),
            Interest::READABLE,
        )
        .map_err(io_err("epoll_ctl", "watch worker channel"))?;
        self.workers.insert(
            id,
            WorkerRecord {
                pid,
                pidfd,
                chan: Some(Channel::new(chan)),
                peer: Some(peer),
                state: WorkerState::Starting,
                inflight: 0,
                write_blocked: false,
                disconnect_asked: false,
                handed_off: 0,
                refused: 0,
                taken_back: 0,
                started: Instant::now(),
                stdio,
                messages: None,
                last_heartbeat: None,
                active: None,
                ready: false,
                online: false,
                stall: StallWatch {
                    whole: true,
                    ..StallWatch::default()
                },
                drain_wanted: false,
                without_channel: false,
                term_at: None,
                slot: None,
            },
        );
        self.events.push_back(Event::Fork { worker: id, pid });
        Ok(())
    }

    pub(super) fn ask_disconnect(&mut self, id: WorkerId) {
        self.ask_disconnect_after(id, Duration::ZERO);
    }

    /// As [`Inner::ask_disconnect`]; a `without_channel` worker gets its SIGTERM after
    /// `stop_delay` (at once when zero, or when a pending one is asked again with zero).
    pub(super) fn ask_disconnect_after(&mut self, id: WorkerId, stop_delay: Duration) {
        for lid in self.leave_listeners(id, true) {
            self.close_listener(lid);
        }
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        slot.disconnect_asked = true;
        if stop_delay.is_zero() && slot.term_at.take().is_some() {
            let _ = sys::kill(slot.pid, libc::SIGTERM);
            return;
        }
        if slot.chan.is_none() || slot.state == WorkerState::Disconnecting {
            return;
        }
        slot.state = WorkerState::Disconnecting;
        if slot.without_channel {
            // It cannot read the request: SIGTERM is what any server takes as "drain and exit".
            if stop_delay.is_zero() {
                let _ = sys::kill(slot.pid, libc::SIGTERM);
            } else {
                slot.term_at = Some(Instant::now() + stop_delay);
            }
            return;
        }
        self.queue_to(id, Kind::Disconnect, Vec::new(), Vec::new());
    }

    /// Closes the primary's end of a worker's channel. With `recover`, the worker will never
    /// read again (it said goodbye), so connections still queued to it are taken back.
    pub(super) fn close_channel(&mut self, id: WorkerId, recover: bool) {
        let emptied = self.leave_listeners(id, recover);
        let Some(slot) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(chan) = slot.chan.take() else { return };
        let _ = self.registry.deregister(&mut SourceFd(&chan.raw_fd()));
        drop(chan);
        slot.state = WorkerState::Disconnected;
        slot.write_blocked = false;
        let report = !slot.without_channel;
        self.hot_channels.retain(|&w| w != id);
        if recover {
            self.recover(id);
        }
        for lid in emptied {
            self.close_listener(lid);
        }
        if report {
            self.events.push_back(Event::Disconnect { worker: id });
        }
    }

    /// Reads back connections that were sent to a worker that will never take them, and hands
    /// them to others.
    pub(super) fn recover(&mut self, id: WorkerId) {
        let Some(peer) = self.workers.get_mut(&id).and_then(|s| s.peer.take()) else {
            return;
        };
        let mut chan = Channel::new(peer);
        let mut lids = Vec::new();
        // Bounded: the queue holds at most what the socket buffer held.
        for _ in 0..65_536 {
            match chan.recv(true) {
                Ok(Recv::Message(m)) if m.kind == Kind::Conn => {
                    let Ok((lid, peer)) = proto::decode_conn_peer(&m.data) else {
                        continue;
                    };
                    let Some(fd) = m.fds.into_iter().next() else {
                        continue;
                    };
                    let key = self.key_again(fd.as_fd());
                    if let Some(l) = self.listener_mut(lid) {
                        // A closed listener has nobody to give it to: the client sees a reset.
                        if l.fd.is_some() {
                            l.pending.push_front(Dealt::again(fd, peer, key));
                        }
                        lids.push(lid);
                    }
                }
                Ok(Recv::Message(_)) | Ok(Recv::FdsLost(_)) | Err(_) => {}
                Ok(Recv::WouldBlock) | Ok(Recv::Eof) => break,
            }
        }
        if let Some(s) = self.workers.get_mut(&id) {
            s.inflight = 0;
        }
        lids.sort_unstable();
        lids.dedup();
        for lid in lids {
            self.pump(lid);
        }
    }

    pub(super) fn on_exit(&mut self, id: WorkerId) {
        let Some(slot) = self.workers.get(&id) else {
            return;
        };
        let pid = slot.pid;
        let status = match sys::reap(pid) {
            Ok(Some(st)) => st,
            Ok(None) => return, // spurious wake-up
            Err(e) => {
                // ECHILD: someone else reaped it (a process-wide SIGCHLD handler); report it.
                let error = Error::os("waitpid", format!("reap worker {id} (pid {pid})"), &e);
                self.events.push_back(Event::Error {
                    worker: Some(id),
                    error,
                });
                ExitStatus {
                    code: None,
                    signal: None,
                }
            }
        };
        // What the worker sent before it exited comes first (its exit may be seen before
        // its last messages are read; nothing more can arrive now).
        while self.read_channel_up_to(id, READ_BATCH) {}
        self.close_channel(id, false);
        self.recover(id);
        let slot = self.workers.remove(&id).expect("present above");
        let _ = self
            .registry
            .deregister(&mut SourceFd(&slot.pidfd.as_raw_fd()));
        self.events.push_back(Event::Exit {
            worker: id,
            pid,
            status,
            exited_after_disconnect: slot.disconnect_asked,
        });
        self.check_shutdown_done();
    }

    pub(super) fn begin_shutdown(&mut self, timeout: Duration) {
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + crate::limits::MAX_DURATION);
        if let Some(s) = self.shutdown.as_mut() {
            s.deadline = s.deadline.min(deadline);
            return;
        }
        self.shutdown = Some(Shutdown {
            deadline,
            killed: false,
            reported: false,
        });
        for l in &mut self.listeners {
            if let Some(fd) = l.fd.take() {
                let _ = self.registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            // Not yet handed out: the clients see a reset, as with any closing server.
            l.pending.clear();
        }
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            self.ask_disconnect(id);
        }
        self.check_shutdown_done();
    }

    /// SIGTERMs whose stop delay is over.
    pub(super) fn send_due_terms(&mut self, now: Instant) {
        for slot in self.workers.values_mut() {
            if slot.term_at.is_some_and(|t| t <= now) {
                slot.term_at = None;
                let _ = sys::kill(slot.pid, libc::SIGTERM);
            }
        }
    }

    pub(super) fn next_term(&self) -> Option<Instant> {
        self.workers.values().filter_map(|s| s.term_at).min()
    }

    pub(super) fn kill_all(&mut self) {
        if let Some(s) = self.shutdown.as_mut() {
            s.killed = true;
        }
        for slot in self.workers.values() {
            let _ = sys::kill(slot.pid, libc::SIGKILL);
        }
    }

    pub(super) fn check_deadline(&mut self) {
        if let Some(s) = &self.shutdown {
            if !s.killed && Instant::now() >= s.deadline && !self.workers.is_empty() {
                self.kill_all();
            }
        }
    }

    pub(super) fn check_shutdown_done(&mut self) {
        if let Some(s) = self.shutdown.as_mut() {
            if self.workers.is_empty() && !s.reported {
                s.reported = true;
                self.events
                    .push_back(Event::ShutdownComplete { clean: !s.killed });
            }
        }
    }
}
