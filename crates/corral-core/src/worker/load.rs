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
//! Shared (`Arc`) between the protocol that fills it and the front's `closed` call, which may
//! run on another thread (the Node worker's JS thread; its receiver may be a native thread).

use crate::sys::{LoadMap, LoadRelease};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

/// The load mappings of one worker's listeners.
#[derive(Debug, Default)]
pub struct LoadSlots {
    by_listener: Mutex<HashMap<u32, Load>>,
}

#[derive(Debug)]
struct Load {
    map: LoadMap,
    slot: u32,
    release: LoadRelease,
}

impl LoadSlots {
    /// Maps `fd` (the group's `load` array, from the listen answer) for `listener`, whose
    /// slot is `slot`, released as `release` says. Replaces an earlier mapping of the same
    /// listener (a second listen on one address). Fails as `mmap(2)` does, or for a slot past
    /// the map.
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
        self.lock().insert(listener, Load { map, slot, release });
        Ok(())
    }

    /// The worker took one connection of `listener` (accepted it on its own socket, or read
    /// it off the channel): `load[slot] -= 1` (never below 0) when the listener releases at
    /// accept (`kernel-rr`). Whether it released.
    pub fn accepted(&self, listener: u32) -> bool {
        self.release_if(listener, LoadRelease::AtAccept)
            .unwrap_or(false)
    }

    /// One connection of `listener` closed: `load[slot] -= 1` (never below 0) when the
    /// listener releases at close (`kernel-least`); nothing for one that released at accept.
    /// Whether `listener` is load-aware here (otherwise the caller tells the primary, for
    /// `least`).
    pub fn closed(&self, listener: u32) -> bool {
        self.release_if(listener, LoadRelease::AtClose).is_some()
    }

    /// Releases when `listener`'s mode is `when`; `None` when it is not load-aware here.
    fn release_if(&self, listener: u32, when: LoadRelease) -> Option<bool> {
        let by = self.lock();
        let l = by.get(&listener)?;
        if l.release != when {
            return Some(false);
        }
        l.map.release(l.slot);
        Some(true)
    }

    /// The worker leaves `listener` (unlisten): its later closes no longer count, since the
    /// primary gives the slot to another worker with its count back at 0.
    pub fn forget(&self, listener: u32) {
        self.lock().remove(&listener);
    }

    /// The worker leaves every listener (disconnect).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Whether `listener` is load-aware here.
    pub fn contains(&self, listener: u32) -> bool {
        self.lock().contains_key(&listener)
    }

    /// When `listener` releases, if it is load-aware here.
    pub fn release_of(&self, listener: u32) -> Option<LoadRelease> {
        self.lock().get(&listener).map(|l| l.release)
    }

    /// `load[slot]` of `listener` now (tests and metrics).
    pub fn get(&self, listener: u32) -> Option<u32> {
        self.lock().get(&listener).map(|l| l.map.get(l.slot))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Load>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.by_listener.lock().unwrap_or_else(|e| e.into_inner())
    }
}
