//! Kernel steering (Linux's `SO_ATTACH_REUSEPORT_EBPF`) does not exist on macOS: every call
//! reports [`Unsupported`], and the engine deals connections itself.

use std::convert::Infallible;
use std::io;
use std::os::fd::BorrowedFd;

use crate::sys::{LoadRelease, Steer};

/// Why the kernel path is not available here, for the one report the engine makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The errno of the step that failed (0: refused before any call).
    pub errno: i32,
    /// What failed, and what to do about it.
    pub reason: String,
}

fn unsupported() -> Unsupported {
    Unsupported {
        errno: 0,
        reason: "kernel steering needs Linux eBPF (SO_ATTACH_REUSEPORT_EBPF, Linux 5.14); \
                 macOS has none: the primary deals connections itself"
            .into(),
    }
}

/// Never created on macOS ([`LoadMap::map`] fails with `Unsupported`).
#[derive(Debug)]
pub struct LoadMap {
    never: Infallible,
}

impl LoadMap {
    /// Fails: there is no load map on macOS.
    pub fn map(_fd: BorrowedFd<'_>, _slots: u32) -> io::Result<LoadMap> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            unsupported().reason,
        ))
    }
    /// Unreachable: no map exists.
    pub fn get(&self, _slot: u32) -> u32 {
        match self.never {}
    }
    /// Unreachable: no map exists.
    pub fn set(&self, _slot: u32, _v: u32) {
        match self.never {}
    }
    /// Unreachable: no map exists.
    pub fn acquire(&self, _slot: u32) -> u32 {
        match self.never {}
    }
    /// Unreachable: no map exists.
    pub fn release(&self, _slot: u32) -> u32 {
        match self.never {}
    }
    /// Unreachable: no map exists.
    pub fn acquire_queued(&self, _slot: u32) -> u32 {
        match self.never {}
    }
    /// Unreachable: no map exists.
    pub fn waiting(&self, _slot: u32) -> u32 {
        match self.never {}
    }
    /// Unreachable: no map exists.
    pub fn took(&self, _slot: u32) {
        match self.never {}
    }
    /// Unreachable: no map exists.
    pub fn take_back(&self, _slot: u32) {
        match self.never {}
    }
    /// Unreachable: no map exists.
    pub fn idle_for(&self, _slot: u32) -> std::time::Duration {
        match self.never {}
    }
    /// Unreachable: no map exists.
    pub fn mark_parked(&self, _slot: u32) -> bool {
        match self.never {}
    }
    /// Unreachable: no map exists.
    pub fn unmark_parked(&self, _slot: u32, _release: LoadRelease) -> u32 {
        match self.never {}
    }
}

/// Never created on macOS ([`ReuseportGroup::new`] reports [`Unsupported`]).
#[derive(Debug)]
pub struct ReuseportGroup {
    never: Infallible,
}

impl ReuseportGroup {
    /// Reports [`Unsupported`].
    pub fn new(_max_slots: u32) -> Result<ReuseportGroup, Unsupported> {
        Err(unsupported())
    }
    /// Reports [`Unsupported`].
    pub fn with_steer(_max_slots: u32, _steer: Steer) -> Result<ReuseportGroup, Unsupported> {
        Err(unsupported())
    }
    /// Reports [`Unsupported`].
    pub fn with_steer_or_plain(
        _max_slots: u32,
        _steer: Steer,
    ) -> Result<(ReuseportGroup, Option<Unsupported>), Unsupported> {
        Err(unsupported())
    }
    /// Unreachable: no group exists.
    pub fn steer(&self) -> Steer {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn load_map_fd(&self) -> Option<BorrowedFd<'_>> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn load_map(&self) -> Option<&LoadMap> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn load(&self, _slot: u32) -> Option<u32> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn attach(&self, _sock: BorrowedFd<'_>) -> io::Result<()> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn set_slot(&self, _slot: u32, _sock: BorrowedFd<'_>) -> io::Result<()> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn replace_slot(&self, _slot: u32, _sock: BorrowedFd<'_>) -> io::Result<()> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn set_anchor(&self, _sock: BorrowedFd<'_>) -> io::Result<()> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn clear_slot(&self, _slot: u32) -> io::Result<()> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn remove_sock(&self, _slot: u32) -> io::Result<()> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn slot_filled(&self, _slot: u32) -> io::Result<bool> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn set_slot_count(&self, _n: u32) -> io::Result<()> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn tickets(&self) -> io::Result<u64> {
        match self.never {}
    }
    /// Unreachable: no group exists.
    pub fn max_slots(&self) -> u32 {
        match self.never {}
    }
}

/// Reports [`Unsupported`]: there is no kernel steering on macOS.
pub fn probe() -> Result<(), Unsupported> {
    Err(unsupported())
}
