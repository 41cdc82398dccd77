//! The `kernel-rr` policy's state for one listening address: the primary's *anchor* socket,
//! the eBPF group that deals SYNs over the workers' sockets ([`sys::ReuseportGroup`]), and
//! which worker holds which slot.
//!
//! The primary binds the anchor ([`crate::listener::bind_group_anchor`]: `SO_REUSEPORT`, port
//! 0 resolved once) and attaches the program through it. For each worker that listens on the
//! address it binds one more socket to the anchor's resolved address (it joins the group),
//! puts it in a free slot and sends it to the worker, which accepts on it as in `shared` mode.
//! With a stall time the engine keeps a copy ([`KernelSteering::keep_copies`]) and closes it
//! when the worker leaves; otherwise (`corral run`) it keeps none. Either way the socket closes
//! once its worker is gone and the kernel hands its queued connections to the live slots
//! through the program (none is reset). On the worker's exit or unlisten its slot is cleared
//! as well (a copy leaked into a grandchild would otherwise keep it dealt to). With no slot filled, SYNs land on the anchor: the primary accepts those and
//! deals them with the `rr` dealer (window, recovery), so a client waits for a worker instead
//! of being refused.
//!
//! A load-aware group ([`prepare_steered`]: [`Steer::Window`], [`Steer::Least`]) also hands
//! each member the group's `load` map and its slot ([`Member::load`]); the worker releases
//! its slot once per connection, when it takes it (`kernel-rr`: the window bounds what is
//! queued at a worker) or when it closes it (`kernel-least`: open connections)
//! ([`Member::release`]), so a worker at its window is skipped (or the least-loaded one is
//! picked). A slot's count restarts at 0 when it changes hands.
//! `kernel-rr` runs [`Steer::Window`] (today's `rr` window), `kernel-least` [`Steer::Least`];
//! connections the primary deals from the anchor count in the same slots
//! ([`KernelSteering::count_dealt`]), so the worker releases every one the same way.
//!
//! Where the program cannot be had ([`prepare`] fails: no `CAP_BPF`, seccomp, old kernel) or
//! the address is not TCP, the listener runs primary-accept `rr` and the reason is reported
//! once ([`Fallback`]). The kernel path has `rr`'s window and, with a stall time, stops
//! dealing to a worker whose loop is blocked ([`Steer::Window`]); the engine then also parks
//! that worker's slot and accepts what its socket already queued from its copy
//! ([`KernelSteering::park`]), as `rr` reads a stalled worker's unread connections back, and
//! puts it back when the worker reads again ([`KernelSteering::unpark`]).

use crate::event::WorkerId;
use crate::listener::{BoundAddr, ListenAddr};
use crate::sys::{self, KernelSteeringUnsupported, ReuseportGroup};
/// The program a group runs and a worker's view of the load counters (the OS layer's types,
/// named here because [`prepare_steered`] and [`Member`] hand them out).
pub use crate::sys::{LoadMap, LoadRelease, Steer};
use socket2::{Domain, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Worker sockets one address can have in its group at once (a worker past it gets an
/// EINVAL listen error naming this limit).
pub const MAX_SLOTS: u32 = 1024;

/// Why an address runs `rr` instead of `kernel-rr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The errno of the step that failed (0: not applicable to this address).
    pub errno: i32,
    /// What failed and what to grant.
    pub reason: String,
}

impl From<KernelSteeringUnsupported> for Fallback {
    fn from(u: KernelSteeringUnsupported) -> Fallback {
        Fallback {
            errno: u.errno,
            reason: u.reason,
        }
    }
}

/// Whether `addr` can have a group at all: TCP only (Unix sockets have no `SO_REUSEPORT`
/// group; an adopted `fd:N` was bound by someone else, without it).
pub fn applies_to(addr: &ListenAddr) -> Result<(), Fallback> {
    match addr {
        ListenAddr::Tcp { .. } => Ok(()),
        other => Err(Fallback {
            errno: 0,
            reason: format!(
                "{other}: kernel steering needs a TCP address the primary binds itself \
                 (Unix sockets and adopted fds have no SO_REUSEPORT group)"
            ),
        }),
    }
}

/// The maps and program for one address, made before anything is bound (so that a refusal
/// leaves a plain `rr` listener, without `SO_REUSEPORT`). [`sys::kernel_steering_probe`]
/// answers once per process; the group is created anew per address.
pub fn prepare() -> Result<ReuseportGroup, Fallback> {
    sys::kernel_steering_probe()?;
    Ok(ReuseportGroup::new(MAX_SLOTS)?)
}

/// As [`prepare`], with a load-aware program ([`Steer::Window`], [`Steer::Least`]): its
/// workers must release each connection they accepted ([`Member::load`]). Where that program
/// cannot be had (Linux < 5.12, a refused map) the plain round-robin one, and why (to report
/// once, as a fallback is).
pub fn prepare_steered(steer: Steer) -> Result<(ReuseportGroup, Option<Fallback>), Fallback> {
    sys::kernel_steering_probe()?;
    let (g, degraded) = ReuseportGroup::with_steer_or_plain(MAX_SLOTS, steer)?;
    Ok((g, degraded.map(Fallback::from)))
}

/// What a worker gets when it joins a group: its socket and, with a load-aware program, the
/// `load` array and its slot in it.
#[derive(Debug)]
pub struct Member {
    /// The worker's listening socket (the primary keeps a copy only after
    /// [`KernelSteering::keep_copies`]).
    pub sock: OwnedFd,
    /// A copy of the `load` map's fd and the worker's slot: the worker maps it
    /// ([`sys::LoadMap::map`] with [`MAX_SLOTS`]) and, for each connection, calls
    /// [`sys::LoadMap::took`] on its slot when it takes it (the stall clock) and
    /// [`sys::LoadMap::release`] once, at the moment `release` says (at accept or at close).
    /// `None` under round-robin.
    pub load: Option<(OwnedFd, u32)>,
    /// When the worker releases ([`Steer::release`]): at accept for `kernel-rr`'s window, at
    /// close for `kernel-least`. `None` under round-robin.
    pub release: Option<LoadRelease>,
}

/// One address's group and slots.
#[derive(Debug)]
pub struct KernelSteering {
    group: ReuseportGroup,
    /// The anchor's address (the resolved port).
    addr: SocketAddr,
    /// The anchor's `IPV6_V6ONLY`: every member must match it.
    v6only: bool,
    backlog: i32,
    /// Slot `i` belongs to `slots[i]`.
    slots: Vec<Option<WorkerId>>,
    /// No slot has been filled since the anchor was set (or since the last one was cleared):
    /// SYNs may be queued on the anchor ([`KernelSteering::fresh_anchor`]).
    anchor_dealt_to: bool,
    /// [`KernelSteering::keep_copies`]: the primary's copy of slot `i`'s socket, to take back
    /// what a stalled worker has queued ([`KernelSteering::park`]).
    copies: Option<Vec<Option<OwnedFd>>>,
    /// Slot `i` is out of the program's choice while its worker is stalled (its socket stays
    /// open in the worker and in `copies`); its count goes on beneath the parked mark
    /// ([`crate::sys::LoadMap::mark_parked`]).
    parked: Vec<bool>,
}

impl KernelSteering {
    /// Attaches `group`'s program through `anchor` (bound by
    /// [`crate::listener::bind_group_anchor`]) and puts the anchor in its slot.
    pub fn attach(
        group: ReuseportGroup,
        anchor: BorrowedFd<'_>,
        bound: &BoundAddr,
        backlog: i32,
    ) -> Result<KernelSteering, Fallback> {
        let BoundAddr::Tcp(addr) = bound else {
            return Err(Fallback {
                errno: 0,
                reason: format!("{bound}: not a TCP listener"),
            });
        };
        let failed = |step: &str, e: std::io::Error| Fallback {
            errno: e.raw_os_error().unwrap_or(0),
            reason: format!("{step} on {bound}: {e}"),
        };
        let sock = socket2::SockRef::from(&anchor);
        let v6only = addr.is_ipv6()
            && sock
                .only_v6()
                .map_err(|e| failed("getsockopt(IPV6_V6ONLY)", e))?;
        group
            .attach(anchor)
            .map_err(|e| failed("setsockopt(SO_ATTACH_REUSEPORT_EBPF)", e))?;
        group
            .set_anchor(anchor)
            .map_err(|e| failed("bpf(BPF_MAP_UPDATE_ELEM, anchor)", e))?;
        group
            .set_slot_count(0)
            .map_err(|e| failed("bpf(BPF_MAP_UPDATE_ELEM, nslots)", e))?;
        Ok(KernelSteering {
            addr: *addr,
            v6only,
            backlog,
            slots: vec![None; group.max_slots() as usize],
            parked: vec![false; group.max_slots() as usize],
            group,
            anchor_dealt_to: true,
            copies: None,
        })
    }

    /// From now on the owner keeps a copy of each member socket, to accept from a stalled
    /// worker's queue itself ([`KernelSteering::park`]). The copy is closed when the worker
    /// leaves ([`KernelSteering::leave`]), so a dead worker's queue still migrates, only as
    /// late as the owner sees the exit. `corral run` keeps none: nobody would accept on them,
    /// and a program that closes its listener to drain must leave the group at once.
    pub fn keep_copies(&mut self) {
        if self.copies.is_none() {
            self.copies = Some((0..self.slots.len()).map(|_| None).collect());
        }
    }

    /// The slot `worker` holds.
    pub fn slot_of(&self, worker: WorkerId) -> Option<u32> {
        self.slots
            .iter()
            .position(|s| *s == Some(worker))
            .map(|i| i as u32)
    }

    /// Workers holding a slot.
    pub fn filled(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// A new socket of the group for `worker`, in the lowest free slot with its load count
    /// at 0, or in its own slot if it has one: a second listen on the same address replaces
    /// its socket there and keeps its count, which still holds what this worker has to
    /// release (its open connections under `kernel-least`; under `kernel-rr` those queued on
    /// its old socket, which the worker takes before closing it: see `Worker::listen`).
    /// The caller sends it (and the load map) to the worker and drops it.
    pub fn join(&mut self, worker: WorkerId) -> std::io::Result<Member> {
        let own = self.slot_of(worker);
        let slot = match own {
            Some(s) => s,
            None => self.slots.iter().position(Option::is_none).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "kernel-rr: {} already has {MAX_SLOTS} workers (MAX_SLOTS)",
                        self.addr
                    ),
                )
            })? as u32,
        };
        let sock = self.member()?;
        let load = match self.group.load_map_fd() {
            Some(fd) => Some((sys::dup_cloexec(fd)?, slot)),
            None => None,
        };
        let copy = match self.copies {
            Some(_) => Some(sys::dup_cloexec(sock.as_fd())?),
            None => None,
        };
        if own.is_some() {
            self.group.replace_slot(slot, sock.as_fd())?;
            // A parked worker that listens again is back, with its count: what waits on its
            // old socket is taken back from the copy until it closes here, or taken by the
            // worker, and either releases it.
            if std::mem::take(&mut self.parked[slot as usize]) {
                self.unmark(slot);
            }
        } else {
            self.group.set_slot(slot, sock.as_fd())?;
        }
        self.slots[slot as usize] = Some(worker);
        if let Some(copies) = self.copies.as_mut() {
            copies[slot as usize] = copy;
        }
        self.update_count()?;
        let release = load.as_ref().and(self.group.steer().release());
        Ok(Member {
            sock,
            load,
            release,
        })
    }

    /// Clears `worker`'s slot (its socket's queue, if it is closed with one, goes to the
    /// others through the program). Returns whether it had one.
    pub fn leave(&mut self, worker: WorkerId) -> bool {
        let Some(slot) = self.slot_of(worker) else {
            return false;
        };
        self.slots[slot as usize] = None;
        self.parked[slot as usize] = false;
        // Its socket closes here if the worker closed it (or died): its queue migrates.
        if let Some(copies) = self.copies.as_mut() {
            copies[slot as usize] = None;
        }
        // Both only fail for a bad map fd or slot number, which cannot be: nothing to do
        // about them but carry on (an empty slot is skipped anyway).
        let _ = self.group.clear_slot(slot);
        let _ = self.update_count();
        if self.filled() == 0 {
            self.anchor_dealt_to = true;
        }
        true
    }

    /// For an owner that never accepts on the anchor (`corral run`, whose workers know
    /// nothing of corral): once a slot is filled again after a period with none, a new
    /// anchor, already set in the group. The caller closes the old one in its place: the
    /// kernel migrates the connections queued on it through the program
    /// (`SELECT_OR_MIGRATE`) to the filled slots, so the clients that arrived while no worker
    /// held a slot are served. `None` when there is nothing to replace (no slot filled, or
    /// none was empty since the last replacement). The engine's own `kernel-rr` accepts on
    /// its anchor and does not call this.
    pub fn fresh_anchor(&mut self) -> Option<std::io::Result<OwnedFd>> {
        if !self.anchor_dealt_to || self.filled() == 0 {
            return None;
        }
        // Once per empty period, failed or not (a caller reports a failure once).
        self.anchor_dealt_to = false;
        Some(self.member().and_then(|sock| {
            self.group.set_anchor(sock.as_fd())?;
            Ok(sock)
        }))
    }

    /// A connection the primary dealt from the anchor to `worker` counts in its slot's load,
    /// as one the program chose: the worker releases every connection of the listener the
    /// same way. Nothing for round-robin or a worker without a slot.
    pub fn count_dealt(&self, worker: WorkerId) {
        if let (Some(m), Some(slot)) = (self.group.load_map(), self.slot_of(worker)) {
            if self.group.steer().release() == Some(LoadRelease::AtClose) {
                m.acquire_queued(slot);
            } else {
                m.acquire(slot);
            }
        }
    }

    /// Whether `worker`'s slot is at the program's window (stopped or hung, or busy): the
    /// primary does not deal it what lands on the anchor either. False for round-robin.
    pub fn at_window(&self, worker: WorkerId) -> bool {
        match (
            self.group.steer().window(),
            self.group.load_map(),
            self.slot_of(worker),
        ) {
            (Some(w), Some(m), Some(slot)) => m.get(slot) >= w,
            _ => false,
        }
    }

    /// `worker` handed a connection back (refused it). At close ([`LoadRelease::AtClose`]) it
    /// will not release it, so its count goes down here; at accept it already did, on taking
    /// it, and nothing is left to give back.
    pub fn uncount_refused(&self, worker: WorkerId) {
        if self.group.steer().release() == Some(LoadRelease::AtClose) {
            if let (Some(m), Some(slot)) = (self.group.load_map(), self.slot_of(worker)) {
                m.release(slot);
            }
        }
    }

    /// A connection dealt to `worker` was taken back before it read it: it will never take
    /// it nor release it, so it is uncounted here (beneath the mark of a parked slot).
    pub fn uncount(&self, worker: WorkerId) {
        if let (Some(m), Some(slot)) = (self.group.load_map(), self.slot_of(worker)) {
            m.take_back(slot);
        }
    }

    /// Connections assigned to `slot` that its worker has not taken yet, and how long ago it
    /// last took one (or they rose from 0): what the program's stall check reads. `None`
    /// without a load map.
    fn waiting(&self, slot: u32) -> Option<(u32, std::time::Duration)> {
        let m = self.group.load_map()?;
        let n = match self.group.steer().release()? {
            LoadRelease::AtClose => m.waiting(slot),
            LoadRelease::AtAccept => m.get(slot),
        };
        Some((n, m.idle_for(slot)))
    }

    /// Workers whose slot holds connections they have not taken for `at_least` (the
    /// program passes them over from its stall time on), with how long; parked ones
    /// excluded. Empty unless [`KernelSteering::keep_copies`] was called.
    pub fn stalled(&self, at_least: std::time::Duration) -> Vec<(WorkerId, std::time::Duration)> {
        let Some(copies) = self.copies.as_ref() else {
            return Vec::new();
        };
        self.slots[..self.span()]
            .iter()
            .enumerate()
            .filter(|&(i, _)| !self.parked[i] && copies[i].is_some())
            .filter_map(|(i, w)| {
                let (n, idle) = self.waiting(i as u32)?;
                let w = (*w)?;
                (n > 0 && n != sys::LOAD_EMPTY && idle >= at_least).then_some((w, idle))
            })
            .collect()
    }

    /// Whether nothing waits at any worker's slot to be taken (what [`Self::stalled`] reads;
    /// a parked slot counts as waiting: the owner drains it), with the program's tickets so
    /// far: the same tickets at two looks with nothing waiting at either means no connection
    /// came in between. `None` when the owner cannot tell (no load map, no copies, the ticket
    /// count unreadable): then it keeps looking.
    pub fn quiet(&self) -> Option<(bool, u64)> {
        let copies = self.copies.as_ref()?;
        let mut quiet = true;
        let span = self.span();
        let slots = self.slots[..span].iter().zip(&self.parked).zip(copies);
        for (i, ((worker, &parked), copy)) in slots.enumerate() {
            if parked {
                quiet = false;
            } else if copy.is_some() && worker.is_some() {
                let (n, _) = self.waiting(i as u32)?;
                quiet &= n == 0 || n == sys::LOAD_EMPTY;
            }
        }
        Some((quiet, self.group.tickets().ok()?))
    }

    /// New descriptions of the owner's copies of the members' sockets (`dup`), for a poller
    /// to tell when one has a connection queued (readable): the first connection after a
    /// quiet spell, when nothing else would wake the owner. Dups, so that the poller's
    /// registrations are the caller's to remove, whatever becomes of the copies meanwhile.
    pub fn watch_copies(&self) -> std::io::Result<Vec<OwnedFd>> {
        self.copies
            .iter()
            .flatten()
            .flatten()
            .map(|c| c.try_clone())
            .collect()
    }

    /// Whether [`KernelSteering::keep_copies`] was called.
    pub fn keeps_copies(&self) -> bool {
        self.copies.is_some()
    }

    /// Takes `worker`'s slot out of the program's choice (its worker is stalled): the
    /// program deals its turns to the others, and the owner accepts what its socket has
    /// queued from the copy ([`KernelSteering::parked_copy`], while it stays parked: a SYN
    /// the program had already assigned completes a moment later). Its count goes on beneath
    /// the parked mark: what the owner takes back ([`KernelSteering::uncount`]), what the
    /// worker still takes, closes or refuses meanwhile, each moves it as before, so it is
    /// exact when the worker is back. False without a copy or a slot, or when already parked.
    pub fn park(&mut self, worker: WorkerId) -> bool {
        let Some(slot) = self.slot_of(worker).map(|s| s as usize) else {
            return false;
        };
        let has_copy = self.copies.as_ref().is_some_and(|c| c[slot].is_some());
        if self.parked[slot] || !has_copy {
            return false;
        }
        // Marked before the socket goes: the program passes over it from here on.
        if let Some(m) = self.group.load_map() {
            m.mark_parked(slot as u32);
        }
        // Only fails for a bad map fd or slot number, which cannot be.
        let _ = self.group.remove_sock(slot as u32);
        self.parked[slot] = true;
        true
    }

    /// The copy of a parked worker's socket, to accept what still lands there.
    pub fn parked_copy(&self, worker: WorkerId) -> Option<BorrowedFd<'_>> {
        let slot = self.slot_of(worker)? as usize;
        if !self.parked[slot] {
            return None;
        }
        Some(self.copies.as_ref()?[slot].as_ref()?.as_fd())
    }

    /// Workers whose slot is parked.
    pub fn parked_workers(&self) -> Vec<WorkerId> {
        (0..self.span())
            .filter(|&i| self.parked[i])
            .filter_map(|i| self.slots[i])
            .collect()
    }

    /// `worker` takes connections again: its socket goes back in its slot, then its count
    /// (what was counted beneath the parked mark, less what never reached its queue) is
    /// chosen again. Returns whether it was parked.
    pub fn unpark(&mut self, worker: WorkerId) -> std::io::Result<bool> {
        let Some(slot) = self.slot_of(worker) else {
            return Ok(false);
        };
        if !self.parked[slot as usize] {
            return Ok(false);
        }
        let Some(copy) = self.copies.as_ref().and_then(|c| c[slot as usize].as_ref()) else {
            return Ok(false);
        };
        self.group.replace_slot(slot, copy.as_fd())?;
        self.unmark(slot);
        self.parked[slot as usize] = false;
        Ok(true)
    }

    /// A parked slot's count is chosen again ([`crate::sys::LoadMap::unmark_parked`]).
    fn unmark(&self, slot: u32) {
        if let (Some(m), Some(release)) = (self.group.load_map(), self.group.steer().release()) {
            m.unmark_parked(slot, release);
        }
    }

    /// The program deals over slots `0..=highest filled`; holes below it are skipped.
    fn update_count(&self) -> std::io::Result<()> {
        self.group.set_slot_count(self.span() as u32)
    }

    /// Slots up to the highest filled one (the stall check looks at no more).
    fn span(&self) -> usize {
        self.slots
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1)
    }

    /// A listening socket bound like the anchor, in its group.
    fn member(&self) -> std::io::Result<OwnedFd> {
        let sock = Socket::new(Domain::for_address(self.addr), Type::STREAM, None)?;
        sock.set_reuse_address(true)?;
        if self.addr.is_ipv6() {
            sock.set_only_v6(self.v6only)?;
        }
        sock.set_reuse_port(true)?;
        sock.bind(&self.addr.into())?;
        sock.listen(self.backlog)?;
        sock.set_nonblocking(true)?;
        Ok(OwnedFd::from(sock))
    }

    /// The group (tests read its ticket counter).
    pub fn group(&self) -> &ReuseportGroup {
        &self.group
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::{bind_group_anchor, BindOptions};
    use std::net::TcpStream;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn only_tcp_addresses_get_a_group() {
        assert!(applies_to(&"127.0.0.1:0".parse().unwrap()).is_ok());
        let e = applies_to(&"unix:/tmp/x.sock".parse().unwrap()).unwrap_err();
        assert!(e.reason.contains("Unix sockets"), "{}", e.reason);
        assert_eq!(e.errno, 0);
        assert!(applies_to(&"fd:3".parse().unwrap()).is_err());
    }

    #[test]
    fn an_unprivileged_process_is_told_what_to_grant() {
        if root() {
            return; // as root see the tests below; the fallback is run as uid 65534 by tests/
        }
        let e = prepare().unwrap_err();
        assert_eq!(e.errno, libc::EPERM);
        assert!(e.reason.contains("setcap cap_bpf+ep"), "{}", e.reason);
    }

    fn accept_all(fd: &impl AsFd) -> usize {
        let mut n = 0;
        while let Ok(Some(_)) = sys::accept_cloexec(fd.as_fd(), false) {
            n += 1;
        }
        n
    }

    fn steered(addr: &str) -> Option<(KernelSteering, crate::listener::Bound, SocketAddr)> {
        steered_with(addr, Steer::RoundRobin)
    }

    fn steered_with(
        addr: &str,
        steer: Steer,
    ) -> Option<(KernelSteering, crate::listener::Bound, SocketAddr)> {
        if !root() {
            return None;
        }
        let (group, degraded) =
            prepare_steered(steer).unwrap_or_else(|e| panic!("as root: {}", e.reason));
        assert_eq!(degraded, None);
        let a: ListenAddr = addr.parse().unwrap();
        let anchor = bind_group_anchor(&a, None, 511, BindOptions::default()).unwrap();
        let k = KernelSteering::attach(group, anchor.fd.as_fd(), &anchor.addr, 511).unwrap();
        let BoundAddr::Tcp(sa) = anchor.addr else {
            unreachable!()
        };
        assert_ne!(sa.port(), 0, "port 0 resolved once, by the anchor");
        Some((k, anchor, sa))
    }

    /// Slots: lowest free first, a leaver's slot is reused, the program deals only over the
    /// filled ones, and with none filled the anchor takes the SYNs.
    #[test]
    fn slots_are_filled_lowest_first_and_connections_follow_them() {
        let Some((mut k, anchor, sa)) = steered("127.0.0.1:0") else {
            return;
        };
        let w: Vec<OwnedFd> = (1..=3).map(|id| k.join(id).unwrap().sock).collect();
        assert_eq!(
            (k.slot_of(1), k.slot_of(2), k.slot_of(3)),
            (Some(0), Some(1), Some(2))
        );
        let _c: Vec<TcpStream> = (0..30).map(|_| TcpStream::connect(sa).unwrap()).collect();
        let counts: Vec<usize> = w.iter().map(accept_all).collect();
        assert_eq!(counts, [10, 10, 10]);
        assert_eq!(accept_all(&anchor.fd), 0);
        // Worker 2 leaves; worker 4 takes its slot back.
        assert!(k.leave(2));
        assert!(!k.leave(2), "twice is a no-op");
        let w4 = k.join(4).unwrap().sock;
        assert_eq!(k.slot_of(4), Some(1));
        let _d: Vec<TcpStream> = (0..30).map(|_| TcpStream::connect(sa).unwrap()).collect();
        assert_eq!(
            [accept_all(&w[0]), accept_all(&w4), accept_all(&w[2])],
            [10, 10, 10]
        );
        assert_eq!(accept_all(&w[1]), 0, "a cleared slot is dealt nothing");
        // Everybody leaves: the anchor parks the clients.
        for id in [1, 3, 4] {
            k.leave(id);
        }
        assert_eq!(k.filled(), 0);
        let _e: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(sa).unwrap()).collect();
        assert_eq!(accept_all(&anchor.fd), 5);
    }

    /// Clients parked on the anchor while no slot was filled reach the worker that fills one
    /// once the anchor is replaced and the old one closed (migrated, not reset).
    #[test]
    fn a_replaced_anchor_hands_its_queue_to_the_filled_slots() {
        let Some((mut k, anchor, sa)) = steered("127.0.0.1:0") else {
            return;
        };
        assert!(k.fresh_anchor().is_none(), "no slot filled yet");
        let _c: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(sa).unwrap()).collect();
        let w = k.join(1).unwrap().sock;
        let new = k
            .fresh_anchor()
            .expect("first slot after an empty period")
            .unwrap();
        assert!(k.fresh_anchor().is_none(), "once per empty period");
        drop(anchor);
        assert_eq!(accept_all(&w), 4, "the old anchor's queue migrated");
        let _d: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(sa).unwrap()).collect();
        assert_eq!(accept_all(&w), 2);
        // Empty again: the new anchor parks them, the next replacement hands them on.
        k.leave(1);
        let _e: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(sa).unwrap()).collect();
        let w2 = k.join(2).unwrap().sock;
        let newer = k.fresh_anchor().expect("empty again").unwrap();
        drop(new);
        assert_eq!(accept_all(&w2), 3);
        assert_eq!(accept_all(&newer), 0);
    }

    #[test]
    fn ipv6_members_join_the_anchors_group() {
        let Some((mut k, anchor, sa)) = steered("[::1]:0") else {
            return;
        };
        let w: Vec<OwnedFd> = (1..=2).map(|id| k.join(id).unwrap().sock).collect();
        let _c: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(sa).unwrap()).collect();
        assert_eq!(w.iter().map(accept_all).collect::<Vec<_>>(), [10, 10]);
        assert_eq!(accept_all(&anchor.fd), 0);
        assert_eq!(k.group().tickets().unwrap(), 20);
    }

    /// Under a load-aware program each member gets a copy of the load map and its slot; the
    /// worker's releases show in the group's counts, a slot that changes hands starts again at
    /// 0 whatever was left in it, and a cleared slot is marked empty (never picked).
    #[test]
    fn members_get_the_load_map_and_a_new_worker_starts_at_zero() {
        let Some((mut k, anchor, sa)) = steered_with("127.0.0.1:0", Steer::window_of(2)) else {
            return;
        };
        let m1 = k.join(1).unwrap();
        let m2 = k.join(2).unwrap();
        let (fd1, slot1) = m1.load.as_ref().expect("a load map");
        assert_eq!((*slot1, m2.load.as_ref().unwrap().1), (0, 1));
        let worker_view = sys::LoadMap::map(fd1.as_fd(), MAX_SLOTS).unwrap();
        let _c: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(sa).unwrap()).collect();
        assert_eq!([accept_all(&m1.sock), accept_all(&m2.sock)], [2, 2]);
        assert_eq!(accept_all(&anchor.fd), 2, "both at the window of 2");
        assert_eq!(worker_view.release(0), 1);
        let _d = TcpStream::connect(sa).unwrap();
        assert_eq!([accept_all(&m1.sock), accept_all(&m2.sock)], [1, 0]);
        // Worker 2 leaves with 2 in flight; worker 3 takes its slot with none.
        assert!(k.leave(2));
        assert_eq!(k.group().load(1), Some(sys::LOAD_EMPTY));
        let m3 = k.join(3).unwrap();
        assert_eq!(m3.load.as_ref().unwrap().1, 1);
        assert_eq!(k.group().load(1), Some(0));
        let _e: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(sa).unwrap()).collect();
        assert_eq!([accept_all(&m1.sock), accept_all(&m3.sock)], [0, 2]);
        assert_eq!(accept_all(&anchor.fd), 0);
        // Round-robin members get no map.
        let (mut rr, _a, _) = steered("127.0.0.1:0").unwrap();
        assert!(rr.join(1).unwrap().load.is_none());
    }

    /// With copies kept: a parked slot is dealt nothing (its turns go to the others), what
    /// its socket queued before is accepted from the copy (and uncounted, as the dealer
    /// does), and unparked it is dealt again from a count of 0. The copy is closed on `leave`: what the worker's socket still held then
    /// migrates to the others (the worker's own fd is gone too, as after its death).
    #[test]
    fn a_parked_slot_is_skipped_its_queue_taken_from_the_copy_and_it_comes_back() {
        let Some((mut k, anchor, sa)) = steered_with("127.0.0.1:0", Steer::window_of(64)) else {
            return;
        };
        k.keep_copies();
        let m1 = k.join(1).unwrap();
        let m2 = k.join(2).unwrap();
        let _c: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(sa).unwrap()).collect();
        assert_eq!(k.group().load(0), Some(2));
        assert!(k.park(1), "a copy and a slot");
        assert_eq!(
            k.group().load(0),
            Some(sys::LOAD_EMPTY | 2),
            "counted beneath"
        );
        assert_eq!(
            accept_all(&k.parked_copy(1).unwrap()),
            2,
            "worker 1's queue, from the primary's copy"
        );
        k.uncount(1);
        k.uncount(1);
        assert!(!k.park(1), "parked once");
        assert_eq!(k.parked_workers(), [1]);
        let _d: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(sa).unwrap()).collect();
        assert_eq!(
            [accept_all(&m1.sock), accept_all(&m2.sock)],
            [0, 6],
            "a parked slot is dealt nothing"
        );
        assert_eq!(accept_all(&anchor.fd), 0);
        assert!(k.unpark(1).unwrap());
        assert!(!k.unpark(1).unwrap(), "once");
        assert_eq!(k.group().load(0), Some(0));
        let _e: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(sa).unwrap()).collect();
        assert_eq!([accept_all(&m1.sock), accept_all(&m2.sock)], [2, 2]);
        // Worker 2 holds 2 and goes (its fd closed): the primary's copy closes on leave.
        let _f: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(sa).unwrap()).collect();
        drop(m2);
        assert!(k.leave(2));
        assert_eq!(
            accept_all(&m1.sock),
            4,
            "its queue migrated once the copy closed"
        );
    }

    /// `kernel-least` parked: its count goes on beneath the mark through whatever races
    /// with the park (the worker still taking from its socket, closing, refusing one dealt
    /// from the anchor), so it comes back holding exactly its open connections, less a SYN
    /// counted that never reached its queue; a listen again while parked keeps that count
    /// too.
    #[test]
    fn a_parked_least_slot_comes_back_with_exactly_its_open_connections() {
        let Some((mut k, _anchor, sa)) = steered_with(
            "127.0.0.1:0",
            // The waiting counts are kept only with a stall time; the program's own skip is
            // not reached.
            Steer::Least {
                window: 64,
                stall_ms: 60_000,
            },
        ) else {
            return;
        };
        k.keep_copies();
        let m1 = k.join(1).unwrap();
        let m2 = k.join(2).unwrap();
        let (fd, slot) = m1.load.as_ref().expect("a load map");
        assert_eq!(*slot, 0);
        let w1 = sys::LoadMap::map(fd.as_fd(), MAX_SLOTS).unwrap();
        let _c: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(sa).unwrap()).collect();
        let take = |sock: &OwnedFd| {
            let fd = sys::accept_cloexec(sock.as_fd(), false)
                .unwrap()
                .expect("queued");
            w1.took(0);
            fd
        };
        // Worker 1 takes one of its two (open); the other still waits when it is parked.
        let open = take(&m1.sock);
        assert_eq!((w1.get(0), w1.waiting(0)), (2, 1));
        assert!(k.park(1));
        // Races with the park: the worker takes the one waiting and closes it; one the
        // primary dealt it from the anchor just before is taken and refused.
        drop(take(&m1.sock));
        w1.release(0);
        k.count_dealt(1);
        w1.took(0);
        k.uncount_refused(1);
        // A SYN the program counted that never reached the queue (the client gave up).
        w1.acquire_queued(0);
        // Meanwhile the others are dealt everything.
        let _d: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(sa).unwrap()).collect();
        assert_eq!([accept_all(&m1.sock), accept_all(&m2.sock)], [0, 5]);
        assert!(k.unpark(1).unwrap());
        assert_eq!(
            (w1.get(0), w1.waiting(0)),
            (1, 0),
            "its one open connection"
        );
        // Parked again, it listens again: back, with the same count.
        assert!(k.park(1));
        let again = k.join(1).unwrap();
        assert_eq!(k.parked_workers(), Vec::<WorkerId>::new());
        assert_eq!(w1.get(0), 1);
        drop(open);
        assert_eq!(w1.release(0), 0);
        drop(again);
    }

    /// `stalled` names a slot with connections not taken for the given time, and nothing
    /// without copies (`corral run`, or a member that joined before copies were kept).
    #[test]
    fn stalled_names_a_slot_whose_connections_wait() {
        let Some((mut k, _anchor, sa)) = steered_with(
            "127.0.0.1:0",
            // The clock runs only with a stall time; the program's own skip is not reached.
            Steer::Window {
                window: 64,
                stall_ms: 60_000,
            },
        ) else {
            return;
        };
        let m1 = k.join(1).unwrap();
        let _c = TcpStream::connect(sa).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(k.stalled(std::time::Duration::ZERO).is_empty(), "no copies");
        k.keep_copies();
        assert!(
            k.stalled(std::time::Duration::ZERO).is_empty(),
            "worker 1 has no copy"
        );
        let m2 = k.join(2).unwrap();
        // In turn: one each.
        let _d: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(sa).unwrap()).collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let s = k.stalled(std::time::Duration::from_millis(10));
        assert_eq!(s.iter().map(|w| w.0).collect::<Vec<_>>(), [2], "{s:?}");
        assert!(s[0].1 >= std::time::Duration::from_millis(10));
        assert!(k.stalled(std::time::Duration::from_secs(60)).is_empty());
        assert_eq!([accept_all(&m1.sock), accept_all(&m2.sock)], [2, 1]);
    }

    /// Every interface (`:0`, dual-stack `[::]`): members match the anchor's IPV6_V6ONLY (off),
    /// so IPv4 clients reach them too.
    #[test]
    fn dual_stack_members_take_ipv4_and_ipv6_clients() {
        let Some((mut k, anchor, sa)) = steered(":0") else {
            return;
        };
        assert!(sa.is_ipv6() && !k.v6only, "{sa}");
        let w = k.join(1).unwrap().sock;
        let _c: Vec<TcpStream> = ["127.0.0.1", "::1", "127.0.0.1", "::1"]
            .iter()
            .map(|ip| TcpStream::connect((*ip, sa.port())).unwrap())
            .collect();
        assert_eq!(accept_all(&w), 4);
        assert_eq!(accept_all(&anchor.fd), 0);
    }

    /// The anchor is bound without SO_REUSEPORT first: a port another group holds is
    /// EADDRINUSE, not a silent join of somebody else's group.
    #[test]
    fn a_port_held_by_another_group_is_in_use() {
        let other = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        other.set_reuse_port(true).unwrap();
        other
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        other.listen(8).unwrap();
        let port = other.local_addr().unwrap().as_socket().unwrap().port();
        let a: ListenAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let e = bind_group_anchor(&a, None, 511, BindOptions::default()).unwrap_err();
        assert_eq!(e.code(), Some("EADDRINUSE"), "{e}");
    }
}
