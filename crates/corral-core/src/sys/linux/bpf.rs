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
//! Loaded with the raw `bpf(2)` syscall (libc: nix has no bpf()), from instructions assembled
//! below with per-instruction comments: no clang, no ELF, nothing added to the link line. The
//! feasibility study and the measurements behind each choice are in the repository's issue
//! tracker (kernel steering) and `bench/`.
//!
//! Needs `CAP_BPF` (or root) in the initial user namespace; [`probe`] tells why not otherwise,
//! and the engine falls back to primary-accept round-robin.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

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
// Helpers the program calls.
const FN_MAP_LOOKUP_ELEM: i32 = 1;
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

/// The steering program for `state` and `socks` (their fds are baked into the instructions).
fn program(state: RawFd, socks: RawFd, anchor_slot: u32) -> Vec<Insn> {
    let mut a = Asm::new();
    let take_ticket = a.label();
    let try_slot = a.label();
    let anchor = a.label();
    let pass = a.label();
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
    a.ld_map(R1, state); //  r1 = state map
    a.raw(0xbf, R2, R10, 0, 0); //  r2 = fp
    a.raw(0x07, R2, 0, 0, -4); //  r2 = &key
    a.raw(0x85, 0, 0, 0, FN_MAP_LOOKUP_ELEM); //  r0 = &state[1]
    a.jump(0x15, R0, 0, 0, pass); //  (cannot fail for an array; the verifier wants the check)
    a.raw(0x79, R8, R0, 0, 0); //  r8 = nslots
    a.jump(0x15, R8, 0, 0, anchor); //  no worker slot: park on the anchor
    a.raw(0x62, R10, 0, -4, 0); //  key = 0 (ticket)
    a.ld_map(R1, state); //  r1 = state map
    a.raw(0xbf, R2, R10, 0, 0); //  r2 = fp
    a.raw(0x07, R2, 0, 0, -4); //  r2 = &key
    a.raw(0x85, 0, 0, 0, FN_MAP_LOOKUP_ELEM); //  r0 = &state[0]
    a.jump(0x15, R0, 0, 0, pass); //  (as above)
    a.raw(0x7b, R10, R0, -16, 0); //  spill &state[0] at fp-16 (helper calls clobber r0-r5)
    a.raw(0xb7, R7, 0, 0, 0); //  r7 = 0 (tries)
    a.bind(try_slot);
    a.raw(0x79, R1, R10, -16, 0); //  r1 = &state[0]
    a.raw(0xb7, R9, 0, 0, 1); //  r9 = 1
    a.raw(0xdb, R1, R9, 0, 0x01); //  r9 = atomic_fetch_add(&state[0], r9): a ticket
    a.raw(0xbf, R1, R9, 0, 0); //  r1 = ticket
    a.raw(0x9f, R1, R8, 0, 0); //  r1 %= nslots
    a.raw(0x63, R10, R1, -8, 0); //  slot at fp-8 (u32)
    a.raw(0xbf, R1, R6, 0, 0); //  r1 = ctx
    a.ld_map(R2, socks); //  r2 = socks map
    a.raw(0xbf, R3, R10, 0, 0); //  r3 = fp
    a.raw(0x07, R3, 0, 0, -8); //  r3 = &slot
    a.raw(0xb7, R4, 0, 0, 0); //  r4 = 0 (flags)
    a.raw(0x85, 0, 0, 0, FN_SK_SELECT_REUSEPORT); //  r0 = select(ctx, socks, &slot, 0)
    a.jump(0x15, R0, 0, 0, pass); //  selected: done
    a.raw(0x07, R7, 0, 0, 1); //  tries += 1
    a.jump(0xa5, R7, 0, TRIES, try_slot); //  if tries < TRIES: draw again (bounded loop)
    a.bind(anchor);
    a.raw(0x62, R10, 0, -8, anchor_slot as i32); //  slot = the anchor's
    a.raw(0xbf, R1, R6, 0, 0); //  r1 = ctx
    a.ld_map(R2, socks); //  r2 = socks map
    a.raw(0xbf, R3, R10, 0, 0); //  r3 = fp
    a.raw(0x07, R3, 0, 0, -8); //  r3 = &slot
    a.raw(0xb7, R4, 0, 0, 0); //  r4 = 0
    a.raw(0x85, 0, 0, 0, FN_SK_SELECT_REUSEPORT); //  select the anchor (if even that fails,
    a.bind(pass); //                                   the kernel's hash picks)
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

fn map_create(kind: u32, key: u32, value: u32, entries: u32) -> io::Result<OwnedFd> {
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, kind);
    put32(&mut attr, 4, key);
    put32(&mut attr, 8, value);
    put32(&mut attr, 12, entries);
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
    prog: OwnedFd,
    anchor_slot: u32,
}

impl ReuseportGroup {
    /// Creates the maps and loads the program for up to `max_slots` worker sockets (plus the
    /// anchor's slot).
    pub fn new(max_slots: u32) -> Result<ReuseportGroup, Unsupported> {
        let state = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 2)
            .map_err(|e| Unsupported::from("bpf(BPF_MAP_CREATE, array)", &e, ""))?;
        let socks = map_create(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, 4, 8, max_slots + 1)
            .map_err(|e| Unsupported::from("bpf(BPF_MAP_CREATE, reuseport_sockarray)", &e, ""))?;
        let insns = program(state.as_raw_fd(), socks.as_raw_fd(), max_slots);
        let license = c"GPL";
        let mut log = vec![0u8; 64 * 1024];
        let load = |log: &mut Vec<u8>, level: u32| {
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
            attr[48..48 + 14].copy_from_slice(b"corral_kern_rr");
            put32(&mut attr, 68, BPF_SK_REUSEPORT_SELECT_OR_MIGRATE);
            bpf(BPF_PROG_LOAD, &mut attr)
        };
        let prog = match load(&mut log, 0) {
            Ok(fd) => new_fd(fd),
            Err(e) => {
                // Again with the verifier's log, for the report.
                let _ = load(&mut log, 1);
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
            prog,
            anchor_slot: max_slots,
        })
    }

    /// Attaches the program to the group `sock` belongs to (`SO_ATTACH_REUSEPORT_EBPF`); once
    /// per group, through any member (the anchor).
    pub fn attach(&self, sock: BorrowedFd<'_>) -> io::Result<()> {
        let fd: libc::c_int = self.prog.as_raw_fd();
        // SAFETY: setsockopt reads one int from a local that outlives the call.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_REUSEPORT_EBPF,
                (&fd as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Puts `sock` (a listening member of the group) in worker slot `slot`.
    pub fn set_slot(&self, slot: u32, sock: BorrowedFd<'_>) -> io::Result<()> {
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
    use socket2::{Domain, Socket, Type};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn jumps_resolve_to_their_labels() {
        let p = program(3, 4, 8);
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
        if !is_root() {
            return None; // the refusal is checked above
        }
        let g = ReuseportGroup::new(8).unwrap();
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
}
