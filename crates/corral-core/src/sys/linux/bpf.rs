//! Exact round-robin in the kernel: an `SK_REUSEPORT` eBPF program over a `SO_REUSEPORT` group.
//!
//! Each worker listens on its own socket of one `SO_REUSEPORT` group; the kernel runs this
//! program for every incoming SYN and the program picks the socket, so the primary is out of
//! the data path. One [`ReuseportGroup`] per listening address owns:
//! - `state`, an `ARRAY` map of two `u64`: entry 0 the ticket counter, entry 1 the number of
//!   worker slots in use (`nslots`, written by the primary);
//! - `socks`, a `REUSEPORT_SOCKARRAY`: slot `i < nslots` a worker's socket, the last slot the
//!   primary's *anchor* socket, which keeps the group (and the program) alive when no worker is
//!   left, and parks connections that found no worker;
//! - the program, loaded with `BPF_SK_REUSEPORT_SELECT_OR_MIGRATE`: when a listener closes
//!   with connections in its accept queue (a worker died), the kernel asks the program where
//!   each one goes instead of resetting it.
//!
//! The program: a bare SYN (or a migrating connection) takes a ticket (`atomic fetch-add`,
//! Linux 5.12), slot = ticket % nslots; an empty slot (a worker died or left, its slot not
//! refilled yet) burns its ticket and the connection draws another, up to [`TRIES`] draws,
//! then goes to the anchor. Burning tickets keeps the turns exact over the filled slots
//! (slots 0 and 2 of 3 filled: 15/0/15 of 30), where trying the next slot would give that one
//! the empty slot's turns too (10/0/20). It always returns
//! `SK_PASS`: `SK_DROP` on a SYN refuses the client (ECONNREFUSED). Other packets that miss every
//! socket (late ACKs, RSTs of closed connections) also run it; they take no ticket, so the count
//! stays exact (1000/1000/1000 over 3000 SYNs, where counting them gave 1001/999/1000).
//!
//! Worker-published load ([`Steer::Window`], [`Steer::Least`]): a third map, `load`, an
//! mmapable `ARRAY` with one 16-byte entry per worker slot: at 0 the slot's `u32` load, at 4
//! (`Least` with a stall time) the `u32` count of connections waiting to be taken, at 8 the
//! `u64` time (`CLOCK_MONOTONIC` ns, the clock of `bpf_ktime_get_ns`) its worker last took a
//! connection or what waits there last rose from 0. The program adds 1 to the slot it assigns a
//! connection to (a 32-bit atomic add); the worker subtracts 1 when that connection is done,
//! through its own mapping of the map ([`LoadMap`]: no syscall, no privilege beyond the fd).
//! `Window` is the round-robin above where a slot at `window` or more burns its ticket like an
//! empty one (today's `rr` window: a stopped worker stops getting connections), and, with a
//! stall time, so does a slot with a load whose time is older than that: its worker's loop is
//! blocked (a synchronous handler), so what it was dealt waits; the next ones go to the others
//! from the stall time on, not from the window on (the kernel's form of the primary-accept
//! `rr`'s stall check; what is already queued there is the primary's to take back, from its
//! copy of the worker's socket: `steering::KernelSteering::park`). `Least`
//! scans the `nslots` slots from the ticket's turn and picks the smallest load (ties go to the
//! first in that rotation, so equal loads take turns), and when its socket is gone falls back
//! to the draws; with a stall time it passes over a slot where a connection waits to be taken
//! and whose time is older than that (its load counts open connections, which say nothing of
//! a blocked loop: the waiting count is what does). A slot with no worker holds
//! [`LOAD_EMPTY`], above any window; nothing under the window: the anchor, whose connections
//! the primary deals with its own window.
//!
//! Loaded with the raw `bpf(2)` syscall (libc: nix has no bpf()), from instructions assembled
//! below with per-instruction comments: no clang, no ELF, nothing added to the link line. The
//! feasibility study and the measurements behind each choice are in the repository's issue
//! tracker (kernel steering) and `bench/`.
//!
//! Needs `CAP_BPF` (or root) in the initial user namespace; [`probe`] tells why not otherwise,
//! and the engine falls back to primary-accept round-robin.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use crate::sys::sockopt::set_int_sockopt;
use crate::sys::steer::{LoadRelease, Steer, LOAD_EMPTY};

/// How many tickets one connection draws (each an empty slot) before it is parked on the
/// anchor. Slots are filled lowest first and `nslots` ends at the highest filled one, so a
/// miss needs a hole below it (a worker died or left); with half the slots empty, one
/// connection in 16 reaches the anchor (which the primary accepts and deals).
pub const TRIES: i32 = 4;

// bpf(2) commands, map and program types (linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: u32 = 20;
const BPF_PROG_TYPE_SK_REUSEPORT: u32 = 21;
const BPF_SK_REUSEPORT_SELECT_OR_MIGRATE: u32 = 40;
const BPF_F_MMAPABLE: u32 = 1 << 10;
// Helpers the program calls.
const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_KTIME_GET_NS: i32 = 5;
const FN_SK_SELECT_REUSEPORT: i32 = 82;
// struct sk_reuseport_md offsets.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 8;
const MD_MIGRATING_SK: i16 = 48;
const SK_PASS: i32 = 1;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

/// A tiny assembler: instructions with symbolic jump targets, resolved by [`Asm::finish`].
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, usize)>, // (instruction, label)
}

#[derive(Clone, Copy)]
struct Label(usize);

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10; // frame pointer (read-only)

impl Asm {
    fn new() -> Asm {
        Asm {
            insns: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
        }
    }
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }
    fn raw(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        });
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to.0));
        self.raw(code, dst, src, 0, imm);
    }
    /// `dst = map` (a two-instruction `ld_imm64` with the map's fd, `BPF_PSEUDO_MAP_FD`).
    fn ld_map(&mut self, dst: u8, map: RawFd) {
        self.raw(0x18, dst, 1, 0, map);
        self.raw(0, 0, 0, 0, 0);
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, label) in self.fixups {
            let to = self.labels[label].expect("unbound label");
            self.insns[at].off = (to as isize - at as isize - 1) as i16;
        }
        self.insns
    }
}

/// Maps a program reads (their fds are baked into the instructions).
#[derive(Clone, Copy)]
struct Maps {
    state: RawFd,
    socks: RawFd,
    /// The `load` array (`None`: [`Steer::RoundRobin`]).
    load: Option<RawFd>,
}

/// Slots one `least` choice looks at, from the ticket's turn on: all of them up to 64 workers;
/// past that, the least loaded of a window of 64 that moves one slot per connection. The
/// verifier walks every turn of the scan: with 64 it checks about 5k instructions; a bound of
/// 1024 (every slot the engine allows) took 76k instructions and 350 ms per address here.
pub const LEAST_SCAN: u32 = 64;

/// `key` (a `u32` on the stack at `fp+key`) looked up in `map`: `r0 = &map[key]` or NULL.
fn lookup(a: &mut Asm, map: RawFd, key: i16) {
    a.ld_map(R1, map); //  r1 = map
    a.raw(0xbf, R2, R10, 0, 0); //  r2 = fp
    a.raw(0x07, R2, 0, 0, key as i32); //  r2 = &key
    a.raw(0x85, 0, 0, 0, FN_MAP_LOOKUP_ELEM); //  r0 = &map[key] (or NULL)
}

/// `select(ctx, socks, &slot)` with the slot a `u32` at `fp+slot`: `r0 == 0` when selected.
fn select(a: &mut Asm, socks: RawFd, slot: i16) {
    a.raw(0xbf, R1, R6, 0, 0); //  r1 = ctx
    a.ld_map(R2, socks); //  r2 = socks map
    a.raw(0xbf, R3, R10, 0, 0); //  r3 = fp
    a.raw(0x07, R3, 0, 0, slot as i32); //  r3 = &slot
    a.raw(0xb7, R4, 0, 0, 0); //  r4 = 0 (flags)
    a.raw(0x85, 0, 0, 0, FN_SK_SELECT_REUSEPORT); //  r0 = select(ctx, socks, &slot, 0)
}

/// What a program counts in the `load` entry of the slot it selected.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Count {
    /// `load += 1`.
    Load,
    /// `load += 1`, and a load that rose from 0 starts the slot's stall clock (`kernel-rr`,
    /// whose `load` is what waits to be taken).
    LoadStamped,
    /// `load += 1` and `queued += 1`, and a `queued` that rose from 0 starts the stall clock
    /// (`kernel-least`, whose `load` counts open connections, the waiting ones apart).
    LoadAndQueued,
}

impl Count {
    fn of(steer: Steer) -> Count {
        match (steer, steer.stall_ns()) {
            (Steer::Window { .. }, Some(_)) => Count::LoadStamped,
            (Steer::Least { .. }, Some(_)) => Count::LoadAndQueued,
            _ => Count::Load,
        }
    }
}

/// After a selection of the slot at `fp-8`: counts it in `load[slot]` as `count` says (atomic
/// adds), then SK_PASS.
fn count_assignment(a: &mut Asm, load: RawFd, count: Count, pass: Label) {
    lookup(a, load, -8); //  r0 = &load[slot]
    a.jump(0x15, R0, 0, 0, pass); //  (cannot fail for an array; the verifier wants the check)
    a.raw(0xb7, R1, 0, 0, 1); //  r1 = 1
    match count {
        Count::Load => {
            a.raw(0xc3, R0, R1, 0, 0x00); //  lock *(u32 *)r0 += r1 (BPF_ATOMIC | BPF_W, BPF_ADD)
            a.jump(0x05, 0, 0, 0, pass); //  done
            return;
        }
        Count::LoadStamped => {
            a.raw(0xc3, R0, R1, 0, 0x01); //  r1 = atomic_fetch_add(&load, r1) (BPF_ADD | BPF_FETCH)
        }
        Count::LoadAndQueued => {
            a.raw(0xc3, R0, R1, 0, 0x00); //  lock load += r1
            a.raw(0xb7, R1, 0, 0, 1); //  r1 = 1
            a.raw(0xc3, R0, R1, LOAD_QUEUED, 0x01); //  r1 = atomic_fetch_add(&queued, r1)
        }
    }
    a.jump(0x55, R1, 0, 0, pass); //  it held some: its clock runs already
    a.raw(0xbf, R9, R0, 0, 0); //  r9 = &load[slot] (r0-r5 die in the call)
    a.raw(0x85, 0, 0, 0, FN_KTIME_GET_NS); //  r0 = now (CLOCK_MONOTONIC ns)
    a.raw(0x7b, R9, R0, LOAD_SINCE, 0); //  load[slot].since = now
    a.jump(0x05, 0, 0, 0, pass); //  done
}

/// If the slot whose `load` entry `r0` points at is stalled, jumps to `stalled`: it has
/// something waiting (the `u32` at `waiting`: `load` for `kernel-rr`, `queued` for
/// `kernel-least`) and its clock is older than `stall_ns`. `now` is `None` to read the clock
/// here (a helper call: r0-r5 die) or the stack offset where it was kept (r0 survives).
fn skip_if_stalled(a: &mut Asm, waiting: i16, now: Option<i16>, stall_ns: u64, stalled: Label) {
    let live = a.label();
    a.raw(0x61, R2, R0, waiting, 0); //  r2 = what waits there
    a.jump(0x15, R2, 0, 0, live); //  nothing: it cannot be stalled
    match now {
        None => {
            a.raw(0x79, R9, R0, LOAD_SINCE, 0); //  r9 = since (r9 survives the call)
            a.raw(0x85, 0, 0, 0, FN_KTIME_GET_NS); //  r0 = now
            a.raw(0xbf, R3, R0, 0, 0); //  r3 = now
            a.raw(0x1f, R3, R9, 0, 0); //  r3 -= since (negative if the worker stamped after us)
        }
        Some(at) => {
            a.raw(0x79, R2, R0, LOAD_SINCE, 0); //  r2 = since
            a.raw(0x79, R3, R10, at, 0); //  r3 = now
            a.raw(0x1f, R3, R2, 0, 0); //  r3 -= since (negative if the worker stamped after us)
        }
    }
    a.raw(0x18, R4, 0, 0, stall_ns as i32); //  r4 = stall_ns (ld_imm64, low half)
    a.raw(0, 0, 0, 0, (stall_ns >> 32) as i32); //  (high half)
    a.jump(0x6d, R3, R4, 0, stalled); //  if (s64)(now - since) > stall: stalled
    a.bind(live);
}

/// The steering program for `maps`, choosing as `steer` says, with the anchor in slot
/// `anchor_slot`.
fn program(maps: Maps, steer: Steer, anchor_slot: u32) -> Vec<Insn> {
    let mut a = Asm::new();
    let take_ticket = a.label();
    let draw = a.label();
    let try_slot = a.label();
    let skip = a.label();
    let anchor = a.label();
    let pass = a.label();
    // Stack: fp-4 a lookup key, fp-8 the slot to select, fp-16 &state[0] (the ticket),
    // fp-24 the least load seen, fp-32 its slot, fp-40 the time of the scan.
    a.raw(0xbf, R6, R1, 0, 0); //  r6 = ctx
    a.raw(0x79, R7, R6, MD_MIGRATING_SK, 0); //  r7 = ctx->migrating_sk
    a.jump(0x55, R7, 0, 0, take_ticket); //  migrating: it needs a live slot, take a ticket
    a.raw(0x79, R2, R6, MD_DATA, 0); //  r2 = ctx->data (the TCP header)
    a.raw(0x79, R3, R6, MD_DATA_END, 0); //  r3 = ctx->data_end
    a.raw(0xbf, R4, R2, 0, 0); //  r4 = data
    a.raw(0x07, R4, 0, 0, 14); //  r4 += 14 (through the flags byte)
    a.jump(0x2d, R4, R3, 0, pass); //  if r4 > data_end: no header to read, let the kernel pick
    a.raw(0x71, R4, R2, 13, 0); //  r4 = TCP flags (byte 13)
    a.raw(0x57, R4, 0, 0, 0x12); //  r4 &= SYN|ACK
    a.jump(0x55, R4, 0, 0x02, pass); //  not a bare SYN: no ticket, no selection
    a.bind(take_ticket);
    a.raw(0x62, R10, 0, -4, 1); //  key = 1 (nslots) at fp-4
    lookup(&mut a, maps.state, -4); //  r0 = &state[1]
    a.jump(0x15, R0, 0, 0, pass); //  (cannot fail for an array; the verifier wants the check)
    a.raw(0x79, R8, R0, 0, 0); //  r8 = nslots
    a.jump(0x15, R8, 0, 0, anchor); //  no worker slot: park on the anchor
    a.raw(0x62, R10, 0, -4, 0); //  key = 0 (ticket)
    lookup(&mut a, maps.state, -4); //  r0 = &state[0]
    a.jump(0x15, R0, 0, 0, pass); //  (as above)
    a.raw(0x7b, R10, R0, -16, 0); //  spill &state[0] at fp-16 (helper calls clobber r0-r5)
    if let (Steer::Least { window, .. }, Some(load)) = (steer, maps.load) {
        let scan = a.label();
        let next = a.label();
        let in_range = a.label();
        let scanned = a.label();
        a.raw(0xb7, R9, 0, 0, 1); //  r9 = 1
        a.raw(0xdb, R0, R9, 0, 0x01); //  r9 = atomic_fetch_add(&state[0], r9): a ticket
        a.raw(0x9f, R9, R8, 0, 0); //  r9 %= nslots: where the scan starts (ties rotate)
        if steer.stall_ns().is_some() {
            a.raw(0x85, 0, 0, 0, FN_KTIME_GET_NS); //  r0 = now (r6-r9 survive the call)
            a.raw(0x7b, R10, R0, -40, 0); //  now at fp-40, one clock read per scan
        }
        a.raw(0x7a, R10, 0, -24, -1); //  least load = u64::MAX (none seen yet)
        a.raw(0x7a, R10, 0, -32, 0); //  its slot = 0
        a.raw(0xb7, R7, 0, 0, 0); //  r7 = 0 (i)
        a.bind(scan);
        a.jump(0x3d, R7, R8, 0, scanned); //  if i >= nslots: every slot seen
        a.jump(0x35, R7, 0, LEAST_SCAN.min(anchor_slot) as i32, scanned); //  at most LEAST_SCAN
        a.raw(0xbf, R1, R9, 0, 0); //  r1 = start
        a.raw(0x0f, R1, R7, 0, 0); //  r1 += i
        a.jump(0xad, R1, R8, 0, in_range); //  if r1 < nslots: that is the slot
        a.raw(0x1f, R1, R8, 0, 0); //  else r1 -= nslots (wrap around)
        a.bind(in_range);
        a.raw(0x63, R10, R1, -4, 0); //  key = slot (u32 at fp-4)
        lookup(&mut a, load, -4); //  r0 = &load[slot]
        a.jump(0x15, R0, 0, 0, next); //  (cannot fail for an array)
        if let Some(stall_ns) = steer.stall_ns() {
            // Connections wait there and its worker took none for the stall time: blocked,
            // whatever its open connections say. Passed over.
            skip_if_stalled(&mut a, LOAD_QUEUED, Some(-40), stall_ns, next);
        }
        a.raw(0x61, R1, R0, 0, 0); //  r1 = load[slot]
        a.raw(0x79, R2, R10, -24, 0); //  r2 = least load so far
        a.jump(0x3d, R1, R2, 0, next); //  if load >= least: not better (a tie keeps the first)
        a.raw(0x7b, R10, R1, -24, 0); //  least load = load
        a.raw(0x61, R1, R10, -4, 0); //  r1 = slot
        a.raw(0x7b, R10, R1, -32, 0); //  its slot = slot
        a.bind(next);
        a.raw(0x07, R7, 0, 0, 1); //  i += 1
        a.jump(0x05, 0, 0, 0, scan); //  next slot (bounded above)
        a.bind(scanned);
        a.raw(0x79, R1, R10, -24, 0); //  r1 = least load
        a.jump(0x35, R1, 0, window as i32, anchor); //  at the window (or LOAD_EMPTY): anchor
        a.raw(0x79, R1, R10, -32, 0); //  r1 = its slot
        a.raw(0x63, R10, R1, -8, 0); //  slot at fp-8 (u32)
        select(&mut a, maps.socks, -8); //  r0 = select(ctx, socks, &slot, 0)
        a.jump(0x55, R0, 0, 0, draw); //  not selected (its worker just died): draw turns
        count_assignment(&mut a, load, Count::of(steer), pass); //  load[slot] += 1, SK_PASS
    }
    a.bind(draw);
    a.raw(0xb7, R7, 0, 0, 0); //  r7 = 0 (tries)
    a.bind(try_slot);
    a.raw(0x79, R1, R10, -16, 0); //  r1 = &state[0]
    a.raw(0xb7, R9, 0, 0, 1); //  r9 = 1
    a.raw(0xdb, R1, R9, 0, 0x01); //  r9 = atomic_fetch_add(&state[0], r9): a ticket
    a.raw(0xbf, R1, R9, 0, 0); //  r1 = ticket
    a.raw(0x9f, R1, R8, 0, 0); //  r1 %= nslots
    a.raw(0x63, R10, R1, -8, 0); //  slot at fp-8 (u32)
    if let (Some(window), Some(load)) = (steer.window(), maps.load) {
        lookup(&mut a, load, -8); //  r0 = &load[slot]
        a.jump(0x15, R0, 0, 0, skip); //  (cannot fail for an array)
        a.raw(0x61, R1, R0, 0, 0); //  r1 = load[slot]
        a.jump(0x35, R1, 0, window as i32, skip); //  at the window (or LOAD_EMPTY): burn it
        if let (Steer::Window { .. }, Some(stall_ns)) = (steer, steer.stall_ns()) {
            // Stalled (it holds connections and took none for the stall time): burn it.
            // (`kernel-least` draws only when the slot it picked just lost its socket.)
            skip_if_stalled(&mut a, 0, None, stall_ns, skip);
        }
        select(&mut a, maps.socks, -8); //  r0 = select(ctx, socks, &slot, 0)
        a.jump(0x55, R0, 0, 0, skip); //  empty slot: burn the ticket
        count_assignment(&mut a, load, Count::of(steer), pass); //  load[slot] += 1, SK_PASS
    } else {
        select(&mut a, maps.socks, -8); //  r0 = select(ctx, socks, &slot, 0)
        a.jump(0x15, R0, 0, 0, pass); //  selected: done
    }
    a.bind(skip);
    a.raw(0x07, R7, 0, 0, 1); //  tries += 1
    a.jump(0xa5, R7, 0, TRIES, try_slot); //  if tries < TRIES: draw again (bounded loop)
    a.bind(anchor);
    a.raw(0x62, R10, 0, -8, anchor_slot as i32); //  slot = the anchor's
    select(&mut a, maps.socks, -8); //  select the anchor (if even that fails, the kernel's
    a.bind(pass); //                   hash picks)
    a.raw(0xb7, R0, 0, 0, SK_PASS); //  r0 = SK_PASS, never SK_DROP
    a.raw(0x95, 0, 0, 0, 0); //  exit
    a.finish()
}

/// `bpf(cmd, attr)`; the attribute is a zero-padded `union bpf_attr` prefix.
fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a 128-byte buffer laid out as the command's `union bpf_attr` member
    // (the rest zero), valid for the call; pointers inside it point at live buffers.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put32(attr: &mut [u8; 128], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put64(attr: &mut [u8; 128], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn new_fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: bpf() returned a new fd (map or program) that nobody else owns; bpf fds are
    // created close-on-exec by the kernel.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

fn map_create(kind: u32, key: u32, value: u32, entries: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, kind);
    put32(&mut attr, 4, key);
    put32(&mut attr, 8, value);
    put32(&mut attr, 12, entries);
    put32(&mut attr, 16, flags);
    bpf(BPF_MAP_CREATE, &mut attr).map(new_fd)
}

fn map_op(cmd: libc::c_long, map: BorrowedFd<'_>, key: &u32, value: *mut c_void) -> io::Result<()> {
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, map.as_raw_fd() as u32);
    put64(&mut attr, 8, key as *const u32 as u64);
    put64(&mut attr, 16, value as u64);
    bpf(cmd, &mut attr).map(drop)
}

/// Why the kernel path is not available here, for the one report the engine makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The errno of the step that failed (0 when a check refused it first).
    pub errno: i32,
    /// What failed, and what to do about it.
    pub reason: String,
}

impl Unsupported {
    fn from(step: &str, e: &io::Error, log: &str) -> Unsupported {
        let errno = e.raw_os_error().unwrap_or(0);
        let hint = match errno {
            libc::EPERM => "needs CAP_BPF (or root) in the initial user namespace: run as root, \
                 `setcap cap_bpf+ep` the program, or `AmbientCapabilities=CAP_BPF` in its \
                 systemd unit (containers: a user namespace's capabilities do not count, and \
                 docker's default seccomp profile blocks bpf())"
                .to_string(),
            libc::ENOSYS => "bpf() is not available (kernel config or a seccomp filter)".into(),
            libc::EINVAL | libc::EACCES => format!(
                "the kernel ({}) refused the program; it needs Linux 5.12 (atomic fetch) and \
                 5.14 (connection migration){}",
                kernel_release(),
                if log.is_empty() {
                    String::new()
                } else {
                    format!("; verifier: {}", log.trim())
                }
            ),
            _ => String::new(),
        };
        Unsupported {
            errno,
            reason: if hint.is_empty() {
                format!("{step}: {e}")
            } else {
                format!("{step}: {e}; {hint}")
            },
        }
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The maps, the program and the slots of one listening address.
#[derive(Debug)]
pub struct ReuseportGroup {
    state: OwnedFd,
    socks: OwnedFd,
    /// The `load` array and the primary's mapping of it (`None`: [`Steer::RoundRobin`]).
    load: Option<(OwnedFd, LoadMap)>,
    prog: OwnedFd,
    steer: Steer,
    anchor_slot: u32,
}

/// Parses "5.12.0-foo" into (5, 12).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some((major, minor))
}

impl ReuseportGroup {
    /// Creates the maps and loads the round-robin program for up to `max_slots` worker
    /// sockets (plus the anchor's slot).
    pub fn new(max_slots: u32) -> Result<ReuseportGroup, Unsupported> {
        ReuseportGroup::with_steer(max_slots, Steer::RoundRobin)
    }

    /// As [`ReuseportGroup::new`], choosing as `steer` says: [`Steer::Window`] and
    /// [`Steer::Least`] add the mmapable `load` array that workers decrement ([`LoadMap`]).
    /// A window must be in `1..LOAD_EMPTY`. They need Linux 5.12 (checked here, before
    /// anything is created: the kernel would otherwise refuse the program with a bare
    /// EINVAL); see [`ReuseportGroup::with_steer_or_plain`] for the fallback.
    pub fn with_steer(max_slots: u32, steer: Steer) -> Result<ReuseportGroup, Unsupported> {
        if let Some(w) = steer.window() {
            if w == 0 || w >= LOAD_EMPTY {
                return Err(Unsupported {
                    errno: libc::EINVAL,
                    reason: format!("window {w}: must be 1 to {}", LOAD_EMPTY - 1),
                });
            }
            let release = kernel_release();
            match parse_release(&release) {
                Some(v) if v >= (5, 12) => {}
                _ => {
                    return Err(Unsupported {
                        errno: 0,
                        reason: format!(
                            "kernel {release}: worker-published load needs Linux 5.12 (BPF \
                             atomics on an mmapable array)"
                        ),
                    })
                }
            }
        }
        let state = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 2, 0)
            .map_err(|e| Unsupported::from("bpf(BPF_MAP_CREATE, array)", &e, ""))?;
        let socks = map_create(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, 4, 8, max_slots + 1, 0)
            .map_err(|e| Unsupported::from("bpf(BPF_MAP_CREATE, reuseport_sockarray)", &e, ""))?;
        let load = match steer {
            Steer::RoundRobin => None,
            Steer::Window { .. } | Steer::Least { .. } => {
                let fd = map_create(
                    BPF_MAP_TYPE_ARRAY,
                    4,
                    LOAD_STRIDE as u32,
                    max_slots,
                    BPF_F_MMAPABLE,
                )
                .map_err(|e| Unsupported::from("bpf(BPF_MAP_CREATE, mmapable array)", &e, ""))?;
                let map = LoadMap::map(fd.as_fd(), max_slots)
                    .map_err(|e| Unsupported::from("mmap(load map)", &e, ""))?;
                for slot in 0..max_slots {
                    map.set(slot, LOAD_EMPTY);
                }
                Some((fd, map))
            }
        };
        let maps = Maps {
            state: state.as_raw_fd(),
            socks: socks.as_raw_fd(),
            load: load.as_ref().map(|(fd, _)| fd.as_raw_fd()),
        };
        let insns = program(maps, steer, max_slots);
        let license = c"GPL";
        let mut log = vec![0u8; 64 * 1024];
        let load_prog = |log: &mut Vec<u8>, level: u32| {
            let mut attr = [0u8; 128];
            put32(&mut attr, 0, BPF_PROG_TYPE_SK_REUSEPORT);
            put32(&mut attr, 4, insns.len() as u32);
            put64(&mut attr, 8, insns.as_ptr() as u64);
            put64(&mut attr, 16, license.as_ptr() as u64);
            if level > 0 {
                put32(&mut attr, 24, level);
                put32(&mut attr, 28, log.len() as u32);
                put64(&mut attr, 32, log.as_mut_ptr() as u64);
            }
            let name: &[u8] = match steer {
                Steer::RoundRobin => b"corral_kern_rr",
                Steer::Window { .. } => b"corral_kern_rrw",
                Steer::Least { .. } => b"corral_kern_lst",
            };
            attr[48..48 + name.len()].copy_from_slice(name);
            put32(&mut attr, 68, BPF_SK_REUSEPORT_SELECT_OR_MIGRATE);
            bpf(BPF_PROG_LOAD, &mut attr)
        };
        let prog = match load_prog(&mut log, 0) {
            Ok(fd) => new_fd(fd),
            Err(e) => {
                // Again with the verifier's log, for the report.
                let _ = load_prog(&mut log, 1);
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let tail: String = text.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                return Err(Unsupported::from(
                    "bpf(BPF_PROG_LOAD, sk_reuseport)",
                    &e,
                    &tail,
                ));
            }
        };
        Ok(ReuseportGroup {
            state,
            socks,
            load,
            prog,
            steer,
            anchor_slot: max_slots,
        })
    }

    /// [`ReuseportGroup::with_steer`], and where the load-aware program cannot be had (an old
    /// kernel, a refused map or program) the plain round-robin one, with the reason it was
    /// not (to be reported once). Fails only if the plain one fails too.
    pub fn with_steer_or_plain(
        max_slots: u32,
        steer: Steer,
    ) -> Result<(ReuseportGroup, Option<Unsupported>), Unsupported> {
        match ReuseportGroup::with_steer(max_slots, steer) {
            Ok(g) => Ok((g, None)),
            Err(why) if steer != Steer::RoundRobin => {
                ReuseportGroup::new(max_slots).map(|g| (g, Some(why)))
            }
            Err(why) => Err(why),
        }
    }

    /// How this group's program chooses.
    pub fn steer(&self) -> Steer {
        self.steer
    }

    /// The `load` array's fd, for a worker to map ([`LoadMap::map`]) and release its
    /// connections through; `None` for round-robin.
    pub fn load_map_fd(&self) -> Option<BorrowedFd<'_>> {
        self.load.as_ref().map(|(fd, _)| fd.as_fd())
    }

    /// `load[slot]`: connections the program assigned to the slot that its worker has not
    /// released yet (`LOAD_EMPTY` for a slot with no worker); `None` for round-robin.
    pub fn load(&self, slot: u32) -> Option<u32> {
        self.load.as_ref().map(|(_, m)| m.get(slot))
    }

    /// The primary's own view of the counters (`None` for round-robin): it counts the
    /// connections it deals from the anchor ([`LoadMap::acquire`]) and takes back the ones a
    /// worker refused or did not read ([`LoadMap::release`]).
    pub fn load_map(&self) -> Option<&LoadMap> {
        self.load.as_ref().map(|(_, m)| m)
    }

    /// Attaches the program to the group `sock` belongs to (`SO_ATTACH_REUSEPORT_EBPF`); once
    /// per group, through any member (the anchor).
    pub fn attach(&self, sock: BorrowedFd<'_>) -> io::Result<()> {
        set_int_sockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_EBPF,
            self.prog.as_raw_fd(),
        )
    }

    /// Puts `sock` (a listening member of the group) in worker slot `slot`, its `load` back
    /// at 0 (a new worker starts with nothing in flight, whatever the last one left: counts
    /// drift when a queue migrates or a backlog drops a SYN).
    pub fn set_slot(&self, slot: u32, sock: BorrowedFd<'_>) -> io::Result<()> {
        assert!(slot < self.anchor_slot, "slot {slot} out of range");
        if let Some((_, m)) = &self.load {
            m.set(slot, 0);
        }
        self.put_sock(slot, sock)
    }

    /// Puts `sock` in worker slot `slot` in place of the socket its worker held there (that
    /// worker listened again on the address), its `load` kept: what it counts (connections
    /// dealt and not yet taken, or open ones) is still the same worker's to release.
    pub fn replace_slot(&self, slot: u32, sock: BorrowedFd<'_>) -> io::Result<()> {
        assert!(slot < self.anchor_slot, "slot {slot} out of range");
        self.put_sock(slot, sock)
    }

    /// Puts the anchor socket in its slot.
    pub fn set_anchor(&self, sock: BorrowedFd<'_>) -> io::Result<()> {
        self.put_sock(self.anchor_slot, sock)
    }

    fn put_sock(&self, slot: u32, sock: BorrowedFd<'_>) -> io::Result<()> {
        let mut fd = sock.as_raw_fd() as u64;
        map_op(
            BPF_MAP_UPDATE_ELEM,
            self.socks_fd(),
            &slot,
            (&mut fd as *mut u64).cast(),
        )
    }

    /// Empties worker slot `slot` (already empty is fine: the kernel empties the slot of a
    /// socket that closes).
    pub fn clear_slot(&self, slot: u32) -> io::Result<()> {
        if let Some((_, m)) = &self.load {
            m.set(slot, LOAD_EMPTY);
        }
        self.remove_sock(slot)
    }

    /// Takes worker slot `slot`'s socket out of the socket array, its `load` left as it is
    /// (a parked slot: [`LoadMap::mark_parked`]).
    pub fn remove_sock(&self, slot: u32) -> io::Result<()> {
        match map_op(
            BPF_MAP_DELETE_ELEM,
            self.socks_fd(),
            &slot,
            std::ptr::null_mut(),
        ) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// Whether worker slot `slot` holds a socket.
    pub fn slot_filled(&self, slot: u32) -> io::Result<bool> {
        let mut cookie = 0u64;
        match map_op(
            BPF_MAP_LOOKUP_ELEM,
            self.socks_fd(),
            &slot,
            (&mut cookie as *mut u64).cast(),
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets how many worker slots (from 0) the program deals over.
    pub fn set_slot_count(&self, n: u32) -> io::Result<()> {
        assert!(
            n <= self.anchor_slot,
            "{n} slots, at most {}",
            self.anchor_slot
        );
        let mut v = n as u64;
        map_op(
            BPF_MAP_UPDATE_ELEM,
            self.state_fd(),
            &1,
            (&mut v as *mut u64).cast(),
        )
    }

    /// Tickets taken so far (SYNs and migrations the program dealt).
    pub fn tickets(&self) -> io::Result<u64> {
        let mut v = 0u64;
        map_op(
            BPF_MAP_LOOKUP_ELEM,
            self.state_fd(),
            &0,
            (&mut v as *mut u64).cast(),
        )?;
        Ok(v)
    }

    /// Worker slots available (the anchor's is not one of them).
    pub fn max_slots(&self) -> u32 {
        self.anchor_slot
    }

    fn socks_fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.socks)
    }
    fn state_fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.state)
    }
}

/// A mapping of a group's `load` array (`BPF_F_MMAPABLE`): one `u32` per worker slot, at a
/// stride of 8 bytes (the kernel rounds an array's values up to 8). The program adds 1 to a
/// slot on each connection it assigns; the worker that accepted the connection subtracts 1
/// when it is done with it ([`LoadMap::release`]): an atomic on shared memory, no syscall, and
/// no privilege beyond holding the map's fd (uid 65534 can map it).
#[derive(Debug)]
pub struct LoadMap {
    base: std::ptr::NonNull<u8>,
    len: usize,
    slots: u32,
}

// SAFETY: the mapping is plain shared memory, only ever accessed through atomics, and owned
// by the `LoadMap` (unmapped once, on drop).
unsafe impl Send for LoadMap {}
// SAFETY: as above: every access is an atomic.
unsafe impl Sync for LoadMap {}

/// Bytes of one slot's entry in the `load` array: the `u32` load at 0, the `u32` count of
/// connections waiting to be taken at [`LOAD_QUEUED`] (`kernel-least`), the `u64` stall clock
/// at [`LOAD_SINCE`].
const LOAD_STRIDE: usize = 16;
/// Offset of a slot's `queued` count in its entry: connections the program (or the primary)
/// assigned to it that its worker has not taken yet. Only `kernel-least` counts them apart
/// (its `load` counts open connections); `kernel-rr`'s `load` is that count.
const LOAD_QUEUED: i16 = 4;
/// Offset of a slot's stall clock (`CLOCK_MONOTONIC` ns) in its entry.
const LOAD_SINCE: i16 = 8;

/// `CLOCK_MONOTONIC` in ns: the clock of the program's `bpf_ktime_get_ns`. It cannot fail (a
/// vDSO read); 0 if it did, which only ages a stall clock.
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

impl LoadMap {
    /// Maps the `load` array `fd` (as received by a worker) of `slots` slots, read-write.
    /// `InvalidInput` for an fd that is a file (a BPF map is an anonymous inode, no file
    /// type): a regular file would map past its end and fault on first use; other fds that
    /// are not a map of that size fail in `mmap` (ENODEV, EACCES, EINVAL).
    pub fn map(fd: BorrowedFd<'_>, slots: u32) -> io::Result<LoadMap> {
        let mode = nix::sys::stat::fstat(fd)?.st_mode;
        if mode & libc::S_IFMT != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a BPF map (a file of type {:o})", mode & libc::S_IFMT),
            ));
        }
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let len = (slots as usize * LOAD_STRIDE).div_ceil(page).max(1) * page;
        // SAFETY: a new shared mapping of the map's memory (no address hint, nothing else
        // mapped over); the kernel checks `len` against the map's size and fails with EINVAL
        // past it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(LoadMap {
            base: std::ptr::NonNull::new(p.cast()).expect("mmap gave NULL"),
            len,
            slots,
        })
    }

    /// The field at `offset` of `slot`'s entry as the atomic `A`: only ever `AtomicU32` (the
    /// load at 0, the waiting count at [`LOAD_QUEUED`]) or `AtomicU64` (the clock at
    /// [`LOAD_SINCE`]), types valid for any bits.
    fn field<A>(&self, slot: u32, offset: i16) -> &A {
        let size = std::mem::size_of::<A>();
        assert!(slot < self.slots, "slot {slot} of {}", self.slots);
        assert!(
            offset >= 0 && offset as usize % size == 0 && offset as usize + size <= LOAD_STRIDE
        );
        // SAFETY: inside the entry (checked above) of a slot the mapping covers (`len` covers
        // every slot), aligned for `A` (page-aligned base, stride 16, an offset that is a
        // multiple of its size), and the memory lives as long as `self`; the program and
        // other processes touch it only with atomics too (the program's 64-bit store of the
        // clock is single-copy atomic on 64-bit targets).
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(slot as usize * LOAD_STRIDE + offset as usize)
                .cast()
        }
    }

    fn counter(&self, slot: u32) -> &std::sync::atomic::AtomicU32 {
        self.field(slot, 0)
    }

    fn queued(&self, slot: u32) -> &std::sync::atomic::AtomicU32 {
        self.field(slot, LOAD_QUEUED)
    }

    fn since(&self, slot: u32) -> &std::sync::atomic::AtomicU64 {
        self.field(slot, LOAD_SINCE)
    }

    /// Restarts `slot`'s stall clock: its worker took a connection (or its load rose from 0).
    fn stamp(&self, slot: u32) {
        self.since(slot)
            .store(monotonic_ns(), std::sync::atomic::Ordering::Relaxed);
    }

    /// How long ago `slot`'s stall clock was restarted (tests).
    #[cfg(test)]
    fn since_ns(&self, slot: u32) -> u64 {
        monotonic_ns().saturating_sub(self.since(slot).load(std::sync::atomic::Ordering::Relaxed))
    }

    /// How long ago `slot`'s worker last took a connection (or what waits there rose from
    /// 0): the age the program's stall check compares with the stall time.
    pub fn idle_for(&self, slot: u32) -> std::time::Duration {
        let since = self.since(slot).load(std::sync::atomic::Ordering::Relaxed);
        std::time::Duration::from_nanos(monotonic_ns().saturating_sub(since))
    }

    /// `load[slot]` now.
    pub fn get(&self, slot: u32) -> u32 {
        self.counter(slot)
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets `load[slot]` (the primary: 0 for a new worker, `LOAD_EMPTY` for none); nothing
    /// waits there.
    pub fn set(&self, slot: u32, v: u32) {
        use std::sync::atomic::Ordering::Relaxed;
        self.queued(slot).store(0, Relaxed);
        self.counter(slot).store(v, Relaxed)
    }

    /// Connections assigned to `slot` that its worker has not taken yet (`kernel-least`; 0
    /// under `kernel-rr`, whose `load` is that count).
    pub fn waiting(&self, slot: u32) -> u32 {
        self.queued(slot).load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One more connection for `slot` (the primary, for one it dealt from the anchor to the
    /// slot's worker, who releases it as any other): `load[slot] += 1`, and a load that rose
    /// from 0 starts the stall clock, as the `kernel-rr` program does. Returns the new count.
    pub fn acquire(&self, slot: u32) -> u32 {
        let old = self
            .counter(slot)
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if old == 0 {
            self.stamp(slot);
        }
        old.wrapping_add(1)
    }

    /// As [`LoadMap::acquire`] for `kernel-least`, as its program counts: `load[slot] += 1`
    /// and one more waiting to be taken, whose rise from 0 starts the stall clock. Returns the
    /// new load.
    pub fn acquire_queued(&self, slot: u32) -> u32 {
        use std::sync::atomic::Ordering::Relaxed;
        let old = self.counter(slot).fetch_add(1, Relaxed);
        if self.queued(slot).fetch_add(1, Relaxed) == 0 {
            self.stamp(slot);
        }
        old.wrapping_add(1)
    }

    /// `slot`'s worker took one connection (accepted it on its own socket, or read it off
    /// its channel): its stall clock restarts and one fewer waits (never below 0). The load
    /// is the caller's: `kernel-rr` releases it now ([`LoadMap::release`]), `kernel-least`
    /// at close.
    pub fn took(&self, slot: u32) {
        self.stamp(slot);
        self.unqueue(slot);
    }

    /// One fewer waits at `slot`, never below 0 (nothing is counted apart under `kernel-rr`:
    /// at 0, a load and no store).
    fn unqueue(&self, slot: u32) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self
            .queued(slot)
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }

    /// One connection of `slot` is done (`kernel-least` releases at close, `kernel-rr` at
    /// accept): `load[slot] -= 1`, beneath the parked mark if it is set
    /// ([`LoadMap::mark_parked`]), and never below 0 (the count was reset under it when the
    /// slot changed hands). The stall clock is left alone: a release is not a take. Returns
    /// the new count (beneath the mark).
    pub fn release(&self, slot: u32) -> u32 {
        use std::sync::atomic::Ordering::Relaxed;
        let down = |n: u32| {
            let count = (n & !LOAD_EMPTY).checked_sub(1)?;
            Some(n & LOAD_EMPTY | count)
        };
        match self.counter(slot).fetch_update(Relaxed, Relaxed, down) {
            Ok(n) => (n & !LOAD_EMPTY) - 1,
            Err(_) => 0,
        }
    }

    /// Takes `slot` out of the programs' choice while its worker is stalled (the primary
    /// drains its queue): `load[slot] += LOAD_EMPTY`, above any window and every other slot's
    /// load, while takes, releases and take-backs go on counting beneath it, so that
    /// [`LoadMap::unmark_parked`] finds the count exact, whatever raced with the park. False
    /// when already marked.
    pub fn mark_parked(&self, slot: u32) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.counter(slot)
            .fetch_update(Relaxed, Relaxed, |n| {
                (n < LOAD_EMPTY).then_some(n | LOAD_EMPTY)
            })
            .is_ok()
    }

    /// `slot` is chosen again (its worker reads again), with what was counted beneath the
    /// mark, less what still waits to be taken there: the owner drained the slot's queue
    /// while it was parked, so that is what never reached it (a handshake that did not
    /// complete, a SYN a full queue dropped), which nobody will ever take or release.
    /// `kernel-least` keeps its open connections; under `kernel-rr` (`AtAccept`) the count
    /// is what waits, so it is back at 0. Returns the new count.
    pub fn unmark_parked(&self, slot: u32, release: LoadRelease) -> u32 {
        use std::sync::atomic::Ordering::Relaxed;
        let stale = self.queued(slot).swap(0, Relaxed);
        let back = |n: u32| match release {
            LoadRelease::AtAccept => 0,
            LoadRelease::AtClose => (n & !LOAD_EMPTY).saturating_sub(stale),
        };
        let n = self
            .counter(slot)
            .fetch_update(Relaxed, Relaxed, |n| Some(back(n)))
            .unwrap_or_else(|n| n);
        back(n)
    }

    /// The primary took back a connection assigned to `slot` that its worker never took (its
    /// loop was blocked): released, and one fewer waits; the stall clock runs on.
    pub fn take_back(&self, slot: u32) {
        self.release(slot);
        self.unqueue(slot);
    }
}

impl Drop for LoadMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no reference into it outlives
        // `self` (`counter` borrows `self`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Whether this process can steer in the kernel: maps and program are created once and the
/// verdict cached (a capability dropped later is seen by [`ReuseportGroup::new`] itself).
pub fn probe() -> Result<(), Unsupported> {
    static VERDICT: OnceLock<Result<(), Unsupported>> = OnceLock::new();
    VERDICT
        .get_or_init(|| ReuseportGroup::new(1).map(drop))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primary::DEFAULT_WINDOW;
    use socket2::{Domain, Socket, Type};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn jumps_resolve_to_their_labels() {
        let maps = Maps {
            state: 3,
            socks: 4,
            load: Some(5),
        };
        for steer in [
            Steer::RoundRobin,
            Steer::window_of(32),
            Steer::Window {
                window: 32,
                stall_ms: 25,
            },
            Steer::least_of(32),
            Steer::Least {
                window: 32,
                stall_ms: 25,
            },
        ] {
            check_jumps(&program(maps, steer, 8));
        }
    }

    fn check_jumps(p: &[Insn]) {
        // Every jump lands inside the program, and the last two instructions are
        // `r0 = SK_PASS; exit`.
        for (i, insn) in p.iter().enumerate() {
            if insn.code & 0x07 == 0x05 && insn.code != 0x85 && insn.code != 0x95 {
                let to = i as isize + 1 + insn.off as isize;
                assert!(to > 0 && (to as usize) < p.len(), "insn {i} jumps to {to}");
            }
        }
        let n = p.len();
        assert_eq!((p[n - 2].code, p[n - 2].imm), (0xb7, SK_PASS));
        assert_eq!(p[n - 1].code, 0x95);
        // No instruction returns SK_DROP (0) in r0.
        assert!(!p
            .iter()
            .any(|i| i.code == 0xb7 && i.regs & 0x0f == R0 && i.imm == 0));
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// As root (CI): the verifier accepts the program, and the same test run again as uid
    /// 65534 with no capabilities (`setpriv`) sees the refusal with its hint. Not as root:
    /// only the refusal.
    #[test]
    fn the_verifier_accepts_the_program_and_an_unprivileged_user_gets_the_reason() {
        if !is_root() {
            let e = ReuseportGroup::new(8).expect_err("loaded without privileges");
            assert_eq!(e.errno, libc::EPERM, "{e:?}");
            assert!(e.reason.contains("CAP_BPF"), "{}", e.reason);
            assert_eq!(probe(), Err(e));
            return;
        }
        let g = ReuseportGroup::new(8).unwrap_or_else(|e| panic!("as root: {}", e.reason));
        assert_eq!(g.max_slots(), 8);
        assert_eq!(probe(), Ok(()));
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::linux::bpf::tests::the_verifier_accepts_the_program_and_an_unprivileged_user_gets_the_reason",
                "--test-threads=1",
            ])
            .output()
            .expect("setpriv (util-linux) is needed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "as uid 65534: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn listener(addr: SocketAddr) -> Socket {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        s.set_reuse_port(true).unwrap();
        if addr.is_ipv6() {
            s.set_only_v6(true).unwrap();
        }
        s.bind(&addr.into()).unwrap();
        s.listen(1024).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    /// An anchor and `n` worker listeners of one group on `ip`, steered.
    fn group(ip: &str, n: u32) -> Option<(ReuseportGroup, Socket, Vec<Socket>, SocketAddr)> {
        steered_group(ip, n, Steer::RoundRobin)
    }

    fn steered_group(
        ip: &str,
        n: u32,
        steer: Steer,
    ) -> Option<(ReuseportGroup, Socket, Vec<Socket>, SocketAddr)> {
        if !is_root() {
            return None; // the refusal is checked above
        }
        let g = ReuseportGroup::with_steer(8, steer).unwrap_or_else(|e| panic!("{}", e.reason));
        let anchor = listener(format!("{ip}:0").parse().unwrap());
        let addr = anchor.local_addr().unwrap().as_socket().unwrap();
        g.attach(anchor.as_fd()).unwrap();
        g.set_anchor(anchor.as_fd()).unwrap();
        let workers: Vec<Socket> = (0..n).map(|_| listener(addr)).collect();
        for (i, w) in workers.iter().enumerate() {
            g.set_slot(i as u32, w.as_fd()).unwrap();
        }
        g.set_slot_count(n).unwrap();
        Some((g, anchor, workers, addr))
    }

    /// [`steered_group`] of 3 on 127.0.0.1 with `steer` (200 ms of stall time), and a
    /// worker's mapping of its load map.
    fn stalling_group(
        steer: Steer,
    ) -> Option<(ReuseportGroup, Socket, Vec<Socket>, SocketAddr, LoadMap)> {
        let (g, anchor, workers, addr) = steered_group("127.0.0.1", 3, steer)?;
        let m = LoadMap::map(g.load_map_fd().unwrap(), 8).unwrap();
        Some((g, anchor, workers, addr, m))
    }

    /// `n` new connections to `addr` (kept open until this returns): how many each of
    /// `workers` accepted.
    fn dealt(addr: SocketAddr, workers: &[Socket], n: usize) -> Vec<usize> {
        let _c = connect_n(addr, n);
        workers.iter().map(|w| drain(w).len()).collect()
    }

    fn drain(l: &Socket) -> Vec<Socket> {
        let mut out = Vec::new();
        loop {
            match l.accept() {
                Ok((s, _)) => out.push(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    fn exact_spread(ip: &str) {
        let Some((g, anchor, workers, addr)) = group(ip, 3) else {
            return;
        };
        let clients: Vec<TcpStream> = (0..300)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let counts: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
        assert_eq!(counts, [100, 100, 100], "{ip}");
        assert_eq!(drain(&anchor).len(), 0);
        assert_eq!(g.tickets().unwrap(), 300, "one ticket per SYN");
        drop(clients);
    }

    #[test]
    fn connections_are_dealt_exactly_in_turn_ipv4() {
        exact_spread("127.0.0.1");
    }

    #[test]
    fn connections_are_dealt_exactly_in_turn_ipv6() {
        exact_spread("[::1]");
    }

    /// A listener closed with connections in its accept queue (a worker killed): the kernel
    /// asks the program, which moves each to a live worker. None is reset.
    #[test]
    fn a_dying_listeners_queue_moves_to_the_others() {
        let Some((g, anchor, mut workers, addr)) = group("127.0.0.1", 3) else {
            return;
        };
        let mut clients: Vec<TcpStream> =
            (0..30).map(|_| TcpStream::connect(addr).unwrap()).collect();
        drop(workers.remove(0)); // 10 queued on it
        assert!(
            !g.slot_filled(0).unwrap(),
            "the kernel empties a closed socket's slot"
        );
        let per: Vec<Vec<Socket>> = workers.iter().map(drain).collect();
        assert_eq!(
            per.iter().map(Vec::len).collect::<Vec<_>>(),
            [15, 15],
            "every queued connection was moved, none lost, in turn"
        );
        let mut served: Vec<Socket> = per.into_iter().flatten().collect();
        assert_eq!(drain(&anchor).len(), 0);
        // Each one is alive end to end: a byte each way.
        for s in &mut served {
            s.set_nonblocking(false).unwrap();
            s.write_all(b"x").unwrap();
        }
        for c in &mut clients {
            c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).expect("a moved connection was reset");
            assert_eq!(&b, b"x");
        }
        // 30 SYNs; the 10 migrations drew 15 tickets, 5 of them slot 0's (empty).
        assert_eq!(g.tickets().unwrap(), 45);
    }

    /// An empty slot (its socket closed, not yet refilled) is skipped and the others share its
    /// turns evenly; with no worker at all, clients wait on the anchor instead of being
    /// refused, and a refilled slot is dealt to again.
    #[test]
    fn empty_slots_are_skipped_and_the_anchor_parks_the_rest() {
        let Some((g, anchor, mut workers, addr)) = group("127.0.0.1", 3) else {
            return;
        };
        drop(workers.remove(1));
        let _c: Vec<TcpStream> = (0..30).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let counts: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
        assert_eq!(
            counts,
            [15, 15],
            "a hole's turns go to every live slot alike"
        );
        workers.clear();
        let _d: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(
            drain(&anchor).len(),
            5,
            "parked on the anchor, none refused"
        );
        g.set_slot_count(0).unwrap();
        let _e: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(drain(&anchor).len(), 3);
        let w = listener(addr);
        g.set_slot(0, w.as_fd()).unwrap();
        g.set_slot_count(1).unwrap();
        let _f: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(drain(&w).len(), 4);
        assert_eq!(drain(&anchor).len(), 0);
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_release("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_release("5.12.0"), Some((5, 12)));
        assert_eq!(parse_release("5.4-rc1"), Some((5, 4)));
        assert_eq!(parse_release("5.11+"), Some((5, 11)));
        assert!(parse_release("5.11.0") < Some((5, 12)));
        assert_eq!(parse_release("garbage"), None);
    }

    /// The load-aware programs pass the verifier with the engine's 1024 slots (the `least`
    /// scan is a loop bounded by the slot count), every slot starts empty; a window out of
    /// range is refused before anything is created; without privileges, EPERM as for `rr`
    /// (and the fallback to the plain program fails the same way).
    #[test]
    fn the_verifier_accepts_the_window_and_least_programs() {
        for w in [0, LOAD_EMPTY] {
            let e = ReuseportGroup::with_steer(8, Steer::window_of(w)).unwrap_err();
            assert_eq!(e.errno, libc::EINVAL);
            assert!(e.reason.contains("window"), "{}", e.reason);
        }
        // A stall time past 2^31 ns takes the comparison's whole 64-bit constant.
        let stall = |stall_ms| Steer::Window {
            window: DEFAULT_WINDOW,
            stall_ms,
        };
        for steer in [
            Steer::window_of(DEFAULT_WINDOW),
            stall(25),
            stall(5_000),
            Steer::least_of(DEFAULT_WINDOW),
            Steer::Least {
                window: DEFAULT_WINDOW,
                stall_ms: 25,
            },
            Steer::Least {
                window: DEFAULT_WINDOW,
                stall_ms: 5_000,
            },
        ] {
            if !is_root() {
                let e = ReuseportGroup::with_steer_or_plain(1024, steer).unwrap_err();
                assert_eq!(e.errno, libc::EPERM, "{e:?}");
                continue;
            }
            let (g, degraded) = ReuseportGroup::with_steer_or_plain(1024, steer)
                .unwrap_or_else(|e| panic!("as root: {}", e.reason));
            assert_eq!(degraded, None, "{steer:?} on {}", kernel_release());
            assert_eq!(g.steer(), steer);
            assert!(g.load_map_fd().is_some());
            assert_eq!(g.load(0), Some(LOAD_EMPTY));
            assert_eq!(g.load(1023), Some(LOAD_EMPTY));
        }
        if is_root() {
            let g = ReuseportGroup::new(8).unwrap();
            assert!(g.load_map_fd().is_none() && g.load(0).is_none());
            // A load-aware program refused (here: its window) → the plain one, and why.
            let (g, why) = ReuseportGroup::with_steer_or_plain(8, Steer::least_of(0)).unwrap();
            assert_eq!(g.steer(), Steer::RoundRobin);
            assert!(g.load_map_fd().is_none());
            assert!(why.expect("the reason").reason.contains("window 0"));
        }
    }

    /// The worker's side: a second mapping of the map's fd sees the same counters; a release
    /// never goes below 0.
    #[test]
    fn a_worker_mapping_shares_the_counters_and_never_goes_below_zero() {
        let Some((g, _anchor, _workers, _)) = steered_group("127.0.0.1", 2, Steer::window_of(4))
        else {
            return;
        };
        assert_eq!(
            (g.load(0), g.load(1), g.load(2)),
            (Some(0), Some(0), Some(LOAD_EMPTY))
        );
        let m = LoadMap::map(g.load_map_fd().unwrap(), 8).unwrap();
        m.set(1, 2);
        assert_eq!(g.load(1), Some(2));
        assert_eq!(m.release(1), 1);
        assert_eq!(m.release(1), 0);
        assert_eq!(m.release(1), 0, "saturates");
        assert_eq!(g.load(1), Some(0));
        // Parked: counted on beneath the mark, never across it, and exact once unmarked.
        m.set(1, 1);
        assert!(m.mark_parked(1));
        assert!(!m.mark_parked(1), "marked once");
        assert_eq!(m.get(1), LOAD_EMPTY | 1);
        m.acquire(1);
        assert_eq!(m.release(1), 1);
        assert_eq!(m.release(1), 0);
        assert_eq!(m.release(1), 0, "saturates beneath the mark");
        assert_eq!(m.get(1), LOAD_EMPTY);
        m.acquire(1);
        m.acquire_queued(1);
        assert_eq!(
            m.unmark_parked(1, LoadRelease::AtClose),
            1,
            "what still waits is dropped"
        );
        assert_eq!((g.load(1), m.waiting(1)), (Some(1), 0));
        assert!(m.mark_parked(1));
        assert_eq!(m.unmark_parked(1, LoadRelease::AtAccept), 0);
        g.clear_slot(1).unwrap();
        assert_eq!(m.release(1), 0, "an empty slot stays empty");
        assert_eq!(m.get(1), LOAD_EMPTY);
        assert!(
            LoadMap::map(g.load_map_fd().unwrap(), 1024).is_err(),
            "past the map's size"
        );
        // What is not a BPF map fails to map, with no fault later: a regular file (which
        // mmap would map past its end), a pipe, an epoll fd (an anonymous inode, like a map).
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let e = LoadMap::map(file.as_fd(), 8).expect_err("a file is no map");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(LoadMap::map(r.as_fd(), 8).is_err(), "a pipe is no map");
        let poll = mio::Poll::new().unwrap();
        // SAFETY: `poll` owns the epoll fd and outlives this borrow.
        let epoll = unsafe { BorrowedFd::borrow_raw(poll.as_raw_fd()) };
        assert_eq!(
            LoadMap::map(epoll, 8).err().and_then(|e| e.raw_os_error()),
            Some(libc::ENODEV)
        );
    }

    fn connect_n(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
        (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect()
    }

    /// Window 4 over 3 listeners nobody accepts from (stopped workers): 4 each, then the
    /// anchor takes the rest. Two workers release everything: the next 8 go to them alone,
    /// in turn, and the stopped one (still full) gets none.
    #[test]
    fn a_worker_at_its_window_is_skipped() {
        let Some((g, anchor, workers, addr)) = steered_group("127.0.0.1", 3, Steer::window_of(4))
        else {
            return;
        };
        let _a = connect_n(addr, 12);
        let counts: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
        assert_eq!(counts, [4, 4, 4]);
        assert_eq!(
            (g.load(0), g.load(1), g.load(2)),
            (Some(4), Some(4), Some(4))
        );
        let _b = connect_n(addr, 5);
        assert_eq!(
            drain(&anchor).len(),
            5,
            "every worker full: parked on the anchor"
        );
        let m = LoadMap::map(g.load_map_fd().unwrap(), 8).unwrap();
        for _ in 0..4 {
            m.release(1);
            m.release(2);
        }
        let _c = connect_n(addr, 8);
        let counts: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
        assert_eq!(
            counts,
            [0, 4, 4],
            "the full worker is skipped, the others alternate"
        );
        assert_eq!(drain(&anchor).len(), 0);
        assert_eq!(
            (g.load(0), g.load(1), g.load(2)),
            (Some(4), Some(4), Some(4))
        );
    }

    /// With a stall time (`kernel-rr`'s stall check): a slot whose worker holds connections
    /// and took none for that long is skipped, its ticket burnt; one it takes restarts its
    /// clock and it is dealt to again, in turn. An idle slot (load 0) is never stalled.
    #[test]
    fn a_worker_that_takes_nothing_for_the_stall_time_is_skipped() {
        let steer = Steer::Window {
            window: 32,
            stall_ms: 200,
        };
        let Some((_g, anchor, workers, addr, m)) = stalling_group(steer) else {
            return;
        };
        let counts = |n: usize| dealt(addr, &workers, n);
        // Slots 0 and 1 get two each and take none; slot 2 stays idle (its load 0).
        let _a = connect_n(addr, 2);
        let _b = connect_n(addr, 2);
        let got: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
        assert_eq!(got, [2, 1, 1], "in turn: 0, 1, 2, 0");
        for slot in [2, 1] {
            m.took(slot);
            m.release(slot);
        }
        assert_eq!((m.get(0), m.get(1), m.get(2)), (2, 0, 0));
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(m.since_ns(0) >= 200_000_000, "slot 0's clock ran");
        // Past the stall time: slot 0 (2 waiting, none taken) is skipped; slots 1 and 2 (idle
        // for as long, but holding nothing) are not.
        assert_eq!(counts(6), [0, 3, 3], "the stalled slot is skipped");
        assert_eq!(drain(&anchor).len(), 0);
        // A release that is not a take (a close, the primary's take-back) leaves the clock.
        m.release(0);
        m.acquire(0);
        let got = counts(3);
        assert_eq!(
            (got[0], got.iter().sum::<usize>()),
            (0, 3),
            "still skipped: {got:?}"
        );
        assert_eq!(m.get(0), 2);
        // Its worker takes one: dealt to again, in turn with the others.
        m.took(0);
        m.release(0);
        assert_eq!(counts(6), [2, 2, 2], "taken again once it takes one");
        assert_eq!(drain(&anchor).len(), 0);
    }

    /// `kernel-least` with a stall time: the least loaded slot is passed over while a
    /// connection waits there and its worker took none for that long (the open connections
    /// `load` counts say nothing of a blocked loop, and without this the blocked worker, least
    /// loaded or tied, kept being picked); it is picked again once its worker takes one. Slots
    /// whose connections are all taken (open, being served) are never stalled, however old
    /// their clock. Without the check, the stalled slot, least loaded, got the next ones.
    #[test]
    fn least_passes_over_a_worker_that_takes_nothing_for_the_stall_time() {
        let steer = Steer::Least {
            window: 32,
            stall_ms: 200,
        };
        let Some((g, anchor, workers, addr, m)) = stalling_group(steer) else {
            return;
        };
        let counts = |n: usize| dealt(addr, &workers, n);
        // Slots 1 and 2 serve 3 open connections each, none waiting; slot 0 is idle.
        for slot in [1, 2] {
            m.set(slot, 3);
        }
        let _a = connect_n(addr, 1);
        let got: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
        assert_eq!(got, [1, 0, 0], "the least loaded");
        assert_eq!((m.get(0), m.waiting(0)), (1, 1));
        // Its worker does not take it (its loop is blocked) for longer than the stall time.
        std::thread::sleep(std::time::Duration::from_millis(250));
        // Loads 1/3/3: slot 0 is the least loaded, and stalled: passed over.
        assert_eq!(counts(4), [0, 2, 2], "the stalled slot is passed over");
        assert_eq!((m.get(1), m.get(2)), (5, 5));
        // Its worker takes it: the clock restarts, nothing waits; loads 1/5/5.
        m.took(0);
        assert_eq!((m.get(0), m.waiting(0)), (1, 0));
        assert_eq!(
            counts(4),
            [4, 0, 0],
            "the least loaded again once it takes one"
        );
        assert_eq!(drain(&anchor).len(), 0);
        assert_eq!(g.tickets().unwrap(), 9, "one ticket per SYN");
    }

    /// `least`: each SYN goes to the smallest load, ties in the ticket's rotation. From loads
    /// 5/1/3: 1→2 (t0), 1→3 (t1), ties 1,2 at 3: rotation from slot 2 (t2) picks 2, then 1
    /// (t3), 1 (t4, from slot 1), 2 (t5, from 2): 5/5/5; then one each: 6/6/6 = the window,
    /// so the anchor; a release on slot 2 lets exactly one more in, there.
    #[test]
    fn least_picks_the_smallest_load_and_rotates_ties() {
        let Some((g, anchor, workers, addr)) = steered_group("127.0.0.1", 3, Steer::least_of(6))
        else {
            return;
        };
        let m = LoadMap::map(g.load_map_fd().unwrap(), 8).unwrap();
        for (slot, v) in [(0, 5), (1, 1), (2, 3)] {
            m.set(slot, v);
        }
        let mut order = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..9 {
            clients.push(TcpStream::connect(addr).unwrap());
            let got: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
            order.push(got.iter().position(|&n| n == 1).expect("one accepted"));
        }
        assert_eq!(order, [1, 1, 2, 1, 1, 2, 0, 1, 2]);
        assert_eq!((m.get(0), m.get(1), m.get(2)), (6, 6, 6));
        let _b = connect_n(addr, 2);
        assert_eq!(
            drain(&anchor).len(),
            2,
            "every load at the window: the anchor"
        );
        m.release(2);
        let _c = connect_n(addr, 2);
        let counts: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
        assert_eq!(counts, [0, 0, 1]);
        assert_eq!(drain(&anchor).len(), 1);
        assert_eq!(g.tickets().unwrap(), 13, "one ticket per SYN (none burnt)");
    }

    /// `least` with a slot whose socket closed before the primary cleared it (its load says
    /// 0, the smallest): the selection fails and the connection draws turns over the others;
    /// none is lost or parked. Once cleared (LOAD_EMPTY) the scan skips it.
    #[test]
    fn least_survives_a_slot_emptied_under_it() {
        let Some((g, anchor, mut workers, addr)) =
            steered_group("127.0.0.1", 3, Steer::least_of(DEFAULT_WINDOW))
        else {
            return;
        };
        drop(workers.remove(1));
        let _a = connect_n(addr, 20);
        let counts: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
        assert_eq!(counts.iter().sum::<usize>(), 20, "{counts:?}");
        assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
        assert_eq!(drain(&anchor).len(), 0);
        g.clear_slot(1).unwrap();
        let before = g.tickets().unwrap();
        let m = LoadMap::map(g.load_map_fd().unwrap(), 8).unwrap();
        m.set(0, 0);
        m.set(2, 0);
        let _b = connect_n(addr, 10);
        let counts: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
        assert_eq!(counts, [5, 5]);
        assert_eq!(
            g.tickets().unwrap() - before,
            10,
            "no draw: the scan skipped it"
        );
    }

    /// A dying listener's queue under the load-aware programs: each migrating connection is
    /// assigned (and counted) like a SYN, none is reset or parked; the dead slot's count stays
    /// until the primary clears the slot (LOAD_EMPTY) or refills it (0).
    #[test]
    fn a_dying_listeners_queue_is_counted_where_it_moves() {
        for steer in [
            Steer::window_of(DEFAULT_WINDOW),
            Steer::least_of(DEFAULT_WINDOW),
        ] {
            let Some((g, anchor, mut workers, addr)) = steered_group("127.0.0.1", 3, steer) else {
                return;
            };
            let _c = connect_n(addr, 30);
            let queued = g.load(0).unwrap();
            assert_eq!(queued, 10, "{steer:?}");
            drop(workers.remove(0));
            let counts: Vec<usize> = workers.iter().map(|w| drain(w).len()).collect();
            assert_eq!(counts.iter().sum::<usize>(), 30, "{steer:?}: {counts:?}");
            assert_eq!(drain(&anchor).len(), 0, "{steer:?}");
            assert_eq!(
                (g.load(1).unwrap() as usize, g.load(2).unwrap() as usize),
                (counts[0], counts[1]),
                "{steer:?}: every move counted where it went"
            );
            assert_eq!(
                g.load(0),
                Some(10),
                "{steer:?}: stale until the primary acts"
            );
            g.clear_slot(0).unwrap();
            assert_eq!(g.load(0), Some(LOAD_EMPTY));
        }
    }

    /// Past [`LEAST_SCAN`] workers a choice sees the 64 slots from the ticket's turn: with
    /// slot 69 of 70 the only idle one, ticket 0 (slots 0-63) takes slot 0, ticket 6 (slots
    /// 6-69) finds slot 69.
    #[test]
    fn least_looks_at_64_slots_from_the_turn() {
        if !is_root() {
            return;
        }
        let g = ReuseportGroup::with_steer(128, Steer::least_of(DEFAULT_WINDOW)).unwrap();
        let anchor = listener("127.0.0.1:0".parse().unwrap());
        let addr = anchor.local_addr().unwrap().as_socket().unwrap();
        g.attach(anchor.as_fd()).unwrap();
        g.set_anchor(anchor.as_fd()).unwrap();
        let workers: Vec<Socket> = (0..70).map(|_| listener(addr)).collect();
        for (i, w) in workers.iter().enumerate() {
            g.set_slot(i as u32, w.as_fd()).unwrap();
        }
        g.set_slot_count(70).unwrap();
        let m = LoadMap::map(g.load_map_fd().unwrap(), 128).unwrap();
        for slot in 0..69 {
            m.set(slot, 5);
        }
        let _a = TcpStream::connect(addr).unwrap();
        assert_eq!(
            drain(&workers[0]).len(),
            1,
            "slot 69 is out of ticket 0's view"
        );
        // Tickets 1-5 (advanced by hand), then ticket 6 sees slots 6-69.
        let mut six = 6u64;
        map_op(
            BPF_MAP_UPDATE_ELEM,
            g.state_fd(),
            &0,
            (&mut six as *mut u64).cast(),
        )
        .unwrap();
        let _b = TcpStream::connect(addr).unwrap();
        assert_eq!(drain(&workers[69]).len(), 1);
        assert_eq!(m.get(69), 1);
    }
}
