//! Listen requests: checking a worker may listen and stays under its listener limit, sharing
//! one listener per address (joining, adding, closing), host name lookups on short-lived
//! threads, and listeners orphaned by a crashed worker, kept for `orphan_listener_grace`.

use super::dealer::{Dealt, Refusal};
use super::dispatch::{token, Inner, TAG_LISTENER};
use super::{io_err, WorkerState};
use crate::error::{Error, Result};
use crate::event::{Event, WorkerId};
use crate::ipc::proto::{ListenReply, ListenRequest};
use crate::ipc::Kind;
use crate::listener::{self, BoundAddr, ListenAddr, SocketKind};
use crate::policy::least::LeastLoaded;
use crate::policy::round_robin::Rotation;
use crate::policy::sticky::StickyTable;
use crate::policy::Policy;
use crate::sys::{self, LoadRelease};
use mio::unix::SourceFd;
use mio::Interest;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

/// Host name lookups running at once, one short-lived thread each; more wait in line.
pub(super) const MAX_LOOKUP_THREADS: usize = 8;

pub(super) struct ListenerSlot {
    pub(super) id: u32,
    pub(super) fd: Option<OwnedFd>,
    pub(super) addr: BoundAddr,
    pub(super) rotation: Rotation,
    /// `sticky`: the members by slot (the same members as `rotation`).
    pub(super) sticky: StickyTable,
    /// `least`: the members' open connections (the same members as `rotation`).
    pub(super) least: LeastLoaded,
    /// Readiness seen and not yet drained to EAGAIN (the poller is edge-triggered).
    pub(super) ready: bool,
    pub(super) pending: VecDeque<Dealt>,
    pub(super) retry_at: Option<Instant>,
    pub(super) accepted: u64,
    pub(super) accept_failing: bool,
    /// Since when it has had no worker (not after a graceful leave: that closes it at once).
    pub(super) orphaned_at: Option<Instant>,
    /// Adopted from the primary's own fd (`fd:N`): its Unix socket file is not ours.
    pub(super) adopted: bool,
    /// Workers that refused one of its connections, not offered any until `until`.
    pub(super) refusals: HashMap<WorkerId, Refusal>,
    /// `kernel-rr`: `fd` is the anchor of this group; each member gets its own socket.
    pub(super) kernel: Option<crate::steering::KernelSteering>,
}

/// Listen requests for the same host name, index and kind share one lookup (and then one
/// listener). The kind keeps TCP 8080 and UDP 8080 apart.
pub(super) type ListenKey = (ListenAddr, u32, SocketKind);

/// A host name lookup for a listen, running on its own thread or waiting for one.
pub(super) struct Lookup {
    pub(super) backlog: i32,
    pub(super) opts: listener::BindOptions,
    /// Workers waiting for the answer, with their request ids.
    pub(super) waiters: Vec<(WorkerId, u32)>,
    /// Set once its thread runs.
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

pub(super) type LookupResult = (ListenKey, Result<std::net::SocketAddr>);

impl ListenerSlot {
    /// Connections go through the primary: a stream listener under `rr`, `sticky` or `least`
    /// (under `kernel-rr`, those that land on the anchor). Datagram listeners are always shared,
    /// whatever the policy.
    pub(super) fn round_robin(&self, policy: Policy) -> bool {
        policy.primary_deals() && self.addr.kind() == SocketKind::Stream
    }
}

impl Inner {
    pub(super) fn listener_mut(&mut self, lid: u32) -> Option<&mut ListenerSlot> {
        self.listeners.get_mut(lid.checked_sub(1)? as usize)
    }

    pub(super) fn on_listen(&mut self, id: WorkerId, req: ListenRequest) {
        let key: ListenKey = (req.addr.clone(), req.index, req.kind);
        if let Err(e) = self
            .may_listen(id)
            .and_then(|()| self.within_listener_limit(id, &key))
        {
            self.listen_err(id, req.req, &e);
            return;
        }
        let backlog = if req.backlog <= 0 {
            listener::DEFAULT_BACKLOG
        } else {
            req.backlog
        };
        if let Some(&lid) = self.by_addr.get(&key) {
            self.join_listener(id, req.req, lid);
        } else if !self.forks && listener::host_to_look_up(&req.addr).is_some() {
            // The resolver may take seconds (or its whole timeout): never on this loop.
            self.look_up(key, backlog, req.opts, id, req.req);
        } else {
            match self.open_listener(key, backlog, req.opts, None) {
                Ok(lid) => self.join_listener(id, req.req, lid),
                Err(e) => self.listen_err(id, req.req, &e),
            }
        }
    }

    /// Whether worker `id` may join a listener now.
    pub(super) fn may_listen(&self, id: WorkerId) -> Result<()> {
        if self.shutdown.is_some() {
            Err(Error::wrong_state("the primary is shutting down"))
        } else if self.workers.get(&id).is_some_and(|s| s.disconnect_asked) {
            // Asked to disconnect: it must not join a rotation any more.
            Err(Error::wrong_state(format!("worker {id} is disconnecting")))
        } else {
            Ok(())
        }
    }

    /// `max_listeners_per_worker`: the listeners `id` is a member of plus its listens waiting
    /// for a lookup. Joining a listener it is already in costs nothing.
    pub(super) fn within_listener_limit(&self, id: WorkerId, key: &ListenKey) -> Result<()> {
        if let Some(&lid) = self.by_addr.get(key) {
            if self.listeners[lid as usize - 1].rotation.contains(id) {
                return Ok(());
            }
        }
        let max = self.opts.max_listeners_per_worker as usize;
        let member = self
            .listeners
            .iter()
            .filter(|l| l.fd.is_some() && l.rotation.contains(id))
            .count();
        let waiting: usize = self
            .lookups
            .values()
            .map(|lk| lk.waiters.iter().filter(|(w, _)| *w == id).count())
            .sum();
        if member + waiting < max {
            return Ok(());
        }
        Err(Error::relayed(
            libc::EINVAL,
            "listen",
            format!(
                "listen {}: worker {id} holds {} listeners (max_listeners_per_worker is {max})",
                key.0,
                member + waiting
            ),
        ))
    }

    pub(super) fn listen_err(&mut self, id: WorkerId, req: u32, e: &Error) {
        let reply = ListenReply::Err {
            req,
            error: e.clone(),
        };
        self.queue_to(id, Kind::ListenErr, reply.encode(), Vec::new());
    }

    /// Answers worker `id`'s listen request `req` with listener `lid` and adds it to the
    /// listener's members.
    pub(super) fn join_listener(&mut self, id: WorkerId, req: u32, lid: u32) {
        let policy = self.opts.policy;
        // kernel-rr: the worker's own socket of the group, in its slot.
        let kernel = self.listeners[lid as usize - 1]
            .kernel
            .as_mut()
            .map(|k| k.join(id));
        let l = &self.listeners[lid as usize - 1];
        let addr = l.addr.clone();
        let round_robin = l.round_robin(policy);
        let mut load_slot = None;
        let mut load_release = LoadRelease::AtClose;
        let fds = if let Some(sock) = kernel {
            match sock {
                // A load-aware program: the socket, then the load map the worker releases
                // its connections through, and its slot (and when to release) in the answer.
                Ok(m) => match m.load {
                    Some((map, slot)) => {
                        load_slot = Some(slot);
                        load_release = m.release.unwrap_or(LoadRelease::AtClose);
                        vec![m.sock, map]
                    }
                    None => vec![m.sock],
                },
                Err(e) => {
                    let e = Error::os("listen", format!("kernel-rr socket for {addr}"), &e);
                    self.listen_err(id, req, &e);
                    self.mark_if_orphan(lid);
                    return;
                }
            }
        } else if round_robin {
            Vec::new()
        } else {
            match l.fd.as_ref().map(|fd| sys::dup_cloexec(fd.as_fd())) {
                Some(Ok(fd)) => vec![fd],
                Some(Err(e)) => {
                    let e = Error::os("dup", format!("share listener {addr}"), &e);
                    self.listen_err(id, req, &e.with_syscall("listen"));
                    self.mark_if_orphan(lid);
                    return;
                }
                None => Vec::new(),
            }
        };
        let reply = ListenReply::Ok {
            req,
            listener: lid,
            addr: addr.clone(),
            ack_every: (self.opts.window / 4).max(1),
            load_slot,
            load_release,
        };
        if !self.queue_to(id, Kind::ListenOk, reply.encode(), fds) {
            self.mark_if_orphan(lid);
            return;
        }
        if let Some(slot) = self.workers.get_mut(&id) {
            if matches!(slot.state, WorkerState::Starting | WorkerState::Online) {
                slot.state = WorkerState::Listening;
            }
        }
        // Membership in both policies (it decides when a listener closes); only round-robin
        // hands connections out.
        let fixed_slot = self.workers.get(&id).and_then(|w| w.slot);
        let l = &mut self.listeners[lid as usize - 1];
        l.rotation.add(id);
        l.least.add(id);
        if l.sticky.slot_of(id).is_none() {
            // A supervised worker takes its supervisor slot (a replacement its predecessor's,
            // so it gets that slot's clients back); others the first free slot, which after a
            // crash is the crashed worker's.
            let slot = fixed_slot.unwrap_or_else(|| l.sticky.free_slot());
            l.sticky.fill(slot, id);
        }
        l.orphaned_at = None;
        if round_robin {
            self.pump(lid);
        }
        self.events.push_back(Event::Listening {
            worker: id,
            listener: lid,
            addr,
        });
    }

    /// Starts the grace period of an open listener nobody is a member of (a new one whose
    /// worker vanished before it joined).
    pub(super) fn mark_if_orphan(&mut self, lid: u32) {
        if let Some(l) = self.listener_mut(lid) {
            if l.fd.is_some() && l.rotation.is_empty() && l.orphaned_at.is_none() {
                l.orphaned_at = Some(Instant::now());
            }
        }
    }

    pub(super) fn next_orphan_deadline(&self) -> Option<Instant> {
        let grace = self.opts.orphan_listener_grace;
        self.listeners
            .iter()
            .filter(|l| l.fd.is_some())
            .filter_map(|l| l.orphaned_at)
            .min()
            .map(|t| t + grace)
    }

    /// Closes orphaned listeners whose grace ended by `now`, or all of them (`None`). Returns
    /// how many closed.
    pub(super) fn close_orphans(&mut self, now: Option<Instant>) -> usize {
        let grace = self.opts.orphan_listener_grace;
        let due: Vec<u32> = self
            .listeners
            .iter()
            .filter(|l| l.fd.is_some() && l.rotation.is_empty())
            .filter(|l| {
                l.orphaned_at
                    .is_some_and(|t| !matches!(now, Some(now) if t + grace > now))
            })
            .map(|l| l.id)
            .collect();
        for &lid in &due {
            self.close_listener(lid);
        }
        due.len()
    }

    /// Binds; on EMFILE/ENFILE closes the orphaned listeners (fds nobody uses now) and tries
    /// once more.
    pub(super) fn bind_freeing_orphans(
        &mut self,
        bind: impl Fn() -> Result<listener::Bound>,
    ) -> Result<listener::Bound> {
        match bind() {
            Err(e)
                if (e.errno() == libc::EMFILE || e.errno() == libc::ENFILE)
                    && self.close_orphans(None) > 0 =>
            {
                bind()
            }
            r => r,
        }
    }

    /// Binds `key`'s listener (at `resolved`, a looked-up host name's address) and registers
    /// it. Under `kernel-rr`/`kernel-least` a TCP stream listener is the anchor of an
    /// eBPF-steered group ([`crate::steering`]); where that cannot be, it is a plain `rr`
    /// (`least`) listener, and why is reported once per address as [`Event::Warning`].
    pub(super) fn open_listener(
        &mut self,
        key: ListenKey,
        backlog: i32,
        opts: listener::BindOptions,
        resolved: Option<std::net::SocketAddr>,
    ) -> Result<u32> {
        use crate::steering::{self, KernelSteering};
        let (addr, kind) = (key.0.clone(), key.2);
        let mut fallback = None;
        let policy = self.opts.policy;
        let steer = policy
            .kernel_steer(self.opts.window, self.stall_timeout())
            .filter(|_| kind == SocketKind::Stream);
        // The load-aware program where it can be had; the plain round-robin one (reported
        // once, below) where only that can; primary-accept otherwise.
        let mut degraded = None;
        let group = match steer {
            Some(steer) => {
                match steering::applies_to(&addr).and_then(|()| steering::prepare_steered(steer)) {
                    Ok((g, d)) => {
                        degraded = d;
                        Some(g)
                    }
                    Err(f) => {
                        fallback = Some(f);
                        None
                    }
                }
            }
            None => None,
        };
        let grouped = group.is_some();
        let bound = self.bind_freeing_orphans(|| match resolved {
            _ if grouped => listener::bind_group_anchor(&addr, resolved, backlog, opts),
            Some(sa) => listener::bind_resolved(&addr, sa, kind, backlog, opts),
            None => listener::bind_kind(&addr, kind, backlog, opts),
        })?;
        let lid = self.add_listener(key.clone(), bound)?;
        let stall_on = self.stall_timeout().is_some();
        let l = &mut self.listeners[lid as usize - 1];
        let mut watch = false;
        if let (Some(g), Some(fd)) = (group, l.fd.as_ref()) {
            match KernelSteering::attach(g, fd.as_fd(), &l.addr, backlog) {
                Ok(mut k) => {
                    // A program with a stall time: the primary can also take back what a
                    // stalled worker's socket holds.
                    if stall_on && k.group().steer().stall_ns().is_some() {
                        k.keep_copies();
                        watch = true;
                    }
                    l.kernel = Some(k);
                }
                Err(f) => fallback = Some(f),
            }
        }
        if watch {
            self.watch_kernel_stalls();
        }
        let instead = match policy {
            Policy::KernelLeast => "least",
            _ => "rr",
        };
        let report = match (fallback, degraded) {
            (Some(f), _) => Some((
                f,
                format!("runs {instead} (the primary accepts and deals) instead"),
            )),
            // The group runs, in plain turns: no window, and no least-loaded choice.
            (None, Some(d)) if self.listeners[lid as usize - 1].kernel.is_some() => Some((
                d,
                "is dealt in plain kernel round-robin (no per-worker window, no load) instead"
                    .to_string(),
            )),
            _ => None,
        };
        if let Some((f, what)) = report {
            if self.steering_reported.insert(key) {
                let addr = &self.listeners[lid as usize - 1].addr;
                self.events.push_back(Event::Warning {
                    listener: Some(lid),
                    code: crate::event::WARNING_KERNEL_RR_FALLBACK,
                    errno: f.errno,
                    message: format!("{}: {addr} {what}: {}", policy.name(), f.reason),
                });
            }
        }
        Ok(lid)
    }

    /// Registers a newly bound listener under `key`.
    pub(super) fn add_listener(&mut self, key: ListenKey, bound: listener::Bound) -> Result<u32> {
        let lid = self.listeners.len() as u32 + 1;
        let stream = bound.addr.kind() == SocketKind::Stream;
        if self.opts.policy.primary_deals() && stream {
            self.registry
                .register(
                    &mut SourceFd(&bound.fd.as_raw_fd()),
                    token(TAG_LISTENER, lid as u64),
                    Interest::READABLE,
                )
                .map_err(io_err("epoll_ctl", "watch listener"))?;
        }
        match &bound.addr {
            BoundAddr::Unix(p) if !bound.adopted => self.unix_paths.push(p.clone()),
            _ => {}
        }
        if self.opts.policy.primary_deals()
            && self.needs_peek()
            && matches!(bound.addr, BoundAddr::Tcp(_))
            && !bound.adopted
        {
            // Connections come with their first bytes (PROXY header, request), so the primary
            // peeks at once instead of watching each one (two epoll_ctl and a wake-up). A silent
            // client is accepted about a second later and meets the peek timeout as before. Not
            // on an adopted socket: it is not ours to change. A failure only loses the shortcut.
            let _ = sys::defer_accept(bound.fd.as_fd(), 1);
        }
        self.listeners.push(ListenerSlot {
            id: lid,
            fd: Some(bound.fd),
            addr: bound.addr,
            rotation: Rotation::default(),
            sticky: StickyTable::default(),
            least: LeastLoaded::new(match self.opts.policy {
                Policy::Least(pick) => pick,
                // Where it falls back (this listener has no group), least-loaded dealing.
                Policy::KernelLeast => crate::policy::least::Pick::Least,
                _ => Default::default(),
            }),
            // Only stream listeners are accepted on (round-robin): a datagram one never is.
            ready: stream,
            pending: VecDeque::new(),
            retry_at: None,
            accepted: 0,
            accept_failing: false,
            orphaned_at: None,
            adopted: bound.adopted,
            refusals: HashMap::new(),
            kernel: None,
        });
        self.by_addr.insert(key, lid);
        Ok(lid)
    }

    /// Worker `id` waits for the lookup of `key`'s host name: joins the lookup already running
    /// for the same key (so both get the same listener), or starts one.
    pub(super) fn look_up(
        &mut self,
        key: ListenKey,
        backlog: i32,
        opts: listener::BindOptions,
        id: WorkerId,
        req: u32,
    ) {
        if let Some(lk) = self.lookups.get_mut(&key) {
            lk.waiters.push((id, req));
            return;
        }
        self.lookups.insert(
            key.clone(),
            Lookup {
                backlog,
                opts,
                waiters: vec![(id, req)],
                thread: None,
            },
        );
        self.lookup_line.push_back(key);
        self.start_lookups();
    }

    /// Starts threads for waiting lookups, up to `MAX_LOOKUP_THREADS` at once. Short-lived
    /// threads rather than one resident resolver: a hung lookup does not hold up the others,
    /// and the primary is single-threaded again (fork mode works) once lookups are done.
    pub(super) fn start_lookups(&mut self) {
        let mut running = self.lookups.values().filter(|l| l.thread.is_some()).count();
        while running < MAX_LOOKUP_THREADS {
            let Some(key) = self.lookup_line.pop_front() else {
                return;
            };
            let Some(lk) = self.lookups.get(&key) else {
                continue;
            };
            if !lk.waiters.iter().any(|(w, _)| self.has_channel(*w)) {
                // Everybody who asked is gone: nothing to look up.
                self.lookups.remove(&key);
                continue;
            }
            let (host, port) = listener::host_to_look_up(&key.0)
                .map(|(h, p)| (h.to_string(), p))
                .expect("only names are looked up");
            let spawned = self.waker().and_then(|waker| {
                let tx = self.lookup_tx.clone();
                let k = key.clone();
                std::thread::Builder::new()
                    .name("corral-lookup".into())
                    .spawn(move || {
                        let r = listener::lookup(&host, port);
                        // The primary may be gone: then nobody waits for the answer.
                        if tx.send((k, r)).is_ok() {
                            let _ = waker.wake();
                        }
                    })
                    .map_err(|e| {
                        Error::os("getaddrinfo", format!("start the lookup of {}", key.0), &e)
                    })
            });
            match spawned {
                Ok(t) => {
                    self.lookups.get_mut(&key).expect("present").thread = Some(t);
                    running += 1;
                }
                Err(e) => {
                    let lk = self.lookups.remove(&key).expect("present");
                    for (w, req) in lk.waiters {
                        self.listen_err(w, req, &e);
                    }
                }
            }
        }
    }

    /// Answers the workers whose lookups ended: binds the listener (once per key) and has them
    /// join it, or relays the resolver's error. Workers that left meanwhile are skipped.
    pub(super) fn finish_lookups(&mut self) {
        while let Ok((key, result)) = self.lookup_rx.try_recv() {
            let Some(lk) = self.lookups.remove(&key) else {
                continue;
            };
            if let Some(t) = lk.thread {
                // It has sent its answer: it is ending.
                let _ = t.join();
            }
            self.start_lookups();
            let mut waiters = Vec::new();
            for (w, req) in lk.waiters {
                if !self.has_channel(w) {
                    continue;
                }
                match self.may_listen(w) {
                    Ok(()) => waiters.push((w, req)),
                    Err(e) => self.listen_err(w, req, &e),
                }
            }
            if waiters.is_empty() {
                continue;
            }
            let (backlog, opts) = (lk.backlog, lk.opts);
            let lid = result.and_then(|sa| self.open_listener(key, backlog, opts, Some(sa)));
            for (w, req) in waiters {
                match &lid {
                    Ok(lid) => self.join_listener(w, req, *lid),
                    Err(e) => self.listen_err(w, req, e),
                }
            }
        }
    }

    /// Takes a worker out of every listener. When it leaves gracefully (disconnect, goodbye,
    /// unlisten) and was a listener's last worker, the listener closes, as node:cluster's does:
    /// the application is going away, so new clients are refused instead of queued. After a
    /// crash the listener stays open and clients wait in the backlog for the replacement, for
    /// `orphan_listener_grace` at most. Returns the listeners to close once the caller is done
    /// with the worker.
    pub(super) fn leave_listeners(&mut self, id: WorkerId, graceful: bool) -> Vec<u32> {
        let mut emptied = Vec::new();
        let now = Instant::now();
        for l in &mut self.listeners {
            if l.remove_worker(id) && l.rotation.is_empty() {
                if graceful {
                    emptied.push(l.id);
                } else if l.fd.is_some() {
                    l.orphaned_at = Some(now);
                }
            }
        }
        emptied
    }

    /// Closes a listener: no more accepting; connections not yet handed out are reset; a later
    /// listen on the same address binds anew (a new port where 0 is asked).
    pub(super) fn close_listener(&mut self, lid: u32) {
        let Some(l) = self.listener_mut(lid) else {
            return;
        };
        let fd = l.fd.take();
        l.pending.clear();
        l.ready = false;
        l.orphaned_at = None;
        let addr = l.addr.clone();
        let adopted = l.adopted;
        if let Some(fd) = fd {
            let _ = self.registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        self.by_addr.retain(|_, v| *v != lid);
        match addr {
            BoundAddr::Unix(p) if !adopted => {
                let _ = std::fs::remove_file(&p);
                self.unix_paths.retain(|x| *x != p);
            }
            _ => {}
        }
    }
}
