//! The worker's side of a load-aware kernel-steered listener (`kernel-rr` with its window,
//! `kernel-least`): per listener, a mapping of the group's `load` array and the worker's slot
//! in it, as the listen answer gave them. A connection the worker is done with is released
//! here ([`LoadSlots::release`]): an atomic decrement on shared memory, no syscall and no
//! message to the primary. The program counted the connection when it chose this worker's
//! socket; the primary counts the ones it deals from the anchor the same way, so every
//! connection of such a listener is released once, whichever way it came.
//!
//! Shared (`Arc`) between the protocol that fills it and the front's `closed` call, which may
//! run on another thread (the Node worker's JS thread; its receiver may be a native thread).

use crate::sys::LoadMap;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

/// The load mappings of one worker's listeners.
#[derive(Debug, Default)]
pub struct LoadSlots {
    by_listener: Mutex<HashMap<u32, (LoadMap, u32)>>,
}

impl LoadSlots {
    /// Maps `fd` (the group's `load` array, from the listen answer) for `listener`, whose
    /// slot is `slot`. Replaces an earlier mapping of the same listener (a second listen on
    /// one address). Fails as `mmap(2)` does, or for a slot past the map.
    pub fn add(&self, listener: u32, fd: &OwnedFd, slot: u32) -> std::io::Result<()> {
        let slots = crate::steering::MAX_SLOTS;
        if slot >= slots {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("load slot {slot} past the map's {slots} (MAX_SLOTS)"),
            ));
        }
        let map = LoadMap::map(fd.as_fd(), slots)?;
        self.lock().insert(listener, (map, slot));
        Ok(())
    }

    /// One connection of `listener` is done: `load[slot] -= 1` (never below 0). Whether
    /// `listener` is load-aware here (otherwise the caller tells the primary, for `least`).
    pub fn release(&self, listener: u32) -> bool {
        match self.lock().get(&listener) {
            Some((map, slot)) => {
                map.release(*slot);
                true
            }
            None => false,
        }
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

    /// `load[slot]` of `listener` now (tests and metrics).
    pub fn get(&self, listener: u32) -> Option<u32> {
        self.lock().get(&listener).map(|(map, slot)| map.get(*slot))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (LoadMap, u32)>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.by_listener.lock().unwrap_or_else(|e| e.into_inner())
    }
}
