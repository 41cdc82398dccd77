//! The worker's side of a load-aware kernel-steered listener (`kernel-rr` with its window,
//! `kernel-least`): per listener, a mapping of the group's `load` array, the worker's slot in
//! it and when to release ([`LoadRelease`]), as the listen answer gave them. A release is an
//! atomic decrement on shared memory, no syscall and no message to the primary. The program
//! counted the connection when it chose this worker's socket; the primary counts the ones it
//! deals from the anchor the same way, so every connection of such a listener is released
//! once, whichever way it came:
//! - `kernel-rr` ([`LoadRelease::AtAccept`]): when the worker takes it ([`LoadSlots::accepted`]:
//!   accepted on its own socket, or read off the channel). Its window, as the primary-accept
//!   `rr`'s, bounds connections handed to a worker and not taken yet, not open ones: idle
//!   keep-alive connections never fill it. [`LoadSlots::closed`] releases nothing.
//! - `kernel-least` ([`LoadRelease::AtClose`]): when it closes ([`LoadSlots::closed`]).
//!
//! Either way, taking a connection also restarts the slot's stall clock and takes it off the
//! slot's count of connections waiting to be taken (kernel-least's), which the programs'
//! stall checks read ([`LoadSlots::accepted`]).
//!
//! Shared (`Arc`) between the protocol that fills it and the front's `closed` call, which may
//! run on another thread (the Node worker's JS thread; its receiver may be a native thread).

use crate::sys::{LoadMap, LoadRelease};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

/// The load mappings of one worker's listeners.
#[derive(Debug, Default)]
pub struct LoadSlots {
    by_listener: Mutex<Loads>,
}

#[derive(Debug, Default)]
struct Loads {
    mapped: HashMap<u32, Load>,
    /// Released at close: connections still open of listeners this worker left (unlisten).
    /// Should it listen there again, its new slot counts them from the start.
    left_open: HashMap<u32, u32>,
}

#[derive(Debug)]
struct Load {
    map: LoadMap,
    slot: u32,
    release: LoadRelease,
    /// Released at close: connections taken and not closed yet (what this worker's part of
    /// `load[slot]` is).
    open: u32,
}

impl LoadSlots {
    /// Maps `fd` (the group's `load` array, from the listen answer) for `listener`, whose
    /// slot is `slot`, released as `release` says. Replaces an earlier mapping of the same
    /// listener (a second listen on one address: the primary kept the slot and its count).
    /// Released at close, the connections still open from an earlier listen of the same
    /// listener, left since (unlisten), count in the new slot at once: their closes release
    /// there. Fails as `mmap(2)` does, or for a slot past the map.
    pub fn add(
        &self,
        listener: u32,
        fd: &OwnedFd,
        slot: u32,
        release: LoadRelease,
    ) -> std::io::Result<()> {
        let slots = crate::steering::MAX_SLOTS;
        if slot >= slots {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("load slot {slot} past the map's {slots} (MAX_SLOTS)"),
            ));
        }
        let map = LoadMap::map(fd.as_fd(), slots)?;
        let mut loads = self.lock();
        let kept = loads.mapped.get(&listener).map(|l| l.open);
        let open = match (kept, loads.left_open.remove(&listener)) {
            (Some(kept), _) => kept,
            (None, Some(n)) if release == LoadRelease::AtClose => {
                for _ in 0..n {
                    map.acquire(slot);
                }
                n
            }
            _ => 0,
        };
        loads.mapped.insert(
            listener,
            Load {
                map,
                slot,
                release,
                open: if release == LoadRelease::AtClose {
                    open
                } else {
                    0
                },
            },
        );
        Ok(())
    }

    /// The worker took one connection of `listener` (accepted it on its own socket, or read
    /// it off the channel): the slot's stall clock restarts and one fewer waits there
    /// ([`LoadMap::took`]); `load[slot] -= 1` (never below 0) when the listener releases at
    /// accept (`kernel-rr`). Whether it released.
    pub fn accepted(&self, listener: u32) -> bool {
        let mut loads = self.lock();
        let Some(l) = loads.mapped.get_mut(&listener) else {
            return false;
        };
        // Not stalled: the programs' stall checks read this.
        l.map.took(l.slot);
        if l.release == LoadRelease::AtClose {
            l.open += 1;
            return false;
        }
        l.map.release(l.slot);
        true
    }

    /// The worker handed one connection of `listener` back to the primary (refused it) after
    /// [`LoadSlots::accepted`]: it will not close it, so it is not open here any more. The
    /// primary releases its load ([`crate::steering::KernelSteering::uncount_refused`]); a
    /// phantom open one would come back as load if the worker listened there again.
    pub fn refused(&self, listener: u32) {
        if let Some(l) = self.lock().mapped.get_mut(&listener) {
            l.open = l.open.saturating_sub(1);
        }
    }

    /// One connection of `listener` closed: `load[slot] -= 1` (never below 0) when the
    /// listener releases at close (`kernel-least`); nothing for one that released at accept.
    /// Whether `listener` is load-aware here (otherwise the caller tells the primary, for
    /// `least`).
    pub fn closed(&self, listener: u32) -> bool {
        let mut loads = self.lock();
        if let Some(l) = loads.mapped.get_mut(&listener) {
            if l.release == LoadRelease::AtClose {
                l.map.release(l.slot);
                l.open = l.open.saturating_sub(1);
            }
            return true;
        }
        // One of a listener this worker left: counted by nobody now, and not the primary's.
        match loads.left_open.get_mut(&listener) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    loads.left_open.remove(&listener);
                }
                true
            }
            None => false,
        }
    }

    /// The worker leaves `listener` (unlisten): the primary gives the slot to another worker
    /// with its count back at 0, so later closes release nothing there; the connections still
    /// open are kept in mind in case this worker listens there again.
    pub fn forget(&self, listener: u32) {
        let mut loads = self.lock();
        if let Some(l) = loads.mapped.remove(&listener) {
            if l.open > 0 {
                *loads.left_open.entry(listener).or_default() += l.open;
            }
        }
    }

    /// The worker leaves every listener (disconnect).
    pub fn clear(&self) {
        let mut loads = self.lock();
        loads.mapped.clear();
        loads.left_open.clear();
    }

    /// Whether `listener` is load-aware here.
    pub fn contains(&self, listener: u32) -> bool {
        self.lock().mapped.contains_key(&listener)
    }

    /// When `listener` releases, if it is load-aware here.
    pub fn release_of(&self, listener: u32) -> Option<LoadRelease> {
        self.lock().mapped.get(&listener).map(|l| l.release)
    }

    /// `load[slot]` of `listener` now (tests and metrics).
    pub fn get(&self, listener: u32) -> Option<u32> {
        self.lock().mapped.get(&listener).map(|l| l.map.get(l.slot))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loads> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.by_listener.lock().unwrap_or_else(|e| e.into_inner())
    }
}
