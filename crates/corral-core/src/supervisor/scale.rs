//! Scaling: changing the number of slots at run time (new slots start, retired slots drain).

use super::events::SupervisorEvent;
use super::{Role, SlotState, Supervisor};
use crate::error::{Error, Result};
use crate::primary::Primary;

impl Supervisor {
    /// Changes the worker count: new slots start now; removed slots drain gracefully.
    pub fn scale(&mut self, p: &mut Primary, workers: usize) -> Result<()> {
        crate::limits::check_count(
            "workers",
            workers as u64,
            1,
            crate::limits::MAX_WORKERS as u64,
        )?;
        if self.shutting_down {
            return Err(Error::wrong_state("the cluster is shutting down"));
        }
        let from = self.slots.iter().filter(|s| !s.retired).count();
        // Reuse retired slots first (their labels), then add new ones.
        let mut active = from;
        for slot in 0..self.slots.len() {
            if active >= workers {
                break;
            }
            if self.slots[slot].retired && self.slots[slot].current.is_none() {
                self.slots[slot].retired = false;
                let id = self.start_worker(p, slot, Role::Current)?;
                self.slots[slot].current = Some(id);
                active += 1;
            }
        }
        while active < workers {
            self.slots.push(SlotState::default());
            let slot = self.slots.len() - 1;
            let id = self.start_worker(p, slot, Role::Current)?;
            self.slots[slot].current = Some(id);
            active += 1;
        }
        for slot in (0..self.slots.len()).rev() {
            if active <= workers {
                break;
            }
            if self.slots[slot].retired {
                continue;
            }
            let s = &mut self.slots[slot];
            s.retired = true;
            s.restart_at = None;
            for id in [s.current.take(), s.next.take()].into_iter().flatten() {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.role = Role::Draining;
                }
                let _ = p.disconnect(id);
            }
            active -= 1;
        }
        if let Some(r) = self.reload.as_mut() {
            let slots = &self.slots;
            r.queue.retain(|&s| !slots[s].retired);
        }
        self.events
            .push_back(SupervisorEvent::Scaled { from, to: workers });
        Ok(())
    }
}
